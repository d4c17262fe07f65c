/* Volume data: upload, download and wipe; and the removal of an empty domain.
 *
 * Writing a volume's data changes no namespace, so it is not a storage transaction. It
 * follows VDSM's rule for writing into a volume instead: under the volume's exclusive
 * lease, the metadata says ILLEGAL (generation + 1) before the first byte is written, and
 * LEGAL again (generation + 1) only once the data is durable. A crash or a failure in
 * between leaves an ILLEGAL volume that no consumer uses and that check reports; writing
 * its data again or deleting it are the ways out (docs/data-operations.md). The domain
 * lease is held only while the volume is marked: a transfer lasts as long as its client
 * streams, and other hosts' metadata operations must not wait for it. A download reads
 * under the shared lease and changes nothing. Thread-safe like every Domain operation. */
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/engine/domain_impl.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
#include "backend/engine/qemu_img.h"

namespace sdm {

namespace {

constexpr size_t kChunk = 1 << 20;
/* Zero detection granularity of an upload: an all-zero piece becomes a hole. */
constexpr size_t kPiece = 64 << 10;
/* How often a transfer waiting for its peer looks for a cancel request. */
constexpr int kPollMs = 250;
/* An upload keeps at most this much written but not yet on disk: the fsync at its end,
 * which libvirt's stream finish waits for on libvirtd's event loop, then has little to
 * do whatever the size of the upload (docs/data-operations.md). */
constexpr uint64_t kWriteBehind = 32 << 20;

Status CancelCheck(OpObserver *observer)
{
    if (observer && observer->CancelRequested())
        return Status::Error(ErrorCode::kCancelled, _("the operation was cancelled"));
    return Status::Ok();
}

/* Waits until `fd` is ready for `events`, looking for a cancel request meanwhile. */
Status WaitReady(int fd, short events, OpObserver *observer)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int ready = poll(&p, 1, kPollMs);
        if (ready > 0)
            return Status::Ok();
        if (ready < 0 && errno != EINTR)
            return Status::FromErrno(errno, _("waiting for the data stream"));
        SDM_RETURN_IF_ERROR(CancelCheck(observer));
    }
}

/* Starts writeback of [from, to) of a file being written, and waits for what lies more
 * than kWriteBehind behind `to` (from `*waited` on, which it advances). An error here is
 * the data's (it would not show in the final fsync once reported here). */
Status WriteBehind(int fd, uint64_t from, uint64_t to, uint64_t *waited, const std::string &what)
{
    if (to > from && sync_file_range(fd, static_cast<off_t>(from), static_cast<off_t>(to - from),
                                     SYNC_FILE_RANGE_WRITE) != 0)
        return Status::FromErrno(errno, what);
    if (to < *waited + kWriteBehind)
        return Status::Ok();
    uint64_t until = to - kWriteBehind;
    if (sync_file_range(fd, static_cast<off_t>(*waited), static_cast<off_t>(until - *waited),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER) != 0)
        return Status::FromErrno(errno, what);
    *waited = until;
    return Status::Ok();
}

/* Reads up to `size` bytes, fewer only at EOF. */
Result<size_t> ReadFull(int fd, char *buf, size_t size, OpObserver *observer)
{
    size_t got = 0;
    while (got < size) {
        SDM_RETURN_IF_ERROR(WaitReady(fd, POLLIN, observer));
        ssize_t n = read(fd, buf + got, size - got);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return Status::FromErrno(errno, _("reading the upload stream"));
        }
        got += static_cast<size_t>(n);
    }
    return got;
}

Status WriteFull(int fd, const char *buf, size_t size, OpObserver *observer)
{
    while (size > 0) {
        SDM_RETURN_IF_ERROR(WaitReady(fd, POLLOUT, observer));
        ssize_t n = write(fd, buf, size);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            if (errno == EPIPE)
                return Status::Error(ErrorCode::kIoError,
                                     _("the reader of the download went away before its end "
                                       "(the client aborted or lost its connection)"));
            return Status::FromErrno(errno, _("writing the download stream"));
        }
        buf += n;
        size -= static_cast<size_t>(n);
    }
    return Status::Ok();
}

