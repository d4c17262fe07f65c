/* A file storage domain: the public face of the engine.
 *
 * A Domain object is one host's handle on a domain directory shared by many hosts. Every
 * metadata operation (create, clone, delete, resize, snapshot layer) runs as one storage
 * transaction: a marker, garbage, one atomic rename, marker removal. The garbage
 * collector sweeps what interrupted transactions leave. A Domain is thread-safe: many
 * threads may run operations at once; the engine's locks follow the order in
 * docs/locking.md. */
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm {

class LeaseManager;

struct FormatParams {
    uint32_t io_timeout = 10;        /* seconds, written into the lockspace */
    uint32_t sector_size = 512;      /* 512 or 4096 */
    uint64_t alignment = 1 << 20;    /* lease slot size in bytes */
};

/* How much fsync a commit takes; see backend/engine/durability.h. */
enum class Durability { kAuto, kStrict, kOrdered };

struct DomainOptions {
    uint32_t host_id = 1;            /* this host's id in the lockspace, 1..2000 */
    uint64_t generation = 0;         /* the host id's generation, recorded in markers */
    /* Lease backend; null selects local OFD locks (single-host domains and tests). */
    std::shared_ptr<LeaseManager> leases;
    /* How long a metadata operation waits for the domain lease and image locks. */
    std::chrono::milliseconds lock_timeout{30000};
    /* How long the domain lease is kept after the last operation that used it: a burst
     * of operations then pays one acquire. 0 gives it back at once. */
    std::chrono::milliseconds domain_lease_linger{0};
    Durability durability = Durability::kAuto;
};

/* What changes under a domain: its filesystem's space and a token for "volumes came or
 * went". */
struct DomainUsage {
    uint64_t fs_capacity = 0;   /* bytes of the filesystem holding the domain */
    uint64_t fs_allocation = 0; /* bytes in use on it */
    uint64_t fs_available = 0;  /* bytes an unprivileged writer may still use */
    /* Differs whenever any host added or removed a volume since it was read (the name
     * index's directory times); compare it, never parse it. */
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

struct GcOptions {
    bool dry_run = false;            /* report candidates, change nothing */
};

struct GcReport {
    uint32_t markers_seen = 0;
    uint32_t collected = 0;          /* abandoned transactions swept */
    uint32_t rolled_forward = 0;     /* of those, committed ones completed */
    uint32_t skipped_live = 0;       /* owner still holds the protecting lease */
    uint32_t errors = 0;
    std::vector<std::string> lines;  /* one line per marker, for people */
};

struct CheckReport {
    uint32_t images = 0;
    uint32_t volumes = 0;
    uint32_t pending_transactions = 0;
    std::vector<std::string> problems; /* empty when the domain is consistent */
    bool ok() const { return problems.empty(); }
};

class Domain {
public:
    /* Makes an empty directory (or one left by an interrupted format) a domain. */
    static Result<DomainInfo> Format(const std::string &path, const FormatParams &params);
    /* Opens a formatted domain; refuses a newer format version. */
    static Result<std::unique_ptr<Domain>> Open(const std::string &path,
                                                const DomainOptions &options = {});

    virtual ~Domain() = default;

    virtual const DomainInfo &info() const = 0;

    /* Chooses a new volume's identity without touching storage: uuid, image (the backing
     * volume's for a layer) and the path its data file will have. Passing them back in
     * CreateParams/CloneParams makes the create use them. */
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
};

}  // namespace sdm
