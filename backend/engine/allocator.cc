/* The volume lease slots of one owner; see allocator.h. */
#include "backend/engine/allocator.h"

#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"

namespace sdm {

SlotAllocator::SlotAllocator(FileDomain &domain) : domain_(domain) {}

SlotAllocator::~SlotAllocator() { Stop(); }

void SlotAllocator::Stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        wake_.notify_all();
    }
    if (refill_.joinable())
        refill_.join();
}

bool SlotAllocator::Mine(uint64_t slot) const
{
    return slot >= layout::kFirstVolumeSlot && mine_.count(layout::ChunkOf(slot));
}

std::set<uint64_t> SlotAllocator::chunks()
{
    std::lock_guard lock(mutex_);
    return mine_;
}

/* Reads which chunks are this owner's and which of their slots storage uses: pending
 * transactions first, then committed volumes, so that a transaction committing meanwhile
 * is seen in one place or the other. The lock is given up during the reading. */
Status SlotAllocator::LoadLocked(std::unique_lock<std::mutex> &lock)
{
    loads_running_++;
    lock.unlock();
    std::set<uint64_t> mine, used;
    const uint32_t owner = domain_.owner().owner;
    auto status = [&]() -> Status {
        auto chunks = fileio::ListDirAt(domain_.chunks_dir(), ".");
        if (!chunks.ok())
            return chunks.status();
        for (const auto &entry : *chunks) {
            auto chunk = layout::ParseChunkEntry(entry);
            char target[32];
            ssize_t n = readlinkat(domain_.chunks_dir(), entry.c_str(), target, sizeof(target));
            if (chunk && n > 0 && layout::ParseChunkTarget(std::string(target, n)) == owner)
                mine.insert(*chunk);
        }
        /* An earlier incarnation of this owner may have died between a chunk's claim and
         * its leases: finish them before any slot of it is handed out (a chunk written
         * completely costs one read). */
        for (uint64_t chunk : mine)
            SDM_RETURN_IF_ERROR(domain_.leases().InitChunk(chunk));
        auto pending = fileio::ListDirAt(domain_.tx_dir(), ".");
        if (!pending.ok())
            return pending.status();
        for (const auto &entry : *pending) {
            if (auto name = layout::ParseTxDirName(entry))
                used.insert(name->slot);
        }
        auto volumes = domain_.ListVolumes();
        if (!volumes.ok())
            return volumes.status();
        for (const auto &v : *volumes)
            used.insert(v.slot);
        return Status::Ok();
    }();
    lock.lock();
    if (status.ok()) {
        mine_.insert(mine.begin(), mine.end());
        free_.clear();
        for (uint64_t chunk : mine_) {
            for (uint64_t s = layout::FirstSlotOf(chunk); s <= layout::LastSlotOf(chunk); s++) {
                if (!used.count(s) && !taken_.count(s) && !used_during_load_.count(s))
                    free_.insert(s);
            }
        }
        loaded_ = true;
    }
    if (--loads_running_ == 0)
        used_during_load_.clear();
    return status;
}

Status SlotAllocator::ClaimChunk()
{
    std::lock_guard claim(claim_mutex_);
    uint64_t start;
    {
        std::unique_lock lock(mutex_);
        if (!loaded_)
            SDM_RETURN_IF_ERROR(LoadLocked(lock));
        if (free_.size() >= kLowWater)
            return Status::Ok(); /* enough already, or another claim just refilled */
        start = chunk_hint_;
    }
    const std::string target = layout::ChunkTarget(domain_.owner().owner);
    Step(steps::chunk::kClaim, nullptr);
    for (uint64_t i = 0; i <= layout::kMaxChunk; i++) {
        uint64_t chunk = (start + i) % (layout::kMaxChunk + 1);
        std::string entry = layout::ChunkEntry(chunk);
        if (symlinkat(target.c_str(), domain_.chunks_dir(), entry.c_str()) != 0) {
            if (errno == EEXIST)
                continue;
            return Status::FromErrno(errno, std::string(_("cannot claim lease chunk ")) +
                                                layout::kChunksDir + "/" + entry);
        }
        /* The claim is durable before any slot of it is handed out: after a power cut it
         * must not be lost while a committed volume uses one of its slots. */
        Barrier barrier(domain_.sync_policy());
        barrier.Dir(domain_.chunks_dir(), layout::kChunksDir);
        SDM_RETURN_IF_ERROR(barrier.Sync());
        Step(steps::chunk::kLeases, nullptr);
        SDM_RETURN_IF_ERROR(domain_.leases().InitChunk(chunk));
        std::unique_lock lock(mutex_);
        mine_.insert(chunk);
        chunk_hint_ = chunk + 1;
        /* Read what storage uses in it: a chunk of a format 1 domain, or one claimed by an
         * earlier incarnation of this owner, may hold volumes already. */
        return LoadLocked(lock);
    }
    return Status::Error(ErrorCode::kNoSpace,
                         _("every lease chunk of the domain is claimed; delete volumes, or "
                           "detach hosts that no longer use the domain"));
}

void SlotAllocator::RefillLoop()
{
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return stopping_ || refill_wanted_; });
        if (stopping_)
            return;
        lock.unlock();
        Status claimed = ClaimChunk();
        (void)claimed; /* a failure shows at the Take that finds no free slot */
        lock.lock();
        refill_wanted_ = false;
    }
}

void SlotAllocator::Prime()
{
    std::lock_guard lock(mutex_);
    if (stopping_ || refill_wanted_)
        return;
    refill_wanted_ = true;
    if (!refill_.joinable())
        refill_ = std::thread([this] { RefillLoop(); });
    wake_.notify_all();
}

Result<uint64_t> SlotAllocator::Take()
{
    std::unique_lock lock(mutex_);
    if (stopping_)
        return Status::Error(ErrorCode::kCancelled, _("the domain is being detached"));
    if (!loaded_)
        SDM_RETURN_IF_ERROR(LoadLocked(lock));
    if (free_.empty()) {
        /* Other hosts' deletes may have freed slots of ours since the last look. */
        SDM_RETURN_IF_ERROR(LoadLocked(lock));
    }
    while (free_.empty()) {
        lock.unlock();
        Status claimed = ClaimChunk();
        lock.lock();
        if (!claimed.ok())
            return claimed;
    }
    uint64_t slot = *free_.begin();
    free_.erase(free_.begin());
    taken_.insert(slot);
    if (free_.size() < kLowWater && !refill_wanted_) {
        refill_wanted_ = true;
        if (!refill_.joinable())
            refill_ = std::thread([this] { RefillLoop(); });
        wake_.notify_all();
    }
    return slot;
}

void SlotAllocator::Settle(uint64_t slot, bool in_use)
{
    std::lock_guard lock(mutex_);
    taken_.erase(slot);
    if (in_use && loads_running_ > 0)
        used_during_load_.insert(slot);
    if (!in_use && Mine(slot))
        free_.insert(slot);
}

void SlotAllocator::Free(uint64_t slot)
{
    std::lock_guard lock(mutex_);
    if (loaded_ && Mine(slot) && !taken_.count(slot))
        free_.insert(slot);
}

}  // namespace sdm