bool AllZero(const char *buf, size_t size)
{
    return size == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, size - 1) == 0);
}

/* Makes [offset, offset + size) of `fd` read as zeros: a hole where the filesystem can punch
 * one (keeping the size), written zeros where it cannot. */
Status ZeroRange(int fd, uint64_t offset, uint64_t size, bool keep_allocation,
                 const std::string &what)
{
    int mode = (keep_allocation ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE) |
               FALLOC_FL_KEEP_SIZE;
    if (fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(size)) == 0)
        return Status::Ok();
    if (errno != EOPNOTSUPP)
        return Status::FromErrno(errno, what);
    static const std::vector<char> zeros(kChunk, 0);
    while (size > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(size, zeros.size()));
        ssize_t done = pwrite(fd, zeros.data(), n, static_cast<off_t>(offset));
        if (done < 0 && errno == EINTR)
            continue;
        if (done <= 0)
            return Status::FromErrno(done < 0 ? errno : EIO, what);
        offset += static_cast<uint64_t>(done);
        size -= static_cast<uint64_t>(done);
    }
    return Status::Ok();
}

Status PWriteFull(int fd, const char *buf, size_t size, uint64_t offset, const std::string &what)
{
    while (size > 0) {
        ssize_t n = pwrite(fd, buf, size, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return Status::FromErrno(n < 0 ? errno : EIO, what);
        buf += n;
        size -= static_cast<size_t>(n);
        offset += static_cast<uint64_t>(n);
    }
    return Status::Ok();
}

/* A volume being written: its exclusive lease, its image directory and its metadata as
 * marked ILLEGAL. */
struct Writing {
    LeaseGuard lease;
    fileio::Fd image_dir;
    meta::VolumeMeta volume;
    bool was_legal = false;
};

/* Marks the volume `name` ILLEGAL under the domain lease and its image lock (so that no
 * layer is made on it meanwhile, here or on another host) and keeps only its exclusive
 * lease. Lockdep's order forbids keeping a volume lease while giving back the domain
 * lease taken before it, so the lease is given back too and taken again at once; the
 * generation then proves that nobody wrote the metadata in between. */
Result<Writing> BeginWrite(FileDomain &domain, const std::string &name, OpRun &run,
                           const std::function<Status(const meta::VolumeMeta &)> &check)
{
    Writing w;
    {
        auto scope = domain.LockVolume(name, run);
        if (!scope.ok())
            return scope.status();
        w.volume = scope->volume;
        if (!scope->image.IsLeaf(w.volume.uuid))
            return Status::Error(ErrorCode::kBusy,
                                 Printf(_("volume '%s' is the backing volume of a snapshot "
                                          "layer, whose data depends on it; delete the layers "
                                          "first"),
                                        name.c_str()));
        if (!w.volume.parent.empty())
            return Status::Error(ErrorCode::kUnsupported,
                                 Printf(_("volume '%s' is a snapshot layer: writing its file "
                                          "would cut it from its backing volume; clone it "
                                          "(which flattens it) and write the clone"),
                                        name.c_str()));
        SDM_RETURN_IF_ERROR(check(w.volume));
        auto lease = LeaseGuard::Volume(domain.leases(), w.volume.slot, LeaseMode::kExclusive,
                                        lockdep::Role::kNone, kTryOnce);
        if (!lease.ok())
            return VolumeBusy(name, lease.status());
        w.was_legal = w.volume.legality == Legality::kLegal;
        w.volume.legality = Legality::kIllegal;
        w.volume.generation++;
        SDM_RETURN_IF_ERROR(fileio::AtomicWriteAt(scope->image.dir.get(),
                                                  layout::MetaFile(w.volume.uuid),
                                                  meta::Encode(w.volume)));
    }
    auto lease = LeaseGuard::Volume(domain.leases(), w.volume.slot, LeaseMode::kExclusive,
                                    lockdep::Role::kNone, kTryOnce);
    if (!lease.ok())
        return Status::Error(ErrorCode::kBusy,
                             Printf(_("volume '%s' was marked ILLEGAL for the write, but another "
                                      "user took its lease before any data was written (%s); "
                                      "write its data again once that user is done, or delete "
                                      "it"),
                                    name.c_str(), lease.status().message().c_str()));
    w.lease = std::move(*lease);
    auto dir = fileio::OpenDirAt(domain.images_dir(), w.volume.image);
    if (!dir.ok())
        return dir.status();
    auto now = domain.ReadVolumeMeta(dir->get(), w.volume.image, w.volume.uuid);
    if (!now.ok())
        return now.status();
    if (now->generation != w.volume.generation)
        return Status::Error(ErrorCode::kBusy,
                             Printf(_("volume '%s' was changed by another operation while this "
                                      "one marked it for writing; try again"),
                                    name.c_str()));
    w.image_dir = std::move(*dir);
    return w;
}

/* Writes the volume's metadata as `legal` says (generation + 1) under the lease still
 * held, and returns the volume as it now is. */
Result<VolumeInfo> FinishWrite(FileDomain &domain, Writing &w, bool legal)
{
    w.volume.legality = legal ? Legality::kLegal : Legality::kIllegal;
    w.volume.generation++;
    SDM_RETURN_IF_ERROR(fileio::AtomicWriteAt(w.image_dir.get(), layout::MetaFile(w.volume.uuid),
                                              meta::Encode(w.volume)));
    auto image = domain.ReadImage(w.volume.image);
    if (!image.ok())
        return image.status();
    const meta::VolumeMeta *m = image->Find(w.volume.uuid);
    if (!m)
        return Status::Error(ErrorCode::kNotFound,
                             Printf(_("volume '%s' vanished while its lease was held; run "
                                      "check"),
                                    w.volume.name.c_str()));
    return domain.ToInfo(*image, *m);
}

/* The error of a write that changed data: the volume stays ILLEGAL, and the user must know. */
Status LeftIllegal(const Status &status, const std::string &name)
{
    return Status::Error(status.code(),
                         status.message() +
                             Printf(_("; volume '%s' now holds incomplete data and stays "
                                      "ILLEGAL: write its data again or delete it"),
                                    name.c_str()),
                         status.context());
}

/* After a qcow2 upload: the file must be a qcow2 image without a backing file (a backing
 * file name from outside would make the engine follow it); its virtual size becomes the
 * volume's capacity. */
Status AdoptUploadedQcow2(const std::string &path, meta::VolumeMeta *m)
{
    auto info = qemu::Info(path);
    if (!info.ok())
        return info.status();
    if (info->format != "qcow2" || !info->backing_filename.empty() || info->virtual_size == 0 ||
        info->virtual_size > meta::kMaxCapacity)
        return Status::Error(ErrorCode::kInvalidArgument,
                             Printf(_("the uploaded data of qcow2 volume '%s' is not a qcow2 image "
                                      "without a backing file (qemu-img sees %s%s%s); upload a "
                                      "standalone qcow2 image"),
                                    m->name.c_str(), info->format.c_str(),
                                    info->backing_filename.empty() ? "" : _(" backed by "),
                                    info->backing_filename.c_str()));
    m->capacity = info->virtual_size;
    return Status::Ok();
}

}  // namespace

