/* qemu-img as a child process; see qemu_img.h for the contract. Each call spawns its own
 * qemu-img from an argv (never a shell) with LC_ALL=C so that its messages can be matched,
 * reads stdout (progress, JSON) and stderr (the error) with poll(), and reaps it. Calls
 * share no state: thread-safe. qemu-img's output echoes names stored in images, so it is
 * parsed as untrusted text. */
#include "backend/engine/qemu_img.h"

#include <glib.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "backend/engine/i18n.h"

namespace sdm::qemu {
namespace {

/* How often a running conversion looks for a cancel request. */
constexpr int kPollIntervalMs = 100;
/* qemu-img's JSON is a few KiB and its messages shorter; anything longer is cut. */
constexpr size_t kMaxOutput = 1 << 20;
/* How long a cancelled qemu-img may take to exit on SIGTERM before it gets SIGKILL. */
constexpr int kTermGraceMs = 2000;
constexpr int kMaxJsonDepth = 32;
constexpr size_t kMaxMessageLines = 3;
/* Options every qcow2 gets: the widely readable v3 format, and refcounts that are always
 * consistent on disk, so a crash never leaves an image that needs repair. */
constexpr const char *kQcow2Options = "compat=1.1,lazy_refcounts=off";

std::string Binary()
{
    const char *env = std::getenv("SDM_QEMU_IMG");
    return env && *env ? env : "qemu-img";
}

constexpr std::string_view kJsonPrefix = "json:";

/* qemu-img reads "proto:..." in a file name as a protocol; "./" keeps a relative name a
 * file name. Only a ChainName is meant as a protocol. */
std::string FileArg(const std::string &path)
{
    bool absolute = !path.empty() && path[0] == '/';
    return absolute || path.starts_with(kJsonPrefix) ? path : "./" + path;
}

/* qemu-img's message made fit for one line of an error: its first lines (parallel writes
 * can fail many times over), with control characters, which an image could smuggle into a
 * name that qemu-img echoes, shown as '?'. */
std::string OneLine(const std::string &text)
{
    std::string line;
    size_t lines = 0;
    for (const char *p = text.c_str(); *p;) {
        const char *end = std::strchr(p, '\n');
        size_t length = end ? static_cast<size_t>(end - p) : std::strlen(p);
        if (length > 0 && ++lines <= kMaxMessageLines) {
            if (!line.empty())
                line += "; ";
            for (size_t i = 0; i < length; i++)
                line += static_cast<unsigned char>(p[i]) < 0x20 || p[i] == 0x7f ? '?' : p[i];
        }
        p += length + (end ? 1 : 0);
    }
    if (lines > kMaxMessageLines)
        line += Printf(_("; and %zu more lines"), lines - kMaxMessageLines);
    return line;
}

/* Turns qemu-img convert's "    (12.34/100%)\r" records into OnProgress calls in bytes. */
class ProgressReader {
public:
    ProgressReader(OpObserver *observer, uint64_t total) : observer_(observer), total_(total) {}

    void Feed(const char *data, size_t length)
    {
        pending_.append(data, length);
        size_t start = 0;
        for (size_t end; (end = pending_.find_first_of("\r\n", start)) != std::string::npos;
             start = end + 1)
            Record(std::string_view(pending_).substr(start, end - start));
        pending_.erase(0, start);
        /* Not progress output; never let it grow. */
        if (pending_.size() > 256)
            pending_.clear();
    }

    void Finish()
    {
        if (observer_ && !reached_total_)
            observer_->OnProgress(total_, total_);
    }

private:
    void Record(std::string_view record)
    {
        size_t open = record.rfind('(');
        if (!observer_ || open == std::string_view::npos)
            return;
        std::string number(record.substr(open + 1));
        char *end = nullptr;
        double percent = g_ascii_strtod(number.c_str(), &end);
        if (end == number.c_str() || std::strncmp(end, "/100%)", 6) != 0 ||
            !(percent >= 0.0 && percent <= 100.0))
            return;
        auto done = static_cast<uint64_t>(static_cast<long double>(total_) * percent / 100.0);
        if (done > reported_ && done <= total_) {
            reported_ = done;
            reached_total_ = done == total_;
            observer_->OnProgress(done, total_);
        }
    }

