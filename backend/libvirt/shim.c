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
 * buildVolFrom, wipeVol, the transfers and refreshVol of a volume being built with it
 * unlocked, from any worker thread. Nothing that may wait on another host (a lease)
 * runs under the pool lock: deleteVol and resizeVol unlock it around their sdmd call, as
 * libvirt does around a wipe (docs/libvirt-backend.md). The shim's own state is the
 * per-socket client table, the table of planned volumes and the watched pools, each
 * behind its own mutex; SdmClient is thread-safe. */
#include <config.h>

#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <glib-unix.h>

#include "datatypes.h"
#include "internal.h"
#include "storage_backend.h"
#include "storage_conf.h"
#include "storage_util.h"
#include "virerror.h"
#include "virfdstream.h"
#include "virfile.h"
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

/* sdmReportError for a call that makes volume `volume`: libvirt words the error of a name
 * taken as "storage volume %s exists already", which the text must fit. */
static void sdmReportVolumeError(const char *pool, const char *volume, const char *what,
                                 const GError *error)
{
    if (!g_error_matches(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_ALREADY_EXISTS))
        return sdmReportError(pool, what, error);
    virReportError(VIR_ERR_STORAGE_VOL_EXIST, _("'%s' of storage domain pool '%s' (%s: %s)"),
                   volume, pool, what, error->message);
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
 * volume definition, with the pool unlocked), and what came of it. */
typedef enum {
    SDM_PLAN_MADE,   /* by createVol, for the build */
    SDM_PLAN_BUILT,  /* info is the volume the build made, for libvirt's refreshVol next */
    SDM_PLAN_FAILED, /* the build failed; libvirt's clean-up deleteVol is ours to answer */
} SdmPlanState;

typedef struct {
    SdmVolumeInfo *info; /* uuid, image, key, path */
    char *backing;       /* name of the backing volume, or NULL */
    SdmPlanState state;
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

static void sdmPlanPut(SdmPlan *plan, SdmPlanState state)
{
    plan->state = state;
    g_mutex_lock(&plansLock);
    if (!plans)
        plans = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                      (GDestroyNotify)sdmPlanFree);
    g_hash_table_replace(plans, plan->info->key, plan);
    g_mutex_unlock(&plansLock);
}

/* Takes the volume's plan out of the table if it is in `state`; NULL if there is none. */
static SdmPlan *sdmPlanTakeIn(const virStorageVolDef *vol, SdmPlanState state)
{
    SdmPlan *plan = NULL;
    g_mutex_lock(&plansLock);
    if (plans && vol->key)
        plan = g_hash_table_lookup(plans, vol->key);
    if (plan && plan->state == state)
        g_hash_table_steal(plans, vol->key);
    else
        plan = NULL;
    g_mutex_unlock(&plansLock);
    return plan;
}

/* The plan createVol made for a build, or an error. */
static SdmPlan *sdmPlanTake(const virStorageVolDef *vol)
{
    SdmPlan *plan = sdmPlanTakeIn(vol, SDM_PLAN_MADE);
    if (!plan)
        virReportError(VIR_ERR_INTERNAL_ERROR,
                       _("volume '%s' (key %s) was not planned before its build"), vol->name,
                       NULLSTR(vol->key));
    return plan;
}

/* libvirt refreshes a volume right after its build: the volume the build returned answers
 * that refresh without asking sdmd again. */
static void sdmPlanBuilt(SdmPlan *plan, SdmVolumeInfo *made)
{
    if (g_strcmp0(made->key, plan->info->key) != 0) {
        sdm_volume_info_free(made); /* not the volume planned: the refresh asks sdmd */
        sdmPlanFree(plan);
        return;
    }
    sdm_volume_info_free(plan->info);
    plan->info = made;
    sdmPlanPut(plan, SDM_PLAN_BUILT);
}

/* After a failed vol-clone or vol-create-from, libvirt calls deleteVol on the volume. sdmd
 * already rolled the transaction back (or its collector will, if sdmd died), so there is
 * nothing to delete, and a second call would replace the build's error - the one the user
 * must see - with its own (e.g. "cannot connect" when sdmd is the reason the build failed).
 * The failed plan stays in the table until that deleteVol takes it. */
