/* libsdm-client: the C API of sdmd, for programs that cannot use C++ (the libvirt storage
 * backend runs inside libvirtd).
 *
 * An SdmClient talks to the local sdmd over its peer-to-peer D-Bus socket
 * (xml/org.libvirt.Sdm1.xml). Calls block the calling thread. Operations that change
 * storage run as sdmd jobs; their functions here start the job and wait until it ends,
 * so a returned volume is committed and a returned error is the job's (the engine's code
 * and message, with its context: domain, image, volume, step).
 *
 * Thread-safety: one SdmClient may be shared by any number of threads calling at once
 * (each call is a D-Bus round trip of its own on one shared connection). Only
 * sdm_client_free must not race with other calls on the same client. Results belong to
 * the caller. Progress callbacks run on the thread that made the call, between D-Bus
 * round trips. If sdmd stops or restarts, calls in flight fail and the next call connects
 * again. The client needs no main loop; GLib delivers the connection's internal "closed"
 * notification to the global default main context, which libvirtd runs (elsewhere it is
 * simply never run, at the cost of a few bytes per lost connection).
 *
 * Errors come back as GError in the SDM_CLIENT_ERROR domain. Codes mirror sdm::ErrorCode of
 * include/sdm/status.h number for number (a C++ test checks that); messages say what is
 * wrong and what to do, and name the socket when sdmd cannot be reached. */
#ifndef SDM_CLIENT_H
#define SDM_CLIENT_H

#include <glib.h>

G_BEGIN_DECLS

/* sdmd's socket unless its configuration names another (backend/daemon/config.h). */
#define SDM_CLIENT_DEFAULT_SOCKET "/run/sdmd/sdmd.sock"
/* How long connecting (and the D-Bus handshake) may take when the caller gives 0. */
#define SDM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 5000
/* How long a call that is not a job (lookups, lists, format, attach, ...) may take. */
#define SDM_CLIENT_CALL_TIMEOUT_MS 120000

#define SDM_CLIENT_ERROR (sdm_client_error_quark())
GQuark sdm_client_error_quark(void);

/* sdm::ErrorCode, value for value. */
typedef enum {
    SDM_CLIENT_ERROR_OK = 0,           /* never the code of a GError */
    SDM_CLIENT_ERROR_INVALID_ARGUMENT, /* a bad name, size, format or option */
    SDM_CLIENT_ERROR_NOT_FOUND,        /* no such domain, image, volume or job */
    SDM_CLIENT_ERROR_ALREADY_EXISTS,
    SDM_CLIENT_ERROR_BUSY,             /* a lease or lock is held (a VM, another host) */
    SDM_CLIENT_ERROR_CORRUPT,
    SDM_CLIENT_ERROR_IO_ERROR,         /* also: sdmd cannot be reached */
    SDM_CLIENT_ERROR_NO_SPACE,
    SDM_CLIENT_ERROR_UNSUPPORTED,
    SDM_CLIENT_ERROR_TIMEOUT,          /* also: sdmd or a job did not answer in time */
    SDM_CLIENT_ERROR_CANCELLED,
    SDM_CLIENT_ERROR_INTERNAL,         /* a bug, or an sdmd of an incompatible version */
} SdmClientErrorCode;

/* The engine's spelling of a code ("invalid-argument", "no-space", ...), for logs. */
const char *sdm_client_error_code_name(SdmClientErrorCode code);

typedef struct SdmClient SdmClient;

/* Connects to sdmd at `socket_path` (NULL: SDM_CLIENT_DEFAULT_SOCKET), giving up after
 * `connect_timeout_ms` (0: SDM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS); the connections made
 * again after sdmd restarts keep that limit. */
SdmClient *sdm_client_new(const char *socket_path, guint connect_timeout_ms, GError **error);
void sdm_client_free(SdmClient *client);
const char *sdm_client_get_socket(const SdmClient *client);

/* A domain as sdmd shows it. Strings are never NULL. */
typedef struct {
    char *uuid;
    char *path;              /* where it was formatted */
    guint32 version;         /* on-storage format version */
    guint32 io_timeout;      /* seconds, of the lockspace */
    guint32 sector_size;
    guint64 alignment;       /* lease slot size in bytes */
    char *lockspace;         /* sanlock lockspace name */
    gboolean joined;         /* this host is in the lockspace (always TRUE with local leases) */
    guint32 host_id;         /* this host's id in the lockspace */
    char *durability;        /* the sync policy in force and why, e.g. "ordered (XFS)" */
    /* The filesystem holding the domain, in bytes; has_space is FALSE (and the sizes 0)
     * when sdmd does not report them. */
    gboolean has_space;
    guint64 capacity;
    guint64 allocation;
    guint64 available;
    /* Differs whenever any host added or removed a volume since the last read (compare,
     * never parse); NULL until sdmd has opened the domain. */
    char *change_token;
} SdmDomainInfo;
void sdm_domain_info_free(SdmDomainInfo *info);

