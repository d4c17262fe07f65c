/* Tests of the metadata text format: exact round trips of every record type and the
 * strict, hostile-input-safe parser (every truncation, every flipped byte, every bad value
 * is refused with a message naming the file). */
#include "backend/engine/metadata.h"

#include <glib.h>

#include <gtest/gtest.h>

#include "backend/engine/layout.h"

namespace sdm::meta {
namespace {

const std::string kWhat = "images/11111111-2222-3333-4444-555555555555/vol.meta";
const char kUuidA[] = "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9";
const char kUuidB[] = "ffffffff-0000-4000-8000-123456789abc";
const char kUuidC[] = "12345678-9abc-4def-8012-3456789abcde";

VolumeMeta SampleVolume()
{
    VolumeMeta m;
    m.uuid = kUuidA;
    m.image = kUuidB;
    m.name = "my disk";
    m.parent = kUuidC;
    m.format = VolumeFormat::kQcow2;
    m.prealloc = Preallocation::kMetadata;
    m.legality = Legality::kIllegal;
    m.capacity = 10ull << 30;
    m.generation = 7;
    m.slot = 42;
    m.ctime = 1700000000;
    return m;
}

DomainMeta SampleDomain()
{
    DomainMeta m;
    m.uuid = kUuidA;
    m.version = kDomainVersion;
    m.io_timeout = 10;
    m.sector_size = 4096;
    m.alignment = 8 << 20;
    m.lockspace = "sdm-0a1b2c3d_X";
    m.ctime = 1700000001;
    return m;
}

Marker SampleMarker()
{
    Marker m;
    m.txid = kUuidC;
    m.op = TxOp::kResize;
    m.host_id = 2000;
    m.generation = UINT64_MAX;
    m.slot = 0;
    m.image = kUuidB;
    m.volume = kUuidA;
    m.name = "a=b%c d";
    m.new_image = true;
    m.old_capacity = 1;
    m.new_capacity = kMaxCapacity;
    m.format = VolumeFormat::kQcow2;
    m.ctime = 0;
    return m;
}

void ExpectSame(const VolumeMeta &a, const VolumeMeta &b)
{
    EXPECT_EQ(a.uuid, b.uuid);
    EXPECT_EQ(a.image, b.image);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.parent, b.parent);
    EXPECT_EQ(a.format, b.format);
    EXPECT_EQ(a.prealloc, b.prealloc);
    EXPECT_EQ(a.legality, b.legality);
    EXPECT_EQ(a.capacity, b.capacity);
    EXPECT_EQ(a.generation, b.generation);
    EXPECT_EQ(a.slot, b.slot);
    EXPECT_EQ(a.ctime, b.ctime);
}

/* A document with a valid checksum whose fields are exactly `body` (already encoded). */
std::string WithChecksum(const std::string &header_and_body)
{
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(sum, reinterpret_cast<const guchar *>(header_and_body.data()),
                      static_cast<gssize>(header_and_body.size()));
    std::string text = header_and_body + "checksum=sha256:" + g_checksum_get_string(sum) + "\n";
    g_checksum_free(sum);
    return text;
}

/* The Encode(SampleVolume()) text with the line "key=..." replaced by "key=value",
 * re-checksummed, so only that one value is wrong. */
std::string VolumeWith(const std::string &key, const std::string &raw_value)
{
    std::string text = Encode(SampleVolume());
    std::string body = text.substr(0, text.rfind("checksum="));
    size_t start = body.find("\n" + key + "=") + 1;
    EXPECT_NE(start, 0u) << key;
    size_t end = body.find('\n', start);
    body.replace(start, end - start, key + "=" + raw_value);
    return WithChecksum(body);
}

std::string VolumeWithout(const std::string &key)
{
    std::string text = Encode(SampleVolume());
    std::string body = text.substr(0, text.rfind("checksum="));
    size_t start = body.find("\n" + key + "=") + 1;
    size_t end = body.find('\n', start);
    body.erase(start, end - start + 1);
    return WithChecksum(body);
}

void ExpectCorrupt(const Status &status, const std::string &needle = "")
{
    EXPECT_EQ(status.code(), ErrorCode::kCorrupt) << status.ToString();
    EXPECT_NE(status.message().find(kWhat), std::string::npos) << status.message();
    if (!needle.empty()) {
        EXPECT_NE(status.message().find(needle), std::string::npos) << status.message();
    }
}

TEST(MetadataFormatTest, SerializeWritesTheDocumentedForm)
{
    Doc doc;
    doc.kind = "VOLUME";
    doc.Set("name", "a b%c=d\n\xc3\xa9");
    doc.Set("empty", "");
    doc.Set("name", "x y");
    std::string text = Serialize(doc);
    std::string body = "SDM-VOLUME 1\nname=x%20y\nempty=\n";
    EXPECT_EQ(text, WithChecksum(body));
    EXPECT_EQ(text.size(), body.size() + 16 + 64 + 1);
}

TEST(MetadataFormatTest, EscapesEveryByteOutsidePrintableAsciiAndPercent)
{
    std::string all;
    for (int c = 1; c < 256; c++)
        all += static_cast<char>(c);
    Doc doc;
    doc.kind = "MARKER";
    doc.Set("v", all);
    std::string text = Serialize(doc);
    size_t start = text.find("v=") + 2;
    std::string encoded = text.substr(start, text.find('\n', start) - start);
    for (char c : encoded)
        EXPECT_TRUE(c >= 0x21 && c <= 0x7e) << static_cast<int>(c);
    EXPECT_NE(encoded.find("%25"), std::string::npos);
    EXPECT_NE(encoded.find("%0A"), std::string::npos);
    EXPECT_NE(encoded.find("%FF"), std::string::npos);
    EXPECT_NE(encoded.find("%20"), std::string::npos);
    EXPECT_NE(encoded.find("=>?"), std::string::npos);
    auto parsed = Parse(text, "MARKER", kWhat);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    ASSERT_NE(parsed->Find("v"), nullptr);
    EXPECT_EQ(*parsed->Find("v"), all);
    EXPECT_EQ(Serialize(*parsed), text);
}

TEST(MetadataFormatTest, VolumeRoundTripsExactly)
{
    for (std::string name : {std::string("my disk"), std::string("100% full=yes"),
                             std::string("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x92\xbe"),
                             std::string(255, 'n'), std::string("%41%%"), std::string("x")}) {
        VolumeMeta in = SampleVolume();
        in.name = name;
        std::string text = Encode(in);
        EXPECT_LE(text.size(), kMaxFileSize);
        auto out = DecodeVolume(text, kWhat);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        ExpectSame(in, *out);
        EXPECT_EQ(Encode(*out), text);
    }
}

TEST(MetadataFormatTest, VolumeRoundTripsBaseVolumeAndEveryEnumValue)
{
    VolumeMeta in = SampleVolume();
    in.parent = "";
    in.format = VolumeFormat::kRaw;
    in.legality = Legality::kLegal;
    in.capacity = kMaxCapacity;
    in.generation = UINT64_MAX;
    in.slot = layout::kMaxSlot;
    for (Preallocation p : {Preallocation::kSparse, Preallocation::kFull, Preallocation::kMetadata}) {
        in.prealloc = p;
        auto out = DecodeVolume(Encode(in), kWhat);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        ExpectSame(in, *out);
    }
}

TEST(MetadataFormatTest, DomainRoundTripsExactly)
{
    for (uint64_t alignment : {1ull << 20, 2ull << 20, 4ull << 20, 8ull << 20}) {
        DomainMeta in = SampleDomain();
        in.alignment = alignment;
        in.sector_size = alignment == (1ull << 20) ? 512 : 4096;
        in.lockspace = std::string(48, 'L');
        auto out = DecodeDomain(Encode(in), kWhat);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        EXPECT_EQ(out->uuid, in.uuid);
        EXPECT_EQ(out->version, in.version);
        EXPECT_EQ(out->io_timeout, in.io_timeout);
        EXPECT_EQ(out->sector_size, in.sector_size);
        EXPECT_EQ(out->alignment, in.alignment);
        EXPECT_EQ(out->lockspace, in.lockspace);
        EXPECT_EQ(out->ctime, in.ctime);
    }
}

TEST(MetadataFormatTest, MarkerRoundTripsEveryOp)
{
    for (TxOp op : {TxOp::kCreate, TxOp::kClone, TxOp::kDelete, TxOp::kResize}) {
        Marker in = SampleMarker();
        in.op = op;
        std::string text = Encode(in);
        auto out = DecodeMarker(text, kWhat);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        EXPECT_EQ(out->txid, in.txid);
        EXPECT_EQ(out->op, in.op);
        EXPECT_EQ(out->host_id, in.host_id);
        EXPECT_EQ(out->generation, in.generation);
        EXPECT_EQ(out->slot, in.slot);
        EXPECT_EQ(out->image, in.image);
        EXPECT_EQ(out->volume, in.volume);
        EXPECT_EQ(out->name, in.name);
        EXPECT_EQ(out->new_image, in.new_image);
        EXPECT_EQ(out->old_capacity, in.old_capacity);
        EXPECT_EQ(out->new_capacity, in.new_capacity);
        EXPECT_EQ(out->format, in.format);
        EXPECT_EQ(out->ctime, in.ctime);
        EXPECT_EQ(Encode(*out), text);
    }
    EXPECT_STREQ(TxOpName(TxOp::kClone), "clone");
}

TEST(MetadataFormatTest, MarkerMayLeaveObjectsEmptyExceptForResizeCapacities)
{
    Marker in;
    in.txid = kUuidA;
    in.host_id = 1;
    auto out = DecodeMarker(Encode(in), kWhat);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->image, "");
    EXPECT_EQ(out->name, "");
    in.op = TxOp::kResize;
    ExpectCorrupt(DecodeMarker(Encode(in), kWhat).status(), "old_capacity");
}

