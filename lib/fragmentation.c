/* Why freed memory stays in the process (fragmentation.h): the glibc
 * arenas' free memory by bin class with a simulation of malloc_trim(0), and
 * the pymalloc arenas' pools with the arenas few live blocks pin.
 *
 * malloc_trim(0), as glibc 2.27-2.43 do it (malloc/malloc.c, mtrim(): the
 * same code in all of them, read in 2.27, 2.35, 2.36, 2.41, 2.42 and
 * master), for each arena in the ring from main_arena:
 *  1. malloc_consolidate(): every fastbin chunk merges with its free
 *     neighbours (and with the top chunk when it borders it); tcache'd
 *     chunks count as in use and stay. (2.43 has no fastbins: nothing to
 *     merge, and the walk finds no fastbin chunk.)
 *  2. For every chunk of the unsorted bin and of bins >= bin_index(page),
 *     which after 1. is every free chunk big enough: if its size exceeds
 *     page - 1 + sizeof(struct malloc_chunk), madvise(MADV_DONTNEED) the
 *     whole pages from align_up(chunk + 48, page) to its end.
 *  3. The main arena only: systrim(0): if the top chunk ends at the current
 *     brk, sbrk(-extra) with extra = align_down(top - MINSIZE - 1, page)
 *     (mp_.thp_pagesize when set). Thread arenas' heaps are not shrunk.
 * Resident memory drops by the resident pages of those ranges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fragmentation.h"
#include "glibc_internal.h"
#include "python_version.h"

/* malloc_par's tunables, at the same offsets in every supported version;
 * thp_pagesize exists where the layout has hp_pagesize (2.35+), just before. */
enum {
	MP_TRIM_THRESHOLD = 0, MP_TOP_PAD = 8, MP_MMAP_THRESHOLD = 0x10,
	MP_ARENA_TEST = 0x18, MP_ARENA_MAX = 0x20,
};
#define MALLOC_CHUNK_STRUCT 48      /* sizeof(struct malloc_chunk), LP64 */
#define TRIM_MINSIZE 32             /* MINSIZE, LP64 */

const char *pm_glibc_free_class_name(enum pm_glibc_free_class c)
{
	static const char *const names[PM_FREE_CLASSES] = {
		"tcache", "fastbin", "unsorted", "small", "large", "top",
	};
	return c < PM_FREE_CLASSES ? names[c] : "?";
}

static void add_range(struct pm_residency *res, struct pm_resident_bytes *into,
		      uint64_t start, uint64_t end)
{
	uint64_t resident, swapped;
	pm_residency_range(res, start, end, &resident, &swapped);
	into->bytes += end - start;
	into->resident += resident;
	into->swapped += swapped;
}

static void read_tunables(struct pm_target *t, struct pm_glibc_fragmentation *f)
{
	const struct pm_glibc_heap *h = f->heap;
	const struct pm_glibc_layout *l = pm_glibc_layout_find(h->version_major,
							       h->version_minor);
	if (!h->mp || !l)
		return;
	uint64_t v[5];
	static const uint32_t offsets[5] = {MP_TRIM_THRESHOLD, MP_TOP_PAD,
					    MP_MMAP_THRESHOLD, MP_ARENA_TEST,
					    MP_ARENA_MAX};
	for (size_t i = 0; i < 5; i++) {
		struct pm_error *err = pm_target_read_u64(t, h->mp + offsets[i], &v[i]);
		if (err) {
			pm_target_warn(t, true, h->mp, "mp_ unreadable: %s", err->message);
			pm_error_destroy(err);
			return;
		}
	}
	f->trim_threshold = v[0];
	f->top_pad = v[1];
	f->mmap_threshold = v[2];
	f->arena_test = v[3];
	f->arena_max = v[4];
	if (l->mp_hp_pagesize) {
		struct pm_error *err = pm_target_read_u64(t, h->mp + l->mp_hp_pagesize - 8,
							  &f->thp_pagesize);
		pm_error_destroy(err);
		if (err || (f->thp_pagesize & (f->thp_pagesize - 1)))
			f->thp_pagesize = 0;
	}
	f->mp_known = true;
}

