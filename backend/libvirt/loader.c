/* Stage 1, the loader: installed as libvirt's `libvirt_storage_backend_fs.so`.
 *
 * libvirt's storage driver dlopens this module by its fixed name and calls
 * virStorageBackendFsRegister(). The loader uses libvirt's public API only, so it loads into
 * any libvirt. It opens the distro's real fs module, checks that the running libvirt is
 * exactly the build the shim was compiled against (version, private symbol node, build-ids
 * of libvirt.so.0, the storage driver and the real fs module), and only then loads stage 2
 * (the shim), which registers our `dir` backend ahead of the stock one. On any mismatch it
 * logs why and registers the stock backends alone: libvirtd must always start and stock
 * pools must always work.
 *
 * Called once, on libvirtd's driver-initialisation thread; not reentrant. */
#include <dlfcn.h>
#include <elf.h>
#include <libgen.h>
#include <libvirt/libvirt.h>
#include <link.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libvirt-abi.h"
#include "shim_entry.h"

/* The stock module's register function, and our own (exported) under the same name. */
typedef int (*RegisterFunc)(void);
int virStorageBackendFsRegister(void);

/* libvirtd's stderr goes to its log; the loader may not use libvirt's private logging. */
__attribute__((format(printf, 1, 2))) static void LogError(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("libvirt-sdm: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(args);
}

static bool SameFile(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* The distro's fs module: renamed by dpkg-divert in a package install, or left in place
 * when libvirtd finds us through LIBVIRT_STORAGE_BACKEND_DIR. Never ourselves. */
static const char *RealModulePath(const char *self)
{
    static const char *const candidates[] = {
        SDM_LIBVIRT_STOCK_BACKEND_DIR "/libvirt_storage_backend_fs.so.distrib",
        SDM_LIBVIRT_STOCK_BACKEND_DIR "/libvirt_storage_backend_fs.so",
    };
    const char *forced = getenv("SDM_LIBVIRT_REAL_FS_MODULE");
    if (forced && *forced)
        return forced;
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], R_OK) == 0 && !SameFile(candidates[i], self))
            return candidates[i];
    return NULL;
}

struct BuildIdQuery {
    const char *suffix; /* matched against the end of each loaded object's path */
    char hex[2 * 64 + 1];
    bool found;
};

static void HexInto(char *out, const unsigned char *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool EndsWith(const char *text, const char *suffix)
{
    size_t t = strlen(text), s = strlen(suffix);
    return t >= s && strcmp(text + t - s, suffix) == 0;
}

/* Reads NT_GNU_BUILD_ID from the PT_NOTE segments of the object named by the query. */
static int FindBuildId(struct dl_phdr_info *info, size_t size, void *data)
{
    struct BuildIdQuery *query = data;
    (void)size;
    if (!info->dlpi_name || !EndsWith(info->dlpi_name, query->suffix))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *note = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof(*note);
            const unsigned char *desc =
                (const unsigned char *)name + ((note->n_namesz + 3) & ~3u);
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0 && note->n_descsz <= 64 &&
                (const char *)desc + note->n_descsz <= end) {
                HexInto(query->hex, desc, note->n_descsz);
                query->found = true;
                return 1;
            }
            p = (const char *)desc + ((note->n_descsz + 3) & ~3u);
        }
    }
    return 0;
}

/* NULL when the object loaded under `suffix` has the expected build-id, else why not. */
static const char *CheckBuildId(const char *suffix, const char *expected, char *why,
                                size_t why_size)
{
    struct BuildIdQuery query = {.suffix = suffix};
    dl_iterate_phdr(FindBuildId, &query);
    if (!query.found)
        snprintf(why, why_size, "%s is not loaded or carries no build-id", suffix);
    else if (strcmp(query.hex, expected) != 0)
        snprintf(why, why_size, "%s has build-id %s, the shim was built for %s", suffix,
                 query.hex, expected);
    else
        return NULL;
    return why;
}

