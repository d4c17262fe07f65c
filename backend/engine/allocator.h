/* The volume lease slots of one owner: handed out without asking another host.
 *
 * Slots come in chunks of layout::kChunkSlots. An owner claims a chunk by making the
 * symlink chunks/<chunk> -> <owner> (EEXIST: another owner has it, try the next), makes the
 * claim durable, writes the chunk's volume leases (InitChunk), and from then on hands out
 * its slots by itself: no other owner writes those leases or hands out those slots, so a
 * create takes a slot with neither a storage round trip nor a sanlock call. A chunk stays
 * its owner's: the next incarnation of the same owner (an sdmd restart, the same host id)
 * uses it again.
 *
 * Which slots of its chunks are free is learnt from storage (the slots of committed volumes
 * and of pending transactions) when the first slot is wanted, and again whenever the
 * chunks seem full (other hosts' deletes free slots without telling). Slots handed out are
 * "taken" until their transaction ends: Settle says whether storage now uses the slot.
 * When fewer than kLowWater slots are free, one more chunk is claimed and initialised on a
 * thread of the allocator's, so that creates do not wait for sanlock to write 64 leases.
 *
 * Thread-safe. The allocator's lock is a leaf: nothing else is taken while it is held.
 * Claiming a chunk takes a second lock (one claim at a time), never while holding the
 * first. */
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>

#include "sdm/status.h"

namespace sdm {

class FileDomain;

class SlotAllocator {
public:
    /* Below this many free slots, a chunk is claimed ahead of need. */
    static constexpr size_t kLowWater = 16;

    explicit SlotAllocator(FileDomain &domain);
    ~SlotAllocator();
    SlotAllocator(const SlotAllocator &) = delete;
    SlotAllocator &operator=(const SlotAllocator &) = delete;

    /* A free slot of this owner's chunks, now taken. Claims a chunk first if none is free
     * (the first create of an owner, or a burst faster than the refill). */
    Result<uint64_t> Take();
    /* The transaction that took `slot` ended: storage uses it now (a committed volume) or
     * not (rolled back). A slot still named by an unsettled transaction directory must be
     * settled as in use; the collector's sweep and the next Load free it. */
    void Settle(uint64_t slot, bool in_use);
    /* A volume of this owner's chunks was deleted by this process: its slot is free. */
    void Free(uint64_t slot);
    /* Learns this owner's chunks and claims one ahead if fewer than kLowWater slots are
     * free, on the refill thread: the attachment's first create then takes a slot at
     * once. */
    void Prime();
    /* Ends the refill thread; no Take after it. */
    void Stop();

    /* For check and tests: the chunks this owner holds, as last read. */
    std::set<uint64_t> chunks();

private:
    Status LoadLocked(std::unique_lock<std::mutex> &lock);
    /* Claims and initialises one more chunk; takes claim_mutex_, never mutex_ across I/O. */
    Status ClaimChunk();
    void RefillLoop();
    bool Mine(uint64_t slot) const;

    FileDomain &domain_;
    std::mutex claim_mutex_;        /* one chunk claim at a time; taken before mutex_ */
    std::mutex mutex_;              /* guards everything below */
    std::condition_variable wake_;
    bool loaded_ = false;
    std::set<uint64_t> mine_;       /* chunks claimed by this owner */
    std::set<uint64_t> free_;       /* free slots of those chunks */
    std::set<uint64_t> taken_;      /* handed out, transaction not yet ended */
    /* Slots settled in use while a load read storage: the load may have looked before
     * their transactions showed, so it must not count them free. */
    int loads_running_ = 0;
    std::set<uint64_t> used_during_load_;
    uint64_t chunk_hint_ = 0;       /* where the next claim starts looking */
    bool refill_wanted_ = false;
    bool stopping_ = false;
    std::thread refill_;            /* started with the first Take; a failed refill shows
                                       at the Take that then finds no free slot */
};

}  // namespace sdm
