/* FileDomain: the engine's implementation of sdm::Domain on a directory tree.
 *
 * An open FileDomain is one attachment of the domain: from Open until destruction it holds
 * the domain lease shared (so that nobody removes or upgrades the domain under it) and one
 * owner lease exclusively, and it runs its transactions as that owner in a fresh
 * incarnation (docs/locking.md). No operation takes a domain-wide lease: names are
 * claimed by symlinks in images/ (EEXIST decides), lease slots come from chunks this owner
 * claimed, and two operations on one image exclude each other with the image lock here and
 * the volume leases across hosts.
 *
 * Thread-safe. Shared state is the lock table, the allocator (its own lock), the set of
 * this process's running transactions (guarded by tx_mutex_) and the listing cache
 * (listing_mutex_). */
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "backend/engine/allocator.h"
#include "backend/engine/durability.h"
#include "backend/engine/fileio.h"
#include "backend/engine/layout.h"
#include "backend/engine/locks.h"
#include "backend/engine/metadata.h"
#include "sdm/domain.h"
#include "sdm/lease.h"

namespace sdm {

class OpRun;

class FileDomain : public Domain {
public:
    struct Dirs {
        fileio::Fd root, images, tx, chunks;
    };
    FileDomain(DomainInfo info, Dirs dirs, const DomainOptions &options,
               std::shared_ptr<LeaseManager> leases);
    ~FileDomain() override;

    /* Takes the domain lease (shared) and an owner lease: the attachment. */
    Status Attach();

    const DomainInfo &info() const override { return info_; }
    Result<DomainUsage> Usage() override;
    Result<VolumeInfo> PlanVolume(const CreateParams &params) override;
    Result<VolumeInfo> CreateVolume(const CreateParams &params, OpObserver *observer) override;
    Result<VolumeInfo> CloneVolume(const CloneParams &params, OpObserver *observer) override;
    Status DeleteVolume(const std::string &name, OpObserver *observer) override;
    Result<VolumeInfo> ResizeVolume(const std::string &name, uint64_t capacity,
                                    OpObserver *observer) override;
    Result<VolumeInfo> LookupVolume(const std::string &name) override;
    Result<std::vector<VolumeInfo>> ListVolumes() override;
    Result<GcReport> CollectGarbage(const GcOptions &options) override;
    Result<CheckReport> Check() override;
    Result<VolumeInfo> ImportVolume(const ImportParams &params, OpObserver *observer) override;
    Result<VolumeInfo> UploadVolume(const std::string &name, const UploadSource &source,
                                    uint64_t offset, uint64_t length,
                                    OpObserver *observer) override;
    Status DownloadVolume(const std::string &name, int fd, uint64_t offset, uint64_t length,
                          OpObserver *observer) override;
    Result<VolumeInfo> WipeVolume(const std::string &name, OpObserver *observer) override;
    Status Remove() override;

    /* --- for the engine's own modules --- */
    int root() const { return root_.get(); }
    int images_dir() const { return images_.get(); }
    int tx_dir() const { return tx_.get(); }
    int chunks_dir() const { return chunks_.get(); }
    const std::string &path() const { return info_.path; }
    std::string AbsPath(const std::string &rel) const { return info_.path + "/" + rel; }
    LeaseManager &leases() { return *leases_; }
    const DomainOptions &options() const { return options_; }
    LockTable &locks() { return locks_; }
    SyncPolicy sync_policy() const { return sync_policy_; }
    /* Who this attachment's transactions belong to. */
    const layout::Owner &owner() const { return owner_; }
    SlotAllocator &allocator() { return allocator_; }

    /* A committed image: its directory and every readable volume metadata in it.
     * Unreadable metadata files are listed in `bad` (Check reports them). */
    struct Image {
        std::string uuid;
        fileio::Fd dir;
        std::vector<meta::VolumeMeta> volumes;
        std::vector<std::string> bad;
        bool IsLeaf(const std::string &volume) const;
        const meta::VolumeMeta *Find(const std::string &volume) const;
    };
    Result<Image> ReadImage(const std::string &image);
    /* The same for an image directory open elsewhere (inside a transaction). */
    Result<Image> ReadImageAt(int dir, const std::string &image);
    /* Reads and checks one volume's metadata in an open image directory. */
    Result<meta::VolumeMeta> ReadVolumeMeta(int image_dir, const std::string &image,
                                            const std::string &volume);
    /* Volume metadata plus what only the data file can tell (allocation, path). */
    VolumeInfo ToInfo(const Image &image, const meta::VolumeMeta &meta);
    /* The same from parts: `allocation` is the data file's st_blocks * 512. */
    VolumeInfo Describe(const meta::VolumeMeta &meta, bool leaf, uint64_t allocation);
    /* The info of the only volume of an image just committed. */
    VolumeInfo NewImageInfo(const meta::VolumeMeta &meta);
    /* The volume a name claim names: kNotFound if there is none (or it is not committed). */
    Result<VolumeInfo> Resolve(const std::string &name, Image *image_out = nullptr);

