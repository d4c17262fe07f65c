/* Domain format and open, volume lookup and listing, the allocator of names and lease
 * slots, the name/slot index, and the process-wide domain lease. */
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

lockdep::Key DomainLeaseKey()
{
    return {lockdep::Level::kDomain, lockdep::Kind::kLease, lockdep::Role::kNone, "domain"};
}

lockdep::Key DomainLockKey()
{
    return {lockdep::Level::kDomain, lockdep::Kind::kLock, lockdep::Role::kNone, "domain"};
}

lockdep::Key ImageLockKey(const std::string &image, lockdep::Role role)
{
    return {lockdep::Level::kImage, lockdep::Kind::kLock, role, image};
}

lockdep::Key AllocatorLockKey()
{
    return {lockdep::Level::kAllocator, lockdep::Kind::kLock, lockdep::Role::kNone, "allocator"};
}

/* --- the domain lease --- */

DomainLease::Ref &DomainLease::Ref::operator=(Ref &&other) noexcept
{
    if (this != &other) {
        Release();
        owner_ = std::exchange(other.owner_, nullptr);
    }
    return *this;
}

void DomainLease::Ref::Release()
{
    if (!owner_)
        return;
    lockdep::Released(DomainLeaseKey());
    std::exchange(owner_, nullptr)->Put();
}

DomainLease::DomainLease(LeaseManager &leases, std::chrono::milliseconds linger)
    : leases_(leases), linger_(linger)
{
    leases_.SetDomainLeaseWantedHandler([this] { Requested(); });
}

Result<DomainLease::Ref> DomainLease::Acquire(std::chrono::milliseconds timeout)
{
    lockdep::WillAcquire(DomainLeaseKey());
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    /* A requested lease is on its way back: joining it would keep the asker waiting. */
    if (!changed_.wait_until(lock, deadline, [this] { return !acquiring_ && !requested_; }))
        return Status::Error(ErrorCode::kBusy,
                             _("the domain lease is going to another host that asked for it, "
                               "after the operations of this host that hold it now; try again "
                               "later"));
    if (!handle_) {
        acquiring_ = true;
        lock.unlock();
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        auto handle = leases_.Acquire(layout::kDomainLeaseSlot, LeaseMode::kExclusive,
                                      std::max(left, std::chrono::milliseconds::zero()));
        lock.lock();
        acquiring_ = false;
        changed_.notify_all();
        if (!handle.ok()) {
            Status status = handle.status();
            if (status.code() == ErrorCode::kBusy)
                status = Status::Error(ErrorCode::kBusy,
                                       _("the domain lease is held by another host or process "
                                         "doing a metadata operation; try again later (") +
                                           status.message() + ")");
            return status;
        }
        handle_ = std::move(*handle);
    }
    users_++;
    lockdep::Acquired(DomainLeaseKey());
    return Ref(this);
}

void DomainLease::Put()
{
    std::lock_guard lock(mutex_);
    if (--users_ > 0)
        return;
    if (linger_.count() == 0 || requested_) {
        handle_.reset();
        requested_ = false;
        changed_.notify_all();
        return;
    }
    idle_since_ = std::chrono::steady_clock::now();
    if (!linger_thread_.joinable())
        linger_thread_ = std::thread([this] { LingerLoop(); });
    changed_.notify_all();
}

void DomainLease::LingerLoop()
{
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        if (handle_ && users_ == 0 && !acquiring_) {
            auto deadline = idle_since_ + linger_;
            if (std::chrono::steady_clock::now() >= deadline) {
                handle_.reset();
                continue;
            }
            changed_.wait_until(lock, deadline);
        } else {
            changed_.wait(lock);
        }
    }
}

void DomainLease::Requested()
{
    std::lock_guard lock(mutex_);
    if (!handle_)
        return;
    if (users_ > 0) {
        requested_ = true;
        return;
    }
    handle_.reset();
    changed_.notify_all();
}

bool DomainLease::held()
{
    std::lock_guard lock(mutex_);
    return handle_ != nullptr;
}

DomainLease::~DomainLease()
{
    /* First, so that no request arrives while the rest goes. */
    leases_.SetDomainLeaseWantedHandler(nullptr);
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        changed_.notify_all();
    }
    if (linger_thread_.joinable())
        linger_thread_.join();
    handle_.reset();
}

