/* gettext for user-visible messages: _("...") translates, N_("...") only marks, and
 * Printf fills a translated printf-style template (whole sentences translate better than
 * concatenated pieces). Thread-safe. */
#pragma once

#include <glib.h>
#include <libintl.h>

#include <string>

#define SDM_GETTEXT_PACKAGE "libvirt-sdm"
#define _(text) dgettext(SDM_GETTEXT_PACKAGE, text)
#define N_(text) text

namespace sdm {

std::string Printf(const char *format, ...) G_GNUC_PRINTF(1, 2);

}  // namespace sdm