static bool sdmPlanTakeFailed(const virStorageVolDef *vol)
{
    g_autoptr(SdmPlan) plan = sdmPlanTakeIn(vol, SDM_PLAN_FAILED);
    return plan != NULL;
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
    /* libvirt prints a backing store only when both sources have a type. */
    vol->target.type = VIR_STORAGE_TYPE_FILE;
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
        vol->target.backingStore->type = VIR_STORAGE_TYPE_FILE;
        if (vol->target.backingStore->format < VIR_STORAGE_FILE_NONE)
            vol->target.backingStore->format = VIR_STORAGE_FILE_NONE; /* refined by the list */
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

/* A listed volume's definition from sdmd's row; `by_uuid` (uuid -> SdmVolumeInfo of the
 * same listing) gives a backing store its format. */
static void sdmFillListed(virStorageVolDef *vol, const SdmVolumeInfo *info,
                          GHashTable *by_uuid)
{
    sdmFillVolDef(vol, info);
    const SdmVolumeInfo *parent = info->parent ? g_hash_table_lookup(by_uuid, info->parent)
                                               : NULL;
    if (parent && vol->target.backingStore)
        vol->target.backingStore->format = sdmFormatFromName(parent->format);
}

/* Matching the pool's volumes against sdmd's listing (sdmPoolSync). */
typedef struct {
    GHashTable *by_uuid;  /* uuid -> SdmVolumeInfo, the whole listing */
    GHashTable *unmatched; /* name -> SdmVolumeInfo, those the pool does not have yet */
    GPtrArray *stale;     /* virStorageVolDef the listing no longer has */
    bool exact;           /* no busy volume had to stay as it was */
} SdmSync;

/* A volume that a libvirt call works on with the pool unlocked holds a pointer to its
 * definition: one being built, or in use by a delete, resize, wipe or transfer. */
static bool sdmVolumeBusy(const virStorageVolDef *vol)
{
    return vol->building || vol->in_use > 0;
}

static int sdmSyncVolume(virStorageVolDef *vol, const void *opaque)
{
    SdmSync *sync = (SdmSync *)opaque;
    const SdmVolumeInfo *info = g_hash_table_lookup(sync->unmatched, vol->name);
    bool same = info && g_strcmp0(info->key, vol->key) == 0;
    if (sdmVolumeBusy(vol)) {
        /* Kept as it is. One being built is not listed until it commits; any other that
         * the listing lacks is stale once the call ends: the next round lists again. */
        if (info ? !same : !vol->building)
            sync->exact = false;
        if (info)
            g_hash_table_remove(sync->unmatched, vol->name);
        return 0;
    }
    if (!same) {
        g_ptr_array_add(sync->stale, vol);
        return 0;
    }
    sdmFillListed(vol, info, sync->by_uuid);
    g_hash_table_remove(sync->unmatched, vol->name);
    return 0;
}

/* Makes the pool's volume list sdmd's list `volumes` and sets the pool's space; volumes
 * that a libvirt call is working on keep their definitions (sdmVolumeBusy). ILLEGAL
 * volumes (a write under way, or one that failed) are listed, so that their names show as
 * taken and vol-delete, vol-upload and vol-wipe reach them, but refreshVol refuses them:
 * vol-info, vol-dumpxml, a clone from them and a guest's volume disk fail with the reason.
 * Returns 1 when the list is sdmd's exactly, 0 when a busy volume stays as it was, -1
 * with an error reported. Called with the pool locked. */
static int sdmPoolSync(virStoragePoolObj *obj, GPtrArray *volumes)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GHashTable) by_uuid = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GHashTable) unmatched = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) stale = g_ptr_array_new();
    for (guint i = 0; i < volumes->len; i++) {
        SdmVolumeInfo *info = g_ptr_array_index(volumes, i);
        g_hash_table_insert(by_uuid, info->uuid, info);
        if (!g_hash_table_insert(unmatched, info->name, info)) {
            virReportError(VIR_ERR_INTERNAL_ERROR,
                           _("pool '%s': volume '%s' (key %s) is listed twice"), def->name,
                           info->name, info->key);
            return -1;
        }
    }
    SdmSync sync = {by_uuid, unmatched, stale, true};
    virStoragePoolObjForEachVolume(obj, sdmSyncVolume, &sync);
    for (guint i = 0; i < stale->len; i++)
        virStoragePoolObjRemoveVol(obj, g_ptr_array_index(stale, i));
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init(&iter, unmatched);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        const SdmVolumeInfo *info = value;
        virStorageVolDef *vol = g_new0(virStorageVolDef, 1);
        vol->name = g_strdup(info->name);
        sdmFillListed(vol, info, by_uuid);
        if (virStoragePoolObjAddVol(obj, vol) < 0) {
            virStorageVolDefFree(vol);
            virReportError(VIR_ERR_INTERNAL_ERROR,
                           _("pool '%s': volume '%s' (key %s) clashes with another of the "
                             "pool's volumes"),
                           def->name, info->name, info->key);
            return -1;
        }
    }
    sdmPoolSpace(def);
    return sync.exact ? 1 : 0;
}

/* ---- sdmd restarted without a pool's domain ---- */

static bool sdmWatched(virStoragePoolObj *obj);

/* Attaches the domain of active pool `obj` again: sdmd restarted without it (the domains
 * of libvirt's pools are not in its configuration). NULL with `error` set if that fails;
 * NULL without it for a pool being stopped (no longer active or watched: stopPool ends
 * the watch under the pool lock before it detaches, so no attach here ever follows a
 * detach there). Returns before the lockspace is joined. Called with the pool locked. */
static SdmDomainInfo *sdmReattach(virStoragePoolObj *obj, SdmClient *client, GError **error)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    if (!virStoragePoolObjIsActive(obj) || !sdmWatched(obj))
        return NULL;
    VIR_INFO("pool '%s': attaching storage domain %s again (sdmd restarted without it)",
             def->name, def->target.path);
    return sdm_client_attach_domain(client, def->target.path, error);
}

/* After a call on the domain of active pool `obj` failed with `error`: if sdmd does not
 * serve the domain (a volume's not-found looks alike, so sdmd is asked), attaches it
 * again and returns whether to make the call once more. Only a caller without the pool
 * lock does: the call then waits for the lockspace join. Under the lock (`locked`),
 * `error` becomes a retryable one that says so. */
