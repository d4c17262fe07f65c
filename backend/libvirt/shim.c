/* Stage 2, the shim: libvirt's `dir` backend for storage-domain pools, compiled in C against
 * the installed libvirt's internal headers and loaded only by the loader (loader.c).
 *
 * It registers a `dir` backend ahead of the stock one. Every callback first asks whether
 * the pool is ours (it carries <sdm:domain/>, shim_ns.h); if not, it calls the stock `dir`
 * callback unchanged. For our pools each callback becomes one call to the local sdmd over
 * D-Bus (include/sdm/client.h); the engine in sdmd owns the storage, the leases and the
 * on-storage layout, and the shim never touches a domain's files itself.
 *
 * Threading: libvirt calls pool callbacks with the pool object locked, and buildVol,
 * buildVolFrom and refreshVol of a volume being built with it unlocked, from any worker
 * thread. The shim's own state is the per-socket client table and the table of planned
 * volumes, each behind its own mutex; SdmClient is thread-safe. */
#include <config.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "internal.h"
#include "storage_backend.h"
#include "storage_conf.h"
#include "storage_util.h"
#include "virerror.h"
#include "virlog.h"
#include "virstorageobj.h"

#include "sdm/client.h"
#include "shim_entry.h"
#include "shim_ns.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.sdm_shim");

__attribute__((visibility("default"))) int sdm_shim_register(void *real_fs_module);

/* The stock `dir` backend of the distro's fs module: every pool that is not ours. */
static const virStorageBackend *stockDir;

/* ---- connections to sdmd ---- */

static GMutex clientsLock;
static GHashTable *clients; /* socket path -> SdmClient* */

/* The client of a socket, connected on first use and kept (it reconnects by itself after
 * sdmd restarts). NULL with a libvirt error naming the socket if sdmd cannot be reached. */
static SdmClient *sdmClientFor(const char *socket)
{
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    g_mutex_lock(&clientsLock);
    if (!clients)
        clients = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify)sdm_client_free);
    client = g_hash_table_lookup(clients, socket);
    if (!client) {
        client = sdm_client_new(socket, 0, &error);
        if (client)
            g_hash_table_insert(clients, g_strdup(socket), client);
    }
    g_mutex_unlock(&clientsLock);
    if (!client)
        virReportError(VIR_ERR_OPERATION_FAILED,
                       _("storage domain manager sdmd is not reachable on %s: %s; start sdmd "
                         "(it must run on every host that uses a storage-domain pool) and "
                         "retry, nothing was changed"),
                       socket, error->message);
    return client;
}

/* Reports a failed sdmd call as a libvirt error: the engine's code picks the libvirt code,
 * the engine's message (which volume, which step, what to do) is kept whole. */
static void sdmReportError(const char *pool, const char *what, const GError *error)
{
    int code = VIR_ERR_OPERATION_FAILED;
    if (error->domain == SDM_CLIENT_ERROR) {
        switch ((SdmClientErrorCode)error->code) {
        case SDM_CLIENT_ERROR_INVALID_ARGUMENT:
            code = VIR_ERR_INVALID_ARG;
            break;
        case SDM_CLIENT_ERROR_NOT_FOUND:
            code = VIR_ERR_NO_STORAGE_VOL;
            break;
        case SDM_CLIENT_ERROR_ALREADY_EXISTS:
            code = VIR_ERR_STORAGE_VOL_EXIST;
            break;
        case SDM_CLIENT_ERROR_BUSY:
            code = VIR_ERR_RESOURCE_BUSY;
            break;
        case SDM_CLIENT_ERROR_UNSUPPORTED:
            code = VIR_ERR_OPERATION_UNSUPPORTED;
            break;
        case SDM_CLIENT_ERROR_TIMEOUT:
            code = VIR_ERR_OPERATION_TIMEOUT;
            break;
        case SDM_CLIENT_ERROR_CANCELLED:
            code = VIR_ERR_OPERATION_ABORTED;
            break;
        default:
            break;
        }
    }
    virReportError(code, _("storage domain pool '%s': %s failed: %s"), pool, what,
                   error->message);
}

/* ---- which pools are ours ---- */

static const SdmPoolNs *sdmPoolNs(virStoragePoolObj *obj)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    if (def->ns.parse != sdmPoolNamespace.parse)
        return NULL;
    return def->namespaceData;
}

