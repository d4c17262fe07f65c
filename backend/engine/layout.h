/* The one module that knows every name and path of a file storage domain.
 *
 *     <root>/domain.meta                 domain metadata; its presence means "formatted"
 *     <root>/ids                         sanlock lockspace (host ids)
 *     <root>/leases                      lease area: slot 0 the domain lease, 1.. volumes
 *     <root>/images/<image>/<volume>     volume data (raw or qcow2)
 *     <root>/images/<image>/<volume>.meta  volume metadata
 *     <root>/images/@<volume name>       name index: symlink -> <image>/<volume>
 *     <root>/images/#<sha256 of name>    the same, for a name too long for the '@' form
 *     <root>/images/<slot>               slot index: symlink -> <image>/<volume>
 *     <root>/tx/<txid>-<slot>/           a transaction: its marker and its garbage
 *     <root>/tx/<txid>-<slot>/marker
 *
 * The index lives in images/ beside the images so that one fsync of images/ makes a commit
 * and its index durable. Index symlinks are read with readlink and never followed by the
 * engine. docs/on-storage-format.md is the prose version of this file. Pure functions;
 * thread-safe. */
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sdm/status.h"

namespace sdm::layout {

inline constexpr char kDomainMeta[] = "domain.meta";
inline constexpr char kIds[] = "ids";
inline constexpr char kLeases[] = "leases";
inline constexpr char kImagesDir[] = "images";
inline constexpr char kTxDir[] = "tx";
inline constexpr char kMarker[] = "marker";
inline constexpr char kTempSuffix[] = ".tmp";

inline constexpr uint64_t kDomainLeaseSlot = 0;
inline constexpr uint64_t kFirstVolumeSlot = 1;
inline constexpr uint64_t kMaxSlot = 1u << 20;
inline constexpr size_t kMaxNameBytes = 255;

/* The entries a freshly formatted domain holds, in the order Format creates them. */
inline constexpr const char *kSkeleton[] = {kImagesDir, kTxDir, kIds, kLeases};

std::string NewUuid();
/* Lower-case canonical 8-4-4-4-12 UUID. */
bool IsUuid(const std::string &text);

/* A volume name as a user types it: 1..255 bytes of UTF-8, no '/', no NUL or other control
 * character, not "." or "..". The message says what is wrong and what is allowed. */
Status ValidateVolumeName(const std::string &name);

std::string MetaFile(const std::string &volume);          /* "<volume>.meta" */
std::string ImagePath(const std::string &image);          /* "images/<image>" */
std::string VolumePath(const std::string &image, const std::string &volume);
std::string MetaPath(const std::string &image, const std::string &volume);

std::string TxDirName(const std::string &txid, uint64_t slot); /* "<txid>-<slot>" */
struct TxName {
    std::string txid;
    uint64_t slot = 0;
};
std::optional<TxName> ParseTxDirName(const std::string &name);

std::string SlotName(uint64_t slot);                      /* decimal, no leading zeros */
std::optional<uint64_t> ParseSlotName(const std::string &name);

/* Index entries in images/: a volume name's, a lease slot's, and what an entry is. */
std::string NameEntry(const std::string &name);
/* The convenience link at the domain root, <domain>/<name> -> images/<image>/<volume>, for
 * tools that take a dir pool's volume path to be <pool>/<name> (virt-install does). Empty
 * for names the root needs itself (domain.meta, the skeleton, lost+found, *.tmp) and for
 * names longer than the index's: such volumes simply have no root link. The index in
 * images/ stays the only authority; root links are derived from it. */
std::string RootLink(const std::string &name);
std::string RootLinkTarget(const std::string &image, const std::string &volume);
std::string SlotEntry(uint64_t slot);
enum class EntryKind { kImage, kName, kSlot, kOther };
EntryKind ClassifyImagesEntry(const std::string &entry);

/* Target of the index symlinks, relative to images/: "<image>/<volume>". */
std::string IndexTarget(const std::string &image, const std::string &volume);
struct VolumeRef {
    std::string image;
    std::string volume;
};
std::optional<VolumeRef> ParseIndexTarget(const std::string &target);

/* Byte offset of a slot's lease in the lease area. */
inline uint64_t LeaseOffset(uint64_t slot, uint64_t alignment) { return slot * alignment; }

}  // namespace sdm::layout
