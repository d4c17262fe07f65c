/* Storage transactions and the lease guards they hold.
 *
 * A Transaction is the on-storage life of one metadata operation:
 *
 *   Begin        mkdir tx/<txid>-<slot>-<owner>-<incarnation>/ - the marker - and write
 *                the file describing it (not yet durable; a new image's create writes
 *                none). The directory's name names the owner whose owner lease protects
 *                it, so even a torn or missing description tells the collector whom to
 *                probe.
 *   (garbage)    the operation builds its new objects inside the transaction directory;
 *                its name claim (images/@<name>) is the one change outside it made before
 *                the first barrier, and the directory's contents name it.
 *   MakeDurable  fsync marker, directory and tx/. Only after this may the operation touch
 *                anything else outside its directory.
 *   (commit)     one rename, done by the operation.
 *   Finish       removes what is left in the directory, the marker last.
 *
 * On failure the owner calls Recover() on its own transaction: the same code the garbage
 * collector runs, which examines storage and rolls forward (commit happened) or back. The
 * recipe of each operation (backend/engine/recipes/) holds its forward steps and its
 * recovery side by side. A Transaction is used by one thread; its owner holds its owner
 * lease from before Begin until after Finish or Recover. */
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "backend/engine/durability.h"
#include "backend/engine/fileio.h"
#include "backend/engine/layout.h"
#include "sdm/lease.h"
#include "backend/engine/lockdep.h"
#include "backend/engine/metadata.h"
#include "sdm/status.h"

namespace sdm {

class FileDomain;

/* A lease held by this thread, recorded with lockdep. Move-only; releases on destruction. */
class LeaseGuard {
public:
    LeaseGuard() = default;
    LeaseGuard(LeaseGuard &&other) noexcept;
    LeaseGuard &operator=(LeaseGuard &&other) noexcept;
    LeaseGuard(const LeaseGuard &) = delete;
    LeaseGuard &operator=(const LeaseGuard &) = delete;
    ~LeaseGuard() { Release(); }

    /* Volume lease on `slot`; timeout 0 tries once. kBusy says the volume is in use. */
    static Result<LeaseGuard> Volume(LeaseManager &leases, uint64_t slot, LeaseMode mode,
                                     lockdep::Role role, std::chrono::milliseconds timeout);
    void Release();
    bool held() const { return handle_ != nullptr; }

private:
    std::unique_ptr<LeaseHandle> handle_;
    lockdep::Key key_{lockdep::Level::kVolume, lockdep::Kind::kLease};
};

class Transaction {
public:
    Transaction(Transaction &&) noexcept = default;
    Transaction &operator=(Transaction &&) noexcept = default;

    static Result<Transaction> Begin(FileDomain &domain, const meta::Marker &marker);

    int dirfd() const { return dir_.get(); }
    const std::string &dir_name() const { return dir_name_; }
    /* Path of the transaction directory relative to the domain root. */
    std::string Rel() const;
    /* Path of `name` inside the transaction directory, relative to the domain root. */
    std::string RelPath(const std::string &name) const;
    const meta::Marker &marker() const { return marker_; }

    /* Makes the directory of a new image inside the transaction and opens it. */
    Result<fileio::Fd> MakeImageDir(const std::string &image);

    Status MakeDurable();
    /* Registers what MakeDurable syncs with `barrier`, for an operation that makes the
     * marker durable in the same barrier as its garbage. */
    Status AddTo(Barrier &barrier);
    Status Finish();

private:
    Transaction(FileDomain &domain, meta::Marker marker, std::string dir_name, fileio::Fd dir);

    FileDomain *domain_;
    meta::Marker marker_;
    std::string dir_name_;
    fileio::Fd dir_;
};

/* What a transaction directory says about itself. A transaction that makes a new image
 * takes the image's UUID as its txid and writes no marker file: its marker is rebuilt
 * (`derived`) from the volume on the directory's slot in images/<txid> (committed) or in
 * the directory's own <txid>/ (not yet). */
struct TxRead {
    bool gone = false;                  /* the directory vanished: finished meanwhile */
    std::optional<meta::Marker> marker; /* empty: unreadable, and nothing to derive it from */
    bool derived = false;
    bool hostile = false;               /* valid, but disagrees with its directory's name */
    std::string problem;                /* why the marker could not be used */
};
TxRead ReadTransaction(FileDomain &domain, const std::string &dir_name, const layout::TxName &name);

/* Completes or undoes the transaction in tx/<dir_name> as storage shows it; `marker` is
 * null when the marker is unreadable (then nothing but the directory and perhaps an
 * orphaned name claim can exist; a later create of that name removes the claim). The
 * caller is the transaction's owner (the operation itself, or a collector that took the
 * directory over). Returns whether it rolled forward. Idempotent. */
Result<bool> Recover(FileDomain &domain, const std::string &dir_name, const meta::Marker *marker);

}  // namespace sdm
