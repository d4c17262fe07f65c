/* See python_test_fixture.h. */
#include "tests/libvirt/python_test_fixture.h"

#include <sys/stat.h>

namespace sdm::testing {

void ClientPoolsTest::SetUp()
{
    domain_ = tmp_.Sub("domain");
    stock_ = tmp_.Sub("stock");
    ASSERT_EQ(mkdir(tmp_.Sub("sdmd").c_str(), 0700), 0);
    ASSERT_EQ(mkdir(tmp_.Sub("libvirt").c_str(), 0700), 0);
    sdmd_ = std::make_unique<DaemonHarness>(tmp_.Sub("sdmd"));
    ASSERT_TRUE(sdmd_->Start("lease_backend=local"));
    libvirt_ = std::make_unique<LibvirtHarness>(tmp_.Sub("libvirt"));
    ASSERT_TRUE(libvirt_->Start());
    WriteFile(tmp_.Sub("sd.xml"), DomainPoolXml("sd", domain_, sdmd_->socket()));
    WriteFile(tmp_.Sub("stock.xml"), StockPoolXml("stock", stock_));
    for (const char *pool : {"sd", "stock"}) {
        libvirt_->VirshOk({"pool-define", tmp_.Sub(std::string(pool) + ".xml")});
        libvirt_->VirshOk({"pool-build", pool});
        libvirt_->VirshOk({"pool-start", pool});
    }
}

void ClientPoolsTest::TearDown()
{
    if (::testing::Test::HasFailure() && libvirt_ && sdmd_) {
        std::cerr << "--- libvirtd log ---\n" << libvirt_->Log() << "--- sdmd log ---\n"
                  << sdmd_->Log();
    }
    libvirt_.reset();
    if (sdmd_ && sdmd_->running()) {
        EXPECT_EQ(sdmd_->Stop(), 0);
    }
}

/* Calls `method` on a fresh connection; null after a test failure naming the error. */
static GVariant *CallOk(const DaemonHarness &sdmd, const char *method, GVariant *args)
{
    GError *error = nullptr;
    GDBusConnection *connection = sdmd.Connect(&error);
    if (!connection) {
        ADD_FAILURE() << "cannot reach sdmd: " << error->message;
        g_error_free(error);
        g_variant_unref(g_variant_ref_sink(args));
        return nullptr;
    }
    GVariant *reply = Call(connection, method, args, &error);
    if (!reply) {
        ADD_FAILURE() << method << ": " << error->message;
        g_error_free(error);
    }
    g_object_unref(connection);
    return reply;
}

std::set<std::string> ClientPoolsTest::SdmdVolumeNames()
{
    std::set<std::string> names;
    GVariant *reply = CallOk(*sdmd_, "ListVolumes", g_variant_new("(s)", domain_.c_str()));
    if (!reply)
        return names;
    GVariant *volumes = g_variant_get_child_value(reply, 0);
    for (gsize i = 0; i < g_variant_n_children(volumes); ++i) {
        GVariant *volume = g_variant_get_child_value(volumes, i);
        names.insert(Str(volume, "name"));
        g_variant_unref(volume);
    }
    g_variant_unref(volumes);
    g_variant_unref(reply);
    return names;
}

std::string ClientPoolsTest::SdmdVolumePath(const std::string &name)
{
    GVariant *reply = CallOk(*sdmd_, "LookupVolume",
                             g_variant_new("(ss)", domain_.c_str(), name.c_str()));
    if (!reply)
        return "";
    GVariant *volume = g_variant_get_child_value(reply, 0);
    std::string path = Str(volume, "path");
    g_variant_unref(volume);
    g_variant_unref(reply);
    return path;
}

void ClientPoolsTest::ExpectDomainConsistent()
{
    GVariant *reply = CallOk(*sdmd_, "CheckDomain", g_variant_new("(s)", domain_.c_str()));
    ASSERT_NE(reply, nullptr);
    GVariant *report = g_variant_get_child_value(reply, 0);
    EXPECT_EQ(U32(report, "pending"), 0u);
    GVariant *problems = g_variant_lookup_value(report, "problems", G_VARIANT_TYPE("as"));
    EXPECT_NE(problems, nullptr) << "CheckDomain's report has no problems list";
    if (problems) {
        EXPECT_EQ(g_variant_n_children(problems), 0u);
        g_variant_unref(problems);
    }
    g_variant_unref(report);
    g_variant_unref(reply);
}

}  // namespace sdm::testing
