/* What is fsynced, and when: the one place that decides.
 *
 * An operation reaches ordering points ("barriers"): everything registered with a Barrier
 * must be durable before the next step (a commit rename, a success returned). Two
 * policies say what that takes:
 *
 *   kOrdered  the filesystem persists namespace and inode changes (mkdir, create, rename,
 *             symlink, truncate, fallocate) in the order they were made, each no later than
 *             anything after it: journaling filesystems (ext4 with a journal, XFS, GFS2)
 *             and NFS and CephFS, whose servers make each such operation stable before they
 *             reply. A barrier fsyncs the files whose data was written, or the last
 *             directory changed when there are none: that fsync commits the journal that
 *             holds every earlier change.
 *   kStrict   nothing is assumed: a barrier is one syncfs(2) of the domain's filesystem.
 *             fsync cannot reach a new symlink's inode (the index is made of symlinks), so
 *             on a filesystem without a journal syncfs is the only complete barrier; it
 *             costs what the filesystem has dirty at the time.
 *
 * kAuto picks kOrdered for those filesystems and kStrict for every other (ext2, ext4
 * without a journal, btrfs, whose fsync logs only the inode synced; anything unknown).
 * docs/durability.md has the reasoning. Barrier is used by one thread. */
#pragma once

#include <string>
#include <vector>

#include "backend/engine/fileio.h"
#include "sdm/domain.h"
#include "sdm/status.h"

namespace sdm {

using SyncPolicy = Durability;

/* The policy for the filesystem holding `dirfd`: `requested` unless it is kAuto, then
 * $SDM_SYNC ("strict" or "ordered") if set, else what the filesystem type warrants.
 * `why` says how it was chosen (for `info` and logs). */
SyncPolicy ResolveSyncPolicy(int dirfd, SyncPolicy requested, std::string *why);
const char *SyncPolicyName(SyncPolicy policy);

class Barrier {
public:
    explicit Barrier(SyncPolicy policy) : policy_(policy) {}

    /* A file whose content was written. */
    void Data(int fd, std::string what);
    Status DataAt(int dirfd, const std::string &name, std::string what);
    /* A file whose size or allocation changed, but no data. */
    void Inode(int dirfd, std::string what);
    /* A directory whose entries changed. */
    void Dir(int fd, std::string what);

    /* Makes everything registered durable, then forgets it. Register changes in the
     * order they were made: under kOrdered with no data to sync, the last one is synced,
     * which on XFS forces the log far enough for every earlier change too. */
    Status Sync();

private:
    struct Entry {
        int fd;
        std::string what;
        bool always;
    };

    SyncPolicy policy_;
    std::vector<Entry> entries_;
    std::vector<fileio::Fd> owned_;
};

}  // namespace sdm
