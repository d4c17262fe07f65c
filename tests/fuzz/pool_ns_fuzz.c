/* libFuzzer target for the pool XML namespace of the libvirt shim (<sdm:domain socket=...
 * io_timeout=.../>, backend/libvirt/shim_ns.c), driven the way libvirt's storage_conf.c
 * drives it: the input is parsed as pool XML with libvirt's own parser, the namespace is
 * registered on the XPath context and its parse callback runs at the root. Built with
 * -Dfuzz=true and clang against libvirt's internal headers and libvirt.so's private
 * symbols, like the shim (see tests/fuzz/meson.build).
 *
 * Beyond "never crash, never leak", it aborts when:
 *   - a refusal leaves no libvirt error to show (pool-define would fail without a reason),
 *     or leaves data behind;
 *   - what the format callback writes (libvirt saves it as the pool's config) does not
 *     parse back to the same socket and io_timeout.
 * Single-threaded, as libFuzzer runs it. */
#include <config.h>

#include "backend/libvirt/shim_ns.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <libxml/xpathInternals.h>

#include "virbuffer.h"
#include "virerror.h"
#include "virxml.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sdmFuzzFail(const char *property)
{
    fprintf(stderr, "pool_ns_fuzz: %s\n", property);
    abort();
}

/* The namespace callback's result for pool XML `xml`: 0 with *ns set (NULL for a stock
 * pool), -1 when the callback refused it, -2 when the text is no pool XML at all. */
static int sdmFuzzParse(const char *xml, SdmPoolNs **ns)
{
    g_autoptr(xmlXPathContext) ctxt = NULL;
    g_autoptr(xmlDoc) doc = virXMLParse(NULL, xml, "(fuzz)", "pool", &ctxt, NULL, false);
    void *parsed = NULL;
    int rc;

    *ns = NULL;
    if (!doc)
        return -2;
    if (xmlXPathRegisterNs(ctxt, BAD_CAST sdmPoolNamespace.prefix,
                           BAD_CAST sdmPoolNamespace.uri) < 0)
        sdmFuzzFail("the namespace registers");
    virResetLastError();
    rc = sdmPoolNamespace.parse(ctxt, &parsed);
    if (rc < 0) {
        if (parsed)
            sdmFuzzFail("a refusal leaves no data");
        if (!virGetLastError())
            sdmFuzzFail("a refusal reports a libvirt error");
        return -1;
    }
    *ns = parsed;
    return 0;
}

/* A pool holding what the format callback writes for `ns`, as libvirt saves it. */
static char *sdmFuzzFormat(SdmPoolNs *ns)
{
    g_auto(virBuffer) buf = VIR_BUFFER_INITIALIZER;
    virBufferAddLit(&buf, "<pool type='dir' xmlns:" SDM_POOL_NS_PREFIX "='" SDM_POOL_NS_URI
                          "'>\n");
    if (sdmPoolNamespace.format(&buf, ns) < 0)
        sdmFuzzFail("the format callback succeeds");
    virBufferAddLit(&buf, "</pool>\n");
    return virBufferContentAndReset(&buf);
}

static void sdmFuzzCheckRoundTrip(SdmPoolNs *ns)
{
    g_autofree char *saved = sdmFuzzFormat(ns);
    SdmPoolNs *again = NULL;

    if (sdmFuzzParse(saved, &again) != 0 || !again)
        sdmFuzzFail("the saved config parses again");
    if (g_strcmp0(ns->socket, again->socket) != 0 || ns->io_timeout != again->io_timeout)
        sdmFuzzFail("the saved config has the same socket and io_timeout");
    sdmPoolNamespace.free(again);
}

/* Refusals are expected by the thousand: keep them off stderr. */
static void sdmFuzzQuiet(void *opaque G_GNUC_UNUSED, virErrorPtr error G_GNUC_UNUSED)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool initialized;
    g_autofree char *xml = g_strndup((const char *)data, size);
    SdmPoolNs *ns = NULL;

    if (!initialized) {
        /* libvirt's error reporting keeps its state in a thread-local set up here. */
        if (virInitialize() < 0)
            sdmFuzzFail("libvirt initializes");
        virSetErrorFunc(NULL, sdmFuzzQuiet);
        initialized = true;
    }
    if (sdmFuzzParse(xml, &ns) == 0 && ns)
        sdmFuzzCheckRoundTrip(ns);
    sdmPoolNamespace.free(ns);
    virResetLastError();
    return 0;
}
