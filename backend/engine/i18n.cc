/* Message formatting; see i18n.h. */
#include "backend/engine/i18n.h"

#include <cstdarg>

namespace sdm {

std::string Printf(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *text = g_strdup_vprintf(format, args);
    va_end(args);
    return text;
}

}  // namespace sdm