    OpObserver *const observer_;
    const uint64_t total_;
    uint64_t reported_ = 0;
    bool reached_total_ = false;
    std::string pending_;
};

struct Outcome {
    std::string out;
    std::string err;
};

/* Stops a cancelled child: SIGTERM, a grace period, then SIGKILL; always reaps it. */
void Stop(GPid pid)
{
    kill(pid, SIGTERM);
    int status;
    for (int waited = 0; waited < kTermGraceMs; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        g_usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

void CloseFd(int &fd)
{
    if (fd >= 0)
        close(fd);
    fd = -1;
}

/* Appends what is readable on *fd to *sink (up to kMaxOutput); closes *fd at its end. */
void Drain(int *fd, std::string *sink, ProgressReader *progress)
{
    char buffer[4096];
    ssize_t n = read(*fd, buffer, sizeof(buffer));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        CloseFd(*fd);
        return;
    }
    if (progress)
        progress->Feed(buffer, static_cast<size_t>(n));
    if (sink->size() < kMaxOutput)
        sink->append(buffer, std::min(static_cast<size_t>(n), kMaxOutput - sink->size()));
}

Status Failure(const std::string &what, const std::string &message, const char *hint)
{
    bool full = message.find("No space left") != std::string::npos ||
                message.find("Disk quota exceeded") != std::string::npos;
    if (full)
        return Status::Error(ErrorCode::kNoSpace,
                             Printf(_("%s failed: the target filesystem is full (%s); free "
                                      "space on it and retry"),
                                    what.c_str(), message.c_str()));
    return Status::Error(ErrorCode::kIoError,
                         Printf(_("%s failed: %s; %s"), what.c_str(), message.c_str(), hint));
}

/* Runs qemu-img with `args`. `what` names the operation in messages ("qemu-img create of
 * /x"); `hint` says what to do when it fails. With an observer, stdout is progress and a
 * cancel request stops the child. */
Result<Outcome> Run(const std::vector<std::string> &args, const std::string &what,
                    const char *hint, OpObserver *observer = nullptr, uint64_t total = 0)
{
    std::string binary = Binary();
    std::vector<std::string> argv_strings = {binary};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (std::string &arg : argv_strings)
        argv.push_back(arg.data());
    argv.push_back(nullptr);
    g_auto(GStrv) envp = g_environ_setenv(g_get_environ(), "LC_ALL", "C", TRUE);

    GPid pid = 0;
    int fds[2] = {-1, -1};
    g_autoptr(GError) error = nullptr;
    if (!g_spawn_async_with_pipes(nullptr, argv.data(), envp,
                                  static_cast<GSpawnFlags>(G_SPAWN_DO_NOT_REAP_CHILD |
                                                           G_SPAWN_SEARCH_PATH),
                                  nullptr, nullptr, &pid, nullptr, &fds[0], &fds[1], &error)) {
        if (g_error_matches(error, G_SPAWN_ERROR, G_SPAWN_ERROR_NOENT))
            return Status::Error(ErrorCode::kUnsupported,
                                 Printf(_("qemu-img not found (looked for '%s'); install the "
                                          "qemu-utils package, or set SDM_QEMU_IMG to its path"),
                                        binary.c_str()));
        return Status::Error(ErrorCode::kUnsupported,
                             Printf(_("cannot run qemu-img ('%s'): %s; check that it is "
                                      "installed and executable"),
                                    binary.c_str(), error->message));
    }

    Outcome outcome;
    ProgressReader progress(observer, total);
    bool cancelled = false;
    while (fds[0] >= 0 || fds[1] >= 0) {
        struct pollfd pfds[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
        int ready = poll(pfds, 2, observer ? kPollIntervalMs : -1);
        if (ready < 0 && errno != EINTR) {
            int err = errno;
            CloseFd(fds[0]);
            CloseFd(fds[1]);
            Stop(pid);
            return Status::FromErrno(err, Printf(_("cannot read the output of %s; retry"),
                                                 what.c_str()));
        }
        if (ready > 0 && pfds[0].revents)
            Drain(&fds[0], &outcome.out, observer ? &progress : nullptr);
        if (ready > 0 && pfds[1].revents)
            Drain(&fds[1], &outcome.err, nullptr);
        if (observer && observer->CancelRequested()) {
            cancelled = true;
            break;
        }
    }
    CloseFd(fds[0]);
    CloseFd(fds[1]);
    if (cancelled) {
        Stop(pid);
        return Status::Error(ErrorCode::kCancelled,
                             Printf(_("%s was cancelled on request; start the operation "
                                      "again to copy the volume"),
                                    what.c_str()));
    }

    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return Status::FromErrno(errno, Printf(_("cannot wait for %s; retry"),
                                                   what.c_str()));
    }
    if (WIFSIGNALED(status))
        return Status::Error(ErrorCode::kIoError,
                             Printf(_("%s was killed by signal %d; retry, and check the "
                                      "system log if it happens again"),
                                    what.c_str(), WTERMSIG(status)));
    if (WEXITSTATUS(status) != 0) {
        std::string message = OneLine(outcome.err);
        if (message.empty())
            message = Printf(_("exit status %d"), WEXITSTATUS(status));
        return Failure(what, message, hint);
    }
    progress.Finish();
    return outcome;
}

/* qemu-img replaces an existing file without a word; the caller promised a new one. */
Status RefuseExisting(const std::string &path)
{
    struct stat st;
    if (lstat(path.c_str(), &st) != 0)
        return Status::Ok(); /* absent, or qemu-img will say why it cannot be made */
    return Status::Error(ErrorCode::kAlreadyExists,
                         Printf(_("%s already exists and qemu-img would overwrite it; this is "
                                  "a bug in the caller, please report it"),
                                path.c_str()));
}

/* Just enough JSON for `qemu-img info`: the top-level object's string and unsigned integer
 * members. Nested values are checked and skipped; anything malformed is refused whole. */
class JsonReader {
public:
    struct Members {
        std::map<std::string, std::string> strings;
        std::map<std::string, uint64_t> integers;
    };

    explicit JsonReader(std::string_view text) : text_(text) {}

    std::optional<Members> ReadObject()
    {
        Members members;
        if (!Accept('{'))
            return std::nullopt;
        if (Accept('}'))
            return AtEnd() ? std::optional(members) : std::nullopt;
        do {
            std::string key;
            SkipSpace();
            if (!ReadString(&key) || !Accept(':'))
                return std::nullopt;
            SkipSpace();
            bool known = members.strings.count(key) || members.integers.count(key);
            if (known)
                return std::nullopt; /* a duplicate key is not qemu-img's output */
            char c = Peek();
            if (c == '"') {
                if (!ReadString(&members.strings[key]))
                    return std::nullopt;
            } else if (c >= '0' && c <= '9') {
                uint64_t value;
                if (!ReadUnsigned(&value))
                    return std::nullopt;
                members.integers[key] = value;
            } else if (!SkipValue(1)) {
                return std::nullopt;
            }
        } while (Accept(','));
        if (!Accept('}') || !AtEnd())
            return std::nullopt;
        return members;
    }

private:
    char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

    void SkipSpace()
    {
        while (pos_ < text_.size() &&
               (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' ||
                text_[pos_] == '\t'))
            pos_++;
    }

    bool Accept(char c)
    {
        SkipSpace();
        if (Peek() != c)
            return false;
        pos_++;
        return true;
    }

    bool AtEnd()
    {
        SkipSpace();
        return pos_ == text_.size();
    }

    bool ReadHex4(uint32_t *unit)
    {
        if (text_.size() - pos_ < 4)
            return false;
        *unit = 0;
        for (int i = 0; i < 4; i++) {
            int digit = g_ascii_xdigit_value(text_[pos_++]);
            if (digit < 0)
                return false;
            *unit = *unit * 16 + static_cast<uint32_t>(digit);
        }
        return true;
    }

    /* A string at pos_; `out` may be null to skip it. NUL and unpaired surrogates, which
     * no file name holds, are refused. */
    bool ReadString(std::string *out)
    {
        if (Peek() != '"')
            return false;
        pos_++;
        std::string value;
        while (pos_ < text_.size()) {
            char c = text_[pos_++];
            if (c == '"') {
                if (out)
                    *out = std::move(value);
                return true;
            }
            if (static_cast<unsigned char>(c) < 0x20)
                return false;
            if (c != '\\') {
                value += c;
                continue;
            }
            if (pos_ >= text_.size())
                return false;
            char e = text_[pos_++];
            switch (e) {
            case '"': case '\\': case '/': value += e; break;
            case 'b': value += '\b'; break;
            case 'f': value += '\f'; break;
            case 'n': value += '\n'; break;
            case 'r': value += '\r'; break;
            case 't': value += '\t'; break;
            case 'u': {
                uint32_t unit;
                if (!ReadHex4(&unit) || unit == 0 || (unit >= 0xdc00 && unit <= 0xdfff))
                    return false;
                if (unit >= 0xd800 && unit <= 0xdbff) {
                    uint32_t low;
                    if (text_.substr(pos_, 2) != "\\u")
                        return false;
                    pos_ += 2;
                    if (!ReadHex4(&low) || low < 0xdc00 || low > 0xdfff)
                        return false;
                    unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                }
                char utf8[6];
                value.append(utf8, g_unichar_to_utf8(unit, utf8));
                break;
            }
            default:
                return false;
            }
        }
        return false;
    }

    bool ReadUnsigned(uint64_t *value)
    {
        size_t start = pos_;
        *value = 0;
        while (Peek() >= '0' && Peek() <= '9') {
            uint64_t digit = static_cast<uint64_t>(text_[pos_++] - '0');
            if (*value > (UINT64_MAX - digit) / 10)
                return false;
            *value = *value * 10 + digit;
        }
        char next = Peek();
        return pos_ > start && next != '.' && next != 'e' && next != 'E';
    }

    bool SkipNumber()
    {
        size_t start = pos_;
        while (Peek() != '\0' && std::strchr("+-0123456789.eE", Peek()))
            pos_++;
        return pos_ > start;
    }

    bool SkipLiteral(std::string_view word)
    {
        if (text_.substr(pos_, word.size()) != word)
            return false;
        pos_ += word.size();
        return true;
    }

    bool SkipValue(int depth)
    {
        if (depth > kMaxJsonDepth)
            return false;
        SkipSpace();
        switch (Peek()) {
        case '"':
            return ReadString(nullptr);
        case '{':
            pos_++;
            if (Accept('}'))
                return true;
            do {
                SkipSpace();
                if (!ReadString(nullptr) || !Accept(':') || !SkipValue(depth + 1))
                    return false;
            } while (Accept(','));
            return Accept('}');
        case '[':
            pos_++;
            if (Accept(']'))
                return true;
            do {
                if (!SkipValue(depth + 1))
                    return false;
            } while (Accept(','));
            return Accept(']');
        case 't':
            return SkipLiteral("true");
        case 'f':
            return SkipLiteral("false");
        case 'n':
            return SkipLiteral("null");
        default:
            return SkipNumber();
        }
    }

    std::string_view text_;
    size_t pos_ = 0;
};

}  // namespace

Status Create(const std::string &path, VolumeFormat format, uint64_t size,
              Preallocation prealloc, const std::string &backing, VolumeFormat backing_format)
{
    std::string options;
    if (format == VolumeFormat::kQcow2)
        options = kQcow2Options;
    if (prealloc == Preallocation::kMetadata && format == VolumeFormat::kRaw)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("a raw volume has no metadata to preallocate; create it "
                               "sparse or fully preallocated"));
    const char *mode = prealloc == Preallocation::kMetadata ? "metadata"
                       : prealloc == Preallocation::kFull   ? "falloc"
                                                            : nullptr;
    if (mode)
        options += std::string(options.empty() ? "" : ",") + "preallocation=" + mode;
    SDM_RETURN_IF_ERROR(RefuseExisting(path));

