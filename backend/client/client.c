/* libsdm-client: the C API of sdmd over its peer-to-peer D-Bus socket; see
 * include/sdm/client.h.
 *
 * Calls go through g_dbus_connection_call_sync rather than the gdbus-codegen proxy: each
 * call needs its own timeout (a WaitJob slice, a garbage collection the caller bounds, a
 * plain lookup), a proxy has one for all, and its GObject types would clash with the
 * daemon's copy of the generated code in a program that links both. The reply types are
 * still checked, against xml/org.libvirt.Sdm1.xml, by GDBus on every reply.
 *
 * Thread-safety: `lock` guards the one shared connection; GDBusConnection itself is
 * thread-safe, so calls run in parallel and only (re)connecting is serialized. Jobs are
 * waited for by polling WaitJob in slices, which needs no main loop on the calling thread
 * (libvirtd's worker threads have none). */
#include "sdm/client.h"

#include <gio/gio.h>
#include <gio/gunixfdlist.h>
#include <libintl.h>
#include <stddef.h>
#include <string.h>

/* backend/engine/i18n.h's macro; that header is C++. */
#define _(text) dgettext("libvirt-sdm", text)

static const char kObjectPath[] = "/org/libvirt/Sdm1";
static const char kInterface[] = "org.libvirt.Sdm1.Manager";
/* A ListVolumeTable row (xml/org.libvirt.Sdm1.xml): uuid, image, name, parent, parent_path,
 * format, prealloc, legality, path, capacity, allocation, generation, slot, ctime, leaf. */
#define VOLUME_ROW_TYPE "(sssssssssttttxb)"

static const char kErrorPrefix[] = "org.libvirt.Sdm1.Error.";

/* One WaitJob call lasts at most this long without, and this long with, a progress
 * callback; the client calls again until the job ends or the caller's limit passes. */
enum { kWaitSliceMs = 10000, kProgressSliceMs = 250 };
/* Allowance for a WaitJob reply beyond the slice the daemon was asked to wait. */
enum { kReplyMarginMs = 30000 };

struct SdmClient {
    char *socket;
    guint connect_timeout_ms;
    GMutex lock;
    GDBusConnection *connection; /* guarded by lock; null or closed: connect on next use */
    /* Guarded by lock: what planning a volume here needs of each domain, by the name
     * callers give it (path or uuid); learnt from its dictionaries, dropped whenever a
     * domain is formatted, attached, detached or removed through this client. */
    GHashTable *layouts;
};

typedef struct {
    char *uuid;
    char *volume_path_template; /* sdmd's, with "{image}" and "{volume}" to fill in */
} DomainLayout;

static void domain_layout_free(gpointer data)
{
    DomainLayout *layout = data;
    g_free(layout->uuid);
    g_free(layout->volume_path_template);
    g_free(layout);
}

G_DEFINE_QUARK(sdm-client-error-quark, sdm_client_error)

/* The engine's spelling of each code (status.cc's ErrorCodeName, checked by the tests);
 * the D-Bus error names are these in CamelCase: "no-space" is Error.NoSpace. */
static const char *const kCodeNames[] = {
    [SDM_CLIENT_ERROR_OK] = "ok",
    [SDM_CLIENT_ERROR_INVALID_ARGUMENT] = "invalid-argument",
    [SDM_CLIENT_ERROR_NOT_FOUND] = "not-found",
    [SDM_CLIENT_ERROR_ALREADY_EXISTS] = "already-exists",
    [SDM_CLIENT_ERROR_BUSY] = "busy",
    [SDM_CLIENT_ERROR_CORRUPT] = "corrupt",
    [SDM_CLIENT_ERROR_IO_ERROR] = "io-error",
    [SDM_CLIENT_ERROR_NO_SPACE] = "no-space",
    [SDM_CLIENT_ERROR_UNSUPPORTED] = "unsupported",
    [SDM_CLIENT_ERROR_TIMEOUT] = "timeout",
    [SDM_CLIENT_ERROR_CANCELLED] = "cancelled",
    [SDM_CLIENT_ERROR_INTERNAL] = "internal",
};

const char *sdm_client_error_code_name(SdmClientErrorCode code)
{
    if ((unsigned)code >= G_N_ELEMENTS(kCodeNames))
        return "unknown";
    return kCodeNames[code];
}

static gboolean camel_case_of(const char *camel, const char *dashed)
{
    gboolean word_start = TRUE;
    for (; *dashed; dashed++) {
        if (*dashed == '-') {
            word_start = TRUE;
            continue;
        }
        char expected = word_start ? g_ascii_toupper(*dashed) : *dashed;
        if (*camel++ != expected)
            return FALSE;
        word_start = FALSE;
    }
    return *camel == '\0';
}

/* The code of a D-Bus error name of ours ("org.libvirt.Sdm1.Error.NoSpace"), or OK. */
static SdmClientErrorCode code_of_error_name(const char *name)
{
    if (!g_str_has_prefix(name, kErrorPrefix))
        return SDM_CLIENT_ERROR_OK;
    for (guint code = SDM_CLIENT_ERROR_INVALID_ARGUMENT; code < G_N_ELEMENTS(kCodeNames);
         code++) {
        if (camel_case_of(name + strlen(kErrorPrefix), kCodeNames[code]))
            return (SdmClientErrorCode)code;
    }
    return SDM_CLIENT_ERROR_OK;
}

/* The code of an engine spelling ("no-space"), as a failed job reports it; INTERNAL for
 * one this client does not know. */
static SdmClientErrorCode code_of_engine_name(const char *name)
{
    for (guint code = SDM_CLIENT_ERROR_INVALID_ARGUMENT; code < G_N_ELEMENTS(kCodeNames);
         code++) {
        if (g_str_equal(name, kCodeNames[code]))
            return (SdmClientErrorCode)code;
    }
    return SDM_CLIENT_ERROR_INTERNAL;
}

