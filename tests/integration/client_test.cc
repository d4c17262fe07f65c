/* libsdm-client, the C API of sdmd (include/sdm/client.h), as the libvirt storage backend
 * uses it: C calls from C++ against a real sdmd on local leases. Every call's happy path
 * and bad arguments (code and message), volume keys across restarts, sdmd missing, silent
 * or restarted, eight threads on one client, job errors carrying the engine's message,
 * progress while a clone copies, and the caller's wait limit. */
#include "sdm/client.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <functional>
#include <set>
#include <thread>

#include "sdm/domain.h"
#include "sdm/status.h"
#include "tests/support/daemon_harness.h"

namespace sdm::testing {
namespace {

/* The C enum is sdm::ErrorCode under other names; a new engine code must be added to
 * both (and to kCodeNames in backend/client/client.c, which the test below checks). */
#define SDM_SAME_CODE(c, e) \
    static_assert(static_cast<int>(c) == static_cast<int>(ErrorCode::e), #c " != " #e)
SDM_SAME_CODE(SDM_CLIENT_ERROR_OK, kOk);
SDM_SAME_CODE(SDM_CLIENT_ERROR_INVALID_ARGUMENT, kInvalidArgument);
SDM_SAME_CODE(SDM_CLIENT_ERROR_NOT_FOUND, kNotFound);
SDM_SAME_CODE(SDM_CLIENT_ERROR_ALREADY_EXISTS, kAlreadyExists);
SDM_SAME_CODE(SDM_CLIENT_ERROR_BUSY, kBusy);
SDM_SAME_CODE(SDM_CLIENT_ERROR_CORRUPT, kCorrupt);
SDM_SAME_CODE(SDM_CLIENT_ERROR_IO_ERROR, kIoError);
SDM_SAME_CODE(SDM_CLIENT_ERROR_NO_SPACE, kNoSpace);
SDM_SAME_CODE(SDM_CLIENT_ERROR_UNSUPPORTED, kUnsupported);
SDM_SAME_CODE(SDM_CLIENT_ERROR_TIMEOUT, kTimeout);
SDM_SAME_CODE(SDM_CLIENT_ERROR_CANCELLED, kCancelled);
SDM_SAME_CODE(SDM_CLIENT_ERROR_INTERNAL, kInternal);
#undef SDM_SAME_CODE

constexpr uint64_t kMiB = 1 << 20;
/* Generous: a hung job fails the test instead of hanging it. */
constexpr SdmWait kWait = {120000, nullptr, nullptr};

/* What a failed call left in its GError. */
struct Failure {
    int code = SDM_CLIENT_ERROR_OK;  /* OK: the call succeeded */
    std::string message;
};

::testing::AssertionResult Fails(const Failure &failure, SdmClientErrorCode code,
                                 const std::string &text)
{
    if (failure.code != code)
        return ::testing::AssertionFailure()
               << "code " << sdm_client_error_code_name(SdmClientErrorCode(failure.code))
               << ", expected " << sdm_client_error_code_name(code) << ": " << failure.message;
    if (failure.message.find(text) == std::string::npos)
        return ::testing::AssertionFailure()
               << "message \"" << failure.message << "\" lacks \"" << text << "\"";
    return ::testing::AssertionSuccess();
}

/* Runs `call` (which returns whether it succeeded) and captures its error. */
Failure Capture(const std::function<bool(GError **)> &call)
{
    GError *error = nullptr;
    bool ok = call(&error);
    Failure failure;
    if (ok) {
        EXPECT_EQ(error, nullptr) << "an error set on success";
    } else if (!error) {
        ADD_FAILURE() << "a failed call without an error";
        failure.code = SDM_CLIENT_ERROR_INTERNAL;
    } else {
        EXPECT_EQ(error->domain, SDM_CLIENT_ERROR) << error->message;
        failure.code = error->code;
        failure.message = error->message;
    }
    g_clear_error(&error);
    return failure;
}

/* Progress reports of one call. */
struct Progress {
    std::vector<std::pair<uint64_t, uint64_t>> reports;

    static void Record(guint64 done, guint64 total, gpointer self)
    {
        static_cast<Progress *>(self)->reports.emplace_back(done, total);
    }
};

class ClientTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        root_ = tmp_.Sub("domain");
        ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
        auto info = Domain::Format(root_, {});
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        uuid_ = info->uuid;
    }

    void TearDown() override
    {
        sdm_client_free(client_);
        if (daemon_.running()) {
            EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
        }
    }

    /* Starts sdmd with the test domain attached, and a client on it. */
    void StartDaemon(const std::vector<std::string> &env = {})
    {
        ASSERT_TRUE(daemon_.Start("domains=" + root_, env));
        g_autoptr(GError) error = nullptr;
        client_ = sdm_client_new(daemon_.socket().c_str(), 0, &error);
        ASSERT_NE(client_, nullptr) << error->message;
    }

    /* A volume that must be created (null after a test failure). */
    SdmVolumeInfo *Create(const std::string &name, uint64_t capacity,
                          const char *format = nullptr, const char *backing = nullptr)
    {
        g_autoptr(GError) error = nullptr;
        SdmVolumeInfo *volume = sdm_client_create_volume(client_, uuid_.c_str(), name.c_str(),
                                                         capacity, format, nullptr, backing,
                                                         nullptr, &kWait, &error);
        EXPECT_NE(volume, nullptr) << name << ": " << (error ? error->message : "");
        return volume;
    }

    /* The names of the domain's volumes, as listed. */
    std::set<std::string> Names()
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GPtrArray) volumes = sdm_client_list_volumes(client_, uuid_.c_str(), &error);
        EXPECT_NE(volumes, nullptr) << error->message;
        std::set<std::string> names;
        for (guint i = 0; volumes && i < volumes->len; i++)
            names.insert(static_cast<SdmVolumeInfo *>(g_ptr_array_index(volumes, i))->name);
        return names;
    }

    TempDir tmp_;
    std::string root_;
    std::string uuid_;
    DaemonHarness daemon_{tmp_.path()};
    SdmClient *client_ = nullptr;
};

