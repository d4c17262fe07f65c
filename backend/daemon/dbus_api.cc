/* Implementation of the D-Bus API's values; see dbus_api.h. */
#include "backend/daemon/dbus_api.h"

#include <chrono>
#include <cstring>

#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"

namespace sdm::dbus {

namespace {

/* The D-Bus name of every error code but kOk. */
const GDBusErrorEntry kErrorEntries[] = {
    {static_cast<gint>(ErrorCode::kInvalidArgument), "org.libvirt.Sdm1.Error.InvalidArgument"},
    {static_cast<gint>(ErrorCode::kNotFound), "org.libvirt.Sdm1.Error.NotFound"},
    {static_cast<gint>(ErrorCode::kAlreadyExists), "org.libvirt.Sdm1.Error.AlreadyExists"},
    {static_cast<gint>(ErrorCode::kBusy), "org.libvirt.Sdm1.Error.Busy"},
    {static_cast<gint>(ErrorCode::kCorrupt), "org.libvirt.Sdm1.Error.Corrupt"},
    {static_cast<gint>(ErrorCode::kIoError), "org.libvirt.Sdm1.Error.IoError"},
    {static_cast<gint>(ErrorCode::kNoSpace), "org.libvirt.Sdm1.Error.NoSpace"},
    {static_cast<gint>(ErrorCode::kUnsupported), "org.libvirt.Sdm1.Error.Unsupported"},
    {static_cast<gint>(ErrorCode::kTimeout), "org.libvirt.Sdm1.Error.Timeout"},
    {static_cast<gint>(ErrorCode::kCancelled), "org.libvirt.Sdm1.Error.Cancelled"},
    {static_cast<gint>(ErrorCode::kInternal), "org.libvirt.Sdm1.Error.Internal"},
};

std::optional<ErrorCode> ParseErrorCodeName(const std::string &name)
{
    for (const GDBusErrorEntry &entry : kErrorEntries) {
        auto code = static_cast<ErrorCode>(entry.error_code);
        if (name == ErrorCodeName(code))
            return code;
    }
    return std::nullopt;
}

int64_t UnixSeconds(std::chrono::system_clock::time_point time)
{
    return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

std::chrono::system_clock::time_point FromUnixSeconds(int64_t seconds)
{
    return std::chrono::system_clock::time_point(std::chrono::seconds(seconds));
}

Status NoCapacity()
{
    return Status::Error(ErrorCode::kInvalidArgument,
                         _("capacity must be greater than 0 bytes (a new qcow2 layer may give "
                           "0 together with a backing volume to take its size)"));
}

/* A uuid or image from PlanVolume, checked before a job starts. */
Status CheckPlanned(const std::string &uuid, const std::string &image)
{
    for (const std::string *id : {&uuid, &image})
        if (!id->empty() && !layout::IsUuid(*id))
            return Status::Error(ErrorCode::kInvalidArgument,
                                 Printf(_("'%s' is not a planned volume identity (a lowercase "
                                          "UUID); call PlanVolume or leave uuid and image out"),
                                        id->c_str()));
    return Status::Ok();
}

Status UnknownFormat(const char *what, const std::string &text)
{
    return Status::Error(ErrorCode::kInvalidArgument,
                         Printf(_("unknown %s '%s'; use raw or qcow2"), what, text.c_str()));
}

}  // namespace

GQuark ErrorQuark()
{
    static gsize quark = 0;
    g_dbus_error_register_error_domain("sdm-dbus-error-quark", &quark, kErrorEntries,
                                       G_N_ELEMENTS(kErrorEntries));
    return static_cast<GQuark>(quark);
}

void ReturnError(GDBusMethodInvocation *invocation, const Status &status)
{
    ErrorCode code = status.ok() ? ErrorCode::kInternal : status.code();
    g_dbus_method_invocation_return_error_literal(invocation, ErrorQuark(),
                                                  static_cast<gint>(code),
                                                  status.ToString().c_str());
}

Status StatusFromError(const GError *error)
{
    g_autoptr(GError) copy = g_error_copy(error);
    g_dbus_error_strip_remote_error(copy);
    if (copy->domain == ErrorQuark())
        return Status::Error(static_cast<ErrorCode>(copy->code), copy->message);
    if (copy->domain == G_IO_ERROR || copy->domain == G_DBUS_ERROR) {
        g_autofree char *remote = g_dbus_error_get_remote_error(error);
        if (!remote)
            return Status::Error(ErrorCode::kIoError, copy->message);
        return Status::Error(ErrorCode::kInternal,
                             std::string(copy->message) + " (" + remote + ")");
    }
    return Status::Error(ErrorCode::kInternal, copy->message);
}

/* --- dictionaries --- */

DictBuilder::DictBuilder()
{
    g_variant_builder_init(&builder_, G_VARIANT_TYPE_VARDICT);
}

DictBuilder::~DictBuilder()
{
    if (!finished_)
        g_variant_builder_clear(&builder_);
}

DictBuilder &DictBuilder::Str(const char *key, const std::string &value)
{
    g_variant_builder_add(&builder_, "{sv}", key, g_variant_new_string(value.c_str()));
    return *this;
}

DictBuilder &DictBuilder::U32(const char *key, uint32_t value)
{
    g_variant_builder_add(&builder_, "{sv}", key, g_variant_new_uint32(value));
    return *this;
}

DictBuilder &DictBuilder::U64(const char *key, uint64_t value)
{
    g_variant_builder_add(&builder_, "{sv}", key, g_variant_new_uint64(value));
    return *this;
}

DictBuilder &DictBuilder::I64(const char *key, int64_t value)
{
    g_variant_builder_add(&builder_, "{sv}", key, g_variant_new_int64(value));
    return *this;
}

DictBuilder &DictBuilder::Bool(const char *key, bool value)
{
    g_variant_builder_add(&builder_, "{sv}", key, g_variant_new_boolean(value));
    return *this;
}

DictBuilder &DictBuilder::Strv(const char *key, const std::vector<std::string> &value)
{
    GVariantBuilder array;
    g_variant_builder_init(&array, G_VARIANT_TYPE_STRING_ARRAY);
    for (const auto &item : value)
        g_variant_builder_add(&array, "s", item.c_str());
    g_variant_builder_add(&builder_, "{sv}", key, g_variant_builder_end(&array));
    return *this;
}

DictBuilder &DictBuilder::Dict(const char *key, GVariant *value)
{
    g_variant_builder_add(&builder_, "{sv}", key, value);
    return *this;
}

GVariant *DictBuilder::Finish()
{
    finished_ = true;
    return g_variant_builder_end(&builder_);
}

GVariant *DictReader::Lookup(const char *key, const GVariantType *type) const
{
    if (!dict_ || !g_variant_is_of_type(dict_, G_VARIANT_TYPE_VARDICT))
        return nullptr;
    return g_variant_lookup_value(dict_, key, type);
}

std::string DictReader::Str(const char *key) const
{
    g_autoptr(GVariant) value = Lookup(key, G_VARIANT_TYPE_STRING);
    return value ? g_variant_get_string(value, nullptr) : "";
}

uint32_t DictReader::U32(const char *key) const
{
    g_autoptr(GVariant) value = Lookup(key, G_VARIANT_TYPE_UINT32);
    return value ? g_variant_get_uint32(value) : 0;
}

uint64_t DictReader::U64(const char *key) const
{
    g_autoptr(GVariant) value = Lookup(key, G_VARIANT_TYPE_UINT64);
    return value ? g_variant_get_uint64(value) : 0;
}

int64_t DictReader::I64(const char *key) const
{
    g_autoptr(GVariant) value = Lookup(key, G_VARIANT_TYPE_INT64);
    return value ? g_variant_get_int64(value) : 0;
}

bool DictReader::Bool(const char *key) const
{
    g_autoptr(GVariant) value = Lookup(key, G_VARIANT_TYPE_BOOLEAN);
    return value && g_variant_get_boolean(value);
}

std::vector<std::string> DictReader::Strv(const char *key) const
{
    std::vector<std::string> result;
    g_autoptr(GVariant) value = Lookup(key, G_VARIANT_TYPE_STRING_ARRAY);
    if (!value)
        return result;
    g_autofree const char **items = g_variant_get_strv(value, nullptr);
    for (const char **item = items; *item; item++)
        result.emplace_back(*item);
    return result;
}

GVariant *DictReader::Dict(const char *key) const
{
    return Lookup(key, G_VARIANT_TYPE_VARDICT);
}

Status CheckOptions(GVariant *options, const OptionSpec &spec, const char *method)
{
    auto accepted = [&spec] {
        std::string list;
        for (const auto &[key, type] : spec)
            list += (list.empty() ? "" : ", ") + key + " (" + type + ")";
        return list.empty() ? std::string(_("none")) : list;
    };
    GVariantIter iter;
    const char *key;
    GVariant *next;
    g_variant_iter_init(&iter, options);
    while (g_variant_iter_next(&iter, "{&sv}", &key, &next)) {
        g_autoptr(GVariant) value = next;
        const std::string *type = nullptr;
        for (const auto &[name, name_type] : spec) {
            if (name == key)
                type = &name_type;
        }
        if (!type)
            return Status::Error(ErrorCode::kInvalidArgument,
                                 std::string(_("unknown option '")) + key + _("' for ") +
                                     method + _("; the options it takes are: ") + accepted());
        if (*type != g_variant_get_type_string(value))
            return Status::Error(ErrorCode::kInvalidArgument,
                                 std::string(_("option '")) + key + _("' of ") + method +
                                     _(" must be of D-Bus type '") + *type + _("', not '") +
                                     g_variant_get_type_string(value) + "'");
    }
    return Status::Ok();
}

/* --- method arguments --- */

Status CheckAbsolutePath(const char *path, const char *what)
{
    if (path[0] == '/')
        return Status::Ok();
    return Status::Error(ErrorCode::kInvalidArgument,
                         Printf(_("%s '%s' is not an absolute path; sdmd does not share the "
                                  "caller's working directory, give the full path"),
                                what, path));
}

Result<FormatParams> DecodeFormatDomain(const char *path, GVariant *options)
{
    SDM_RETURN_IF_ERROR(CheckOptions(
        options, {{"io_timeout", "u"}, {"sector_size", "u"}, {"alignment", "t"}},
        "FormatDomain"));
    SDM_RETURN_IF_ERROR(CheckAbsolutePath(path, _("domain path")));
    /* The types are checked: a key that is there reads as its value. */
    FormatParams params;
    g_variant_lookup(options, "io_timeout", "u", &params.io_timeout);
    g_variant_lookup(options, "sector_size", "u", &params.sector_size);
    guint64 alignment = params.alignment;
    g_variant_lookup(options, "alignment", "t", &alignment);
    params.alignment = alignment;
    return params;
}

Result<CreateParams> DecodeCreateVolume(const char *name, uint64_t capacity, GVariant *options)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    SDM_RETURN_IF_ERROR(CheckOptions(options,
                                     {{"format", "s"}, {"prealloc", "s"}, {"backing", "s"},
                                      {"uuid", "s"}, {"image", "s"}},
                                     "CreateVolume"));
    DictReader reader(options);
    CreateParams params;
    params.name = name;
    params.capacity = capacity;
    params.backing = reader.Str("backing");
    params.uuid = reader.Str("uuid");
    params.image = reader.Str("image");
    if (std::string format = reader.Str("format"); !format.empty()) {
        auto parsed = ParseVolumeFormat(format);
        if (!parsed)
            return UnknownFormat("format", format);
        params.format = *parsed;
    }
    if (std::string prealloc = reader.Str("prealloc"); !prealloc.empty()) {
        auto parsed = ParsePreallocation(prealloc);
        if (!parsed)
            return Status::Error(ErrorCode::kInvalidArgument,
                                 Printf(_("unknown preallocation '%s'; use sparse, full or "
                                          "metadata"),
                                        prealloc.c_str()));
        params.prealloc = *parsed;
    }
    if (!params.backing.empty())
        SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(params.backing));
    SDM_RETURN_IF_ERROR(CheckPlanned(params.uuid, params.image));
    if (capacity == 0 && params.backing.empty())
        return NoCapacity();
    return params;
}

