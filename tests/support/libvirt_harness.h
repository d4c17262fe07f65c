/* A private libvirtd for the libvirt-backend suites, driven with the real virsh.
 *
 * LibvirtHarness runs tests/libvirt/private-libvirtd.sh: libvirtd in its own mount
 * namespace with private state and sockets under a scratch directory, the storage and
 * secret drivers only, and our loader in place of the stock fs backend module (the
 * loader, shim and script come from $SDM_LIBVIRT_LOADER, $SDM_LIBVIRT_SHIM and
 * $SDM_PRIVATE_LIBVIRTD). Virsh runs `virsh -c <uri> ...` and captures its output and exit
 * code. LibvirtPoolsTest is the fixture of the suites that drive one such host: an sdmd on
 * local leases beside the libvirtd, and a storage-domain pool with a stock pool side by side.
 * Not thread-safe; one harness per simulated host. */
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/support/daemon_harness.h"
#include "tests/support/test_support.h"

namespace sdm::testing {

class LibvirtHarness {
public:
    /* `dir` holds libvirtd's state, sockets and log; it must outlive the harness. */
    explicit LibvirtHarness(std::string dir);
    ~LibvirtHarness();
    LibvirtHarness(const LibvirtHarness &) = delete;
    LibvirtHarness &operator=(const LibvirtHarness &) = delete;

    /* Starts libvirtd with `loader` (default: the one under test) as the fs backend. */
    ::testing::AssertionResult Start(const std::string &loader = "");
    void Stop();
    /* SIGKILL, as a crash would. */
    void Kill();

    CommandResult Virsh(const std::vector<std::string> &args) const;
    /* Virsh that must succeed: its stdout, or a test failure naming the command. */
    std::string VirshOk(const std::vector<std::string> &args) const;

    const std::string &uri() const { return uri_; }
    std::string Log() const;

private:
    std::string dir_;
    std::string uri_;
};

/* The pool XML of a storage-domain pool on `path` served by the sdmd at `socket`. */
std::string DomainPoolXml(const std::string &name, const std::string &path,
                          const std::string &socket, const std::string &extra_attributes = "");
/* The pool XML of a stock dir pool. */
std::string StockPoolXml(const std::string &name, const std::string &path);

/* $SDM_LIBVIRT_LOADER_WRONG: a loader built for another libvirt build. */
std::string WrongBuildLoaderPath();

/* The volume names in what `virsh -q vol-list` printed: each line's first word. */
std::set<std::string> VolListNames(const std::string &vol_list);

/* pool-define `xml_path`, then pool-build and pool-start `name`; each must succeed. */
void DefineBuildStartPool(const LibvirtHarness &libvirt, const std::string &name,
                          const std::string &xml_path);

/* One simulated host of the libvirt suites: an sdmd with `sdmd_config` (and `sdmd_env` in
 * its environment) in `dir`/sdmd and a private libvirtd in `dir`/libvirt (both directories
 * made here). */
::testing::AssertionResult StartSdmdAndLibvirtd(const std::string &dir,
                                                const std::string &sdmd_config,
                                                std::unique_ptr<DaemonHarness> *sdmd,
                                                std::unique_ptr<LibvirtHarness> *libvirt,
                                                const std::vector<std::string> &sdmd_env = {});
/* Ends what StartSdmdAndLibvirtd started, libvirtd first; after a failed test both logs go
 * to stderr. An sdmd still running must stop cleanly. */
void StopSdmdAndLibvirtd(std::unique_ptr<DaemonHarness> *sdmd,
                         std::unique_ptr<LibvirtHarness> *libvirt);

/* An sdmd on local leases and a private libvirtd with our loader; DefinePools adds "sd",
 * a storage domain at domain_, and "stock", a stock dir pool at stock_. */
class LibvirtPoolsTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

    /* Defines, builds and starts both pools; `extra_attributes` go on sd's sdm:domain. */
    void DefinePools(const std::string &extra_attributes = "");
    /* The reply of a call to sdmd that must succeed, on a fresh connection; null after a
     * test failure naming the error. */
    GVariant *SdmdCall(const char *method, GVariant *args);
    /* sdmd's consistency check of the domain: no problems, no pending transaction. */
    void ExpectDomainConsistent();

    TempDir tmp_;
    std::string domain_, stock_;
    std::vector<std::string> sdmd_env_; /* set before SetUp: sdmd's extra environment */
    std::unique_ptr<DaemonHarness> sdmd_;
    std::unique_ptr<LibvirtHarness> libvirt_;
};

}  // namespace sdm::testing
