/* Parsing and formatting of <sdm:domain/> (see shim_ns.h). Bad attributes are refused with
 * a message that names the attribute and what it must be, so pool-define fails before any
 * storage is touched. */
#include <config.h>

#include "shim_ns.h"

#include <sys/un.h>

#include "virerror.h"
#include "virstring.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

static void sdmPoolNsFree(void *data)
{
    SdmPoolNs *ns = data;
    if (!ns)
        return;
    g_free(ns->socket);
    g_free(ns);
}

/* Whether `text` holds a control character: the pool config libvirt saves would not keep
 * it (its escaping drops most; XML attribute normalisation turns tab and newline into
 * spaces), so the pool would find another socket after a libvirtd restart. */
static bool sdmHasControlChar(const char *text)
{
    for (; *text; text++) {
        if ((unsigned char)*text < 0x20 || *text == 0x7f)
            return true;
    }
    return false;
}

static int sdmPoolNsParseAttr(SdmPoolNs *ns, const char *name, const char *value)
{
    if (strcmp(name, "socket") == 0) {
        if (value[0] != '/' || strlen(value) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
            sdmHasControlChar(value)) {
            virReportError(VIR_ERR_XML_ERROR,
                           _("<sdm:domain socket='%s'>: the socket must be an absolute path "
                             "shorter than %zu bytes, without control characters (sdmd's "
                             "`socket` setting)"),
                           value, sizeof(((struct sockaddr_un *)0)->sun_path));
            return -1;
        }
        ns->socket = g_strdup(value);
        return 0;
    }
    if (strcmp(name, "io_timeout") == 0) {
        unsigned int seconds = 0;
        if (virStrToLong_uip(value, NULL, 10, &seconds) < 0 || seconds == 0 ||
            seconds > SDM_MAX_IO_TIMEOUT) {
            virReportError(VIR_ERR_XML_ERROR,
                           _("<sdm:domain io_timeout='%s'>: the lockspace I/O timeout must be "
                             "a whole number of seconds from 1 to %d (default 10)"),
                           value, SDM_MAX_IO_TIMEOUT);
            return -1;
        }
        ns->io_timeout = seconds;
        return 0;
    }
    virReportError(VIR_ERR_XML_ERROR,
                   _("<sdm:domain> has an unknown attribute '%s'; it takes only 'socket' and "
                     "'io_timeout' (see xml/storagepool-sdm.rng)"),
                   name);
    return -1;
}

static int sdmPoolNsParse(xmlXPathContextPtr ctxt, void **data)
{
    g_autofree xmlNodePtr *nodes = NULL;
    int n = virXPathNodeSet("./" SDM_POOL_NS_PREFIX ":domain", ctxt, &nodes);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0; /* a stock dir pool */
    if (n > 1) {
        virReportError(VIR_ERR_XML_ERROR, "%s",
                       _("a pool holds at most one <sdm:domain> element"));
        return -1;
    }
    SdmPoolNs *ns = g_new0(SdmPoolNs, 1);
    for (xmlAttrPtr attr = nodes[0]->properties; attr; attr = attr->next) {
        /* x:socket would read as socket's value again (attributes are looked up by name
         * alone) and leak the first copy. */
        if (attr->ns) {
            virReportError(VIR_ERR_XML_ERROR,
                           _("<sdm:domain> has an unknown attribute '%s:%s'; it takes only "
                             "'socket' and 'io_timeout', without a prefix (see "
                             "xml/storagepool-sdm.rng)"),
                           NULLSTR((const char *)attr->ns->prefix), (const char *)attr->name);
            sdmPoolNsFree(ns);
            return -1;
        }
        g_autofree char *value = virXMLPropString(nodes[0], (const char *)attr->name);
        if (sdmPoolNsParseAttr(ns, (const char *)attr->name, value ? value : "") < 0) {
            sdmPoolNsFree(ns);
            return -1;
        }
    }
    *data = ns;
    return 0;
}

static int sdmPoolNsFormat(virBuffer *buf, void *data)
{
    const SdmPoolNs *ns = data;
    if (!ns)
        return 0;
    virBufferAddLit(buf, "<" SDM_POOL_NS_PREFIX ":domain");
    virBufferEscapeString(buf, " socket='%s'", ns->socket);
    if (ns->io_timeout)
        virBufferAsprintf(buf, " io_timeout='%u'", ns->io_timeout);
    virBufferAddLit(buf, "/>\n");
    return 0;
}

virXMLNamespace sdmPoolNamespace = {
    .parse = sdmPoolNsParse,
    .free = sdmPoolNsFree,
    .format = sdmPoolNsFormat,
    .prefix = SDM_POOL_NS_PREFIX,
    .uri = SDM_POOL_NS_URI,
};

const char *sdmPoolNsSocket(const SdmPoolNs *ns)
{
    return ns && ns->socket ? ns->socket : SDM_DEFAULT_SOCKET;
}
