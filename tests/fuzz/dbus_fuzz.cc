/* libFuzzer target for sdmd's decoding of D-Bus method arguments (backend/daemon/dbus_api.h,
 * the functions sdmd's Service calls before it touches any state), and for the readers of
 * the a{sv} dictionaries that sdm gets back (built with -Dfuzz=true and clang; see
 * tests/fuzz/meson.build).
 *
 * An input is a method name, a newline, then the method's arguments serialized as a
 * GVariant of its input type from xml/org.libvirt.Sdm1.xml. The bytes come in untrusted and
 * are brought to normal form, as GDBus hands a handler only valid values of the declared
 * type. Beyond "never crash", it aborts when:
 *   - a refusal is not what D-Bus can carry to the caller: an error code other than
 *     InvalidArgument (Unsupported for a wipe algorithm), or an empty message or one that is
 *     not UTF-8 (a D-Bus error message must be);
 *   - an accepted call yields parameters that break what the engine is promised: names
 *     that pass the volume-name rules, planned identities that are UUIDs, a capacity or a
 *     backing volume for a new volume.
 * tests/fuzz/make_dbus_corpus.py writes the seed corpus. Single-threaded, as libFuzzer
 * runs it. */
#include <gio/gio.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backend/daemon/dbus_api.h"
#include "backend/engine/layout.h"