/* Every chunk of each arena's unsorted bin (bin 1), so bin chunks can be
 * told apart from the sorted small and large bins. Bounded by the number
 * of chunks the walk found. */
static struct pm_error *collect_unsorted(struct pm_target *t,
					 struct pm_glibc_fragmentation *f)
{
	const struct pm_glibc_heap *h = f->heap;
	const struct pm_glibc_layout *l = pm_glibc_layout_find(h->version_major,
							       h->version_minor);
	if (!l)
		return NULL;
	for (size_t i = 0; i < h->narenas; i++) {
		uint64_t bin = h->arenas[i].address + l->ms_bins - 16;
		uint64_t p;
		struct pm_error *err = pm_target_read_u64(t, bin + 16, &p);
		for (size_t steps = 0; !err && p != bin && steps <= h->nchunks; steps++) {
			bool fresh;
			if (!pm_addr_set_insert(&f->unsorted, &p, &fresh))
				return &pm_error_no_memory;
			if (!fresh)
				break;          /* a loop: the walk warned already */
			err = pm_target_read_u64(t, p + 16, &p);
		}
		if (err) {
			pm_target_warn(t, true, bin, "unsorted bin unreadable: %s",
				       err->message);
			pm_error_destroy(err);
		}
	}
	return NULL;
}

enum pm_glibc_free_class pm_glibc_chunk_free_class(const struct pm_glibc_fragmentation *f,
						   const struct pm_chunk *c)
{
	switch (c->state) {
	case PM_CHUNK_FREE_TCACHE: return PM_FREE_TCACHE;
	case PM_CHUNK_FREE_FASTBIN: return PM_FREE_FASTBIN;
	case PM_CHUNK_TOP: return PM_FREE_TOP;
	default: break;
	}
	uint64_t addr = c->addr;
	if (pm_addr_set_search(&f->unsorted, &addr))
		return PM_FREE_UNSORTED;
	return c->size < 1024 ? PM_FREE_SMALL : PM_FREE_LARGE;     /* MIN_LARGE_SIZE */
}

static bool is_free_for_consolidation(const struct pm_chunk *c)
{
	return c->state == PM_CHUNK_FREE_BIN || c->state == PM_CHUNK_FREE_FASTBIN;
}

/* mtrim's step 2 for one consolidated free chunk [start, start + size). */
static void madvise_chunk(struct pm_glibc_fragmentation *f, struct pm_residency *res,
			  struct pm_trim_arena *a, uint64_t start, uint64_t size)
{
	uint64_t psm1 = f->page - 1;
	if (size <= psm1 + MALLOC_CHUNK_STRUCT)
		return;
	uint64_t aligned = (start + MALLOC_CHUNK_STRUCT + psm1) & ~psm1;
	uint64_t left = start + size - aligned;
	if (left <= psm1)
		return;
	a->madvise_chunks++;
	add_range(res, &a->madvise, aligned, aligned + (left & ~psm1));
}

/* mtrim's step 3 for the main arena. */
static void systrim(struct pm_target *t, struct pm_glibc_fragmentation *f,
		    struct pm_residency *res, const struct pm_glibc_arena *ar,
		    struct pm_trim_arena *a, uint64_t top, uint64_t top_size)
{
	if (!top || !top_size) {
		a->systrim_note = "no top chunk";
		return;
	}
	const struct pm_region *r = pm_target_find_region(t, top);
	if (ar->noncontiguous || !r || r->end != top + top_size ||
	    !r->path || strcmp(r->path, "[heap]") != 0) {
		a->systrim_note = "the top chunk does not end at the brk";
		return;
	}
	if (top_size <= TRIM_MINSIZE + 1) {
		a->systrim_note = "the top chunk is minimal";
		return;
	}
	uint64_t area = top_size - TRIM_MINSIZE - 1;
	uint64_t unit = f->thp_pagesize ? f->thp_pagesize : f->page;
	uint64_t extra = area / unit * unit;
	if (!extra) {
		a->systrim_note = "the top chunk holds no whole page";
		return;
	}
	add_range(res, &a->systrim, top + top_size - extra, top + top_size);
}

