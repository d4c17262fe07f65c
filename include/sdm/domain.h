/* A file storage domain: the public face of the engine.
 *
 * A Domain object is one process's attachment to a domain directory shared by many hosts:
 * while it exists it holds the domain lease shared and an owner lease of its own
 * (docs/locking.md). Every metadata operation (create, clone, delete, resize, snapshot
 * layer) runs as one storage transaction: a marker, garbage, one atomic rename, marker
 * removal. The garbage collector sweeps what interrupted transactions leave. A Domain is
 * thread-safe: many threads may run operations at once; the engine's locks follow the
 * order in docs/locking.md. */
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sdm/lease.h"
#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm {

/* How much fsync a commit takes; see backend/engine/durability.h. */
enum class Durability { kAuto, kStrict, kOrdered };

struct DomainOptions {
    uint32_t host_id = 1;            /* this host's id in the lockspace, 1..2000 */
    uint64_t generation = 0;         /* the host id's generation, recorded in markers */
    /* Lease backend; null selects local OFD locks (single-host domains and tests). */
    std::shared_ptr<LeaseManager> leases;
    /* How long an operation waits for local locks, and an attachment for its leases. */
    std::chrono::milliseconds lock_timeout{30000};
    Durability durability = Durability::kAuto;
};

/* What changes under a domain: its filesystem's space and a token for "volumes came or
 * went". */
struct DomainUsage {
    uint64_t fs_capacity = 0;   /* bytes of the filesystem holding the domain */
    uint64_t fs_allocation = 0; /* bytes in use on it */
    uint64_t fs_available = 0;  /* bytes an unprivileged writer may still use */
    /* Differs whenever any host added or removed a volume since it was read (the times of
     * images/, where every name claim lives); compare it, never parse it. */
    std::string change_token;
};

struct DomainInfo {
    std::string uuid;
    std::string path;
    uint32_t version = 0;
    uint32_t io_timeout = 0;
    uint32_t sector_size = 0;
    uint64_t alignment = 0;
    std::string lockspace;           /* sanlock lockspace name */
    std::string durability;          /* the sync policy in force and why, e.g. "ordered (XFS)" */
};

struct FormatParams {
    uint32_t io_timeout = 10;        /* seconds, written into the lockspace */
    uint32_t sector_size = 512;      /* 512 or 4096 */
    uint64_t alignment = 1 << 20;    /* lease slot size in bytes */
    /* Writes the lease areas (ids, leases, owners exist, empty) of the domain being
     * formatted, before its commit: sdmd's sanlock lockspace and domain lease. Null for
     * local leases, which need nothing written. */
    std::function<Status(const DomainInfo &domain)> write_lease_areas;
};

struct GcOptions {
    bool dry_run = false;            /* report candidates, change nothing */
};

struct GcReport {
    uint32_t markers_seen = 0;
    uint32_t collected = 0;          /* abandoned transactions swept */
    uint32_t rolled_forward = 0;     /* of those, committed ones completed */
    uint32_t skipped_live = 0;       /* its owner still holds its owner lease */
    uint32_t errors = 0;
    std::vector<std::string> lines;  /* one line per marker, for people */
};

struct UpgradeReport {
    uint32_t from_version = 0;
    uint32_t to_version = 0;
    uint32_t adopted = 0;            /* format 1 transactions handed to the collector */
    uint32_t slot_links_removed = 0; /* format 1 slot index entries */
    GcReport gc;                     /* the sweep that settled the adopted ones */
};

struct CheckReport {
    uint32_t images = 0;
    uint32_t volumes = 0;
    uint32_t pending_transactions = 0;
    std::vector<std::string> problems; /* empty when the domain is consistent */
    bool ok() const { return problems.empty(); }
};

/* A file from outside the domain to copy into a new volume (vol-create-from another pool).
 * A descriptor, not a path: whoever asks for the import proves it may read the file. */
struct ImportParams {
    int source_fd = -1;                 /* open for reading; the caller keeps it */
    VolumeFormat source_format = VolumeFormat::kRaw;
    std::string name;                   /* of the new volume, in a new image */
    std::optional<VolumeFormat> format; /* default: the source's format */
    uint64_t capacity = 0;              /* 0: the source's size; never smaller than it */
    std::string uuid;                   /* as in CreateParams: planned identity, or empty */
    std::string image;
};

/* Where an upload's bytes come from. */
struct UploadSource {
    int fd = -1;                        /* read until EOF (a pipe or a file) */
    /* Called at EOF, before anything is made durable: ok says the data ended where its
     * producer meant it to, not because the producer died or gave up. Null: EOF is the
     * end. */
    std::function<Status(OpObserver *observer)> confirm_end;
};

