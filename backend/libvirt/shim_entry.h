/* The one symbol the loader (stage 1) looks up in the shim (stage 2).
 *
 * The loader calls it once, after the ABI checks passed and before the stock fs module
 * registers: it registers our `dir` backend first (libvirt picks the first backend of a
 * pool type) and the pool XML namespace. `real_fs_module` is the dlopen handle of the
 * distro's fs module, whose stock `dir` backend serves every pool that is not ours.
 * Returns 0, or -1 with nothing registered. Not thread-safe (libvirt's driver init). */
#pragma once

#define SDM_SHIM_REGISTER_SYMBOL "sdm_shim_register"
typedef int (*SdmShimRegisterFunc)(void *real_fs_module);