static bool sdmReattached(virStoragePoolObj *obj, SdmClient *client, bool locked,
                          GError **error)
{
    const char *path = virStoragePoolObjGetDef(obj)->target.path;
    if (!g_error_matches(*error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_NOT_FOUND))
        return false;
    g_autoptr(GError) lookup = NULL;
    g_autoptr(SdmDomainInfo) served = sdm_client_get_domain(client, path, &lookup);
    if (served || !g_error_matches(lookup, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_NOT_FOUND))
        return false;
    g_autoptr(GError) failed = NULL;
    if (!locked)
        virObjectLock(obj);
    g_autoptr(SdmDomainInfo) attached = sdmReattach(obj, client, &failed);
    if (!locked)
        virObjectUnlock(obj);
    if (!attached) {
        if (failed) {
            g_clear_error(error);
            g_propagate_error(error, g_steal_pointer(&failed));
        }
        return false;
    }
    if (!locked)
        return true;
    g_clear_error(error);
    g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_BUSY,
                _("sdmd had restarted without storage domain %s and is attaching it again "
                  "now (joining its lockspace takes a few seconds); retry then"),
                path);
    return false;
}

/* ---- noticing other hosts' changes ---- */

/* How often an active pool asks sdmd whether volumes came or went (one cheap call per
 * pool). Another host's create, clone or delete shows in this host's pool within this
 * interval plus one listing on a local or cluster filesystem, also while this host builds
 * volumes; on NFS add the attribute cache time of the domain's directory (acdirmin, 30 s
 * by default). */
#define SDM_WATCH_INTERVAL_US (2 * G_USEC_PER_SEC)

typedef struct {
    virStoragePoolObj *obj; /* a reference */
    char *token;            /* the change token the pool's volume list reflects */
    bool refresh_failed;    /* the stopPool that follows is libvirt's clean-up */
} SdmWatch;

static GMutex watchLock;
static GCond watchWake;
static GPtrArray *watches; /* SdmWatch*, guarded by watchLock */
static GThread *watcher;

static void sdmWatchFree(SdmWatch *watch)
{
    virObjectUnref(watch->obj);
    g_free(watch->token);
    g_free(watch);
}

/* The watch of `obj`, or NULL. Called with watchLock held. */
static SdmWatch *sdmWatchOf(virStoragePoolObj *obj)
{
    for (guint i = 0; watches && i < watches->len; i++) {
        SdmWatch *watch = g_ptr_array_index(watches, i);
        if (watch->obj == obj)
            return watch;
    }
    return NULL;
}

static bool sdmWatched(virStoragePoolObj *obj)
{
    g_mutex_lock(&watchLock);
    bool watched = sdmWatchOf(obj) != NULL;
    g_mutex_unlock(&watchLock);
    return watched;
}

/* The domain's change token from sdmd, or NULL (sdmd away, or the domain not opened yet:
 * try again next round). */
static char *sdmChangeToken(virStoragePoolObj *obj)
{
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    g_autofree char *path = NULL;
    virObjectLock(obj);
    path = g_strdup(virStoragePoolObjGetDef(obj)->target.path);
    client = sdmPoolClient(obj);
    virObjectUnlock(obj);
    if (!client) {
        virResetLastError();
        return NULL;
    }
    g_autoptr(SdmDomainInfo) info = sdm_client_get_domain(client, path, &error);
    if (!info && g_error_matches(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_NOT_FOUND)) {
        g_clear_error(&error);
        virObjectLock(obj);
        info = sdmReattach(obj, client, &error);
        virObjectUnlock(obj);
        if (error)
            VIR_WARN("cannot attach storage domain %s again: %s", path, error->message);
    }
    return info ? g_steal_pointer(&info->change_token) : NULL;
}

/* Lists the domain and makes it the pool's volume list (sdmPoolSync); whether the list is
 * now sdmd's exactly. The listing runs under the pool lock, as a stock refresh does: a
 * list fetched before a local create committed must never replace a list that already
 * shows it. Listing reads the domain and never waits on another host. */
static bool sdmRelist(virStoragePoolObj *obj)
{
    g_autoptr(GError) error = NULL;
    bool exact = false;
    virObjectLock(obj);
    SdmClient *client = sdmPoolClient(obj);
    if (client && virStoragePoolObjIsActive(obj)) {
        g_autoptr(GPtrArray) volumes = sdm_client_list_volumes(
            client, virStoragePoolObjGetDef(obj)->target.path, &error);
        exact = volumes && sdmPoolSync(obj, volumes) == 1;
    }
    virResetLastError();
    virObjectUnlock(obj);
    return exact;
}

static gpointer sdmWatcherLoop(gpointer unused G_GNUC_UNUSED)
{
    g_mutex_lock(&watchLock);
    for (;;) {
        gint64 deadline = g_get_monotonic_time() + SDM_WATCH_INTERVAL_US;
        while (g_cond_wait_until(&watchWake, &watchLock, deadline))
            ;
        /* Work on a snapshot, unlocked: sdmd calls may take a while. */
        g_autoptr(GPtrArray) round = g_ptr_array_new_with_free_func(virObjectUnref);
        for (guint i = 0; i < watches->len; i++) {
            SdmWatch *watch = g_ptr_array_index(watches, i);
            g_ptr_array_add(round, virObjectRef(watch->obj));
        }
        g_mutex_unlock(&watchLock);
        for (guint i = 0; i < round->len; i++) {
            virStoragePoolObj *obj = g_ptr_array_index(round, i);
            g_autofree char *token = sdmChangeToken(obj);
            if (!token)
                continue;
            g_mutex_lock(&watchLock);
            SdmWatch *watch = sdmWatchOf(obj);
            bool changed = watch && g_strcmp0(watch->token, token) != 0;
            g_mutex_unlock(&watchLock);
            if (!changed || !sdmRelist(obj))
                continue;
            g_mutex_lock(&watchLock);
            if ((watch = sdmWatchOf(obj))) {
                g_free(watch->token);
                watch->token = g_steal_pointer(&token);
            }
            g_mutex_unlock(&watchLock);
        }
        g_mutex_lock(&watchLock);
    }
    return NULL;
}