TEST(ClientErrorCodes, SpellTheEngineNames)
{
    for (int code = SDM_CLIENT_ERROR_OK; code <= SDM_CLIENT_ERROR_INTERNAL; code++)
        EXPECT_STREQ(sdm_client_error_code_name(SdmClientErrorCode(code)),
                     ErrorCodeName(ErrorCode(code)));
    EXPECT_STREQ(sdm_client_error_code_name(SdmClientErrorCode(99)), "unknown");
}

TEST_F(ClientTest, EveryCallWorks)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    EXPECT_EQ(sdm_client_get_socket(client_), daemon_.socket());
    GError *error = nullptr;

    std::string other = tmp_.Sub("other");
    ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
    g_autoptr(SdmDomainInfo) formatted =
        sdm_client_format_domain(client_, other.c_str(), 5, 0, 2 * kMiB, &error);
    ASSERT_NE(formatted, nullptr) << error->message;
    EXPECT_TRUE(g_uuid_string_is_valid(formatted->uuid)) << formatted->uuid;
    EXPECT_EQ(formatted->path, other);
    EXPECT_EQ(formatted->io_timeout, 5u);
    EXPECT_EQ(formatted->sector_size, 512u) << "0 takes the default";
    EXPECT_EQ(formatted->alignment, 2 * kMiB);
    g_autoptr(SdmDomainInfo) attached = sdm_client_attach_domain(client_, other.c_str(), &error);
    ASSERT_NE(attached, nullptr) << error->message;
    EXPECT_STREQ(attached->uuid, formatted->uuid);
    EXPECT_TRUE(attached->joined) << "local leases need no join";
    EXPECT_EQ(attached->host_id, 1u);
    EXPECT_FALSE(std::string(attached->durability).empty());
    ASSERT_TRUE(sdm_client_detach_domain(client_, formatted->uuid, &error)) << error->message;
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          g_autoptr(SdmDomainInfo) gone =
                              sdm_client_get_domain(client_, formatted->uuid, e);
                          return gone != nullptr;
                      }),
                      SDM_CLIENT_ERROR_NOT_FOUND, "attach it first"));

    for (const std::string &name : {uuid_, root_}) {
        g_autoptr(SdmDomainInfo) domain = sdm_client_get_domain(client_, name.c_str(), &error);
        ASSERT_NE(domain, nullptr) << error->message;
        EXPECT_EQ(domain->uuid, uuid_);
        EXPECT_EQ(domain->path, root_);
        EXPECT_EQ(domain->alignment, kMiB);
        EXPECT_FALSE(std::string(domain->lockspace).empty());
        if (domain->has_space) {
            EXPECT_LE(domain->available, domain->capacity);
        }
    }
    EXPECT_EQ(Names(), std::set<std::string>{});

    g_autoptr(SdmVolumeInfo) plan =
        sdm_client_plan_volume(client_, uuid_.c_str(), "base", nullptr, &error);
    ASSERT_NE(plan, nullptr) << error->message;
    EXPECT_FALSE(Exists(plan->path)) << "planning touches no storage";
    g_autoptr(SdmVolumeInfo) base = sdm_client_create_volume(
        client_, uuid_.c_str(), "base", 16 * kMiB, "raw", "full", nullptr, plan, &kWait, &error);
    ASSERT_NE(base, nullptr) << error->message;
    EXPECT_STREQ(base->uuid, plan->uuid) << "the create makes the planned volume";
    EXPECT_STREQ(base->key, plan->key);
    EXPECT_STREQ(base->path, plan->path);
    EXPECT_EQ(base->key, uuid_ + "/" + base->uuid);
    EXPECT_STREQ(base->name, "base");
    EXPECT_STREQ(base->format, "raw");
    EXPECT_STREQ(base->prealloc, "full");
    EXPECT_STREQ(base->legality, "LEGAL");
    EXPECT_EQ(base->capacity, 16 * kMiB);
    EXPECT_GE(base->allocation, 16 * kMiB) << "full preallocation";
    EXPECT_EQ(base->parent, nullptr);
    EXPECT_EQ(base->backing_path, nullptr);
    EXPECT_TRUE(base->leaf);
    EXPECT_GT(base->ctime, 0);
    EXPECT_TRUE(Exists(base->path));

    g_autoptr(SdmVolumeInfo) layer = sdm_client_create_volume(
        client_, root_.c_str(), "layer", 0, "qcow2", nullptr, "base", nullptr, &kWait, &error);
    ASSERT_NE(layer, nullptr) << error->message;
    EXPECT_STREQ(layer->format, "qcow2");
    EXPECT_EQ(layer->capacity, 16 * kMiB) << "capacity 0 takes the backing volume's";
    EXPECT_STREQ(layer->image, base->image);
    ASSERT_NE(layer->parent, nullptr);
    EXPECT_STREQ(layer->parent, base->uuid);
    ASSERT_NE(layer->backing_path, nullptr);
    EXPECT_STREQ(layer->backing_path, base->path);
    EXPECT_EQ(layer->key, uuid_ + "/" + layer->uuid) << "a path names the domain too";

    g_autoptr(SdmVolumeInfo) meta = sdm_client_create_volume(
        client_, uuid_.c_str(), "meta", 8 * kMiB, "qcow2", "metadata", nullptr, nullptr,
        nullptr, &error);
    ASSERT_NE(meta, nullptr) << error->message;
    EXPECT_STREQ(meta->prealloc, "metadata");

    g_autoptr(SdmVolumeInfo) found =
        sdm_client_lookup_volume(client_, uuid_.c_str(), "layer", &error);
    ASSERT_NE(found, nullptr) << error->message;
    EXPECT_STREQ(found->key, layer->key);
    ASSERT_NE(found->backing_path, nullptr);
    EXPECT_STREQ(found->backing_path, base->path);
    g_autoptr(SdmVolumeInfo) base_again =
        sdm_client_lookup_volume(client_, uuid_.c_str(), "base", &error);
    ASSERT_NE(base_again, nullptr) << error->message;
    EXPECT_FALSE(base_again->leaf) << "a layer sits on it";

    g_autoptr(GPtrArray) listed = sdm_client_list_volumes(client_, uuid_.c_str(), &error);
    ASSERT_NE(listed, nullptr) << error->message;
    ASSERT_EQ(listed->len, 3u);
    for (guint i = 0; i < listed->len; i++) {
        auto *v = static_cast<SdmVolumeInfo *>(g_ptr_array_index(listed, i));
        EXPECT_EQ(v->key, uuid_ + "/" + v->uuid);
        /* The listing's rows (ListVolumeTable) say what the lookup's dictionary says. */
        g_autoptr(SdmVolumeInfo) one = sdm_client_lookup_volume(client_, uuid_.c_str(), v->name,
                                                                &error);
        ASSERT_NE(one, nullptr) << error->message;
        for (auto [row, dict] : {std::pair{v->uuid, one->uuid}, {v->image, one->image},
                                 {v->path, one->path}, {v->format, one->format},
                                 {v->prealloc, one->prealloc}, {v->legality, one->legality},
                                 {v->parent, one->parent}, {v->backing_path, one->backing_path}})
            EXPECT_STREQ(row, dict) << v->name;
        EXPECT_EQ(v->capacity, one->capacity) << v->name;
        EXPECT_EQ(v->allocation, one->allocation) << v->name;
        EXPECT_EQ(v->generation, one->generation) << v->name;
        EXPECT_EQ(v->slot, one->slot) << v->name;
        EXPECT_EQ(v->ctime, one->ctime) << v->name;
        EXPECT_EQ(v->leaf, one->leaf) << v->name;
        if (g_str_equal(v->name, "layer")) {
            EXPECT_STREQ(v->backing_path, base->path);
        } else {
            EXPECT_EQ(v->backing_path, nullptr) << v->name;
        }
    }

    WritePattern(base->path, 0, 4 * kMiB, 7);
    g_autoptr(SdmVolumeInfo) copy = sdm_client_clone_volume(
        client_, uuid_.c_str(), "layer", "copy", "raw", nullptr, &kWait, &error);
    ASSERT_NE(copy, nullptr) << error->message;
    EXPECT_STRNE(copy->image, base->image) << "a clone is a new image";
    EXPECT_EQ(copy->parent, nullptr) << "the chain is flattened";
    EXPECT_EQ(FileSha256(copy->path), FileSha256(base->path));

    g_autoptr(SdmVolumeInfo) resized = sdm_client_resize_volume(
        client_, uuid_.c_str(), "copy", 32 * kMiB, &kWait, &error);
    ASSERT_NE(resized, nullptr) << error->message;
    EXPECT_EQ(resized->capacity, 32 * kMiB);
    EXPECT_GT(resized->generation, copy->generation);
    EXPECT_STREQ(resized->key, copy->key);

    ASSERT_TRUE(sdm_client_delete_volume(client_, uuid_.c_str(), "copy", &kWait, &error))
        << error->message;
    EXPECT_FALSE(Exists(copy->path));
    EXPECT_EQ(Names(), (std::set<std::string>{"base", "layer", "meta"}));

    g_autoptr(SdmGcReport) dry = sdm_client_collect_garbage(client_, uuid_.c_str(), TRUE, 0,
                                                            &error);
    ASSERT_NE(dry, nullptr) << error->message;
    EXPECT_EQ(dry->seen, 0u);
    EXPECT_EQ(dry->errors, 0u);
    ASSERT_NE(dry->lines, nullptr);
    g_autoptr(SdmGcReport) swept = sdm_client_collect_garbage(client_, root_.c_str(), FALSE,
                                                              60000, &error);
    ASSERT_NE(swept, nullptr) << error->message;
    EXPECT_EQ(swept->collected, 0u);

    /* The one call local leases cannot serve. */
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          g_autofree char *xml = sdm_client_lease_xml(client_, uuid_.c_str(),
                                                                      "base", e);
                          return xml != nullptr;
                      }),
                      SDM_CLIENT_ERROR_UNSUPPORTED, "not attached with sanlock leases"));
}

