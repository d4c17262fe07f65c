/* virt-install against our pool and, side by side, a stock dir pool: `virt-install --disk
 * pool=P,size=…,format=qcow2 … --print-xml` creates the guest's disk through the pool (no
 * guest boots: there is no /dev/kvm here, and --print-xml stops after the storage), and the
 * printed domain XML must name a file that is that volume.
 *
 * virt-install needs domain capabilities, so libvirtd runs the qemu driver as well
 * (SDM_LIBVIRT_QEMU=1 for private-libvirtd.sh, qemu-system-x86 installed). The qemu driver
 * refuses to start without the user and group libvirt-qemu and the group kvm, which Debian's
 * libvirt-daemon-system creates but which this suite must not install (it starts services):
 * EnsureQemuAccounts creates them as system accounts when they are missing, once per
 * machine, as that package's postinst would. Needs root. */
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <cstdlib>

#include "tests/libvirt/python_test_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kCapacity = 256ull << 20;   /* size=0.25 (GiB) */

::testing::AssertionResult EnsureQemuAccounts()
{
    std::vector<std::vector<std::string>> commands;
    if (!getgrnam("kvm"))
        commands.push_back({"groupadd", "--system", "kvm"});
    if (!getgrnam("libvirt-qemu"))
        commands.push_back({"groupadd", "--system", "libvirt-qemu"});
    if (!getpwnam("libvirt-qemu"))
        commands.push_back({"useradd", "--system", "--gid", "libvirt-qemu", "--groups", "kvm",
                            "--no-create-home", "--home-dir", "/var/lib/libvirt", "--shell",
                            "/usr/sbin/nologin", "libvirt-qemu"});
    for (const auto &argv : commands) {
        CommandResult r = Run(argv);
        if (r.exit_code != 0)
            return ::testing::AssertionFailure() << argv[0] << " " << argv.back()
                                                 << " failed (run the suite as root):\n"
                                                 << r.out;
    }
    return ::testing::AssertionSuccess();
}

/* The value of the first `attribute="…"` after `element` in `xml`, "" if none. */
std::string Attribute(const std::string &xml, const std::string &element,
                      const std::string &attribute)
{
    size_t at = xml.find(element);
    if (at == std::string::npos)
        return "";
    std::string needle = attribute + "=\"";
    size_t start = xml.find(needle, at);
    if (start == std::string::npos)
        return "";
    start += needle.size();
    return xml.substr(start, xml.find('"', start) - start);
}

bool SameFile(const std::string &a, const std::string &b)
{
    struct stat sa, sb;
    return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

class VirtInstallTest : public ClientPoolsTest,
                        public ::testing::WithParamInterface<const char *> {
protected:
    void SetUp() override
    {
        ASSERT_TRUE(EnsureQemuAccounts());
        setenv("SDM_LIBVIRT_QEMU", "1", 1);
        ClientPoolsTest::SetUp();
    }

    /* The qemu driver's URI on the same private libvirtd. */
    std::string QemuUri() const
    {
        const std::string &uri = libvirt_->uri();
        return "qemu" + uri.substr(uri.find(':'));
    }
};

TEST_P(VirtInstallTest, PrintXmlCreatesTheDiskThroughThePool)
{
    const std::string pool = GetParam();
    CommandResult r = testing::Run({"virt-install", "--connect", QemuUri(), "--name", "vi-guest",
                           "--memory", "256", "--vcpus", "1", "--import", "--disk",
                           "pool=" + pool + ",size=0.25,format=qcow2", "--osinfo",
                           "detect=on,require=off", "--graphics", "none", "--noautoconsole",
                           "--print-xml"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const std::string printed = Attribute(r.out, "<disk type=\"file\"", "file");
    ASSERT_FALSE(printed.empty()) << "no file disk in the printed XML:\n" << r.out;
    EXPECT_NE(r.out.find("type=\"qcow2\""), std::string::npos) << r.out;

    std::string info = libvirt_->VirshOk({"vol-info", "vi-guest.qcow2", "--pool", pool,
                                          "--bytes"});
    EXPECT_NE(info.find(std::to_string(kCapacity) + " bytes"), std::string::npos) << info;
    std::string path = libvirt_->VirshOk({"vol-path", "vi-guest.qcow2", "--pool", pool});
    path = path.substr(0, path.find('\n'));
    EXPECT_EQ(ReadFile(path).substr(0, 4), "QFI\xfb") << path << " is a qcow2 image";
    EXPECT_TRUE(SameFile(printed, path))
        << "the guest XML names " << printed << ", which is not the volume's file " << path;

    if (pool == "sd") {
        EXPECT_EQ(SdmdVolumeNames(), (std::set<std::string>{"vi-guest.qcow2"}))
            << "the disk was created through sdmd";
        EXPECT_EQ(SdmdVolumePath("vi-guest.qcow2"), path);
        ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
    }
}

INSTANTIATE_TEST_SUITE_P(Pools, VirtInstallTest, ::testing::Values("sd", "stock"),
                         [](const auto &info) { return std::string(info.param); });

}  // namespace
}  // namespace sdm::testing
