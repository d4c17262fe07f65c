/* The libvirt storage backend through the real virsh: a private libvirtd with our loader and
 * shim, a real sdmd (local leases), and, side by side, a stock `dir` pool that must keep its
 * stock behaviour. Storage is examined directly after the commands, and the domain must
 * pass sdmd's consistency check at the end of every test. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "tests/support/daemon_harness.h"
#include "tests/support/libvirt_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string Trim(const std::string &text)
{
    size_t end = text.find_last_not_of(" \n");
    return end == std::string::npos ? "" : text.substr(0, end + 1);
}

class VirshTest : public LibvirtPoolsTest {
protected:
    std::set<std::string> VolumeNames(const std::string &pool)
    {
        return VolListNames(libvirt_->VirshOk({"vol-list", pool}));
    }

    std::string Path(const std::string &pool, const std::string &volume)
    {
        return Trim(libvirt_->VirshOk({"vol-path", volume, "--pool", pool}));
    }

    /* Runs the same virsh command against both pools: both must succeed. */
    void Both(const std::vector<std::string> &args_with_pool_last)
    {
        for (const char *pool : {"sd", "stock"}) {
            auto args = args_with_pool_last;
            args.push_back(pool);
            libvirt_->VirshOk(args);
        }
    }
};

TEST_F(VirshTest, EveryVolumeCommandOnOursAndOnStock)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    EXPECT_TRUE(Exists(domain_ + "/domain.meta")) << "pool-build formatted a domain";
    EXPECT_FALSE(Exists(stock_ + "/domain.meta")) << "the stock pool stays a plain directory";
    EXPECT_NE(libvirt_->VirshOk({"pool-dumpxml", "sd"}).find("<sdm:domain socket="),
              std::string::npos)
        << "the namespace element survives pool-dumpxml";

    Both({"vol-create-as", "--name", "raw", "--capacity", "64M", "--format", "raw", "--pool"});
    Both({"vol-create-as", "--name", "q", "--capacity", "64M", "--format", "qcow2",
          "--prealloc-metadata", "--pool"});
    Both({"vol-create-as", "--name", "full", "--capacity", "8M", "--allocation", "8M",
          "--format", "raw", "--pool"});
    for (const char *pool : {"sd", "stock"}) {
        std::string base = Path(pool, "q");
        WriteFile(tmp_.Sub("layer.xml"),
                  "<volume><name>q-layer</name><capacity>0</capacity>"
                  "<target><format type='qcow2'/></target><backingStore><path>" +
                      base + "</path><format type='qcow2'/></backingStore></volume>");
        libvirt_->VirshOk({"vol-create", pool, tmp_.Sub("layer.xml")});
        EXPECT_NE(libvirt_->VirshOk({"vol-dumpxml", "q-layer", "--pool", pool}).find(base),
                  std::string::npos)
            << pool << ": the layer names its backing volume";
    }

    std::string raw = Path("sd", "raw");
    EXPECT_EQ(raw.rfind(domain_ + "/images/", 0), 0u) << raw;
    WritePattern(raw, 0, 4 * kMiB, 7);
    WritePattern(Path("stock", "raw"), 0, 4 * kMiB, 7);
    Both({"vol-clone", "raw", "raw-clone", "--pool"});
    EXPECT_EQ(FileSha256(Path("sd", "raw-clone")), FileSha256(raw));
    EXPECT_LT(AllocatedBytes(Path("sd", "raw-clone")), 8 * kMiB) << "the clone stays sparse";
    WriteFile(tmp_.Sub("from.xml"), "<volume><name>raw-from</name><capacity>0</capacity>"
                                    "<target><format type='raw'/></target></volume>");
    for (const char *pool : {"sd", "stock"})
        libvirt_->VirshOk({"vol-create-from", pool, tmp_.Sub("from.xml"), "raw", "--inputpool",
                           pool});
    EXPECT_EQ(FileSha256(Path("sd", "raw-from")), FileSha256(raw));

    Both({"vol-resize", "raw", "128M", "--pool"});
    std::string info = libvirt_->VirshOk({"vol-info", "raw", "--pool", "sd", "--bytes"});
    EXPECT_NE(info.find(std::to_string(128 * kMiB) + " bytes"), std::string::npos) << info;
    struct stat st;
    ASSERT_EQ(stat(raw.c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), 128 * kMiB) << "the data file grew";

    std::string key = Trim(libvirt_->VirshOk({"vol-key", "raw", "--pool", "sd"}));
    EXPECT_EQ(Trim(libvirt_->VirshOk({"vol-name", key})), "raw") << "lookup by key";
    EXPECT_EQ(Trim(libvirt_->VirshOk({"vol-path", key})), raw) << "lookup by key";
    std::string xml = libvirt_->VirshOk({"vol-dumpxml", "q", "--pool", "sd"});
    EXPECT_NE(xml.find("<format type='qcow2'/>"), std::string::npos) << xml;
    EXPECT_NE(xml.find("<key>" + key.substr(0, key.find('/'))), std::string::npos)
        << "keys carry the domain uuid: " << xml;

    Both({"vol-delete", "raw-clone", "--pool"});
    EXPECT_FALSE(Exists(Path("stock", "raw") + "-clone"));
    Both({"pool-refresh"});
    const std::set<std::string> expected = {"raw", "q", "q-layer", "full", "raw-from"};
    EXPECT_EQ(VolumeNames("sd"), expected);
    EXPECT_EQ(VolumeNames("stock"), expected);
    EXPECT_NE(libvirt_->VirshOk({"vol-dumpxml", "q-layer", "--pool", "sd"})
                  .find("<path>" + Path("sd", "q") + "</path>"),
              std::string::npos)
        << "a refreshed layer still names its backing volume";
    EXPECT_GE(AllocatedBytes(Path("sd", "full")), 8 * kMiB) << "--allocation = capacity: full";
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, KeysAndVolumesSurviveLibvirtdRestartAndCrash)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    libvirt_->VirshOk({"vol-create-as", "sd", "kept", "16M"});
    std::string key = Trim(libvirt_->VirshOk({"vol-key", "kept", "--pool", "sd"}));
    libvirt_->Stop();
    ASSERT_TRUE(libvirt_->Start());
    EXPECT_EQ(Trim(libvirt_->VirshOk({"vol-key", "kept", "--pool", "sd"})), key);
    libvirt_->Kill();
    ASSERT_TRUE(libvirt_->Start());
    EXPECT_EQ(Trim(libvirt_->VirshOk({"vol-key", "kept", "--pool", "sd"})), key);
    libvirt_->VirshOk({"vol-create-as", "sd", "after", "16M"});
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"kept", "after"}));
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, MissingSdmdIsAClearErrorAndStockPoolsGoOn)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    libvirt_->VirshOk({"vol-create-as", "sd", "before", "16M"});
    ASSERT_EQ(sdmd_->Stop(), 0);
    CommandResult r = libvirt_->Virsh({"vol-create-as", "sd", "while-down", "16M"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find(sdmd_->socket()), std::string::npos) << "names the socket: " << r.out;
    EXPECT_NE(r.out.find("start sdmd"), std::string::npos) << "says what to do: " << r.out;
    libvirt_->VirshOk({"vol-create-as", "stock", "while-down", "16M"});
    ASSERT_TRUE(sdmd_->Start("lease_backend=local\ndomains=" + domain_));
    libvirt_->VirshOk({"vol-create-as", "sd", "after", "16M"});
    libvirt_->VirshOk({"pool-refresh", "sd"});
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"before", "after"}));
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, LoaderForAnotherLibvirtBuildIsRefusedAndStockWorks)
{
    libvirt_->Stop();
    ASSERT_TRUE(libvirt_->Start(WrongBuildLoaderPath()));
    EXPECT_NE(libvirt_->Log().find("not loading the storage-domain backend"), std::string::npos)
        << libvirt_->Log();
    EXPECT_NE(libvirt_->Log().find("build-id"), std::string::npos) << "says which check failed";
    WriteFile(tmp_.Sub("stock.xml"), StockPoolXml("stock", stock_));
    DefineBuildStartPool(*libvirt_, "stock", tmp_.Sub("stock.xml"));
    libvirt_->VirshOk({"vol-create-as", "stock", "v", "16M"});
    EXPECT_TRUE(Exists(stock_ + "/v"));
}

