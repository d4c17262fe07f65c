/* The on-storage encoding of domain metadata, volume metadata and transaction markers.
 *
 * One text format serves all three (docs/on-storage-format.md):
 *
 *     SDM-VOLUME 1
 *     key=value
 *     ...
 *     checksum=sha256:<64 hex digits of every byte before this line>
 *
 * Values are percent-encoded (every byte outside 0x21..0x7e, and '%', becomes %XX), so a
 * value never holds a newline. A parser must treat its input as hostile: it rejects a
 * wrong magic, a newer version, a bad or missing checksum, a truncated or oversized file,
 * a duplicate or unknown-but-required key and any out-of-range value with kCorrupt (or
 * kUnsupported for a newer version) and a message naming the file's problem. Pure
 * functions; thread-safe. */
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm::meta {

constexpr size_t kMaxFileSize = 4096;    /* larger metadata files are refused as corrupt */
constexpr uint32_t kFormatVersion = 1;   /* the newest document version this build reads */
/* The domain's format (domain.meta's `version`): 2 since transactions are owned by owner
 * leases and names are claimed on storage (docs/on-storage-format.md, "Upgrade"). A
 * format 1 domain is read only to be upgraded. */
constexpr uint32_t kDomainVersion = 2;
constexpr uint32_t kOldestDomainVersion = 1;
constexpr uint64_t kMaxCapacity = 1ull << 56; /* 64 PiB: far above any filesystem here */

/* A parsed document: kind ("VOLUME", "DOMAIN", "MARKER"), version, fields in file order. */
struct Doc {
    std::string kind;
    uint32_t version = kFormatVersion;
    std::vector<std::pair<std::string, std::string>> fields; /* decoded values */

    void Set(const std::string &key, const std::string &value);
    const std::string *Find(const std::string &key) const;
};

std::string Serialize(const Doc &doc);
/* Parses and verifies a document of `expected_kind`; `what` names the file in errors. */
Result<Doc> Parse(std::string_view text, std::string_view expected_kind, const std::string &what);

struct DomainMeta {
    std::string uuid;
    uint32_t version = kDomainVersion;
    uint32_t io_timeout = 10;
    uint32_t sector_size = 512;
    uint64_t alignment = 1 << 20;
    std::string lockspace;   /* sanlock lockspace name, <= 48 bytes */
    int64_t ctime = 0;
};

struct VolumeMeta {
    std::string uuid;
    std::string image;
    std::string name;
    std::string parent;      /* empty: base volume */
    VolumeFormat format = VolumeFormat::kRaw;
    Preallocation prealloc = Preallocation::kSparse;
    Legality legality = Legality::kLegal;
    uint64_t capacity = 0;
    uint64_t generation = 0;
    uint64_t slot = 0;
    int64_t ctime = 0;
};

enum class TxOp { kCreate, kClone, kDelete, kResize };
const char *TxOpName(TxOp op);

/* A transaction marker: what runs, who owns it, which lease protects it and every piece of
 * garbage it may leave (docs/transactions.md says what each op leaves). */
struct Marker {
    std::string txid;
    TxOp op = TxOp::kCreate;
    uint32_t host_id = 0;        /* who began it, for people; its owner is in the */
    uint64_t generation = 0;     /* directory's name, which the collector may change */
    uint64_t slot = 0;           /* the lease slot of the volume it makes or changes */
    std::string image;
    std::string volume;
    std::string name;
    bool new_image = false;      /* create/clone: a new image; delete: the whole image */
    uint64_t old_capacity = 0;   /* resize */
    uint64_t new_capacity = 0;   /* resize */
    VolumeFormat format = VolumeFormat::kRaw; /* resize: how to undo a grow */
    int64_t ctime = 0;
};

std::string Encode(const DomainMeta &meta);
std::string Encode(const VolumeMeta &meta);
std::string Encode(const Marker &marker);
Result<DomainMeta> DecodeDomain(std::string_view text, const std::string &what);
Result<VolumeMeta> DecodeVolume(std::string_view text, const std::string &what);
Result<Marker> DecodeMarker(std::string_view text, const std::string &what);

}  // namespace sdm::meta