/* A volume without a backing store is planned by the client itself from the layout sdmd
 * gave for its domain; an unusual name is planned by sdmd. Either way the create makes
 * the volume at the planned path and key. A domain made again under the same path through
 * another client makes one plan stale; the create's result shows it, and the next plan
 * is right. The creates wait for ever (libvirt's way): one CreateVolumeAndWait each. */
TEST_F(ClientTest, PlansMadeHereAreTheVolumesMade)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    auto plan_and_create = [&](const char *domain, const char *name) {
        g_autoptr(GError) error = nullptr;
        g_autoptr(SdmVolumeInfo) plan =
            sdm_client_plan_volume(client_, domain, name, nullptr, &error);
        EXPECT_NE(plan, nullptr) << name << ": " << (error ? error->message : "");
        if (!plan)
            return std::pair<std::string, std::string>{};
        EXPECT_FALSE(Exists(plan->path)) << name;
        g_autoptr(SdmVolumeInfo) made = sdm_client_create_volume(
            client_, domain, name, kMiB, "raw", nullptr, nullptr, plan, nullptr, &error);
        EXPECT_NE(made, nullptr) << name << ": " << (error ? error->message : "");
        if (!made)
            return std::pair<std::string, std::string>{};
        EXPECT_STREQ(made->path, plan->path) << name;
        EXPECT_STREQ(made->uuid, plan->uuid) << name;
        return std::pair<std::string, std::string>{plan->key, made->key};
    };
    for (const char *name : {"web", "d\xc3\xa9j\xc3\xa0 vu", "disk-1.img"}) {
        auto [planned, made] = plan_and_create(root_.c_str(), name);
        EXPECT_EQ(planned, made) << name;
        EXPECT_EQ(made.rfind(uuid_ + "/", 0), 0u) << made;
    }
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          g_autoptr(SdmVolumeInfo) v = sdm_client_create_volume(
                              client_, root_.c_str(), "web", kMiB, "raw", nullptr, nullptr,
                              nullptr, nullptr, e);
                          return v != nullptr;
                      }),
                      SDM_CLIENT_ERROR_ALREADY_EXISTS, "web"))
        << "a job that fails in the one call says why";

    /* Another client detaches the domain, removes it and makes a new one there. */
    g_autoptr(GError) error = nullptr;
    SdmClient *other = sdm_client_new(daemon_.socket().c_str(), 0, &error);
    ASSERT_NE(other, nullptr) << error->message;
    for (const char *name : {"web", "d\xc3\xa9j\xc3\xa0 vu", "disk-1.img"})
        EXPECT_TRUE(sdm_client_delete_volume(other, root_.c_str(), name, &kWait, &error))
            << error->message;
    EXPECT_TRUE(sdm_client_detach_domain(other, root_.c_str(), &error)) << error->message;
    EXPECT_TRUE(sdm_client_remove_domain(other, root_.c_str(), &error)) << error->message;
    g_autoptr(SdmDomainInfo) fresh = sdm_client_format_domain(other, root_.c_str(), 0, 0, 0,
                                                              &error);
    ASSERT_NE(fresh, nullptr) << error->message;
    g_autoptr(SdmDomainInfo) attached = sdm_client_attach_domain(other, root_.c_str(), &error);
    ASSERT_NE(attached, nullptr) << error->message;
    sdm_client_free(other);
    ASSERT_NE(std::string(fresh->uuid), uuid_);

    auto [stale, made] = plan_and_create(root_.c_str(), "again");
    EXPECT_EQ(made.rfind(std::string(fresh->uuid) + "/", 0), 0u) << made;
    EXPECT_NE(stale, made) << "this client could not know";
    auto [planned, made_next] = plan_and_create(root_.c_str(), "next");
    EXPECT_EQ(planned, made_next) << "the create's result made the client ask again";
}

