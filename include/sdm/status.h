/* Errors as values.
 *
 * Every engine call returns a Status (or a Result<T>): a code a program can test, a
 * message a person can act on, and the context (domain, image, volume, step) it arose in.
 * The context travels unchanged to the CLI, to D-Bus errors and to libvirt errors.
 * Status is a plain value type; it is safe to copy between threads. */
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace sdm {

enum class ErrorCode {
    kOk = 0,
    kInvalidArgument,  /* a bad name, size, format or option from the caller */
    kNotFound,         /* no such domain, image or volume */
    kAlreadyExists,    /* a name or object is taken */
    kBusy,             /* a lease or lock is held by someone else (a VM, another host) */
    kCorrupt,          /* storage holds a torn, truncated, foreign or hostile file */
    kIoError,          /* a system call failed */
    kNoSpace,          /* ENOSPC / EDQUOT */
    kUnsupported,      /* a newer format version, an operation the format cannot do */
    kTimeout,
    kCancelled,
    kInternal,         /* a bug: an invariant of the engine broke */
};

/* Stable, script-friendly spelling of a code ("invalid-argument", "busy", ...). */
const char *ErrorCodeName(ErrorCode code);

struct ErrorContext {
    std::string domain; /* domain UUID or path */
    std::string image;
    std::string volume;
    std::string step;   /* the named step of the operation, see crashpoint.h */
};

class Status {
public:
    Status() = default;
    static Status Ok() { return Status(); }
    static Status Error(ErrorCode code, std::string message, ErrorContext context = {})
    {
        return Status(code, std::move(message), std::move(context));
    }
    /* An error from errno: the message names the call and the object it failed on. */
    static Status FromErrno(int err, const std::string &what);

    bool ok() const { return code_ == ErrorCode::kOk; }
    ErrorCode code() const { return code_; }
    const std::string &message() const { return message_; }
    const ErrorContext &context() const { return context_; }

    /* Fills context fields that are still empty; an inner layer's detail wins. */
    Status &WithDomain(const std::string &domain);
    Status &WithImage(const std::string &image);
    Status &WithVolume(const std::string &volume);
    Status &WithStep(const std::string &step);

    /* "message (domain D, image I, volume V, step S)" for people. */
    std::string ToString() const;

private:
    Status(ErrorCode code, std::string message, ErrorContext context)
        : code_(code), message_(std::move(message)), context_(std::move(context)) {}

    ErrorCode code_ = ErrorCode::kOk;
    std::string message_;
    ErrorContext context_;
};

/* A value or the Status that explains why there is none. */
template <typename T>
class Result {
public:
    Result(T value) : value_(std::move(value)) {}
    Result(Status status) : status_(std::move(status)) {}

    bool ok() const { return value_.has_value(); }
    const Status &status() const { return status_; }
    T &value() { return *value_; }
    const T &value() const { return *value_; }
    T &operator*() { return *value_; }
    const T &operator*() const { return *value_; }
    T *operator->() { return &*value_; }
    const T *operator->() const { return &*value_; }

private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace sdm

/* Early return of a failed Status from an expression that yields a Status. */
#define SDM_RETURN_IF_ERROR(expr)              \
    do {                                       \
        ::sdm::Status sdm_status_ = (expr);    \
        if (!sdm_status_.ok())                 \
            return sdm_status_;                \
    } while (0)