/* NULL or non-UTF-8 text cannot travel as a D-Bus string: refused here, with the same
 * code sdmd gives for a bad argument. */
static gboolean check_text(const char *value, const char *what, GError **error)
{
    if (!value) {
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INVALID_ARGUMENT,
                    _("no %s given (NULL); pass one"), what);
        return FALSE;
    }
    if (!g_utf8_validate(value, -1, NULL)) {
        g_autofree char *shown = g_utf8_make_valid(value, -1);
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INVALID_ARGUMENT,
                    _("%s '%s' is not valid UTF-8; sdmd takes UTF-8 names and paths only"),
                    what, shown);
        return FALSE;
    }
    return TRUE;
}

/* --- connection --- */

static void on_connected(GObject *source, GAsyncResult *result, gpointer data)
{
    (void)source;
    *(GAsyncResult **)data = g_object_ref(result);
}

static gboolean on_connect_timeout(gpointer cancellable)
{
    g_cancellable_cancel(cancellable);
    return G_SOURCE_REMOVE;
}

static void set_connect_error(GError **error, const char *socket, guint timeout_ms,
                              const GError *cause)
{
    if (g_error_matches(cause, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_TIMEOUT,
                    _("sdmd at %s did not complete the connection within %u ms; it may be "
                      "stuck or overloaded: check its log, or restart it"),
                    socket, timeout_ms);
    else if (g_error_matches(cause, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
             g_error_matches(cause, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_IO_ERROR,
                    _("cannot connect to sdmd at %s (%s): sdmd is not running there; start "
                      "it (systemctl start sdmd) or give the socket its configuration names"),
                    socket, cause->message);
    else
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_IO_ERROR,
                    _("cannot connect to sdmd at %s (%s); check that sdmd runs and that this "
                      "process may use the socket (root, or sdmd's socket_group)"),
                    socket, cause->message);
}

/* A new connection, waiting at most `timeout_ms`. The object is made in the global default
 * main context, where GDBus later announces its closing; only the handshake runs in a
 * private context, so that a timer can cancel it without a main loop of the caller's. */
static GDBusConnection *connect_to(const char *socket, guint timeout_ms, GError **error)
{
    g_autofree char *escaped = g_dbus_address_escape_value(socket);
    g_autofree char *address = g_strdup_printf("unix:path=%s", escaped);
    /* No push of the global default context here: inside libvirtd its event-loop thread
     * owns it, and another thread cannot acquire it (GLib-CRITICAL, then a crash). A
     * thread without a thread-default context builds the object in the global one. */
    g_autoptr(GDBusConnection) connection =
        g_object_new(G_TYPE_DBUS_CONNECTION, "address", address, "flags",
                     G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL);

    g_autoptr(GMainContext) context = g_main_context_new();
    g_autoptr(GCancellable) cancellable = g_cancellable_new();
    g_autoptr(GAsyncResult) result = NULL;
    g_main_context_push_thread_default(context);
    GSource *timer = g_timeout_source_new(timeout_ms);
    g_source_set_callback(timer, on_connect_timeout, cancellable, NULL);
    g_source_attach(timer, context);
    g_async_initable_init_async(G_ASYNC_INITABLE(connection), G_PRIORITY_DEFAULT, cancellable,
                                on_connected, &result);
    /* A cancelled handshake still ends with the callback. */
    while (!result)
        g_main_context_iteration(context, TRUE);
    g_source_destroy(timer);
    g_source_unref(timer);
    g_main_context_pop_thread_default(context);

    g_autoptr(GError) cause = NULL;
    if (!g_async_initable_init_finish(G_ASYNC_INITABLE(connection), result, &cause)) {
        set_connect_error(error, socket, timeout_ms, cause);
        return NULL;
    }
    return g_steal_pointer(&connection);
}

/* The shared connection (a new reference), connecting again if sdmd went away. */
static GDBusConnection *get_connection(SdmClient *client, GError **error)
{
    g_mutex_lock(&client->lock);
    if (client->connection && g_dbus_connection_is_closed(client->connection))
        g_clear_object(&client->connection);
    if (!client->connection)
        client->connection = connect_to(client->socket, client->connect_timeout_ms, error);
    GDBusConnection *connection =
        client->connection ? g_object_ref(client->connection) : NULL;
    g_mutex_unlock(&client->lock);
    return connection;
}

SdmClient *sdm_client_new(const char *socket_path, guint connect_timeout_ms, GError **error)
{
    const char *socket = socket_path ? socket_path : SDM_CLIENT_DEFAULT_SOCKET;
    if (!check_text(socket, _("socket path"), error))
        return NULL;
    SdmClient *client = g_new0(SdmClient, 1);
    client->socket = g_strdup(socket);
    client->connect_timeout_ms =
        connect_timeout_ms ? connect_timeout_ms : SDM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
    g_mutex_init(&client->lock);
    client->layouts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, domain_layout_free);
    client->connection = connect_to(client->socket, client->connect_timeout_ms, error);
    if (!client->connection) {
        sdm_client_free(client);
        return NULL;
    }
    return client;
}

void sdm_client_free(SdmClient *client)
{
    if (!client)
        return;
    if (client->connection) {
        g_dbus_connection_close_sync(client->connection, NULL, NULL);
        g_object_unref(client->connection);
    }
    if (client->layouts)
        g_hash_table_unref(client->layouts);
    g_mutex_clear(&client->lock);
    g_free(client->socket);
    g_free(client);
}

const char *sdm_client_get_socket(const SdmClient *client)
{
    return client->socket;
}

/* --- calls --- */

static void set_call_error(GError **error, const SdmClient *client, const char *method,
                           int timeout_ms, GError *cause)
{
    g_autofree char *remote = g_dbus_error_get_remote_error(cause);
    if (remote) {
        SdmClientErrorCode code = code_of_error_name(remote);
        g_dbus_error_strip_remote_error(cause);
        if (code != SDM_CLIENT_ERROR_OK)
            g_set_error_literal(error, SDM_CLIENT_ERROR, code, cause->message);
        else
            g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INTERNAL,
                        _("sdmd at %s answered %s with %s: %s; sdmd and this client may be of "
                          "different versions, install matching ones"),
                        client->socket, method, remote, cause->message);
    } else if (g_error_matches(cause, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_TIMEOUT,
                    _("sdmd at %s did not answer %s within %d s; it may be stuck: check its "
                      "log, or restart it"),
                    client->socket, method, timeout_ms / 1000);
    } else {
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_IO_ERROR,
                    _("lost the connection to sdmd at %s during %s (%s); check that sdmd is "
                      "running, then retry"),
                    client->socket, method, cause->message);
    }
}