/* --- format and open --- */

static Status ValidateFormatParams(const FormatParams &p)
{
    if (p.io_timeout < 1 || p.io_timeout > 600)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("io_timeout must be 1 to 600 seconds"));
    if (p.sector_size != 512 && p.sector_size != 4096)
        return Status::Error(ErrorCode::kInvalidArgument, _("sector size must be 512 or 4096"));
    const uint64_t mib = 1 << 20;
    if (p.alignment != mib && p.alignment != 2 * mib && p.alignment != 4 * mib &&
        p.alignment != 8 * mib)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("lease alignment must be 1, 2, 4 or 8 MiB"));
    return Status::Ok();
}

static Result<std::string> ReadDomainMetaText(int root, const std::string &path)
{
    auto text = fileio::ReadSmallFileAt(root, layout::kDomainMeta, meta::kMaxFileSize);
    if (!text.ok() && text.status().code() == ErrorCode::kNotFound)
        return Status::Error(ErrorCode::kNotFound,
                             path + _(" is not a storage domain (it has no domain.meta); "
                                      "format it first"));
    return text;
}

/* An empty directory, or the skeleton of an interrupted format, may be formatted. */
static Status CheckFormattable(int root, const std::string &path)
{
    auto entries = fileio::ListDirAt(root, ".");
    if (!entries.ok())
        return entries.status();
    /* A domain first, whatever else the directory lists before its metadata (volumes'
     * root links): callers tell "already a domain" from "not empty". */
    if (std::find(entries->begin(), entries->end(), layout::kDomainMeta) != entries->end()) {
        auto text = ReadDomainMetaText(root, path);
        auto existing = text.ok() ? meta::DecodeDomain(*text, layout::kDomainMeta)
                                  : Result<meta::DomainMeta>(text.status());
        if (!existing.ok())
            return existing.status();
        return Status::Error(ErrorCode::kAlreadyExists,
                             path + _(" is already a storage domain (uuid ") + existing->uuid +
                                 ")");
    }
    for (const auto &entry : *entries) {
        bool skeleton = std::any_of(std::begin(layout::kSkeleton), std::end(layout::kSkeleton),
                                    [&](const char *name) { return entry == name; });
        bool empty_dir = false;
        if (skeleton) {
            auto sub = fileio::ListDirAt(root, entry);
            empty_dir = sub.ok() && sub->empty();
        }
        if (entry == "lost+found" || (skeleton && (empty_dir || entry == layout::kIds ||
                                                   entry == layout::kLeases)))
            continue;
        return Status::Error(ErrorCode::kInvalidArgument,
                             path + _(" is not empty (it holds '") + entry +
                                 _("'); a domain is formatted on an empty directory"));
    }
    return Status::Ok();
}

static Status CreateSizedFile(int root, const char *name, uint64_t size)
{
    auto fd = fileio::OpenAt(root, name, O_RDWR | O_CREAT, 0660);
    if (!fd.ok())
        return fd.status();
    if (fchmod(fd->get(), 0660) != 0) /* whatever the umask */
        return Status::FromErrno(errno, std::string(_("cannot set the mode of ")) + name);
    if (ftruncate(fd->get(), static_cast<off_t>(size)) != 0)
        return Status::FromErrno(errno, std::string(_("cannot size ")) + name);
    return fileio::FsyncFd(fd->get(), name);
}