/* The key is made of two uuids kept on storage: sdmd's restart (and the client's
 * reconnection) and the way the domain is named leave it unchanged. */
TEST_F(ClientTest, KeysSurviveRestartsAndTheClientReconnects)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(SdmVolumeInfo) made = Create("disk", kMiB);
    ASSERT_NE(made, nullptr);
    ASSERT_EQ(daemon_.Stop(), 0) << daemon_.Log();

    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          g_autoptr(SdmVolumeInfo) v =
                              sdm_client_lookup_volume(client_, uuid_.c_str(), "disk", e);
                          return v != nullptr;
                      }),
                      SDM_CLIENT_ERROR_IO_ERROR, daemon_.socket()))
        << "a stopped sdmd is named by its socket";
    /* GDBus announces the lost connection in the default main context, which libvirtd
     * runs: that must not end the process (a bus connection's exit-on-close would). */
    while (g_main_context_iteration(nullptr, FALSE)) {
    }

    ASSERT_TRUE(daemon_.Start("domains=" + root_));
    for (const std::string &domain : {uuid_, root_}) {
        g_autoptr(GError) error = nullptr;
        g_autoptr(SdmVolumeInfo) found =
            sdm_client_lookup_volume(client_, domain.c_str(), "disk", &error);
        ASSERT_NE(found, nullptr) << error->message;
        EXPECT_STREQ(found->key, made->key) << domain;
    }
}

