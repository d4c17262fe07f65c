/* See python_test_fixture.h. */
#include "tests/libvirt/python_test_fixture.h"

namespace sdm::testing {

void ClientPoolsTest::SetUp()
{
    LibvirtPoolsTest::SetUp();
    if (HasFatalFailure())
        return;
    DefinePools();
}

std::set<std::string> ClientPoolsTest::SdmdVolumeNames()
{
    std::set<std::string> names;
    g_autoptr(GVariant) reply = SdmdCall("ListVolumes", g_variant_new("(s)", domain_.c_str()));
    if (!reply)
        return names;
    g_autoptr(GVariant) volumes = g_variant_get_child_value(reply, 0);
    for (gsize i = 0; i < g_variant_n_children(volumes); ++i) {
        g_autoptr(GVariant) volume = g_variant_get_child_value(volumes, i);
        names.insert(Str(volume, "name"));
    }
    return names;
}

std::string ClientPoolsTest::SdmdVolumePath(const std::string &name)
{
    g_autoptr(GVariant) reply =
        SdmdCall("LookupVolume", g_variant_new("(ss)", domain_.c_str(), name.c_str()));
    if (!reply)
        return "";
    g_autoptr(GVariant) volume = g_variant_get_child_value(reply, 0);
    return Str(volume, "path");
}

}  // namespace sdm::testing
