/* CPython version detection. Sources, most trusted first: the Py_Version
 * constant (3.11+), the _Py_DebugOffsets header at the start of _PyRuntime
 * (3.13+), the Py_GetVersion() banner the interpreter formats into writable
 * memory at start-up, and the name of libpython or of the executable. */
#include "python_version.h"
#include "cpython_debug_offsets.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* _Py_DebugOffsets (3.13+) starts with this cookie, then the version. */
static const char debug_offsets_cookie[8] = { 'x', 'd', 'e', 'b', 'u', 'g', 'p', 'y' };
enum {
	DEBUG_OFFSETS_VERSION = 8,
	DEBUG_OFFSETS_FREE_THREADED = 16,
	BANNER_SCAN_MAX = 64u << 20,    /* writable bytes searched for the banner */
};

static const char *path_basename(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* "libpython3.12.so.1.0", "python3.13t", "libpython3.11d.so": parse the
 * "3.X" that follows the prefix, and a 't' flag right after it. */
static bool parse_versioned_name(const char *name, const char *prefix,
				 int *minor, bool *free_threaded)
{
	size_t n = strlen(prefix);
	if (strncmp(name, prefix, n) != 0 || strncmp(name + n, "3.", 2) != 0)
		return false;
	const char *p = name + n + 2;
	if (!isdigit((unsigned char)*p))
		return false;
	char *end;
	long m = strtol(p, &end, 10);
	if (m < 0 || m > 99)
		return false;
	*minor = (int)m;
	*free_threaded = *end == 't';
	return true;
}

static bool version_from_module_name(const struct pm_module *m, int *minor,
				     bool *free_threaded)
{
	if (!m || !m->path)
		return false;
	const char *base = path_basename(m->path);
	return parse_versioned_name(base, "libpython", minor, free_threaded) ||
	       parse_versioned_name(base, "python", minor, free_threaded);
}

static void info_set_hex(struct pm_python_info *info, uint64_t hex,
			 const char *source)
{
	info->hexversion = (uint32_t)hex;
	info->major = (int)((hex >> 24) & 0xff);
	info->minor = (int)((hex >> 16) & 0xff);
	info->micro = (int)((hex >> 8) & 0xff);
	info->version_source = source;
}

static bool hex_plausible(uint64_t hex)
{
	return (hex >> 32) == 0 && ((hex >> 24) & 0xff) == 3 &&
	       ((hex >> 16) & 0xff) < 100;
}

static void detect_from_py_version(struct pm_target *t,
				   struct pm_python_info *info)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(t, NULL, "Py_Version", &sym);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint64_t hex;
	err = pm_target_read_u64(t, sym.address, &hex);
	if (err) {
		pm_target_warn(t, true, sym.address, "cannot read Py_Version: %s",
			       err->message);
		pm_error_destroy(err);
		return;
	}
	/* Py_Version is a 4-byte unsigned long on LP64 but declared as
	 * `const unsigned long`: 8 bytes, upper half zero. */
	if (hex_plausible(hex))
		info_set_hex(info, hex, "Py_Version");
}

static void detect_from_debug_offsets(struct pm_target *t,
				      struct pm_python_info *info)
{
	uint8_t head[24];
	struct pm_error *err = pm_target_read(t, info->runtime, head, sizeof(head));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	if (memcmp(head, debug_offsets_cookie, sizeof(debug_offsets_cookie)) != 0)
		return;
	uint64_t hex, ft;
	memcpy(&hex, head + DEBUG_OFFSETS_VERSION, 8);
	memcpy(&ft, head + DEBUG_OFFSETS_FREE_THREADED, 8);
	if (!hex_plausible(hex))
		return;
	if (!info->version_source)
		info_set_hex(info, hex, "_Py_DebugOffsets");
	if (ft == 1)
		info->free_threaded = true;
}

/* Looks for "3.<minor>.<micro> (" in buf; returns micro or -1. */
static int banner_micro_in(const char *buf, size_t len, int minor)
{
	char needle[16];
	int n = snprintf(needle, sizeof(needle), "3.%d.", minor);
	const char *p = buf, *end = buf + len;
	while (p < end) {
		const char *hit = memmem(p, (size_t)(end - p), needle, (size_t)n);
		if (!hit)
			return -1;
		const char *q = hit + n;
		int micro = 0, digits = 0;
		while (q < end && isdigit((unsigned char)*q) && digits < 3) {
			micro = micro * 10 + (*q - '0');
			q++;
			digits++;
		}
		/* The banner is "3.X.Y (branch, date) [compiler]"; release
		 * suffixes like "rc1" or "+" may come before the space. */
		while (q < end && q < hit + 24 && *q != ' ' && isgraph((unsigned char)*q))
			q++;
		bool at_start = hit == buf || hit[-1] == '\0';
		if (digits && at_start && end - q >= 2 && q[0] == ' ' && q[1] == '(')
			return micro;
		p = hit + 1;
	}
	return -1;
}

/* Py_GetVersion() fills a static buffer of libpython (.data/.bss) during
 * start-up; search the writable mappings of that module and the anonymous
 * mapping right after them (the rest of .bss). */