static SdmClient *sdmPoolClient(virStoragePoolObj *obj)
{
    return sdmClientFor(sdmPoolNsSocket(sdmPoolNs(obj)));
}

/* ---- volumes planned by createVol, built by buildVol ---- */

/* What createVol decided, for buildVol or buildVolFrom (which see only a copy of the
 * volume definition, with the pool unlocked). */
typedef struct {
    SdmVolumeInfo *info; /* uuid, image, key, path */
    char *backing;       /* name of the backing volume, or NULL */
} SdmPlan;

static void sdmPlanFree(SdmPlan *plan)
{
    if (!plan)
        return;
    sdm_volume_info_free(plan->info);
    g_free(plan->backing);
    g_free(plan);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SdmPlan, sdmPlanFree);

static GMutex plansLock;
static GHashTable *plans; /* volume key (owned by the plan) -> SdmPlan* */

static void sdmPlanPut(SdmPlan *plan)
{
    g_mutex_lock(&plansLock);
    if (!plans)
        plans = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                      (GDestroyNotify)sdmPlanFree);
    g_hash_table_replace(plans, plan->info->key, plan);
    g_mutex_unlock(&plansLock);
}

/* Takes the plan out of the table, or reports that createVol made none for this key. */
static SdmPlan *sdmPlanTake(const virStorageVolDef *vol)
{
    SdmPlan *plan = NULL;
    g_mutex_lock(&plansLock);
    if (plans && vol->key)
        plan = g_hash_table_lookup(plans, vol->key);
    if (plan)
        g_hash_table_steal(plans, vol->key);
    g_mutex_unlock(&plansLock);
    if (!plan)
        virReportError(VIR_ERR_INTERNAL_ERROR,
                       _("volume '%s' (key %s) was not planned before its build"), vol->name,
                       NULLSTR(vol->key));
    return plan;
}

/* ---- mapping between libvirt's volume definitions and sdmd's volumes ---- */

static const char *sdmFormatName(int format)
{
    switch (format) {
    case VIR_STORAGE_FILE_NONE:
    case VIR_STORAGE_FILE_RAW:
        return "raw";
    case VIR_STORAGE_FILE_QCOW2:
        return "qcow2";
    default:
        return NULL;
    }
}

static int sdmFormatFromName(const char *name)
{
    return g_strcmp0(name, "qcow2") == 0 ? VIR_STORAGE_FILE_QCOW2 : VIR_STORAGE_FILE_RAW;
}

static void sdmFillVolDef(virStorageVolDef *vol, const SdmVolumeInfo *info)
{
    vol->type = VIR_STORAGE_VOL_FILE;
    if (!vol->key)
        vol->key = g_strdup(info->key);
    if (!vol->target.path)
        vol->target.path = g_strdup(info->path);
    vol->target.format = sdmFormatFromName(info->format);
    vol->target.capacity = info->capacity;
    vol->target.allocation = info->allocation;
    vol->target.physical = info->allocation;
    if (info->backing_path && *info->backing_path) {
        if (!vol->target.backingStore)
            vol->target.backingStore = virStorageSourceNew();
        g_free(vol->target.backingStore->path);
        vol->target.backingStore->path = g_strdup(info->backing_path);
        vol->target.backingStore->format = VIR_STORAGE_FILE_NONE;
    }
}

static void sdmPoolSpace(virStoragePoolDef *def)
{
    struct statvfs sb;
    if (statvfs(def->target.path, &sb) < 0)
        return;
    def->capacity = (unsigned long long)sb.f_frsize * sb.f_blocks;
    def->available = (unsigned long long)sb.f_frsize * sb.f_bavail;
    def->allocation = def->capacity - (unsigned long long)sb.f_frsize * sb.f_bfree;
}

/* ---- pool callbacks ---- */

static int sdmCheckPool(virStoragePoolObj *obj, bool *active)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    if (!sdmPoolNs(obj))
        return stockDir->checkPool(obj, active);
    SdmClient *client = sdmPoolClient(obj);
    *active = false;
    if (!client)
        return -1;
    g_autoptr(SdmDomainInfo) info = sdm_client_attach_domain(client, def->target.path, &error);
    if (!info) {
        sdmReportError(def->name, "attaching the domain", error);
        return -1;
    }
    *active = true;
    return 0;
}