TEST_F(VirshTest, BadPoolElementsAreRefusedAtDefine)
{
    struct Case {
        std::string attributes;
        std::string says;
    };
    const std::vector<Case> cases = {
        {" io_timeout='0'", "io_timeout"},
        {" io_timeout='ten'", "whole number of seconds"},
        {" io_timeout='301'", "from 1 to 300"},
        {" colour='red'", "unknown attribute 'colour'"},
    };
    for (const auto &c : cases) {
        WriteFile(tmp_.Sub("bad.xml"), DomainPoolXml("bad", domain_, sdmd_->socket(),
                                                     c.attributes));
        CommandResult r = libvirt_->Virsh({"pool-define", tmp_.Sub("bad.xml")});
        EXPECT_NE(r.exit_code, 0) << c.attributes;
        EXPECT_NE(r.out.find(c.says), std::string::npos) << c.attributes << ": " << r.out;
    }
    WriteFile(tmp_.Sub("bad.xml"), DomainPoolXml("bad", domain_, "relative/sock"));
    CommandResult r = libvirt_->Virsh({"pool-define", tmp_.Sub("bad.xml")});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("absolute path"), std::string::npos) << r.out;
    EXPECT_EQ(Trim(libvirt_->VirshOk({"pool-list", "--all", "--name"})), "")
        << "nothing was defined";
}