TEST_F(ClientTest, BadArgumentsGetTheRightCodeAndMessage)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(SdmVolumeInfo) existing = Create("exists", 4 * kMiB);
    ASSERT_NE(existing, nullptr);
    const char *d = uuid_.c_str();
    SdmClient *c = client_;
    std::string nonempty = tmp_.Sub("nonempty");
    ASSERT_EQ(mkdir(nonempty.c_str(), 0755), 0);
    WriteFile(nonempty + "/precious", "data");
    std::string missing = tmp_.Sub("missing");
    const std::string long_name(300, 'x');
    const char *unknown_uuid = "00000000-0000-4000-8000-000000000000";
    auto volume = [](SdmVolumeInfo *v) {
        g_autoptr(SdmVolumeInfo) owned = v;
        return owned != nullptr;
    };
    auto domain = [](SdmDomainInfo *info) {
        g_autoptr(SdmDomainInfo) owned = info;
        return owned != nullptr;
    };

    struct Case {
        const char *what;
        std::function<bool(GError **)> call;
        SdmClientErrorCode code;
        std::string text;
    };
    const std::vector<Case> cases = {
        {"format: relative path",
         [&](GError **e) { return domain(sdm_client_format_domain(c, "rel/dir", 0, 0, 0, e)); },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "not an absolute path"},
        {"format: sector size",
         [&](GError **e) {
             return domain(sdm_client_format_domain(c, missing.c_str(), 0, 1000, 0, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "512 or 4096"},
        {"format: a directory with data",
         [&](GError **e) {
             return domain(sdm_client_format_domain(c, nonempty.c_str(), 0, 0, 0, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, nonempty},
        {"attach: relative path",
         [&](GError **e) { return domain(sdm_client_attach_domain(c, "rel/dir", e)); },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "not an absolute path"},
        {"attach: no such directory",
         [&](GError **e) { return domain(sdm_client_attach_domain(c, missing.c_str(), e)); },
         SDM_CLIENT_ERROR_NOT_FOUND, missing},
        {"detach: unknown domain",
         [&](GError **e) { return sdm_client_detach_domain(c, unknown_uuid, e) != FALSE; },
         SDM_CLIENT_ERROR_NOT_FOUND, "no attached domain"},
        {"get: empty name",
         [&](GError **e) { return domain(sdm_client_get_domain(c, "", e)); },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "no domain given"},
        {"list: unknown path",
         [&](GError **e) {
             g_autoptr(GPtrArray) list = sdm_client_list_volumes(c, missing.c_str(), e);
             return list != nullptr;
         },
         SDM_CLIENT_ERROR_NOT_FOUND, missing},
        {"list: unknown uuid",
         [&](GError **e) {
             g_autoptr(GPtrArray) list = sdm_client_list_volumes(c, unknown_uuid, e);
             return list != nullptr;
         },
         SDM_CLIENT_ERROR_NOT_FOUND, unknown_uuid},
        {"lookup: name with a slash",
         [&](GError **e) { return volume(sdm_client_lookup_volume(c, d, "a/b", e)); },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "a/b"},
        {"lookup: no such volume",
         [&](GError **e) { return volume(sdm_client_lookup_volume(c, d, "nothing", e)); },
         SDM_CLIENT_ERROR_NOT_FOUND, "nothing"},
        {"plan: name ..",
         [&](GError **e) { return volume(sdm_client_plan_volume(c, d, "..", nullptr, e)); },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, ".."},
        {"create: capacity 0",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, "v", 0, nullptr, nullptr, nullptr,
                                                    nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "capacity must be greater than 0"},
        {"create: unknown format",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, "v", kMiB, "vmdk", nullptr, nullptr,
                                                    nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "unknown format 'vmdk'"},
        {"create: unknown preallocation",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, "v", kMiB, nullptr, "lazy", nullptr,
                                                    nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "unknown preallocation 'lazy'"},
        {"create: 300-byte name",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, long_name.c_str(), kMiB, nullptr,
                                                    nullptr, nullptr, nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "255"},
        {"create: name taken",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, "exists", kMiB, nullptr, nullptr,
                                                    nullptr, nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_ALREADY_EXISTS, "exists"},
        {"create: no such backing volume",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, "v", 0, "qcow2", nullptr, "ghost",
                                                    nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_NOT_FOUND, "ghost"},
        {"create: unknown domain",
         [&](GError **e) {
             return volume(sdm_client_create_volume(c, missing.c_str(), "v", kMiB, nullptr,
                                                    nullptr, nullptr, nullptr, &kWait, e));
         },
         SDM_CLIENT_ERROR_NOT_FOUND, "attach it first"},
        {"clone: no such source",
         [&](GError **e) {
             return volume(sdm_client_clone_volume(c, d, "ghost", "v", nullptr, nullptr,
                                                   &kWait, e));
         },
         SDM_CLIENT_ERROR_NOT_FOUND, "ghost"},
        {"clone: onto an existing name",
         [&](GError **e) {
             return volume(sdm_client_clone_volume(c, d, "exists", "exists", nullptr, nullptr,
                                                   &kWait, e));
         },
         SDM_CLIENT_ERROR_ALREADY_EXISTS, "exists"},
        {"clone: unknown format",
         [&](GError **e) {
             return volume(sdm_client_clone_volume(c, d, "exists", "v", "vmdk", nullptr,
                                                   &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "unknown format 'vmdk'"},
        {"delete: no such volume",
         [&](GError **e) { return sdm_client_delete_volume(c, d, "ghost", &kWait, e) != FALSE; },
         SDM_CLIENT_ERROR_NOT_FOUND, "ghost"},
        {"resize: capacity 0",
         [&](GError **e) {
             return volume(sdm_client_resize_volume(c, d, "exists", 0, &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "capacity must be greater than 0"},
        {"resize: shrinking",
         [&](GError **e) {
             return volume(sdm_client_resize_volume(c, d, "exists", kMiB, &kWait, e));
         },
         SDM_CLIENT_ERROR_INVALID_ARGUMENT, "exists"},
        {"lease: no such domain",
         [&](GError **e) {
             g_autofree char *xml = sdm_client_lease_xml(c, unknown_uuid, "exists", e);
             return xml != nullptr;
         },
         SDM_CLIENT_ERROR_NOT_FOUND, unknown_uuid},
        {"gc: unknown domain",
         [&](GError **e) {
             g_autoptr(SdmGcReport) report =
                 sdm_client_collect_garbage(c, missing.c_str(), FALSE, 0, e);
             return report != nullptr;
         },
         SDM_CLIENT_ERROR_NOT_FOUND, missing},
    };
    for (const Case &bad : cases)
        EXPECT_TRUE(Fails(Capture(bad.call), bad.code, bad.text)) << bad.what;

    EXPECT_EQ(Names(), std::set<std::string>{"exists"}) << "no bad call made anything";
    EXPECT_TRUE(Exists(nonempty + "/precious"));
    g_autoptr(SdmVolumeInfo) after =
        sdm_client_lookup_volume(client_, d, "exists", nullptr);
    ASSERT_NE(after, nullptr);
    EXPECT_EQ(after->capacity, 4 * kMiB) << "the refused shrink left the size alone";
}

/* What cannot travel as a D-Bus string is refused before the call, with the same code. */
TEST_F(ClientTest, NullAndNonUtf8TextIsRefusedBeforeSdmd)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    const char *d = uuid_.c_str();
    SdmClient *c = client_;
    const char *latin1 = "caf\xe9";
    auto volume = [](SdmVolumeInfo *v) {
        g_autoptr(SdmVolumeInfo) owned = v;
        return owned != nullptr;
    };
    const std::vector<std::pair<std::string, std::function<bool(GError **)>>> nulls = {
        {"domain path", [&](GError **e) {
             g_autoptr(SdmDomainInfo) info = sdm_client_attach_domain(c, nullptr, e);
             return info != nullptr;
         }},
        {"domain", [&](GError **e) {
             return volume(sdm_client_lookup_volume(c, nullptr, "v", e));
         }},
        {"volume name", [&](GError **e) {
             return volume(sdm_client_create_volume(c, d, nullptr, kMiB, nullptr, nullptr,
                                                    nullptr, nullptr, &kWait, e));
         }},
        {"source volume name", [&](GError **e) {
             return volume(sdm_client_clone_volume(c, d, nullptr, "v", nullptr, nullptr,
                                                   &kWait, e));
         }},
        {"volume name", [&](GError **e) {
             return sdm_client_delete_volume(c, d, nullptr, &kWait, e) != FALSE;
         }},
    };
    for (const auto &[what, call] : nulls)
        EXPECT_TRUE(Fails(Capture(call), SDM_CLIENT_ERROR_INVALID_ARGUMENT, "no " + what))
            << what;
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          return volume(sdm_client_create_volume(c, d, latin1, kMiB, nullptr,
                                                                 nullptr, nullptr, nullptr,
                                                                 &kWait, e));
                      }),
                      SDM_CLIENT_ERROR_INVALID_ARGUMENT, "not valid UTF-8"));
    EXPECT_EQ(Names(), std::set<std::string>{});
}

/* The shim turns these into the libvirt error a virsh user reads: it must say which
 * socket and that sdmd is to be started. */
TEST_F(ClientTest, NoDaemonGivesAnErrorNamingTheSocket)
{
    std::string socket = tmp_.Sub("nowhere.sock");
    Failure missing = Capture([&](GError **e) {
        SdmClient *client = sdm_client_new(socket.c_str(), 0, e);
        sdm_client_free(client);
        return client != nullptr;
    });
    EXPECT_TRUE(Fails(missing, SDM_CLIENT_ERROR_IO_ERROR, "cannot connect to sdmd at " + socket));
    EXPECT_TRUE(Fails(missing, SDM_CLIENT_ERROR_IO_ERROR, "start it"));

    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    daemon_.Kill();
    ASSERT_TRUE(Exists(daemon_.socket())) << "a killed sdmd leaves its socket: refused";
    Failure refused = Capture([&](GError **e) {
        SdmClient *client = sdm_client_new(daemon_.socket().c_str(), 0, e);
        sdm_client_free(client);
        return client != nullptr;
    });
    EXPECT_TRUE(Fails(refused, SDM_CLIENT_ERROR_IO_ERROR,
                      "cannot connect to sdmd at " + daemon_.socket()));
    EXPECT_TRUE(Fails(refused, SDM_CLIENT_ERROR_IO_ERROR, "start it"));
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          g_autoptr(SdmDomainInfo) info =
                              sdm_client_get_domain(client_, uuid_.c_str(), e);
                          return info != nullptr;
                      }),
                      SDM_CLIENT_ERROR_IO_ERROR, daemon_.socket()))
        << "an existing client names the socket too";
}

/* A socket that accepts but never speaks (a stuck sdmd) costs the caller the connect
 * timeout, not forever. */
TEST_F(ClientTest, SilentSocketTimesOut)
{
    std::string path = tmp_.Sub("silent.sock");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    ASSERT_LT(path.size(), sizeof(address.sun_path));
    memcpy(address.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)), 0);
    ASSERT_EQ(listen(fd, 4), 0);
    Failure silent = Capture([&](GError **e) {
        SdmClient *client = sdm_client_new(path.c_str(), 300, e);
        sdm_client_free(client);
        return client != nullptr;
    });
    close(fd);
    EXPECT_TRUE(Fails(silent, SDM_CLIENT_ERROR_TIMEOUT, path));
    EXPECT_TRUE(Fails(silent, SDM_CLIENT_ERROR_TIMEOUT, "within 300 ms"));
}