/* An arena's consolidation in progress: the run of adjacent free chunks
 * being merged, the top chunk with what merged into it. */
struct consolidation {
	uint64_t run_start, run_end;    /* run_end 0: no run */
	uint64_t top, top_size;
	uint64_t tcached;
};

/* One chunk of arena a, met in address order. */
static void consolidate_chunk(struct pm_glibc_fragmentation *f, struct pm_residency *res,
			      const struct pm_glibc_arena *ar, struct pm_trim_arena *a,
			      struct consolidation *s, const struct pm_chunk *c)
{
	if (c->state == PM_CHUNK_FREE_BIN || c->state == PM_CHUNK_FREE_FASTBIN ||
	    c->state == PM_CHUNK_FREE_TCACHE || c->state == PM_CHUNK_TOP) {
		enum pm_glibc_free_class cls = pm_glibc_chunk_free_class(f, c);
		add_range(res, &a->free_by_class[cls], c->addr, c->addr + c->size);
		if (cls == PM_FREE_TCACHE)
			s->tcached += c->size;
	}
	bool adjacent = s->run_end && c->addr == s->run_end;
	if (is_free_for_consolidation(c)) {
		if (!adjacent)
			s->run_start = c->addr;
		s->run_end = c->addr + c->size;
		return;
	}
	if (c->state == PM_CHUNK_TOP && c->addr == ar->top) {
		s->top = adjacent ? s->run_start : c->addr;
		s->top_size = c->addr + c->size - s->top;
		s->run_end = 0;
		return;
	}
	if (s->run_end)
		madvise_chunk(f, res, a, s->run_start, s->run_end - s->run_start);
	s->run_end = 0;
}

static void arena_finish(struct pm_target *t, struct pm_glibc_fragmentation *f,
			 struct pm_residency *res, const struct pm_glibc_arena *ar,
			 struct pm_trim_arena *a, struct consolidation *s)
{
	if (s->run_end)
		madvise_chunk(f, res, a, s->run_start, s->run_end - s->run_start);
	a->top_after_consolidation = s->top_size;
	a->in_use = ar->info.uordblks > s->tcached ? ar->info.uordblks - s->tcached : 0;
	if (ar->is_main)
		systrim(t, f, res, ar, a, s->top, s->top_size);
	else
		a->systrim_note = "malloc_trim does not shrink a thread arena's heap";
}

/* Every arena in one pass over the chunks (address order, each arena's
 * chunks interleaved with the others'): free memory by class and
 * malloc_trim's part. */
static struct pm_error *arenas_trim(struct pm_target *t, struct pm_glibc_fragmentation *f,
				    struct pm_residency *res)
{
	const struct pm_glibc_heap *h = f->heap;
	struct consolidation *state = calloc(h->narenas ? h->narenas : 1, sizeof(*state));
	if (!state)
		return &pm_error_no_memory;
	for (size_t i = 0; i < h->narenas; i++) {
		struct pm_trim_arena *a = &f->arenas.data[i];
		a->address = h->arenas[i].address;
		a->is_main = h->arenas[i].is_main;
		a->mapped = h->arenas[i].info.arena;
		a->top_size = h->arenas[i].top_size;
	}
	for (size_t k = 0; k < h->nchunks; k++) {
		const struct pm_chunk *c = &h->chunks[k];
		if ((k & 0xffff) == 0xffff) {
			pm_target_progress(t, "consolidating free chunks", k, h->nchunks);
			if (pm_target_interrupted(t)) {
				free(state);
				return pm_error_interrupted();
			}
		}
		if (c->arena < h->narenas)
			consolidate_chunk(f, res, &h->arenas[c->arena], &f->arenas.data[c->arena],
					  &state[c->arena], c);
	}
	for (size_t i = 0; i < h->narenas; i++)
		arena_finish(t, f, res, &h->arenas[i], &f->arenas.data[i], &state[i]);
	free(state);
	return NULL;
}