TEST_F(VirshTest, BadVolumeInputIsAClearErrorAndLosesNothing)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    libvirt_->VirshOk({"vol-create-as", "sd", "keep", "16M"});
    WritePattern(Path("sd", "keep"), 0, kMiB, 3);
    const std::string keep_sum = FileSha256(Path("sd", "keep"));
    struct Case {
        std::vector<std::string> args;
        std::string says;
    };
    const std::vector<Case> cases = {
        {{"vol-create-as", "sd", "a/b", "16M"}, "'/'"},
        {{"vol-create-as", "sd", "..", "16M"}, "invalid volume name"},
        {{"vol-create-as", "sd", std::string(300, 'x'), "16M"}, "255"},
        {{"vol-create-as", "sd", "zero", "0"}, "capacity"},
        {{"vol-create-as", "sd", "huge", "1000000T"}, "capacity"},
        {{"vol-create-as", "sd", "odd", "16M", "--format", "vmdk"}, "use raw or qcow2"},
        {{"vol-create-as", "sd", "keep", "16M"}, "exists"},
        {{"vol-clone", "keep", "keep", "--pool", "sd"}, "already in use"},
        {{"vol-clone", "absent", "x", "--pool", "sd"}, "absent"},
        {{"vol-resize", "keep", "8M", "--pool", "sd", "--shrink"}, "shrink"},
    };
    for (const auto &c : cases) {
        CommandResult r = libvirt_->Virsh(c.args);
        EXPECT_NE(r.exit_code, 0) << c.args[0] << " " << c.args[2];
        EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args[0] << ": " << r.out;
    }
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"keep"}));
    EXPECT_EQ(FileSha256(Path("sd", "keep")), keep_sum);
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

/* Every qcow2 volume of a storage domain is compat 1.1: a volume XML that asks for 0.10
 * is refused, not given 1.1 in silence. */
TEST_F(VirshTest, Qcow2CompatOtherThanOneOneIsRefused)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    auto xml = [&](const std::string &name, const std::string &compat) {
        WriteFile(tmp_.Sub(name + ".xml"),
                  "<volume><name>" + name + "</name><capacity>16777216</capacity><target>"
                  "<format type='qcow2'/><compat>" + compat + "</compat></target></volume>");
        return tmp_.Sub(name + ".xml");
    };
    CommandResult old = libvirt_->Virsh({"vol-create", "sd", xml("old", "0.10")});
    EXPECT_NE(old.exit_code, 0);
    EXPECT_NE(old.out.find("compat '0.10' is not supported"), std::string::npos) << old.out;
    libvirt_->VirshOk({"vol-create", "sd", xml("new", "1.1")});
    CommandResult info = sdm::testing::Run({"qemu-img", "info", "-U", Path("sd", "new")});
    EXPECT_NE(info.out.find("compat: 1.1"), std::string::npos) << info.out;
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"new"}));
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

/* pool-start of a storage-domain pool whose directory is not a domain yet is an error about
 * the pool, with what to do, not "Storage volume not found". */
