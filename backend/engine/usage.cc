/* Domain::Usage: the domain's filesystem space and its change token, from two stat calls
 * on descriptors the domain keeps open. Thread-safe (no state). */
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"

namespace sdm {

Result<DomainUsage> FileDomain::Usage()
{
    struct statvfs fs;
    if (fstatvfs(root(), &fs) < 0)
        return Status::FromErrno(errno, info().path);
    /* Every create, clone and delete adds or removes a name-index link in images/, on
     * whichever host it runs, so the directory's times move with the set of volumes. On
     * NFS another host's change shows once this host's attribute cache expires
     * (acdirmin, 30 s by default). */
    struct stat images;
    if (fstat(images_dir(), &images) < 0)
        return Status::FromErrno(errno, info().path + "/images");
    DomainUsage usage;
    usage.fs_capacity = static_cast<uint64_t>(fs.f_frsize) * fs.f_blocks;
    usage.fs_allocation = static_cast<uint64_t>(fs.f_frsize) * (fs.f_blocks - fs.f_bfree);
    usage.fs_available = static_cast<uint64_t>(fs.f_frsize) * fs.f_bavail;
    usage.change_token = sdm::Printf("%lld.%09ld-%lld.%09ld-%llu",
                                     static_cast<long long>(images.st_mtim.tv_sec),
                                     images.st_mtim.tv_nsec,
                                     static_cast<long long>(images.st_ctim.tv_sec),
                                     images.st_ctim.tv_nsec,
                                     static_cast<unsigned long long>(images.st_size));
    return usage;
}

}  // namespace sdm
