/* A gtest fixture with a freshly formatted domain in a scratch directory, and helpers
 * the engine suites share: volume creation with data, and storage inspection. */
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "sdm/domain.h"
#include "tests/support/test_support.h"

namespace sdm::testing {

class DomainTest : public ::testing::Test {
protected:
    void SetUp() override;

    /* Opens another handle on the same domain (another "process view"). */
    std::unique_ptr<Domain> OpenAgain(const DomainOptions &options = {});

    /* Creates a volume and fills `data_bytes` of it with a pattern; returns its info. */
    VolumeInfo MakeVolume(const std::string &name, uint64_t capacity,
                          VolumeFormat format = VolumeFormat::kRaw, uint64_t data_bytes = 0,
                          uint32_t seed = 1);

    /* Entries of a directory below the domain root ("tx", "names", ...). */
    std::vector<std::string> Entries(const std::string &rel) const;
    /* Asserts the domain is consistent and has no pending transactions. */
    void ExpectClean();

    TempDir tmp_;
    std::string root_;
    std::unique_ptr<Domain> domain_;
};

/* Content of a volume as a guest sees it (qcow2 chains read through qemu-img). */
std::string GuestSha256(const VolumeInfo &volume);

/* Turns the (closed) format 2 domain at `root` into what format 1 left: domain.meta says
 * version 1, no chunks/ or owners, a slot index entry images/<slot> per volume, and two
 * format 1 transactions a dead host left (tx/<txid>-<slot>): `committed` (a create of a
 * new image committed but not indexed: its claim and slot entry missing) and an
 * uncommitted clone named `uncommitted`. `committed` must name a volume of the domain. */
void MakeFormat1(const std::string &root, const std::string &committed,
                 const std::string &uncommitted);

}  // namespace sdm::testing