TEST_F(VirshTest, StartingAPoolNeverBuiltSaysBuildItFirst)
{
    ASSERT_EQ(mkdir(domain_.c_str(), 0755), 0);
    WriteFile(tmp_.Sub("sd.xml"), DomainPoolXml("sd", domain_, sdmd_->socket()));
    libvirt_->VirshOk({"pool-define", tmp_.Sub("sd.xml")});
    CommandResult r = libvirt_->Virsh({"pool-start", "sd"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.out.find("Storage volume not found"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("holds no storage domain"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("virsh pool-build sd"), std::string::npos) << r.out;
    libvirt_->VirshOk({"pool-build", "sd"});
    libvirt_->VirshOk({"pool-start", "sd"});
}

TEST_F(VirshTest, PoolBuildRefusesAForeignDirectoryAndAcceptsADomain)
{
    ASSERT_EQ(mkdir(domain_.c_str(), 0755), 0);
    WriteFile(domain_ + "/precious.txt", "user data");
    WriteFile(tmp_.Sub("sd.xml"), DomainPoolXml("sd", domain_, sdmd_->socket()));
    libvirt_->VirshOk({"pool-define", tmp_.Sub("sd.xml")});
    CommandResult r = libvirt_->Virsh({"pool-build", "sd"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("not empty"), std::string::npos) << r.out;
    EXPECT_EQ(ReadFile(domain_ + "/precious.txt"), "user data");
    unlink((domain_ + "/precious.txt").c_str());
    libvirt_->VirshOk({"pool-build", "sd"});
    libvirt_->VirshOk({"pool-build", "sd"}); /* a domain already: nothing to do */
    libvirt_->VirshOk({"pool-start", "sd"});
    libvirt_->VirshOk({"pool-destroy", "sd"});
    libvirt_->VirshOk({"pool-start", "sd"});
}

/* --- volume data: upload, download, wipe, pool-delete, vol-create-from (issue 4) --- */

/* A sparse file of `size` bytes with pattern data at the given MiB offsets. */
void MakePayload(const std::string &path, uint64_t size, const std::vector<uint64_t> &mib_at)
{
    WriteFile(path, "");
    ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(size)), 0);
    for (uint64_t at : mib_at)
        WritePattern(path, at * kMiB, kMiB, static_cast<uint32_t>(at + 1));
}

std::string ZerosSha256(const std::string &scratch, uint64_t size)
{
    MakePayload(scratch, size, {});
    return FileSha256(scratch);
}

/* What a guest reads from an image file, flattened to raw. */
std::string GuestSha256(const std::string &image, const std::string &scratch)
{
    CommandResult r = Run({"qemu-img", "convert", "-U", "-O", "raw", image, scratch});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return FileSha256(scratch);
}

TEST_F(VirshTest, UploadAndDownloadRoundTripOnOursAndOnStock)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    const std::string payload = tmp_.Sub("payload.raw");
    ASSERT_NO_FATAL_FAILURE(MakePayload(payload, 16 * kMiB, {0, 1, 2, 3, 10}));
    const std::string payload_sum = FileSha256(payload);
    Both({"vol-create-as", "--name", "up", "--capacity", "16M", "--format", "raw", "--pool"});
    for (const char *pool : {"sd", "stock"}) {
        libvirt_->VirshOk({"vol-upload", "up", payload, "--pool", pool});
        std::string out = tmp_.Sub(std::string("down-") + pool);
        libvirt_->VirshOk({"vol-download", "up", out, "--pool", pool});
        EXPECT_EQ(FileSha256(out), payload_sum) << pool << ": the round trip keeps every byte";
        EXPECT_EQ(FileSha256(Path(pool, "up")), payload_sum) << pool;
    }
    EXPECT_LT(AllocatedBytes(Path("sd", "up")), 8 * kMiB) << "zeroed blocks became holes";

    /* A range: --offset and --length, the same on both. */
    const std::string patch = tmp_.Sub("patch.raw");
    ASSERT_NO_FATAL_FAILURE(MakePayload(patch, kMiB, {0}));
    for (const char *pool : {"sd", "stock"})
        libvirt_->VirshOk({"vol-upload", "up", patch, "--pool", pool, "--offset",
                           std::to_string(5 * kMiB), "--length", std::to_string(kMiB)});
    EXPECT_EQ(FileSha256(Path("sd", "up")), FileSha256(Path("stock", "up")));
    for (const char *pool : {"sd", "stock"})
        libvirt_->VirshOk({"vol-download", "up", tmp_.Sub(std::string("part-") + pool), "--pool",
                           pool, "--offset", std::to_string(5 * kMiB), "--length",
                           std::to_string(kMiB)});
    EXPECT_EQ(FileSha256(tmp_.Sub("part-sd")), FileSha256(tmp_.Sub("part-stock")));
    struct stat st;
    ASSERT_EQ(stat(tmp_.Sub("part-sd").c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), kMiB);

    /* qcow2 takes a qcow2 file's bytes, as stock does; its virtual size becomes the
     * volume's capacity. */
    const std::string image = tmp_.Sub("image.qcow2");
    ASSERT_NO_FATAL_FAILURE(MakePayload(tmp_.Sub("big.raw"), 32 * kMiB, {0, 20}));
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "convert", "-O", "qcow2", tmp_.Sub("big.raw"), image}).exit_code,
              0);
    Both({"vol-create-as", "--name", "q", "--capacity", "16M", "--format", "qcow2", "--pool"});
    for (const char *pool : {"sd", "stock"}) {
        libvirt_->VirshOk({"vol-upload", "q", image, "--pool", pool});
        std::string out = tmp_.Sub(std::string("q-") + pool);
        libvirt_->VirshOk({"vol-download", "q", out, "--pool", pool});
        EXPECT_EQ(FileSha256(out), FileSha256(image)) << pool;
    }
    std::string info = libvirt_->VirshOk({"vol-info", "q", "--pool", "sd", "--bytes"});
    EXPECT_NE(info.find(std::to_string(32 * kMiB) + " bytes"), std::string::npos) << info;
    EXPECT_EQ(GuestSha256(Path("sd", "q"), tmp_.Sub("flat")), FileSha256(tmp_.Sub("big.raw")));
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, UploadFailuresAreClearAndWhatTheyLeaveIsNeverLegal)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    libvirt_->VirshOk({"vol-create-as", "sd", "busy", "16M"});
    WritePattern(Path("sd", "busy"), 0, kMiB, 9);
    const std::string before = FileSha256(Path("sd", "busy"));
    const std::string payload = tmp_.Sub("payload.raw");
    ASSERT_NO_FATAL_FAILURE(MakePayload(payload, 16 * kMiB, {4}));

    /* A lease holder (a VM, another host) on the volume: the local lease is an OFD lock on
     * the volume's slot in the lease area. */
    g_autoptr(GVariant) reply =
        SdmdCall("LookupVolume", g_variant_new("(ss)", domain_.c_str(), "busy"));
    ASSERT_NE(reply, nullptr);
    g_autoptr(GVariant) volume = g_variant_get_child_value(reply, 0);
    const uint64_t slot = U64(volume, "slot");
    int holder = open((domain_ + "/leases").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(holder, 0);
    struct flock range = {};
    range.l_type = F_WRLCK;
    range.l_whence = SEEK_SET;
    range.l_start = static_cast<off_t>(slot * kMiB);
    range.l_len = 1;
    ASSERT_EQ(fcntl(holder, F_OFD_SETLK, &range), 0);
    for (const std::vector<std::string> &args :
         {std::vector<std::string>{"vol-upload", "busy", payload, "--pool", "sd"},
          std::vector<std::string>{"vol-wipe", "busy", "--pool", "sd"}}) {
        CommandResult r = libvirt_->Virsh(args);
        EXPECT_NE(r.exit_code, 0) << args[0];
        EXPECT_NE(r.out.find("is in use"), std::string::npos) << args[0] << ": " << r.out;
    }
    close(holder);
    EXPECT_EQ(FileSha256(Path("sd", "busy")), before) << "nothing was written";
    libvirt_->VirshOk({"pool-refresh", "sd"});
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"busy"})) << "still LEGAL";

    CommandResult sparse = libvirt_->Virsh({"vol-upload", "busy", payload, "--pool", "sd",
                                            "--sparse"});
    EXPECT_NE(sparse.exit_code, 0);
    EXPECT_NE(sparse.out.find("without --sparse"), std::string::npos) << sparse.out;

    libvirt_->VirshOk({"vol-upload", "busy", payload, "--pool", "sd"});
    EXPECT_EQ(FileSha256(Path("sd", "busy")), FileSha256(payload));

    /* More data than the volume holds: sdmd's error reaches virsh, and the volume, whose
     * data is now incomplete, is ILLEGAL: listed (its name is taken, and the ways out are
     * virsh commands) but refused wherever its data would be used. */
    const std::string big = tmp_.Sub("big.raw");
    ASSERT_NO_FATAL_FAILURE(MakePayload(big, 20 * kMiB, {1}));
    CommandResult r = libvirt_->Virsh({"vol-upload", "busy", big, "--pool", "sd"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("resize the volume first"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("stays ILLEGAL"), std::string::npos) << r.out;
    libvirt_->VirshOk({"pool-refresh", "sd"});
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"busy"}));
    g_autoptr(GVariant) after = SdmdCall("LookupVolume",
                                         g_variant_new("(ss)", domain_.c_str(), "busy"));
    ASSERT_NE(after, nullptr);
    g_autoptr(GVariant) illegal = g_variant_get_child_value(after, 0);
    EXPECT_EQ(Str(illegal, "legality"), "ILLEGAL");
    for (const std::vector<std::string> &args :
         {std::vector<std::string>{"vol-info", "busy", "--pool", "sd"},
          std::vector<std::string>{"vol-dumpxml", "busy", "--pool", "sd"},
          std::vector<std::string>{"vol-clone", "busy", "copy", "--pool", "sd"}}) {
        CommandResult refused = libvirt_->Virsh(args);
        EXPECT_NE(refused.exit_code, 0) << args[0];
        EXPECT_NE(refused.out.find("is ILLEGAL"), std::string::npos) << args[0] << ": "
                                                                       << refused.out;
    }
    std::string details = libvirt_->VirshOk({"vol-list", "sd", "--details"});
    EXPECT_NE(details.find("unknown"), std::string::npos)
        << "the listing goes on, its sizes unknown: " << details;
    CommandResult taken = libvirt_->Virsh({"vol-create-as", "sd", "busy", "16M"});
    EXPECT_NE(taken.exit_code, 0) << "the name stays taken";

    /* The ways out, through virsh: a whole upload makes it LEGAL again, and an ILLEGAL
     * volume can be deleted. */
    libvirt_->VirshOk({"vol-upload", "busy", payload, "--pool", "sd"});
    std::string info = libvirt_->VirshOk({"vol-info", "busy", "--pool", "sd"});
    EXPECT_NE(info.find("busy"), std::string::npos) << info;
    EXPECT_EQ(FileSha256(Path("sd", "busy")), FileSha256(payload));
    r = libvirt_->Virsh({"vol-upload", "busy", big, "--pool", "sd"});
    EXPECT_NE(r.exit_code, 0);
    libvirt_->VirshOk({"pool-refresh", "sd"});
    libvirt_->VirshOk({"vol-delete", "busy", "--pool", "sd"});
    libvirt_->VirshOk({"pool-refresh", "sd"});
    EXPECT_EQ(VolumeNames("sd"), std::set<std::string>{});
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, WipeZeroesOnOursAndOnStock)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    const std::string zeros = ZerosSha256(tmp_.Sub("zeros"), 16 * kMiB);
    Both({"vol-create-as", "--name", "w", "--capacity", "16M", "--format", "raw", "--pool"});
    Both({"vol-create-as", "--name", "wf", "--capacity", "8M", "--allocation", "8M", "--format",
          "raw", "--pool"});
    for (const char *pool : {"sd", "stock"}) {
        WritePattern(Path(pool, "w"), 2 * kMiB, 4 * kMiB, 5);
        WritePattern(Path(pool, "wf"), 0, kMiB, 5);
    }
    Both({"vol-wipe", "w", "--pool"});
    Both({"vol-wipe", "wf", "--pool"});
    for (const char *pool : {"sd", "stock"})
        EXPECT_EQ(FileSha256(Path(pool, "w")), zeros) << pool;
    EXPECT_EQ(FileSha256(Path("sd", "wf")), FileSha256(Path("stock", "wf")));
    EXPECT_LT(AllocatedBytes(Path("sd", "w")), kMiB) << "a sparse volume stays sparse";
    EXPECT_GE(AllocatedBytes(Path("sd", "wf")), 8 * kMiB) << "a full one stays allocated";

    /* qcow2 on ours: made again empty, still a qcow2 image (stock zeroes its header). */
    libvirt_->VirshOk({"vol-create-as", "sd", "wq", "16M", "--format", "qcow2"});
    ASSERT_NO_FATAL_FAILURE(MakePayload(tmp_.Sub("data.raw"), 16 * kMiB, {3}));
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "convert", "-O", "qcow2", tmp_.Sub("data.raw"),
                   tmp_.Sub("data.qcow2")}).exit_code, 0);
    libvirt_->VirshOk({"vol-upload", "wq", tmp_.Sub("data.qcow2"), "--pool", "sd"});
    libvirt_->VirshOk({"vol-wipe", "wq", "--pool", "sd"});
    EXPECT_EQ(GuestSha256(Path("sd", "wq"), tmp_.Sub("flat")), zeros);
    std::string xml = libvirt_->VirshOk({"vol-dumpxml", "wq", "--pool", "sd"});
    EXPECT_NE(xml.find("<format type='qcow2'/>"), std::string::npos) << xml;

    CommandResult r = libvirt_->Virsh({"vol-wipe", "w", "--pool", "sd", "--algorithm", "nnsa"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("zero"), std::string::npos) << r.out;
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, PoolDeleteRemovesOnlyAnEmptyDomain)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    libvirt_->VirshOk({"vol-create-as", "sd", "left", "16M"});
    libvirt_->VirshOk({"pool-destroy", "sd"});
    CommandResult r = libvirt_->Virsh({"pool-delete", "sd"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("not empty"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("delete them first"), std::string::npos) << r.out;
    EXPECT_TRUE(Exists(domain_ + "/domain.meta"));
    libvirt_->VirshOk({"pool-start", "sd"});
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"left"})) << "nothing was lost";
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
    libvirt_->VirshOk({"vol-delete", "left", "--pool", "sd"});
    for (const char *pool : {"sd", "stock"}) {
        libvirt_->VirshOk({"pool-destroy", pool});
        libvirt_->VirshOk({"pool-delete", pool});
    }
    EXPECT_FALSE(Exists(domain_)) << "the domain and, as stock, its directory are gone";
    EXPECT_FALSE(Exists(stock_));
    libvirt_->VirshOk({"pool-build", "sd"});
    libvirt_->VirshOk({"pool-start", "sd"});
    libvirt_->VirshOk({"vol-create-as", "sd", "again", "16M"});
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