Result<CloneParams> DecodeCloneVolume(const char *source, const char *name, GVariant *options)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(source));
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    SDM_RETURN_IF_ERROR(CheckOptions(options, {{"format", "s"}, {"uuid", "s"}, {"image", "s"}},
                                     "CloneVolume"));
    DictReader reader(options);
    CloneParams params;
    params.source = source;
    params.name = name;
    params.uuid = reader.Str("uuid");
    params.image = reader.Str("image");
    SDM_RETURN_IF_ERROR(CheckPlanned(params.uuid, params.image));
    if (std::string format = reader.Str("format"); !format.empty()) {
        params.format = ParseVolumeFormat(format);
        if (!params.format)
            return UnknownFormat("format", format);
    }
    return params;
}

Status DecodeResizeVolume(const char *name, uint64_t capacity)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    return capacity == 0 ? NoCapacity() : Status::Ok();
}

Result<CreateParams> DecodePlanVolume(const char *name, GVariant *options)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    SDM_RETURN_IF_ERROR(CheckOptions(options, {{"backing", "s"}}, "PlanVolume"));
    CreateParams params;
    params.name = name;
    params.backing = DictReader(options).Str("backing");
    if (!params.backing.empty())
        SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(params.backing));
    return params;
}

Status DecodeDataTransfer(const char *name, GVariant *options, const char *method)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    return CheckOptions(options, {}, method);
}