TEST(MetadataFormatTest, EveryTruncationIsRejectedAsCorrupt)
{
    const std::string texts[] = {Encode(SampleVolume()), Encode(SampleDomain()),
                                 Encode(SampleMarker())};
    for (const std::string &text : texts) {
        for (size_t len = 0; len < text.size(); len++) {
            std::string_view prefix(text.data(), len);
            auto v = DecodeVolume(prefix, kWhat);
            auto d = DecodeDomain(prefix, kWhat);
            auto m = DecodeMarker(prefix, kWhat);
            ASSERT_FALSE(v.ok() || d.ok() || m.ok()) << len;
            ExpectCorrupt(v.status());
            ExpectCorrupt(d.status());
            ExpectCorrupt(m.status());
        }
    }
    ExpectCorrupt(DecodeVolume(texts[0].substr(0, 40), kWhat).status(), "truncated");
}

TEST(MetadataFormatTest, EveryFlippedByteIsRejected)
{
    const std::string original = Encode(SampleVolume());
    for (size_t i = 0; i < original.size(); i++) {
        for (unsigned char mask : {0x01, 0x20, 0x80}) {
            std::string text = original;
            text[i] = static_cast<char>(text[i] ^ mask);
            auto v = DecodeVolume(text, kWhat);
            ASSERT_FALSE(v.ok()) << "byte " << i << " mask " << int(mask);
            /* Bytes of the version number may turn it into a newer version. */
            EXPECT_TRUE(v.status().code() == ErrorCode::kCorrupt ||
                        v.status().code() == ErrorCode::kUnsupported)
                << v.status().ToString();
            EXPECT_NE(v.status().message().find(kWhat), std::string::npos);
        }
    }
}

