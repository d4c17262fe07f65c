/* The one module that knows every name and path of a file storage domain.
 *
 *     <root>/domain.meta                 domain metadata; its presence means "formatted"
 *     <root>/ids                         sanlock lockspace (host ids)
 *     <root>/leases                      lease area: slot 0 the domain lease, 1.. volumes
 *     <root>/owners                      owner leases: slot n protects owner n's transactions
 *     <root>/chunks/<chunk>              symlink -> "<owner>": who hands out the chunk's slots
 *     <root>/images/<image>/<volume>     volume data (raw or qcow2)
 *     <root>/images/<image>/<volume>.meta  volume metadata
 *     <root>/images/@<volume name>       name claim: symlink -> <image>/<volume>
 *     <root>/images/#<sha256 of name>    the same, for a name too long for the '@' form
 *     <root>/tx/<txid>-<slot>-<owner>-<incarnation>/   a transaction: marker and garbage
 *     <root>/tx/<...>/marker
 *     <root>/.format                     symlink -> "<uuid>": a format in progress
 *
 * The name claims live in images/ beside the images so that one fsync of images/ makes a
 * commit and its name durable. Claims are read with readlink and never followed by the
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
inline constexpr char kOwners[] = "owners";
inline constexpr char kChunksDir[] = "chunks";
inline constexpr char kImagesDir[] = "images";
inline constexpr char kTxDir[] = "tx";
inline constexpr char kMarker[] = "marker";
inline constexpr char kFormatClaim[] = ".format";
inline constexpr char kTempSuffix[] = ".tmp";

inline constexpr uint64_t kDomainLeaseSlot = 0;
inline constexpr uint64_t kFirstVolumeSlot = 1;
inline constexpr uint64_t kMaxSlot = 1u << 20;
inline constexpr size_t kMaxNameBytes = 255;
/* Owner leases: slot n of the owners file for owner n, 1..kMaxOwner (sanlock's host id range). */
inline constexpr uint32_t kFirstOwner = 1;
inline constexpr uint32_t kMaxOwner = 2000;

/* Volume slots are handed out in chunks: chunk c holds slots c*kChunkSlots+1 ..
 * (c+1)*kChunkSlots, and only the owner that claimed it (chunks/<c>) hands them out and
 * writes their leases. */
inline constexpr uint64_t kChunkSlots = 64;
inline constexpr uint64_t kMaxChunk = (kMaxSlot - kFirstVolumeSlot) / kChunkSlots;
inline uint64_t ChunkOf(uint64_t slot) { return (slot - kFirstVolumeSlot) / kChunkSlots; }
inline uint64_t FirstSlotOf(uint64_t chunk) { return chunk * kChunkSlots + kFirstVolumeSlot; }
inline uint64_t LastSlotOf(uint64_t chunk) { return FirstSlotOf(chunk) + kChunkSlots - 1; }

/* The entries a freshly formatted domain holds, in the order Format creates them. A format
 * 1 domain (before upgrade) lacks chunks/ and owners. */
inline constexpr const char *kSkeleton[] = {kImagesDir, kTxDir, kChunksDir,
                                            kIds,       kLeases, kOwners};

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

/* Who runs a transaction: an owner (its owner lease's slot) in one incarnation (a random
 * 64-bit number, 16 lower-case hex digits, new for every process that attaches). */
struct Owner {
    uint32_t owner = 0;
    std::string incarnation;
    bool operator==(const Owner &) const = default;
};
std::string NewIncarnation();
bool IsIncarnation(const std::string &text);

/* "<txid>-<slot>-<owner>-<incarnation>": the transaction's directory names its txid, the
 * lease slot of the volume it makes or changes, and its owner. */
struct TxName {
    std::string txid;
    uint64_t slot = 0;
    Owner owner;
};
std::string TxDirName(const TxName &name);
std::optional<TxName> ParseTxDirName(const std::string &name);
/* A format 1 transaction directory, "<txid>-<slot>" (upgrade only). */
std::optional<TxName> ParseLegacyTxDirName(const std::string &name);

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
/* kLegacySlot: a format 1 slot index entry (images/<slot>), removed by the upgrade. */
enum class EntryKind { kImage, kName, kLegacySlot, kOther };
EntryKind ClassifyImagesEntry(const std::string &entry);

/* chunks/<chunk> and its target, the owner's decimal number. */
std::string ChunkEntry(uint64_t chunk);
std::optional<uint64_t> ParseChunkEntry(const std::string &entry);
std::string ChunkTarget(uint32_t owner);
std::optional<uint32_t> ParseChunkTarget(const std::string &target);

/* Target of the index symlinks, relative to images/: "<image>/<volume>". */
std::string IndexTarget(const std::string &image, const std::string &volume);
struct VolumeRef {
    std::string image;
    std::string volume;
};
std::optional<VolumeRef> ParseIndexTarget(const std::string &target);

/* Byte offset of a slot's lease in the lease area (and of an owner's in the owners file). */
inline uint64_t LeaseOffset(uint64_t slot, uint64_t alignment) { return slot * alignment; }

}  // namespace sdm::layout