Status DecodeWipeVolume(const char *name, GVariant *options)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    SDM_RETURN_IF_ERROR(CheckOptions(options, {{"algorithm", "s"}}, "WipeVolume"));
    std::string algorithm = DictReader(options).Str("algorithm");
    if (!algorithm.empty() && algorithm != "zero")
        return Status::Error(ErrorCode::kUnsupported,
                             Printf(_("wipe algorithm '%s' is not supported; a storage "
                                      "domain wipes with zeros only (algorithm zero)"),
                                    algorithm.c_str()));
    return Status::Ok();
}

Result<ImportParams> DecodeImportVolume(const char *name, GVariant *options)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(name));
    SDM_RETURN_IF_ERROR(CheckOptions(options,
                                     {{"source_format", "s"}, {"format", "s"}, {"capacity", "t"},
                                      {"uuid", "s"}, {"image", "s"}},
                                     "ImportVolume"));
    DictReader reader(options);
    ImportParams params;
    params.name = name;
    params.capacity = reader.U64("capacity");
    params.uuid = reader.Str("uuid");
    params.image = reader.Str("image");
    if (std::string text = reader.Str("source_format"); !text.empty()) {
        auto parsed = ParseVolumeFormat(text);
        if (!parsed)
            return UnknownFormat("source_format", text);
        params.source_format = *parsed;
    }
    if (std::string text = reader.Str("format"); !text.empty()) {
        params.format = ParseVolumeFormat(text);
        if (!params.format)
            return UnknownFormat("format", text);
    }
    SDM_RETURN_IF_ERROR(CheckPlanned(params.uuid, params.image));
    return params;
}

