/* Storage transactions: Begin, MakeDurable, Finish, and Recover, the one routine that
 * both a failing owner and the garbage collector run to settle a transaction. What each
 * operation leaves behind and how it is settled is in docs/transactions.md. */
#include "backend/engine/transaction.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/qemu_img.h"

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
    auto handle = leases.Acquire(slot, mode, timeout);
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
    std::string name = layout::TxDirName(marker.txid, marker.slot);
    if (mkdirat(domain.tx_dir(), name.c_str(), 0755) != 0)
        return Status::FromErrno(errno, _("cannot create transaction directory tx/") + name);
    domain.AddOwnTransaction(name);
    /* No Transaction reaches the caller, so nobody would settle the directory, and as this
     * process's own the collector would pass it by: remove it now (the owner still holds
     * the lease), and leave to the collector what cannot be removed. */
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
     * no description: the directory's name names the image and the lease, and the image
     * inside names the rest (ReadTransaction). Writing it would cost a data block per
     * create. The file is not synced here: until MakeDurable nothing outside this
     * directory exists, and a reader acts on it only while holding the lease, which the
     * owner holds now. */
    if (marker.op == meta::TxOp::kCreate && marker.new_image)
        return tx;
    Status written = fileio::WriteFileAt(tx.dir_.get(), layout::kMarker, meta::Encode(marker));
    if (!written.ok())
        return abandon(written);
    return tx;
}

std::string Transaction::RelPath(const std::string &name) const
{
    return std::string(layout::kTxDir) + "/" + dir_name_ + "/" + name;
}

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

