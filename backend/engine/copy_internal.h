/* Test-only entry point of copy.cc: CopySparse with the first mechanism chosen by the
 * caller, so that tests reach the copy_file_range and read/write paths on a filesystem
 * where a better mechanism would always be taken. Stateless; thread-safe. */
#pragma once

#include <cstdint>

#include "backend/engine/copy.h"

namespace sdm::copy::internal {

/* In order of preference; a mechanism the filesystem refuses falls back to the next. */
enum class Method { kReflink, kCopyFileRange, kReadWrite };

Status CopySparseStartingWith(Method first, int src_fd, int dst_fd, uint64_t size,
                              OpObserver *observer, CopyStats *stats);

}  // namespace sdm::copy::internal
