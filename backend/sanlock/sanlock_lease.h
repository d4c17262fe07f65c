/* Storage leases through sanlock: the LeaseManager that sdmd uses on shared storage.
 *
 * A domain's lockspace (named after the domain, in <domain>/ids) gives each host a host
 * id and a generation. Its lease areas hold one paxos lease per slot at slot x alignment:
 * <domain>/leases slot 0 the domain lease "SDM", slot n the volume lease "v<n>";
 * <domain>/owners slot n the owner lease "o<n>" of host n. The lockspace belongs to the
 * host's sanlock daemon, not to a process: this process joins it (Join), takes leases in
 * it (Acquire) over connections registered with the daemon, and the daemon releases them
 * when the process dies.
 *
 * Fencing: without a watchdog, a host that loses its lockspace (storage unreachable for
 * 8 x io_timeout) has every lease holder killed by its daemon: the killpath if one is
 * set, else SIGTERM, then SIGKILL after the daemon's -g grace. That is the point of
 * running the engine in sdmd and not in libvirtd; this class does not try to survive it.
 * A host that dies holding a lease blocks it until its host lease expires (about
 * 8 x io_timeout + 60 s) or an administrator frees the host id
 * (`sanlock direct release_id`). Before that, a monitor thread sees the renewals of this
 * host's lease stall (state() turns kFailing) or the lockspace vanish (kLost); from then
 * on Acquire and the Init calls refuse with Unusable(), so no new operation starts.
 *
 * No lease is ever handed over between hosts by asking: operations hold leases only
 * while they run, and a try that meets another host's lease fails at once (kBusy, naming
 * the holder), except when it only met another acquire in flight, which is retried for a
 * moment (two hosts reading one volume at once never refuse each other).
 *
 * Thread-safe. */
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/engine/fileio.h"
#include "sdm/lease.h"

namespace sdm {

struct SanlockGeometry {
    std::string lockspace;      /* lockspace name (the domain UUID; <= 48 bytes) */
    std::string ids_path;       /* <domain>/ids */
    std::string leases_path;    /* <domain>/leases */
    std::string owners_path;    /* <domain>/owners */
    uint64_t alignment = 1 << 20;
    uint32_t sector_size = 512;
    uint32_t io_timeout = 10;   /* seconds: written into the lockspace at format, used to join */
};

class SanlockLeaseManager : public LeaseManager {
public:
    /* Writes the lockspace (ids, direct I/O, no daemon needed) with io_timeout and the
     * domain lease (slot 0 of leases). The files must exist (sanlock never creates files).
     * Only for a new domain: it wipes what it writes. Volume leases are written chunk by
     * chunk by the hosts that claim them (InitChunk), owner leases by their hosts. */
    static Status FormatAreas(const SanlockGeometry &g);

    SanlockLeaseManager(SanlockGeometry g, uint32_t host_id);
    /* Leaves the lockspace (asynchronously) if this object joined it, unless leases are
     * still held in it on this host (by this process, or by VMs through libvirt). */
    ~SanlockLeaseManager() override;
    SanlockLeaseManager(const SanlockLeaseManager &) = delete;
    SanlockLeaseManager &operator=(const SanlockLeaseManager &) = delete;

    /* Joins the lockspace asynchronously (SANLK_ADD_ASYNC) with the geometry's io_timeout;
     * returns at once. Joining takes about 2 x io_timeout + 1 s, where io_timeout is the
     * one this host id was last joined with (sanlock records it in the host's lease).
     * Already joined with this host id is fine. Starts the monitor thread. */
    Status Join();
    /* Waits until joined and this host's generation is known; kTimeout with a message
     * that names the likely causes. */
    Status WaitJoined(std::chrono::milliseconds timeout);
    /* Stops the monitor, leaves the lockspace and waits for it; kBusy while leases are
     * held in it. A lockspace already lost is left at once. */
    Status Leave();

    /* This host's standing in the lockspace, as the monitor last saw it (about once a
     * second). kFailing: joined, but the daemon has not renewed this host's lease for
     * longer than a few renewal intervals (storage unreachable or overloaded); it turns
     * back to kJoined if renewals resume. kLost: the lockspace was joined and is gone
     * from the daemon (sanlock removed it after failed renewals, an administrator
     * removed it, or the daemon died); it stays lost until Leave and Join. */
    enum class LockspaceState { kJoining, kJoined, kFailing, kLost };
    LockspaceState state() const { return state_.load(); }
    /* "joining", "joined", "failing", "lost". */
    static const char *StateName(LockspaceState state);
    /* Ok while joining or joined; else why this host must not change the domain now and
     * what to do (kIoError). */
    Status Unusable() const;

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
     * kBusy names the holder's host id, kNotFound says there is no lease at that slot. */
    Result<std::unique_ptr<LeaseHandle>> Acquire(LeaseArea area, uint64_t slot, LeaseMode mode,
                                                 std::chrono::milliseconds timeout) override;
    /* Writes the chunk's volume leases in ascending order unless its last slot (the
     * boundary) is on storage already: the chunk's owner calls it before handing out any
     * of its slots, so it never writes a lease that can be held. Needs the daemon, not
     * the join. */
    Status InitChunk(uint64_t chunk) override;
    /* Writes owner lease `owner` unless it is on storage. */
    Status InitOwner(uint32_t owner) override;
    uint32_t FirstOwner() const override { return host_id_; }
    uint32_t LastOwner() const override { return host_id_; }
    std::string Name() const override { return "sanlock"; }

    /* The <lease> element a libvirt domain needs so that libvirt's sanlock lock manager
     * takes this volume lease when the VM starts (lockspace, key, target path+offset).
     * `slot` must be <= layout::kMaxSlot. */
    std::string LeaseXml(uint64_t slot) const;
    /* Resource name of a slot: "SDM" for slot 0 of leases, "v<slot>" for volumes, "o<slot>"
     * for owners (<= 48 bytes). */
    static std::string ResourceName(LeaseArea area, uint64_t slot);

private:
    class RegistrationPool;
    struct Health;

    Status AwaitJoin(std::chrono::steady_clock::time_point deadline, bool need_generation);
    Status JoinEnded(bool requested) const;
    Status BusyError(LeaseArea area, uint64_t slot, int rv,
                     std::chrono::milliseconds waited) const;
    Result<bool> SlotOnStorage(LeaseArea area, uint64_t slot) const;

    /* The monitor thread: lockspace health. */
    void StartMonitor();
    void StopMonitor();
    void MonitorLoop();
    void CheckHealth(Health &health);
    void SetState(LockspaceState state, std::string why);
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
    std::vector<bool> chunk_done_; /* chunks known to be on storage */

    std::atomic<LockspaceState> state_{LockspaceState::kJoining};
    mutable std::mutex why_mutex_;
    std::string why_;              /* guarded by why_mutex_: what made it failing or lost */

    std::mutex monitor_mutex_;     /* start and stop of the monitor */
    std::thread monitor_;          /* guarded by monitor_mutex_ */
    std::atomic<bool> stop_monitor_{false};
    fileio::Fd wake_;              /* eventfd that ends the monitor's poll */
};

}  // namespace sdm
