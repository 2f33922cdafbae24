/* CPython detection: is the target a CPython process, which version, where is
 * its runtime (_PyRuntime), and is it one we can analyse (3.8 to 3.15, not a
 * free-threaded build). Several independent sources are tried; the info says
 * which one answered. */
#ifndef PM_PYTHON_VERSION_H
#define PM_PYTHON_VERSION_H

#include <stdbool.h>
#include <stdint.h>

#include "target.h"

#define PM_PYTHON_MIN_MINOR 8
#define PM_PYTHON_MAX_MINOR 15

struct pm_python_info {
	bool is_python;             /* some CPython runtime was found */
	int major, minor, micro;    /* micro -1 when unknown */
	uint32_t hexversion;        /* PY_VERSION_HEX, 0 when unknown */
	bool free_threaded;         /* a 't' build (mimalloc, no GC head) */
	/* A --with-pydebug build (Py_DEBUG, the "d" ABI: Debian's python3.X-dbg):
	 * its interpreter state has more fields. Told by a function only
	 * Py_REF_DEBUG builds have, when the module's symbols are readable. */
	bool pydebug;
	bool supported;             /* 3.8..3.15 and not free-threaded */
	/* How the version was found: "Py_Version", "_Py_DebugOffsets",
	 * "version banner", "module name". */
	const char *version_source;
	/* The module holding _PyRuntime (libpython or the executable). */
	const struct pm_module *module;
	uint64_t runtime;           /* &_PyRuntime, 0 when not found */
	uint64_t type_type;         /* &PyType_Type, 0 when not found */
	/* Human-readable reason when !supported (empty otherwise). */
	char unsupported[256];
};

/* Detects once per target (cached in PM_CACHE_DETECT); *ret stays owned by
 * the target. A target that is not Python is not an error: is_python is
 * false. */
struct pm_error *pm_python_detect(struct pm_target *t,
				  const struct pm_python_info **ret);

#endif
