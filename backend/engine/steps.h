/* Every named step of every operation, as typed constants.
 *
 * A step is a point of an operation that a crash may interrupt: Step() (crashpoint.h)
 * reports it to the operation's observer and lets tests stop the process there. Code names
 * a step only through these constants, so a misspelt step fails to compile. Within an
 * operation, steps are listed in the order they are reached; a step is reached before its
 * work is done ("crashing at create.commit" leaves the commit undone). The recipes
 * (backend/engine/recipes/) say what each step does. Header-only; constant data. */
#pragma once

#include <initializer_list>

namespace sdm {

struct StepName {
    const char *name;
};

namespace steps {

namespace format {
inline constexpr StepName kBegin{"format.begin"};
inline constexpr StepName kClaim{"format.claim"};        /* .format -> uuid */
inline constexpr StepName kSkeleton{"format.skeleton"};  /* directories and area files */
inline constexpr StepName kAreas{"format.areas"};        /* lockspace and lease areas */
inline constexpr StepName kDurable{"format.durable"};
inline constexpr StepName kCommit{"format.commit"};      /* domain.meta renamed in */
inline constexpr StepName kDone{"format.done"};          /* the claim removed */
inline constexpr StepName kAll[] = {kBegin, kClaim, kSkeleton, kAreas, kDurable, kCommit, kDone};
}  // namespace format

namespace upgrade {
inline constexpr StepName kBegin{"upgrade.begin"};
inline constexpr StepName kSkeleton{"upgrade.skeleton"}; /* chunks/ and owners */
inline constexpr StepName kAdopt{"upgrade.adopt"};       /* format 1 transactions renamed */
inline constexpr StepName kCommit{"upgrade.commit"};     /* domain.meta says version 2 */
inline constexpr StepName kCleanup{"upgrade.cleanup"};   /* format 1 slot index removed */
inline constexpr StepName kDone{"upgrade.done"};
inline constexpr StepName kAll[] = {kBegin, kSkeleton, kAdopt, kCommit, kCleanup, kDone};
}  // namespace upgrade

namespace chunk {
inline constexpr StepName kClaim{"chunk.claim"};         /* chunks/<c> -> owner */
inline constexpr StepName kLeases{"chunk.leases"};       /* its volume leases written */
inline constexpr StepName kAll[] = {kClaim, kLeases};
}  // namespace chunk

namespace create {
inline constexpr StepName kBegin{"create.begin"};
inline constexpr StepName kMarker{"create.marker"};
inline constexpr StepName kImageDir{"create.image-dir"};
inline constexpr StepName kMetadata{"create.metadata"};
inline constexpr StepName kData{"create.data"};
inline constexpr StepName kClaim{"create.claim"};        /* images/@<name> */
inline constexpr StepName kDurable{"create.durable"};
inline constexpr StepName kPlaceData{"create.place-data"};
inline constexpr StepName kCommit{"create.commit"};
inline constexpr StepName kIndex{"create.index"};        /* root link, namespace barrier */
inline constexpr StepName kDone{"create.done"};
inline constexpr StepName kAll[] = {kBegin, kMarker,  kImageDir, kMetadata, kData, kClaim,
                                    kDurable, kPlaceData, kCommit, kIndex, kDone};
}  // namespace create

namespace clone {
inline constexpr StepName kBegin{"clone.begin"};
inline constexpr StepName kMarker{"clone.marker"};
inline constexpr StepName kClaim{"clone.claim"};
inline constexpr StepName kImageDir{"clone.image-dir"};
inline constexpr StepName kMetadataIllegal{"clone.metadata-illegal"};
inline constexpr StepName kCopy{"clone.copy"};
inline constexpr StepName kCopied{"clone.copied"};
inline constexpr StepName kLegal{"clone.legal"};
inline constexpr StepName kDurable{"clone.durable"};
inline constexpr StepName kCommit{"clone.commit"};
inline constexpr StepName kIndex{"clone.index"};
inline constexpr StepName kDone{"clone.done"};
inline constexpr StepName kAll[] = {kBegin,  kMarker, kClaim,   kImageDir, kMetadataIllegal,
                                    kCopy,   kCopied, kLegal,   kDurable,  kCommit,
                                    kIndex,  kDone};
}  // namespace clone

namespace del {
inline constexpr StepName kBegin{"delete.begin"};
inline constexpr StepName kMarker{"delete.marker"};
inline constexpr StepName kDurable{"delete.durable"};
inline constexpr StepName kCommit{"delete.commit"};
inline constexpr StepName kCollect{"delete.collect"};
inline constexpr StepName kDone{"delete.done"};
inline constexpr StepName kAll[] = {kBegin, kMarker, kDurable, kCommit, kCollect, kDone};
}  // namespace del

namespace resize {
inline constexpr StepName kBegin{"resize.begin"};
inline constexpr StepName kMarker{"resize.marker"};
inline constexpr StepName kDurable{"resize.durable"};
inline constexpr StepName kGrow{"resize.grow"};
inline constexpr StepName kCommit{"resize.commit"};
inline constexpr StepName kDone{"resize.done"};
inline constexpr StepName kAll[] = {kBegin, kMarker, kDurable, kGrow, kCommit, kDone};
}  // namespace resize

namespace upload {
inline constexpr StepName kBegin{"upload.begin"};
inline constexpr StepName kData{"upload.data"};
inline constexpr StepName kPartial{"upload.partial"};
inline constexpr StepName kSync{"upload.sync"};
inline constexpr StepName kLegal{"upload.legal"};
inline constexpr StepName kDone{"upload.done"};
inline constexpr StepName kAll[] = {kBegin, kData, kPartial, kSync, kLegal, kDone};
}  // namespace upload

namespace wipe {
inline constexpr StepName kBegin{"wipe.begin"};
inline constexpr StepName kData{"wipe.data"};
inline constexpr StepName kLegal{"wipe.legal"};
inline constexpr StepName kDone{"wipe.done"};
inline constexpr StepName kAll[] = {kBegin, kData, kLegal, kDone};
}  // namespace wipe

namespace gc {
inline constexpr StepName kClaim{"gc.claim"};            /* the transaction renamed to us */
inline constexpr StepName kCollect{"gc.collect"};
inline constexpr StepName kRemoveMarker{"gc.remove-marker"};
inline constexpr StepName kAll[] = {kClaim, kCollect, kRemoveMarker};
}  // namespace gc

}  // namespace steps
}  // namespace sdm
