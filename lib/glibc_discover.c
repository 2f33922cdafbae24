/* Finding glibc malloc's roots in a target: the glibc version (banner in
 * libc's read-only data, else the file name), main_arena and mp_ (debug
 * symbols, else a signature scan of libc's writable data), and whether
 * another allocator (jemalloc, tcmalloc, mimalloc) replaced glibc malloc. */
#include "glibc_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"

/* Scans are bounded: libc's writable data is a few pages. */
#define SCAN_MAX_BYTES (4u << 20)
#define RING_MAX 4096

static struct pm_module *find_libc(struct pm_target *t)
{
	struct pm_module *m = pm_target_find_module(t, "libc.so");
	if (!m)
		m = pm_target_find_module(t, "libc-2.");
	return m;
}

static bool parse_version(const char *s, int *major, int *minor)
{
	return sscanf(s, "%d.%d", major, minor) == 2;
}

/* "... release version 2.36." in libc's .rodata, read through the target
 * (a core lacks it; the target reads it from the file). */
static bool version_from_banner(struct pm_target *t, struct pm_module *libc,
				int *major, int *minor)
{
	static const char needle[] = "release version ";
	const size_t overlap = 64;
	size_t n = pm_target_region_count(t);
	for (size_t i = 0; i < n; i++) {
		struct pm_region *r = pm_target_region(t, i);
		if (r->start < libc->start || r->end > libc->end ||
		    !(r->perms & PM_PERM_R) || (r->perms & PM_PERM_W))
			continue;
		for (uint64_t a = r->start; a < r->end; a += PM_VIEW_MAX - overlap) {
			size_t len = r->end - a < PM_VIEW_MAX ? r->end - a
							      : PM_VIEW_MAX;
			const void *p;
			struct pm_error *err = pm_target_view(t, a, len, &p);
			if (err) {
				pm_error_destroy(err);
				break;
			}
			const char *hit = memmem(p, len, needle, sizeof(needle) - 1);
			if (hit) {
				char buf[16] = {0};
				size_t off = (size_t)(hit - (const char *)p) +
					     sizeof(needle) - 1;
				size_t take = len - off < sizeof(buf) - 1
						      ? len - off
						      : sizeof(buf) - 1;
				memcpy(buf, (const char *)p + off, take);
				if (parse_version(buf, major, minor))
					return true;
			}
			if (a + len >= r->end)
				break;
		}
	}
	return false;
}

/* libc-2.31.so before 2.34. */
static bool version_from_path(const char *path, int *major, int *minor)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return strncmp(base, "libc-", 5) == 0 &&
	       parse_version(base + 5, major, minor);
}

struct pm_error *pm_glibc_detect_version(struct pm_target *t, int *major,
					 int *minor, const char **how)
{
	struct pm_module *libc = find_libc(t);
	if (!libc)
		return pm_error_format(PM_ERR_NOT_FOUND,
				       "libc is not mapped in the target");
	if (version_from_banner(t, libc, major, minor)) {
		*how = "libc banner";
		return NULL;
	}
	if (version_from_path(libc->path, major, minor)) {
		*how = "libc file name";
		return NULL;
	}
	return pm_error_format(PM_ERR_UNSUPPORTED,
			       "cannot tell the glibc version of %s (its read-only data is unreadable and its name has no version)",
			       libc->path);
}