struct pm_error *pm_glibc_fragmentation_create(struct pm_target *t,
					       struct pm_residency *res,
					       struct pm_glibc_fragmentation **ret)
{
	const struct pm_glibc_heap *h;
	struct pm_error *err = pm_glibc_walk(t, &h);
	if (err)
		return err;
	if (h->other_allocator)
		return pm_error_format(PM_ERR_UNSUPPORTED, "glibc malloc is not in use: %s",
				       h->other_allocator);
	struct pm_glibc_fragmentation *f = calloc(1, sizeof(*f));
	if (!f)
		return &pm_error_no_memory;
	f->heap = h;
	f->page = pm_residency_page_size(res);
	read_tunables(t, f);
	err = collect_unsorted(t, f);
	/* (append_zeroed of 0 elements to an empty vector gives NULL) */
	if (!err && h->narenas && !pm_trim_arena_vector_append_zeroed(&f->arenas, h->narenas))
		err = &pm_error_no_memory;
	if (err) {
		pm_glibc_fragmentation_destroy(f);
		return err;
	}
	err = arenas_trim(t, f, res);
	if (err) {
		pm_glibc_fragmentation_destroy(f);
		return err;
	}
	for (size_t i = 0; i < h->narenas; i++) {
		const struct pm_trim_arena *a = &f->arenas.data[i];
		f->trim_returns += a->madvise.resident + a->systrim.resident;
		f->trim_range += a->madvise.bytes + a->systrim.bytes;
	}
	for (size_t k = 0; k < h->nchunks; k++) {
		const struct pm_chunk *c = &h->chunks[k];
		if (c->state != PM_CHUNK_MMAPPED)
			continue;
		f->mmapped_chunks++;
		add_range(res, &f->mmapped, c->addr, c->addr + c->size);
	}
	*ret = f;
	return NULL;
}

void pm_glibc_fragmentation_destroy(struct pm_glibc_fragmentation *f)
{
	if (!f)
		return;
	pm_trim_arena_vector_deinit(&f->arenas);
	pm_addr_set_deinit(&f->unsorted);
	free(f);
}

/* ---------------------------------------------------------------- pymalloc */

