/* Status: codes, context filling and the text people read. */
#include <gtest/gtest.h>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm {
namespace {

TEST(StatusTest, OkHasNoMessage)
{
    Status s;
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(s.ToString(), "ok");
    s.WithDomain("d").WithStep("x");
    EXPECT_TRUE(s.context().domain.empty()) << "context is only for errors";
}

TEST(StatusTest, ContextFillsOnlyEmptyFields)
{
    Status s = Status::Error(ErrorCode::kBusy, "volume in use", {"", "", "vol-a", "clone.copy"});
    s.WithDomain("dom").WithVolume("outer").WithStep("clone.begin").WithImage("img");
    EXPECT_EQ(s.context().domain, "dom");
    EXPECT_EQ(s.context().volume, "vol-a") << "the inner layer's detail wins";
    EXPECT_EQ(s.context().step, "clone.copy");
    EXPECT_EQ(s.ToString(), "volume in use (domain dom, image img, volume vol-a, step clone.copy)");
}

TEST(StatusTest, FromErrnoMapsCodes)
{
    EXPECT_EQ(Status::FromErrno(ENOENT, "x").code(), ErrorCode::kNotFound);
    EXPECT_EQ(Status::FromErrno(ENOSPC, "x").code(), ErrorCode::kNoSpace);
    EXPECT_EQ(Status::FromErrno(EEXIST, "x").code(), ErrorCode::kAlreadyExists);
    EXPECT_EQ(Status::FromErrno(ELOOP, "x").code(), ErrorCode::kCorrupt);
    EXPECT_EQ(Status::FromErrno(EIO, "x").code(), ErrorCode::kIoError);
    EXPECT_NE(Status::FromErrno(EIO, "images/a").message().find("images/a"), std::string::npos);
}

TEST(StatusTest, CodeNamesAreStable)
{
    EXPECT_STREQ(ErrorCodeName(ErrorCode::kInvalidArgument), "invalid-argument");
    EXPECT_STREQ(ErrorCodeName(ErrorCode::kBusy), "busy");
    EXPECT_STREQ(ErrorCodeName(ErrorCode::kCorrupt), "corrupt");
}

TEST(StatusTest, ResultCarriesValueOrStatus)
{
    Result<int> good(42);
    ASSERT_TRUE(good.ok());
    EXPECT_EQ(*good, 42);
    Result<int> bad(Status::Error(ErrorCode::kNotFound, "gone"));
    EXPECT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), ErrorCode::kNotFound);
}

TEST(StatusTest, EnumSpellingsRoundTrip)
{
    for (auto f : {VolumeFormat::kRaw, VolumeFormat::kQcow2})
        EXPECT_EQ(ParseVolumeFormat(VolumeFormatName(f)), f);
    for (auto p : {Preallocation::kSparse, Preallocation::kFull, Preallocation::kMetadata})
        EXPECT_EQ(ParsePreallocation(PreallocationName(p)), p);
    EXPECT_FALSE(ParseVolumeFormat("vmdk"));
    EXPECT_FALSE(ParsePreallocation("falloc"));
}

}  // namespace
}  // namespace sdm