Result<DomainInfo> Domain::Format(const std::string &path, const FormatParams &params)
{
    SDM_RETURN_IF_ERROR(ValidateFormatParams(params));
    auto root = fileio::OpenDirPath(path);
    if (!root.ok())
        return root.status();
    SDM_RETURN_IF_ERROR(CheckFormattable(root->get(), path));

    for (const char *dir : {layout::kImagesDir, layout::kTxDir}) {
        if (mkdirat(root->get(), dir, 0755) != 0 && errno != EEXIST)
            return Status::FromErrno(errno, path + "/" + dir);
        /* Whatever the umask: the hypervisor's user must reach the data files below. */
        if (fchmodat(root->get(), dir, 0755, 0) != 0)
            return Status::FromErrno(errno, path + "/" + dir);
        SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(root->get(), dir));
    }
    /* Slot 0 of each area: the lockspace's first host slot and the domain lease. */
    SDM_RETURN_IF_ERROR(CreateSizedFile(root->get(), layout::kIds, params.alignment));
    SDM_RETURN_IF_ERROR(CreateSizedFile(root->get(), layout::kLeases, params.alignment));
    SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(root->get(), "."));

    meta::DomainMeta meta;
    meta.uuid = layout::NewUuid();
    meta.io_timeout = params.io_timeout;
    meta.sector_size = params.sector_size;
    meta.alignment = params.alignment;
    meta.lockspace = meta.uuid;
    meta.ctime = time(nullptr);
    /* domain.meta is written last: its rename is the format's commit. */
    SDM_RETURN_IF_ERROR(fileio::AtomicWriteAt(root->get(), layout::kDomainMeta, meta::Encode(meta)));

    DomainInfo info;
    info.uuid = meta.uuid;
    info.path = path;
    info.version = meta.version;
    info.io_timeout = meta.io_timeout;
    info.sector_size = meta.sector_size;
    info.alignment = meta.alignment;
    info.lockspace = meta.lockspace;
    return info;
}

Result<std::unique_ptr<Domain>> Domain::Open(const std::string &path, const DomainOptions &options)
{
    auto root = fileio::OpenDirPath(path);
    if (!root.ok())
        return root.status();
    auto text = ReadDomainMetaText(root->get(), path);
    if (!text.ok())
        return text.status();
    auto meta = meta::DecodeDomain(*text, path + "/" + layout::kDomainMeta);
    if (!meta.ok())
        return meta.status();

    fileio::Fd dirs[2];
    const char *names[2] = {layout::kImagesDir, layout::kTxDir};
    for (int i = 0; i < 2; i++) {
        auto dir = fileio::OpenDirAt(root->get(), names[i]);
        if (!dir.ok())
            return Status::Error(ErrorCode::kCorrupt,
                                 _("storage domain ") + path + _(" is damaged: ") + names[i] +
                                     "/: " + dir.status().message() +
                                     _("; restore it from backup or re-create the domain"));
        dirs[i] = std::move(*dir);
    }

    DomainInfo info;
    info.uuid = meta->uuid;
    info.path = path;
    info.version = meta->version;
    info.io_timeout = meta->io_timeout;
    info.sector_size = meta->sector_size;
    info.alignment = meta->alignment;
    info.lockspace = meta->lockspace;
    auto domain = std::make_unique<FileDomain>(info, std::move(*root), std::move(dirs[0]),
                                               std::move(dirs[1]), options);
    std::unique_ptr<Domain> result(std::move(domain));
    return result;
}

FileDomain::FileDomain(DomainInfo info, fileio::Fd root, fileio::Fd images, fileio::Fd tx,
                       const DomainOptions &options)
    : info_(std::move(info)), root_(std::move(root)), images_(std::move(images)),
      tx_(std::move(tx)),
      options_(options), sync_policy_(ResolveSyncPolicy(root_.get(), options.durability,
                                                        &info_.durability)),
      leases_(options.leases ? options.leases
                             : std::make_shared<LocalLeaseManager>(
                                   info_.path + "/" + layout::kLeases, info_.alignment)),
      domain_lease_(*leases_, options.domain_lease_linger)
{
    info_.durability = std::string(SyncPolicyName(sync_policy_)) + " (" + info_.durability + ")";
}

