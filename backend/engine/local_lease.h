/* Leases for single-host domains: OFD byte-range locks (F_OFD_SETLK) on the lease file.
 *
 * Slot n is the byte range [n * alignment, n * alignment + 1). OFD locks belong to an open
 * file description, so two threads of one process conflict like two processes do, and the
 * kernel drops them when the holder dies. Waiting polls with a short sleep so a timeout
 * is honoured. Thread-safe. */
#pragma once

#include <string>

#include "backend/engine/lease.h"

namespace sdm {

class LocalLeaseManager : public LeaseManager {
public:
    /* `lease_file` is the domain's lease area; `alignment` its slot size. */
    LocalLeaseManager(std::string lease_file, uint64_t alignment);

    Result<std::unique_ptr<LeaseHandle>> Acquire(uint64_t slot, LeaseMode mode,
                                                 std::chrono::milliseconds timeout) override;
    Status InitSlot(uint64_t slot) override;
    std::string Name() const override { return "local"; }

private:
    std::string lease_file_;
    uint64_t alignment_;
};

}  // namespace sdm