/* Calls `method` with `args` (floating, consumed) and the descriptors in `fds` (NULL for
 * none); `timeout_ms` 0 waits forever. */
static GVariant *call_with_fds(SdmClient *client, const char *method, GVariant *args,
                               GUnixFDList *fds, const char *reply_type, guint timeout_ms,
                               GError **error)
{
    g_autoptr(GVariant) owned_args = g_variant_ref_sink(args);
    g_autoptr(GDBusConnection) connection = get_connection(client, error);
    if (!connection)
        return NULL;
    int timeout = timeout_ms == 0 || timeout_ms > G_MAXINT ? G_MAXINT : (int)timeout_ms;
    g_autoptr(GError) cause = NULL;
    GVariant *reply = g_dbus_connection_call_with_unix_fd_list_sync(
        connection, NULL, kObjectPath, kInterface, method, owned_args,
        G_VARIANT_TYPE(reply_type), G_DBUS_CALL_FLAGS_NONE, timeout, fds, NULL, NULL, &cause);
    if (!reply)
        set_call_error(error, client, method, timeout, cause);
    return reply;
}

static GVariant *call(SdmClient *client, const char *method, GVariant *args,
                      const char *reply_type, guint timeout_ms, GError **error)
{
    return call_with_fds(client, method, args, NULL, reply_type, timeout_ms, error);
}

/* The a{sv} of a "(a{sv})" reply, or NULL with `error` set. */
static GVariant *call_dict(SdmClient *client, const char *method, GVariant *args,
                           guint timeout_ms, GError **error)
{
    g_autoptr(GVariant) reply = call(client, method, args, "(a{sv})", timeout_ms, error);
    return reply ? g_variant_get_child_value(reply, 0) : NULL;
}

/* --- dictionaries ---
 *
 * Read leniently, as dbus_api.h's readers: a missing key, or one of another type, reads as
 * empty or zero (a newer sdmd may add keys). Each dictionary is walked once against a
 * table of fields: a listing of 10,000 volumes is 150,000 entries. */

typedef enum {
    kText,        /* char *, "" when missing */
    kTextOrNull,  /* char *, NULL when missing or empty */
    kStrv,        /* char **, empty when missing */
    kU32,
    kU64,
    kI64,
    kBool,
} FieldType;

typedef struct {
    const char *key;
    FieldType type;
    size_t offset;
} Field;

static void store_field(const Field *field, GVariant *value, char *out)
{
    void *at = out + field->offset;
    switch (field->type) {
    case kText:
    case kTextOrNull:
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_STRING)) {
            const char *text = g_variant_get_string(value, NULL);
            g_free(*(char **)at);
            *(char **)at = field->type == kText || *text ? g_strdup(text) : NULL;
        }
        break;
    case kStrv:
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_STRING_ARRAY)) {
            g_strfreev(*(char ***)at);
            *(char ***)at = g_variant_dup_strv(value, NULL);
        }
        break;
    case kU32:
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_UINT32))
            *(guint32 *)at = g_variant_get_uint32(value);
        break;
    case kU64:
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_UINT64))
            *(guint64 *)at = g_variant_get_uint64(value);
        break;
    case kI64:
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_INT64))
            *(gint64 *)at = g_variant_get_int64(value);
        break;
    case kBool:
        if (g_variant_is_of_type(value, G_VARIANT_TYPE_BOOLEAN))
            *(gboolean *)at = g_variant_get_boolean(value);
        break;
    }
}

/* Fills the struct at `out` (zeroed by the caller) from the a{sv} `dict`. */
static void read_dict(GVariant *dict, const Field *fields, gsize count, void *out)
{
    GVariantIter iter;
    const char *key;
    GVariant *value;
    g_variant_iter_init(&iter, dict);
    while (g_variant_iter_next(&iter, "{&sv}", &key, &value)) {
        for (gsize i = 0; i < count; i++) {
            if (g_str_equal(key, fields[i].key)) {
                store_field(&fields[i], value, out);
                break;
            }
        }
        g_variant_unref(value);
    }
    for (gsize i = 0; i < count; i++) {
        void *at = (char *)out + fields[i].offset;
        if (fields[i].type == kText && !*(char **)at)
            *(char **)at = g_strdup("");
        else if (fields[i].type == kStrv && !*(char ***)at)
            *(char ***)at = g_new0(char *, 1);
    }
}

#define FIELD(type, member, key, kind) {key, kind, offsetof(type, member)}