TEST(MetadataFormatTest, ChecksumMismatchAndMissingChecksum)
{
    std::string text = Encode(SampleVolume());
    std::string tampered = text;
    tampered.replace(tampered.find("slot=42"), 7, "slot=43");
    ExpectCorrupt(DecodeVolume(tampered, kWhat).status(), "checksum mismatch");
    std::string body = text.substr(0, text.rfind("checksum="));
    ExpectCorrupt(DecodeVolume(body, kWhat).status(), "checksum mismatch");
    std::string upper = text;
    for (size_t i = upper.rfind(':') + 1; i < upper.size(); i++)
        upper[i] = static_cast<char>(g_ascii_toupper(upper[i]));
    ASSERT_NE(upper, text);
    ExpectCorrupt(DecodeVolume(upper, kWhat).status(), "checksum");
    ExpectCorrupt(DecodeVolume(body + "checksum=md5:00\n", kWhat).status(), "checksum");
    ExpectCorrupt(DecodeVolume("SDM-VOLUME 1\n", kWhat).status(), "checksum");
}

TEST(MetadataFormatTest, WrongMagicAndWrongKind)
{
    ExpectCorrupt(DecodeVolume(Encode(SampleMarker()), kWhat).status(),
                  "not a libvirt-sdm volume file");
    ExpectCorrupt(DecodeMarker(Encode(SampleDomain()), kWhat).status(),
                  "not a libvirt-sdm marker file");
    ExpectCorrupt(DecodeDomain(WithChecksum("SDM-DOMAINX 1\nuuid=x\n"), kWhat).status());
    ExpectCorrupt(DecodeVolume(WithChecksum("sdm-volume 1\n"), kWhat).status());
    ExpectCorrupt(DecodeVolume("\x7f" "ELF\x02\x01\x01\n", kWhat).status(), "not a libvirt-sdm");
}