GVariant *DomainToDict(const DomainView &domain)
{
    const DomainInfo &info = domain.info;
    DictBuilder dict;
    if (domain.usage) {
        dict.U64("fs_capacity", domain.usage->fs_capacity)
            .U64("fs_allocation", domain.usage->fs_allocation)
            .U64("fs_available", domain.usage->fs_available)
            .Str("change_token", domain.usage->change_token);
    }
    return dict
        .Str("uuid", info.uuid)
        .Str("path", info.path)
        .Str("volume_path_template",
             info.path + "/" + layout::VolumePath("{image}", "{volume}"))
        .U32("version", info.version)
        .U32("io_timeout", info.io_timeout)
        .U32("sector_size", info.sector_size)
        .U64("alignment", info.alignment)
        .Str("lockspace", info.lockspace)
        .Str("durability", info.durability)
        .U32("host_id", domain.host_id)
        .Bool("joined", domain.joined)
        .Finish();
}

DomainView DomainFromDict(GVariant *dict)
{
    DictReader r(dict);
    DomainView domain;
    domain.info.uuid = r.Str("uuid");
    domain.info.path = r.Str("path");
    domain.info.version = r.U32("version");
    domain.info.io_timeout = r.U32("io_timeout");
    domain.info.sector_size = r.U32("sector_size");
    domain.info.alignment = r.U64("alignment");
    domain.info.lockspace = r.Str("lockspace");
    domain.info.durability = r.Str("durability");
    domain.host_id = r.U32("host_id");
    domain.joined = r.Bool("joined");
    return domain;
}

