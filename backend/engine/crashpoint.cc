/* The registry of named steps and the SDM_CRASH_AT and SDM_STALL_AT hooks; see
 * crashpoint.h. */
#include "backend/engine/crashpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace sdm {

namespace {

/* In the order of steps.h: grouped by operation, each group in the order reached. */
std::vector<std::string> ListSteps()
{
    std::vector<std::string> all;
    auto add = [&all](const auto &list) {
        for (const StepName &step : list)
            all.emplace_back(step.name);
    };
    add(steps::format::kAll);
    add(steps::upgrade::kAll);
    add(steps::chunk::kAll);
    add(steps::create::kAll);
    add(steps::clone::kAll);
    add(steps::del::kAll);
    add(steps::resize::kAll);
    add(steps::upload::kAll);
    add(steps::wipe::kAll);
    add(steps::gc::kAll);
    return all;
}

/* A test that forgets to release a stall must not hang the daemon for good. */
constexpr auto kStallLimit = std::chrono::seconds(30);
constexpr auto kStallPoll = std::chrono::milliseconds(10);

void Stall(const char *step)
{
    static std::atomic<bool> stalled{false};
    if (stalled.exchange(true))
        return;
    fprintf(stderr, "libvirt-sdm: SDM_STALL_AT: stalled at step '%s'\n", step);
    const char *file = getenv("SDM_STALL_FILE");
    bool announced = false;
    if (file && *file) {
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            announced = write(fd, step, strlen(step)) == static_cast<ssize_t>(strlen(step));
            close(fd);
        }
    }
    auto deadline = std::chrono::steady_clock::now() + kStallLimit;
    while (std::chrono::steady_clock::now() < deadline &&
           (!announced || access(file, F_OK) == 0))
        std::this_thread::sleep_for(kStallPoll);
}

}  // namespace

void Step(StepName named, OpObserver *observer)
{
    const char *step = named.name;
    if (observer)
        observer->OnStep(step);
    static const char *crash_at = getenv("SDM_CRASH_AT");
    static const char *stall_at = getenv("SDM_STALL_AT");
    if (crash_at && strcmp(crash_at, step) == 0)
        kill(getpid(), SIGKILL);
    if (stall_at && strcmp(stall_at, step) == 0)
        Stall(step);
}

const std::vector<std::string> &AllSteps()
{
    static const std::vector<std::string> all = ListSteps();
    return all;
}

std::vector<std::string> StepsOf(const std::string &operation)
{
    std::vector<std::string> steps;
    for (const auto &s : AllSteps())
        if (s.compare(0, operation.size() + 1, operation + ".") == 0)
            steps.push_back(s);
    return steps;
}

}  // namespace sdm