Result<VolumeInfo> FileDomain::UploadVolume(const std::string &name, const UploadSource &source,
                                            uint64_t offset, uint64_t length,
                                            OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Enter("upload.begin");
    if (status.ok() && source.fd < 0)
        status = Status::Error(ErrorCode::kInvalidArgument,
                               _("no descriptor to read the upload from; pass one"));
    if (!status.ok())
        return run.Fail(status);
    auto w = BeginWrite(*this, name, run, [&](const meta::VolumeMeta &m) -> Status {
        if (m.format != VolumeFormat::kRaw)
            return Status::Ok();
        if (offset >= m.capacity || length > m.capacity - offset)
            return Status::Error(ErrorCode::kInvalidArgument,
                                 Printf(_("the upload's range (offset %llu, length %llu) does "
                                          "not fit in volume '%s' of %llu bytes; resize the "
                                          "volume first"),
                                        static_cast<unsigned long long>(offset),
                                        static_cast<unsigned long long>(length), name.c_str(),
                                        static_cast<unsigned long long>(m.capacity)));
        return Status::Ok();
    });
    if (!w.ok())
        return run.Fail(w.status());
    meta::VolumeMeta &m = w->volume;
    const bool raw = m.format == VolumeFormat::kRaw;
    const std::string rel = layout::VolumePath(m.image, m.uuid);
    const uint64_t limit = length ? length : raw ? m.capacity - offset : meta::kMaxCapacity;
    uint64_t written = 0;
    bool touched = false;

    status = [&]() -> Status {
        auto data = fileio::OpenAt(w->image_dir.get(), m.uuid, O_WRONLY);
        if (!data.ok())
            return data.status();
        SDM_RETURN_IF_ERROR(run.Enter("upload.data"));
        std::vector<char> buf(kChunk + 1);
        uint64_t waited = offset;
        for (;;) {
            /* One byte more than the room left tells "ends exactly here" from "too much". */
            size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, limit - written + 1));
            auto got = ReadFull(source.fd, buf.data(), want, observer);
            if (!got.ok())
                return got.status();
            if (*got == 0)
                break;
            if (*got > limit - written)
                return Status::Error(ErrorCode::kInvalidArgument,
                                     Printf(_("the upload carries more than the %llu bytes "
                                              "that fit from offset %llu; resize the volume "
                                              "first, or give the length"),
                                            static_cast<unsigned long long>(limit),
                                            static_cast<unsigned long long>(offset)));
            touched = true;
            for (size_t at = 0; at < *got; at += kPiece) {
                size_t n = std::min(kPiece, *got - at);
                uint64_t where = offset + written + at;
                SDM_RETURN_IF_ERROR(AllZero(buf.data() + at, n)
                                        ? ZeroRange(data->get(), where, n, false, rel)
                                        : PWriteFull(data->get(), buf.data() + at, n, where, rel));
            }
            SDM_RETURN_IF_ERROR(WriteBehind(data->get(), offset + written, offset + written + *got,
                                            &waited, rel));
            written += *got;
            /* Reached once, with the first chunk on the file and unsynced: part of the data. */
            if (written == *got)
                SDM_RETURN_IF_ERROR(run.Enter("upload.partial"));
            if (observer)
                observer->OnProgress(written, length ? length : raw ? limit : written);
        }
        if (source.confirm_end)
            SDM_RETURN_IF_ERROR(source.confirm_end(observer));
        SDM_RETURN_IF_ERROR(run.Enter("upload.sync"));
        if (!raw) {
            /* A whole qcow2 file replaces the old one; a hole punched at its end needs the
             * size set. */
            struct stat st;
            if (fstat(data->get(), &st) != 0)
                return Status::FromErrno(errno, rel);
            uint64_t end = offset + written;
            bool whole_file = offset == 0 && length == 0;
            if ((whole_file || static_cast<uint64_t>(st.st_size) < end) &&
                ftruncate(data->get(), static_cast<off_t>(end)) != 0)
                return Status::FromErrno(errno, rel);
            touched = touched || whole_file;
        }
        SDM_RETURN_IF_ERROR(fileio::FsyncFd(data->get(), rel));
        if (!raw)
            SDM_RETURN_IF_ERROR(AdoptUploadedQcow2(AbsPath(rel), &m));
        return Status::Ok();
    }();
    if (!status.ok()) {
        if (touched)
            return run.Fail(LeftIllegal(status, name));
        /* Nothing was written: the volume is what it was. */
        (void)FinishWrite(*this, *w, w->was_legal);
        return run.Fail(status);
    }

    (void)run.Enter("upload.legal");
    bool whole = offset == 0 && (raw ? written == m.capacity : length == 0);
    auto info = FinishWrite(*this, *w, w->was_legal || whole);
    if (!info.ok())
        return run.Fail(info.status());
    (void)run.Enter("upload.done");
    return info;
}

