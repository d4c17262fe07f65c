/* libFuzzer target for the metadata parser and the typed decoders (built with -Dfuzz=true
 * and clang; see tests/fuzz/meson.build).
 *
 * Each input is tried as it is, and again with its checksum line recomputed so that the
 * fuzzer gets past the checksum and exercises key and value validation. Beyond "never
 * crash", it checks two properties and aborts if either breaks:
 *   - the parser accepts only canonical text: Serialize(Parse(x)) == x;
 *   - typed records round-trip: Decode(Encode(Decode(x))) succeeds and encodes the same.
 * Single-threaded, as libFuzzer runs it. */
#include <glib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backend/engine/metadata.h"

namespace {

const std::string kWhat = "fuzz.meta";

[[noreturn]] void Fail(const char *property, std::string_view input)
{
    fprintf(stderr, "metadata_fuzz: %s broken for input of %zu bytes\n", property, input.size());
    abort();
}

/* The input with its last "checksum=" line (if any) replaced by a correct one. */
std::string WithFreshChecksum(std::string_view input)
{
    std::string body(input);
    size_t pos = body.rfind("\nchecksum=");
    if (pos != std::string::npos)
        body.resize(pos + 1);
    else if (body.empty() || body.back() != '\n')
        body += '\n';
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(sum, reinterpret_cast<const guchar *>(body.data()),
                      static_cast<gssize>(body.size()));
    body += std::string("checksum=sha256:") + g_checksum_get_string(sum) + "\n";
    g_checksum_free(sum);
    return body;
}

template <typename Decode>
void CheckRoundTrip(std::string_view input, Decode decode)
{
    auto first = decode(input, kWhat);
    if (!first.ok()) {
        if (first.status().message().find(kWhat) == std::string::npos)
            Fail("error names the file", input);
        return;
    }
    std::string encoded = sdm::meta::Encode(*first);
    auto second = decode(encoded, kWhat);
    if (!second.ok())
        Fail("Decode(Encode(x)) succeeds", input);
    if (sdm::meta::Encode(*second) != encoded)
        Fail("Encode(Decode(Encode(x))) == Encode(x)", input);
}

void CheckAll(std::string_view input)
{
    for (const char *kind : {"VOLUME", "DOMAIN", "MARKER"}) {
        auto doc = sdm::meta::Parse(input, kind, kWhat);
        if (doc.ok() && sdm::meta::Serialize(*doc) != input)
            Fail("Serialize(Parse(x)) == x", input);
    }
    CheckRoundTrip(input, sdm::meta::DecodeVolume);
    CheckRoundTrip(input, sdm::meta::DecodeDomain);
    CheckRoundTrip(input, sdm::meta::DecodeMarker);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string_view input(reinterpret_cast<const char *>(data), size);
    CheckAll(input);
    CheckAll(WithFreshChecksum(input));
    return 0;
}