/* Starts watching an active pool (idempotent); the first round relists it. */
static void sdmWatchStart(virStoragePoolObj *obj)
{
    g_mutex_lock(&watchLock);
    if (!watches)
        watches = g_ptr_array_new_with_free_func((GDestroyNotify)sdmWatchFree);
    if (!sdmWatchOf(obj)) {
        SdmWatch *watch = g_new0(SdmWatch, 1);
        watch->obj = virObjectRef(obj);
        g_ptr_array_add(watches, watch);
    }
    if (!watcher)
        watcher = g_thread_new("sdm-pool-watch", sdmWatcherLoop, NULL);
    g_mutex_unlock(&watchLock);
}

/* A refresh failed (sdmd away, say) and libvirt emptied the pool's list: the first
 * round with sdmd back lists it again. libvirt then calls stopPool as a clean-up - also
 * after a refresh of its own when an upload's stream closes, with the pool left active -
 * which must not detach the domain. */
static void sdmWatchRefreshFailed(virStoragePoolObj *obj)
{
    g_mutex_lock(&watchLock);
    SdmWatch *watch = sdmWatchOf(obj);
    if (watch) {
        g_clear_pointer(&watch->token, g_free);
        watch->refresh_failed = true;
    }
    g_mutex_unlock(&watchLock);
}

/* Whether the stopPool now running is the clean-up of a failed refresh (and forgets it). */
static bool sdmWatchTakeRefreshFailed(virStoragePoolObj *obj)
{
    bool failed = false;
    g_mutex_lock(&watchLock);
    SdmWatch *watch = sdmWatchOf(obj);
    if (watch) {
        failed = watch->refresh_failed;
        watch->refresh_failed = false;
    }
    g_mutex_unlock(&watchLock);
    return failed;
}

static void sdmWatchStop(virStoragePoolObj *obj)
{
    g_mutex_lock(&watchLock);
    SdmWatch *watch = sdmWatchOf(obj);
    if (watch)
        g_ptr_array_remove_fast(watches, watch);
    g_mutex_unlock(&watchLock);
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
    if (!info && g_error_matches(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_NOT_FOUND)) {
        /* sdmd's advice is for its own CLI; a pool is built. */
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("storage domain pool '%s' is not built: %s holds no storage domain; "
                         "build the pool first (virsh pool-build %s), which formats the "
                         "directory or joins the domain another host formatted there"),
                       def->name, def->target.path, def->name);
        return -1;
    }
    if (!info) {
        sdmReportError(def->name, "attaching the domain", error);
        return -1;
    }
    *active = true;
    sdmWatchStart(obj);
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
    if (sdmWatchTakeRefreshFailed(obj)) {
        VIR_INFO("pool '%s': staying attached after a failed refresh; the watcher lists it "
                 "again when sdmd answers", def->name);
        return 0;
    }
    /* First: the watcher's next round neither lists this pool nor attaches its domain
     * again (it checks the watch under the pool lock, which this call holds). */
    sdmWatchStop(obj);
    if (!(client = sdmPoolClient(obj)) ||
        !sdm_client_detach_domain(client, def->target.path, &error)) {
        if (error)
            sdmReportError(def->name, "detaching the domain", error);
        sdmWatchStart(obj); /* the pool stays active */
        return -1;
    }
    return 0;
}

/* libvirt deletes only an inactive pool, so the domain is detached here: sdmd removes it
 * if it is empty, and refuses while it holds any volume or pending transaction. */
static int sdmDeletePool(virStoragePoolObj *obj, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->deletePool(obj, flags);
    virCheckFlags(0, -1);
    if (!(client = sdmPoolClient(obj)))
        return -1;
    if (!sdm_client_remove_domain(client, def->target.path, &error)) {
        sdmReportError(def->name, "removing the domain", error);
        return -1;
    }
    /* As stock, the pool's directory goes too; a mount point, or one holding other files,
     * stays (the domain in it is gone either way). */
    if (rmdir(def->target.path) < 0 && errno != ENOENT)
        VIR_WARN("pool '%s': the storage domain is removed, but its directory %s stays: %s",
                 def->name, def->target.path, g_strerror(errno));
    return 0;
}

static int sdmRefreshPool(virStoragePoolObj *obj)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->refreshPool(obj);
    g_autoptr(GPtrArray) volumes = NULL;
    if ((client = sdmPoolClient(obj)) &&
        !(volumes = sdm_client_list_volumes(client, def->target.path, &error))) {
        sdmReattached(obj, client, true, &error);
        sdmReportError(def->name, "listing volumes", error);
    }
    if (!volumes || sdmPoolSync(obj, volumes) < 0) {
        sdmWatchRefreshFailed(obj);
        return -1;
    }
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
    if (vol->target.compat && STRNEQ(vol->target.compat, "1.1")) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("volume '%s': qcow2 compat '%s' is not supported in a storage domain, "
                         "whose qcow2 volumes are all compat 1.1 (read by qemu 1.1 and later); "
                         "give <compat>1.1</compat> or none"),
                       vol->name, vol->target.compat);
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
        sdmReattached(obj, client, true, &error);
        sdmReportVolumeError(def->name, vol->name, "planning the volume", error);
        return -1;
    }
    plan->backing = g_strdup(backing);
    vol->type = VIR_STORAGE_VOL_FILE;
    vol->key = g_strdup(plan->info->key);
    g_free(vol->target.path);
    vol->target.path = g_strdup(plan->info->path);
    sdmPlanPut(plan, SDM_PLAN_MADE);
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
    SdmVolumeInfo *made;
    while (!(made = sdm_client_create_volume(client, def->target.path, vol->name,
                                             vol->target.capacity,
                                             sdmFormatName(vol->target.format), prealloc,
                                             plan->backing, plan->info, NULL, &error)) &&
           sdmReattached(obj, client, false, &error))
        g_clear_error(&error);
    if (!made) {
        sdmReportVolumeError(def->name, vol->name, "creating the volume", error);
        return -1;
    }
    sdmPlanBuilt(g_steal_pointer(&plan), made);
    return 0;
}