Result<DomainLease::Ref> FileDomain::AcquireDomainLease()
{
    return domain_lease_.Acquire(options_.lock_timeout);
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
    auto dir = fileio::OpenDirAt(images_.get(), image);
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
    char target[256];
    ssize_t n = readlinkat(images_.get(), entry.c_str(), target, sizeof(target) - 1);
    if (n < 0) {
        if (errno == ENOENT)
            return Status::Error(ErrorCode::kNotFound,
                                 _("no volume named '") + name + _("' in domain ") + info_.uuid);
        return Status::FromErrno(errno, std::string(layout::kImagesDir) + "/" + entry);
    }
    auto ref = layout::ParseIndexTarget(std::string(target, n));
    if (!ref)
        return Status::Error(ErrorCode::kCorrupt,
                             std::string(layout::kImagesDir) + "/" + entry +
                                 _(" is not a valid index entry; run check"));
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

/* --- the allocator --- */

namespace {

/* The allocator's mutex, recorded with lockdep at its level. */
class AllocatorGuard {
public:
    explicit AllocatorGuard(std::mutex &mutex) : lock_(mutex, std::defer_lock)
    {
        lockdep::WillAcquire(AllocatorLockKey());
        lock_.lock();
        lockdep::Acquired(AllocatorLockKey());
    }
    ~AllocatorGuard()
    {
        lockdep::Released(AllocatorLockKey());
    }

private:
    std::unique_lock<std::mutex> lock_;
};

}  // namespace

Status FileDomain::LoadUsedSlots()
{
    auto entries = fileio::ListDirAt(images_.get(), ".");
    if (!entries.ok())
        return entries.status();
    used_slots_.clear();
    for (const auto &entry : *entries)
        if (layout::ClassifyImagesEntry(entry) == layout::EntryKind::kSlot)
            used_slots_.insert(*layout::ParseSlotName(entry));
    return Status::Ok();
}

Status FileDomain::Reserve(const std::string &name, uint64_t *slot)
{
    /* Names and slots of other processes' unfinished transactions: a dead host's committed
     * but not yet indexed volume must not lose its name to a new one. */
    std::set<std::string> own;
    {
        AllocatorGuard guard(alloc_mutex_);
        own = own_transactions_;
        if (!slots_loaded_) {
            SDM_RETURN_IF_ERROR(LoadUsedSlots());
            slots_loaded_ = true;
        }
    }
    std::set<uint64_t> pending_slots;
    std::set<std::string> pending_names;
    auto entries = fileio::ListDirAt(tx_.get(), ".");
    if (!entries.ok())
        return entries.status();
    for (const auto &entry : *entries) {
        auto tx = layout::ParseTxDirName(entry);
        if (!tx || own.count(entry))
            continue;
        pending_slots.insert(tx->slot);
        TxRead read = ReadTransaction(*this, entry, *tx);
        if (read.marker)
            pending_names.insert(read.marker->name);
    }

    AllocatorGuard guard(alloc_mutex_);
    struct stat st;
    if (name.empty())
        ; /* another slot for a name reserved already */
    else if (reserved_names_.count(name) || pending_names.count(name))
        return Status::Error(ErrorCode::kAlreadyExists,
                             _("a volume named '") + name +
                                 _("' is being created by an unfinished operation; wait for it "
                                   "or run gc, or choose another name"));
    else if (fstatat(images_.get(), layout::NameEntry(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return Status::Error(ErrorCode::kAlreadyExists,
                             _("a volume named '") + name + _("' already exists; choose another "
                                                               "name or delete it first"));
    /* Searching from just past the last slot handed out keeps a burst of creates O(1). */
    const uint64_t range = layout::kMaxSlot - layout::kFirstVolumeSlot + 1;
    for (uint64_t i = 0; i < range; i++) {
        uint64_t s = layout::kFirstVolumeSlot + (slot_hint_ - layout::kFirstVolumeSlot + i) % range;
        if (used_slots_.count(s) || reserved_slots_.count(s) || pending_slots.count(s))
            continue;
        if (fstatat(images_.get(), layout::SlotEntry(s).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            used_slots_.insert(s); /* taken since the last LoadUsedSlots */
            continue;
        }
        if (!name.empty())
            reserved_names_.insert(name);
        reserved_slots_.insert(s);
        slot_hint_ = s + 1 > layout::kMaxSlot ? layout::kFirstVolumeSlot : s + 1;
        *slot = s;
        return Status::Ok();
    }
    return Status::Error(ErrorCode::kNoSpace,
                         _("every lease slot of the domain is in use; delete volumes first"));
}

void FileDomain::Unreserve(const std::string &name, uint64_t slot)
{
    AllocatorGuard guard(alloc_mutex_);
    if (!name.empty())
        reserved_names_.erase(name);
    reserved_slots_.erase(slot);
}

bool FileDomain::IsOwnTransaction(const std::string &dir_name)
{
    AllocatorGuard guard(alloc_mutex_);
    return own_transactions_.count(dir_name) > 0;
}

void FileDomain::AddOwnTransaction(const std::string &dir_name)
{
    AllocatorGuard guard(alloc_mutex_);
    own_transactions_.insert(dir_name);
}

void FileDomain::RemoveOwnTransaction(const std::string &dir_name)
{
    AllocatorGuard guard(alloc_mutex_);
    own_transactions_.erase(dir_name);
}

/* --- the index --- */

static Status LinkIndex(int dir, const std::string &entry, const std::string &target)
{
    if (symlinkat(target.c_str(), dir, entry.c_str()) == 0)
        return Status::Ok();
    if (errno != EEXIST)
        return Status::FromErrno(errno, std::string(layout::kImagesDir) + "/" + entry);
    char existing[256];
    ssize_t n = readlinkat(dir, entry.c_str(), existing, sizeof(existing) - 1);
    if (n >= 0 && std::string(existing, n) == target)
        return Status::Ok();
    return Status::Error(ErrorCode::kAlreadyExists,
                         std::string(layout::kImagesDir) + "/" + entry +
                             _(" already names another volume; run check"));
}

static Status UnlinkIndex(int dir, const std::string &entry, const std::string &target)
{
    char existing[256];
    ssize_t n = readlinkat(dir, entry.c_str(), existing, sizeof(existing) - 1);
    if (n < 0 || std::string(existing, n) != target)
        return Status::Ok(); /* gone, or taken over by a newer volume: not ours to remove */
    if (unlinkat(dir, entry.c_str(), 0) != 0 && errno != ENOENT)
        return Status::FromErrno(errno, _("cannot remove index entry ") + entry);
    return Status::Ok();
}

/* The root link follows the index and never fails an operation: a stale link (a volume of
 * that name that is gone) is replaced; anything else in its place is left alone. */
static void LinkRoot(int root, const std::string &link, const std::string &target)
{
    if (link.empty() || symlinkat(target.c_str(), root, link.c_str()) == 0 || errno != EEXIST)
        return;
    char existing[512];
    ssize_t n = readlinkat(root, link.c_str(), existing, sizeof(existing) - 1);
    if (n < 0 || std::string(existing, n).rfind(std::string(layout::kImagesDir) + "/", 0) != 0)
        return;
    std::string temp = link.substr(0, 200) + layout::kTempSuffix;
    if (symlinkat(target.c_str(), root, temp.c_str()) == 0 &&
        renameat(root, temp.c_str(), root, link.c_str()) != 0)
        unlinkat(root, temp.c_str(), 0);
}

Status FileDomain::AddIndex(const std::string &name, uint64_t slot, const std::string &image,
                            const std::string &volume)
{
    std::string target = layout::IndexTarget(image, volume);
    SDM_RETURN_IF_ERROR(LinkIndex(images_.get(), layout::SlotEntry(slot), target));
    SDM_RETURN_IF_ERROR(LinkIndex(images_.get(), layout::NameEntry(name), target));
    LinkRoot(root_.get(), layout::RootLink(name), layout::RootLinkTarget(image, volume));
    AllocatorGuard guard(alloc_mutex_);
    used_slots_.insert(slot);
    return Status::Ok();
}

Status FileDomain::RemoveIndex(const std::string &name, uint64_t slot, const std::string &image,
                               const std::string &volume)
{
    std::string target = layout::IndexTarget(image, volume);
    if (std::string link = layout::RootLink(name); !link.empty())
        SDM_RETURN_IF_ERROR(UnlinkIndex(root_.get(), link, layout::RootLinkTarget(image, volume)));
    SDM_RETURN_IF_ERROR(UnlinkIndex(images_.get(), layout::NameEntry(name), target));
    SDM_RETURN_IF_ERROR(UnlinkIndex(images_.get(), layout::SlotEntry(slot), target));
    AllocatorGuard guard(alloc_mutex_);
    used_slots_.erase(slot);
    slot_hint_ = std::min(slot_hint_, slot); /* keep the lease area compact */
    return Status::Ok();
}

Status FileDomain::SyncNamespace(int committed_dir, const std::string &what)
{
    Barrier barrier(sync_policy_);
    if (committed_dir != images_.get())
        barrier.Dir(committed_dir, what);
    barrier.Dir(images_.get(), layout::kImagesDir); /* the index, changed last */
    barrier.Dir(root_.get(), "."); /* the root links that follow it */
    return barrier.Sync();
}

}  // namespace sdm