/* Another allocator library mapped in the target, or NULL. */
static const char *find_other_allocator(struct pm_target *t, const char **path)
{
	static const char *const names[][2] = {
		{"libjemalloc", "jemalloc"},
		{"libtcmalloc", "tcmalloc"},
		{"libmimalloc", "mimalloc"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct pm_module *m = pm_target_find_module(t, names[i][0]);
		if (m) {
			*path = m->path;
			return names[i][1];
		}
	}
	return NULL;
}

/* The range to scan for main_arena/mp_: libc's writable segments and the
 * anonymous mapping right after them (.bss continues there). */
struct scan_range {
	uint64_t start, end;
};

static size_t libc_data_ranges(struct pm_target *t, struct pm_module *libc,
			       struct scan_range *out, size_t max)
{
	size_t n = pm_target_region_count(t), k = 0;
	for (size_t i = 0; i < n && k < max; i++) {
		struct pm_region *r = pm_target_region(t, i);
		bool in_libc = r->start >= libc->start && r->end <= libc->end;
		bool after_libc = r->start == libc->end && !r->path;
		if (!(in_libc || after_libc) || !(r->perms & PM_PERM_W) ||
		    !(r->perms & PM_PERM_R))
			continue;
		if (k > 0 && out[k - 1].end == r->start)
			out[k - 1].end = r->end;
		else
			out[k++] = (struct scan_range){r->start, r->end};
	}
	return k;
}

#define SCAN_RANGES_MAX 512
#define FALLBACK_REGION_MAX (8u << 20)

/* Where main_arena and mp_ may be: libc's data, or - when no mapping is
 * known to be libc (a truncated core without its file note) - every small
 * writable mapping. */
static size_t data_ranges(struct pm_target *t, struct scan_range *out,
			  size_t max)
{
	struct pm_module *libc = find_libc(t);
	if (libc)
		return libc_data_ranges(t, libc, out, max);
	size_t n = pm_target_region_count(t), k = 0;
	for (size_t i = 0; i < n && k < max; i++) {
		struct pm_region *r = pm_target_region(t, i);
		if ((r->perms & (PM_PERM_R | PM_PERM_W)) == (PM_PERM_R | PM_PERM_W) &&
		    r->end - r->start <= FALLBACK_REGION_MAX &&
		    r->label != PM_LABEL_MAIN_STACK &&
		    r->label != PM_LABEL_THREAD_STACK)
			out[k++] = (struct scan_range){r->start, r->end};
	}
	return k;
}

/* The range's bytes (at most SCAN_MAX_BYTES) in a malloc'd buffer. */
static uint64_t *range_read(struct pm_target *t, const struct scan_range *r,
			    size_t *words)
{
	size_t len = r->end - r->start;
	if (len > SCAN_MAX_BYTES)
		len = SCAN_MAX_BYTES;
	uint64_t *buf = malloc(len);
	if (!buf)
		return NULL;
	struct pm_error *err = pm_target_read(t, r->start, buf, len);
	if (err) {
		pm_error_destroy(err);
		free(buf);
		return NULL;
	}
	*words = len / 8;
	return buf;
}

static bool read_u64(struct pm_target *t, uint64_t addr, uint64_t *v)
{
	struct pm_error *err = pm_target_read_u64(t, addr, v);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return true;
}

/* A bin pair looks valid: empty (both point at its own fake chunk) or both
 * 16-aligned pointers into readable memory. */
static bool bin_pair_valid(struct pm_target *t, uint64_t pair_addr,
			   uint64_t fd, uint64_t bk)
{
	if (fd == bk && fd == pair_addr - 16)
		return true;
	return fd && bk && !(fd & 15) && !(bk & 15) &&
	       pm_target_is_mapped(t, fd, 32) && pm_target_is_mapped(t, bk, 32);
}

static bool arena_ring_ok(struct pm_target *t,
			  const struct pm_glibc_layout *l, uint64_t arena)
{
	uint64_t a = arena;
	for (int i = 0; i < RING_MAX; i++) {
		if (!read_u64(t, a + l->ms_next, &a) || !a)
			return false;
		if (a == arena)
			return true;
	}
	return false;
}

#define BIN_PAIRS 127
#define BIN_PAIRS_BAD_MAX 8     /* damaged bins tolerated (then reported) */

/* main_arena by its bins: 127 pairs ending right before binmap, the last one
 * empty (the largest bins nearly always are), nearly all valid. A candidate
 * whose next ring returns to it wins; else the first with all its bins valid
 * and a readable top (the ring's damage is reported by the walk). */
static uint64_t scan_main_arena(struct pm_target *t,
				const struct pm_glibc_layout *l,
				const struct scan_range *r)
{
	size_t words = 0;
	uint64_t *buf = range_read(t, r, &words);
	if (!buf || words < 2) {
		free(buf);
		return 0;
	}
	uint64_t found = 0, fallback = 0;
	/* Backwards, so the first self-referencing pair seen is the highest:
	 * the end of the bins array. */
	for (size_t i = words - 2; i + 1 > 0 && !found; i--) {
		uint64_t addr = r->start + i * 8;
		if (!(buf[i] == buf[i + 1] && buf[i] == addr - 16))
			continue;
		uint64_t bins = addr + 16 - BIN_PAIRS * 16;
		if (bins < r->start + l->ms_bins)
			continue;
		size_t first = (bins - r->start) / 8, bad = 0;
		for (size_t p = 0; p < BIN_PAIRS; p++) {
			bad += !bin_pair_valid(t, bins + p * 16, buf[first + 2 * p],
					       buf[first + 2 * p + 1]);
		}
		if (bad > BIN_PAIRS_BAD_MAX)
			continue;
		uint64_t arena = bins - l->ms_bins;
		uint64_t top = buf[(arena + l->ms_top - r->start) / 8];
		if (arena_ring_ok(t, l, arena))
			found = arena;
		else if (!fallback && !bad && top && pm_target_is_mapped(t, top, 16))
			fallback = arena;
	}
	free(buf);
	return found ? found : fallback;
}

static bool mp_candidate_ok(struct pm_target *t,
			    const struct pm_glibc_layout *l, uint64_t mp)
{
	uint8_t raw[0x100];
	if (l->mp_size > sizeof(raw))
		return false;
	struct pm_error *err = pm_target_read(t, mp, raw, l->mp_size);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	int32_t n_mmaps, n_mmaps_max, max_n_mmaps;
	uint64_t mmap_threshold, tcache_bins;
	memcpy(&n_mmaps, raw + l->mp_n_mmaps, 4);
	memcpy(&n_mmaps_max, raw + l->mp_n_mmaps_max, 4);
	memcpy(&max_n_mmaps, raw + l->mp_max_n_mmaps, 4);
	memcpy(&mmap_threshold, raw + l->mp_mmap_threshold, 8);
	memcpy(&tcache_bins, raw + l->mp_tcache_bins, 8);
	return n_mmaps >= 0 && n_mmaps <= max_n_mmaps && max_n_mmaps >= 0 &&
	       n_mmaps_max >= 0 && mmap_threshold >= 0x1000 &&
	       mmap_threshold <= (64ull << 20) && tcache_bins <= l->tc_bins;
}

uint64_t pm_glibc_scan_mp(struct pm_target *t,
			  const struct pm_glibc_layout *l, uint64_t main_arena,
			  uint64_t sbrk_base)
{
	if (!sbrk_base)
		return 0;
	struct scan_range *ranges = malloc(SCAN_RANGES_MAX * sizeof(*ranges));
	if (!ranges)
		return 0;
	size_t n = data_ranges(t, ranges, SCAN_RANGES_MAX);
	uint64_t found = 0;
	for (size_t k = 0; k < n && !found; k++) {
		size_t words = 0;
		uint64_t *buf = range_read(t, &ranges[k], &words);
		for (size_t i = l->mp_sbrk_base / 8; buf && i < words && !found;
		     i++) {
			if (buf[i] != sbrk_base)
				continue;
			uint64_t mp = ranges[k].start + 8 * i - l->mp_sbrk_base;
			if (mp >= main_arena && mp < main_arena + l->ms_size)
				continue;
			if (mp_candidate_ok(t, l, mp))
				found = mp;
		}
		free(buf);
	}
	free(ranges);
	return found;
}

static uint64_t symbol_address(struct pm_target *t, const char *name)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(t, "libc.so", name, &sym);
	if (err) {
		pm_error_destroy(err);
		err = pm_target_symbol(t, "libc-2.", name, &sym);
	}
	if (err) {
		pm_error_destroy(err);
		return 0;
	}
	return sym.address;
}