/* vol-create-from a volume of another pool (stock, or another domain): sdmd copies the
 * source file into a new volume. libvirtd opens the source and hands sdmd the descriptor,
 * so sdmd reads only what libvirtd itself may. */
static SdmVolumeInfo *sdmImportVol(virStoragePoolDef *def, SdmClient *client,
                                   virStorageVolDef *vol, virStorageVolDef *source,
                                   const SdmPlan *plan)
{
    g_autoptr(GError) error = NULL;
    const char *source_format = sdmFormatName(source->target.format);
    VIR_AUTOCLOSE fd = -1;
    if (!source_format || !sdmFormatName(vol->target.format)) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED,
                       _("volume '%s': a storage domain imports raw or qcow2 into raw or qcow2 "
                         "only, not '%s' into '%s'; convert the source first (qemu-img "
                         "convert)"),
                       vol->name, virStorageFileFormatTypeToString(source->target.format),
                       virStorageFileFormatTypeToString(vol->target.format));
        return NULL;
    }
    if ((fd = open(source->target.path, O_RDONLY | O_CLOEXEC)) < 0) {
        virReportSystemError(errno, _("cannot open %s, the source of volume '%s'"),
                             source->target.path, vol->name);
        return NULL;
    }
    SdmVolumeInfo *made = sdm_client_import_volume(
        client, def->target.path, vol->name, fd, source_format, sdmFormatName(vol->target.format),
        vol->target.capacity > source->target.capacity ? vol->target.capacity : 0, plan->info,
        NULL, &error);
    if (!made)
        sdmReportVolumeError(def->name, vol->name, "importing the volume", error);
    return made;
}

/* A clone within one domain, an import from any other pool; NULL if it failed (nothing
 * was made). */
static SdmVolumeInfo *sdmCopyVol(virStoragePoolObj *obj, SdmClient *client,
                                 virStorageVolDef *vol, virStorageVolDef *source,
                                 const SdmPlan *plan)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    g_autoptr(SdmVolumeInfo) found = NULL;
    while (!(found = sdm_client_lookup_volume(client, def->target.path, source->name, &error)) &&
           sdmReattached(obj, client, false, &error))
        g_clear_error(&error);
    if (!found || g_strcmp0(found->key, source->key) != 0)
        return sdmImportVol(def, client, vol, source, plan);
    SdmVolumeInfo *made =
        sdm_client_clone_volume(client, def->target.path, source->name, vol->name,
                                sdmFormatName(vol->target.format), plan->info, NULL, &error);
    if (!made)
        sdmReportVolumeError(def->name, vol->name, "cloning the volume", error);
    return made;
}

/* libvirt calls it as (pool, new volume, source volume). */
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
    g_autoptr(SdmVolumeInfo) made = sdmCopyVol(obj, client, vol, source, plan);
    if (!made) {
        sdmPlanPut(g_steal_pointer(&plan), SDM_PLAN_FAILED);
        return -1;
    }
    /* libvirt asks for at least the source's capacity; more grows the copy, as the stock
     * backend does. If that fails, the copy exists and libvirt's deleteVol removes it. */
    if (vol->target.capacity > made->capacity) {
        SdmVolumeInfo *grown = sdm_client_resize_volume(
            client, def->target.path, vol->name, vol->target.capacity, NULL, &error);
        if (!grown) {
            sdmReportError(def->name, "growing the copy to the capacity asked for", error);
            return -1;
        }
        sdm_volume_info_free(g_steal_pointer(&made));
        made = grown;
    }
    sdmPlanBuilt(g_steal_pointer(&plan), g_steal_pointer(&made));
    return 0;
}

/* Also called on a volume still being built (virt-install polls its allocation). */
static int sdmRefreshVol(virStoragePoolObj *obj, virStorageVolDef *vol)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    struct stat sb;
    /* libvirt's vol-create-from refreshes the source volume with the target pool: a
     * volume of another pool (not under ours) is the stock backend's. */
    if (!sdmPoolNs(obj) || !vol->target.path ||
        !STRPREFIX(vol->target.path, def->target.path) ||
        vol->target.path[strlen(def->target.path)] != '/')
        return stockDir->refreshVol(obj, vol);
    if (vol->building) {
        if (vol->target.path && stat(vol->target.path, &sb) == 0)
            vol->target.allocation = (unsigned long long)sb.st_blocks * 512;
        return 0;
    }
    g_autoptr(SdmPlan) built = sdmPlanTakeIn(vol, SDM_PLAN_BUILT);
    if (built) {
        sdmFillVolDef(vol, built->info);
        return 0;
    }
    if (!(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(SdmVolumeInfo) info =
        sdm_client_lookup_volume(client, def->target.path, vol->name, &error);
    if (!info) {
        sdmReattached(obj, client, true, &error);
        sdmReportError(def->name, "reading the volume", error);
        return -1;
    }
    if (g_strcmp0(info->legality, "LEGAL") != 0) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("volume '%s' of pool '%s' is %s: its data is being written (an upload "
                         "or a wipe) or its last write failed, so it must not be used; wait "
                         "for the write to end, or write its data again (vol-upload of the "
                         "whole volume, vol-wipe), or delete it (vol-delete)"),
                       vol->name, def->name, info->legality);
        return -1;
    }
    sdmFillVolDef(vol, info);
    return 0;
}

