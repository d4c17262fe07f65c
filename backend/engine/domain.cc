/* Domain open and attachment, volume lookup and listing, and the name claims.
 *
 * Opening a domain attaches it: the domain lease shared and an owner lease exclusive, held
 * until the object goes (docs/locking.md). A name is claimed by a symlink in images/ made
 * before the commit of the volume that takes it; whoever makes it first has the name, on
 * any host. A claim names its volume's future place, so a reader tells a committed
 * volume's claim (the metadata is there), a pending one (a transaction in tx/ makes or
 * deletes that volume) and an orphan (neither: a power cut kept the claim and lost its
 * transaction) by looking at storage alone. */
#include "backend/engine/domain_impl.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/local_lease.h"
#include "backend/engine/transaction.h"

namespace sdm {

lockdep::Key DomainLockKey()
{
    return {lockdep::Level::kDomain, lockdep::Kind::kLock, lockdep::Role::kNone, "domain"};
}

lockdep::Key DomainLeaseKey()
{
    return {lockdep::Level::kDomain, lockdep::Kind::kLease, lockdep::Role::kNone, "domain"};
}

lockdep::Key OwnerLeaseKey(uint32_t owner)
{
    return {lockdep::Level::kOwner, lockdep::Kind::kLease, lockdep::Role::kNone,
            std::to_string(owner)};
}

lockdep::Key ImageLockKey(const std::string &image, lockdep::Role role)
{
    return {lockdep::Level::kImage, lockdep::Kind::kLock, role, image};
}

/* --- open and attach --- */

Result<DomainInfo> ReadDomainInfo(int root, const std::string &path, meta::DomainMeta *out)
{
    auto text = fileio::ReadSmallFileAt(root, layout::kDomainMeta, meta::kMaxFileSize);
    if (!text.ok()) {
        if (text.status().code() == ErrorCode::kNotFound)
            return Status::Error(ErrorCode::kNotFound,
                                 path + _(" is not a storage domain (it has no domain.meta); "
                                          "format it first"));
        return text.status();
    }
    auto meta = meta::DecodeDomain(*text, path + "/" + layout::kDomainMeta);
    if (!meta.ok())
        return meta.status();
    DomainInfo info;
    info.uuid = meta->uuid;
    info.path = path;
    info.version = meta->version;
    info.io_timeout = meta->io_timeout;
    info.sector_size = meta->sector_size;
    info.alignment = meta->alignment;
    info.lockspace = meta->lockspace;
    if (out)
        *out = *meta;
    return info;
}

Result<DomainInfo> Domain::Inspect(const std::string &path)
{
    auto root = fileio::OpenDirPath(path);
    if (!root.ok())
        return root.status();
    auto info = ReadDomainInfo(root->get(), path, nullptr);
    if (info.ok()) {
        std::string why;
        SyncPolicy policy = ResolveSyncPolicy(root->get(), Durability::kAuto, &why);
        info->durability = std::string(SyncPolicyName(policy)) + " (" + why + ")";
    }
    return info;
}

Status Domain::Usable(const DomainInfo &info)
{
    if (info.version >= meta::kDomainVersion)
        return Status::Ok();
    return Status::Error(
        ErrorCode::kUnsupported,
        Printf(_("storage domain %s at %s is in format %u, which this libvirt-sdm only "
                 "upgrades: stop it on every host (virsh pool-destroy, or sdm detach), then "
                 "run `sdm upgrade %s` (or `sdm-local upgrade %s`) on one host"),
               info.uuid.c_str(), info.path.c_str(), info.version, info.path.c_str(),
               info.path.c_str()));
}

Result<std::unique_ptr<Domain>> Domain::Open(const std::string &path, const DomainOptions &options)
{
    auto root = fileio::OpenDirPath(path);
    if (!root.ok())
        return root.status();
    auto info = ReadDomainInfo(root->get(), path, nullptr);
    if (!info.ok())
        return info.status();
    SDM_RETURN_IF_ERROR(Usable(*info));

    FileDomain::Dirs dirs;
    dirs.root = std::move(*root);
    for (auto [name, fd] : {std::pair{layout::kImagesDir, &dirs.images},
                            std::pair{layout::kTxDir, &dirs.tx},
                            std::pair{layout::kChunksDir, &dirs.chunks}}) {
        auto dir = fileio::OpenDirAt(dirs.root.get(), name);
        if (!dir.ok())
            return Status::Error(ErrorCode::kCorrupt,
                                 _("storage domain ") + path + _(" is damaged: ") + name +
                                     "/: " + dir.status().message() +
                                     _("; restore it from backup or re-create the domain"));
        *fd = std::move(*dir);
    }
    auto leases = options.leases ? options.leases
                                 : std::make_shared<LocalLeaseManager>(path, info->alignment);
    auto domain = std::make_unique<FileDomain>(*info, std::move(dirs), options, leases);
    SDM_RETURN_IF_ERROR(domain->Attach());
    std::unique_ptr<Domain> result(std::move(domain));
    return result;
}

FileDomain::FileDomain(DomainInfo info, Dirs dirs, const DomainOptions &options,
                       std::shared_ptr<LeaseManager> leases)
    : info_(std::move(info)), root_(std::move(dirs.root)), images_(std::move(dirs.images)),
      tx_(std::move(dirs.tx)), chunks_(std::move(dirs.chunks)), options_(options),
      sync_policy_(ResolveSyncPolicy(root_.get(), options.durability, &info_.durability)),
      leases_(std::move(leases)), allocator_(*this)
{
    info_.durability = std::string(SyncPolicyName(sync_policy_)) + " (" + info_.durability + ")";
}

FileDomain::~FileDomain() { Detach(); }

Status FileDomain::Attach()
{
    auto domain_lease = leases_->Acquire(LeaseArea::kLeases, layout::kDomainLeaseSlot,
                                         LeaseMode::kShared, options_.lock_timeout);
    if (!domain_lease.ok())
        return Status::Error(domain_lease.status().code(),
                             Printf(_("cannot attach storage domain %s: its domain lease is "
                                      "held exclusively (the domain is being removed or "
                                      "upgraded by another host): %s"),
                                    info_.uuid.c_str(),
                                    domain_lease.status().message().c_str()));
    domain_lease_ = std::move(*domain_lease);

    /* Sanlock offers exactly this host's id, which a previous sdmd of this host may have
     * held a moment ago (its lease goes when it dies): wait for it. Local leases offer
     * every slot: the first free one is this process's. */
    const uint32_t first = leases_->FirstOwner(), last = leases_->LastOwner();
    const auto wait = first == last ? options_.lock_timeout : std::chrono::milliseconds(0);
    Status last_error;
    for (uint32_t owner = first; owner <= last; owner++) {
        SDM_RETURN_IF_ERROR(leases_->InitOwner(owner));
        auto lease = leases_->Acquire(LeaseArea::kOwners, owner, LeaseMode::kExclusive, wait);
        if (lease.ok()) {
            owner_lease_ = std::move(*lease);
            owner_ = {owner, layout::NewIncarnation()};
            allocator_.Prime();
            return Status::Ok();
        }
        last_error = lease.status();
        if (last_error.code() != ErrorCode::kBusy)
            break;
    }
    domain_lease_.reset();
    return Status::Error(last_error.code(),
                         Printf(_("cannot attach storage domain %s: no owner lease is free "
                                  "for this process (%s); is another sdmd running with this "
                                  "host id?"),
                                info_.uuid.c_str(), last_error.message().c_str()));
}

void FileDomain::Detach()
{
    /* Nothing may run now: the caller ended every operation before letting go. */
    allocator_.Stop();
    owner_lease_.reset();
    domain_lease_.reset();
}

/* --- reading volumes --- */

bool FileDomain::Image::IsLeaf(const std::string &volume) const
{
    return std::none_of(volumes.begin(), volumes.end(),
                        [&](const meta::VolumeMeta &v) { return v.parent == volume; });
}

const meta::VolumeMeta *FileDomain::Image::Find(const std::string &volume) const
{
    for (const auto &v : volumes)
        if (v.uuid == volume)
            return &v;
    return nullptr;
}

Result<meta::VolumeMeta> FileDomain::ReadVolumeMeta(int image_dir, const std::string &image,
                                                    const std::string &volume)
{
    std::string what = layout::MetaPath(image, volume);
    auto text = fileio::ReadSmallFileAt(image_dir, layout::MetaFile(volume), meta::kMaxFileSize);
    if (!text.ok())
        return text.status();
    auto meta = meta::DecodeVolume(*text, what);
    if (!meta.ok())
        return meta.status();
    if (meta->uuid != volume || meta->image != image)
        return Status::Error(ErrorCode::kCorrupt,
                             what + _(" describes volume ") + meta->image + "/" + meta->uuid +
                                 _(", not the one at its path; it was copied or planted there; "
                                   "run check and remove it by hand"));
    return meta;
}

Result<FileDomain::Image> FileDomain::ReadImage(const std::string &image)
{
    return ReadImageAt(images_.get(), image);
}

Result<FileDomain::Image> FileDomain::ReadImageAt(int parent, const std::string &image)
{
    auto dir = fileio::OpenDirAt(parent, image);
    if (!dir.ok())
        return dir.status();
    auto entries = fileio::ListDirAt(dir->get(), ".");
    if (!entries.ok())
        return entries.status();
    Image result;
    result.uuid = image;
    result.dir = std::move(*dir);
    static const std::string suffix = layout::MetaFile("");
    for (const auto &entry : *entries) {
        if (entry.size() <= suffix.size() ||
            entry.compare(entry.size() - suffix.size(), suffix.size(), suffix) != 0)
            continue;
        std::string volume = entry.substr(0, entry.size() - suffix.size());
        auto meta = ReadVolumeMeta(result.dir.get(), image, volume);
        if (meta.ok())
            result.volumes.push_back(std::move(*meta));
        else
            result.bad.push_back(meta.status().message());
    }
    return result;
}

namespace {

/* Bytes a regular file holds on storage; 0 if it is missing or not a regular file. */
uint64_t AllocatedAt(int dirfd, const std::string &path)
{
    struct stat st;
    if (fstatat(dirfd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
        return static_cast<uint64_t>(st.st_blocks) * 512;
    return 0;
}

}  // namespace

VolumeInfo FileDomain::Describe(const meta::VolumeMeta &m, bool leaf, uint64_t allocation)
{
    VolumeInfo info;
    info.uuid = m.uuid;
    info.image = m.image;
    info.name = m.name;
    info.parent = m.parent;
    info.format = m.format;
    info.prealloc = m.prealloc;
    info.legality = m.legality;
    info.capacity = m.capacity;
    info.generation = m.generation;
    info.slot = m.slot;
    info.ctime = m.ctime;
    info.path = AbsPath(layout::VolumePath(m.image, m.uuid));
    if (!m.parent.empty())
        info.parent_path = AbsPath(layout::VolumePath(m.image, m.parent));
    info.leaf = leaf;
    info.allocation = allocation;
    return info;
}

VolumeInfo FileDomain::ToInfo(const Image &image, const meta::VolumeMeta &m)
{
    return Describe(m, image.IsLeaf(m.uuid), AllocatedAt(image.dir.get(), m.uuid));
}

Result<VolumeInfo> FileDomain::Resolve(const std::string &name, Image *image_out)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    std::string entry = layout::NameEntry(name);
    auto claim = ReadClaim(images_.get(), entry);
    if (!claim.ok()) {
        if (claim.status().code() == ErrorCode::kNotFound)
            return Status::Error(ErrorCode::kNotFound,
                                 _("no volume named '") + name + _("' in domain ") + info_.uuid);
        return claim.status();
    }
    const layout::VolumeRef *ref = &*claim;
    auto image = ReadImage(ref->image);
    if (!image.ok())
        return image.status().code() == ErrorCode::kNotFound
                   ? Status::Error(ErrorCode::kNotFound,
                                   _("no volume named '") + name + _("' in domain ") + info_.uuid)
                   : image.status();
    const meta::VolumeMeta *m = image->Find(ref->volume);
    if (!m || m->name != name)
        return Status::Error(ErrorCode::kNotFound,
                             _("no volume named '") + name + _("' in domain ") + info_.uuid);
    VolumeInfo info = ToInfo(*image, *m);
    if (image_out)
        *image_out = std::move(*image);
    return info;
}

Result<VolumeInfo> FileDomain::LookupVolume(const std::string &name)
{
    auto info = Resolve(name);
    if (!info.ok())
        return Status(info.status()).WithDomain(info_.uuid).WithVolume(name);
    return info;
}

namespace {

bool SameDirectory(const struct stat &a, const struct stat &b)
{
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
           a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

/* A directory changed within this many seconds of being read may change again without its
 * times moving (they tick coarsely, and another host's clock may lag ours): such an image
 * is read again next time. */
constexpr time_t kSettleSeconds = 2;

}  // namespace

/* A warm listing reads no metadata: one stat per image and one per data file (for the
 * allocation, which changes with every guest write). */
Result<std::vector<VolumeInfo>> FileDomain::ListVolumes()
{
    auto images = fileio::ListDirAt(images_.get(), ".");
    if (!images.ok())
        return images.status();
    std::map<std::string, ListedImage> known, listed;
    {
        std::lock_guard<std::mutex> lock(listing_mutex_);
        known.swap(listing_);
    }
    std::vector<VolumeInfo> result;
    const time_t settled = time(nullptr) - kSettleSeconds;
    for (const auto &uuid : *images) {
        if (!layout::IsUuid(uuid))
            continue;
        struct stat dir;
        if (fstatat(images_.get(), uuid.c_str(), &dir, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISDIR(dir.st_mode))
            continue; /* deleted meanwhile, or not a directory: check reports it */
        auto hit = known.find(uuid);
        if (hit == known.end() || !SameDirectory(hit->second.dir_stat, dir)) {
            auto image = ReadImage(uuid);
            if (!image.ok())
                continue;
            image->dir = fileio::Fd();
            hit = known.insert_or_assign(uuid, ListedImage{dir, std::move(*image)}).first;
        }
        const Image &image = hit->second.image;
        for (const auto &m : image.volumes)
            result.push_back(
                Describe(m, image.IsLeaf(m.uuid), AllocatedAt(images_.get(), uuid + "/" + m.uuid)));
        if (dir.st_mtim.tv_sec < settled && dir.st_ctim.tv_sec < settled)
            listed.insert(known.extract(hit));
    }
    {
        std::lock_guard<std::mutex> lock(listing_mutex_);
        listing_.swap(listed);
    }
    return result;
}

/* --- transactions of this process --- */

bool FileDomain::IsOwnTransaction(const std::string &dir_name)
{
    std::lock_guard lock(tx_mutex_);
    return own_transactions_.count(dir_name) > 0;
}

void FileDomain::AddOwnTransaction(const std::string &dir_name)
{
    std::lock_guard lock(tx_mutex_);
    own_transactions_.insert(dir_name);
}

void FileDomain::RemoveOwnTransaction(const std::string &dir_name)
{
    std::lock_guard lock(tx_mutex_);
    own_transactions_.erase(dir_name);
}

/* --- name claims and root links --- */

Result<layout::VolumeRef> ReadClaim(int images, const std::string &entry)
{
    char target[256];
    ssize_t n = readlinkat(images, entry.c_str(), target, sizeof(target) - 1);
    if (n < 0) {
        if (errno == ENOENT)
            return Status::Error(ErrorCode::kNotFound, entry + _(": no such name claim"));
        return Status::FromErrno(errno, std::string(layout::kImagesDir) + "/" + entry);
    }
    auto ref = layout::ParseIndexTarget(std::string(target, n));
    if (!ref)
        return Status::Error(ErrorCode::kCorrupt,
                             std::string(layout::kImagesDir) + "/" + entry +
                                 _(" is not a valid name claim; run check"));
    return *ref;
}

static bool ExistsAt(int dirfd, const std::string &name)
{
    struct stat st;
    return fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

FileDomain::ClaimState FileDomain::JudgeClaim(const layout::VolumeRef &ref)
{
    /* Transactions first: one that commits meanwhile is then seen committed below. */
    auto entries = fileio::ListDirAt(tx_.get(), ".");
    if (!entries.ok())
        return ClaimState::kPending; /* cannot tell: never call a live claim an orphan */
    for (const auto &entry : *entries) {
        auto name = layout::ParseTxDirName(entry);
        if (!name)
            continue;
        if (name->txid == ref.image)
            return ClaimState::kPending;
        TxRead read = ReadTransaction(*this, entry, *name);
        if (read.gone)
            continue;
        if (!read.marker || read.marker->volume == ref.volume)
            return ClaimState::kPending; /* an unreadable marker may be the one */
    }
    if (ExistsAt(images_.get(), layout::IndexTarget(ref.image, layout::MetaFile(ref.volume))))
        return ClaimState::kCommitted;
    return ClaimState::kOrphan;
}

Status FileDomain::ClaimName(const std::string &name, const std::string &image,
                             const std::string &volume, int tx_dir)
{
    const std::string target = layout::IndexTarget(image, volume);
    const std::string entry = layout::NameEntry(name);
    const std::string where = std::string(layout::kImagesDir) + "/" + entry;
    constexpr int kAttempts = 3;
    for (int attempt = 0; attempt < kAttempts; attempt++) {
        if (symlinkat(target.c_str(), images_.get(), entry.c_str()) == 0)
            return Status::Ok();
        if (errno != EEXIST)
            return Status::FromErrno(errno, _("cannot claim the name in ") + where);
        auto held = ReadClaim(images_.get(), entry);
        if (!held.ok()) {
            if (held.status().code() == ErrorCode::kNotFound)
                continue; /* released meanwhile */
            return held.status();
        }
        if (held->image == image && held->volume == volume)
            return Status::Ok();
        switch (JudgeClaim(*held)) {
        case ClaimState::kCommitted:
            return Status::Error(ErrorCode::kAlreadyExists,
                                 Printf(_("a volume named '%s' already exists; choose another "
                                          "name or delete it first"),
                                        name.c_str()));
        case ClaimState::kPending:
            return Status::Error(ErrorCode::kAlreadyExists,
                                 Printf(_("a volume named '%s' is being created or deleted by "
                                          "an unfinished operation (on this or another host); "
                                          "wait for it, or choose another name"),
                                        name.c_str()));
        case ClaimState::kOrphan:
            break;
        }
        /* An orphan: move it into our transaction (garbage we own), and make sure it was
         * the orphan we judged, not a claim made between the look and the move. */
        constexpr char kOrphan[] = "orphan-claim";
        if (renameat(images_.get(), entry.c_str(), tx_dir, kOrphan) != 0) {
            if (errno == ENOENT)
                continue;
            return Status::FromErrno(errno, _("cannot move the orphaned name claim ") + where);
        }
        auto moved = ReadClaim(tx_dir, kOrphan);
        if (moved.ok() && (moved->image != held->image || moved->volume != held->volume))
            (void)fileio::RenameAt(tx_dir, kOrphan, images_.get(), entry, true);
        (void)unlinkat(tx_dir, kOrphan, 0);
    }
    return Status::Error(ErrorCode::kAlreadyExists,
                         Printf(_("the name '%s' was claimed and released repeatedly while "
                                  "this create tried to take it; try again"),
                                name.c_str()));
}

Status FileDomain::ReleaseName(const std::string &name, const std::string &image,
                               const std::string &volume)
{
    const std::string entry = layout::NameEntry(name);
    auto held = ReadClaim(images_.get(), entry);
    /* Gone, or another volume's by now (a claim is never taken over while ours stands). */
    if (!held.ok() || held->image != image || held->volume != volume)
        return Status::Ok();
    if (unlinkat(images_.get(), entry.c_str(), 0) != 0 && errno != ENOENT)
        return Status::FromErrno(errno, _("cannot remove the name claim ") +
                                            std::string(layout::kImagesDir) + "/" + entry);
    return Status::Ok();
}

void FileDomain::LinkRoot(const std::string &name, const std::string &image,
                          const std::string &volume)
{
    /* A stale link (a volume of that name that is gone) is replaced; anything else in its
     * place is left alone. */
    const std::string link = layout::RootLink(name);
    const std::string target = layout::RootLinkTarget(image, volume);
    if (link.empty() || symlinkat(target.c_str(), root_.get(), link.c_str()) == 0 ||
        errno != EEXIST)
        return;
    char existing[512];
    ssize_t n = readlinkat(root_.get(), link.c_str(), existing, sizeof(existing) - 1);
    if (n < 0 || std::string(existing, n).rfind(std::string(layout::kImagesDir) + "/", 0) != 0)
        return;
    std::string temp = link.substr(0, 200) + layout::kTempSuffix;
    if (symlinkat(target.c_str(), root_.get(), temp.c_str()) == 0 &&
        renameat(root_.get(), temp.c_str(), root_.get(), link.c_str()) != 0)
        unlinkat(root_.get(), temp.c_str(), 0);
}

Status FileDomain::UnlinkRoot(const std::string &name, const std::string &image,
                              const std::string &volume)
{
    const std::string link = layout::RootLink(name);
    if (link.empty())
        return Status::Ok();
    char existing[512];
    ssize_t n = readlinkat(root_.get(), link.c_str(), existing, sizeof(existing) - 1);
    if (n < 0 || std::string(existing, n) != layout::RootLinkTarget(image, volume))
        return Status::Ok(); /* gone, or another volume's */
    if (unlinkat(root_.get(), link.c_str(), 0) != 0 && errno != ENOENT)
        return Status::FromErrno(errno, _("cannot remove the root link ") + link);
    return Status::Ok();
}

Status FileDomain::SyncNamespace(int committed_dir, const std::string &what)
{
    Barrier barrier(sync_policy_);
    if (committed_dir != images_.get())
        barrier.Dir(committed_dir, what);
    barrier.Dir(images_.get(), layout::kImagesDir); /* the claims */
    barrier.Dir(root_.get(), "."); /* the root links that follow them */
    return barrier.Sync();
}

}  // namespace sdm
