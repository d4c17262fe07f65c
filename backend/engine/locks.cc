/* Process-level reader/writer locks, named by lockdep keys.
 *
 * One table mutex guards every entry's state; each entry has its own condition variable
 * for its waiters. A lock is named by its level and id only: the role (source or
 * destination) orders acquisitions for lockdep but an image is the same image in either
 * role, so both must exclude each other. The RW lock prefers writers (a waiting writer
 * holds back new readers) so a stream of readers cannot starve a delete or a resize; lock
 * order (lockdep) forbids taking one key twice, so the classic reader-reenters-behind-a-
 * writer deadlock cannot happen. The state is plain counters, so a guard may be released
 * on another thread than the one that took it (lockdep, being per-thread, will object).
 * Thread-safe; guards must not outlive their table. */
#include "backend/engine/locks.h"

#include <glib.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <utility>

#include "backend/engine/i18n.h"

namespace sdm {

namespace {

struct Entry {
    int readers = 0;
    bool writer = false;
    int waiting_writers = 0;
    int users = 0;  /* holders and waiters; the entry goes away when none remain */
    std::condition_variable changed;
};

using EntryName = std::pair<lockdep::Level, std::string>;

EntryName NameOf(const lockdep::Key &key) { return {key.level, key.id}; }

Status BusyError(const lockdep::Key &key, LockMode mode)
{
    const char *format =
        mode == LockMode::kExclusive
            ? _("cannot lock %s for a change: another operation on this host is using it; "
                "try again when that operation finishes")
            : _("cannot lock %s for reading: another operation on this host is changing "
                "it; try again when that operation finishes");
    g_autofree char *message = g_strdup_printf(format, key.ToString().c_str());
    Status status = Status::Error(ErrorCode::kBusy, message);
    switch (key.level) {
    case lockdep::Level::kDomain: status.WithDomain(key.id); break;
    case lockdep::Level::kImage: status.WithImage(key.id); break;
    case lockdep::Level::kVolume: status.WithVolume(key.id); break;
    case lockdep::Level::kOwner:
    case lockdep::Level::kAllocator: break;
    }
    return status;
}

}  // namespace

struct LockTable::Impl {
    std::mutex mutex;
    std::map<EntryName, Entry> entries;

    void DropUser(std::map<EntryName, Entry>::iterator it)
    {
        if (--it->second.users == 0)
            entries.erase(it);
    }
};

LockTable::LockTable() : impl_(std::make_unique<Impl>()) {}

LockTable::~LockTable() = default;

Result<LockGuard> LockTable::Lock(const lockdep::Key &key, LockMode mode,
                                  std::chrono::milliseconds timeout)
{
    if (key.kind != lockdep::Kind::kLock) {
        g_autofree char *message = g_strdup_printf(
            _("internal error: %s is a storage lease, not a local lock; take it through a "
              "LeaseManager (this is a bug, please report it)"),
            key.ToString().c_str());
        return Status::Error(ErrorCode::kInternal, message);
    }
    lockdep::WillAcquire(key);

    auto deadline = std::chrono::steady_clock::now() +
                    std::max(timeout, std::chrono::milliseconds::zero());
    std::unique_lock<std::mutex> lock(impl_->mutex);
    auto it = impl_->entries.try_emplace(NameOf(key)).first;
    Entry &entry = it->second;
    entry.users++;

    bool taken;
    if (mode == LockMode::kExclusive) {
        entry.waiting_writers++;
        taken = entry.changed.wait_until(lock, deadline, [&entry] {
            return !entry.writer && entry.readers == 0;
        });
        entry.waiting_writers--;
        if (taken)
            entry.writer = true;
        else if (entry.waiting_writers == 0)
            entry.changed.notify_all(); /* readers held back by this writer may go now */
    } else {
        taken = entry.changed.wait_until(lock, deadline, [&entry] {
            return !entry.writer && entry.waiting_writers == 0;
        });
        if (taken)
            entry.readers++;
    }
    if (!taken) {
        impl_->DropUser(it);
        return BusyError(key, mode);
    }
    lock.unlock();

    lockdep::Acquired(key);
    LockGuard guard;
    guard.table_ = this;
    guard.key_ = key;
    guard.mode_ = mode;
    return guard;
}

void LockTable::Unlock(const lockdep::Key &key, LockMode mode)
{
    lockdep::Released(key);

    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto it = impl_->entries.find(NameOf(key));
    if (it == impl_->entries.end())
        return;
    Entry &entry = it->second;
    if (mode == LockMode::kExclusive)
        entry.writer = false;
    else
        entry.readers--;
    if (!entry.writer && entry.readers == 0)
        entry.changed.notify_all();
    impl_->DropUser(it);
}

LockGuard::LockGuard(LockGuard &&other) noexcept
    : table_(std::exchange(other.table_, nullptr)),
      key_(std::move(other.key_)),
      mode_(other.mode_)
{
}

LockGuard &LockGuard::operator=(LockGuard &&other) noexcept
{
    if (this != &other) {
        Release();
        table_ = std::exchange(other.table_, nullptr);
        key_ = std::move(other.key_);
        mode_ = other.mode_;
    }
    return *this;
}

LockGuard::~LockGuard() { Release(); }

void LockGuard::Release()
{
    if (table_ != nullptr)
        std::exchange(table_, nullptr)->Unlock(key_, mode_);
}

}  // namespace sdm
