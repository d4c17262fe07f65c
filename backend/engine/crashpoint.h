/* Named steps of every operation, and the test hooks that stop the process at one.
 *
 * Each crash-relevant step of an operation calls Step(steps::create::kCommit, observer)
 * (the constants are in steps.h). The observer learns the step; if the environment names
 * it in SDM_CRASH_AT, the process SIGKILLs itself there, leaving storage exactly as a crash
 * of the process at that point would (a power cut also loses what was not synced:
 * tests/support/faultfs models that). AllSteps() lists every step, so tests can stop at
 * each.
 *
 * SDM_STALL_AT=<step> pauses the thread that first reaches the step instead, so that a
 * test can kill something else - libvirtd, a client, the power - while the operation is
 * exactly there. With SDM_STALL_FILE=<path> the stall is a handshake: on arrival the thread
 * creates <path> (holding the step's name), then waits until the test removes it; without
 * it, or if nobody removes it, the stall ends after 30 s. Later arrivals at the step do not
 * stall. Both hooks read the environment once, and Step is thread-safe. */
#pragma once

#include <string>
#include <vector>

#include "backend/engine/steps.h"
#include "sdm/types.h"

namespace sdm {

void Step(StepName step, OpObserver *observer);
/* Every step name, grouped by operation ("create.*", "clone.*", ...). */
const std::vector<std::string> &AllSteps();
std::vector<std::string> StepsOf(const std::string &operation);

}  // namespace sdm
