/* The metadata text format (see metadata.h): serializing, the strict parser and the typed
 * encoders and decoders of domain metadata, volume metadata and transaction markers.
 *
 * Parse accepts exactly the canonical form that Serialize writes (minimal upper-case
 * escapes, no leading zeros, lower-case checksum), so Serialize(Parse(x)) == x for every
 * accepted x: a file that differs in any byte from what some writer produced is refused.
 * Pure functions; thread-safe. */
#include "backend/engine/metadata.h"

#include <glib.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>
#include <type_traits>

#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"

namespace sdm::meta {
namespace {

constexpr char kMagicPrefix[] = "SDM-";
constexpr char kChecksumPrefix[] = "checksum=sha256:";
constexpr size_t kSha256HexLen = 64;
constexpr char kHexDigits[] = "0123456789ABCDEF";

constexpr uint32_t kMaxHostId = 2000;       /* sanlock's host id range */
constexpr uint32_t kMaxIoTimeout = 600;
constexpr size_t kMaxLockspaceBytes = 48;   /* SANLK_NAME_LEN */
constexpr uint64_t kMiB = 1ull << 20;

/* What to do about a damaged file: the same advice ends every kCorrupt message. */
const char *RepairHint() { return _("run `sdm-local check` to find and repair damaged files"); }

/* "volume metadata images/I/V.meta" */
std::string Describe(std::string_view kind, const std::string &what)
{
    if (kind == "VOLUME")
        return std::string(_("volume metadata")) + " " + what;
    if (kind == "DOMAIN")
        return std::string(_("domain metadata")) + " " + what;
    if (kind == "MARKER")
        return std::string(_("transaction marker")) + " " + what;
    return std::string(kind) + " " + what;
}

/* "<describe> <problem>; <hint>" as a kCorrupt Status. */
Status Corrupt(std::string_view kind, const std::string &what, const std::string &problem)
{
    return Status::Error(ErrorCode::kCorrupt,
                         Describe(kind, what) + " " + problem + "; " + RepairHint());
}

bool NeedsEscape(unsigned char c) { return c < 0x21 || c > 0x7e || c == '%'; }

std::string Escape(const std::string &value)
{
    std::string out;
    out.reserve(value.size());
    for (unsigned char c : value) {
        if (NeedsEscape(c)) {
            out += '%';
            out += kHexDigits[c >> 4];
            out += kHexDigits[c & 0xf];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

int HexValue(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a canonical escaped value; nullopt if it is not exactly what Escape writes. */
std::optional<std::string> Unescape(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); i++) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c != '%') {
            if (NeedsEscape(c))
                return std::nullopt;
            out += static_cast<char>(c);
            continue;
        }
        if (i + 2 >= text.size())
            return std::nullopt;
        int hi = HexValue(text[i + 1]);
        int lo = HexValue(text[i + 2]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        unsigned char decoded = static_cast<unsigned char>(hi << 4 | lo);
        if (!NeedsEscape(decoded))
            return std::nullopt;
        out += static_cast<char>(decoded);
        i += 2;
    }
    return out;
}

bool IsKey(std::string_view key)
{
    if (key.empty())
        return false;
    for (char c : key) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* Plain decimal: digits only, no sign, no leading zero, no overflow. */
std::optional<uint64_t> ParseDecimal(std::string_view text)
{
    if (text.empty() || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
    }
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

std::string Sha256Hex(std::string_view data)
{
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(sum, reinterpret_cast<const guchar *>(data.data()),
                      static_cast<gssize>(data.size()));
    std::string hex = g_checksum_get_string(sum);
    g_checksum_free(sum);
    return hex;
}

/* 'text' for a message: hostile bytes are shown as \xNN, never raw, and long text is cut. */
std::string Quote(std::string_view text)
{
    constexpr size_t kMaxShown = 64;
    std::string out = "'";
    for (unsigned char c : text.substr(0, kMaxShown)) {
        if (c >= 0x20 && c <= 0x7e) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += kHexDigits[c >> 4];
            out += kHexDigits[c & 0xf];
        }
    }
    return out + (text.size() > kMaxShown ? "...'" : "'");
}

/* Typed, validated access to a parsed Doc. Each getter fails with a kCorrupt Status that
 * names the file and the key. */
class FieldReader {
public:
    FieldReader(const Doc &doc, const std::string &what) : doc_(doc), what_(what) {}

    Status Text(const char *key, std::string *out) const
    {
        const std::string *value = doc_.Find(key);
        if (!value)
            return Corrupt(doc_.kind, what_,
                           std::string(_("lacks the required key")) + " '" + key + "'");
        *out = *value;
        return Status::Ok();
    }

    Status Uuid(const char *key, std::string *out, bool may_be_empty = false) const
    {
        SDM_RETURN_IF_ERROR(Text(key, out));
        if ((may_be_empty && out->empty()) || layout::IsUuid(*out))
            return Status::Ok();
        return Bad(key, *out, _("a lower-case UUID"));
    }

    Status Name(const char *key, std::string *out, bool may_be_empty = false) const
    {
        SDM_RETURN_IF_ERROR(Text(key, out));
        if ((may_be_empty && out->empty()) || layout::ValidateVolumeName(*out).ok())
            return Status::Ok();
        return Bad(key, *out, _("a volume name of 1 to 255 bytes of printable UTF-8"));
    }

    template <typename T>
    Status Number(const char *key, uint64_t min, uint64_t max, T *out) const
    {
        static_assert(std::is_integral_v<T>);
        std::string text;
        SDM_RETURN_IF_ERROR(Text(key, &text));
        auto value = ParseDecimal(text);
        uint64_t limit = std::min<uint64_t>(max, std::numeric_limits<T>::max());
        if (!value || *value < min || *value > limit) {
            g_autofree char *expected = g_strdup_printf(
                _("a decimal number from %llu to %llu"), static_cast<unsigned long long>(min),
                static_cast<unsigned long long>(limit));
            return Bad(key, text, expected);
        }
        *out = static_cast<T>(*value);
        return Status::Ok();
    }

    Status Bool(const char *key, bool *out) const
    {
        std::string text;
        SDM_RETURN_IF_ERROR(Text(key, &text));
        if (text != "0" && text != "1")
            return Bad(key, text, _("0 or 1"));
        *out = text == "1";
        return Status::Ok();
    }

    /* A value from a fixed set of spellings. */
    template <typename T, typename ParseFn>
    Status Enum(const char *key, ParseFn parse, const char *expected, T *out) const
    {
        std::string text;
        SDM_RETURN_IF_ERROR(Text(key, &text));
        std::optional<T> value = parse(text);
        if (!value)
            return Bad(key, text, expected);
        *out = *value;
        return Status::Ok();
    }

    Status Bad(const char *key, const std::string &value, const char *expected) const
    {
        g_autofree char *problem = g_strdup_printf(_("has %s=%s where %s is expected"), key,
                                                   Quote(value).c_str(), expected);
        return Corrupt(doc_.kind, what_, problem);
    }

private:
    const Doc &doc_;
    const std::string &what_;
};

std::optional<Legality> ParseLegality(const std::string &text)
{
    if (text == LegalityName(Legality::kLegal))
        return Legality::kLegal;
    if (text == LegalityName(Legality::kIllegal))
        return Legality::kIllegal;
    return std::nullopt;
}

std::optional<TxOp> ParseTxOp(const std::string &text)
{
    for (TxOp op : {TxOp::kCreate, TxOp::kClone, TxOp::kDelete, TxOp::kResize}) {
        if (text == TxOpName(op))
            return op;
    }
    return std::nullopt;
}

bool IsLockspaceName(const std::string &name)
{
    if (name.empty() || name.size() > kMaxLockspaceBytes)
        return false;
    for (char c : name) {
        if (!g_ascii_isalnum(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

std::string Decimal(uint64_t value) { return std::to_string(value); }

std::string Lower(std::string text)
{
    for (char &c : text)
        c = g_ascii_tolower(c);
    return text;
}

/* Parses the whole document of `kind` from `text`, or fails with the Parse error. */
template <typename T, typename DecodeFields>
Result<T> DecodeAs(std::string_view text, const char *kind, const std::string &what,
                   DecodeFields decode_fields)
{
    auto doc = Parse(text, kind, what);
    if (!doc.ok())
        return doc.status();
    T value;
    SDM_RETURN_IF_ERROR(decode_fields(FieldReader(*doc, what), &value));
    return value;
}

}  // namespace

void Doc::Set(const std::string &key, const std::string &value)
{
    for (auto &field : fields) {
        if (field.first == key) {
            field.second = value;
            return;
        }
    }
    fields.emplace_back(key, value);
}

const std::string *Doc::Find(const std::string &key) const
{
    for (const auto &field : fields) {
        if (field.first == key)
            return &field.second;
    }
    return nullptr;
}

std::string Serialize(const Doc &doc)
{
    std::string text = kMagicPrefix + doc.kind + " " + Decimal(doc.version) + "\n";
    for (const auto &[key, value] : doc.fields)
        text += key + "=" + Escape(value) + "\n";
    text += kChecksumPrefix + Sha256Hex(text) + "\n";
    return text;
}

Result<Doc> Parse(std::string_view text, std::string_view expected_kind, const std::string &what)
{
    const std::string kind(expected_kind);
    if (text.size() > kMaxFileSize) {
        g_autofree char *problem = g_strdup_printf(
            _("is %zu bytes, more than the %zu a metadata file may hold"), text.size(),
            kMaxFileSize);
        return Corrupt(kind, what, problem);
    }
    if (text.find('\0') != std::string_view::npos)
        return Corrupt(kind, what, _("contains a NUL byte: it is torn or not a metadata file"));
    if (text.empty() || text.back() != '\n') {
        g_autofree char *problem = g_strdup_printf(
            _("is truncated (%zu bytes, not ending in a newline): a write was torn"),
            text.size());
        return Corrupt(kind, what, problem);
    }

    /* The header decides how the rest is read, so a newer version is recognised even if it
     * changed everything after the first line. */
    size_t header_end = text.find('\n');
    std::string_view header = text.substr(0, header_end);
    const std::string magic = kMagicPrefix + kind + " ";
    if (header.substr(0, magic.size()) != magic) {
        g_autofree char *problem = g_strdup_printf(
            _("is not a libvirt-sdm %s file (it starts with %s)"),
            Lower(kind).c_str(), Quote(header).c_str());
        return Corrupt(kind, what, problem);
    }
    std::string_view version_text = header.substr(magic.size());
    auto version = ParseDecimal(version_text);
    if (!version || *version == 0 || *version > std::numeric_limits<uint32_t>::max()) {
        g_autofree char *problem = g_strdup_printf(_("has an invalid format version %s"),
                                                   Quote(version_text).c_str());
        return Corrupt(kind, what, problem);
    }
    if (*version > kFormatVersion) {
        g_autofree char *msg = g_strdup_printf(
            _("%s was written by a newer libvirt-sdm (format version %llu, this build reads up "
              "to %u); upgrade libvirt-sdm"),
            Describe(kind, what).c_str(), static_cast<unsigned long long>(*version),
            kFormatVersion);
        return Status::Error(ErrorCode::kUnsupported, msg);
    }

    /* The checksum line is the last line; text ends in '\n', so it starts after the
     * previous '\n' (which exists: the header line ends with one). */
    size_t sum_start = text.rfind('\n', text.size() - 2) + 1;
    std::string_view sum_line = text.substr(sum_start, text.size() - 1 - sum_start);
    std::string_view prefix(kChecksumPrefix);
    if (sum_start <= header_end || sum_line.substr(0, prefix.size()) != prefix)
        return Corrupt(kind, what, _("has no checksum line at its end (checksum mismatch: torn "
                                     "or modified write)"));
    if (sum_line.size() != prefix.size() + kSha256HexLen ||
        sum_line.substr(prefix.size()) != Sha256Hex(text.substr(0, sum_start)))
        return Corrupt(kind, what, _("fails its checksum (checksum mismatch: torn or modified "
                                     "write)"));

    Doc doc;
    doc.kind = kind;
    doc.version = static_cast<uint32_t>(*version);
    size_t pos = header_end + 1;
    while (pos < sum_start) {
        size_t end = text.find('\n', pos);
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        size_t eq = line.find('=');
        std::string_view key = line.substr(0, eq);
        if (eq == std::string_view::npos || !IsKey(key)) {
            g_autofree char *problem = g_strdup_printf(
                _("has a line %s that is not key=value with a key of [a-z0-9_]"),
                Quote(line).c_str());
            return Corrupt(kind, what, problem);
        }
        std::string key_str(key);
        if (key_str == "checksum" || doc.Find(key_str)) {
            g_autofree char *problem =
                g_strdup_printf(_("has the key '%s' twice"), key_str.c_str());
            return Corrupt(kind, what, problem);
        }
        auto value = Unescape(line.substr(eq + 1));
        if (!value) {
            g_autofree char *problem = g_strdup_printf(
                _("has a badly escaped value for '%s' (only %%XX escapes with upper-case hex, "
                  "for bytes that need them, are allowed)"),
                key_str.c_str());
            return Corrupt(kind, what, problem);
        }
        doc.fields.emplace_back(std::move(key_str), std::move(*value));
    }
    return doc;
}

const char *TxOpName(TxOp op)
{
    switch (op) {
    case TxOp::kCreate: return "create";
    case TxOp::kClone: return "clone";
    case TxOp::kDelete: return "delete";
    case TxOp::kResize: return "resize";
    }
    return "create";
}

std::string Encode(const DomainMeta &meta)
{
    Doc doc;
    doc.kind = "DOMAIN";
    doc.Set("uuid", meta.uuid);
    doc.Set("version", Decimal(meta.version));
    doc.Set("io_timeout", Decimal(meta.io_timeout));
    doc.Set("sector_size", Decimal(meta.sector_size));
    doc.Set("alignment", Decimal(meta.alignment));
    doc.Set("lockspace", meta.lockspace);
    doc.Set("ctime", Decimal(static_cast<uint64_t>(meta.ctime)));
    return Serialize(doc);
}

std::string Encode(const VolumeMeta &meta)
{
    Doc doc;
    doc.kind = "VOLUME";
    doc.Set("uuid", meta.uuid);
    doc.Set("image", meta.image);
    doc.Set("name", meta.name);
    doc.Set("parent", meta.parent);
    doc.Set("format", VolumeFormatName(meta.format));
    doc.Set("prealloc", PreallocationName(meta.prealloc));
    doc.Set("legality", LegalityName(meta.legality));
    doc.Set("capacity", Decimal(meta.capacity));
    doc.Set("generation", Decimal(meta.generation));
    doc.Set("slot", Decimal(meta.slot));
    doc.Set("ctime", Decimal(static_cast<uint64_t>(meta.ctime)));
    return Serialize(doc);
}

std::string Encode(const Marker &marker)
{
    Doc doc;
    doc.kind = "MARKER";
    doc.Set("txid", marker.txid);
    doc.Set("op", TxOpName(marker.op));
    doc.Set("host_id", Decimal(marker.host_id));
    doc.Set("generation", Decimal(marker.generation));
    doc.Set("slot", Decimal(marker.slot));
    doc.Set("image", marker.image);
    doc.Set("volume", marker.volume);
    doc.Set("name", marker.name);
    doc.Set("new_image", marker.new_image ? "1" : "0");
    doc.Set("old_capacity", Decimal(marker.old_capacity));
    doc.Set("new_capacity", Decimal(marker.new_capacity));
    doc.Set("format", VolumeFormatName(marker.format));
    doc.Set("ctime", Decimal(static_cast<uint64_t>(marker.ctime)));
    return Serialize(doc);
}

Result<DomainMeta> DecodeDomain(std::string_view text, const std::string &what)
{
    return DecodeAs<DomainMeta>(text, "DOMAIN", what, [&](const FieldReader &r, DomainMeta *m) {
        SDM_RETURN_IF_ERROR(r.Uuid("uuid", &m->uuid));
        std::string version;
        SDM_RETURN_IF_ERROR(r.Text("version", &version));
        auto parsed = ParseDecimal(version);
        if (parsed && *parsed > kDomainVersion) {
            g_autofree char *msg = g_strdup_printf(
                _("%s describes a domain of a newer libvirt-sdm (domain format version %s, "
                  "this build handles up to %u); upgrade libvirt-sdm"),
                Describe("DOMAIN", what).c_str(), Quote(version).c_str(), kDomainVersion);
            return Status::Error(ErrorCode::kUnsupported, msg);
        }
        SDM_RETURN_IF_ERROR(
            r.Number("version", kOldestDomainVersion, kDomainVersion, &m->version));
        SDM_RETURN_IF_ERROR(r.Number("io_timeout", 1, kMaxIoTimeout, &m->io_timeout));
        SDM_RETURN_IF_ERROR(r.Number("sector_size", 512, 4096, &m->sector_size));
        if (m->sector_size != 512 && m->sector_size != 4096)
            return r.Bad("sector_size", Decimal(m->sector_size), _("512 or 4096"));
        SDM_RETURN_IF_ERROR(r.Number("alignment", kMiB, 8 * kMiB, &m->alignment));
        if (m->alignment & (m->alignment - 1))
            return r.Bad("alignment", Decimal(m->alignment),
                          _("1048576, 2097152, 4194304 or 8388608 (1, 2, 4 or 8 MiB)"));
        SDM_RETURN_IF_ERROR(r.Text("lockspace", &m->lockspace));
        if (!IsLockspaceName(m->lockspace))
            return r.Bad("lockspace", m->lockspace,
                         _("1 to 48 characters of A-Z, a-z, 0-9, '_' and '-'"));
        return r.Number("ctime", 0, std::numeric_limits<int64_t>::max(), &m->ctime);
    });
}

Result<VolumeMeta> DecodeVolume(std::string_view text, const std::string &what)
{
    return DecodeAs<VolumeMeta>(text, "VOLUME", what, [](const FieldReader &r, VolumeMeta *m) {
        SDM_RETURN_IF_ERROR(r.Uuid("uuid", &m->uuid));
        SDM_RETURN_IF_ERROR(r.Uuid("image", &m->image));
        SDM_RETURN_IF_ERROR(r.Name("name", &m->name));
        SDM_RETURN_IF_ERROR(r.Uuid("parent", &m->parent, true));
        if (m->parent == m->uuid)
            return r.Bad("parent", m->parent, _("a UUID other than the volume's own"));
        SDM_RETURN_IF_ERROR(r.Enum("format", ParseVolumeFormat, _("raw or qcow2"), &m->format));
        SDM_RETURN_IF_ERROR(r.Enum("prealloc", ParsePreallocation,
                                   _("sparse, full or metadata"), &m->prealloc));
        SDM_RETURN_IF_ERROR(
            r.Enum("legality", ParseLegality, _("LEGAL or ILLEGAL"), &m->legality));
        SDM_RETURN_IF_ERROR(r.Number("capacity", 1, kMaxCapacity, &m->capacity));
        SDM_RETURN_IF_ERROR(r.Number("generation", 0, UINT64_MAX, &m->generation));
        SDM_RETURN_IF_ERROR(
            r.Number("slot", layout::kFirstVolumeSlot, layout::kMaxSlot, &m->slot));
        return r.Number("ctime", 0, std::numeric_limits<int64_t>::max(), &m->ctime);
    });
}

Result<Marker> DecodeMarker(std::string_view text, const std::string &what)
{
    return DecodeAs<Marker>(text, "MARKER", what, [](const FieldReader &r, Marker *m) {
        SDM_RETURN_IF_ERROR(r.Uuid("txid", &m->txid));
        SDM_RETURN_IF_ERROR(
            r.Enum("op", ParseTxOp, _("create, clone, delete or resize"), &m->op));
        SDM_RETURN_IF_ERROR(r.Number("host_id", 1, kMaxHostId, &m->host_id));
        SDM_RETURN_IF_ERROR(r.Number("generation", 0, UINT64_MAX, &m->generation));
        SDM_RETURN_IF_ERROR(r.Number("slot", 0, layout::kMaxSlot, &m->slot));
        SDM_RETURN_IF_ERROR(r.Uuid("image", &m->image, true));
        SDM_RETURN_IF_ERROR(r.Uuid("volume", &m->volume, true));
        SDM_RETURN_IF_ERROR(r.Name("name", &m->name, true));
        SDM_RETURN_IF_ERROR(r.Bool("new_image", &m->new_image));
        /* Only a resize records capacities; there both must be real sizes. */
        uint64_t min_capacity = m->op == TxOp::kResize ? 1 : 0;
        SDM_RETURN_IF_ERROR(r.Number("old_capacity", min_capacity, kMaxCapacity,
                                     &m->old_capacity));
        SDM_RETURN_IF_ERROR(r.Number("new_capacity", min_capacity, kMaxCapacity,
                                     &m->new_capacity));
        SDM_RETURN_IF_ERROR(r.Enum("format", ParseVolumeFormat, _("raw or qcow2"), &m->format));
        return r.Number("ctime", 0, std::numeric_limits<int64_t>::max(), &m->ctime);
    });
}

}  // namespace sdm::meta