Status FileDomain::DownloadVolume(const std::string &name, int fd, uint64_t offset,
                                  uint64_t length, OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Phase("download.begin");
    if (status.ok() && fd < 0)
        status = Status::Error(ErrorCode::kInvalidArgument,
                               _("no descriptor to write the download to; pass one"));
    if (!status.ok())
        return run.Fail(status);
    auto found = Resolve(name);
    if (!found.ok())
        return run.Fail(found.status());
    run.SetImage(found->image);
    /* A shared lease: other readers (a clone) may share it; writers, deletes, resizes and
     * a VM that writes wait. Taken alone, so it may be kept through the transfer. */
    auto lease = LeaseGuard::Volume(*leases_, found->slot, LeaseMode::kShared,
                                    lockdep::Role::kNone, kTryOnce);
    if (!lease.ok())
        return run.Fail(VolumeBusy(name, lease.status()));

    status = [&]() -> Status {
        /* Read again under the lease: the volume may have gone, and its slot be reused. */
        auto dir = fileio::OpenDirAt(images_dir(), found->image);
        auto m = dir.ok() ? ReadVolumeMeta(dir->get(), found->image, found->uuid)
                          : Result<meta::VolumeMeta>(dir.status());
        if (!m.ok() || m->slot != found->slot)
            return Status::Error(ErrorCode::kNotFound,
                                 Printf(_("volume '%s' was deleted meanwhile"), name.c_str()));
        SDM_RETURN_IF_ERROR(RequireLegal(*m));
        const std::string rel = layout::VolumePath(m->image, m->uuid);
        auto data = fileio::OpenAt(dir->get(), m->uuid, O_RDONLY);
        if (!data.ok())
            return data.status();
        struct stat st;
        if (fstat(data->get(), &st) != 0)
            return Status::FromErrno(errno, rel);
        uint64_t size = static_cast<uint64_t>(st.st_size);
        if (offset > size)
            return Status::Error(ErrorCode::kInvalidArgument,
                                 Printf(_("offset %llu is past the end of volume '%s' (%llu "
                                          "bytes in its file)"),
                                        static_cast<unsigned long long>(offset), name.c_str(),
                                        static_cast<unsigned long long>(size)));
        uint64_t end = length ? std::min(size, offset + length) : size;
        SDM_RETURN_IF_ERROR(run.Phase("download.data"));
        std::vector<char> buf(kChunk);
        for (uint64_t at = offset; at < end;) {
            size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, end - at));
            ssize_t got = pread(data->get(), buf.data(), want, static_cast<off_t>(at));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return Status::FromErrno(got < 0 ? errno : EIO, rel);
            SDM_RETURN_IF_ERROR(WriteFull(fd, buf.data(), static_cast<size_t>(got), observer));
            at += static_cast<uint64_t>(got);
            if (observer)
                observer->OnProgress(at - offset, end - offset);
        }
        return Status::Ok();
    }();
    if (!status.ok())
        return run.Fail(status);
    return Status::Ok();
}