class Domain {
public:
    /* Makes an empty directory (or one left by an interrupted format) a domain. Two hosts
     * formatting one directory at once: one formats, the other gets kAlreadyExists. */
    static Result<DomainInfo> Format(const std::string &path, const FormatParams &params);
    /* Opens (attaches) a formatted domain; refuses a newer format version, and a format 1
     * domain with an error that names the upgrade. */
    static Result<std::unique_ptr<Domain>> Open(const std::string &path,
                                                const DomainOptions &options = {});
    /* Reads a domain's metadata without attaching it. */
    static Result<DomainInfo> Inspect(const std::string &path);
    /* Ok if this build opens a domain of `info`'s format as it is; a format to upgrade
     * first is kUnsupported, with the command that upgrades it. */
    static Status Usable(const DomainInfo &info);
    /* Upgrades a format 1 domain to the current format in place (docs/on-storage-format.md,
     * "Upgrade"): under the domain lease, exclusive, so no host may have it attached.
     * Crash-safe and idempotent: run it again after any interruption; on a current domain
     * it only finishes what an interrupted upgrade left. */
    static Result<UpgradeReport> Upgrade(const std::string &path,
                                         const DomainOptions &options = {});

    virtual ~Domain() = default;

    virtual const DomainInfo &info() const = 0;

    /* Chooses a new volume's identity without changing storage: uuid, image (the backing
     * volume's for a layer) and the path its data file will have. Passing them back in
     * CreateParams/CloneParams makes the create use them. Without a backing volume it
     * neither reads storage nor waits on a lock. */
    virtual Result<VolumeInfo> PlanVolume(const CreateParams &params) = 0;
    virtual Result<VolumeInfo> CreateVolume(const CreateParams &params,
                                            OpObserver *observer = nullptr) = 0;
    virtual Result<VolumeInfo> CloneVolume(const CloneParams &params,
                                           OpObserver *observer = nullptr) = 0;
    /* Deletes a leaf volume; the last volume of an image takes the image with it. */
    virtual Status DeleteVolume(const std::string &name, OpObserver *observer = nullptr) = 0;
    /* Grows a volume; shrinking is refused. */
    virtual Result<VolumeInfo> ResizeVolume(const std::string &name, uint64_t capacity,
                                            OpObserver *observer = nullptr) = 0;

    virtual Result<VolumeInfo> LookupVolume(const std::string &name) = 0;
    /* Committed volumes only: never garbage. ILLEGAL ones are listed with their legality. */
    virtual Result<std::vector<VolumeInfo>> ListVolumes() = 0;

    /* Cheap (two stat calls): polled to notice other hosts' changes. */
    virtual Result<DomainUsage> Usage() = 0;

    virtual Result<GcReport> CollectGarbage(const GcOptions &options = {}) = 0;
    virtual Result<CheckReport> Check() = 0;

    /* --- volume data (docs/data-operations.md) --- */
    /* Copies a file from outside the domain into a new volume in a new image: a clone whose
     * source is a descriptor (one transaction, ILLEGAL while copying, the clone's steps). */
    virtual Result<VolumeInfo> ImportVolume(const ImportParams &params,
                                            OpObserver *observer = nullptr) = 0;
    /* Writes what `source` yields into the leaf volume's data file from `offset` (of the
     * file: a qcow2 volume takes the qcow2 file's bytes), at most `length` bytes (0: up to
     * the end of a raw volume), under the volume's exclusive lease, then syncs it. The
     * volume is ILLEGAL from before the first byte until the data is durable; a failure
     * leaves it ILLEGAL (upload again, or delete it). */
    virtual Result<VolumeInfo> UploadVolume(const std::string &name, const UploadSource &source,
                                            uint64_t offset, uint64_t length,
                                            OpObserver *observer = nullptr) = 0;
    /* Writes the data file's bytes from `offset` (at most `length`, 0: to the end) into
     * `fd`, under the volume's shared lease. */
    virtual Status DownloadVolume(const std::string &name, int fd, uint64_t offset,
                                  uint64_t length, OpObserver *observer = nullptr) = 0;
    /* Zeroes what the guest sees of a leaf volume, keeping its size, format and
     * preallocation, under its exclusive lease; ILLEGAL meanwhile, like an upload. */
    virtual Result<VolumeInfo> WipeVolume(const std::string &name,
                                          OpObserver *observer = nullptr) = 0;

    /* Removes an empty domain from storage (no image, name claim or transaction left):
     * takes the domain lease exclusively (kBusy while another process has the domain
     * attached); the removal of domain.meta is the commit; the leases are released before
     * the rest of the skeleton goes. The object must not be used afterwards. */
    virtual Status Remove() = 0;
};

}  // namespace sdm