static const Field kDomainFields[] = {
    FIELD(SdmDomainInfo, uuid, "uuid", kText),
    FIELD(SdmDomainInfo, path, "path", kText),
    FIELD(SdmDomainInfo, version, "version", kU32),
    FIELD(SdmDomainInfo, io_timeout, "io_timeout", kU32),
    FIELD(SdmDomainInfo, sector_size, "sector_size", kU32),
    FIELD(SdmDomainInfo, alignment, "alignment", kU64),
    FIELD(SdmDomainInfo, lockspace, "lockspace", kText),
    FIELD(SdmDomainInfo, joined, "joined", kBool),
    FIELD(SdmDomainInfo, host_id, "host_id", kU32),
    FIELD(SdmDomainInfo, durability, "durability", kText),
    /* Sent once sdmd has opened the domain: the filesystem's statvfs and change token. */
    FIELD(SdmDomainInfo, capacity, "fs_capacity", kU64),
    FIELD(SdmDomainInfo, allocation, "fs_allocation", kU64),
    FIELD(SdmDomainInfo, available, "fs_available", kU64),
    FIELD(SdmDomainInfo, change_token, "change_token", kTextOrNull),
};

static const Field kVolumeFields[] = {
    FIELD(SdmVolumeInfo, uuid, "uuid", kText),
    FIELD(SdmVolumeInfo, image, "image", kText),
    FIELD(SdmVolumeInfo, name, "name", kText),
    FIELD(SdmVolumeInfo, path, "path", kText),
    FIELD(SdmVolumeInfo, format, "format", kText),
    FIELD(SdmVolumeInfo, prealloc, "prealloc", kText),
    FIELD(SdmVolumeInfo, legality, "legality", kText),
    FIELD(SdmVolumeInfo, capacity, "capacity", kU64),
    FIELD(SdmVolumeInfo, allocation, "allocation", kU64),
    FIELD(SdmVolumeInfo, parent, "parent", kTextOrNull),
    FIELD(SdmVolumeInfo, backing_path, "parent_path", kTextOrNull),
    FIELD(SdmVolumeInfo, leaf, "leaf", kBool),
    FIELD(SdmVolumeInfo, generation, "generation", kU64),
    FIELD(SdmVolumeInfo, slot, "slot", kU64),
    FIELD(SdmVolumeInfo, ctime, "ctime", kI64),
};

static const Field kGcReportFields[] = {
    FIELD(SdmGcReport, seen, "seen", kU32),
    FIELD(SdmGcReport, collected, "collected", kU32),
    FIELD(SdmGcReport, rolled_forward, "rolled_forward", kU32),
    FIELD(SdmGcReport, live, "live", kU32),
    FIELD(SdmGcReport, errors, "errors", kU32),
    FIELD(SdmGcReport, lines, "lines", kStrv),
};

/* What the client needs of a job's dictionary. */
typedef struct {
    char *state;
    guint64 done;
    guint64 total;
    char *error_code;
    char *error_message;
} JobStatus;

static const Field kJobFields[] = {
    FIELD(JobStatus, state, "state", kText),
    FIELD(JobStatus, done, "done", kU64),
    FIELD(JobStatus, total, "total", kU64),
    FIELD(JobStatus, error_code, "error_code", kText),
    FIELD(JobStatus, error_message, "error_message", kText),
};

#undef FIELD