GVariant *VolumeToDict(const VolumeInfo &v, const std::string &domain)
{
    return DictBuilder()
        .Str("domain", domain)
        .Str("uuid", v.uuid)
        .Str("image", v.image)
        .Str("name", v.name)
        .Str("parent", v.parent)
        .Str("parent_path", v.parent_path)
        .Str("format", VolumeFormatName(v.format))
        .Str("prealloc", PreallocationName(v.prealloc))
        .Str("legality", LegalityName(v.legality))
        .U64("capacity", v.capacity)
        .U64("allocation", v.allocation)
        .U64("generation", v.generation)
        .U64("slot", v.slot)
        .I64("ctime", v.ctime)
        .Str("path", v.path)
        .Bool("leaf", v.leaf)
        .Finish();
}

GVariant *VolumeToRow(const VolumeInfo &v)
{
    return g_variant_new(SDM_VOLUME_ROW_TYPE, v.uuid.c_str(), v.image.c_str(), v.name.c_str(),
                         v.parent.c_str(), v.parent_path.c_str(), VolumeFormatName(v.format),
                         PreallocationName(v.prealloc), LegalityName(v.legality),
                         v.path.c_str(), static_cast<guint64>(v.capacity),
                         static_cast<guint64>(v.allocation), static_cast<guint64>(v.generation),
                         static_cast<guint64>(v.slot), static_cast<gint64>(v.ctime),
                         static_cast<gboolean>(v.leaf));
}

VolumeInfo VolumeFromDict(GVariant *dict)
{
    DictReader r(dict);
    VolumeInfo v;
    v.uuid = r.Str("uuid");
    v.image = r.Str("image");
    v.name = r.Str("name");
    v.parent = r.Str("parent");
    v.parent_path = r.Str("parent_path");
    v.format = ParseVolumeFormat(r.Str("format")).value_or(VolumeFormat::kRaw);
    v.prealloc = ParsePreallocation(r.Str("prealloc")).value_or(Preallocation::kSparse);
    v.legality = r.Str("legality") == LegalityName(Legality::kIllegal) ? Legality::kIllegal
                                                                       : Legality::kLegal;
    v.capacity = r.U64("capacity");
    v.allocation = r.U64("allocation");
    v.generation = r.U64("generation");
    v.slot = r.U64("slot");
    v.ctime = r.I64("ctime");
    v.path = r.Str("path");
    v.leaf = r.Bool("leaf");
    return v;
}

GVariant *GcReportToDict(const GcReport &report)
{
    return DictBuilder()
        .U32("seen", report.markers_seen)
        .U32("collected", report.collected)
        .U32("rolled_forward", report.rolled_forward)
        .U32("live", report.skipped_live)
        .U32("errors", report.errors)
        .Strv("lines", report.lines)
        .Finish();
}

GVariant *UpgradeReportToDict(const UpgradeReport &report)
{
    return DictBuilder()
        .U32("from_version", report.from_version)
        .U32("to_version", report.to_version)
        .U32("adopted", report.adopted)
        .U32("slot_links_removed", report.slot_links_removed)
        .Dict("gc", GcReportToDict(report.gc))
        .Finish();
}