/* Memory another allocator holds is in no walker's figures: every report
 * says so first. */
static struct pm_error *note_other_allocator(struct pm_target *t,
					     const char *name)
{
	char message[256], figure[96];
	snprintf(message, sizeof(message),
		 "malloc is served by %s, which pymortem does not walk (glibc malloc was never initialised): the memory it holds is in no figure",
		 name);
	snprintf(figure, sizeof(figure), "%s's memory not walked", name);
	struct pm_partial partial = {
		.reason = "other-allocator",
		.message = message,
		.figure = figure,
	};
	return pm_target_add_partial(t, &partial);
}

static void set_other(struct pm_glibc_roots *ret, const char *what)
{
	snprintf(ret->other_allocator_buf, sizeof(ret->other_allocator_buf),
		 "%s", what);
	ret->other_allocator = ret->other_allocator_buf;
}

/* Whether malloc ever ran through main_arena (its top and system_mem are
 * set by the first allocation). An arena whose bytes cannot be read (a
 * truncated core, a process that died) is an error saying so, never "not
 * initialised". */
static struct pm_error *arena_uninitialised(struct pm_target *t,
					    const struct pm_glibc_layout *l,
					    uint64_t arena, bool *ret)
{
	uint64_t top = 0, system_mem = 0;
	struct pm_error *err = pm_target_read_u64(t, arena + l->ms_top, &top);
	if (!err)
		err = pm_target_read_u64(t, arena + l->ms_system_mem, &system_mem);
	if (err)
		return pm_error_wrap(err, "glibc main_arena at 0x%llx cannot be read",
				     (unsigned long long)arena);
	*ret = top == 0 || system_mem == 0;
	return NULL;
}