/* deleteVol and resizeVol wait in sdmd for the volume's lease, up to the lock timeout or
 * the expiry of a dead host's lease, which libvirt would spend holding the pool lock. They
 * drop it meanwhile, as libvirt does around a wipe: the volume is marked in use (no other
 * call deletes, resizes, wipes or transfers it, and the watcher keeps its definition) and
 * the pool has an asynchronous job (no refresh or stop meanwhile). */
static void sdmUnlockForWait(virStoragePoolObj *obj, virStorageVolDef *vol)
{
    virStoragePoolObjIncrAsyncjobs(obj);
    vol->in_use++;
    virObjectUnlock(obj);
}

static void sdmLockAfterWait(virStoragePoolObj *obj, virStorageVolDef *vol)
{
    virObjectLock(obj);
    vol->in_use--;
    virStoragePoolObjDecrAsyncjobs(obj);
}

static int sdmDeleteVol(virStoragePoolObj *obj, virStorageVolDef *vol, unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    gboolean deleted;
    if (!sdmPoolNs(obj))
        return stockDir->deleteVol(obj, vol, flags);
    virCheckFlags(0, -1);
    if (sdmPlanTakeFailed(vol))
        return 0;
    if (!(client = sdmPoolClient(obj)))
        return -1;
    sdmUnlockForWait(obj, vol);
    while (!(deleted = sdm_client_delete_volume(client, def->target.path, vol->name, NULL,
                                                &error)) &&
           sdmReattached(obj, client, false, &error))
        g_clear_error(&error);
    sdmLockAfterWait(obj, vol);
    if (!deleted) {
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
    g_autoptr(SdmVolumeInfo) info = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->resizeVol(obj, vol, capacity, flags);
    /* libvirt has already turned a delta into the new capacity. */
    virCheckFlags(VIR_STORAGE_VOL_RESIZE_DELTA | VIR_STORAGE_VOL_RESIZE_SHRINK, -1);
    if (!(client = sdmPoolClient(obj)))
        return -1;
    sdmUnlockForWait(obj, vol);
    while (!(info = sdm_client_resize_volume(client, def->target.path, vol->name, capacity, NULL,
                                             &error)) &&
           sdmReattached(obj, client, false, &error))
        g_clear_error(&error);
    sdmLockAfterWait(obj, vol);
    if (!info) {
        sdmReportError(def->name, "resizing the volume", error);
        return -1;
    }
    sdmFillVolDef(vol, info);
    return 0;
}

/* ---- volume data through libvirt streams ----
 *
 * libvirt's fd stream moves the bytes through a pipe whose other end sdmd holds (an sdmd
 * job reads or writes the volume under its lease). The stream's finish and abort are
 * wrapped: finishing waits for the job, so that any sdmd failure (a short read, the final
 * fsync) reaches the client as the finish's error and never as a silently short file;
 * an upload's finish also confirms its end to sdmd on a second pipe, which an abort or a
 * crash of libvirtd closes unconfirmed (the volume then stays ILLEGAL). */

typedef struct {
    SdmClient *client; /* borrowed: clients live as long as libvirtd */
    char *job;
    char *pool;
    const char *what;  /* "uploading the volume", "downloading the volume" */
    int data;          /* the stream's descriptor (the stream owns it) */
    int control;       /* upload: write end of the confirmation pipe; -1 otherwise */
} SdmTransfer;

static void sdmTransferFree(SdmTransfer *transfer)
{
    if (!transfer)
        return;
    VIR_FORCE_CLOSE(transfer->control);
    g_free(transfer->job);
    g_free(transfer->pool);
    g_free(transfer);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SdmTransfer, sdmTransferFree);

static GMutex transfersLock;
static GHashTable *transfers;            /* virStreamPtr -> SdmTransfer* */
static const virStreamDriver *fdStreamDriver; /* libvirt's fd stream, as opened */
static virStreamDriver sdmStreamDriver;  /* the same, finish and abort wrapped */

static SdmTransfer *sdmTransferTake(virStreamPtr stream)
{
    SdmTransfer *transfer = NULL;
    g_mutex_lock(&transfersLock);
    /* Not g_hash_table_steal_extended: libvirt's glibcompat.h renames it to a wrapper that
     * libvirt.so does not export, and the shim would fail to load. */
    if (transfers && (transfer = g_hash_table_lookup(transfers, stream))) {
        g_hash_table_steal(transfers, stream);
        VIR_DEBUG("stream %p: sdmd job %s", stream, transfer->job);
    }
    g_mutex_unlock(&transfersLock);
    return transfer;
}

/* How long a failing stream waits for its job to say why: the job has ended or is ending
 * (it closed its end of the pipe). */
enum { kFailureWaitMs = 30000 };

/* Reports why the job of a failing stream failed, in place of the pipe's own error. */
static void sdmReportTransferFailure(virStreamPtr stream)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *job = NULL;
    g_autofree char *pool = NULL;
    const char *what = NULL;
    SdmClient *client = NULL;
    const SdmWait wait = {kFailureWaitMs, NULL, NULL};
    g_mutex_lock(&transfersLock);
    SdmTransfer *transfer = transfers ? g_hash_table_lookup(transfers, stream) : NULL;
    if (transfer) {
        client = transfer->client;
        job = g_strdup(transfer->job);
        pool = g_strdup(transfer->pool);
        what = transfer->what;
    }
    g_mutex_unlock(&transfersLock);
    if (client && !sdm_client_wait_job(client, job, &wait, &error))
        sdmReportError(pool, what, error);
}