UpgradeReport UpgradeReportFromDict(GVariant *dict)
{
    DictReader r(dict);
    UpgradeReport report;
    report.from_version = r.U32("from_version");
    report.to_version = r.U32("to_version");
    report.adopted = r.U32("adopted");
    report.slot_links_removed = r.U32("slot_links_removed");
    g_autoptr(GVariant) gc = g_variant_lookup_value(dict, "gc", G_VARIANT_TYPE_VARDICT);
    if (gc)
        report.gc = GcReportFromDict(gc);
    return report;
}

GcReport GcReportFromDict(GVariant *dict)
{
    DictReader r(dict);
    GcReport report;
    report.markers_seen = r.U32("seen");
    report.collected = r.U32("collected");
    report.rolled_forward = r.U32("rolled_forward");
    report.skipped_live = r.U32("live");
    report.errors = r.U32("errors");
    report.lines = r.Strv("lines");
    return report;
}

GVariant *CheckReportToDict(const CheckReport &report)
{
    return DictBuilder()
        .U32("images", report.images)
        .U32("volumes", report.volumes)
        .U32("pending", report.pending_transactions)
        .Strv("problems", report.problems)
        .Finish();
}

CheckReport CheckReportFromDict(GVariant *dict)
{
    DictReader r(dict);
    CheckReport report;
    report.images = r.U32("images");
    report.volumes = r.U32("volumes");
    report.pending_transactions = r.U32("pending");
    report.problems = r.Strv("problems");
    return report;
}

GVariant *JobToDict(const JobView &view)
{
    const JobSnapshot &job = view.job;
    const ErrorContext &context = job.error.context();
    std::string image = context.image;
    std::string volume = context.volume;
    if (view.volume) {
        image = view.volume->image;
        volume = view.volume->uuid;
    }
    const std::string &domain = view.domain.empty() ? context.domain : view.domain;
    DictBuilder dict;
    dict.Str("id", job.id)
        .Str("type", job.type)
        .Str("object", job.object)
        .Str("state", JobStateName(job.state))
        .Str("step", job.step)
        .U64("done", job.done)
        .U64("total", job.total)
        .Str("error_code", job.error.ok() ? "" : ErrorCodeName(job.error.code()))
        .Str("error_message", job.error.ok() ? "" : job.error.ToString())
        .Str("domain", domain)
        .Str("image", image)
        .Str("volume", volume)
        .I64("started", UnixSeconds(job.started))
        .I64("finished", job.finished ? UnixSeconds(*job.finished) : 0);
    if (view.volume)
        dict.Dict("result", VolumeToDict(*view.volume, domain));
    else if (view.gc_report)
        dict.Dict("result", GcReportToDict(*view.gc_report));
    return dict.Finish();
}

JobView JobFromDict(GVariant *dict)
{
    DictReader r(dict);
    JobView view;
    JobSnapshot &job = view.job;
    job.id = r.Str("id");
    job.type = r.Str("type");
    job.object = r.Str("object");
    job.state = ParseJobState(r.Str("state")).value_or(JobState::kPending);
    job.step = r.Str("step");
    job.done = r.U64("done");
    job.total = r.U64("total");
    if (auto code = ParseErrorCodeName(r.Str("error_code")))
        job.error = Status::Error(*code, r.Str("error_message"));
    job.started = FromUnixSeconds(r.I64("started"));
    if (int64_t finished = r.I64("finished"))
        job.finished = FromUnixSeconds(finished);
    view.domain = r.Str("domain");
    g_autoptr(GVariant) result = r.Dict("result");
    if (result && !DictReader(result).Str("uuid").empty())
        view.volume = VolumeFromDict(result);
    else if (result)
        view.gc_report = GcReportFromDict(result);
    return view;
}

std::optional<JobState> ParseJobState(const std::string &name)
{
    for (JobState state : {JobState::kPending, JobState::kRunning, JobState::kDone,
                           JobState::kFailed, JobState::kAborted}) {
        if (name == JobStateName(state))
            return state;
    }
    return std::nullopt;
}

bool IsFinished(JobState state)
{
    return state == JobState::kDone || state == JobState::kFailed ||
           state == JobState::kAborted;
}

}  // namespace sdm::dbus