/* A volume. Strings are never NULL except parent and backing_path. */
typedef struct {
    char *uuid;
    char *image;             /* uuid of the image (the chain of layers) it belongs to */
    char *name;              /* unique in its domain */
    /* "<domain uuid>/<volume uuid>": both live on shared storage, so every host and every
     * restart computes the same key, and no two volumes of any two domains share one. */
    char *key;
    char *path;              /* absolute path of the data file */
    char *format;            /* "raw" or "qcow2" */
    char *prealloc;          /* "sparse", "full" or "metadata" */
    char *legality;          /* "LEGAL", or "ILLEGAL" for a volume that must not be used */
    guint64 capacity;        /* virtual size in bytes */
    guint64 allocation;      /* bytes the data file occupies */
    char *parent;            /* uuid of the backing volume (same image), or NULL */
    char *backing_path;      /* path of the backing volume's data file, or NULL */
    gboolean leaf;           /* no volume is layered on this one */
    guint64 generation;      /* bumped by every committed metadata change */
    guint64 slot;            /* its lease's slot in the domain's lease area */
    gint64 ctime;            /* creation, seconds since the epoch */
} SdmVolumeInfo;
void sdm_volume_info_free(SdmVolumeInfo *info);

/* What a garbage collection did (or, with dry_run, would do). */
typedef struct {
    guint32 seen;            /* transaction markers found */
    guint32 collected;       /* abandoned transactions swept */
    guint32 rolled_forward;  /* of those, committed ones completed */
    guint32 live;            /* skipped: their owner still holds the protecting lease */
    guint32 errors;
    char **lines;            /* one line per marker, for people; never NULL */
} SdmGcReport;
void sdm_gc_report_free(SdmGcReport *report);

/* Job progress: `done` of `total` (bytes, for copies). Called on the waiting thread. */
typedef void (*SdmProgressFunc)(guint64 done, guint64 total, gpointer user_data);

/* How a job function waits; NULL waits forever without progress. */
typedef struct {
    /* The whole wait, in ms; 0 waits forever. When it passes, the client asks sdmd to
     * cancel the job and fails with SDM_CLIENT_ERROR_TIMEOUT. */
    guint timeout_ms;
    /* Called about four times a second while the job runs, and once at its end; NULL for
     * none. Without it the client asks sdmd about the job far less often. */
    SdmProgressFunc progress;
    gpointer user_data;
} SdmWait;

/* Every call: NULL (and the GError set) on failure. `domain` is a domain's uuid or the
 * path it was attached from; a uuid saves a round trip when volumes are returned. */

/* Makes an empty directory a domain; 0 for io_timeout, sector_size or alignment takes
 * sdmd's default. The domain is not attached. */
SdmDomainInfo *sdm_client_format_domain(SdmClient *client, const char *path,
                                        guint32 io_timeout, guint32 sector_size,
                                        guint64 alignment, GError **error);
/* Attaches a formatted domain (joins its lockspace); attaching it again is no error.
 * sdmd runs format, attach, detach and remove of one domain one at a time: a call waits
 * for one of the same domain under way (a detach with its lockspace leave, say). */
SdmDomainInfo *sdm_client_attach_domain(SdmClient *client, const char *path, GError **error);
gboolean sdm_client_detach_domain(SdmClient *client, const char *domain, GError **error);
SdmDomainInfo *sdm_client_get_domain(SdmClient *client, const char *domain, GError **error);

/* Committed volumes (never garbage), ILLEGAL ones included with their legality: a
 * GPtrArray of SdmVolumeInfo that frees its elements. */
GPtrArray *sdm_client_list_volumes(SdmClient *client, const char *domain, GError **error);
SdmVolumeInfo *sdm_client_lookup_volume(SdmClient *client, const char *domain,
                                        const char *name, GError **error);

/* The identity (uuid, image, key, path) a new volume `name` would get, chosen without
 * touching storage: libvirt hands out a volume's key and path before it is built. Pass
 * the result as `plan` to create or clone that very volume. backing: as for create. */
SdmVolumeInfo *sdm_client_plan_volume(SdmClient *client, const char *domain,
                                      const char *name, const char *backing, GError **error);