static int detect_banner_micro(struct pm_target *t, const struct pm_module *m,
			       int minor)
{
	size_t scanned = 0;
	for (size_t i = 0; i < pm_target_region_count(t); i++) {
		struct pm_region *r = pm_target_region(t, i);
		if (!(r->perms & PM_PERM_W) || r->start < m->start)
			continue;
		bool own = r->start < m->end;
		bool bss = !r->path && i > 0 &&
			   pm_target_region(t, i - 1)->end == r->start &&
			   pm_target_region(t, i - 1)->start < m->end &&
			   pm_target_region(t, i - 1)->start >= m->start;
		if (!own && !bss)
			continue;
		for (uint64_t a = r->start; a < r->end && scanned < BANNER_SCAN_MAX;) {
			size_t len = r->end - a > PM_VIEW_MAX ? PM_VIEW_MAX
							      : (size_t)(r->end - a);
			const void *bytes;
			struct pm_error *err = pm_target_view(t, a, len, &bytes);
			if (err) {
				pm_error_destroy(err);
				break;
			}
			int micro = banner_micro_in(bytes, len, minor);
			if (micro >= 0)
				return micro;
			scanned += len;
			a += len;
		}
	}
	return -1;
}

static void find_runtime(struct pm_target *t, struct pm_python_info *info)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(t, NULL, "_PyRuntime", &sym);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	info->runtime = sym.address;
	info->module = sym.module;
	err = pm_target_symbol(t, NULL, "PyType_Type", &sym);
	if (!err)
		info->type_type = sym.address;
	pm_error_destroy(err);
}

/* No _PyRuntime (CPython before 3.7, e.g. 2.7): a CPython all the same if
 * it exports Py_Initialize from a python-named module; the name gives the
 * version to name in the "not supported" line. */
static void detect_runtime_less(struct pm_target *t, struct pm_python_info *info)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(t, NULL, "Py_Initialize", &sym);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	int major = 0, minor = 0;
	const char *base = sym.module && sym.module->path ?
		path_basename(sym.module->path) : "";
	if (sscanf(base, "libpython%d.%d", &major, &minor) != 2 &&
	    sscanf(base, "python%d.%d", &major, &minor) != 2)
		return;
	info->is_python = true;
	info->module = sym.module;
	info->major = major;
	info->minor = minor;
	info->version_source = "module name";
}

static void judge_support(struct pm_python_info *info)
{
	if (!info->is_python) {
		snprintf(info->unsupported, sizeof(info->unsupported),
			 "not a CPython process (no _PyRuntime symbol)");
		return;
	}
	if (info->free_threaded) {
		snprintf(info->unsupported, sizeof(info->unsupported),
			 "free-threaded CPython %d.%dt (mimalloc, no pymalloc) is not supported",
			 info->major, info->minor);
		return;
	}
	if (info->major != 3 || info->minor < PM_PYTHON_MIN_MINOR ||
	    info->minor > PM_PYTHON_MAX_MINOR) {
		snprintf(info->unsupported, sizeof(info->unsupported),
			 "CPython %d.%d is not supported (supported: 3.%d to 3.%d)",
			 info->major, info->minor, PM_PYTHON_MIN_MINOR,
			 PM_PYTHON_MAX_MINOR);
		return;
	}
	if (!info->version_source) {
		snprintf(info->unsupported, sizeof(info->unsupported),
			 "CPython found but its version could not be determined");
		return;
	}
	info->supported = true;
}

static void python_detect(struct pm_target *t, struct pm_python_info *info)
{
	info->micro = -1;
	find_runtime(t, info);
	if (!info->runtime) {
		detect_runtime_less(t, info);
		return;
	}
	info->is_python = true;

	int minor = -1;
	bool ft = false;
	bool named = version_from_module_name(info->module, &minor, &ft) ||
		     version_from_module_name(pm_target_executable(t), &minor, &ft);
	info->free_threaded = ft;

	/* Only the interpreter's own modules: a symbol absent everywhere
	 * would otherwise load every library's debug file. */
	for (int k = 0; k < 2 && !info->pydebug; k++) {
		struct pm_symbol refs;
		struct pm_error *err = pm_target_symbol(t, k ? "libpython" : "python",
							"_Py_GetGlobalRefTotal", &refs);
		info->pydebug = !err;
		pm_error_destroy(err);
	}

	detect_from_py_version(t, info);
	detect_from_debug_offsets(t, info);
	if (!info->version_source && named) {
		info->major = 3;
		info->minor = minor;
		int micro = detect_banner_micro(t, info->module, minor);
		info->micro = micro;
		info->version_source = micro >= 0 ? "version banner" : "module name";
	}
}

static void info_destroy(void *p)
{
	free(p);
}

struct pm_error *pm_python_detect(struct pm_target *t,
				  const struct pm_python_info **ret)
{
	struct pm_python_info *info = pm_target_cache_get(t, PM_CACHE_DETECT);
	if (!info) {
		info = calloc(1, sizeof(*info));
		if (!info)
			return &pm_error_no_memory;
		python_detect(t, info);
		judge_support(info);
		if (info->supported &&
		    !pm_cpython_check_debug_offsets(t, info, info->unsupported,
						    sizeof(info->unsupported)))
			info->supported = false;
		pm_target_cache_set(t, PM_CACHE_DETECT, info, info_destroy);
	}
	*ret = info;
	return NULL;
}
