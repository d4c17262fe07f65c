/* The registry of named steps and the SDM_CRASH_AT hook; see crashpoint.h. */
#include "backend/engine/crashpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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
    "gc.collect", "gc.remove-marker",
};

const std::unordered_set<std::string> &StepSet()
{
    static const std::unordered_set<std::string> set(kSteps.begin(), kSteps.end());
    return set;
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
    if (crash_at && *crash_at && std::string(crash_at) == step)
        kill(getpid(), SIGKILL);
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
