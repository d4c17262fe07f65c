/* Leases for single-host domains: OFD byte-range locks (F_OFD_SETLK) on the lease areas.
 *
 * Slot n of an area is the byte range [n * alignment, n * alignment + 1) of its file
 * (<domain>/leases or <domain>/owners). OFD locks belong to an open file description, so
 * two threads of one process conflict like two processes do, and the kernel drops them
 * when the holder dies. Each process is its own owner: it takes the first free owner slot.
 * Waiting polls with a short sleep so a timeout is honoured. Thread-safe. */
#pragma once

#include <string>

#include "sdm/lease.h"

namespace sdm {

class LocalLeaseManager : public LeaseManager {
public:
    /* `root` is the domain's directory; `alignment` its slot size. */
    LocalLeaseManager(const std::string &root, uint64_t alignment);

    Result<std::unique_ptr<LeaseHandle>> Acquire(LeaseArea area, uint64_t slot, LeaseMode mode,
                                                 std::chrono::milliseconds timeout) override;
    Status InitChunk(uint64_t chunk) override;
    Status InitOwner(uint32_t owner) override;
    uint32_t FirstOwner() const override;
    uint32_t LastOwner() const override;
    std::string Name() const override { return "local"; }

private:
    const std::string &FileOf(LeaseArea area) const;

    std::string leases_file_;
    std::string owners_file_;
    uint64_t alignment_;
};

}  // namespace sdm