namespace {

using sdm::ErrorCode;
using sdm::Status;

[[noreturn]] void Fail(const char *method, const char *property)
{
    fprintf(stderr, "dbus_fuzz: %s: %s\n", method, property);
    abort();
}

void CheckRefusal(const char *method, const Status &status, ErrorCode allowed)
{
    if (status.ok())
        return;
    if (status.code() != ErrorCode::kInvalidArgument && status.code() != allowed)
        Fail(method, "a refusal is InvalidArgument");
    std::string text = status.ToString();
    if (status.message().empty() || !g_utf8_validate(text.data(), text.size(), nullptr))
        Fail(method, "a refusal has a UTF-8 message");
}

void CheckName(const char *method, const std::string &name)
{
    if (!sdm::layout::ValidateVolumeName(name).ok())
        Fail(method, "an accepted volume name is valid");
}

void CheckPlanned(const char *method, const std::string &uuid, const std::string &image)
{
    for (const std::string *id : {&uuid, &image}) {
        if (!id->empty() && !sdm::layout::IsUuid(*id))
            Fail(method, "an accepted planned identity is a UUID");
    }
}

/* The string argument at `index` of the argument tuple. */
std::string Arg(GVariant *args, size_t index)
{
    g_autoptr(GVariant) child = g_variant_get_child_value(args, index);
    return g_variant_get_string(child, nullptr);
}

uint64_t U64Arg(GVariant *args, size_t index)
{
    g_autoptr(GVariant) child = g_variant_get_child_value(args, index);
    return g_variant_get_uint64(child);
}

/* The last argument: the options, or the reply dictionary. */
struct Options {
    explicit Options(GVariant *args)
        : dict(g_variant_get_child_value(args, g_variant_n_children(args) - 1)) {}
    ~Options() { g_variant_unref(dict); }
    Options(const Options &) = delete;
    Options &operator=(const Options &) = delete;
    GVariant *dict;
};

void FormatDomain(const char *method, GVariant *args)
{
    auto params = sdm::dbus::DecodeFormatDomain(Arg(args, 0).c_str(), Options(args).dict);
    CheckRefusal(method, params.status(), ErrorCode::kInvalidArgument);
    if (params.ok() && Arg(args, 0)[0] != '/')
        Fail(method, "an accepted domain path is absolute");
}

void AbsolutePath(const char *method, GVariant *args)
{
    CheckRefusal(method, sdm::dbus::CheckAbsolutePath(Arg(args, 0).c_str(), "path"),
                 ErrorCode::kInvalidArgument);
}

void VolumeName(const char *method, GVariant *args)
{
    CheckRefusal(method, sdm::layout::ValidateVolumeName(Arg(args, 1)),
                 ErrorCode::kInvalidArgument);
}

void PlanVolume(const char *method, GVariant *args)
{
    auto params = sdm::dbus::DecodePlanVolume(Arg(args, 1).c_str(), Options(args).dict);
    CheckRefusal(method, params.status(), ErrorCode::kInvalidArgument);
    if (!params.ok())
        return;
    CheckName(method, params->name);
    if (!params->backing.empty())
        CheckName(method, params->backing);
}

void CreateVolume(const char *method, GVariant *args)
{
    auto params = sdm::dbus::DecodeCreateVolume(Arg(args, 1).c_str(), U64Arg(args, 2),
                                                Options(args).dict);
    CheckRefusal(method, params.status(), ErrorCode::kInvalidArgument);
    if (!params.ok())
        return;
    CheckName(method, params->name);
    if (!params->backing.empty())
        CheckName(method, params->backing);
    else if (params->capacity == 0)
        Fail(method, "a new volume has a capacity or a backing volume");
    CheckPlanned(method, params->uuid, params->image);
}

void CloneVolume(const char *method, GVariant *args)
{
    auto params = sdm::dbus::DecodeCloneVolume(Arg(args, 1).c_str(), Arg(args, 2).c_str(),
                                               Options(args).dict);
    CheckRefusal(method, params.status(), ErrorCode::kInvalidArgument);
    if (!params.ok())
        return;
    CheckName(method, params->source);
    CheckName(method, params->name);
    CheckPlanned(method, params->uuid, params->image);
}

void ResizeVolume(const char *method, GVariant *args)
{
    Status status = sdm::dbus::DecodeResizeVolume(Arg(args, 1).c_str(), U64Arg(args, 2));
    CheckRefusal(method, status, ErrorCode::kInvalidArgument);
    if (status.ok() && U64Arg(args, 2) == 0)
        Fail(method, "an accepted capacity is not 0");
}

void DataTransfer(const char *method, GVariant *args)
{
    CheckRefusal(method,
                 sdm::dbus::DecodeDataTransfer(Arg(args, 1).c_str(), Options(args).dict, method),
                 ErrorCode::kInvalidArgument);
}

void WipeVolume(const char *method, GVariant *args)
{
    CheckRefusal(method, sdm::dbus::DecodeWipeVolume(Arg(args, 1).c_str(), Options(args).dict),
                 ErrorCode::kUnsupported);
}

void ImportVolume(const char *method, GVariant *args)
{
    auto params = sdm::dbus::DecodeImportVolume(Arg(args, 1).c_str(), Options(args).dict);
    CheckRefusal(method, params.status(), ErrorCode::kInvalidArgument);
    if (!params.ok())
        return;
    CheckName(method, params->name);
    CheckPlanned(method, params->uuid, params->image);
}

/* Replies as sdm reads them: lenient, so only "never crash". */
void Reply(const char *method, GVariant *args)
{
    Options options(args);
    GVariant *dict = options.dict;
    std::string_view kind(method);
    if (kind == "reply:domain")
        sdm::dbus::DomainFromDict(dict);
    else if (kind == "reply:volume")
        sdm::dbus::VolumeFromDict(dict);
    else if (kind == "reply:job")
        sdm::dbus::JobFromDict(dict);
    else if (kind == "reply:gc")
        sdm::dbus::GcReportFromDict(dict);
    else
        sdm::dbus::CheckReportFromDict(dict);
}

struct Method {
    const char *name;
    const char *type; /* the input arguments, as in xml/org.libvirt.Sdm1.xml */
    void (*decode)(const char *method, GVariant *args);
};

const Method kMethods[] = {
    {"FormatDomain", "(sa{sv})", FormatDomain},
    {"AttachDomain", "(s)", AbsolutePath},
    {"RemoveDomain", "(s)", AbsolutePath},
    {"PlanVolume", "(ssa{sv})", PlanVolume},
    {"CreateVolume", "(ssta{sv})", CreateVolume},
    {"CreateVolumeAndWait", "(ssta{sv})", CreateVolume},
    {"CloneVolume", "(sssa{sv})", CloneVolume},
    {"DeleteVolume", "(ss)", VolumeName},
    {"ResizeVolume", "(sst)", ResizeVolume},
    {"LookupVolume", "(ss)", VolumeName},
    {"GetLeaseXml", "(ss)", VolumeName},
    {"UploadVolume", "(sstthha{sv})", DataTransfer},
    {"DownloadVolume", "(ssttha{sv})", DataTransfer},
    {"WipeVolume", "(ssa{sv})", WipeVolume},
    {"ImportVolume", "(ssha{sv})", ImportVolume},
    {"reply:domain", "(a{sv})", Reply},
    {"reply:volume", "(a{sv})", Reply},
    {"reply:job", "(a{sv})", Reply},
    {"reply:gc", "(a{sv})", Reply},
    {"reply:check", "(a{sv})", Reply},
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string_view input(reinterpret_cast<const char *>(data), size);
    size_t newline = input.find('\n');
    if (newline == std::string_view::npos)
        return 0;
    std::string_view name = input.substr(0, newline);
    std::string_view body = input.substr(newline + 1);
    for (const Method &method : kMethods) {
        if (name != method.name)
            continue;
        /* A copy: GVariant wants its serialized data aligned, which the input is not. */
        g_autoptr(GBytes) bytes = g_bytes_new(body.data(), body.size());
        g_autoptr(GVariant) raw =
            g_variant_ref_sink(g_variant_new_from_bytes(G_VARIANT_TYPE(method.type), bytes,
                                                         FALSE));
        g_autoptr(GVariant) args = g_variant_get_normal_form(raw);
        method.decode(method.name, args);
    }
    return 0;
}
