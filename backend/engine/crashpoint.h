/* Named steps of every operation, and the test hook that stops the process at one.
 *
 * Each crash-relevant step of an operation calls Step("create.commit", observer). The
 * observer learns the step; if the environment names it in SDM_CRASH_AT, the process
 * SIGKILLs itself there, leaving storage exactly as a power cut at that point would
 * (modulo the page cache). AllSteps() lists every step, so tests can stop at each. */
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
