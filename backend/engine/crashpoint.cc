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
#include <unordered_set>

namespace sdm {

namespace {

/* Order within an operation is the order the steps are reached. A step is reached
 * before its work is done: crashing "at create.commit" leaves the commit undone. */
const std::vector<std::string> kSteps = {
    "create.begin", "create.marker", "create.image-dir", "create.metadata",
    "create.lease-area", "create.data", "create.durable", "create.place-data",
    "create.commit", "create.index", "create.done",
    "clone.begin", "clone.marker", "clone.image-dir", "clone.metadata-illegal",
    "clone.lease-area", "clone.copy", "clone.copied", "clone.legal", "clone.durable",
    "clone.commit", "clone.index", "clone.done",
    "delete.begin", "delete.marker", "delete.durable", "delete.commit", "delete.collect",
    "delete.done",
    "resize.begin", "resize.marker", "resize.durable", "resize.grow", "resize.commit",
    "resize.done",
    "upload.begin", "upload.data", "upload.partial", "upload.sync", "upload.legal",
    "upload.done",
    "wipe.begin", "wipe.data", "wipe.legal", "wipe.done",
    "gc.collect", "gc.remove-marker",
};

const std::unordered_set<std::string> &StepSet()
{
    static const std::unordered_set<std::string> set(kSteps.begin(), kSteps.end());
    return set;
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

void Step(const char *step, OpObserver *observer)
{
    if (!StepSet().count(step)) {
        fprintf(stderr, "libvirt-sdm: internal error: unregistered step '%s'\n", step);
        abort();
    }
    if (observer)
        observer->OnStep(step);
    static const char *crash_at = getenv("SDM_CRASH_AT");
    static const char *stall_at = getenv("SDM_STALL_AT");
    if (crash_at && strcmp(crash_at, step) == 0)
        kill(getpid(), SIGKILL);
    if (stall_at && strcmp(stall_at, step) == 0)
        Stall(step);
}

const std::vector<std::string> &AllSteps() { return kSteps; }

std::vector<std::string> StepsOf(const std::string &operation)
{
    std::vector<std::string> steps;
    for (const auto &s : kSteps)
        if (s.compare(0, operation.size() + 1, operation + ".") == 0)
            steps.push_back(s);
    return steps;
}

}  // namespace sdm
