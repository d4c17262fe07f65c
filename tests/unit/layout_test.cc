/* The on-storage names: UUIDs, volume names, transaction and index names. */
#include <glib.h>
#include <gtest/gtest.h>

#include "backend/engine/layout.h"

namespace sdm::layout {
namespace {

TEST(LayoutTest, NewUuidsAreCanonicalAndDistinct)
{
    std::string a = NewUuid(), b = NewUuid();
    EXPECT_TRUE(IsUuid(a)) << a;
    EXPECT_NE(a, b);
    EXPECT_FALSE(IsUuid("6F9619FF-8B86-D011-B42D-00C04FC964FF")) << "upper case is not canonical";
    EXPECT_FALSE(IsUuid("../images/x"));
    EXPECT_FALSE(IsUuid(""));
}

TEST(LayoutTest, VolumeNamesAcceptPrintableUtf8)
{
    EXPECT_TRUE(ValidateVolumeName("disk.qcow2").ok());
    EXPECT_TRUE(ValidateVolumeName("my disk=1 %x").ok());
    EXPECT_TRUE(ValidateVolumeName("日本語のディスク").ok());
    EXPECT_TRUE(ValidateVolumeName(".hidden").ok());
    EXPECT_TRUE(ValidateVolumeName(std::string(255, 'a')).ok());
}

TEST(LayoutTest, VolumeNamesRejectWhatFilesystemsOrUsersWouldTrip)
{
    for (const std::string &bad : {std::string(), std::string("a/b"), std::string("."),
                                  std::string(".."), std::string("a\nb"), std::string("a\x7f"),
                                  std::string("nul\0x", 5), std::string(256, 'a'),
                                  std::string("\xff\xfe")}) {
        Status s = ValidateVolumeName(bad);
        EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << bad;
        EXPECT_NE(s.message().find("invalid volume name"), std::string::npos) << s.message();
    }
    EXPECT_NE(ValidateVolumeName("a/b").message().find("'/'"), std::string::npos);
}

TEST(LayoutTest, VolumeNamesRejectEveryControlCharacter)
{
    /* C0 (tab, ESC), DEL and C1 (U+009B, which terminals take as ESC [). */
    for (const std::string &bad : {std::string("a\tb"), std::string("a\x01"),
                                  std::string("\x1b[31mred"), std::string("a\x7f"),
                                  std::string("a\xc2\x9b" "31m")}) {
        Status s = ValidateVolumeName(bad);
        EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << bad;
        EXPECT_NE(s.message().find("control character"), std::string::npos) << s.message();
    }
    EXPECT_TRUE(ValidateVolumeName("caf\xc3\xa9 \xc2\xa0nbsp").ok()) << "U+00A0 is printable";
}

TEST(LayoutTest, RefusedNamesAreEscapedInTheMessage)
{
    std::string message = ValidateVolumeName("a\nb\x1b[31m\xc2\x9b").message();
    EXPECT_NE(message.find("'a\\x0ab\\x1b[31m\\xc2\\x9b'"), std::string::npos) << message;
    EXPECT_EQ(message.find_first_of("\n\x1b"), std::string::npos) << "nothing acts on a terminal";

    message = ValidateVolumeName("bad\xff\xfe/").message();
    EXPECT_NE(message.find("'bad\\xff\\xfe/'"), std::string::npos) << message;
    EXPECT_TRUE(g_utf8_validate(message.data(), static_cast<gssize>(message.size()), nullptr))
        << "the message of a name that is not UTF-8 is still UTF-8, as D-Bus requires";

    message = ValidateVolumeName(std::string(300, 'n') + "\xe6\x97\xa5").message();
    EXPECT_NE(message.find("n\xe6\x97\xa5'"), std::string::npos) << "UTF-8 stays as is";
}

TEST(LayoutTest, TransactionDirectoryNamesRoundTrip)
{
    std::string txid = NewUuid();
    std::string incarnation = NewIncarnation();
    EXPECT_TRUE(IsIncarnation(incarnation));
    EXPECT_NE(incarnation, NewIncarnation());
    auto parsed = ParseTxDirName(TxDirName({txid, 17, {42, incarnation}}));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->txid, txid);
    EXPECT_EQ(parsed->slot, 17u);
    EXPECT_EQ(parsed->owner.owner, 42u);
    EXPECT_EQ(parsed->owner.incarnation, incarnation);
    const std::string inc = "-" + incarnation;
    EXPECT_FALSE(ParseTxDirName(txid));
    EXPECT_FALSE(ParseTxDirName(txid + "-17")) << "format 1's name";
    EXPECT_FALSE(ParseTxDirName(txid + "-17-0" + inc)) << "owners start at 1";
    EXPECT_FALSE(ParseTxDirName(txid + "-17-2001" + inc)) << "and end at 2000";
    EXPECT_FALSE(ParseTxDirName(txid + "-01-1" + inc)) << "leading zeros are not canonical";
    EXPECT_FALSE(ParseTxDirName(txid + "-17-01" + inc));
    EXPECT_FALSE(ParseTxDirName(txid + "-99999999999999999999999-1" + inc));
    EXPECT_FALSE(ParseTxDirName(txid + "-17-1-0123456789ABCDEF")) << "lower-case hex only";
    EXPECT_FALSE(ParseTxDirName(txid + "-17-1-0123456789abcde"));
    EXPECT_FALSE(ParseTxDirName("x" + txid.substr(1) + "-1-1" + inc));
    auto legacy = ParseLegacyTxDirName(txid + "-17");
    ASSERT_TRUE(legacy);
    EXPECT_EQ(legacy->slot, 17u);
}

TEST(LayoutTest, ChunksHoldTheirSlotsAndNameTheirOwner)
{
    EXPECT_EQ(FirstSlotOf(0), 1u);
    EXPECT_EQ(LastSlotOf(0), kChunkSlots);
    EXPECT_EQ(ChunkOf(kChunkSlots), 0u);
    EXPECT_EQ(ChunkOf(kChunkSlots + 1), 1u);
    EXPECT_EQ(LastSlotOf(kMaxChunk), kMaxSlot) << "the last chunk ends at the last slot";
    EXPECT_EQ(ParseChunkEntry(ChunkEntry(12)), 12u);
    EXPECT_FALSE(ParseChunkEntry(std::to_string(kMaxChunk + 1)));
    EXPECT_FALSE(ParseChunkEntry("012"));
    EXPECT_EQ(ParseChunkTarget(ChunkTarget(2000)), 2000u);
    EXPECT_FALSE(ParseChunkTarget("0"));
    EXPECT_FALSE(ParseChunkTarget("../1"));
}

TEST(LayoutTest, IndexTargetsRoundTripAndRejectEscapes)
{
    std::string image = NewUuid(), volume = NewUuid();
    auto ref = ParseIndexTarget(IndexTarget(image, volume));
    ASSERT_TRUE(ref);
    EXPECT_EQ(ref->image, image);
    EXPECT_EQ(ref->volume, volume);
    EXPECT_FALSE(ParseIndexTarget("/etc/passwd"));
    EXPECT_FALSE(ParseIndexTarget("../" + image + "/" + volume));
    EXPECT_FALSE(ParseIndexTarget(image + "/../" + volume.substr(3)));
    EXPECT_FALSE(ParseIndexTarget("/" + image.substr(1) + "/" + volume));
}

TEST(LayoutTest, IndexEntriesNeverCollideWithImagesOrEachOther)
{
    EXPECT_EQ(NameEntry("disk"), "@disk");
    std::string longest(255, 'x');
    EXPECT_EQ(NameEntry(longest).size(), 65u) << "'#' + a SHA-256 digest";
    EXPECT_NE(NameEntry(longest), NameEntry(std::string(255, 'y')));
    EXPECT_LE(NameEntry(std::string(254, 'x')).size(), 255u);
    EXPECT_EQ(ClassifyImagesEntry(NewUuid()), EntryKind::kImage);
    EXPECT_EQ(ClassifyImagesEntry(NameEntry("123")), EntryKind::kName);
    EXPECT_EQ(ClassifyImagesEntry(NameEntry(NewUuid())), EntryKind::kName);
    EXPECT_EQ(ClassifyImagesEntry(NameEntry(longest)), EntryKind::kName);
    EXPECT_EQ(ClassifyImagesEntry("42"), EntryKind::kLegacySlot);
    EXPECT_EQ(ClassifyImagesEntry("stray.txt"), EntryKind::kOther);
}

TEST(LayoutTest, SlotNamesAreCanonicalDecimal)
{
    EXPECT_EQ(ParseSlotName("1"), 1u);
    EXPECT_EQ(ParseSlotName(SlotName(kMaxSlot)), kMaxSlot);
    EXPECT_FALSE(ParseSlotName("0x1"));
    EXPECT_FALSE(ParseSlotName("-1"));
    EXPECT_FALSE(ParseSlotName(std::to_string(kMaxSlot + 1)));
    EXPECT_EQ(LeaseOffset(3, 1 << 20), 3u << 20);
}

}  // namespace
}  // namespace sdm::layout
