/* Named steps of every operation, and the test hooks that stop the process at one.
 *
 * Each crash-relevant step of an operation calls Step("create.commit", observer). The
 * observer learns the step; if the environment names it in SDM_CRASH_AT, the process
 * SIGKILLs itself there, leaving storage exactly as a power cut at that point would
 * (modulo the page cache). AllSteps() lists every step, so tests can stop at each.
 *
 * SDM_STALL_AT=<step> pauses the thread that first reaches the step instead, so that a
 * test can kill something else - libvirtd, a client - while the operation is exactly
 * there. With SDM_STALL_FILE=<path> the stall is a handshake: on arrival the thread
 * creates <path> (holding the step's name), then waits until the test removes it; without
 * it, or if nobody removes it, the stall ends after 30 s. Later arrivals at the step do not
 * stall. Both hooks read the environment once, and Step is thread-safe. */
#pragma once

#include <string>
#include <vector>

#include "sdm/types.h"

namespace sdm {

void Step(const char *step, OpObserver *observer);
/* Every step name, grouped by operation ("create.*", "clone.*", ...). */
const std::vector<std::string> &AllSteps();
std::vector<std::string> StepsOf(const std::string &operation);

}  // namespace sdm