/* Jobs, waited for as `wait` says. format and prealloc: NULL for sdmd's default (raw,
 * sparse); backing: NULL, or the name of a volume to layer a qcow2 volume on (capacity 0
 * then takes the backing volume's); plan: NULL, or sdm_client_plan_volume's result for
 * the same name and backing. */
SdmVolumeInfo *sdm_client_create_volume(SdmClient *client, const char *domain,
                                        const char *name, guint64 capacity,
                                        const char *format, const char *prealloc,
                                        const char *backing, const SdmVolumeInfo *plan,
                                        const SdmWait *wait, GError **error);
/* Copies `source` (its whole chain, flattened) into a new volume `name` in a new image;
 * format NULL keeps the source's. */
SdmVolumeInfo *sdm_client_clone_volume(SdmClient *client, const char *domain,
                                       const char *source, const char *name,
                                       const char *format, const SdmVolumeInfo *plan,
                                       const SdmWait *wait, GError **error);
/* Deletes a leaf volume (the last volume of an image takes the image with it). */
gboolean sdm_client_delete_volume(SdmClient *client, const char *domain, const char *name,
                                  const SdmWait *wait, GError **error);
/* Grows a volume to `capacity` bytes; shrinking is refused. */
SdmVolumeInfo *sdm_client_resize_volume(SdmClient *client, const char *domain,
                                        const char *name, guint64 capacity,
                                        const SdmWait *wait, GError **error);

/* The libvirt <lease> element of a volume (domains attached with sanlock leases only). */
char *sdm_client_lease_xml(SdmClient *client, const char *domain, const char *name,
                           GError **error);
/* Sweeps the domain's abandoned transactions, waiting up to timeout_ms (0: forever). */
SdmGcReport *sdm_client_collect_garbage(SdmClient *client, const char *domain,
                                        gboolean dry_run, guint timeout_ms, GError **error);

/* Volume data (docs/data-operations.md). Descriptors go to sdmd as duplicates: the caller
 * keeps and closes its own. The *_start functions return the id of the job they start
 * (free it with g_free); sdm_client_wait_job gives its outcome. */

/* Starts writing what the read end `data_fd` yields into volume `name` from `offset` (at
 * most `length` bytes, 0: up to the end of a raw volume; a qcow2 volume takes a qcow2
 * file's bytes). The volume is ILLEGAL until the job ends well. Once the writer of
 * `data_fd`'s pipe has closed it, one byte written to the write end of `control_fd`'s
 * pipe confirms the end; closing that end without it (an abort, a crash) fails the job. */
char *sdm_client_upload_volume_start(SdmClient *client, const char *domain, const char *name,
                                     guint64 offset, guint64 length, int data_fd,
                                     int control_fd, GError **error);
/* Starts writing the volume's data file from `offset` (at most `length`, 0: to the end)
 * into the write end `data_fd`; sdmd closes its copy at the end, so a reader sees EOF
 * there, and the job's outcome tells a complete transfer from a failed one. */
char *sdm_client_download_volume_start(SdmClient *client, const char *domain,
                                       const char *name, guint64 offset, guint64 length,
                                       int data_fd, GError **error);
/* Waits for a job, as `wait` says: TRUE if it succeeded, else its error. */
gboolean sdm_client_wait_job(SdmClient *client, const char *job, const SdmWait *wait,
                             GError **error);
/* Asks sdmd to stop a job; it ends soon after, failed as cancelled. */
gboolean sdm_client_cancel_job(SdmClient *client, const char *job, GError **error);
/* Zeroes what the guest sees of a volume, keeping its size, format and allocation mode. */
SdmVolumeInfo *sdm_client_wipe_volume(SdmClient *client, const char *domain, const char *name,
                                      const SdmWait *wait, GError **error);
/* Copies the file open for reading at `source_fd` (raw, or a qcow2 without a backing file,
 * as source_format says; NULL: raw) into a new volume `name` of `format` (NULL: the
 * source's), of `capacity` bytes (0: the source's size). plan: as for create. */
SdmVolumeInfo *sdm_client_import_volume(SdmClient *client, const char *domain,
                                        const char *name, int source_fd,
                                        const char *source_format, const char *format,
                                        guint64 capacity, const SdmVolumeInfo *plan,
                                        const SdmWait *wait, GError **error);
/* Removes the empty domain at `path` (no volume, no transaction), which must not be
 * attached on this host; the directory itself stays. */
gboolean sdm_client_remove_domain(SdmClient *client, const char *path, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SdmClient, sdm_client_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SdmDomainInfo, sdm_domain_info_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SdmVolumeInfo, sdm_volume_info_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SdmGcReport, sdm_gc_report_free)

G_END_DECLS

#endif /* SDM_CLIENT_H */
