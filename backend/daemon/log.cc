/* Implementation of sdmd's log; see log.h. */
#include "backend/daemon/log.h"

#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace sdm::daemon {

namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<bool> g_syslog{false};

constexpr struct {
    LogLevel level;
    const char *name;
    int priority;
} kLevels[] = {
    {LogLevel::kError, "error", LOG_ERR},
    {LogLevel::kWarning, "warning", LOG_WARNING},
    {LogLevel::kInfo, "info", LOG_INFO},
    {LogLevel::kDebug, "debug", LOG_DEBUG},
};

}  // namespace

std::optional<LogLevel> ParseLogLevel(const std::string &name)
{
    for (const auto &entry : kLevels) {
        if (name == entry.name)
            return entry.level;
    }
    return std::nullopt;
}

const char *LogLevelName(LogLevel level)
{
    return kLevels[static_cast<int>(level)].name;
}

void SetLogLevel(LogLevel level)
{
    g_level = level;
}

void LogToSyslog()
{
    openlog("sdmd", LOG_PID, LOG_DAEMON);
    g_syslog = true;
}

bool LogEnabled(LogLevel level)
{
    return level <= g_level.load();
}

void Log(LogLevel level, const char *format, ...)
{
    if (!LogEnabled(level))
        return;
    va_list args;
    va_start(args, format);
    g_autofree char *text = g_strdup_vprintf(format, args);
    va_end(args);
    if (g_syslog) {
        syslog(kLevels[static_cast<int>(level)].priority, "%s", text);
        return;
    }
    /* Info is the normal case and goes unlabelled. */
    if (level == LogLevel::kInfo)
        fprintf(stderr, "sdmd[%d]: %s\n", static_cast<int>(getpid()), text);
    else
        fprintf(stderr, "sdmd[%d]: %s: %s\n", static_cast<int>(getpid()), LogLevelName(level),
                text);
}

}  // namespace sdm::daemon
