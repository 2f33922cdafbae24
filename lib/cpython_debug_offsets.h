/* The check of pymortem's layout tables against the offsets CPython 3.13+
 * publishes in _Py_DebugOffsets (cpython_debug_offsets.c). */
#ifndef PM_CPYTHON_DEBUG_OFFSETS_H
#define PM_CPYTHON_DEBUG_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>

#include "python_version.h"
#include "target.h"

/* False, with why saying which field differs, when a field the tables use
 * is elsewhere in this interpreter than in its version's table; true when
 * all agree or there is nothing to check (before 3.13, no cookie: then a
 * warning). */
bool pm_cpython_check_debug_offsets(struct pm_target *t, const struct pm_python_info *py,
				    char *why, size_t why_size);

/* The releases of a minor version whose layouts were checked by hand. */
const char *pm_cpython_verified_releases(int minor);

#endif
