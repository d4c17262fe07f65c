/* The fixture of the suites that drive the backend as libvirt API consumers do
 * (python_test.cc: python-libvirt; virt_install_test.cc: virt-install): a real sdmd with local
 * leases, a private libvirtd with our loader, and two started pools side by side, "sd" (a
 * storage domain) and "stock" (a stock dir pool). Not thread-safe; one per test. */
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

#include "tests/support/daemon_harness.h"
#include "tests/support/libvirt_harness.h"

namespace sdm::testing {

class ClientPoolsTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

    /* The names of the volumes sdmd lists in the domain (its D-Bus ListVolumes). */
    std::set<std::string> SdmdVolumeNames();
    /* The path sdmd gives the volume `name` (its D-Bus LookupVolume); "" if unknown. */
    std::string SdmdVolumePath(const std::string &name);
    /* sdmd's consistency check of the domain: no problems, no pending transaction. */
    void ExpectDomainConsistent();

    TempDir tmp_;
    std::string domain_, stock_;
    std::unique_ptr<DaemonHarness> sdmd_;
    std::unique_ptr<LibvirtHarness> libvirt_;
};

}  // namespace sdm::testing