Result<VolumeInfo> FileDomain::WipeVolume(const std::string &name, OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Enter("wipe.begin");
    if (!status.ok())
        return run.Fail(status);
    auto w = BeginWrite(*this, name, run, [](const meta::VolumeMeta &) { return Status::Ok(); });
    if (!w.ok())
        return run.Fail(w.status());
    const meta::VolumeMeta &m = w->volume;
    const std::string rel = layout::VolumePath(m.image, m.uuid);

    status = [&]() -> Status {
        SDM_RETURN_IF_ERROR(run.Enter("wipe.data"));
        if (m.format == VolumeFormat::kRaw) {
            auto data = fileio::OpenAt(w->image_dir.get(), m.uuid, O_RDWR);
            if (!data.ok())
                return data.status();
            /* A fully allocated volume stays allocated; a sparse one becomes one hole. */
            SDM_RETURN_IF_ERROR(ZeroRange(data->get(), 0, m.capacity,
                                          m.prealloc == Preallocation::kFull, rel));
            return fileio::FsyncFd(data->get(), rel);
        }
        /* A qcow2 volume is made again, empty: every cluster then reads as zeros, and the
         * header stays a valid qcow2 one (stock libvirt overwrites it with zeros). The new
         * file replaces the old one by a rename. */
        const std::string fresh = m.uuid + layout::kTempSuffix;
        if (unlinkat(w->image_dir.get(), fresh.c_str(), 0) != 0 && errno != ENOENT)
            return Status::FromErrno(errno, rel + layout::kTempSuffix);
        SDM_RETURN_IF_ERROR(qemu::Create(AbsPath(layout::VolumePath(m.image, fresh)), m.format,
                                         m.capacity, m.prealloc));
        if (fchmodat(w->image_dir.get(), fresh.c_str(), kDataMode, 0) != 0)
            return Status::FromErrno(errno, rel + layout::kTempSuffix);
        SDM_RETURN_IF_ERROR(fileio::FsyncFileAt(w->image_dir.get(), fresh,
                                                rel + layout::kTempSuffix));
        SDM_RETURN_IF_ERROR(fileio::RenameAt(w->image_dir.get(), fresh, w->image_dir.get(),
                                             m.uuid, false));
        return fileio::FsyncDirAt(w->image_dir.get(), ".");
    }();
    if (!status.ok())
        return run.Fail(LeftIllegal(status, name));
    (void)run.Enter("wipe.legal");
    auto info = FinishWrite(*this, *w, true);
    if (!info.ok())
        return run.Fail(info.status());
    (void)run.Enter("wipe.done");
    return info;
}

