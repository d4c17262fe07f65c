/* Recipe: delete a leaf volume; the last volume of an image takes the image with it.
 *
 * Locks: domain lock (shared), image lock (exclusive), the volume's lease exclusive, tried
 * once: a VM using the volume, or another host changing it, refuses the delete.
 *
 * marker    mkdir tx/<txid>-<slot>-<owner>-<incarnation>; write marker (delete)
 * durable   barrier 1: the marker
 * commit    rename images/<image>/<vol>.meta (or images/<image>) into the transaction:
 *           the volume is volatile now, where only the collector looks; barrier 2
 * collect   the collector's routine, run at once by the owner: the data file, the root
 *           link and the name claim go; barrier 3; the transaction directory goes
 * done
 *
 * Recovery (SettleDelete): committed if the metadata (or the image) left images/. Forward:
 * remove what the commit made garbage, the claim last, so the name is free only once the
 * volume is gone. Back: nothing, the volume was never touched. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
#include "backend/engine/recipes/recipes.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace st = steps::del;

Status FileDomain::DeleteVolume(const std::string &name, OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Enter(st::kBegin);
    if (!status.ok())
        return run.Fail(status);
    auto scope = LockVolume(name, run);
    if (!scope.ok())
        return run.Fail(scope.status());
    const Image *image = &scope->image;
    const meta::VolumeMeta *m = &scope->volume;
    if (!image->IsLeaf(m->uuid)) {
        std::string children;
        for (const auto &v : image->volumes)
            if (v.parent == m->uuid)
                children += (children.empty() ? "'" : ", '") + v.name + "'";
        return run.Fail(Status::Error(ErrorCode::kBusy,
                                      _("volume '") + name + _("' is the backing volume of ") +
                                          children + _("; delete those first")));
    }
    auto lease = LeaseGuard::Volume(*leases_, m->slot, LeaseMode::kExclusive,
                                    lockdep::Role::kNone, kTryOnce);
    if (!lease.ok())
        return run.Fail(VolumeBusy(name, lease.status()));
    const bool whole_image = image->volumes.size() == 1 && image->bad.empty();

    status = [&]() -> Status {
        SDM_RETURN_IF_ERROR(run.BeginTransaction(
            st::kMarker, recipes::NewMarker(*this, meta::TxOp::kDelete, *m, whole_image)));
        Transaction &t = *run.tx();
        SDM_RETURN_IF_ERROR(run.Enter(st::kDurable));
        SDM_RETURN_IF_ERROR(t.MakeDurable());
        SDM_RETURN_IF_ERROR(run.Enter(st::kCommit));
        Barrier barrier(sync_policy_);
        if (whole_image) {
            SDM_RETURN_IF_ERROR(fileio::RenameAt(images_dir(), m->image, t.dirfd(), m->image, true));
            barrier.Dir(images_dir(), layout::kImagesDir);
        } else {
            SDM_RETURN_IF_ERROR(fileio::RenameAt(image->dir.get(), layout::MetaFile(m->uuid),
                                                 t.dirfd(), layout::MetaFile(m->uuid), true));
            barrier.Dir(image->dir.get(), layout::ImagePath(m->image));
        }
        barrier.Dir(t.dirfd(), t.Rel());
        return barrier.Sync();
    }();
    if (!status.ok())
        return run.Fail(status);

    /* Committed. The rest is garbage collection, run here at once by the owner. */
    (void)run.Enter(st::kCollect);
    auto collected = Recover(*this, run.tx()->dir_name(), &run.tx()->marker());
    run.tx().reset();
    (void)run.Enter(st::kDone);
    if (!collected.ok())
        return run.Fail(Status::Error(collected.status().code(),
                                      _("the volume is deleted, but removing its data failed (") +
                                          collected.status().message() +
                                          _("); the garbage collector will retry")));
    allocator_.Free(m->slot);
    return Status::Ok();
}

namespace recipes {

Result<bool> SettleDelete(FileDomain &domain, const meta::Marker &m)
{
    std::string image_rel = layout::ImagePath(m.image);
    std::string live = m.new_image ? image_rel : layout::MetaPath(m.image, m.volume);
    struct stat st;
    if (fstatat(domain.root(), live.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return false;
    fileio::Fd image;
    if (!m.new_image) {
        auto dir = fileio::OpenDirAt(domain.images_dir(), m.image);
        if (dir.ok()) {
            SDM_RETURN_IF_ERROR(fileio::RemoveTreeAt(dir->get(), m.volume));
            image = std::move(*dir);
        }
    }
    SDM_RETURN_IF_ERROR(domain.UnlinkRoot(m.name, m.image, m.volume));
    SDM_RETURN_IF_ERROR(domain.ReleaseName(m.name, m.image, m.volume));
    SDM_RETURN_IF_ERROR(image.valid() ? domain.SyncNamespace(image.get(), image_rel)
                                      : domain.SyncNamespace(domain.images_dir(),
                                                             layout::kImagesDir));
    return true;
}

}  // namespace recipes
}  // namespace sdm