/* libvirtd calls from its worker threads at once: one client, eight threads, each with its
 * own volumes, every call succeeding and nobody's result mixed with another's. */
TEST_F(ClientTest, EightThreadsShareOneClient)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    constexpr int kThreads = 8;
    constexpr int kVolumes = 3;
    std::vector<std::vector<std::string>> problems(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([this, t, &problems] {
            auto fail = [&](const std::string &what, GError *error) {
                problems[t].push_back(what + ": " + (error ? error->message : "no error"));
                g_clear_error(&error);
            };
            const char *d = uuid_.c_str();
            for (int v = 0; v < kVolumes; v++) {
                std::string name = "t" + std::to_string(t) + "-v" + std::to_string(v);
                GError *error = nullptr;
                g_autoptr(SdmVolumeInfo) made = sdm_client_create_volume(
                    client_, d, name.c_str(), (v + 1) * kMiB, v % 2 ? "qcow2" : "raw", nullptr,
                    nullptr, nullptr, &kWait, &error);
                if (!made) {
                    fail("create " + name, error);
                    continue;
                }
                g_autoptr(SdmVolumeInfo) found =
                    sdm_client_lookup_volume(client_, d, name.c_str(), &error);
                if (!found || !g_str_equal(found->key, made->key))
                    fail("lookup " + name, error);
                g_autoptr(GPtrArray) listed = sdm_client_list_volumes(client_, d, &error);
                if (!listed)
                    fail("list", error);
                g_autoptr(SdmVolumeInfo) resized = sdm_client_resize_volume(
                    client_, d, name.c_str(), 8 * kMiB, &kWait, &error);
                if (!resized || resized->capacity != 8 * kMiB)
                    fail("resize " + name, error);
            }
            std::string first = "t" + std::to_string(t) + "-v0";
            std::string copy = "t" + std::to_string(t) + "-copy";
            GError *error = nullptr;
            g_autoptr(SdmVolumeInfo) cloned = sdm_client_clone_volume(
                client_, d, first.c_str(), copy.c_str(), nullptr, nullptr, &kWait, &error);
            if (!cloned)
                fail("clone " + first, error);
            if (!sdm_client_delete_volume(client_, d, first.c_str(), &kWait, &error))
                fail("delete " + first, error);
        });
    }
    for (auto &thread : threads)
        thread.join();
    for (int t = 0; t < kThreads; t++)
        EXPECT_EQ(problems[t], std::vector<std::string>{}) << "thread " << t;

    std::set<std::string> expected;
    for (int t = 0; t < kThreads; t++) {
        for (int v = 1; v < kVolumes; v++)
            expected.insert("t" + std::to_string(t) + "-v" + std::to_string(v));
        expected.insert("t" + std::to_string(t) + "-copy");
    }
    EXPECT_EQ(Names(), expected);
}