/* The pools with used blocks inside [start, end): a slice of pm->pools. */
static size_t first_pool_at(const struct pm_pymalloc *pm, uint64_t start)
{
	size_t lo = 0, hi = pm->npools;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pm->pools[mid].address < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct pm_error *arena_use(const struct pm_pymalloc *pm, struct pm_residency *res,
				  const struct pm_pymalloc_arena *ar,
				  struct pm_pymalloc_arena_use *u)
{
	uint64_t pool = pm->pool_size;
	uint64_t base = (ar->address + pool - 1) & ~(pool - 1);
	uint64_t end = ar->address + pm->arena_size;
	u->address = ar->address;
	uint64_t carved = ar->pool_address > base ? (ar->pool_address - base) / pool : 0;
	u->never_pools = ar->ntotalpools > carved ? (uint32_t)(ar->ntotalpools - carved) : 0;
	for (size_t k = first_pool_at(pm, ar->address);
	     k < pm->npools && pm->pools[k].address < end; k++) {
		const struct pm_pymalloc_pool *p = &pm->pools[k];
		u->used_pools++;
		u->used_blocks += p->nused;
		u->used_bytes += (uint64_t)p->nused * pm_pymalloc_block_size(p->szidx);
	}
	u->empty_pools = carved > u->used_pools ? (uint32_t)(carved - u->used_pools) : 0;
	add_range(res, &u->whole, ar->address, end);
	u->pinned = u->used_blocks &&
		    (double)u->used_bytes <= PM_PINNED_SHARE * (double)pm->arena_size;
	return NULL;
}

/* Every used block of a pinned arena, in address order. */
static struct pm_error *pinning_blocks(const struct pm_pymalloc *pm, uint32_t index,
				       struct pm_pymalloc_fragmentation *f)
{
	const struct pm_pymalloc_arena_use *u = &f->arenas.data[index];
	uint64_t end = u->address + pm->arena_size;
	for (size_t k = first_pool_at(pm, u->address);
	     k < pm->npools && pm->pools[k].address < end; k++) {
		const struct pm_pymalloc_pool *p = &pm->pools[k];
		uint32_t size = pm_pymalloc_block_size(p->szidx);
		for (uint32_t b = 0; b < p->nblocks; b++) {
			if (!pm_pymalloc_block_used(pm, p, b))
				continue;
			struct pm_pinning_block block = {
				.addr = p->address + PM_PYMALLOC_POOL_OVERHEAD +
					(uint64_t)b * size,
				.size = size, .arena = index,
			};
			if (!pm_pinning_block_vector_append(&f->blocks, &block))
				return &pm_error_no_memory;
		}
	}
	return NULL;
}

struct pm_error *pm_pymalloc_fragmentation_create(struct pm_target *t,
						  struct pm_residency *res,
						  struct pm_pymalloc_fragmentation **ret)
{
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_pymalloc_walk(t, &pm);
	if (err)
		return err;
	struct pm_pymalloc_fragmentation *f = calloc(1, sizeof(*f));
	if (!f)
		return &pm_error_no_memory;
	f->pm = pm;
	const struct pm_python_info *py;
	err = pm_python_detect(t, &py);
	if (!err)
		f->minor = py->minor;
	pm_error_destroy(err);
	err = NULL;
	bool some_empty = false;
	size_t n = pm->found ? pm->arena_list.size : 0;
	if (n && !pm_pymalloc_arena_use_vector_append_zeroed(&f->arenas, n)) {
		pm_pymalloc_fragmentation_destroy(f);
		return &pm_error_no_memory;
	}
	for (size_t i = 0; i < n && !err; i++) {
		const struct pm_pymalloc_arena *ar = &pm->arena_list.data[i];
		struct pm_pymalloc_arena_use *u = &f->arenas.data[i];
		err = arena_use(pm, res, ar, u);
		if (ar->ntotalpools && ar->nfreepools == ar->ntotalpools)
			some_empty = true;
		if (err || !u->pinned)
			continue;
		f->pinned_arenas++;
		f->pinned_blocks += u->used_blocks;
		f->pinned_bytes += pm->arena_size;
		f->pinned_whole.bytes += u->whole.bytes;
		f->pinned_whole.resident += u->whole.resident;
		f->pinned_whole.swapped += u->whole.swapped;
		err = pinning_blocks(pm, (uint32_t)i, f);
	}
	if (err) {
		pm_pymalloc_fragmentation_destroy(f);
		return err;
	}
	/* CPython 3.9+ (bpo-37257) frees an arena that becomes empty only if
	 * another usable arena follows it: the emptiest one is kept. */
	f->keeps_one_empty = f->minor >= 9 && !some_empty;
	f->arenas_freed_if_released = f->pinned_arenas -
		(f->keeps_one_empty && f->pinned_arenas ? 1 : 0);
	*ret = f;
	return NULL;
}

void pm_pymalloc_fragmentation_destroy(struct pm_pymalloc_fragmentation *f)
{
	if (!f)
		return;
	pm_pymalloc_arena_use_vector_deinit(&f->arenas);
	pm_pinning_block_vector_deinit(&f->blocks);
	free(f);
}
