/* Storage transactions: Begin, MakeDurable, Finish, ReadTransaction, and Recover, the one
 * routine that both a failing owner and the garbage collector run to settle a
 * transaction; each operation's own recovery is in its recipe (backend/engine/recipes/).
 * docs/transactions.md says what each operation leaves behind and how it is settled. */
#include "backend/engine/transaction.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/recipes/recipes.h"

namespace sdm {

LeaseGuard::LeaseGuard(LeaseGuard &&other) noexcept
    : handle_(std::move(other.handle_)), key_(std::move(other.key_))
{
}

LeaseGuard &LeaseGuard::operator=(LeaseGuard &&other) noexcept
{
    if (this != &other) {
        Release();
        handle_ = std::move(other.handle_);
        key_ = std::move(other.key_);
    }
    return *this;
}

Result<LeaseGuard> LeaseGuard::Volume(LeaseManager &leases, uint64_t slot, LeaseMode mode,
                                      lockdep::Role role, std::chrono::milliseconds timeout)
{
    lockdep::Key key{lockdep::Level::kVolume, lockdep::Kind::kLease, role,
                     layout::SlotName(slot)};
    lockdep::WillAcquire(key);
    auto handle = leases.Acquire(LeaseArea::kLeases, slot, mode, timeout);
    if (!handle.ok())
        return handle.status();
    lockdep::Acquired(key);
    LeaseGuard guard;
    guard.handle_ = std::move(*handle);
    guard.key_ = key;
    return guard;
}

void LeaseGuard::Release()
{
    if (!handle_)
        return;
    lockdep::Released(key_);
    handle_.reset();
}

Transaction::Transaction(FileDomain &domain, meta::Marker marker, std::string dir_name,
                         fileio::Fd dir)
    : domain_(&domain), marker_(std::move(marker)), dir_name_(std::move(dir_name)),
      dir_(std::move(dir))
{
}

Result<Transaction> Transaction::Begin(FileDomain &domain, const meta::Marker &marker)
{
    std::string name = layout::TxDirName({marker.txid, marker.slot, domain.owner()});
    if (mkdirat(domain.tx_dir(), name.c_str(), 0755) != 0)
        return Status::FromErrno(errno, _("cannot create transaction directory tx/") + name);
    domain.AddOwnTransaction(name);
    /* No Transaction reaches the caller, so nobody would settle the directory, and as this
     * process's own the collector would pass it by: remove it now, and leave to the
     * collector what cannot be removed. */
    auto abandon = [&](const Status &status) {
        (void)fileio::RemoveTreeAt(domain.tx_dir(), name);
        domain.RemoveOwnTransaction(name);
        return status;
    };
    Transaction tx(domain, marker, name, fileio::Fd());
    auto dir = fileio::OpenDirAt(domain.tx_dir(), name);
    if (!dir.ok())
        return abandon(dir.status());
    if (fchmod(dir->get(), 0755) != 0) /* whatever the umask */
        return abandon(Status::FromErrno(errno, _("cannot set the mode of tx/") + name));
    tx.dir_ = std::move(*dir);
    /* The directory is the marker; the file describes it. A create of a new image needs
     * no description: the directory's name names the image, and the image inside (or, once
     * committed, in images/) names the rest (ReadTransaction). Writing it would cost a data
     * block per create. The file is not synced here: until MakeDurable nothing outside
     * this directory exists but the name claim, which the directory's contents name. */
    if (marker.op == meta::TxOp::kCreate && marker.new_image)
        return tx;
    Status written = fileio::WriteFileAt(tx.dir_.get(), layout::kMarker, meta::Encode(marker));
    if (!written.ok())
        return abandon(written);
    return tx;
}

std::string Transaction::Rel() const { return std::string(layout::kTxDir) + "/" + dir_name_; }

std::string Transaction::RelPath(const std::string &name) const { return Rel() + "/" + name; }

Result<fileio::Fd> Transaction::MakeImageDir(const std::string &image)
{
    if (mkdirat(dir_.get(), image.c_str(), 0755) != 0)
        return Status::FromErrno(errno, RelPath(image));
    auto dir = fileio::OpenDirAt(dir_.get(), image);
    /* Whatever the umask: the hypervisor's user must reach the data files inside. */
    if (dir.ok() && fchmod(dir->get(), 0755) != 0)
        return Status::FromErrno(errno, RelPath(image));
    return dir;
}

Status Transaction::AddTo(Barrier &barrier)
{
    SDM_RETURN_IF_ERROR(barrier.DataAt(dir_.get(), layout::kMarker, RelPath(layout::kMarker)));
    barrier.Dir(domain_->tx_dir(), layout::kTxDir);
    barrier.Dir(dir_.get(), Rel());
    return Status::Ok();
}

Status Transaction::MakeDurable()
{
    Barrier barrier(domain_->sync_policy());
    SDM_RETURN_IF_ERROR(AddTo(barrier));
    return barrier.Sync();
}

/* Removes a transaction directory: its garbage first, the marker last. */
static Status RemoveTransactionDir(FileDomain &domain, const std::string &dir_name,
                                   bool collector)
{
    auto dir = fileio::OpenDirAt(domain.tx_dir(), dir_name);
    if (!dir.ok())
        return dir.status().code() == ErrorCode::kNotFound ? Status::Ok() : dir.status();
    auto entries = fileio::ListDirAt(dir->get(), ".");
    if (!entries.ok())
        return entries.status();
    if (collector)
        Step(steps::gc::kCollect, nullptr);
    for (const auto &entry : *entries)
        if (entry != layout::kMarker)
            SDM_RETURN_IF_ERROR(fileio::RemoveTreeAt(dir->get(), entry));
    if (collector)
        Step(steps::gc::kRemoveMarker, nullptr);
    if (unlinkat(dir->get(), layout::kMarker, 0) != 0 && errno != ENOENT)
        return Status::FromErrno(errno, _("cannot remove marker of tx/") + dir_name);
    if (unlinkat(domain.tx_dir(), dir_name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        return Status::FromErrno(errno, _("cannot remove transaction directory tx/") + dir_name);
    return Status::Ok();
}

Status Transaction::Finish()
{
    Status status = RemoveTransactionDir(*domain_, dir_name_, false);
    domain_->RemoveOwnTransaction(dir_name_);
    return status;
}

/* The marker of a new image's create, from the volume on the directory's slot in the image
 * `image_dir` (images/<txid> once committed, else the directory's own <txid>/). */
static std::optional<meta::Marker> DeriveMarker(FileDomain &domain, int parent,
                                                const layout::TxName &name)
{
    auto image = domain.ReadImageAt(parent, name.txid);
    if (!image.ok())
        return std::nullopt;
    for (const auto &v : image->volumes) {
        if (v.slot != name.slot || !v.parent.empty())
            continue;
        meta::Marker m;
        m.txid = name.txid;
        m.op = meta::TxOp::kCreate;
        m.slot = name.slot;
        m.image = v.image;
        m.volume = v.uuid;
        m.name = v.name;
        m.new_image = true;
        m.format = v.format;
        return m;
    }
    return std::nullopt;
}

TxRead ReadTransaction(FileDomain &domain, const std::string &dir_name, const layout::TxName &name)
{
    TxRead read;
    auto dir = fileio::OpenDirAt(domain.tx_dir(), dir_name);
    if (!dir.ok()) {
        read.gone = dir.status().code() == ErrorCode::kNotFound;
        read.problem = dir.status().message();
        return read;
    }
    auto text = fileio::ReadSmallFileAt(dir->get(), layout::kMarker, meta::kMaxFileSize);
    auto marker = text.ok() ? meta::DecodeMarker(*text, std::string(layout::kTxDir) + "/" +
                                                            dir_name + "/" + layout::kMarker)
                            : Result<meta::Marker>(text.status());
    if (!marker.ok()) {
        read.problem = marker.status().code() == ErrorCode::kNotFound
                           ? _("no marker file: a new image's create")
                           : marker.status().message();
        read.marker = DeriveMarker(domain, domain.images_dir(), name);
        if (!read.marker)
            read.marker = DeriveMarker(domain, dir->get(), name);
        read.derived = read.marker.has_value();
        return read;
    }
    if (marker->slot != name.slot || marker->txid != name.txid) {
        read.hostile = true;
        read.problem = _("the marker names transaction ") + marker->txid + _(" on lease slot ") +
                       std::to_string(marker->slot) + _(", not its directory's");
        return read;
    }
    read.marker = std::move(*marker);
    return read;
}

Result<bool> Recover(FileDomain &domain, const std::string &dir_name, const meta::Marker *m)
{
    auto settled = [&]() -> Result<bool> {
        bool forward = false;
        if (m) {
            Result<bool> done = false;
            switch (m->op) {
            case meta::TxOp::kCreate:
            case meta::TxOp::kClone:
                done = recipes::SettleCreate(domain, dir_name, *m);
                break;
            case meta::TxOp::kDelete:
                done = recipes::SettleDelete(domain, *m);
                break;
            case meta::TxOp::kResize:
                done = recipes::SettleResize(domain, *m);
                break;
            }
            if (!done.ok())
                return done.status();
            forward = *done;
        }
        SDM_RETURN_IF_ERROR(RemoveTransactionDir(domain, dir_name, true));
        return forward;
    }();
    /* Settled or not, an owner is done with it: what failed is the collector's to retry,
     * in this process too. */
    domain.RemoveOwnTransaction(dir_name);
    return settled;
}

}  // namespace sdm