static void job_status_clear(JobStatus *job)
{
    g_free(job->state);
    g_free(job->error_code);
    g_free(job->error_message);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(JobStatus, job_status_clear)

static SdmDomainInfo *domain_from_dict(GVariant *dict)
{
    SdmDomainInfo *info = g_new0(SdmDomainInfo, 1);
    read_dict(dict, kDomainFields, G_N_ELEMENTS(kDomainFields), info);
    g_autoptr(GVariant) available = g_variant_lookup_value(dict, "fs_available",
                                                           G_VARIANT_TYPE_UINT64);
    info->has_space = available != NULL;
    return info;
}

void sdm_domain_info_free(SdmDomainInfo *info)
{
    if (!info)
        return;
    g_free(info->uuid);
    g_free(info->path);
    g_free(info->lockspace);
    g_free(info->durability);
    g_free(info->change_token);
    g_free(info);
}

/* A volume as sdmd describes it; its key joins the "domain" sdmd names with its uuid. */
static SdmVolumeInfo *volume_from_dict(GVariant *dict)
{
    SdmVolumeInfo *info = g_new0(SdmVolumeInfo, 1);
    read_dict(dict, kVolumeFields, G_N_ELEMENTS(kVolumeFields), info);
    const char *domain = "";
    g_variant_lookup(dict, "domain", "&s", &domain);
    info->key = g_strdup_printf("%s/%s", domain, info->uuid);
    return info;
}

void sdm_volume_info_free(SdmVolumeInfo *info)
{
    if (!info)
        return;
    g_free(info->uuid);
    g_free(info->image);
    g_free(info->name);
    g_free(info->key);
    g_free(info->path);
    g_free(info->format);
    g_free(info->prealloc);
    g_free(info->legality);
    g_free(info->parent);
    g_free(info->backing_path);
    g_free(info);
}

void sdm_gc_report_free(SdmGcReport *report)
{
    if (!report)
        return;
    g_strfreev(report->lines);
    g_free(report);
}

/* --- domains --- */

static void forget_layouts(SdmClient *client)
{
    g_mutex_lock(&client->lock);
    g_hash_table_remove_all(client->layouts);
    g_mutex_unlock(&client->lock);
}

/* Keeps what `dict` (a domain's) says of its layout under `name`, if sdmd says it. */
static void learn_layout(SdmClient *client, const char *name, GVariant *dict)
{
    const char *uuid = NULL, *template = NULL;
    if (!g_variant_lookup(dict, "uuid", "&s", &uuid) ||
        !g_variant_lookup(dict, "volume_path_template", "&s", &template))
        return;
    DomainLayout *layout = g_new0(DomainLayout, 1);
    layout->uuid = g_strdup(uuid);
    layout->volume_path_template = g_strdup(template);
    g_mutex_lock(&client->lock);
    g_hash_table_replace(client->layouts, g_strdup(name), layout);
    g_mutex_unlock(&client->lock);
}

/* A domain method's dictionary as SdmDomainInfo; remembered under `name` if not NULL. */
static SdmDomainInfo *domain_call(SdmClient *client, const char *method, GVariant *args,
                                  const char *name, GError **error)
{
    g_autoptr(GVariant) dict = call_dict(client, method, args, SDM_CLIENT_CALL_TIMEOUT_MS,
                                         error);
    if (dict && name)
        learn_layout(client, name, dict);
    return dict ? domain_from_dict(dict) : NULL;
}

SdmDomainInfo *sdm_client_format_domain(SdmClient *client, const char *path,
                                        guint32 io_timeout, guint32 sector_size,
                                        guint64 alignment, GError **error)
{
    if (!check_text(path, _("domain path"), error))
        return NULL;
    GVariantBuilder options;
    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    if (io_timeout)
        g_variant_builder_add(&options, "{sv}", "io_timeout", g_variant_new_uint32(io_timeout));
    if (sector_size)
        g_variant_builder_add(&options, "{sv}", "sector_size",
                              g_variant_new_uint32(sector_size));
    if (alignment)
        g_variant_builder_add(&options, "{sv}", "alignment", g_variant_new_uint64(alignment));
    forget_layouts(client);
    return domain_call(client, "FormatDomain", g_variant_new("(sa{sv})", path, &options), NULL,
                       error);
}

SdmDomainInfo *sdm_client_attach_domain(SdmClient *client, const char *path, GError **error)
{
    if (!check_text(path, _("domain path"), error))
        return NULL;
    forget_layouts(client);
    return domain_call(client, "AttachDomain", g_variant_new("(s)", path), path, error);
}

gboolean sdm_client_detach_domain(SdmClient *client, const char *domain, GError **error)
{
    if (!check_text(domain, _("domain"), error))
        return FALSE;
    forget_layouts(client);
    g_autoptr(GVariant) reply = call(client, "DetachDomain", g_variant_new("(s)", domain), "()",
                                     SDM_CLIENT_CALL_TIMEOUT_MS, error);
    return reply != NULL;
}

SdmDomainInfo *sdm_client_get_domain(SdmClient *client, const char *domain, GError **error)
{
    if (!check_text(domain, _("domain"), error))
        return NULL;
    return domain_call(client, "GetDomain", g_variant_new("(s)", domain), domain, error);
}

/* The uuid of `domain` (a uuid or a path), for volume keys: a uuid as given, a path asked
 * of sdmd. */
static char *domain_uuid(SdmClient *client, const char *domain, GError **error)
{
    if (!check_text(domain, _("domain"), error))
        return NULL;
    if (g_uuid_string_is_valid(domain))
        return g_strdup(domain);
    g_autoptr(SdmDomainInfo) info = sdm_client_get_domain(client, domain, error);
    return info ? g_steal_pointer(&info->uuid) : NULL;
}

/* --- volumes --- */

GPtrArray *sdm_client_list_volumes(SdmClient *client, const char *domain, GError **error)
{
    g_autofree char *uuid = domain_uuid(client, domain, error);
    if (!uuid)
        return NULL;
    g_autoptr(GVariant) reply = call(client, "ListVolumeTable", g_variant_new("(s)", uuid),
                                     "(a" VOLUME_ROW_TYPE ")", SDM_CLIENT_CALL_TIMEOUT_MS,
                                     error);
    if (!reply)
        return NULL;
    g_autoptr(GVariant) list = g_variant_get_child_value(reply, 0);
    GPtrArray *volumes = g_ptr_array_new_full((guint)g_variant_n_children(list),
                                              (GDestroyNotify)sdm_volume_info_free);
    GVariantIter rows;
    g_variant_iter_init(&rows, list);
    for (;;) {
        SdmVolumeInfo *info = g_new0(SdmVolumeInfo, 1);
        if (!g_variant_iter_next(&rows, VOLUME_ROW_TYPE, &info->uuid, &info->image,
                                 &info->name, &info->parent, &info->backing_path, &info->format, &info->prealloc,
                                 &info->legality, &info->path, &info->capacity,
                                 &info->allocation, &info->generation, &info->slot,
                                 &info->ctime, &info->leaf)) {
            g_free(info);
            break;
        }
        if (!*info->parent)
            g_clear_pointer(&info->parent, g_free);
        if (!*info->backing_path)
            g_clear_pointer(&info->backing_path, g_free);
        info->key = g_strdup_printf("%s/%s", uuid, info->uuid);
        g_ptr_array_add(volumes, info);
    }
    return volumes;
}

SdmVolumeInfo *sdm_client_lookup_volume(SdmClient *client, const char *domain,
                                        const char *name, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return NULL;
    g_autoptr(GVariant) dict = call_dict(client, "LookupVolume",
                                         g_variant_new("(ss)", domain, name),
                                         SDM_CLIENT_CALL_TIMEOUT_MS, error);
    return dict ? volume_from_dict(dict) : NULL;
}

/* --- jobs --- */

static void cancel_job(SdmClient *client, const char *id)
{
    /* Best effort: the job may have ended meanwhile, and the caller hears of the timeout
     * either way. */
    g_autoptr(GVariant) reply = call(client, "CancelJob", g_variant_new("(s)", id), "()",
                                     SDM_CLIENT_CALL_TIMEOUT_MS, NULL);
}

static gboolean job_finished(const char *state)
{
    return g_str_equal(state, "done") || g_str_equal(state, "failed") ||
           g_str_equal(state, "aborted");
}

/* A finished job's final dictionary `dict` (taken): itself if the job succeeded, else NULL
 * with the job's error in `error`. */
static GVariant *job_outcome(GVariant *dict, const char *id, GError **error)
{
    g_auto(JobStatus) job = {0};
    read_dict(dict, kJobFields, G_N_ELEMENTS(kJobFields), &job);
    if (g_str_equal(job.state, "done"))
        return dict;
    g_variant_unref(dict);
    if (*job.error_message)
        g_set_error_literal(error, SDM_CLIENT_ERROR, code_of_engine_name(job.error_code),
                            job.error_message);
    else
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INTERNAL,
                    _("sdmd job %s ended %s without saying why; its log may tell"), id,
                    job.state);
    return NULL;
}