static int sdmStartPool(virStoragePoolObj *obj)
{
    bool active = false;
    if (!sdmPoolNs(obj))
        return stockDir->startPool ? stockDir->startPool(obj) : 0;
    return sdmCheckPool(obj, &active);
}

static int sdmBuildPool(virStoragePoolObj *obj, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    const SdmPoolNs *ns = sdmPoolNs(obj);
    g_autoptr(GError) error = NULL;
    if (!ns)
        return stockDir->buildPool(obj, flags);
    virCheckFlags(VIR_STORAGE_POOL_BUILD_NO_OVERWRITE, -1);
    if (g_mkdir_with_parents(def->target.path, 0755) < 0) {
        virReportSystemError(errno, _("cannot create the storage domain directory %s"),
                             def->target.path);
        return -1;
    }
    SdmClient *client = sdmPoolClient(obj);
    if (!client)
        return -1;
    g_autoptr(SdmDomainInfo) info =
        sdm_client_format_domain(client, def->target.path, ns->io_timeout, 0, 0, &error);
    if (info)
        return 0;
    /* pool-build of a domain that exists is how a second host (or a redefined pool)
     * starts using it: nothing to do. */
    if (g_error_matches(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_ALREADY_EXISTS) &&
        strstr(error->message, "already a storage domain")) {
        VIR_INFO("pool '%s': %s is already a storage domain", def->name, def->target.path);
        return 0;
    }
    sdmReportError(def->name, "formatting the domain", error);
    return -1;
}

static int sdmStopPool(virStoragePoolObj *obj)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->stopPool ? stockDir->stopPool(obj) : 0;
    if (!(client = sdmPoolClient(obj)))
        return -1;
    if (!sdm_client_detach_domain(client, def->target.path, &error)) {
        sdmReportError(def->name, "detaching the domain", error);
        return -1;
    }
    return 0;
}

static int sdmDeletePool(virStoragePoolObj *obj, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    if (!sdmPoolNs(obj))
        return stockDir->deletePool(obj, flags);
    virReportError(VIR_ERR_OPERATION_UNSUPPORTED,
                   _("pool '%s' is a storage domain shared by hosts; pool-delete does not "
                     "remove domains yet: delete its volumes, stop it on every host and remove "
                     "%s by hand"),
                   def->name, def->target.path);
    return -1;
}

static int sdmRefreshPool(virStoragePoolObj *obj)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->refreshPool(obj);
    if (!(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(GPtrArray) volumes = sdm_client_list_volumes(client, def->target.path, &error);
    if (!volumes) {
        sdmReportError(def->name, "listing volumes", error);
        return -1;
    }
    for (guint i = 0; i < volumes->len; i++) {
        const SdmVolumeInfo *info = g_ptr_array_index(volumes, i);
        /* An ILLEGAL volume (a clone still copying, or one a failure left) is not usable. */
        if (g_strcmp0(info->legality, "LEGAL") != 0)
            continue;
        virStorageVolDef *vol = g_new0(virStorageVolDef, 1);
        vol->name = g_strdup(info->name);
        sdmFillVolDef(vol, info);
        if (virStoragePoolObjAddVol(obj, vol) < 0) {
            virStorageVolDefFree(vol);
            virReportError(VIR_ERR_INTERNAL_ERROR,
                           _("pool '%s': volume '%s' (key %s) is listed twice"), def->name,
                           info->name, info->key);
            return -1;
        }
    }
    sdmPoolSpace(def);
    return 0;
}

/* ---- volume callbacks ---- */

/* The name of the volume of this pool whose data file is `path` (a backing store given by
 * path, as libvirt's XML does). */
static const char *sdmVolumeNameByPath(virStoragePoolObj *obj, const char *path)
{
    virStorageVolDef *vol = virStorageVolDefFindByPath(obj, path);
    return vol ? vol->name : NULL;
}

static int sdmCreateVol(virStoragePoolObj *obj, virStorageVolDef *vol)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    const char *backing = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->createVol(obj, vol);
    if (!sdmFormatName(vol->target.format)) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("volume '%s': format '%s' is not supported in a storage domain; use "
                         "raw or qcow2"),
                       vol->name, virStorageFileFormatTypeToString(vol->target.format));
        return -1;
    }
    if (vol->target.backingStore && vol->target.backingStore->path) {
        backing = sdmVolumeNameByPath(obj, vol->target.backingStore->path);
        if (!backing) {
            virReportError(VIR_ERR_INVALID_ARG,
                           _("volume '%s': backing store %s is not a volume of pool '%s'; a "
                             "snapshot layer must sit on a volume of the same storage domain"),
                           vol->name, vol->target.backingStore->path, def->name);
            return -1;
        }
    }
    if (!(client = sdmPoolClient(obj)))
        return -1;
    SdmPlan *plan = g_new0(SdmPlan, 1);
    plan->info = sdm_client_plan_volume(client, def->target.path, vol->name, backing, &error);
    if (!plan->info) {
        sdmPlanFree(plan);
        sdmReportError(def->name, "planning the volume", error);
        return -1;
    }
    plan->backing = g_strdup(backing);
    vol->type = VIR_STORAGE_VOL_FILE;
    vol->key = g_strdup(plan->info->key);
    g_free(vol->target.path);
    vol->target.path = g_strdup(plan->info->path);
    sdmPlanPut(plan);
    return 0;
}

