/* See libvirt_harness.h. */
#include "tests/support/libvirt_harness.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace sdm::testing {

static std::string Env(const char *name)
{
    const char *value = getenv(name);
    if (!value || !*value)
        ADD_FAILURE() << "$" << name << " is not set; run the suite with `meson test`";
    return value ? value : "";
}

std::string WrongBuildLoaderPath()
{
    return Env("SDM_LIBVIRT_LOADER_WRONG");
}

LibvirtHarness::LibvirtHarness(std::string dir) : dir_(std::move(dir)) {}

LibvirtHarness::~LibvirtHarness()
{
    Stop();
}

::testing::AssertionResult LibvirtHarness::Start(const std::string &loader)
{
    CommandResult r = Run({Env("SDM_PRIVATE_LIBVIRTD"), "start", dir_,
                           loader.empty() ? Env("SDM_LIBVIRT_LOADER") : loader,
                           Env("SDM_LIBVIRT_SHIM")});
    if (r.exit_code != 0)
        return ::testing::AssertionFailure() << "libvirtd did not start:\n" << r.out;
    uri_ = r.out.substr(0, r.out.find('\n'));
    return ::testing::AssertionSuccess();
}

void LibvirtHarness::Stop()
{
    if (uri_.empty())
        return;
    Run({Env("SDM_PRIVATE_LIBVIRTD"), "stop", dir_});
    uri_.clear();
}

void LibvirtHarness::Kill()
{
    std::string pid = ReadFile(dir_ + "/libvirtd.pid");
    if (!pid.empty())
        kill(std::stoi(pid), SIGKILL);
    Stop();
}

CommandResult LibvirtHarness::Virsh(const std::vector<std::string> &args) const
{
    std::vector<std::string> argv = {"virsh", "-q", "-c", uri_};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv);
}

std::string LibvirtHarness::VirshOk(const std::vector<std::string> &args) const
{
    CommandResult r = Virsh(args);
    std::string line;
    for (const auto &a : args)
        line += " " + a;
    EXPECT_EQ(r.exit_code, 0) << "virsh" << line << ":\n" << r.out;
    return r.out;
}

std::string LibvirtHarness::Log() const
{
    return ReadFile(dir_ + "/libvirtd.log");
}

std::string DomainPoolXml(const std::string &name, const std::string &path,
                          const std::string &socket, const std::string &extra_attributes)
{
    return "<pool type='dir' xmlns:sdm='http://libvirt-sdm.org/schemas/storagepool/1.0'>\n"
           "  <name>" + name + "</name>\n"
           "  <target><path>" + path + "</path></target>\n"
           "  <sdm:domain socket='" + socket + "'" + extra_attributes + "/>\n"
           "</pool>\n";
}

std::string StockPoolXml(const std::string &name, const std::string &path)
{
    return "<pool type='dir'>\n  <name>" + name + "</name>\n  <target><path>" + path +
           "</path></target>\n</pool>\n";
}

std::set<std::string> VolListNames(const std::string &vol_list)
{
    std::set<std::string> names;
    size_t start = 0;
    while (start < vol_list.size()) {
        size_t end = vol_list.find('\n', start);
        if (end == std::string::npos)
            end = vol_list.size();
        size_t first = vol_list.find_first_not_of(' ', start);
        if (first < end) {
            size_t last = std::min(vol_list.find(' ', first), end);
            names.insert(vol_list.substr(first, last - first));
        }
        start = end + 1;
    }
    return names;
}

void DefineBuildStartPool(const LibvirtHarness &libvirt, const std::string &name,
                          const std::string &xml_path)
{
    libvirt.VirshOk({"pool-define", xml_path});
    libvirt.VirshOk({"pool-build", name});
    libvirt.VirshOk({"pool-start", name});
}

::testing::AssertionResult StartSdmdAndLibvirtd(const std::string &dir,
                                                const std::string &sdmd_config,
                                                std::unique_ptr<DaemonHarness> *sdmd,
                                                std::unique_ptr<LibvirtHarness> *libvirt,
                                                const std::vector<std::string> &sdmd_env)
{
    for (const std::string &sub : {dir, dir + "/sdmd", dir + "/libvirt"}) {
        if (mkdir(sub.c_str(), 0700) != 0 && errno != EEXIST)
            return ::testing::AssertionFailure() << "mkdir " << sub << ": " << strerror(errno);
    }
    *sdmd = std::make_unique<DaemonHarness>(dir + "/sdmd");
    auto started = (*sdmd)->Start(sdmd_config, sdmd_env);
    if (!started)
        return started;
    *libvirt = std::make_unique<LibvirtHarness>(dir + "/libvirt");
    return (*libvirt)->Start();
}

void StopSdmdAndLibvirtd(std::unique_ptr<DaemonHarness> *sdmd,
                         std::unique_ptr<LibvirtHarness> *libvirt)
{
    if (::testing::Test::HasFailure()) {
        if (*libvirt)
            std::cerr << "--- libvirtd log ---\n" << (*libvirt)->Log();
        if (*sdmd)
            std::cerr << "--- sdmd log ---\n" << (*sdmd)->Log();
    }
    libvirt->reset();
    if (*sdmd && (*sdmd)->running()) {
        EXPECT_EQ((*sdmd)->Stop(), 0) << "sdmd did not stop cleanly";
    }
}

void LibvirtPoolsTest::SetUp()
{
    domain_ = tmp_.Sub("domain");
    stock_ = tmp_.Sub("stock");
    ASSERT_TRUE(StartSdmdAndLibvirtd(tmp_.path(), "lease_backend=local", &sdmd_, &libvirt_,
                                     sdmd_env_));
}

void LibvirtPoolsTest::TearDown()
{
    StopSdmdAndLibvirtd(&sdmd_, &libvirt_);
}

void LibvirtPoolsTest::DefinePools(const std::string &extra_attributes)
{
    WriteFile(tmp_.Sub("sd.xml"), DomainPoolXml("sd", domain_, sdmd_->socket(), extra_attributes));
    WriteFile(tmp_.Sub("stock.xml"), StockPoolXml("stock", stock_));
    for (const char *pool : {"sd", "stock"})
        DefineBuildStartPool(*libvirt_, pool, tmp_.Sub(std::string(pool) + ".xml"));
}

GVariant *LibvirtPoolsTest::SdmdCall(const char *method, GVariant *args)
{
    g_autoptr(GError) error = nullptr;
    g_autoptr(GDBusConnection) connection = sdmd_->Connect(&error);
    if (!connection) {
        ADD_FAILURE() << "cannot reach sdmd: " << error->message;
        g_variant_unref(g_variant_ref_sink(args));
        return nullptr;
    }
    GVariant *reply = Call(connection, method, args, &error);
    EXPECT_NE(reply, nullptr) << method << ": " << (error ? error->message : "");
    return reply;
}

void LibvirtPoolsTest::ExpectDomainConsistent()
{
    g_autoptr(GVariant) reply = SdmdCall("CheckDomain", g_variant_new("(s)", domain_.c_str()));
    ASSERT_NE(reply, nullptr);
    g_autoptr(GVariant) report = g_variant_get_child_value(reply, 0);
    EXPECT_EQ(U32(report, "pending"), 0u);
    g_autoptr(GVariant) problems =
        g_variant_lookup_value(report, "problems", G_VARIANT_TYPE_STRING_ARRAY);
    ASSERT_NE(problems, nullptr) << "CheckDomain's report has no problems list";
    EXPECT_EQ(g_variant_n_children(problems), 0u);
}

}  // namespace sdm::testing
