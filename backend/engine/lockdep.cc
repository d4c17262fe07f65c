/* The lock-order checker; see lockdep.h for the order it enforces.
 *
 * Each thread keeps the keys it holds, oldest first, in a thread_local stack, so checking
 * needs no lock. Only the violation handler is shared; it is swapped under a mutex and
 * called outside it, so a handler may itself use lockdep-checked locks. */
#include "backend/engine/lockdep.h"

#include <glib.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

#include "backend/engine/i18n.h"

namespace sdm::lockdep {

namespace {

thread_local std::vector<Key> held_keys;

void AbortOnViolation(const std::string &message)
{
    fprintf(stderr, "%s\n", message.c_str());
    fflush(stderr);
    abort();
}

std::mutex handler_mutex;
ViolationHandler violation_handler = AbortOnViolation;

void Report(const std::string &message)
{
    ViolationHandler handler;
    {
        std::lock_guard<std::mutex> lock(handler_mutex);
        handler = violation_handler;
    }
    handler(message);
}

const char *LevelName(Level level)
{
    switch (level) {
    case Level::kDomain: return "domain";
    case Level::kOwner: return "owner";
    case Level::kImage: return "image";
    case Level::kVolume: return "volume";
    case Level::kAllocator: return "allocator";
    }
    return "unknown-level";
}

template <typename T>
int CompareValues(const T &a, const T &b)
{
    return a < b ? -1 : (b < a ? 1 : 0);
}

/* Names the rule that `held` before `wanted` breaks; Compare(held, wanted) >= 0. */
const char *BrokenRule(const Key &held, const Key &wanted)
{
    if (held.level != wanted.level)
        return _("big containers before small: domain -> owner -> image -> volume -> "
                 "allocator");
    if (held.kind != wanted.kind)
        return _("storage leases before local locks at the same level");
    if (held.role != wanted.role)
        return _("source before destination");
    if (held.id != wanted.id)
        return _("keys of the same level, kind and role in id order");
    return _("same lock taken twice");
}

std::string HeldList()
{
    std::string list = HeldByThisThread();
    return list.empty() ? std::string(_("(nothing)")) : list;
}

}  // namespace

std::string Key::ToString() const
{
    std::string text = LevelName(level);
    text += kind == Kind::kLease ? " lease" : " lock";
    if (role == Role::kSource)
        text += " (source)";
    else if (role == Role::kDestination)
        text += " (destination)";
    if (!id.empty())
        text += " " + id;
    return text;
}

int Compare(const Key &a, const Key &b)
{
    if (int c = CompareValues(a.level, b.level))
        return c;
    if (int c = CompareValues(a.kind, b.kind))
        return c;
    if (int c = CompareValues(a.role, b.role))
        return c;
    return CompareValues(a.id.compare(b.id), 0);
}

void WillAcquire(const Key &key)
{
    if (!Enabled())
        return;
    for (const Key &held : held_keys) {
        if (Compare(held, key) < 0)
            continue;
        g_autofree char *message = g_strdup_printf(
            _("lock order violation: acquiring %s while holding %s breaks the rule \"%s\"; "
              "held by this thread, oldest first: %s; take locks in the order that "
              "backend/engine/lockdep.h describes"),
            key.ToString().c_str(), held.ToString().c_str(), BrokenRule(held, key),
            HeldList().c_str());
        Report(message);
        return;
    }
}

void Acquired(const Key &key)
{
    if (!Enabled())
        return;
    held_keys.push_back(key);
}

void Released(const Key &key)
{
    if (!Enabled())
        return;
    auto same = [&key](const Key &held) { return Compare(held, key) == 0; };
    if (!held_keys.empty() && same(held_keys.back())) {
        held_keys.pop_back();
        return;
    }
    for (auto it = held_keys.rbegin(); it != held_keys.rend(); ++it) {
        if (!same(*it))
            continue;
        g_autofree char *message = g_strdup_printf(
            _("lock order violation: releasing %s while %s is newer breaks the rule "
              "\"release the newest lock first\"; held by this thread, oldest first: %s"),
            key.ToString().c_str(), held_keys.back().ToString().c_str(), HeldList().c_str());
        /* Forget the key anyway, so one violation is reported once, not at every
         * later release. */
        held_keys.erase(std::next(it).base());
        Report(message);
        return;
    }
    g_autofree char *message = g_strdup_printf(
        _("lock order violation: releasing %s, which this thread does not hold; held by "
          "this thread, oldest first: %s"),
        key.ToString().c_str(), HeldList().c_str());
    Report(message);
}

std::string HeldByThisThread()
{
    std::string list;
    for (const Key &held : held_keys) {
        if (!list.empty())
            list += ", ";
        list += held.ToString();
    }
    return list;
}

ViolationHandler SetViolationHandler(ViolationHandler handler)
{
    if (!handler)
        handler = AbortOnViolation;
    std::lock_guard<std::mutex> lock(handler_mutex);
    return std::exchange(violation_handler, std::move(handler));
}

bool Enabled()
{
    static const bool enabled = [] {
        const char *value = getenv("SDM_LOCKDEP");
        return value == nullptr || std::string(value) != "0";
    }();
    return enabled;
}

}  // namespace sdm::lockdep
