/* A private libvirtd for the libvirt-backend suites, driven with the real virsh.
 *
 * LibvirtHarness runs tests/libvirt/private-libvirtd.sh: libvirtd in its own mount
 * namespace with private state and sockets under a scratch directory, the storage and
 * secret drivers only, and our loader in place of the stock fs backend module (the
 * loader, shim and script come from $SDM_LIBVIRT_LOADER, $SDM_LIBVIRT_SHIM and
 * $SDM_PRIVATE_LIBVIRTD). Virsh runs `virsh -c <uri> ...` and captures its output and exit
 * code. Not thread-safe; one harness per simulated host. */
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

}  // namespace sdm::testing