    std::vector<std::string> args = {"create", "-q", "-f", VolumeFormatName(format)};
    if (!options.empty())
        args.insert(args.end(), {"-o", options});
    if (!backing.empty())
        args.insert(args.end(), {"-u", "-b", backing, "-F", VolumeFormatName(backing_format)});
    args.insert(args.end(), {FileArg(path), std::to_string(size)});
    auto run = Run(args, Printf(_("qemu-img create of %s"), path.c_str()),
                   _("check that the directory exists and is writable"));
    return run.ok() ? Status::Ok() : run.status();
}

Status Convert(const std::string &src, VolumeFormat src_format, const std::string &dst,
               VolumeFormat dst_format, uint64_t total, OpObserver *observer)
{
    SDM_RETURN_IF_ERROR(RefuseExisting(dst));
    std::vector<std::string> args = {"convert", "-p", "-f", VolumeFormatName(src_format),
                                     "-O", VolumeFormatName(dst_format)};
    /* Out-of-order writes made a 1 GiB flatten into raw ~20% faster here; into qcow2 they
     * would scatter the clusters, so that keeps the sequential order. */
    if (dst_format == VolumeFormat::kRaw)
        args.push_back("-W");
    else
        args.insert(args.end(), {"-o", kQcow2Options});
    args.insert(args.end(), {FileArg(src), FileArg(dst)});
    auto run = Run(args, Printf(_("qemu-img convert of %s to %s"), src.c_str(), dst.c_str()),
                   _("check that the source image and its backing chain are intact "
                     "(`qemu-img check`)"),
                   observer, total);
    return run.ok() ? Status::Ok() : run.status();
}

Status Resize(const std::string &path, VolumeFormat format, uint64_t size, bool shrink)
{
    std::vector<std::string> args = {"resize", "-q", "-f", VolumeFormatName(format)};
    if (shrink)
        args.push_back("--shrink");
    args.insert(args.end(), {FileArg(path), std::to_string(size)});
    auto run = Run(args, Printf(_("qemu-img resize of %s"), path.c_str()),
                   _("check that the image is not in use and the size is valid"));
    return run.ok() ? Status::Ok() : run.status();
}

Result<ImageInfo> Info(const std::string &path)
{
    auto run = Run({"info", "-U", "--output=json", FileArg(path)},
                   Printf(_("qemu-img info of %s"), path.c_str()),
                   _("check that the file exists and is a readable image"));
    if (!run.ok())
        return run.status();
    auto members = JsonReader(run->out).ReadObject();
    if (!members || !members->integers.count("virtual-size") ||
        !members->strings.count("format"))
        return Status::Error(ErrorCode::kIoError,
                             Printf(_("qemu-img info printed unexpected output for %s; check "
                                      "that SDM_QEMU_IMG or PATH names a working qemu-img"),
                                    path.c_str()));
    ImageInfo info;
    info.virtual_size = members->integers["virtual-size"];
    info.format = members->strings["format"];
    auto backing = members->strings.find("backing-filename");
    if (backing != members->strings.end())
        info.backing_filename = backing->second;
    return info;
}

std::string FdPath(int fd)
{
    return Printf("/proc/%d/fd/%d", static_cast<int>(getpid()), fd);
}

std::string ChainName(const std::vector<Layer> &chain)
{
    /* Only numbers and fixed words go into the JSON: nothing needs escaping. A qcow2 layer
     * with nothing below gets "backing": null, so that qemu-img opens no backing file. */
    std::string json;
    std::string closing;
    for (size_t i = 0; i < chain.size(); i++) {
        json += Printf("{\"driver\":\"%s\",\"file\":{\"driver\":\"file\",\"filename\":\"%s\"}",
                       VolumeFormatName(chain[i].format), FdPath(chain[i].fd).c_str());
        closing += "}";
        if (chain[i].format != VolumeFormat::kQcow2)
            break;
        json += i + 1 < chain.size() ? ",\"backing\":" : ",\"backing\":null";
    }
    return std::string(kJsonPrefix) + json + closing;
}

}  // namespace sdm::qemu
