/* gettext for user-visible messages: _("...") translates, N_("...") only marks. */
#pragma once

#include <libintl.h>

#define SDM_GETTEXT_PACKAGE "libvirt-sdm"
#define _(text) dgettext(SDM_GETTEXT_PACKAGE, text)
#define N_(text) text
