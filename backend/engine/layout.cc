/* On-storage names of a file storage domain; see layout.h for the tree. */
#include "backend/engine/layout.h"

#include <algorithm>

#include <glib.h>

#include <charconv>

#include "backend/engine/i18n.h"

namespace sdm::layout {

std::string NewUuid()
{
    gchar *uuid = g_uuid_string_random();
    std::string result(uuid);
    g_free(uuid);
    return result;
}

bool IsUuid(const std::string &text)
{
    if (text.size() != 36)
        return false;
    for (size_t i = 0; i < text.size(); i++) {
        char c = text[i];
        bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

/* A decimal number without leading zeros, from `min` to `max`. */
static std::optional<uint64_t> ParseDecimalIn(const std::string &text, uint64_t min, uint64_t max)
{
    if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
        return std::nullopt;
    return value;
}

/* `name` for a message: its printable UTF-8 as is, every control character (C0, DEL, C1)
 * and every byte that is not UTF-8 as \xNN, so that a refused name can neither break the
 * line of a log or of virsh's output nor reach a terminal as an escape sequence, and the
 * message stays valid UTF-8 for D-Bus. */
static std::string PrintableName(const std::string &name)
{
    std::string out;
    const char *p = name.data(), *end = p + name.size();
    while (p < end) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        size_t length = c < 0x110000 && c != 0 ? static_cast<size_t>(g_utf8_next_char(p) - p) : 1;
        if (length == 1 ? (c >= 0x80 || c < 0x20 || c == 0x7f) : g_unichar_iscntrl(c)) {
            for (size_t i = 0; i < length; i++)
                out += Printf("\\x%02x", static_cast<unsigned char>(p[i]));
        } else {
            out.append(p, length);
        }
        p += length;
    }
    return out;
}

Status ValidateVolumeName(const std::string &name)
{
    auto bad = [&name](const char *why) {
        return Status::Error(ErrorCode::kInvalidArgument,
                             std::string(_("invalid volume name")) + " '" + PrintableName(name) +
                                 "': " + why +
                                 _("; use 1 to 255 bytes of printable UTF-8 without '/'"));
    };
    if (name.empty())
        return bad(_("it is empty"));
    if (name.size() > kMaxNameBytes)
        return bad(_("it is longer than 255 bytes"));
    if (name == "." || name == "..")
        return bad(_("'.' and '..' are reserved"));
    for (unsigned char c : name) {
        if (c == '/')
            return bad(_("it contains '/'"));
        if (c == '\0')
            return bad(_("it contains a NUL byte"));
    }
    if (!g_utf8_validate(name.data(), static_cast<gssize>(name.size()), nullptr))
        return bad(_("it is not valid UTF-8"));
    /* Names are printed by virsh and written to logs: no character may act on a terminal. */
    for (const char *p = name.c_str(); *p; p = g_utf8_next_char(p)) {
        if (g_unichar_iscntrl(g_utf8_get_char(p)))
            return bad(_("it contains a control character"));
    }
    return Status::Ok();
}

std::string MetaFile(const std::string &volume) { return volume + ".meta"; }

std::string ImagePath(const std::string &image) { return std::string(kImagesDir) + "/" + image; }

std::string VolumePath(const std::string &image, const std::string &volume)
{
    return ImagePath(image) + "/" + volume;
}

std::string MetaPath(const std::string &image, const std::string &volume)
{
    return ImagePath(image) + "/" + MetaFile(volume);
}

std::string SlotName(uint64_t slot) { return std::to_string(slot); }

std::optional<uint64_t> ParseSlotName(const std::string &name)
{
    return ParseDecimalIn(name, 0, kMaxSlot);
}

std::string NewIncarnation()
{
    return Printf("%016llx", static_cast<unsigned long long>(g_random_int()) << 32 |
                                 g_random_int());
}

bool IsIncarnation(const std::string &text)
{
    return text.size() == 16 && std::all_of(text.begin(), text.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

std::string TxDirName(const TxName &name)
{
    return name.txid + "-" + SlotName(name.slot) + "-" + std::to_string(name.owner.owner) + "-" +
           name.owner.incarnation;
}

std::optional<TxName> ParseLegacyTxDirName(const std::string &name)
{
    if (name.size() < 38 || name[36] != '-')
        return std::nullopt;
    std::string txid = name.substr(0, 36);
    auto slot = ParseSlotName(name.substr(37));
    if (!IsUuid(txid) || !slot)
        return std::nullopt;
    return TxName{txid, *slot, {}};
}

std::optional<TxName> ParseTxDirName(const std::string &name)
{
    /* <uuid>-<slot>-<owner>-<16 hex> */
    if (name.size() < 36 + 2 + 2 + 17 || name[36] != '-' || name[name.size() - 17] != '-')
        return std::nullopt;
    std::string txid = name.substr(0, 36);
    std::string incarnation = name.substr(name.size() - 16);
    std::string middle = name.substr(37, name.size() - 17 - 37);
    size_t dash = middle.find('-');
    if (dash == std::string::npos || !IsUuid(txid) || !IsIncarnation(incarnation))
        return std::nullopt;
    auto slot = ParseSlotName(middle.substr(0, dash));
    auto owner = ParseDecimalIn(middle.substr(dash + 1), kFirstOwner, kMaxOwner);
    if (!slot || !owner)
        return std::nullopt;
    return TxName{txid, *slot, {static_cast<uint32_t>(*owner), incarnation}};
}

std::string NameEntry(const std::string &name)
{
    /* '@' + name fits NAME_MAX for every name but the longest; those go by digest. */
    if (name.size() < kMaxNameBytes)
        return "@" + name;
    gchar *digest = g_compute_checksum_for_data(
        G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(name.data()), name.size());
    std::string entry = std::string("#") + digest;
    g_free(digest);
    return entry;
}

EntryKind ClassifyImagesEntry(const std::string &entry)
{
    if (IsUuid(entry))
        return EntryKind::kImage;
    if (!entry.empty() && (entry[0] == '@' || entry[0] == '#'))
        return EntryKind::kName;
    if (ParseSlotName(entry))
        return EntryKind::kLegacySlot;
    return EntryKind::kOther;
}

std::string ChunkEntry(uint64_t chunk) { return std::to_string(chunk); }

std::optional<uint64_t> ParseChunkEntry(const std::string &entry)
{
    return ParseDecimalIn(entry, 0, kMaxChunk);
}

std::string ChunkTarget(uint32_t owner) { return std::to_string(owner); }

std::optional<uint32_t> ParseChunkTarget(const std::string &target)
{
    auto owner = ParseDecimalIn(target, kFirstOwner, kMaxOwner);
    if (!owner)
        return std::nullopt;
    return static_cast<uint32_t>(*owner);
}

std::string RootLink(const std::string &name)
{
    auto reserved = [&](const char *n) { return name == n; };
    if (name == kDomainMeta || name == "lost+found" || name.empty() || name[0] == '.' ||
        std::any_of(std::begin(kSkeleton), std::end(kSkeleton), reserved) ||
        (name.size() >= 4 && name.compare(name.size() - 4, 4, kTempSuffix) == 0))
        return "";
    return name;
}

std::string RootLinkTarget(const std::string &image, const std::string &volume)
{
    return std::string(kImagesDir) + "/" + IndexTarget(image, volume);
}

std::string IndexTarget(const std::string &image, const std::string &volume)
{
    return image + "/" + volume;
}

std::optional<VolumeRef> ParseIndexTarget(const std::string &target)
{
    if (target.size() != 36 + 1 + 36 || target[36] != '/')
        return std::nullopt;
    std::string image = target.substr(0, 36);
    std::string volume = target.substr(37);
    if (!IsUuid(image) || !IsUuid(volume))
        return std::nullopt;
    return VolumeRef{image, volume};
}

}  // namespace sdm::layout
