/* The recipes of the storage transactions: one file per operation, each holding the
 * operation's forward steps, its commit and its recovery side by side.
 *
 *   create.cc   a new image's base volume, or a snapshot layer on a volume of an image
 *   clone.cc    a volume copied into a new image (clone) or a file copied in (import)
 *   delete.cc   a leaf volume, or the last volume of an image with the image
 *   resize.cc   a volume grown
 *   format.cc   a domain made (and removed)
 *   upgrade.cc  a format 1 domain brought to the current format
 *
 * (upload, download and wipe write a volume's data under its lease and are not
 * transactions: backend/engine/data_ops.cc.) Recover (transaction.h) calls the Settle
 * functions below; each decides from storage alone whether its operation committed, rolls
 * forward or back, and is idempotent. The helpers here are what several recipes share.
 * Stateless; thread-safe. */
#pragma once

#include <string>

#include "backend/engine/metadata.h"
#include "sdm/status.h"

namespace sdm {

class FileDomain;

namespace recipes {

/* A create or clone (new image or layer): committed if its metadata is in images/. */
Result<bool> SettleCreate(FileDomain &domain, const std::string &dir_name, const meta::Marker &m);
/* A delete: committed if the volume's metadata (or the whole image) left images/. */
Result<bool> SettleDelete(FileDomain &domain, const meta::Marker &m);
/* A resize: committed if the metadata says the new size; otherwise the grow is undone. */
Result<bool> SettleResize(FileDomain &domain, const meta::Marker &m);

/* A new marker for `op` on volume `m` by this attachment (a new image's create or clone
 * takes the image UUID as its txid: its directory names the commit it makes). */
meta::Marker NewMarker(const FileDomain &domain, meta::TxOp op, const meta::VolumeMeta &m,
                       bool new_image);
/* kInvalidArgument unless 0 < capacity <= meta::kMaxCapacity. */
Status ValidateCapacity(uint64_t capacity);
/* The error for a data file that cannot have the size asked for (errno `err`). */
Status SizeError(int err, const std::string &what);
/* A planned uuid or image from the caller: a well-formed lower-case UUID or nothing. */
Status CheckPlannedId(const std::string &id, const char *what);
/* A marker that disagrees with the volume it names was not written by this engine for
 * that volume: the collector must not act on it. */
Status MarkerMismatch(const meta::Marker &m);

}  // namespace recipes
}  // namespace sdm
