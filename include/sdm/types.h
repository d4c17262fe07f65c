/* Value types of the public engine API: volumes, their formats and what an operation
 * reports while it runs. Plain data; safe to copy between threads. */
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sdm {

enum class VolumeFormat { kRaw, kQcow2 };
enum class Preallocation { kSparse, kFull, kMetadata };
enum class Legality { kLegal, kIllegal };

const char *VolumeFormatName(VolumeFormat format);           /* "raw", "qcow2" */
std::optional<VolumeFormat> ParseVolumeFormat(const std::string &text);
const char *PreallocationName(Preallocation prealloc);       /* "sparse", "full", "metadata" */
std::optional<Preallocation> ParsePreallocation(const std::string &text);
const char *LegalityName(Legality legality);                 /* "LEGAL", "ILLEGAL" */

struct VolumeInfo {
    std::string uuid;
    std::string image;       /* image UUID: the chain this volume belongs to */
    std::string name;        /* user-visible, unique in the domain, 1..255 bytes */
    std::string parent;      /* UUID of the backing volume in the same image, or empty */
    std::string parent_path; /* absolute path of the backing volume's data file, or empty */
    VolumeFormat format = VolumeFormat::kRaw;
    Preallocation prealloc = Preallocation::kSparse;
    Legality legality = Legality::kLegal;
    uint64_t capacity = 0;   /* virtual size in bytes */
    uint64_t allocation = 0; /* bytes the data file occupies on storage */
    uint64_t generation = 0; /* bumped by every committed metadata change */
    uint64_t slot = 0;       /* the volume lease's slot in the domain's lease area */
    int64_t ctime = 0;       /* creation time, seconds since the epoch */
    std::string path;        /* absolute path of the data file */
    bool leaf = true;        /* no other volume names this one as parent */
};

struct CreateParams {
    std::string name;
    uint64_t capacity = 0;
    VolumeFormat format = VolumeFormat::kRaw;
    Preallocation prealloc = Preallocation::kSparse;
    std::string backing;     /* name of a volume to layer on (a snapshot layer), or empty */
    /* Identity chosen beforehand with Domain::PlanVolume, so that a caller (libvirt) can
     * hand out the volume's key and path before the create runs; empty: chosen here. */
    std::string uuid;
    std::string image;       /* a layer's image is its backing volume's */
};

struct CloneParams {
    std::string source;      /* name of the volume to copy (its whole chain is flattened) */
    std::string name;        /* name of the new volume, in a new image */
    std::optional<VolumeFormat> format; /* default: the source's format */
    std::string uuid;        /* as in CreateParams: planned identity, or empty */
    std::string image;
};

/* What a running operation tells whoever started it. Implementations must be cheap and
 * thread-safe: the copy loop calls OnProgress from the operation's thread. */
class OpObserver {
public:
    virtual ~OpObserver() = default;
    virtual void OnStep(const std::string &step) { (void)step; }
    virtual void OnProgress(uint64_t done, uint64_t total) { (void)done; (void)total; }
    /* Polled between steps and copy chunks; true aborts the operation. */
    virtual bool CancelRequested() { return false; }
};

}  // namespace sdm