Status Transaction::MakeDurable()
{
    Barrier barrier(domain_->sync_policy());
    SDM_RETURN_IF_ERROR(barrier.DataAt(dir_.get(), layout::kMarker, RelPath(layout::kMarker)));
    barrier.Dir(domain_->tx_dir(), layout::kTxDir);
    barrier.Dir(dir_.get(), RelPath(""));
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
        Step("gc.collect", nullptr);
    for (const auto &entry : *entries)
        if (entry != layout::kMarker)
            SDM_RETURN_IF_ERROR(fileio::RemoveTreeAt(dir->get(), entry));
    if (collector)
        Step("gc.remove-marker", nullptr);
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

static bool ExistsAt(int dirfd, const std::string &name)
{
    struct stat st;
    return fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* A marker that disagrees with the volume it names was not written by this engine for
 * that volume (a hostile or damaged domain): the collector must not act on it. */
static Status MarkerMismatch(const meta::Marker &m)
{
    return Status::Error(ErrorCode::kCorrupt,
                         _("marker of transaction ") + m.txid + _(" does not match volume ") +
                             m.image + "/" + m.volume +
                             _(" (name or lease slot differ); left alone: inspect it and remove "
                               "the transaction directory by hand"));
}

/* A committed create or clone is indexed, if its metadata is the one the marker made. */
static Status RollForwardCreate(FileDomain &domain, const meta::Marker &m)
{
    auto image = domain.ReadImage(m.image);
    if (!image.ok())
        return image.status();
    const meta::VolumeMeta *v = image->Find(m.volume);
    if (!v || v->name != m.name || v->slot != m.slot)
        return MarkerMismatch(m);
    SDM_RETURN_IF_ERROR(domain.AddIndex(m.name, m.slot, m.image, m.volume));
    /* After a crash the commit itself may not be durable yet: sync it with the index. */
    return m.new_image ? domain.SyncNamespace(domain.images_dir(), layout::kImagesDir)
                       : domain.SyncNamespace(image->dir.get(), layout::ImagePath(m.image));
}

/* A grow that did not commit is undone, so the data is no larger than its metadata says. */
static Status UndoGrow(FileDomain &domain, const meta::Marker &m)
{
    auto image = fileio::OpenDirAt(domain.images_dir(), m.image);
    if (!image.ok())
        return image.status().code() == ErrorCode::kNotFound ? Status::Ok() : image.status();
    auto meta = domain.ReadVolumeMeta(image->get(), m.image, m.volume);
    if (!meta.ok())
        return meta.status().code() == ErrorCode::kNotFound ? Status::Ok() : meta.status();
    if (meta->slot != m.slot || meta->name != m.name)
        return MarkerMismatch(m);
    (void)unlinkat(image->get(), (layout::MetaFile(m.volume) + layout::kTempSuffix).c_str(), 0);
    if (meta->capacity != m.old_capacity)
        return Status::Ok();
    /* O_NONBLOCK: a FIFO planted there must not hang the collector. Only a regular file
     * with no other name is the volume's: through a hard link the shrink would cut a file
     * outside the domain, and qemu-img below must not meet anything else. */
    auto data = fileio::OpenAt(image->get(), m.volume, O_WRONLY | O_NONBLOCK);
    if (!data.ok())
        return data.status();
    struct stat st;
    if (fstat(data->get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)
        return Status::Error(ErrorCode::kCorrupt,
                             layout::VolumePath(m.image, m.volume) +
                                 _(" is not a regular file with one name, so it is not the "
                                   "volume's data; left alone: inspect it and remove it by "
                                   "hand"));
    if (meta->format == VolumeFormat::kRaw) {
        if (static_cast<uint64_t>(st.st_size) > m.old_capacity &&
            ftruncate(data->get(), static_cast<off_t>(m.old_capacity)) != 0)
            return Status::FromErrno(errno, _("cannot undo the grow of ") +
                                                layout::VolumePath(m.image, m.volume));
        return fileio::FsyncFd(data->get(), layout::VolumePath(m.image, m.volume));
    }
    std::string path = domain.AbsPath(layout::VolumePath(m.image, m.volume));
    auto info = qemu::Info(path);
    if (!info.ok())
        return info.status();
    if (info->virtual_size > m.old_capacity)
        return qemu::Resize(path, meta->format, m.old_capacity, true);
    return Status::Ok();
}

/* The marker of a new-image transaction whose commit is on storage, from the image. */
static std::optional<meta::Marker> DeriveMarker(FileDomain &domain, const layout::TxName &name)
{
    auto image = domain.ReadImage(name.txid);
    if (!image.ok())
        return std::nullopt;
    for (const auto &v : image->volumes) {
        if (v.slot != name.slot)
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
        read.marker = DeriveMarker(domain, name);
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

static Result<bool> Settle(FileDomain &domain, const std::string &dir_name,
                           const meta::Marker *m)
{
    bool forward = false;
    if (m) {
        std::string image_rel = layout::ImagePath(m->image);
        switch (m->op) {
        case meta::TxOp::kCreate:
        case meta::TxOp::kClone: {
            std::string committed_name = m->new_image ? image_rel
                                                      : layout::MetaPath(m->image, m->volume);
            forward = ExistsAt(domain.root(), committed_name);
            if (forward) {
                SDM_RETURN_IF_ERROR(RollForwardCreate(domain, *m));
            } else if (!m->new_image) {
                /* A layer's data is placed in its image just before the commit. */
                auto image = fileio::OpenDirAt(domain.images_dir(), m->image);
                if (image.ok())
                    SDM_RETURN_IF_ERROR(fileio::RemoveTreeAt(image->get(), m->volume));
            }
            break;
        }
        case meta::TxOp::kDelete: {
            std::string live_name = m->new_image ? image_rel : layout::MetaPath(m->image, m->volume);
            forward = !ExistsAt(domain.root(), live_name);
            if (forward) {
                fileio::Fd image;
                if (!m->new_image) {
                    auto dir = fileio::OpenDirAt(domain.images_dir(), m->image);
                    if (dir.ok()) {
                        SDM_RETURN_IF_ERROR(fileio::RemoveTreeAt(dir->get(), m->volume));
                        image = std::move(*dir);
                    }
                }
                SDM_RETURN_IF_ERROR(domain.RemoveIndex(m->name, m->slot, m->image, m->volume));
                SDM_RETURN_IF_ERROR(image.valid()
                                        ? domain.SyncNamespace(image.get(), image_rel)
                                        : domain.SyncNamespace(domain.images_dir(),
                                                               layout::kImagesDir));
            }
            break;
        }
        case meta::TxOp::kResize: {
            SDM_RETURN_IF_ERROR(UndoGrow(domain, *m));
            break;
        }
        }
    }
    SDM_RETURN_IF_ERROR(RemoveTransactionDir(domain, dir_name, true));
    return forward;
}

Result<bool> Recover(FileDomain &domain, const std::string &dir_name, const meta::Marker *m)
{
    auto settled = Settle(domain, dir_name, m);
    /* Settled or not, an owner is done with it: what failed is the collector's to retry,
     * in this process too. */
    domain.RemoveOwnTransaction(dir_name);
    return settled;
}

}  // namespace sdm