TEST(MetadataFormatTest, BadVersionsAreCorruptAndNewerIsUnsupported)
{
    for (const char *version : {"0", "01", "-1", "+1", "1.0", "", "x", " 1", "1 ",
                                "99999999999999999999999", "4294967296"}) {
        std::string text = WithChecksum(std::string("SDM-VOLUME ") + version + "\n");
        ExpectCorrupt(Parse(text, "VOLUME", kWhat).status());
    }
    auto newer = Parse(WithChecksum("SDM-VOLUME 2\nwhatever=1\n"), "VOLUME", kWhat);
    ASSERT_FALSE(newer.ok());
    EXPECT_EQ(newer.status().code(), ErrorCode::kUnsupported);
    EXPECT_NE(newer.status().message().find("format version 2, this build reads up to 1"),
              std::string::npos)
        << newer.status().message();
    EXPECT_NE(newer.status().message().find("upgrade libvirt-sdm"), std::string::npos);
    EXPECT_NE(newer.status().message().find(kWhat), std::string::npos);
    /* A newer format may change the checksum: the version decides first. */
    EXPECT_EQ(Parse("SDM-VOLUME 4294967295\nnew-syntax\n", "VOLUME", kWhat).status().code(),
              ErrorCode::kUnsupported);
}

TEST(MetadataFormatTest, NewerDomainVersionFieldIsUnsupported)
{
    std::string text = Encode(SampleDomain());
    std::string body = text.substr(0, text.rfind("checksum="));
    body.replace(body.find("version=2"), 9, "version=3");
    auto out = DecodeDomain(WithChecksum(body), kWhat);
    EXPECT_EQ(out.status().code(), ErrorCode::kUnsupported) << out.status().ToString();
    body.replace(body.find("version=3"), 9, "version=1");
    EXPECT_TRUE(DecodeDomain(WithChecksum(body), kWhat).ok()) << "read, to be upgraded";
    body.replace(body.find("version=1"), 9, "version=0");
    ExpectCorrupt(DecodeDomain(WithChecksum(body), kWhat).status(), "version");
}

TEST(MetadataFormatTest, OversizedIsRejected)
{
    std::string body = "SDM-VOLUME 1\npad=" + std::string(kMaxFileSize, 'p') + "\n";
    ExpectCorrupt(Parse(WithChecksum(body), "VOLUME", kWhat).status(), "more than the 4096");
    /* Exactly at the limit is fine. */
    std::string small = WithChecksum("SDM-VOLUME 1\npad=\n");
    std::string fitted = WithChecksum("SDM-VOLUME 1\npad=" +
                                      std::string(kMaxFileSize - small.size(), 'p') + "\n");
    ASSERT_EQ(fitted.size(), kMaxFileSize);
    EXPECT_TRUE(Parse(fitted, "VOLUME", kWhat).ok());
}

TEST(MetadataFormatTest, NulBytesAreRejectedEvenUnderAValidChecksum)
{
    std::string body = std::string("SDM-VOLUME 1\nname=a") + '\0' + "b\n";
    ExpectCorrupt(Parse(WithChecksum(body), "VOLUME", kWhat).status(), "NUL");
    std::string text = Encode(SampleVolume());
    text.back() = '\0';
    ExpectCorrupt(DecodeVolume(text, kWhat).status());
}

TEST(MetadataFormatTest, DuplicateKeysAreRejected)
{
    ExpectCorrupt(Parse(WithChecksum("SDM-VOLUME 1\na=1\nb=2\na=1\n"), "VOLUME", kWhat).status(),
                  "twice");
    ExpectCorrupt(Parse(WithChecksum("SDM-VOLUME 1\nchecksum=x\n"), "VOLUME", kWhat).status(),
                  "twice");
}

