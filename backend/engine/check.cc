/* The consistency check of a whole domain: every committed volume is readable, has its
 * data file, a valid chain, its own lease slot and its name claim; every claim names a
 * volume; every chunk claim names an owner; nothing stray lies in images/ or at the root.
 * Entries that belong to a pending transaction are not problems: the collector owns them.
 * It holds the domain lock exclusively, so no thread of this process changes the domain
 * meanwhile; other hosts' operations may, and what they have in flight shows as pending. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace {

struct Pending {
    std::set<std::string> images;
    std::set<std::string> volumes;
    std::vector<std::string> legacy; /* format 1 transactions */
};

Pending ReadPending(FileDomain &domain, uint32_t *count)
{
    Pending pending;
    auto entries = fileio::ListDirAt(domain.tx_dir(), ".");
    if (!entries.ok())
        return pending;
    for (const auto &entry : *entries) {
        (*count)++;
        auto name = layout::ParseTxDirName(entry);
        if (!name) {
            if (layout::ParseLegacyTxDirName(entry))
                pending.legacy.push_back(entry);
            continue;
        }
        pending.images.insert(name->txid); /* a new image's transaction is named after it */
        TxRead read = ReadTransaction(domain, entry, *name);
        if (read.marker) {
            pending.images.insert(read.marker->image);
            pending.volumes.insert(read.marker->volume);
        }
    }
    return pending;
}

std::string ReadLink(int dir, const std::string &name)
{
    char target[256];
    ssize_t n = readlinkat(dir, name.c_str(), target, sizeof(target) - 1);
    return n < 0 ? std::string() : std::string(target, n);
}

}  // namespace