/* Waits for job `id` to end: its final dictionary if it succeeded, else NULL with the
 * job's error (or why waiting failed) in `error`. */
static GVariant *wait_job(SdmClient *client, const char *id, const SdmWait *wait,
                          GError **error)
{
    static const SdmWait kForever = {0, NULL, NULL};
    if (!wait)
        wait = &kForever;
    gint64 deadline = wait->timeout_ms
                          ? g_get_monotonic_time() + (gint64)wait->timeout_ms * 1000
                          : 0;
    guint slice = wait->progress ? kProgressSliceMs : kWaitSliceMs;
    for (;;) {
        guint this_slice = slice;
        if (deadline) {
            gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
            if (left_ms <= 0) {
                cancel_job(client, id);
                g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_TIMEOUT,
                            _("sdmd job %s did not end within %u ms, so it was asked to stop; "
                              "it may still have completed: look the volume up before "
                              "retrying"),
                            id, wait->timeout_ms);
                return NULL;
            }
            this_slice = (guint)MIN((gint64)slice, left_ms);
        }
        g_autoptr(GVariant) dict = call_dict(client, "WaitJob",
                                             g_variant_new("(su)", id, this_slice),
                                             this_slice + kReplyMarginMs, error);
        if (!dict)
            return NULL;
        g_auto(JobStatus) job = {0};
        read_dict(dict, kJobFields, G_N_ELEMENTS(kJobFields), &job);
        if (wait->progress && job.total > 0)
            wait->progress(job.done, job.total, wait->user_data);
        if (job_finished(job.state))
            return job_outcome(g_steal_pointer(&dict), id, error);
    }
}

/* The method that starts the same job as `method` and answers when it ends, if any. */
static const char *and_wait_method(const char *method)
{
    return g_str_equal(method, "CreateVolume") ? "CreateVolumeAndWait" : NULL;
}

/* Starts a job with `method` (its reply is the job id) and waits for it. A wait for ever
 * without progress needs no id in between: one call, where the method has the form. */
static GVariant *run_job(SdmClient *client, const char *method, GVariant *args,
                         const SdmWait *wait, GError **error)
{
    const char *and_wait = and_wait_method(method);
    if (and_wait && (!wait || (!wait->timeout_ms && !wait->progress))) {
        GVariant *dict = call_dict(client, and_wait, args, 0, error);
        if (!dict)
            return NULL;
        const char *id = "";
        g_variant_lookup(dict, "id", "&s", &id);
        g_autofree char *job = g_strdup(id);
        return job_outcome(dict, job, error);
    }
    g_autoptr(GVariant) reply = call(client, method, args, "(s)", SDM_CLIENT_CALL_TIMEOUT_MS,
                                     error);
    if (!reply)
        return NULL;
    const char *id = NULL;
    g_variant_get(reply, "(&s)", &id);
    return wait_job(client, id, wait, error);
}

/* Runs a job that makes or changes volume and returns that volume. */
static SdmVolumeInfo *run_volume_job(SdmClient *client, const char *method, GVariant *args,
                                     const SdmWait *wait, GError **error)
{
    g_autoptr(GVariant) job = run_job(client, method, args, wait, error);
    if (!job)
        return NULL;
    g_autoptr(GVariant) result = g_variant_lookup_value(job, "result", G_VARIANT_TYPE_VARDICT);
    if (!result) {
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INTERNAL,
                    _("sdmd's %s job succeeded without reporting the volume it made; please "
                      "report this bug, and look the volume up meanwhile"),
                    method);
        return NULL;
    }
    return volume_from_dict(result);
}

/* `made`, the volume a job made from `plan`. One made elsewhere than planned means a
 * layout learnt here went stale (the domain was made again under the same name through
 * another client): they are all forgotten, and the next plan asks sdmd. */
static SdmVolumeInfo *check_plan(SdmClient *client, const SdmVolumeInfo *plan,
                                 SdmVolumeInfo *made)
{
    if (made && plan && (g_strcmp0(made->key, plan->key) || g_strcmp0(made->path, plan->path)))
        forget_layouts(client);
    return made;
}

static void add_option(GVariantBuilder *options, const char *key, const char *value)
{
    if (value)
        g_variant_builder_add(options, "{sv}", key, g_variant_new_string(value));
}

static void add_plan(GVariantBuilder *options, const SdmVolumeInfo *plan)
{
    if (!plan)
        return;
    add_option(options, "uuid", plan->uuid);
    add_option(options, "image", plan->image);
}

/* A name every sdmd takes (printable ASCII of a few kinds, not "." or ".."): such a
 * volume is planned here. sdmd plans any other, and says what is wrong with a bad one. */
static gboolean plain_name(const char *name)
{
    size_t length = strlen(name);
    if (length == 0 || length > 255 || g_str_equal(name, ".") || g_str_equal(name, ".."))
        return FALSE;
    for (const char *p = name; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-_.+:@,=", *p))
            return FALSE;
    }
    return TRUE;
}

