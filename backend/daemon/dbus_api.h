/* The sdmd D-Bus API as values: the error names, and the a{sv} dictionaries of
 * xml/org.libvirt.Sdm1.xml in both directions.
 *
 * sdmd writes dictionaries with the *ToDict functions and sdm reads them back with the
 * *FromDict ones, so one file knows every key and its type. Readers are lenient (a key
 * that is missing or of another type reads as empty/zero: a newer daemon may add keys);
 * CheckOptions is strict, for what callers send. Plain functions; thread-safe. */
#pragma once

#include <gio/gio.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdm/domain.h"
#include "sdm/job.h"
#include "sdm/status.h"

namespace sdm::dbus {

inline constexpr char kObjectPath[] = "/org/libvirt/Sdm1";
inline constexpr char kInterface[] = "org.libvirt.Sdm1.Manager";
inline constexpr char kErrorPrefix[] = "org.libvirt.Sdm1.Error.";

/* The GError domain whose codes are ErrorCode values; registering it with GDBus (done on
 * first use) maps each code to org.libvirt.Sdm1.Error.<Code> and back. */
GQuark ErrorQuark();
/* Replies to `invocation` with the named error for `status` (which is not ok). */
void ReturnError(GDBusMethodInvocation *invocation, const Status &status);
/* The Status a failed call's error stands for. Our names map back to their code and the
 * daemon's message; a connection or protocol error becomes kIoError / kInternal. */
Status StatusFromError(const GError *error);

/* An a{sv} dictionary under construction; Finish returns it as a floating reference. */
class DictBuilder {
public:
    DictBuilder();
    ~DictBuilder();
    DictBuilder(const DictBuilder &) = delete;
    DictBuilder &operator=(const DictBuilder &) = delete;

    DictBuilder &Str(const char *key, const std::string &value);
    DictBuilder &U32(const char *key, uint32_t value);
    DictBuilder &U64(const char *key, uint64_t value);
    DictBuilder &I64(const char *key, int64_t value);
    DictBuilder &Bool(const char *key, bool value);
    DictBuilder &Strv(const char *key, const std::vector<std::string> &value);
    /* Takes a floating `value` (or a reference of the caller's). */
    DictBuilder &Dict(const char *key, GVariant *value);
    GVariant *Finish();

private:
    GVariantBuilder builder_;
    bool finished_ = false;
};

/* Lenient lookups in an a{sv} dictionary. */
class DictReader {
public:
    explicit DictReader(GVariant *dict) : dict_(dict) {}

    std::string Str(const char *key) const;
    uint32_t U32(const char *key) const;
    uint64_t U64(const char *key) const;
    int64_t I64(const char *key) const;
    bool Bool(const char *key) const;
    std::vector<std::string> Strv(const char *key) const;
    /* A nested a{sv} (a new reference), or null. */
    GVariant *Dict(const char *key) const;

private:
    GVariant *Lookup(const char *key, const GVariantType *type) const;
    GVariant *dict_;
};

/* The keys a method's a{sv} argument may hold, with their GVariant type strings. Any
 * other key or type is kInvalidArgument with a message that lists what is accepted. */
using OptionSpec = std::vector<std::pair<std::string, std::string>>;
Status CheckOptions(GVariant *options, const OptionSpec &spec, const char *method);

/* --- method arguments ---
 * The checks of a method's arguments that need nothing but the arguments (neither the
 * attached domains nor the message's file descriptors), and the engine parameters they
 * make. sdmd runs them before anything else; tests/fuzz/dbus_fuzz.cc feeds them hostile
 * messages. A bad argument is kInvalidArgument (an unknown wipe algorithm kUnsupported)
 * with a message that names it and says what it must be. */
Status CheckAbsolutePath(const char *path, const char *what);
Result<FormatParams> DecodeFormatDomain(const char *path, GVariant *options);
Result<CreateParams> DecodeCreateVolume(const char *name, uint64_t capacity,
                                        GVariant *options);
Result<CloneParams> DecodeCloneVolume(const char *source, const char *name,
                                      GVariant *options);
Status DecodeResizeVolume(const char *name, uint64_t capacity);
Result<CreateParams> DecodePlanVolume(const char *name, GVariant *options);
/* UploadVolume and DownloadVolume (`method`), which take no options yet. */
Status DecodeDataTransfer(const char *name, GVariant *options, const char *method);
Status DecodeWipeVolume(const char *name, GVariant *options);
/* All but source_fd, which comes from the message's descriptors. */
Result<ImportParams> DecodeImportVolume(const char *name, GVariant *options);

/* A domain as the API shows it: the engine's info plus this host's view of it. */
struct DomainView {
    DomainInfo info;
    uint32_t host_id = 0;
    bool joined = false;
    std::optional<DomainUsage> usage; /* once the domain is open */
};
GVariant *DomainToDict(const DomainView &domain);
DomainView DomainFromDict(GVariant *dict);

/* `domain`: the uuid of the volume's domain (the dictionary's "domain"). */
GVariant *VolumeToDict(const VolumeInfo &volume, const std::string &domain);
/* A ListVolumeTable row (xml/org.libvirt.Sdm1.xml): VolumeToDict's values in its order. */
#define SDM_VOLUME_ROW_TYPE "(sssssssssttttxb)"
GVariant *VolumeToRow(const VolumeInfo &volume);
VolumeInfo VolumeFromDict(GVariant *dict);

GVariant *GcReportToDict(const GcReport &report);
GVariant *UpgradeReportToDict(const UpgradeReport &report);
UpgradeReport UpgradeReportFromDict(GVariant *dict);
GcReport GcReportFromDict(GVariant *dict);

GVariant *CheckReportToDict(const CheckReport &report);
CheckReport CheckReportFromDict(GVariant *dict);

/* A job as the API shows it: the engine's snapshot, the domain it works on and, once it
 * is done, its result (the volume it made, or a gc job's report). */
struct JobView {
    JobSnapshot job;
    std::string domain;
    std::optional<VolumeInfo> volume;
    std::optional<GcReport> gc_report;
};
GVariant *JobToDict(const JobView &job);
JobView JobFromDict(GVariant *dict);
std::optional<JobState> ParseJobState(const std::string &name);
bool IsFinished(JobState state);

}  // namespace sdm::dbus
