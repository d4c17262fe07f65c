/* Storage leases: the cross-host half of locking, and the engine's plug-in point.
 *
 * A LeaseManager gives exclusive or shared leases on the slots of a domain's two lease
 * areas (docs/locking.md):
 *
 *   kLeases  <domain>/leases: slot 0 the domain lease (held shared by every process that
 *            has the domain open, exclusive by a removal or an upgrade), slots 1.. the
 *            volume leases (held by the operations that change a volume, and by VMs);
 *   kOwners  <domain>/owners: slot n the owner lease of owner n, held exclusively by the
 *            one process that has the domain open as owner n. Every transaction names
 *            its owner, so a collector that can take an owner lease knows that every
 *            transaction of that owner's earlier incarnations was abandoned.
 *
 * Two implementations: the engine's LocalLeaseManager (OFD byte-range locks; one host, and
 * tests) and sdmd's sanlock one. A lease is held by the process: a process that dies loses
 * its leases. Implementations must be thread-safe. The engine records acquires and
 * releases with its lock-order checker. */
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "sdm/status.h"

namespace sdm {

enum class LeaseMode { kShared, kExclusive };
enum class LeaseArea { kLeases, kOwners };

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
    virtual Result<std::unique_ptr<LeaseHandle>> Acquire(LeaseArea area, uint64_t slot,
                                                         LeaseMode mode,
                                                         std::chrono::milliseconds timeout) = 0;

    /* Makes the volume leases of chunk `chunk` acquirable (layout::FirstSlotOf ..
     * LastSlotOf): sanlock writes those not on storage yet; local leases need nothing.
     * Only the owner that claimed the chunk calls it, before it hands out a slot of it, so
     * a lease that may be held is never written. */
    virtual Status InitChunk(uint64_t chunk) = 0;
    /* Makes owner lease `owner` acquirable, writing it if it is not on storage. Called by
     * the process that is about to take it, after taking nothing else there. */
    virtual Status InitOwner(uint32_t owner) = 0;

    /* The owner slots this process may take: with sanlock exactly its host id (one sdmd per
     * host id), with local leases any (each process takes the first free one). */
    virtual uint32_t FirstOwner() const = 0;
    virtual uint32_t LastOwner() const = 0;

    /* Human-readable name of the backend, e.g. "local", "sanlock". */
    virtual std::string Name() const = 0;
};

}  // namespace sdm