/* A copy of the layout learnt for `domain` into `out`; FALSE if none is known. */
static gboolean known_layout(SdmClient *client, const char *domain, DomainLayout *out)
{
    g_mutex_lock(&client->lock);
    const DomainLayout *known = g_hash_table_lookup(client->layouts, domain);
    if (known) {
        out->uuid = g_strdup(known->uuid);
        out->volume_path_template = g_strdup(known->volume_path_template);
    }
    g_mutex_unlock(&client->lock);
    return known != NULL;
}

/* The layout of `domain`, asked of sdmd once; FALSE without `error` set if this sdmd
 * does not say it. */
static gboolean layout_of(SdmClient *client, const char *domain, DomainLayout *out,
                          GError **error)
{
    if (known_layout(client, domain, out))
        return TRUE;
    g_autoptr(GVariant) dict = call_dict(client, "GetDomain", g_variant_new("(s)", domain),
                                         SDM_CLIENT_CALL_TIMEOUT_MS, error);
    if (!dict)
        return FALSE;
    learn_layout(client, domain, dict);
    return known_layout(client, domain, out);
}

/* A plan made without a round trip: what sdmd's PlanVolume does for a volume without a
 * backing store (two new uuids, the path its layout gives them), saving libvirt's
 * createVol a call while it holds the pool's lock. NULL without `error` set: ask sdmd. */
static SdmVolumeInfo *plan_here(SdmClient *client, const char *domain, const char *name,
                                GError **error)
{
    DomainLayout layout = {0};
    if (!layout_of(client, domain, &layout, error))
        return NULL;
    SdmVolumeInfo *info = g_new0(SdmVolumeInfo, 1);
    info->uuid = g_uuid_string_random();
    info->image = g_uuid_string_random();
    info->name = g_strdup(name);
    info->key = g_strdup_printf("%s/%s", layout.uuid, info->uuid);
    GString *path = g_string_new(layout.volume_path_template);
    g_string_replace(path, "{image}", info->image, 1);
    g_string_replace(path, "{volume}", info->uuid, 1);
    info->path = g_string_free(path, FALSE);
    g_free(layout.uuid);
    g_free(layout.volume_path_template);
    return info;
}

SdmVolumeInfo *sdm_client_plan_volume(SdmClient *client, const char *domain,
                                      const char *name, const char *backing, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error) ||
        (backing && !check_text(backing, _("backing volume name"), error)))
        return NULL;
    if (!backing && plain_name(name)) {
        GError *failed = NULL;
        SdmVolumeInfo *info = plan_here(client, domain, name, &failed);
        if (info || failed) {
            if (failed)
                g_propagate_error(error, failed);
            return info;
        }
    }
    GVariantBuilder options;
    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    add_option(&options, "backing", backing);
    g_autoptr(GVariant) dict = call_dict(client, "PlanVolume",
                                         g_variant_new("(ssa{sv})", domain, name, &options),
                                         SDM_CLIENT_CALL_TIMEOUT_MS, error);
    return dict ? volume_from_dict(dict) : NULL;
}

SdmVolumeInfo *sdm_client_create_volume(SdmClient *client, const char *domain,
                                        const char *name, guint64 capacity,
                                        const char *format, const char *prealloc,
                                        const char *backing, const SdmVolumeInfo *plan,
                                        const SdmWait *wait, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error) ||
        (format && !check_text(format, _("format"), error)) ||
        (prealloc && !check_text(prealloc, _("preallocation"), error)) ||
        (backing && !check_text(backing, _("backing volume name"), error)))
        return NULL;
    GVariantBuilder options;
    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    add_option(&options, "format", format);
    add_option(&options, "prealloc", prealloc);
    add_option(&options, "backing", backing);
    add_plan(&options, plan);
    return check_plan(client, plan,
                      run_volume_job(client, "CreateVolume",
                                     g_variant_new("(sst@a{sv})", domain, name, capacity,
                                                   g_variant_builder_end(&options)),
                                     wait, error));
}

SdmVolumeInfo *sdm_client_clone_volume(SdmClient *client, const char *domain,
                                       const char *source, const char *name,
                                       const char *format, const SdmVolumeInfo *plan,
                                       const SdmWait *wait, GError **error)
{
    if (!check_text(domain, _("domain"), error) ||
        !check_text(source, _("source volume name"), error) ||
        !check_text(name, _("volume name"), error) ||
        (format && !check_text(format, _("format"), error)))
        return NULL;
    GVariantBuilder options;
    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    add_option(&options, "format", format);
    add_plan(&options, plan);
    return check_plan(client, plan,
                      run_volume_job(client, "CloneVolume",
                                     g_variant_new("(sss@a{sv})", domain, source, name,
                                                   g_variant_builder_end(&options)),
                                     wait, error));
}

gboolean sdm_client_delete_volume(SdmClient *client, const char *domain, const char *name,
                                  const SdmWait *wait, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return FALSE;
    g_autoptr(GVariant) job = run_job(client, "DeleteVolume",
                                      g_variant_new("(ss)", domain, name), wait, error);
    return job != NULL;
}

SdmVolumeInfo *sdm_client_resize_volume(SdmClient *client, const char *domain,
                                        const char *name, guint64 capacity,
                                        const SdmWait *wait, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return NULL;
    return run_volume_job(client, "ResizeVolume",
                          g_variant_new("(sst)", domain, name, capacity), wait, error);
}

/* --- leases and maintenance --- */

char *sdm_client_lease_xml(SdmClient *client, const char *domain, const char *name,
                           GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return NULL;
    g_autoptr(GVariant) reply = call(client, "GetLeaseXml",
                                     g_variant_new("(ss)", domain, name), "(s)",
                                     SDM_CLIENT_CALL_TIMEOUT_MS, error);
    if (!reply)
        return NULL;
    char *xml = NULL;
    g_variant_get(reply, "(s)", &xml);
    return xml;
}

