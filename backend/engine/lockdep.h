/* The lock-order checker: the kernel's lockdep idea, for the talk's rules.
 *
 * Every lease and local lock the engine takes is described by a Key. Keys are totally
 * ordered: container level (domain < owner < image < volume < allocator), then kind
 * (storage lease before local lock at the same level), then role (source before destination), then a
 * stable id. A thread may only acquire a key greater than every key it holds, and must
 * release the newest first. A violation calls the violation handler (by default: print
 * both keys and abort) - so a test fails on any violation. The checker keeps per-thread
 * state only; it is thread-safe. It is on unless SDM_LOCKDEP=0 is in the environment. */
#pragma once

#include <functional>
#include <string>

namespace sdm::lockdep {

/* kOwner: another owner's lease, probed by the collector; an attachment's own domain and
 * owner leases are held by the process, not by a thread, and are not recorded. */
enum class Level { kDomain = 0, kOwner = 1, kImage = 2, kVolume = 3, kAllocator = 4 };
enum class Kind { kLease = 0, kLock = 1 };
enum class Role { kNone = 0, kSource = 1, kDestination = 2 };

struct Key {
    Level level;
    Kind kind;
    Role role = Role::kNone;
    std::string id = {}; /* "= {}" lets Key{level, kind} pass -Wmissing-field-initializers */

    std::string ToString() const; /* e.g. "volume lease (source) 3" */
};

/* -1, 0, 1 in the total order above. */
int Compare(const Key &a, const Key &b);

/* Call before blocking on the lock: checks the order against every lock this thread holds. */
void WillAcquire(const Key &key);
/* Call once the lock is held (after WillAcquire). */
void Acquired(const Key &key);
/* Call when releasing: checks that `key` is this thread's newest lock. */
void Released(const Key &key);

/* Keys the calling thread holds, oldest first (for tests and error messages). */
std::string HeldByThisThread();

/* Replaces the violation handler; returns the previous one. Tests install one that records. */
using ViolationHandler = std::function<void(const std::string &message)>;
ViolationHandler SetViolationHandler(ViolationHandler handler);

bool Enabled();

}  // namespace sdm::lockdep