/* Without libc's banner or a versioned file name (a core analysed on
 * another machine), the layout is told from the heap itself: malloc_state is
 * the same in 2.27-2.42; mp_'s layout splits at 2.35; the tcache struct's
 * chunk size (the main heap's first chunk) splits 2.29/2.30 and 2.41/2.42;
 * safe-linking (2.32) shows in how a fastbin or tcache list ends. */
static bool safe_linking_seen(struct pm_target *t, uint64_t arena,
			      const struct pm_glibc_layout *l, bool *ret)
{
	for (int i = 0; l->ms_fastbins && i < PM_GLIBC_NFASTBINS; i++) {
		uint64_t p, stored;
		if (!read_u64(t, arena + l->ms_fastbins + 8 * (uint64_t)i, &p) ||
		    !p || !read_u64(t, p + 16, &stored))
			continue;
		uint64_t revealed = ((p + 16) >> 12) ^ stored;
		bool plain_ok = !stored || (!(stored & 15) &&
					    pm_target_is_mapped(t, stored, 32));
		bool safe_ok = !revealed || (!(revealed & 15) &&
					     pm_target_is_mapped(t, revealed, 32));
		if (plain_ok != safe_ok) {
			*ret = safe_ok;
			return true;
		}
	}
	return false;
}

static struct pm_error *infer_layout(struct pm_target *t,
				     struct pm_glibc_roots *ret)
{
	const struct pm_glibc_layout *new_mp = pm_glibc_layout_find(2, 35);
	const struct pm_glibc_layout *old_mp = pm_glibc_layout_find(2, 30);
	uint64_t arena = ret->main_arena, top = 0, system_mem = 0, top_size = 0;
	if (!arena || !read_u64(t, arena + new_mp->ms_top, &top) ||
	    !read_u64(t, arena + new_mp->ms_system_mem, &system_mem) ||
	    !read_u64(t, top + 8, &top_size))
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "cannot tell the glibc version: no banner, no versioned file name, no readable main_arena");
	uint64_t start = top + (top_size & ~7ull) - system_mem;
	bool after_2_35;
	if ((ret->mp = pm_glibc_scan_mp(t, new_mp, arena, start)))
		after_2_35 = true;
	else if ((ret->mp = pm_glibc_scan_mp(t, old_mp, arena, start)))
		after_2_35 = false;
	else
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "cannot tell the glibc version: no banner, no versioned file name, and mp_ not found");
	ret->mp_source = "signature scan";
	uint64_t first = 0;
	read_u64(t, start + 8, &first);
	first &= ~7ull;
	int minor;
	if (after_2_35)
		minor = first == 0x300 ? 42 : 35;
	else if (first == 0x250)
		minor = 27;
	else {
		bool safe = true;
		safe_linking_seen(t, arena, old_mp, &safe);
		minor = safe ? 32 : 30;
	}
	ret->major = 2;
	ret->minor = minor;
	ret->layout = pm_glibc_layout_find(2, minor);
	snprintf(ret->version_buf, sizeof(ret->version_buf),
		 "inferred from heap structure: 2.%d to 2.%d",
		 ret->layout->min_minor, ret->layout->max_minor);
	ret->version_source = ret->version_buf;
	return NULL;
}

