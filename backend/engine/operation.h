/* What every engine operation shares: the running operation (its named step, its
 * transaction, the context its errors carry) and the checks and errors about a volume's
 * lease and legality. Used by volume_ops.cc (metadata operations) and data_ops.cc
 * (volume data). An OpRun belongs to the one thread that runs the operation; the
 * functions are stateless and thread-safe. */
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/transaction.h"

namespace sdm {

/* Volume leases are tried once, never waited for: a held one means a user (docs/locking.md). */
inline constexpr std::chrono::milliseconds kTryOnce{0};
/* Volume data: read-write for owner and group (the hypervisor's group), nothing for others. */
inline constexpr mode_t kDataMode = 0660;

/* One running operation: its current step (for error context) and its transaction. */
class OpRun {
public:
    OpRun(FileDomain &domain, OpObserver *observer, std::string volume)
        : domain_(domain), observer_(observer), volume_(std::move(volume)) {}

    /* Reaches a named step; a cancel request stops the operation here. */
    Status Enter(StepName step)
    {
        step_ = step.name;
        Step(step, observer_);
        if (observer_ && observer_->CancelRequested())
            return Status::Error(ErrorCode::kCancelled, _("the operation was cancelled"));
        return Status::Ok();
    }

    /* Reaches a phase of an operation that changes no metadata (data moving under a
     * volume lease): reported and cancellable like a step, but not a crash point. */
    Status Phase(const char *phase)
    {
        step_ = phase;
        if (!observer_)
            return Status::Ok();
        observer_->OnStep(phase);
        if (observer_->CancelRequested())
            return Status::Error(ErrorCode::kCancelled, _("the operation was cancelled"));
        return Status::Ok();
    }

    void SetImage(const std::string &image) { image_ = image; }

    /* Reaches the operation's marker step and begins its transaction. */
    Status BeginTransaction(StepName step, const meta::Marker &marker)
    {
        SDM_RETURN_IF_ERROR(Enter(step));
        auto tx = Transaction::Begin(domain_, marker);
        if (!tx.ok())
            return tx.status();
        tx_.emplace(std::move(*tx));
        return Status::Ok();
    }

    /* Settles the transaction, if one began, and adds the context to the error. */
    Status Fail(Status status)
    {
        if (tx_) {
            auto recovered = Recover(domain_, tx_->dir_name(), &tx_->marker());
            if (!recovered.ok()) {
                left_garbage_ = true;
                status = Status::Error(status.code(),
                                       status.message() + _("; cleaning up also failed (") +
                                           recovered.status().message() +
                                           _("); the garbage collector will retry"),
                                       status.context());
            }
            tx_.reset();
        }
        return status.WithDomain(domain_.info().uuid).WithImage(image_).WithVolume(volume_)
            .WithStep(step_);
    }

    std::optional<Transaction> &tx() { return tx_; }
    OpObserver *observer() { return observer_; }
    /* A failed transaction could not be settled: its directory is the collector's now. */
    bool left_garbage() const { return left_garbage_; }

private:
    FileDomain &domain_;
    OpObserver *observer_;
    std::string volume_;
    std::string image_;
    std::string step_;
    std::optional<Transaction> tx_;
    bool left_garbage_ = false;
};

/* A lease slot taken from the allocator for a new volume; given back when the operation
 * ends: free again if it failed and left nothing on storage naming the slot. */
class SlotTicket {
public:
    SlotTicket(FileDomain &domain, OpRun &run) : domain_(domain), run_(run) {}
    ~SlotTicket();
    SlotTicket(const SlotTicket &) = delete;
    SlotTicket &operator=(const SlotTicket &) = delete;

    Status Take();
    uint64_t slot() const { return slot_; }
    /* The volume is committed: storage uses the slot. */
    void Committed() { committed_ = true; }

private:
    FileDomain &domain_;
    OpRun &run_;
    uint64_t slot_ = 0;
    bool committed_ = false;
};

/* What an operation on an existing volume holds: the domain lock (shared), the volume's
 * image lock (exclusive), and the image as read under that lock. */
struct FileDomain::VolumeScope {
    LockGuard domain_lock;
    LockGuard image_lock;
    Image image;
    meta::VolumeMeta volume;
};

/* A volume lease that could not be taken, as the user should read it. */
Status VolumeBusy(const std::string &name, const Status &lease_status);
/* kBusy unless the volume is LEGAL. */
Status RequireLegal(const meta::VolumeMeta &m);

/* Opens the data file of volume `m` in its image directory `image_dir` for `flags`, and
 * checks it before anything reads, writes or hands it to qemu-img: the storage is written
 * by other hosts, and a symlink, FIFO, device or hard-linked file there would make the
 * operation hang or touch a file outside the domain. Anything but a regular file with one
 * link, or a qcow2 header naming another backing file than the metadata's parent, is
 * kCorrupt. Pass the descriptor on (qemu::FdPath, qemu::ChainName), never the path. */
Result<fileio::Fd> OpenVolumeData(int image_dir, const meta::VolumeMeta &m, int flags);

}  // namespace sdm
