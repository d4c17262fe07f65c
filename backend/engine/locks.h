/* Process-level locks: reader/writer locks on the domain (its metadata) and on each image
 * (its chain and volume metadata), shared by every thread of the process.
 *
 * LockTable hands out named RW locks, creating them on first use and dropping them when
 * no thread holds or waits for them. Every acquire and release goes through lockdep.
 * Thread-safe. */
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "backend/engine/lockdep.h"
#include "sdm/status.h"

namespace sdm {

enum class LockMode { kShared, kExclusive };

class LockTable;

/* A held lock; releases on destruction (or Release()). Move-only. */
class LockGuard {
public:
    LockGuard() = default;
    LockGuard(LockGuard &&other) noexcept;
    LockGuard &operator=(LockGuard &&other) noexcept;
    LockGuard(const LockGuard &) = delete;
    LockGuard &operator=(const LockGuard &) = delete;
    ~LockGuard();

    void Release();
    bool held() const { return table_ != nullptr; }

private:
    friend class LockTable;
    LockTable *table_ = nullptr;
    lockdep::Key key_{lockdep::Level::kDomain, lockdep::Kind::kLock};
    LockMode mode_ = LockMode::kShared;
};

class LockTable {
public:
    LockTable();
    ~LockTable();

    /* Waits up to `timeout` for the lock named by key (kind must be kLock); kBusy after it. */
    Result<LockGuard> Lock(const lockdep::Key &key, LockMode mode,
                           std::chrono::milliseconds timeout);

private:
    friend class LockGuard;
    void Unlock(const lockdep::Key &key, LockMode mode);

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sdm