/* ---- compat: libvirt 11.3 frees the reply of a failed stream write twice ----
 * When a stream write fails, libvirt 11.3's daemon (remote_daemon_stream.c,
 * daemonStreamHandleWrite) sends the error reply and then, going by the message status it
 * read before the write, sends the same message again: libvirtd frees it twice and
 * crashes, on stock pools as on ours (a stock upload into a full filesystem does it; 9.0
 * re-reads the status and is fine). An upload of ours fails a write whenever sdmd ends the
 * job early (a busy lease, a bad offset), so there the shim drops the bytes instead: the
 * job's error then comes with the stream's error event or at its finish, both of which the
 * daemon handles. Versions between 9.0 and 11.3 are not known either way. */
#if LIBVIR_VERSION_NUMBER >= 11003000
# define SDM_COMPAT_FAILED_STREAM_WRITE_CRASHES_DAEMON 1

static bool sdmStreamHasTransfer(virStreamPtr stream)
{
    g_mutex_lock(&transfersLock);
    bool found = transfers && g_hash_table_contains(transfers, stream);
    g_mutex_unlock(&transfersLock);
    return found;
}
#endif
/* ---- end of compat ---- */

static int sdmStreamSend(virStreamPtr stream, const char *bytes, size_t nbytes)
{
    int ret = fdStreamDriver->streamSend(stream, bytes, nbytes);
    if (ret == -1)
        sdmReportTransferFailure(stream);
#ifdef SDM_COMPAT_FAILED_STREAM_WRITE_CRASHES_DAEMON
    /* Dropped, with the job's error left as the thread's: the error event that comes with
     * this write sends it (each send resets the thread's error on entry). */
    if (ret == -1 && sdmStreamHasTransfer(stream))
        return nbytes;
#endif
    return ret;
}

/* The daemon's stream event callback, called after a failure's cause is reported: the
 * daemon keeps an error already set and sends it to the client. */
typedef struct {
    virStreamEventCallback cb;
    void *opaque;
    virFreeCallback ff;
} SdmStreamCallback;

static void sdmStreamEvent(virStreamPtr stream, int events, void *opaque)
{
    SdmStreamCallback *inner = opaque;
    if (events & VIR_STREAM_EVENT_ERROR)
        sdmReportTransferFailure(stream);
    inner->cb(stream, events, inner->opaque);
}

static void sdmStreamCallbackFree(void *opaque)
{
    SdmStreamCallback *inner = opaque;
    if (inner->ff)
        inner->ff(inner->opaque);
    g_free(inner);
}

static int sdmStreamAddCallback(virStreamPtr stream, int events, virStreamEventCallback cb,
                                void *opaque, virFreeCallback ff)
{
    SdmStreamCallback *inner = g_new0(SdmStreamCallback, 1);
    inner->cb = cb;
    inner->opaque = opaque;
    inner->ff = ff;
    if (fdStreamDriver->streamEventAddCallback(stream, events, sdmStreamEvent, inner,
                                               sdmStreamCallbackFree) < 0) {
        g_free(inner);
        return -1;
    }
    return 0;
}

static int sdmStreamFinish(virStreamPtr stream)
{
    g_autoptr(SdmTransfer) transfer = sdmTransferTake(stream);
    g_autoptr(GError) error = NULL;
    gboolean done;
    int ret = 0;
    if (!transfer)
        return fdStreamDriver->streamFinish(stream);
    if (transfer->control >= 0) {
        /* The upload ends before libvirt's close, whose callback refreshes the pool: by then
         * sdmd must have made the volume LEGAL again. /dev/null takes the pipe's place under
         * the stream's descriptor (which holds no buffered data), so the stream closes that. */
        VIR_AUTOCLOSE null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null < 0 || dup3(null, transfer->data, O_CLOEXEC) < 0 ||
            safewrite(transfer->control, "", 1) != 1) {
            virReportSystemError(errno, "%s", _("cannot end the upload stream"));
            ret = -1;
        }
        VIR_FORCE_CLOSE(transfer->control);
    }
    done = sdm_client_wait_job(transfer->client, transfer->job, NULL, &error);
    if (fdStreamDriver->streamFinish(stream) < 0)
        ret = -1;
    if (!done) {
        sdmReportError(transfer->pool, transfer->what, error);
        return -1;
    }
    return ret;
}

static int sdmStreamAbort(virStreamPtr stream)
{
    g_autoptr(SdmTransfer) transfer = sdmTransferTake(stream);
    if (transfer) {
        /* Unconfirmed: the upload fails and leaves the volume ILLEGAL. */
        VIR_FORCE_CLOSE(transfer->control);
        if (!sdm_client_cancel_job(transfer->client, transfer->job, NULL))
            VIR_WARN("pool '%s': cannot cancel sdmd job %s of an aborted stream",
                     transfer->pool, transfer->job);
    }
    return fdStreamDriver->streamAbort(stream);
}

