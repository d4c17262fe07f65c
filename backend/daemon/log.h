/* sdmd's log: one line per event, to stderr in the foreground or to syslog as a daemon,
 * filtered by level. Lines of a job start with its id ("job-7 clone 'disk2': ...") so
 * that `grep job-7` tells a job's story.
 *
 * Thread-safe: job threads and the main loop log concurrently; each line is written with
 * one call, so lines never interleave. */
#pragma once

#include <glib.h>

#include <optional>
#include <string>

namespace sdm::daemon {

enum class LogLevel { kError, kWarning, kInfo, kDebug };

std::optional<LogLevel> ParseLogLevel(const std::string &name); /* error|warning|info|debug */
const char *LogLevelName(LogLevel level);

/* Drops lines below `level`; info until called. */
void SetLogLevel(LogLevel level);
/* Sends lines to syslog (facility daemon) instead of stderr. */
void LogToSyslog();
bool LogEnabled(LogLevel level);

void Log(LogLevel level, const char *format, ...) G_GNUC_PRINTF(2, 3);

}  // namespace sdm::daemon