    /* Transactions this process runs now (the collector passes them by). */
    bool IsOwnTransaction(const std::string &dir_name);
    void AddOwnTransaction(const std::string &dir_name);
    void RemoveOwnTransaction(const std::string &dir_name);

    /* Name claims (images/@<name>, docs/transactions.md): ClaimName makes the claim for
     * image/volume, or fails kAlreadyExists naming who has the name; a claim left by a
     * transaction that no longer exists (a power cut before its first barrier) is moved
     * into `tx_dir` (the caller's transaction directory) and the claim made anew.
     * Idempotent for a claim already ours. ReleaseName removes the claim if it is ours. */
    Status ClaimName(const std::string &name, const std::string &image,
                     const std::string &volume, int tx_dir);
    Status ReleaseName(const std::string &name, const std::string &image,
                       const std::string &volume);
    /* The root link <domain>/<name> follows the claim; it never fails an operation. */
    void LinkRoot(const std::string &name, const std::string &image, const std::string &volume);
    Status UnlinkRoot(const std::string &name, const std::string &image,
                      const std::string &volume);
    /* Makes a commit into `committed_dir` (images/ or an image's directory) and the claims
     * and root links beside it durable: one barrier. */
    Status SyncNamespace(int committed_dir, const std::string &what);

    /* Takes the locks to change an existing volume, in lockdep's order; see operation.h. */
    struct VolumeScope;
    Result<VolumeScope> LockVolume(const std::string &name, OpRun &run);

private:
    void Detach();
    /* Who holds the name `name` claimed for `ref`: committed, pending, or nobody (the
     * claim is an orphan). */
    enum class ClaimState { kCommitted, kPending, kOrphan };
    ClaimState JudgeClaim(const layout::VolumeRef &ref);

    DomainInfo info_;
    fileio::Fd root_;
    fileio::Fd images_;
    fileio::Fd tx_;
    fileio::Fd chunks_;
    DomainOptions options_;
    SyncPolicy sync_policy_;
    std::shared_ptr<LeaseManager> leases_;
    LockTable locks_;

    layout::Owner owner_;
    std::unique_ptr<LeaseHandle> domain_lease_; /* shared, for the attachment */
    std::unique_ptr<LeaseHandle> owner_lease_;  /* exclusive, for the attachment */
    SlotAllocator allocator_;

    /* ListVolumes' copy of each image's metadata, valid while the image directory's
     * inode and times are those it was read under (every metadata change renames a file
     * in or out of that directory). A leaf lock: nothing is taken while it is held. */
    struct ListedImage {
        struct stat dir_stat;
        Image image; /* without its directory descriptor */
    };
    std::mutex listing_mutex_;
    std::map<std::string, ListedImage> listing_;

    std::mutex tx_mutex_;                  /* a leaf lock: guards own_transactions_ */
    std::set<std::string> own_transactions_;
};

/* The domain.meta of directory `root` (`path` in messages), as DomainInfo; `meta`, if not
 * null, gets the metadata itself. */
Result<DomainInfo> ReadDomainInfo(int root, const std::string &path, meta::DomainMeta *meta);
/* The volume the name claim `entry` of directory `dir` names; kNotFound without one. */
Result<layout::VolumeRef> ReadClaim(int dir, const std::string &entry);

/* Keys of the engine's leases and local locks, in lockdep's order. */
lockdep::Key DomainLeaseKey();
lockdep::Key DomainLockKey();
lockdep::Key OwnerLeaseKey(uint32_t owner);
lockdep::Key ImageLockKey(const std::string &image, lockdep::Role role = lockdep::Role::kNone);

}  // namespace sdm
