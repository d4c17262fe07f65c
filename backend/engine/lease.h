/* Storage leases: the cross-host half of locking.
 *
 * A LeaseManager gives exclusive or shared leases on slots of a domain's lease area
 * (slot 0 the domain lease, 1.. volume leases). Two implementations: LocalLeaseManager
 * (OFD byte-range locks on the lease file; enough for one host and for tests) and, in
 * sdmd, the sanlock one. A lease is held by the process: a process that dies loses its
 * leases, which is how the garbage collector knows a transaction's owner is gone.
 * Implementations must be thread-safe. Callers record acquires and releases with lockdep
 * (see LeaseGuard in transaction.h). */
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "sdm/status.h"

namespace sdm {

enum class LeaseMode { kShared, kExclusive };

/* A held lease; destroying it releases the lease. */
class LeaseHandle {
public:
    virtual ~LeaseHandle() = default;
};

class LeaseManager {
public:
    virtual ~LeaseManager() = default;

    /* Waits up to `timeout` (0: a single try) for the lease; kBusy if another process or
     * host holds it in a conflicting mode, with a message saying who, if known. A lease
     * this process already holds in a conflicting mode is kBusy too. */
    virtual Result<std::unique_ptr<LeaseHandle>> Acquire(uint64_t slot, LeaseMode mode,
                                                         std::chrono::milliseconds timeout) = 0;
    /* Makes `slot` acquirable (sanlock writes the lease; local leases need nothing). */
    virtual Status InitSlot(uint64_t slot) = 0;
    /* Human-readable name of the backend, e.g. "local", "sanlock". */
    virtual std::string Name() const = 0;

    /* Registers what to run when another host asks for the domain lease (slot 0) that
     * this process may hold; null unregisters, and once that call returns the previous
     * handler is not running and never runs again. The handler runs on a thread of the
     * manager's, must not block and must not call back into the manager's registration.
     * A backend whose waiters all live on this host (local leases) never calls it: the
     * linger alone decides when the lease goes back. The asking side needs no call: a
     * backend that can ask does so from Acquire while it retries. */
    virtual void SetDomainLeaseWantedHandler(std::function<void()> handler) { (void)handler; }
};

}  // namespace sdm
