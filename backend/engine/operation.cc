/* The errors shared by the engine's operations; see operation.h. */
#include "backend/engine/operation.h"

namespace sdm {

Status VolumeBusy(const std::string &name, const Status &lease_status)
{
    if (lease_status.code() != ErrorCode::kBusy)
        return lease_status;
    return Status::Error(ErrorCode::kBusy,
                         _("volume '") + name +
                             _("' is in use: its lease is held (by a running VM, another "
                               "host or another operation); stop that user and try again (") +
                             lease_status.message() + ")");
}

Status RequireLegal(const meta::VolumeMeta &m)
{
    if (m.legality == Legality::kLegal)
        return Status::Ok();
    return Status::Error(ErrorCode::kBusy,
                         _("volume '") + m.name +
                             _("' is ILLEGAL (its data is being written, or an operation on it "
                               "was interrupted); wait for it, run gc, or write its data again "
                               "(upload, wipe) or delete it"));
}

}  // namespace sdm
