/* Two hosts, each with its own libvirtd and sdmd, sharing one storage domain: what one host
 * does shows on the other without a manual refresh. The sanlock side of several hosts is
 * proven in tests/integration; here both sdmd use local leases (one machine), which is
 * enough for the libvirt layer. */
#include <chrono>
#include <memory>
#include <set>
#include <thread>

#include "tests/support/daemon_harness.h"
#include "tests/support/libvirt_harness.h"

namespace sdm::testing {
namespace {

struct Host {
    std::unique_ptr<DaemonHarness> sdmd;
    std::unique_ptr<LibvirtHarness> libvirt;
};

class TwoHostsTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        domain_ = tmp_.Sub("domain");
        for (int id = 1; id <= 2; id++) {
            std::string dir = tmp_.Sub("host" + std::to_string(id));
            hosts_.emplace_back();
            Host &host = hosts_.back();
            ASSERT_TRUE(StartSdmdAndLibvirtd(dir, "lease_backend=local\nhost_id=" +
                                                      std::to_string(id),
                                             &host.sdmd, &host.libvirt));
            WriteFile(dir + "/pool.xml", DomainPoolXml("shared", domain_, host.sdmd->socket()));
            /* pool-build on host 2 finds a domain already: nothing to do. */
            DefineBuildStartPool(*host.libvirt, "shared", dir + "/pool.xml");
        }
    }

    void TearDown() override
    {
        for (auto &host : hosts_)
            StopSdmdAndLibvirtd(&host.sdmd, &host.libvirt);
    }

    std::set<std::string> Names(Host &host)
    {
        return VolListNames(host.libvirt->Virsh({"vol-list", "shared"}).out);
    }

    /* The pool's list on `host` becomes `expected` without any refresh command: the
     * documented bound is 2 s plus a listing; give it a generous margin. */
    void ExpectEventually(Host &host, const std::set<std::string> &expected)
    {
        auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (Names(host) != expected && std::chrono::steady_clock::now() < limit)
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        EXPECT_EQ(Names(host), expected);
    }

    TempDir tmp_;
    std::string domain_;
    std::vector<Host> hosts_;
};

TEST_F(TwoHostsTest, CreatesAndDeletesShowOnTheOtherHost)
{
    Host &one = hosts_[0], &two = hosts_[1];
    one.libvirt->VirshOk({"vol-create-as", "shared", "from-one", "16M"});
    ExpectEventually(two, {"from-one"});
    EXPECT_EQ(one.libvirt->VirshOk({"vol-key", "from-one", "--pool", "shared"}),
              two.libvirt->VirshOk({"vol-key", "from-one", "--pool", "shared"}))
        << "a volume's key is the same on every host";

    two.libvirt->VirshOk({"vol-create-as", "shared", "from-two", "16M", "--format", "qcow2"});
    two.libvirt->VirshOk({"vol-clone", "from-one", "clone-on-two", "--pool", "shared"});
    ExpectEventually(one, {"from-one", "from-two", "clone-on-two"});

    two.libvirt->VirshOk({"vol-delete", "from-one", "--pool", "shared"});
    ExpectEventually(one, {"from-two", "clone-on-two"});
    CommandResult gone = one.libvirt->Virsh({"vol-info", "from-one", "--pool", "shared"});
    EXPECT_NE(gone.exit_code, 0) << "a deleted volume is gone for the other host too";

    /* A name taken on one host is taken on the other, even before its list caught up. */
    one.libvirt->VirshOk({"vol-create-as", "shared", "race", "16M"});
    CommandResult twice = two.libvirt->Virsh({"vol-create-as", "shared", "race", "16M"});
    EXPECT_NE(twice.exit_code, 0);
    EXPECT_NE(twice.out.find("storage volume 'race' of storage domain pool 'shared'"),
              std::string::npos)
        << twice.out;
    ExpectEventually(two, {"from-two", "clone-on-two", "race"});
}

}  // namespace
}  // namespace sdm::testing