Status FileDomain::Remove()
{
    auto domain_lease = AcquireDomainLease();
    if (!domain_lease.ok())
        return domain_lease.status();
    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kExclusive, options_.lock_timeout);
    if (!domain_lock.ok())
        return domain_lock.status();
    auto images = fileio::ListDirAt(images_dir(), ".");
    if (!images.ok())
        return images.status();
    auto pending = fileio::ListDirAt(tx_dir(), ".");
    if (!pending.ok())
        return pending.status();
    if (!images->empty()) {
        size_t volumes = std::count_if(images->begin(), images->end(), [](const auto &entry) {
            return layout::ClassifyImagesEntry(entry) == layout::EntryKind::kName;
        });
        return Status::Error(ErrorCode::kBusy,
                             Printf(_("domain %s is not empty: it holds %zu volumes (%zu entries "
                                      "in images/); delete them first (a domain is removed "
                                      "only when empty), and run gc and check if none is "
                                      "listed"),
                                    info_.uuid.c_str(), volumes, images->size()));
    }
    if (!pending->empty())
        return Status::Error(ErrorCode::kBusy,
                             Printf(_("domain %s has %zu pending transactions (running here or "
                                      "on another host, or abandoned); wait for them or run "
                                      "gc, then retry"),
                                    info_.uuid.c_str(), pending->size()));

    /* The commit: without domain.meta the directory is no domain, only what an interrupted
     * format leaves, which a new format accepts. */
    if (unlinkat(root(), layout::kDomainMeta, 0) != 0)
        return Status::FromErrno(errno, AbsPath(layout::kDomainMeta));
    SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(root(), "."));
    /* The domain lease lives in `leases`, and giving it back writes there: it goes back
     * before that file does (at once when the domain was opened without a linger, as
     * sdmd opens one it removes). */
    domain_lock->Release();
    domain_lease->Release();
    for (const char *dir : {layout::kTxDir, layout::kImagesDir}) {
        if (unlinkat(root(), dir, AT_REMOVEDIR) != 0 && errno != ENOENT)
            return Status::FromErrno(errno, AbsPath(dir));
    }
    for (const char *file : {layout::kLeases, layout::kIds}) {
        if (unlinkat(root(), file, 0) != 0 && errno != ENOENT)
            return Status::FromErrno(errno, AbsPath(file));
    }
    return fileio::FsyncDirAt(root(), ".");
}

}  // namespace sdm