Result<CheckReport> FileDomain::Check()
{
    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kExclusive, options_.lock_timeout);
    if (!domain_lock.ok())
        return domain_lock.status();

    CheckReport report;
    auto problem = [&report](const std::string &text) { report.problems.push_back(text); };
    Pending pending = ReadPending(*this, &report.pending_transactions);
    for (const auto &entry : pending.legacy)
        problem(std::string(layout::kTxDir) + "/" + entry +
                _(": a format 1 transaction; run the upgrade again to adopt it"));

    auto chunks = fileio::ListDirAt(chunks_dir(), ".");
    if (!chunks.ok())
        return chunks.status();
    for (const auto &entry : *chunks) {
        char target[32];
        ssize_t n = readlinkat(chunks_dir(), entry.c_str(), target, sizeof(target));
        if (!layout::ParseChunkEntry(entry) || n <= 0 ||
            !layout::ParseChunkTarget(std::string(target, n)))
            problem(std::string(layout::kChunksDir) + "/" + entry +
                    _(": not a chunk claim (a chunk number naming an owner)"));
    }

    auto root_entries = fileio::ListDirAt(root(), ".");
    if (!root_entries.ok())
        return root_entries.status();
    std::vector<std::string> root_links; /* judged once the volumes are known */
    for (const auto &entry : *root_entries) {
        bool known = entry == layout::kDomainMeta || entry == "lost+found" ||
                     entry == layout::kFormatClaim ||
                     std::any_of(std::begin(layout::kSkeleton), std::end(layout::kSkeleton),
                                 [&](const char *n) { return entry == n; });
        if (!known)
            root_links.push_back(entry);
    }
    std::map<std::string, std::string> expected_root; /* root link -> target */

    /* Every name claim the committed volumes call for, with its target; every slot's
     * volume. */
    std::map<std::string, std::string> expected_index;
    std::map<uint64_t, std::string> slots;
    std::vector<std::string> index_entries;
    auto images = fileio::ListDirAt(images_dir(), ".");
    if (!images.ok())
        return images.status();
    for (const auto &entry : *images) {
        std::string where = std::string(layout::kImagesDir) + "/" + entry;
        switch (layout::ClassifyImagesEntry(entry)) {
        case layout::EntryKind::kImage:
            break;
        case layout::EntryKind::kName:
            index_entries.push_back(entry);
            continue;
        case layout::EntryKind::kLegacySlot:
            problem(where + _(": a format 1 slot index entry; run the upgrade again to "
                              "remove it"));
            continue;
        case layout::EntryKind::kOther:
            problem(where + _(": neither an image nor an index entry"));
            continue;
        }
        auto image = ReadImage(entry);
        if (!image.ok()) {
            problem(where + ": " + image.status().message());
            continue;
        }
        report.images++;
        for (const auto &bad : image->bad)
            problem(bad);
        std::set<std::string> expected_files;
        for (const auto &v : image->volumes) {
            report.volumes++;
            std::string vwhere = layout::VolumePath(entry, v.uuid) + " ('" + v.name + "')";
            std::string target = layout::IndexTarget(entry, v.uuid);
            expected_files.insert(v.uuid);
            expected_files.insert(layout::MetaFile(v.uuid));
            struct stat st;
            if (fstatat(image->dir.get(), v.uuid.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISREG(st.st_mode))
                problem(vwhere + _(": data file missing or not a regular file"));
            if (v.legality != Legality::kLegal && !pending.volumes.count(v.uuid))
                problem(vwhere + _(": committed but ILLEGAL, and no transaction owns it"));
            /* Walk the chain; a cycle or a missing parent breaks it. */
            std::string at = v.parent;
            for (size_t hops = 0; !at.empty(); hops++) {
                const meta::VolumeMeta *p = image->Find(at);
                if (!p) {
                    problem(vwhere + _(": backing volume ") + at + _(" is missing"));
                    break;
                }
                if (hops > image->volumes.size()) {
                    problem(vwhere + _(": its backing chain has a cycle"));
                    break;
                }
                at = p->parent;
            }
            if (std::string link = layout::RootLink(v.name); !link.empty())
                expected_root[link] = layout::RootLinkTarget(entry, v.uuid);
            if (auto [other, fresh] = slots.emplace(v.slot, vwhere); !fresh)
                problem(vwhere + _(": its lease slot ") + std::to_string(v.slot) +
                        _(" is also that of ") + other->second);
            const std::string key = layout::NameEntry(v.name);
            if (!expected_index.emplace(key, target).second)
                problem(vwhere + _(": its name is also that of another volume"));
            else if (ReadLink(images_dir(), key) != target && !pending.volumes.count(v.uuid))
                problem(vwhere + _(": its name claim images/") + key + _(" is missing or wrong"));
        }
        auto files = fileio::ListDirAt(image->dir.get(), ".");
        if (!files.ok())
            continue;
        for (const auto &file : *files) {
            if (expected_files.count(file))
                continue;
            if (pending.images.count(entry) && pending.volumes.count(file.substr(0, 36)))
                continue;
            problem(where + "/" + file + _(": stray file (no volume owns it)"));
        }
        if (image->volumes.empty() && image->bad.empty() && !pending.images.count(entry))
            problem(where + _(": empty image directory"));
    }

    /* A root link is a convenience derived from the index: one that names its volume, or
     * belongs to a transaction still pending, is fine; anything else is not ours. */
    for (const auto &entry : root_links) {
        std::string target = ReadLink(root(), entry);
        auto it = expected_root.find(entry);
        if (it != expected_root.end() && it->second == target)
            continue;
        const std::string prefix = std::string(layout::kImagesDir) + "/";
        auto ref = target.rfind(prefix, 0) == 0
                       ? layout::ParseIndexTarget(target.substr(prefix.size()))
                       : std::nullopt;
        if (ref && pending.volumes.count(ref->volume))
            continue;
        problem(entry + (ref ? _(": a root link to no committed volume of that name; remove it")
                             : _(": unexpected entry at the domain root")));
    }

    for (const auto &entry : index_entries) {
        std::string target = ReadLink(images_dir(), entry);
        auto ref = layout::ParseIndexTarget(target);
        auto it = expected_index.find(entry);
        if (ref && ((it != expected_index.end() && it->second == target) ||
                    pending.volumes.count(ref->volume) || pending.images.count(ref->image)))
            continue;
        problem(std::string(layout::kImagesDir) + "/" + entry +
                (ref ? _(": a name claim of no committed volume and no pending transaction (a "
                         "power cut interrupted its create); the next create of that name "
                         "removes it, or remove it by hand")
                     : _(": not a name claim")));
    }
    return report;
}

}  // namespace sdm