TEST(MetadataFormatTest, BadKeysAndLinesAreRejected)
{
    for (const char *line : {"noequals", "=value", "Key=v", "key-name=v", "key name=v",
                             "k\xc3\xa9=v", "", "k\r=v"}) {
        std::string body = std::string("SDM-VOLUME 1\n") + line + "\n";
        ExpectCorrupt(Parse(WithChecksum(body), "VOLUME", kWhat).status());
    }
    auto ok = Parse(WithChecksum("SDM-VOLUME 1\na_1=x=y\n"), "VOLUME", kWhat);
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_EQ(*ok->Find("a_1"), "x=y");
}

TEST(MetadataFormatTest, BadEscapesAreRejected)
{
    for (const char *value : {"%", "%2", "%G0", "%2g", "%0a", "%41", "a b", "\xc3\xa9",
                              "tab\there", "%%", "x\r"}) {
        std::string body = std::string("SDM-VOLUME 1\nk=") + value + "\n";
        ExpectCorrupt(Parse(WithChecksum(body), "VOLUME", kWhat).status());
    }
    auto ok = Parse(WithChecksum("SDM-VOLUME 1\nk=%25%0A%20%FF\n"), "VOLUME", kWhat);
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_EQ(*ok->Find("k"), "%\n \xff");
}

TEST(MetadataFormatTest, UnknownKeysAreIgnoredButCoveredByTheChecksum)
{
    std::string text = Encode(SampleVolume());
    std::string body = text.substr(0, text.rfind("checksum=")) + "future_key=anything\n";
    auto out = DecodeVolume(WithChecksum(body), kWhat);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    ExpectSame(SampleVolume(), *out);
    std::string unsummed = body + text.substr(text.rfind("checksum="));
    ExpectCorrupt(DecodeVolume(unsummed, kWhat).status(), "checksum");
}

TEST(MetadataFormatTest, MissingRequiredKeysAreNamed)
{
    for (const char *key : {"uuid", "image", "name", "parent", "format", "prealloc", "legality",
                            "capacity", "generation", "slot", "ctime"})
        ExpectCorrupt(DecodeVolume(VolumeWithout(key), kWhat).status(),
                      std::string("'") + key + "'");
}

struct BadValue {
    const char *key;
    const char *value;
};

TEST(MetadataFormatTest, InvalidVolumeValuesAreRejected)
{
    const BadValue cases[] = {
        {"uuid", ""}, {"uuid", "0A1B2C3D-4E5F-4071-8293-A4B5C6D7E8F9"},
        {"uuid", "0a1b2c3d4e5f40718293a4b5c6d7e8f9"}, {"uuid", "not-a-uuid"},
        {"image", "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f"},
        {"name", ""}, {"name", "a/b"}, {"name", "."}, {"name", ".."}, {"name", "%0A"},
        {"name", "%FF"}, {"name", "%7F"},
        {"parent", "x"}, {"parent", kUuidA},
        {"format", "vmdk"}, {"format", "RAW"}, {"format", ""},
        {"prealloc", "thick"}, {"legality", "legal"}, {"legality", "FAKE"},
        {"capacity", "0"}, {"capacity", "-1"}, {"capacity", "+5"}, {"capacity", "012"},
        {"capacity", "72057594037927937"}, {"capacity", "1e9"}, {"capacity", "0x10"},
        {"capacity", "18446744073709551616"}, {"capacity", "5%20"}, {"capacity", ""},
        {"generation", "18446744073709551616"}, {"generation", "-0"},
        {"slot", "0"}, {"slot", "1048577"}, {"slot", "01"},
        {"ctime", "-5"}, {"ctime", "9223372036854775808"},
    };
    for (const auto &c : cases)
        ExpectCorrupt(DecodeVolume(VolumeWith(c.key, c.value), kWhat).status(), c.key);
    /* Boundaries that are valid. */
    for (const BadValue &c : std::initializer_list<BadValue>{
             {"capacity", "72057594037927936"}, {"capacity", "1"}, {"slot", "1"},
             {"slot", "1048576"}, {"generation", "18446744073709551615"},
             {"ctime", "9223372036854775807"}, {"parent", ""}}) {
        auto out = DecodeVolume(VolumeWith(c.key, c.value), kWhat);
        EXPECT_TRUE(out.ok()) << c.key << "=" << c.value << ": " << out.status().ToString();
    }
    EXPECT_TRUE(DecodeVolume(VolumeWith("name", std::string(255, 'z')), kWhat).ok());
    ExpectCorrupt(DecodeVolume(VolumeWith("name", std::string(256, 'z')), kWhat).status(), "name");
}

