/* Copying volume data: sparse-aware, using the cheapest mechanism the filesystem offers.
 *
 * Raw to raw: walks the source's data extents with SEEK_DATA/SEEK_HOLE and copies each by
 * reflink (FICLONERANGE) when the filesystem shares extents, else copy_file_range, else
 * read/write; holes stay holes, and zero blocks inside data extents are skipped so the
 * copy is at least as sparse as the source. Anything else (qcow2, chains, format changes)
 * goes through `qemu-img convert`. Neither function fsyncs: the caller syncs before it
 * commits. Stateless; thread-safe. */
#pragma once

#include <cstdint>
#include <string>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm::copy {

struct CopyStats {
    uint64_t data_bytes = 0;   /* bytes of source data extents visited */
    uint64_t extents = 0;
    std::string method;        /* "reflink", "copy_file_range" or "read-write" */
};

/* Copies `size` bytes of src_fd into dst_fd (an empty regular file opened read-write),
 * keeping holes, and leaves dst exactly `size` long. Reports progress in data bytes (the
 * total is the sum of the source's data extents); observer->CancelRequested() aborts with
 * kCancelled. */
Status CopySparse(int src_fd, int dst_fd, uint64_t size, OpObserver *observer,
                  CopyStats *stats = nullptr);

}  // namespace sdm::copy
