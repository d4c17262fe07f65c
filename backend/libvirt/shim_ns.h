/* The pool XML namespace that marks a `dir` pool as a storage domain.
 *
 *   <pool type='dir' xmlns:sdm='http://libvirt-sdm.org/schemas/storagepool/1.0'>
 *     ...
 *     <sdm:domain socket='/run/sdmd/sdmd.sock' io_timeout='10'/>
 *   </pool>
 *
 * Both attributes are optional (sdmd's default socket; sdmd's default io_timeout, used only
 * by pool-build). A `dir` pool without the element is a stock pool. Schema:
 * xml/storagepool-sdm.rng. Parse and format run under libvirt's pool-definition locks;
 * the functions keep no state. */
#pragma once

#include "internal.h"
#include "virxml.h"

/* Our messages live in our own catalog, not in libvirt's (internal.h's _ uses that one). */
#undef _
#define _(text) dgettext("libvirt-sdm", text)

#define SDM_POOL_NS_URI "http://libvirt-sdm.org/schemas/storagepool/1.0"
#define SDM_POOL_NS_PREFIX "sdm"
#define SDM_DEFAULT_SOCKET "/run/sdmd/sdmd.sock" /* sdmd.conf's default */
#define SDM_MAX_IO_TIMEOUT 300

typedef struct {
    char *socket;            /* sdmd's socket; NULL: SDM_DEFAULT_SOCKET */
    unsigned int io_timeout; /* seconds for pool-build; 0: sdmd's default */
} SdmPoolNs;

extern virXMLNamespace sdmPoolNamespace;

/* The socket a pool's sdmd listens on. */
const char *sdmPoolNsSocket(const SdmPoolNs *ns);