TEST(MetadataFormatTest, InvalidDomainValuesAreRejected)
{
    std::string text = Encode(SampleDomain());
    std::string body = text.substr(0, text.rfind("checksum="));
    auto with = [&body](const std::string &key, const std::string &value) {
        std::string copy = body;
        size_t start = copy.find("\n" + key + "=") + 1;
        size_t end = copy.find('\n', start);
        copy.replace(start, end - start, key + "=" + value);
        return WithChecksum(copy);
    };
    const BadValue cases[] = {
        {"uuid", "x"}, {"io_timeout", "0"}, {"io_timeout", "601"}, {"sector_size", "1024"},
        {"sector_size", "0"}, {"sector_size", "4097"}, {"alignment", "0"},
        {"alignment", "3145728"}, {"alignment", "16777216"}, {"alignment", "524288"},
        {"alignment", "1048577"}, {"lockspace", ""}, {"lockspace", "a%20b"},
        {"lockspace", "a.b"}, {"lockspace", "a/b"}, {"version", "x"},
    };
    for (const auto &c : cases)
        ExpectCorrupt(DecodeDomain(with(c.key, c.value), kWhat).status(), c.key);
    ExpectCorrupt(DecodeDomain(with("lockspace", std::string(49, 'a')), kWhat).status(),
                  "lockspace");
    for (const BadValue &c : std::initializer_list<BadValue>{
             {"io_timeout", "1"}, {"io_timeout", "600"}, {"sector_size", "512"},
             {"alignment", "1048576"}, {"lockspace", "A-z_0"}}) {
        auto out = DecodeDomain(with(c.key, c.value), kWhat);
        EXPECT_TRUE(out.ok()) << c.key << "=" << c.value << ": " << out.status().ToString();
    }
}

TEST(MetadataFormatTest, InvalidMarkerValuesAreRejected)
{
    std::string text = Encode(SampleMarker());
    std::string body = text.substr(0, text.rfind("checksum="));
    auto with = [&body](const std::string &key, const std::string &value) {
        std::string copy = body;
        size_t start = copy.find("\n" + key + "=") + 1;
        size_t end = copy.find('\n', start);
        copy.replace(start, end - start, key + "=" + value);
        return WithChecksum(copy);
    };
    const BadValue cases[] = {
        {"txid", ""}, {"txid", "x"}, {"op", "snapshot"}, {"op", "CREATE"}, {"op", ""},
        {"host_id", "0"}, {"host_id", "2001"}, {"host_id", "4294967297"},
        {"slot", "1048577"}, {"image", "x"}, {"volume", "x"}, {"name", "a/b"},
        {"new_image", "2"}, {"new_image", "true"}, {"new_image", ""},
        {"old_capacity", "0"}, {"new_capacity", "72057594037927937"}, {"format", "qed"},
        {"ctime", "x"},
    };
    for (const auto &c : cases)
        ExpectCorrupt(DecodeMarker(with(c.key, c.value), kWhat).status(), c.key);
    for (const BadValue &c : std::initializer_list<BadValue>{
             {"host_id", "1"}, {"slot", "0"}, {"slot", "1048576"}, {"image", ""},
             {"volume", ""}, {"name", ""}, {"new_image", "0"}}) {
        auto out = DecodeMarker(with(c.key, c.value), kWhat);
        EXPECT_TRUE(out.ok()) << c.key << "=" << c.value << ": " << out.status().ToString();
    }
}

TEST(MetadataFormatTest, MessagesSayWhatToDo)
{
    Status status = DecodeVolume(VolumeWith("format", "vmdk"), kWhat).status();
    EXPECT_NE(status.message().find("volume metadata " + kWhat), std::string::npos)
        << status.message();
    EXPECT_NE(status.message().find("sdm-local check"), std::string::npos);
    EXPECT_NE(status.message().find("raw or qcow2"), std::string::npos);
}

}  // namespace
}  // namespace sdm::meta
