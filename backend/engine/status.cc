/* Status and the spelling of the public enums. */
#include "sdm/status.h"

#include <cstring>

#include "sdm/types.h"

namespace sdm {

const char *ErrorCodeName(ErrorCode code)
{
    switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid-argument";
    case ErrorCode::kNotFound: return "not-found";
    case ErrorCode::kAlreadyExists: return "already-exists";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kIoError: return "io-error";
    case ErrorCode::kNoSpace: return "no-space";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kInternal: return "internal";
    }
    return "unknown";
}

Status Status::FromErrno(int err, const std::string &what)
{
    ErrorCode code = ErrorCode::kIoError;
    switch (err) {
    case ENOENT: code = ErrorCode::kNotFound; break;
    case EEXIST: case ENOTEMPTY: code = ErrorCode::kAlreadyExists; break;
    case ENOSPC: case EDQUOT: code = ErrorCode::kNoSpace; break;
    case EINVAL: case ENAMETOOLONG: code = ErrorCode::kInvalidArgument; break;
    case EAGAIN: case EBUSY: code = ErrorCode::kBusy; break;
    case ELOOP: code = ErrorCode::kCorrupt; break;
    case ECANCELED: code = ErrorCode::kCancelled; break;
    default: break;
    }
    return Error(code, what + ": " + strerror(err));
}

static void FillIfEmpty(std::string &field, const std::string &value)
{
    if (field.empty())
        field = value;
}

Status &Status::WithDomain(const std::string &domain)
{
    if (!ok())
        FillIfEmpty(context_.domain, domain);
    return *this;
}

Status &Status::WithImage(const std::string &image)
{
    if (!ok())
        FillIfEmpty(context_.image, image);
    return *this;
}

Status &Status::WithVolume(const std::string &volume)
{
    if (!ok())
        FillIfEmpty(context_.volume, volume);
    return *this;
}

Status &Status::WithStep(const std::string &step)
{
    if (!ok())
        FillIfEmpty(context_.step, step);
    return *this;
}

std::string Status::ToString() const
{
    if (ok())
        return "ok";
    std::string text = message_;
    std::string ctx;
    auto add = [&ctx](const char *label, const std::string &value) {
        if (value.empty())
            return;
        ctx += ctx.empty() ? "" : ", ";
        ctx += label;
        ctx += " ";
        ctx += value;
    };
    add("domain", context_.domain);
    add("image", context_.image);
    add("volume", context_.volume);
    add("step", context_.step);
    if (!ctx.empty())
        text += " (" + ctx + ")";
    return text;
}

const char *VolumeFormatName(VolumeFormat format)
{
    return format == VolumeFormat::kQcow2 ? "qcow2" : "raw";
}

std::optional<VolumeFormat> ParseVolumeFormat(const std::string &text)
{
    if (text == "raw")
        return VolumeFormat::kRaw;
    if (text == "qcow2")
        return VolumeFormat::kQcow2;
    return std::nullopt;
}

const char *PreallocationName(Preallocation prealloc)
{
    switch (prealloc) {
    case Preallocation::kSparse: return "sparse";
    case Preallocation::kFull: return "full";
    case Preallocation::kMetadata: return "metadata";
    }
    return "sparse";
}

std::optional<Preallocation> ParsePreallocation(const std::string &text)
{
    if (text == "sparse")
        return Preallocation::kSparse;
    if (text == "full")
        return Preallocation::kFull;
    if (text == "metadata")
        return Preallocation::kMetadata;
    return std::nullopt;
}

const char *LegalityName(Legality legality)
{
    return legality == Legality::kLegal ? "LEGAL" : "ILLEGAL";
}

}  // namespace sdm
