/* Storage leases through sanlock: the LeaseManager that sdmd uses on shared storage.
 *
 * A domain's lockspace (named after the domain, in <domain>/ids) gives each host a host
 * id and a generation; its lease area (<domain>/leases) holds one paxos lease per slot,
 * slot 0 the domain lease "SDM", slot n the volume lease "v<n>", at slot x alignment.
 * The lockspace belongs to the host's sanlock daemon, not to a process: this process
 * joins it (Join), takes leases in it (Acquire) over connections registered with the
 * daemon, and the daemon releases them when the process dies.
 *
 * Fencing: without a watchdog, a host that loses its lockspace (storage unreachable for
 * 8 x io_timeout) has every lease holder killed by its daemon: the killpath if one is
 * set, else SIGTERM, then SIGKILL after the daemon's -g grace. That is the point of
 * running the engine in sdmd and not in libvirtd; this class does not try to survive it.
 * A host that dies holding a lease blocks it until its host lease expires (about
 * 8 x io_timeout + 60 s) or an administrator frees the host id
 * (`sanlock direct release_id`).
 *
 * Thread-safe. */
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backend/engine/lease.h"

namespace sdm {

struct SanlockGeometry {
    std::string lockspace;      /* lockspace name (the domain UUID; <= 48 bytes) */
    std::string ids_path;       /* <domain>/ids */
    std::string leases_path;    /* <domain>/leases */
    uint64_t alignment = 1 << 20;
    uint32_t sector_size = 512;
    uint32_t io_timeout = 10;   /* seconds: written into the lockspace at format, used to join */
};

class SanlockLeaseManager : public LeaseManager {
public:
    /* Slots are written in batches of this many, so that a create rarely pays for a
     * lease init; batch b holds slots b*64+1 .. b*64+64 and is written in ascending
     * order, so its last slot (the boundary) says whether the whole batch is there. */
    static constexpr uint64_t kSlotBatch = 64;

    /* Writes the lockspace (ids, direct I/O, no daemon needed) with io_timeout, the domain
     * lease (slot 0) and volume slots 1..initial_slots, rounded up to whole batches, into
     * the lease area. Both files must exist (sanlock never creates files). Only for a new
     * domain: it wipes every lease it writes. */
    static Status FormatAreas(const SanlockGeometry &g, uint64_t initial_slots);

    SanlockLeaseManager(SanlockGeometry g, uint32_t host_id);
    /* Leaves the lockspace (asynchronously) if this object joined it, unless leases are
     * still held in it on this host (by this process, or by VMs through libvirt). */
    ~SanlockLeaseManager() override;
    SanlockLeaseManager(const SanlockLeaseManager &) = delete;
    SanlockLeaseManager &operator=(const SanlockLeaseManager &) = delete;

    /* Joins the lockspace asynchronously (SANLK_ADD_ASYNC) with the geometry's io_timeout;
     * returns at once. Joining takes about 2 x io_timeout + 1 s, where io_timeout is the
     * one this host id was last joined with (sanlock records it in the host's lease).
     * Already joined with this host id is fine. */
    Status Join();
    /* Waits until joined and this host's generation is known; kTimeout with a message
     * that names the likely causes. */
    Status WaitJoined(std::chrono::milliseconds timeout);
    /* Leaves the lockspace and waits for it; kBusy while leases are held in it. */
    Status Leave();

    struct Host {
        uint64_t host_id;
        uint64_t generation;
        std::string state; /* "unknown", "free", "live", "fail" or "dead" */
        uint64_t timestamp;
    };
    /* The hosts this host's daemon has seen in the lockspace (sanlock_get_hosts). */
    Result<std::vector<Host>> Hosts();
    /* This host's generation, once WaitJoined succeeded; 0 before. */
    uint64_t generation() const { return generation_.load(); }

    /* Waits for the join first, then tries sanlock_acquire until `timeout` (0: one try);
     * kBusy names the holder's host id. */
    Result<std::unique_ptr<LeaseHandle>> Acquire(uint64_t slot, LeaseMode mode,
                                                 std::chrono::milliseconds timeout) override;
    /* Makes sure the batch holding `slot` is on storage, writing it if its boundary slot
     * is not. Writing happens only for a batch no host has finished, so it never touches
     * a lease that can be held; callers must hold the domain lease so that two hosts do
     * not write one batch at once (the engine's metadata transactions do). Never writes
     * slot 0. Needs the daemon, not the join. */
    Status InitSlot(uint64_t slot) override;
    std::string Name() const override { return "sanlock"; }

    /* The <lease> element a libvirt domain needs so that libvirt's sanlock lock manager
     * takes this volume lease when the VM starts (lockspace, key, target path+offset).
     * `slot` must be <= layout::kMaxSlot. */
    std::string LeaseXml(uint64_t slot) const;
    /* Resource name of a slot: "SDM" for slot 0, "v<slot>" for volumes (<= 48 bytes). */
    static std::string ResourceName(uint64_t slot);

private:
    class RegistrationPool;

    Status AwaitJoin(std::chrono::steady_clock::time_point deadline, bool need_generation);
    Status JoinEnded(bool requested) const;
    Status BusyError(uint64_t slot, int rv, std::chrono::milliseconds waited) const;
    Result<bool> SlotOnStorage(uint64_t slot) const;

    const SanlockGeometry g_;
    const uint32_t host_id_;
    const Status valid_; /* what is wrong with g_ and host_id_, checked once */
    const std::unique_ptr<RegistrationPool> pool_;

    std::mutex join_mutex_;
    bool join_requested_ = false; /* this object asked to join */
    /* This object added the lockspace (not found it joined by another process): only then
     * does its destruction leave it, so a process that merely used the lockspace never
     * pulls it out from under sdmd. Guarded by join_mutex_. */
    bool added_ = false;
    std::atomic<bool> joined_{false};
    std::atomic<uint64_t> generation_{0};

    std::mutex init_mutex_;
    std::vector<bool> batch_done_; /* batches known to be on storage */
};

}  // namespace sdm
