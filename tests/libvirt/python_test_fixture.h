/* The fixture of the suites that drive the backend as libvirt API consumers do
 * (python_test.cc: python-libvirt; virt_install_test.cc: virt-install): LibvirtPoolsTest
 * (tests/support/libvirt_harness.h) with its two pools started side by side, "sd" (a
 * storage domain) and "stock" (a stock dir pool). Not thread-safe; one per test. */
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "tests/support/libvirt_harness.h"

namespace sdm::testing {

class ClientPoolsTest : public LibvirtPoolsTest {
protected:
    void SetUp() override;

    /* The names of the volumes sdmd lists in the domain (its D-Bus ListVolumes). */
    std::set<std::string> SdmdVolumeNames();
    /* The path sdmd gives the volume `name` (its D-Bus LookupVolume); "" if unknown. */
    std::string SdmdVolumePath(const std::string &name);
};

}  // namespace sdm::testing