TEST_F(VirshTest, VolCreateFromTheStockPoolIntoOurs)
{
    ASSERT_NO_FATAL_FAILURE(DefinePools());
    libvirt_->VirshOk({"vol-create-as", "stock", "src", "32M"});
    WritePattern(Path("stock", "src"), 4 * kMiB, 2 * kMiB, 11);
    libvirt_->VirshOk({"vol-create-as", "stock", "srcq", "16M", "--format", "qcow2"});
    ASSERT_NO_FATAL_FAILURE(MakePayload(tmp_.Sub("q.raw"), 16 * kMiB, {7}));
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", tmp_.Sub("q.raw"),
                   Path("stock", "srcq")}).exit_code, 0);

    WriteFile(tmp_.Sub("raw.xml"), "<volume><name>imported</name><capacity>0</capacity>"
                                   "<target><format type='raw'/></target></volume>");
    libvirt_->VirshOk({"vol-create-from", "sd", tmp_.Sub("raw.xml"), "src", "--inputpool",
                       "stock"});
    EXPECT_EQ(FileSha256(Path("sd", "imported")), FileSha256(Path("stock", "src")));
    EXPECT_LT(AllocatedBytes(Path("sd", "imported")), 8 * kMiB) << "copied sparse";
    WriteFile(tmp_.Sub("q.xml"), "<volume><name>imported-q</name><capacity>0</capacity>"
                                 "<target><format type='raw'/></target></volume>");
    libvirt_->VirshOk({"vol-create-from", "sd", tmp_.Sub("q.xml"), "srcq", "--inputpool",
                       "stock"});
    EXPECT_EQ(FileSha256(Path("sd", "imported-q")), FileSha256(tmp_.Sub("q.raw")))
        << "a qcow2 source converted to raw";
    std::string info = libvirt_->VirshOk({"vol-info", "imported", "--pool", "sd", "--bytes"});
    EXPECT_NE(info.find(std::to_string(32 * kMiB) + " bytes"), std::string::npos) << info;
    libvirt_->VirshOk({"pool-refresh", "sd"});
    EXPECT_EQ(VolumeNames("sd"), (std::set<std::string>{"imported", "imported-q"}));
    ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
}

}  // namespace
}  // namespace sdm::testing