/* NULL when libvirtd runs the libvirt build the shim was compiled against, else why not. */
static const char *CheckAbi(const char *real_module, char *why, size_t why_size)
{
    unsigned long version = 0;
    const char *mismatch;
    const unsigned long built = SDM_LIBVIRT_VERSION_NUMBER;
    if (virGetVersion(&version, NULL, NULL) < 0 || version != built) {
        /* libvirt numbers a version major * 1000000 + minor * 1000 + micro. */
        snprintf(why, why_size,
                 "libvirt %lu.%lu.%lu is running, the shim was built for %lu.%lu.%lu",
                 version / 1000000, version / 1000 % 1000, version % 1000, built / 1000000,
                 built / 1000 % 1000, built % 1000);
        return why;
    }
    if (!dlvsym(RTLD_DEFAULT, "virStoragePoolObjGetDef", SDM_LIBVIRT_PRIVATE_NODE)) {
        snprintf(why, why_size, "libvirt exports no virStoragePoolObjGetDef@%s",
                 SDM_LIBVIRT_PRIVATE_NODE);
        return why;
    }
    if ((mismatch = CheckBuildId("/libvirt.so.0", SDM_BUILD_ID_LIBVIRT, why, why_size)) ||
        (mismatch = CheckBuildId("/libvirt_driver_storage.so", SDM_BUILD_ID_STORAGE_DRIVER,
                                 why, why_size)))
        return mismatch;
    return CheckBuildId(real_module, SDM_BUILD_ID_FS_MODULE, why, why_size);
}

/* The shim: beside the loader when run from a build tree or a private backend directory
 * (SDM_LIBVIRT_SHIM names it), else where `meson install` put it. */
static const char *ShimPath(void)
{
    const char *forced = getenv("SDM_LIBVIRT_SHIM");
    return forced && *forced ? forced : SDM_LIBVIRT_SHIM_PATH;
}

int virStorageBackendFsRegister(void)
{
    Dl_info self;
    char why[512];
    if (!dladdr((void *)virStorageBackendFsRegister, &self) || !self.dli_fname) {
        LogError("cannot tell where the loader itself lives; storage pools are unavailable");
        return 0;
    }
    const char *real_path = RealModulePath(self.dli_fname);
    if (!real_path) {
        LogError("the stock fs storage backend is missing (looked in %s); reinstall "
                 "libvirt-daemon-driver-storage... or libvirt-daemon; dir, fs and netfs pools "
                 "are unavailable",
                 SDM_LIBVIRT_STOCK_BACKEND_DIR);
        return 0;
    }
    void *real = dlopen(real_path, RTLD_NOW | RTLD_LOCAL);
    RegisterFunc real_register = real ? (RegisterFunc)dlsym(real, "virStorageBackendFsRegister")
                                      : NULL;
    if (!real_register) {
        LogError("cannot load the stock fs storage backend %s: %s; dir, fs and netfs pools are "
                 "unavailable",
                 real_path, dlerror());
        return 0;
    }

    const char *mismatch = CheckAbi(real_path, why, sizeof(why));
    if (mismatch) {
        LogError("not loading the storage-domain backend: %s. libvirt-sdm must be rebuilt for "
                 "the installed libvirt (%s was built for libvirt %s); storage-domain pools are "
                 "unavailable, every other pool works as stock",
                 mismatch, self.dli_fname, SDM_LIBVIRT_PACKAGE_VERSION);
        return real_register();
    }

    void *shim = dlopen(ShimPath(), RTLD_NOW | RTLD_LOCAL);
    SdmShimRegisterFunc shim_register =
        shim ? (SdmShimRegisterFunc)dlsym(shim, SDM_SHIM_REGISTER_SYMBOL) : NULL;
    if (!shim_register) {
        LogError("cannot load the storage-domain shim %s: %s; storage-domain pools are "
                 "unavailable, every other pool works as stock",
                 ShimPath(), dlerror());
        return real_register();
    }
    /* Ours first: libvirt picks the first backend registered for a pool type. */
    if (shim_register(real) < 0)
        LogError("the storage-domain shim failed to register; see the errors above");
    return real_register();
}