/* A failed job's error is the engine's, word for word, as sdmd's job record holds it. */
TEST_F(ClientTest, JobErrorsCarryTheEngineMessage)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(SdmVolumeInfo) existing = Create("taken", kMiB);
    ASSERT_NE(existing, nullptr);
    Failure failure = Capture([&](GError **e) {
        g_autoptr(SdmVolumeInfo) v = sdm_client_clone_volume(client_, uuid_.c_str(), "taken",
                                                             "taken", nullptr, nullptr, &kWait,
                                                             e);
        return v != nullptr;
    });
    EXPECT_TRUE(Fails(failure, SDM_CLIENT_ERROR_ALREADY_EXISTS, "'taken' already exists"));
    EXPECT_TRUE(Fails(failure, SDM_CLIENT_ERROR_ALREADY_EXISTS, "step clone."))
        << "with the engine's context";

    /* The job's own record, read over raw D-Bus. */
    g_autoptr(GError) error = nullptr;
    g_autoptr(GDBusConnection) raw = daemon_.Connect(&error);
    ASSERT_NE(raw, nullptr) << error->message;
    g_autoptr(GVariant) jobs = Call(raw, "ListJobs", nullptr, &error);
    ASSERT_NE(jobs, nullptr) << error->message;
    g_autoptr(GVariant) list = g_variant_get_child_value(jobs, 0);
    std::vector<std::string> clones;
    for (size_t i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) job = g_variant_get_child_value(list, i);
        if (Str(job, "type") != "clone")
            continue;
        EXPECT_EQ(Str(job, "state"), "failed");
        EXPECT_EQ(Str(job, "error_code"), "already-exists");
        clones.push_back(Str(job, "error_message"));
    }
    g_dbus_connection_close_sync(raw, nullptr, nullptr);
    EXPECT_EQ(clones, std::vector<std::string>{failure.message});
}

TEST_F(ClientTest, ProgressCallbackFollowsACloneWithData)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(SdmVolumeInfo) source = Create("source", 64 * kMiB);
    ASSERT_NE(source, nullptr);
    WritePattern(source->path, 0, 48 * kMiB, 11);
    Progress progress;
    SdmWait wait = {120000, Progress::Record, &progress};
    g_autoptr(GError) error = nullptr;
    g_autoptr(SdmVolumeInfo) copy = sdm_client_clone_volume(
        client_, uuid_.c_str(), "source", "copy", "qcow2", nullptr, &wait, &error);
    ASSERT_NE(copy, nullptr) << error->message;
    ASSERT_FALSE(progress.reports.empty()) << "the callback fired";
    EXPECT_EQ(progress.reports.back(), std::make_pair(64 * kMiB, 64 * kMiB))
        << "and last with the copy complete";
    for (size_t i = 1; i < progress.reports.size(); i++) {
        EXPECT_LE(progress.reports[i - 1].first, progress.reports[i].first)
            << "progress never goes back";
        EXPECT_LE(progress.reports[i].first, progress.reports[i].second);
    }

    /* A copy that ends before the first look at it still reports its completion. */
    g_autoptr(SdmVolumeInfo) small = Create("small", kMiB);
    ASSERT_NE(small, nullptr);
    WritePattern(small->path, 0, kMiB, 12);
    Progress quick;
    SdmWait quick_wait = {120000, Progress::Record, &quick};
    g_autoptr(SdmVolumeInfo) small_copy = sdm_client_clone_volume(
        client_, uuid_.c_str(), "small", "small-copy", nullptr, nullptr, &quick_wait, &error);
    ASSERT_NE(small_copy, nullptr) << error->message;
    ASSERT_FALSE(quick.reports.empty());
    EXPECT_EQ(quick.reports.back(), std::make_pair(kMiB, kMiB));

    /* A job without a copy reports no progress: nothing to call back with. */
    Progress none;
    SdmWait quiet = {120000, Progress::Record, &none};
    ASSERT_TRUE(sdm_client_delete_volume(client_, uuid_.c_str(), "copy", &quiet, &error))
        << error->message;
    EXPECT_TRUE(none.reports.empty());
}

/* The caller's limit ends the wait and the job: sdmd is asked to cancel it, and the
 * cancelled clone leaves nothing behind. */
TEST_F(ClientTest, WaitLimitCancelsTheJob)
{
    std::string wrapper = tmp_.Sub("stuck-qemu-img");
    WriteFile(wrapper, "#!/bin/sh\n"
                       "if [ \"$1\" = convert ]; then exec sleep 300; fi\n"
                       "exec qemu-img \"$@\"\n");
    ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(StartDaemon({"SDM_QEMU_IMG=" + wrapper}));
    g_autoptr(SdmVolumeInfo) source = Create("source", 8 * kMiB);
    ASSERT_NE(source, nullptr);
    SdmWait limit = {500, nullptr, nullptr};
    Failure failure = Capture([&](GError **e) {
        g_autoptr(SdmVolumeInfo) v = sdm_client_clone_volume(
            client_, uuid_.c_str(), "source", "stuck", "qcow2", nullptr, &limit, e);
        return v != nullptr;
    });
    EXPECT_TRUE(Fails(failure, SDM_CLIENT_ERROR_TIMEOUT, "did not end within 500 ms"));

    /* The job ends aborted (the raw API waits for it), and no volume came of it. */
    g_autoptr(GError) error = nullptr;
    g_autoptr(GDBusConnection) raw = daemon_.Connect(&error);
    ASSERT_NE(raw, nullptr) << error->message;
    g_autoptr(GVariant) jobs = Call(raw, "ListJobs", nullptr, &error);
    ASSERT_NE(jobs, nullptr) << error->message;
    g_autoptr(GVariant) list = g_variant_get_child_value(jobs, 0);
    std::string clone_id;
    for (size_t i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) job = g_variant_get_child_value(list, i);
        if (Str(job, "type") == "clone")
            clone_id = Str(job, "id");
    }
    ASSERT_FALSE(clone_id.empty());
    g_autoptr(GVariant) waited =
        Call(raw, "WaitJob", g_variant_new("(su)", clone_id.c_str(), 60000u), &error);
    ASSERT_NE(waited, nullptr) << error->message;
    g_autoptr(GVariant) job = g_variant_get_child_value(waited, 0);
    EXPECT_EQ(Str(job, "state"), "aborted");
    EXPECT_EQ(Str(job, "error_code"), "cancelled");
    g_dbus_connection_close_sync(raw, nullptr, nullptr);
    EXPECT_EQ(Names(), std::set<std::string>{"source"});
}

/* Volume data through the client, as the libvirt shim drives it: pipes, a writer thread,
 * the confirmation byte, and the job's outcome; then wipe, import and domain removal. */
