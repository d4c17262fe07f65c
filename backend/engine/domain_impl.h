/* FileDomain: the engine's implementation of sdm::Domain on a directory tree.
 *
 * Thread-safe. Shared state is the domain lease holder (one per process, reference
 * counted by the threads that use it), the lock table, and the allocator's reservations
 * (names and lease slots of this process's transactions in flight), which is guarded by
 * the allocator lock. */
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <thread>
#include <utility>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "backend/engine/durability.h"
#include "backend/engine/fileio.h"
#include "backend/engine/lease.h"
#include "backend/engine/locks.h"
#include "backend/engine/metadata.h"
#include "sdm/domain.h"

namespace sdm {

class OpRun;

/* The domain lease, held by the process while any thread uses it. A Ref is one thread's
 * use; the lease is taken by the first Ref and given back `linger` after the last one
 * goes (at once if linger is 0), so a burst of operations pays one acquire. Correctness
 * never depends on the linger: it only decides when the lease is given back.
 * When another host asks for it (the lease manager calls Requested), it goes back at once
 * if idle, else as soon as the operations using it end, without a linger; operations that
 * start meanwhile wait for that and then acquire it anew, so a stream of local operations
 * cannot keep the asker waiting. */
class DomainLease {
public:
    class Ref {
    public:
        Ref() = default;
        Ref(Ref &&other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
        Ref &operator=(Ref &&other) noexcept;
        Ref(const Ref &) = delete;
        Ref &operator=(const Ref &) = delete;
        ~Ref() { Release(); }
        void Release();

    private:
        friend class DomainLease;
        explicit Ref(DomainLease *owner) : owner_(owner) {}
        DomainLease *owner_ = nullptr;
    };

    /* Registers Requested with `leases` for as long as it lives. */
    DomainLease(LeaseManager &leases, std::chrono::milliseconds linger);
    ~DomainLease();

    Result<Ref> Acquire(std::chrono::milliseconds timeout);
    /* Another host wants the lease: give it back at once if idle, else when the last
     * current user goes. Does not block on storage beyond the release itself. */
    void Requested();
    bool held();

private:
    void Put();
    void LingerLoop();

    LeaseManager &leases_;
    const std::chrono::milliseconds linger_;
    std::mutex mutex_;
    std::condition_variable changed_;
    int users_ = 0;
    bool acquiring_ = false;
    bool stopping_ = false;
    bool requested_ = false;  /* another host asked while users held it */
    std::chrono::steady_clock::time_point idle_since_;
    std::unique_ptr<LeaseHandle> handle_;
    std::thread linger_thread_;  /* started with the first linger */
};

class FileDomain : public Domain {
public:
    FileDomain(DomainInfo info, fileio::Fd root, fileio::Fd images, fileio::Fd tx,
               const DomainOptions &options);

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
    const std::string &path() const { return info_.path; }
    std::string AbsPath(const std::string &rel) const { return info_.path + "/" + rel; }
    LeaseManager &leases() { return *leases_; }
    const DomainOptions &options() const { return options_; }
    LockTable &locks() { return locks_; }
    SyncPolicy sync_policy() const { return sync_policy_; }

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
    /* Reads and checks one volume's metadata in an open image directory. */
    Result<meta::VolumeMeta> ReadVolumeMeta(int image_dir, const std::string &image,
                                            const std::string &volume);
    /* Volume metadata plus what only the data file can tell (allocation, path). */
    VolumeInfo ToInfo(const Image &image, const meta::VolumeMeta &meta);
    /* The same from parts: `allocation` is the data file's st_blocks * 512. */
    VolumeInfo Describe(const meta::VolumeMeta &meta, bool leaf, uint64_t allocation);
    /* The info of the only volume of an image just committed. */
    VolumeInfo NewImageInfo(const meta::VolumeMeta &meta);
    /* The volume an index entry names: kNotFound if there is none. */
    Result<VolumeInfo> Resolve(const std::string &name, Image *image_out = nullptr);

    /* Allocator: reserves a free name and lease slot for a new volume (an empty name:
     * only a slot); Unreserve undoes it. */
    Status Reserve(const std::string &name, uint64_t *slot);
    void Unreserve(const std::string &name, uint64_t slot);
    bool IsOwnTransaction(const std::string &dir_name);
    void AddOwnTransaction(const std::string &dir_name);
    void RemoveOwnTransaction(const std::string &dir_name);

    /* Index entries (name and slot, in images/): create pointing at image/volume, or
     * remove if they point there. Both idempotent. */
    Status AddIndex(const std::string &name, uint64_t slot, const std::string &image,
                    const std::string &volume);
    Status RemoveIndex(const std::string &name, uint64_t slot, const std::string &image,
                       const std::string &volume);
    /* Makes a commit into `committed_dir` (images/ or an image's directory) and the index
     * entries made after it durable: with the index in images/, one or two fsyncs. */
    Status SyncNamespace(int committed_dir, const std::string &what);

    Result<DomainLease::Ref> AcquireDomainLease();

    /* Takes the locks to change an existing volume, in lockdep's order; see volume_ops.cc. */
    struct VolumeScope;
    Result<VolumeScope> LockVolume(const std::string &name, OpRun &run);

private:
    /* Reads the slot index into used_slots_; the allocator's lock is held. It may go stale
     * (other hosts create and delete); the allocator checks each candidate on storage. */
    Status LoadUsedSlots();

    DomainInfo info_;
    fileio::Fd root_;
    fileio::Fd images_;
    fileio::Fd tx_;
    DomainOptions options_;
    SyncPolicy sync_policy_;
    std::shared_ptr<LeaseManager> leases_;
    LockTable locks_;
    DomainLease domain_lease_;

    /* ListVolumes' copy of each image's metadata, valid while the image directory's
     * inode and times are those it was read under (every metadata change renames a file
     * in or out of that directory). A leaf lock: nothing is taken while it is held. */
    struct ListedImage {
        struct stat dir_stat;
        Image image; /* without its directory descriptor */
    };
    std::mutex listing_mutex_;
    std::map<std::string, ListedImage> listing_;

    std::mutex alloc_mutex_;               /* guards everything below; see Reserve */
    std::set<std::string> reserved_names_;
    std::set<uint64_t> reserved_slots_;
    std::set<uint64_t> used_slots_;        /* slot index as last read, plus what we indexed */
    bool slots_loaded_ = false;
    uint64_t slot_hint_ = 1;               /* where the next slot search starts */
    std::set<std::string> own_transactions_;
};

/* Keys of the engine's leases and local locks, in lockdep's order. */
lockdep::Key DomainLeaseKey();
lockdep::Key DomainLockKey();
lockdep::Key ImageLockKey(const std::string &image, lockdep::Role role = lockdep::Role::kNone);
lockdep::Key AllocatorLockKey();

}  // namespace sdm