struct pm_error *pm_glibc_find_roots(struct pm_target *t,
				     struct pm_glibc_roots *ret)
{
	memset(ret, 0, sizeof(*ret));
	const char *other_path = NULL;
	const char *other = find_other_allocator(t, &other_path);

	struct pm_error *err = pm_glibc_detect_version(
		t, &ret->major, &ret->minor, &ret->version_source);
	bool inferred = false;
	if (err && (err->code == PM_ERR_UNSUPPORTED ||
		    err->code == PM_ERR_NOT_FOUND)) {
		/* no banner, no versioned name: find the arena with any
		 * 2.27+ layout (they agree on malloc_state) and infer */
		pm_error_destroy(err);
		err = NULL;
		ret->major = 2;
		ret->minor = 36;
		ret->version_source = "unknown";
		inferred = true;
	}
	if (err)
		return err;
	ret->layout = pm_glibc_layout_find(ret->major, ret->minor);
	if (!ret->layout)
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "glibc %d.%d is not supported (supported: %s)",
				       ret->major, ret->minor,
				       pm_glibc_supported_range());
	const struct pm_glibc_layout *l = ret->layout;

	ret->main_arena = symbol_address(t, "main_arena");
	ret->main_arena_source = "symbol";
	if (!ret->main_arena) {
		struct scan_range *ranges = malloc(SCAN_RANGES_MAX * sizeof(*ranges));
		if (!ranges)
			return &pm_error_no_memory;
		size_t n = data_ranges(t, ranges, SCAN_RANGES_MAX);
		for (size_t k = 0; k < n && !ret->main_arena; k++)
			ret->main_arena = scan_main_arena(t, l, &ranges[k]);
		free(ranges);
		ret->main_arena_source = find_libc(t)
			? "signature scan" : "signature scan (libc not identified)";
	}
	bool uninitialised = false;
	if (ret->main_arena) {
		err = arena_uninitialised(t, l, ret->main_arena, &uninitialised);
		if (err)
			return err;
	}
	if (inferred && ret->main_arena && !uninitialised) {
		err = infer_layout(t, ret);
		if (err)
			return err;
		l = ret->layout;
	}
	if (!ret->mp) {
		ret->mp = symbol_address(t, "mp_");
		ret->mp_source = ret->mp ? "symbol" : NULL;
	}

	char what[160];
	if (ret->main_arena && !uninitialised) {
		if (other)
			pm_target_warn(t, false, 0,
				       "%s (%s) is loaded, but glibc malloc is in use too; walking glibc's heap",
				       other, other_path);
		return NULL;
	}
	if (other) {
		snprintf(what, sizeof(what),
			 "%s (%s) is the allocator; glibc malloc was never initialised",
			 other, other_path);
		set_other(ret, what);
		return note_other_allocator(t, other);
	}
	if (ret->main_arena) {
		set_other(ret, "an unknown allocator: glibc malloc was never initialised");
		return note_other_allocator(t, "an unknown allocator");
	}
	return pm_error_format(PM_ERR_NOT_FOUND,
			       "glibc main_arena not found (no debug symbols and no signature match in libc's data)");
}
