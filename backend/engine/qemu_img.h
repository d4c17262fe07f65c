/* A thin wrapper over the qemu-img tool: qcow2 creation, conversion with progress, resize
 * and info. The binary is $SDM_QEMU_IMG if set, else "qemu-img" from PATH. A failure is a
 * Status carrying qemu-img's own message; a missing binary says which package to install.
 * Thread-safe: each call runs its own child process. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm::qemu {

/* Creates `path` (which must not exist). `backing` is a file name relative to path's
 * directory, or empty; with a backing file qemu-img does not open it (-u). */
Status Create(const std::string &path, VolumeFormat format, uint64_t size,
              Preallocation prealloc, const std::string &backing = "",
              VolumeFormat backing_format = VolumeFormat::kRaw);

/* Converts `src` (whose own format is src_format; its backing chain is followed and
 * flattened) into a new file `dst` of dst_format. Progress is reported as bytes of
 * `total` (the source's virtual size); cancel kills qemu-img and returns kCancelled. */
Status Convert(const std::string &src, VolumeFormat src_format, const std::string &dst,
               VolumeFormat dst_format, uint64_t total, OpObserver *observer);

/* Sets the virtual size; shrink must be true to make it smaller. */
Status Resize(const std::string &path, VolumeFormat format, uint64_t size, bool shrink);

struct ImageInfo {
    uint64_t virtual_size = 0;
    std::string format;           /* as qemu-img names it */
    std::string backing_filename; /* empty if none */
};
Result<ImageInfo> Info(const std::string &path);

/* The name by which a child qemu-img reopens the file behind this process's descriptor
 * `fd`: a swap of the file's path after the caller checked the descriptor cannot matter. */
std::string FdPath(int fd);

/* One layer of an image chain that this process holds open. */
struct Layer {
    int fd;
    VolumeFormat format;
};
/* A file name (for any call above but Create) that makes qemu-img read the chain of open
 * descriptors `chain`, top first, and no other file: it never follows a backing file name
 * from an image header. */
std::string ChainName(const std::vector<Layer> &chain);

}  // namespace sdm::qemu