TEST_F(ClientTest, VolumeDataUploadDownloadWipeImportRemove)
{
    signal(SIGPIPE, SIG_IGN);
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(SdmVolumeInfo) v = Create("v", 2 * kMiB);
    ASSERT_NE(v, nullptr);
    std::string source = tmp_.Sub("source");
    WriteFile(source, "");
    ASSERT_EQ(truncate(source.c_str(), static_cast<off_t>(2 * kMiB)), 0);
    WritePattern(source, 0, kMiB, 21);
    const std::string content = ReadFile(source);

    auto upload = [&](const std::string &data, bool confirm) {
        int pipe_data[2], pipe_control[2];
        EXPECT_EQ(pipe2(pipe_data, O_CLOEXEC), 0);
        EXPECT_EQ(pipe2(pipe_control, O_CLOEXEC), 0);
        g_autoptr(GError) error = nullptr;
        g_autofree char *job = sdm_client_upload_volume_start(
            client_, uuid_.c_str(), "v", 0, 0, pipe_data[0], pipe_control[0], &error);
        close(pipe_data[0]);
        close(pipe_control[0]);
        EXPECT_NE(job, nullptr) << (error ? error->message : "");
        std::thread writer([&] {
            EXPECT_EQ(write(pipe_data[1], data.data(), data.size()),
                      static_cast<ssize_t>(data.size()));
            close(pipe_data[1]);
            if (confirm) {
                EXPECT_EQ(write(pipe_control[1], "", 1), 1);
            }
            close(pipe_control[1]);
        });
        Failure failure = Capture([&](GError **e) {
            return job && sdm_client_wait_job(client_, job, &kWait, e);
        });
        writer.join();
        return failure;
    };
    EXPECT_EQ(upload(content, true).code, SDM_CLIENT_ERROR_OK);
    EXPECT_EQ(FileSha256(v->path), FileSha256(source));
    EXPECT_TRUE(Fails(upload(content.substr(0, 4096), false), SDM_CLIENT_ERROR_CANCELLED,
                      "without its producer's confirmation"));
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(SdmVolumeInfo) now = sdm_client_lookup_volume(client_, uuid_.c_str(), "v",
                                                                &error);
        ASSERT_NE(now, nullptr);
        EXPECT_STREQ(now->legality, "ILLEGAL");
    }
    EXPECT_EQ(upload(content, true).code, SDM_CLIENT_ERROR_OK) << "a whole upload mends it";

    int pipe_down[2];
    ASSERT_EQ(pipe2(pipe_down, O_CLOEXEC), 0);
    g_autoptr(GError) error = nullptr;
    g_autofree char *job = sdm_client_download_volume_start(client_, uuid_.c_str(), "v", 0, 0,
                                                            pipe_down[1], &error);
    close(pipe_down[1]);
    ASSERT_NE(job, nullptr) << error->message;
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = read(pipe_down[0], buf, sizeof(buf))) > 0)
        got.append(buf, static_cast<size_t>(n));
    close(pipe_down[0]);
    EXPECT_TRUE(sdm_client_wait_job(client_, job, &kWait, &error)) << error->message;
    EXPECT_EQ(got, content);

    /* A download whose reader goes away: the job fails instead of ending quietly. */
    ASSERT_EQ(pipe2(pipe_down, O_CLOEXEC), 0);
    g_autofree char *cut = sdm_client_download_volume_start(client_, uuid_.c_str(), "v", 0, 0,
                                                            pipe_down[1], &error);
    close(pipe_down[1]);
    close(pipe_down[0]);
    ASSERT_NE(cut, nullptr);
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          return sdm_client_wait_job(client_, cut, &kWait, e);
                      }),
                      SDM_CLIENT_ERROR_IO_ERROR, "went away"));

    g_autoptr(SdmVolumeInfo) wiped = sdm_client_wipe_volume(client_, uuid_.c_str(), "v", &kWait,
                                                            &error);
    ASSERT_NE(wiped, nullptr) << error->message;
    EXPECT_EQ(ReadFile(v->path), std::string(2 * kMiB, '\0'));

    int fd = open(source.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    g_autoptr(SdmVolumeInfo) imported = sdm_client_import_volume(
        client_, uuid_.c_str(), "imported", fd, "raw", nullptr, 4 * kMiB, nullptr, &kWait,
        &error);
    close(fd);
    ASSERT_NE(imported, nullptr) << error->message;
    EXPECT_EQ(imported->capacity, 4 * kMiB);
    EXPECT_STREQ(imported->format, "raw");
    EXPECT_EQ(Names(), (std::set<std::string>{"v", "imported"}));
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          return sdm_client_import_volume(client_, uuid_.c_str(), "bad", -1,
                                                          "raw", nullptr, 0, nullptr, &kWait,
                                                          e) != nullptr;
                      }),
                      SDM_CLIENT_ERROR_INVALID_ARGUMENT, "no file descriptor"));

    /* Removal: refused while attached; a detached domain with volumes is refused too. */
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          return sdm_client_remove_domain(client_, root_.c_str(), e);
                      }),
                      SDM_CLIENT_ERROR_BUSY, "detach it first"));
    ASSERT_TRUE(sdm_client_detach_domain(client_, uuid_.c_str(), &error)) << error->message;
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          return sdm_client_remove_domain(client_, root_.c_str(), e);
                      }),
                      SDM_CLIENT_ERROR_BUSY, "delete them first"));
    EXPECT_TRUE(Exists(root_ + "/domain.meta"));
    EXPECT_TRUE(Fails(Capture([&](GError **e) {
                          return sdm_client_remove_domain(client_, nullptr, e);
                      }),
                      SDM_CLIENT_ERROR_INVALID_ARGUMENT, "NULL"));
    std::string empty = tmp_.Sub("empty");
    ASSERT_EQ(mkdir(empty.c_str(), 0755), 0);
    ASSERT_TRUE(Domain::Format(empty, {}).ok());
    EXPECT_TRUE(sdm_client_remove_domain(client_, empty.c_str(), &error)) << error->message;
    EXPECT_FALSE(Exists(empty + "/domain.meta"));
}

}  // namespace
}  // namespace sdm::testing