SdmGcReport *sdm_client_collect_garbage(SdmClient *client, const char *domain,
                                        gboolean dry_run, guint timeout_ms, GError **error)
{
    if (!check_text(domain, _("domain"), error))
        return NULL;
    g_autoptr(GVariant) dict = call_dict(client, "CollectGarbage",
                                         g_variant_new("(sb)", domain, dry_run), timeout_ms,
                                         error);
    if (!dict)
        return NULL;
    SdmGcReport *report = g_new0(SdmGcReport, 1);
    read_dict(dict, kGcReportFields, G_N_ELEMENTS(kGcReportFields), report);
    return report;
}

/* --- volume data and domain removal --- */

/* A job started with descriptors: sdmd receives duplicates, the caller keeps its own. */
static char *start_fd_job(SdmClient *client, const char *method, GVariant *args,
                          const int *fds, int count, GError **error)
{
    g_autoptr(GUnixFDList) list = g_unix_fd_list_new();
    g_autoptr(GVariant) owned_args = g_variant_ref_sink(args);
    for (int i = 0; i < count; i++) {
        if (fds[i] < 0) {
            g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INVALID_ARGUMENT,
                        _("%s got no file descriptor (%d); pass an open one"), method, fds[i]);
            return NULL;
        }
        if (g_unix_fd_list_append(list, fds[i], error) < 0)
            return NULL;
    }
    g_autoptr(GVariant) reply = call_with_fds(client, method, g_steal_pointer(&owned_args),
                                              list, "(s)", SDM_CLIENT_CALL_TIMEOUT_MS, error);
    if (!reply)
        return NULL;
    char *id = NULL;
    g_variant_get(reply, "(s)", &id);
    return id;
}

static GVariant *no_options(void)
{
    return g_variant_new_array(G_VARIANT_TYPE("{sv}"), NULL, 0);
}

char *sdm_client_upload_volume_start(SdmClient *client, const char *domain, const char *name,
                                     guint64 offset, guint64 length, int data_fd,
                                     int control_fd, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return NULL;
    const int fds[] = {data_fd, control_fd};
    return start_fd_job(client, "UploadVolume",
                        g_variant_new("(sstthh@a{sv})", domain, name, offset, length, 0, 1,
                                      no_options()),
                        fds, 2, error);
}

char *sdm_client_download_volume_start(SdmClient *client, const char *domain,
                                       const char *name, guint64 offset, guint64 length,
                                       int data_fd, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return NULL;
    const int fds[] = {data_fd};
    return start_fd_job(client, "DownloadVolume",
                        g_variant_new("(sstth@a{sv})", domain, name, offset, length, 0,
                                      no_options()),
                        fds, 1, error);
}

gboolean sdm_client_wait_job(SdmClient *client, const char *job, const SdmWait *wait,
                             GError **error)
{
    if (!check_text(job, _("job id"), error))
        return FALSE;
    g_autoptr(GVariant) done = wait_job(client, job, wait, error);
    return done != NULL;
}

gboolean sdm_client_cancel_job(SdmClient *client, const char *job, GError **error)
{
    if (!check_text(job, _("job id"), error))
        return FALSE;
    g_autoptr(GVariant) reply = call(client, "CancelJob", g_variant_new("(s)", job), "()",
                                     SDM_CLIENT_CALL_TIMEOUT_MS, error);
    return reply != NULL;
}

SdmVolumeInfo *sdm_client_wipe_volume(SdmClient *client, const char *domain, const char *name,
                                      const SdmWait *wait, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error))
        return NULL;
    GVariantBuilder options;
    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    add_option(&options, "algorithm", "zero");
    return run_volume_job(client, "WipeVolume",
                          g_variant_new("(ss@a{sv})", domain, name,
                                        g_variant_builder_end(&options)),
                          wait, error);
}

SdmVolumeInfo *sdm_client_import_volume(SdmClient *client, const char *domain,
                                        const char *name, int source_fd,
                                        const char *source_format, const char *format,
                                        guint64 capacity, const SdmVolumeInfo *plan,
                                        const SdmWait *wait, GError **error)
{
    if (!check_text(domain, _("domain"), error) || !check_text(name, _("volume name"), error) ||
        (source_format && !check_text(source_format, _("source format"), error)) ||
        (format && !check_text(format, _("format"), error)))
        return NULL;
    GVariantBuilder options;
    g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
    add_option(&options, "source_format", source_format);
    add_option(&options, "format", format);
    if (capacity)
        g_variant_builder_add(&options, "{sv}", "capacity", g_variant_new_uint64(capacity));
    add_plan(&options, plan);
    const int fds[] = {source_fd};
    g_autofree char *job = start_fd_job(client, "ImportVolume",
                                        g_variant_new("(ssh@a{sv})", domain, name, 0,
                                                      g_variant_builder_end(&options)),
                                        fds, 1, error);
    if (!job)
        return NULL;
    g_autoptr(GVariant) done = wait_job(client, job, wait, error);
    if (!done)
        return NULL;
    g_autoptr(GVariant) result = g_variant_lookup_value(done, "result", G_VARIANT_TYPE_VARDICT);
    if (!result) {
        g_set_error(error, SDM_CLIENT_ERROR, SDM_CLIENT_ERROR_INTERNAL,
                    _("sdmd's import job succeeded without reporting the volume it made; "
                      "please report this bug, and look the volume up meanwhile"));
        return NULL;
    }
    return check_plan(client, plan, volume_from_dict(result));
}

gboolean sdm_client_remove_domain(SdmClient *client, const char *path, GError **error)
{
    if (!check_text(path, _("domain path"), error))
        return FALSE;
    forget_layouts(client);
    g_autoptr(GVariant) reply = call(client, "RemoveDomain", g_variant_new("(s)", path), "()",
                                     SDM_CLIENT_CALL_TIMEOUT_MS, error);
    return reply != NULL;
}
