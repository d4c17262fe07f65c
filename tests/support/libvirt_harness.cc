/* See libvirt_harness.h. */
#include "tests/support/libvirt_harness.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>

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

}  // namespace sdm::testing