/* Starts the sdmd job of an upload or download and gives `stream` its end of the pipe. */
static int sdmStartTransfer(virStoragePoolObj *obj, virStorageVolDef *vol,
                            virStreamPtr stream, unsigned long long offset,
                            unsigned long long length, bool upload)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    g_autoptr(SdmTransfer) transfer = g_new0(SdmTransfer, 1);
    int data[2] = {-1, -1};
    int control[2] = {-1, -1};
    SdmClient *client;
    transfer->control = -1;
    if (!(client = sdmPoolClient(obj)))
        return -1;
    if (!g_unix_open_pipe(data, FD_CLOEXEC, &error) ||
        (upload && !g_unix_open_pipe(control, FD_CLOEXEC, &error))) {
        virReportError(VIR_ERR_INTERNAL_ERROR, _("cannot make a pipe for volume '%s': %s"),
                       vol->name, error->message);
        VIR_FORCE_CLOSE(data[0]);
        VIR_FORCE_CLOSE(data[1]);
        return -1;
    }
    transfer->client = client;
    transfer->pool = g_strdup(def->name);
    transfer->what = upload ? "uploading the volume" : "downloading the volume";
    transfer->control = control[1];
    while (!(transfer->job =
                 upload ? sdm_client_upload_volume_start(client, def->target.path, vol->name,
                                                         offset, length, data[0], control[0],
                                                         &error)
                        : sdm_client_download_volume_start(client, def->target.path, vol->name,
                                                           offset, length, data[1], &error)) &&
           sdmReattached(obj, client, false, &error))
        g_clear_error(&error);
    /* sdmd holds its own copies now. */
    VIR_FORCE_CLOSE(data[upload ? 0 : 1]);
    VIR_FORCE_CLOSE(control[0]);
    if (!transfer->job) {
        VIR_FORCE_CLOSE(data[upload ? 1 : 0]);
        sdmReportError(def->name, upload ? "starting the upload" : "starting the download",
                       error);
        return -1;
    }
    transfer->data = data[upload ? 1 : 0];
    if (virFDStreamOpen(stream, data[upload ? 1 : 0]) < 0) {
        VIR_FORCE_CLOSE(data[upload ? 1 : 0]);
        VIR_FORCE_CLOSE(transfer->control);
        (void)sdm_client_cancel_job(client, transfer->job, NULL);
        return -1;
    }
    g_mutex_lock(&transfersLock);
    if (!transfers)
        transfers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                          (GDestroyNotify)sdmTransferFree);
    if (!fdStreamDriver) {
        fdStreamDriver = stream->driver;
        sdmStreamDriver = *stream->driver;
        sdmStreamDriver.streamSend = sdmStreamSend;
        sdmStreamDriver.streamEventAddCallback = sdmStreamAddCallback;
        sdmStreamDriver.streamFinish = sdmStreamFinish;
        sdmStreamDriver.streamAbort = sdmStreamAbort;
    }
    stream->driver = &sdmStreamDriver;
    g_hash_table_replace(transfers, stream, g_steal_pointer(&transfer));
    g_mutex_unlock(&transfersLock);
    return 0;
}

/* Runs with the pool unlocked. A qcow2 volume takes the bytes of a qcow2 file, as stock
 * does; sdmd checks the result is one (without a backing file) before it is LEGAL. */
static int sdmUploadVol(virStoragePoolObj *obj, virStorageVolDef *vol, virStreamPtr stream,
                        unsigned long long offset, unsigned long long length,
                        unsigned int flags)
{
    if (!sdmPoolNs(obj))
        return stockDir->uploadVol(obj, vol, stream, offset, length, flags);
    virCheckFlags(VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM, -1);
    if (flags & VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) {
        virReportError(VIR_ERR_ARGUMENT_UNSUPPORTED,
                       _("volume '%s': storage domain pools take no sparse streams; upload "
                         "without --sparse (zeroed blocks in the data still become holes)"),
                       vol->name);
        return -1;
    }
    return sdmStartTransfer(obj, vol, stream, offset, length, true);
}

static int sdmDownloadVol(virStoragePoolObj *obj, virStorageVolDef *vol, virStreamPtr stream,
                          unsigned long long offset, unsigned long long length,
                          unsigned int flags)
{
    if (!sdmPoolNs(obj))
        return stockDir->downloadVol(obj, vol, stream, offset, length, flags);
    virCheckFlags(VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM, -1);
    if (flags & VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) {
        virReportError(VIR_ERR_ARGUMENT_UNSUPPORTED,
                       _("volume '%s': storage domain pools give no sparse streams; download "
                         "without --sparse"),
                       vol->name);
        return -1;
    }
    return sdmStartTransfer(obj, vol, stream, offset, length, false);
}

/* Zeroes only: a raw volume's blocks become holes (or zeroed blocks, when fully
 * allocated); a qcow2 volume is made again empty, where stock would zero its header. */
static int sdmWipeVol(virStoragePoolObj *obj, virStorageVolDef *vol, unsigned int algorithm,
                      unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) error = NULL;
    SdmClient *client;
    if (!sdmPoolNs(obj))
        return stockDir->wipeVol(obj, vol, algorithm, flags);
    virCheckFlags(0, -1);
    if (algorithm != VIR_STORAGE_VOL_WIPE_ALG_ZERO) {
        virReportError(VIR_ERR_ARGUMENT_UNSUPPORTED,
                       _("volume '%s': wipe algorithm %u is not supported in a storage domain; "
                         "use the default algorithm, zero"),
                       vol->name, algorithm);
        return -1;
    }
    if (!(client = sdmPoolClient(obj)))
        return -1;
    g_autoptr(SdmVolumeInfo) info = NULL;
    while (!(info = sdm_client_wipe_volume(client, def->target.path, vol->name, NULL, &error)) &&
           sdmReattached(obj, client, false, &error))
        g_clear_error(&error);
    if (!info) {
        sdmReportError(def->name, "wiping the volume", error);
        return -1;
    }
    return 0;
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