/* Runs while the pool is unlocked; libvirt removes the volume definition if it fails. */
static int sdmBuildVol(virStoragePoolObj *obj, virStorageVolDef *vol, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    const char *prealloc = "sparse";
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->buildVol(obj, vol, flags);
    virCheckFlags(VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA, -1);
    g_autoptr(SdmPlan) plan = sdmPlanTake(vol);
    if (!plan)
        return -1;
    /* Stock semantics: metadata preallocation on request; an allocation as large as the
     * capacity asks for a fully allocated volume; anything less is sparse. */
    if (flags & VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA)
        prealloc = "metadata";
    else if (vol->target.has_allocation && vol->target.capacity > 0 &&
             vol->target.allocation >= vol->target.capacity)
        prealloc = "full";
    if (!(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(SdmVolumeInfo) made = sdm_client_create_volume(
        client, def->target.path, vol->name, vol->target.capacity,
        sdmFormatName(vol->target.format), prealloc, plan->backing, plan->info, NULL, &error);
    if (!made) {
        sdmReportError(def->name, "creating the volume", error);
        return -1;
    }
    return 0;
}

/* A clone within one domain; libvirt calls it as (pool, new volume, source volume). */
static int sdmBuildVolFrom(virStoragePoolObj *obj, virStorageVolDef *vol,
                           virStorageVolDef *source, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->buildVolFrom(obj, vol, source, flags);
    virCheckFlags(VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA, -1);
    g_autoptr(SdmPlan) plan = sdmPlanTake(vol);
    if (!plan || !(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(SdmVolumeInfo) found =
        sdm_client_lookup_volume(client, def->target.path, source->name, &error);
    if (!found || g_strcmp0(found->key, source->key) != 0) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED,
                       _("volume '%s' is not in storage domain pool '%s'; vol-create-from "
                         "copies only within one storage domain so far: create the volume and "
                         "vol-upload the data into it"),
                       source->name, def->name);
        return -1;
    }
    g_autoptr(SdmVolumeInfo) made =
        sdm_client_clone_volume(client, def->target.path, source->name, vol->name,
                                sdmFormatName(vol->target.format), plan->info, NULL, &error);
    if (!made) {
        sdmReportError(def->name, "cloning the volume", error);
        return -1;
    }
    return 0;
}

/* Also called on a volume still being built (virt-install polls its allocation). */
static int sdmRefreshVol(virStoragePoolObj *obj, virStorageVolDef *vol)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    struct stat sb;
    if (!sdmPoolNs(obj))
        return stockDir->refreshVol(obj, vol);
    if (vol->building) {
        if (vol->target.path && stat(vol->target.path, &sb) == 0)
            vol->target.allocation = (unsigned long long)sb.st_blocks * 512;
        return 0;
    }
    if (!(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(SdmVolumeInfo) info =
        sdm_client_lookup_volume(client, def->target.path, vol->name, &error);
    if (!info) {
        sdmReportError(def->name, "reading the volume", error);
        return -1;
    }
    sdmFillVolDef(vol, info);
    return 0;
}

static int sdmDeleteVol(virStoragePoolObj *obj, virStorageVolDef *vol, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->deleteVol(obj, vol, flags);
    virCheckFlags(0, -1);
    if (!(client = sdmPoolClient(obj)))
        return -1;
    if (!sdm_client_delete_volume(client, def->target.path, vol->name, NULL, &error)) {
        sdmReportError(def->name, "deleting the volume", error);
        return -1;
    }
    return 0;
}

static int sdmResizeVol(virStoragePoolObj *obj, virStorageVolDef *vol,
                        unsigned long long capacity, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->resizeVol(obj, vol, capacity, flags);
    /* libvirt has already turned a delta into the new capacity. */
    virCheckFlags(VIR_STORAGE_VOL_RESIZE_DELTA | VIR_STORAGE_VOL_RESIZE_SHRINK, -1);
    if (!(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(SdmVolumeInfo) info =
        sdm_client_resize_volume(client, def->target.path, vol->name, capacity, NULL, &error);
    if (!info) {
        sdmReportError(def->name, "resizing the volume", error);
        return -1;
    }
    sdmFillVolDef(vol, info);
    return 0;
}

static int sdmUnsupportedVolData(virStoragePoolObj *obj, virStorageVolDef *vol,
                                 const char *operation)
{
    virReportError(VIR_ERR_OPERATION_UNSUPPORTED,
                   _("%s of volume '%s' in storage domain pool '%s' is not supported yet; "
                     "attach the volume to a VM or use `sdm` on the host"),
                   operation, vol->name, virStoragePoolObjGetDef(obj)->name);
    return -1;
}

static int sdmUploadVol(virStoragePoolObj *obj, virStorageVolDef *vol, virStreamPtr stream,
                        unsigned long long offset, unsigned long long length,
                        unsigned int flags)
{
    if (!sdmPoolNs(obj))
        return stockDir->uploadVol(obj, vol, stream, offset, length, flags);
    return sdmUnsupportedVolData(obj, vol, "vol-upload");
}

static int sdmDownloadVol(virStoragePoolObj *obj, virStorageVolDef *vol, virStreamPtr stream,
                          unsigned long long offset, unsigned long long length,
                          unsigned int flags)
{
    if (!sdmPoolNs(obj))
        return stockDir->downloadVol(obj, vol, stream, offset, length, flags);
    return sdmUnsupportedVolData(obj, vol, "vol-download");
}

static int sdmWipeVol(virStoragePoolObj *obj, virStorageVolDef *vol, unsigned int algorithm,
                      unsigned int flags)
{
    if (!sdmPoolNs(obj))
        return stockDir->wipeVol(obj, vol, algorithm, flags);
    return sdmUnsupportedVolData(obj, vol, "vol-wipe");
}

static virStorageBackend sdmDirBackend = {
    .type = VIR_STORAGE_POOL_DIR,
    .checkPool = sdmCheckPool,
    .startPool = sdmStartPool,
    .buildPool = sdmBuildPool,
    .refreshPool = sdmRefreshPool,
    .stopPool = sdmStopPool,
    .deletePool = sdmDeletePool,
    .buildVol = sdmBuildVol,
    .buildVolFrom = sdmBuildVolFrom,
    .createVol = sdmCreateVol,
    .refreshVol = sdmRefreshVol,
    .deleteVol = sdmDeleteVol,
    .resizeVol = sdmResizeVol,
    .uploadVol = sdmUploadVol,
    .downloadVol = sdmDownloadVol,
    .wipeVol = sdmWipeVol,
};

int sdm_shim_register(void *real_fs_module)
{
    stockDir = dlsym(real_fs_module, "virStorageBackendDirectory");
    if (!stockDir) {
        VIR_ERROR(_("the stock fs module exports no virStorageBackendDirectory: %s"),
                  dlerror());
        return -1;
    }
    /* The stock dir backend has no startPool/stopPool; the callbacks above delegate only
     * where the stock one exists and leave stock pools' behaviour unchanged otherwise. */
    if (virStorageBackendRegister(&sdmDirBackend) < 0)
        return -1;
    if (virStorageBackendNamespaceInit(VIR_STORAGE_POOL_DIR, &sdmPoolNamespace) < 0)
        return -1;
    VIR_INFO("storage-domain backend registered for dir pools with <sdm:domain/>");
    return 0;
}
