/* The glibc malloc walk: arenas (main_arena's next ring), their heaps (the
 * brk heap; heap_info chains of the others), mmapped chunks (page scan of
 * anonymous mappings), and the free sets from bins, fastbins and every
 * tcache. Produces the address-sorted chunk array and mallinfo2's totals,
 * computed the way glibc's int_mallinfo does, from the free lists. */
#include "glibc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc_internal.h"
#include "target.h"

#define HEAPS_PER_ARENA_MAX 65536   /* heap_info chain cap */
#define RESYNC_STEPS_MAX (1u << 22)         /* one resync */
#define RESYNC_STEPS_TOTAL (1ull << 26)     /* all resyncs of a walk */


void pm_glibc_problem(struct pm_glibc_walk *w, uint64_t addr, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pm_target_warn(w->t, true, addr, "glibc: %s", msg);
	w->heap->problems++;
	w->heap->partial = true;
}

/* ---- target reads ---- */

/* Small reads go through pm_target_view (the target's block cache), not a
 * source read each: free lists are walked one chunk at a time. */
bool pm_glibc_read(struct pm_glibc_walk *w, uint64_t addr, void *buf, size_t len)
{
	w->win.end = 0;
	const void *p;
	struct pm_error *err = pm_target_view(w->t, addr, len, &p);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	memcpy(buf, p, len);
	return true;
}

bool pm_glibc_read_u64(struct pm_glibc_walk *w, uint64_t addr, uint64_t *v)
{
	return pm_glibc_read(w, addr, v, sizeof(*v));
}

static bool win_refill(struct pm_glibc_walk *w, uint64_t addr)
{
	w->win.end = 0;
	struct pm_region *r = pm_target_find_region(w->t, addr);
	if (!r)
		return false;
	size_t len = r->end - addr < PM_VIEW_MAX ? r->end - addr : PM_VIEW_MAX;
	while (len >= 16) {
		const void *p;
		struct pm_error *err = pm_target_view(w->t, addr, len, &p);
		if (!err) {
			w->win = (struct pm_glibc_window){addr, addr + len, p};
			return true;
		}
		pm_error_destroy(err);
		len = len > PM_GLIBC_PAGE ? len / 2 : (len > 16 ? 16 : 0);
	}
	return false;
}

/* The u64 at addr through the window. */
bool pm_glibc_window_u64(struct pm_glibc_walk *w, uint64_t addr, uint64_t *v)
{
	if (!(addr >= w->win.start && addr + 8 <= w->win.end)) {
		if (!win_refill(w, addr) || addr + 8 > w->win.end)
			return pm_glibc_read_u64(w, addr, v);
	}
	memcpy(v, w->win.data + (addr - w->win.start), 8);
	return true;
}

/* ---- chunks ---- */

bool pm_glibc_chunk_push(struct pm_glibc_walk *w, uint64_t addr, uint64_t size,
		       uint8_t state, uint8_t arena)
{
	struct pm_glibc_heap *h = w->heap;
	if (h->nchunks == w->chunks_cap) {
		size_t ncap = w->chunks_cap ? w->chunks_cap * 2 : 4096;
		void *n = realloc(h->chunks, ncap * sizeof(*h->chunks));
		if (!n) {
			w->fatal = &pm_error_no_memory;
			return false;
		}
		h->chunks = n;
		w->chunks_cap = ncap;
	}
	h->chunks[h->nchunks++] = (struct pm_chunk){addr, size, state, arena};
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void known_build(struct pm_glibc_walk *w)
{
	w->known = malloc((w->fs.count + 1) * sizeof(*w->known));
	if (!w->known) {
		w->fatal = &pm_error_no_memory;
		return;
	}
	for (size_t i = 0; i < w->fs.cap; i++) {
		if (w->fs.keys[i])
			w->known[w->nknown++] = w->fs.keys[i];
	}
	if (w->nknown)
		qsort(w->known, w->nknown, sizeof(*w->known), cmp_u64);
}

/* The lowest known chunk (free-list member or top) in (p, end]. */
static uint64_t known_after(const struct pm_glibc_walk *w, uint64_t p, uint64_t top,
			    uint64_t end)
{
	size_t lo = 0, hi = w->nknown;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (w->known[mid] <= p)
			lo = mid + 1;
		else
			hi = mid;
	}
	uint64_t best = end;
	if (lo < w->nknown && w->known[lo] < best)
		best = w->known[lo];
	if (top > p && top < best)
		best = top;
	return best;
}

#define RESYNC_CHAIN_MIN 8   /* well-formed headers that make a resync point */

/* True if sizes chained from q land exactly on target, or run through
 * RESYNC_CHAIN_MIN well-formed headers before the next damaged one (which
 * the walk then reports on its own). */
static bool chain_lands(struct pm_glibc_walk *w, uint64_t q, uint64_t target,
			size_t *budget)
{
	size_t good = 0;
	while (q < target && *budget > 0) {
		(*budget)--;
		uint64_t sz;
		if (!pm_glibc_window_u64(w, q + 8, &sz))
			return false;
		sz &= ~(uint64_t)PM_GLIBC_FLAGS;
		if (sz < PM_GLIBC_MINSIZE || (sz & 15) || sz > target - q)
			return good >= RESYNC_CHAIN_MIN;
		good++;
		q += sz;
	}
	return q == target;
}

static uint64_t align16(uint64_t a)
{
	return (a + 15) & ~15ull;
}

/* Where the next readable header may be after q, whose header is not
 * readable: the end of q's region (a core's unsaved part), or the start of
 * the next region. UINT64_MAX when none follows. */
static uint64_t readable_after(struct pm_glibc_walk *w, uint64_t q)
{
	struct pm_region *r = pm_target_find_region(w->t, q + 8);
	if (r)
		return r->end;
	for (size_t i = 0; i < pm_target_region_count(w->t); i++) {
		struct pm_region *n = pm_target_region(w->t, i);
		if (n->start > q + 8)
			return n->start;
	}
	return UINT64_MAX;
}

/* After damage at p: the first 16-aligned address from which chunk sizes
 * chain onto the next known chunk (see chain_lands), else that chunk. */
static uint64_t resync(struct pm_glibc_walk *w, uint64_t p, uint64_t top, uint64_t end)
{
	uint64_t target = known_after(w, p, top, end);
	if (w->resync_steps >= RESYNC_STEPS_TOTAL)
		return target;      /* heavily damaged: skip to known chunks */
	size_t budget = RESYNC_STEPS_MAX, q_found = 0;
	uint64_t q, sz;
	for (q = p + 16; q < target && budget > 0; q += 16) {
		/* A damaged top or end can put target far past the heap: no
		 * header in unmapped or unsaved memory, so do not probe it
		 * 16 bytes at a time (millions of failed reads). */
		if (!pm_glibc_window_u64(w, q + 8, &sz)) {
			uint64_t next = readable_after(w, q);
			budget--;
			if (next >= target)
				break;
			if (align16(next) - 16 > q)
				q = align16(next) - 16;
			continue;
		}
		if (chain_lands(w, q, target, &budget)) {
			q_found = 1;
			break;
		}
	}
	w->resync_steps += RESYNC_STEPS_MAX - budget;
	return q_found ? q : target;
}

void pm_glibc_run_begin(struct pm_glibc_walk *w)
{
	if (w->nruns == w->runs_cap) {
		size_t ncap = w->runs_cap ? 2 * w->runs_cap : 64;
		size_t *n = realloc(w->runs, ncap * sizeof(*n));
		if (!n) {
			w->fatal = &pm_error_no_memory;
			return;
		}
		w->runs = n;
		w->runs_cap = ncap;
	}
	w->runs[w->nruns++] = w->heap->nchunks;
}

/* The fencepost pair at p that ends an older heap of a non-main arena
 * (sysmalloc puts it in the old top's last 32 bytes when the arena grows
 * a new heap): one chunk of its own, in use as mallinfo2 counts it.
 * Returns the bytes it covers. */
static uint64_t fencepost_push(struct pm_glibc_walk *w, uint8_t arena_idx,
			       uint64_t p, uint64_t end)
{
	uint64_t size = end - p < PM_GLIBC_FENCEPOST_SIZE ? end - p
							   : PM_GLIBC_FENCEPOST_SIZE;
	if (end - p != PM_GLIBC_FENCEPOST_SIZE)
		pm_glibc_problem(w, p, "fencepost 0x%llx is 0x%llx bytes before its heap's end 0x%llx, not 0x%x",
				 (unsigned long long)p,
				 (unsigned long long)(end - p),
				 (unsigned long long)end,
				 PM_GLIBC_FENCEPOST_SIZE);
	pm_glibc_chunk_push(w, p, size, PM_CHUNK_FENCEPOST, arena_idx);
	return size;
}

/* Walks chunks in [start, end) of one heap. top is the arena's top when it
 * lies in this heap (the walk ends there), else 0 (the walk ends at the
 * fencepost). Returns the bytes covered by the chunks seen. */
static uint64_t walk_range(struct pm_glibc_walk *w, uint8_t arena_idx, uint64_t start,
			   uint64_t end, uint64_t top, uint64_t top_size)
{
	uint64_t p = start, covered = 0;
	/* [mapped_from, mapped_to): readable memory already checked, so most
	 * chunks need no region lookup. */
	uint64_t mapped_from = 0, mapped_to = 0;
	bool prev_free = false;     /* the previous chunk is in a bin */
	pm_glibc_run_begin(w);
	uint64_t steps_max = (end - start) / 16 + 2;
	for (uint64_t steps = 0; p < end && steps < steps_max && !w->fatal;
	     steps++) {
		if ((steps & 0xffff) == 0xffff) {
			/* By bytes of this heap (an arena's heaps one after
			 * another). */
			pm_target_progress(w->t, "walking malloc's chunks", p - start, end - start);
			if (pm_target_interrupted(w->t)) {
				w->fatal = pm_error_interrupted();
				break;
			}
		}
		if (top && p == top) {
			pm_glibc_chunk_push(w, p, top_size, PM_CHUNK_TOP, arena_idx);
			return covered + top_size;
		}
		uint64_t raw;
		if (!pm_glibc_window_u64(w, p + 8, &raw)) {
			pm_glibc_problem(w, p, "chunk header at 0x%llx unreadable",
				(unsigned long long)p);
			p = resync(w, p, top, end);
			prev_free = false;
			continue;
		}
		uint64_t size = raw & ~(uint64_t)PM_GLIBC_FLAGS;
		if (!top && size == 0x10)
			return covered + fencepost_push(w, arena_idx, p, end);
		uint64_t limit = top ? top : end;
		if (size < PM_GLIBC_MINSIZE || (size & 15) || size > limit - p) {
			pm_glibc_problem(w, p, "chunk 0x%llx has bad size 0x%llx",
				(unsigned long long)p, (unsigned long long)raw);
			p = resync(w, p, top, end);
			prev_free = false;
			continue;
		}
		/* A damaged top or heap end lets a size reach past the heap's
		 * memory: no chunk lies outside mapped memory (and such a size
		 * would reach the allocation index as a huge allocation). */
		bool mapped = p >= mapped_from && p + size <= mapped_to;
		if (!mapped && pm_target_is_mapped(w->t, p, size)) {
			const struct pm_region *r = pm_target_find_region(w->t, p + size - 1);
			mapped_from = p;
			mapped_to = r ? r->end : p + size;
			mapped = true;
		}
		if (!mapped) {
			pm_glibc_problem(w, p, "chunk 0x%llx of size 0x%llx runs past mapped memory",
				(unsigned long long)p, (unsigned long long)size);
			p = resync(w, p, top, end);
			prev_free = false;
			continue;
		}
		bool p_bit = raw & PM_GLIBC_PREV_INUSE;
		if (p != start && p_bit == prev_free)
			pm_glibc_problem(w, p, "chunk 0x%llx: PREV_INUSE is %s but the previous chunk is %sin a bin",
				(unsigned long long)p, p_bit ? "set" : "clear",
				prev_free ? "" : "not ");
		int st = pm_glibc_freeset_get(&w->fs, p);
		uint8_t state = st ? (uint8_t)(st - 1) : PM_CHUNK_USED;
		pm_glibc_chunk_push(w, p, size, state, arena_idx);
		prev_free = state == PM_CHUNK_FREE_BIN;
		covered += size;
		p += size;
	}
	if (top)
		pm_glibc_problem(w, p, "heap walk from 0x%llx did not reach top 0x%llx",
			(unsigned long long)start, (unsigned long long)top);
	return covered;
}

static void walk_main_heap(struct pm_glibc_walk *w, struct pm_glibc_arena *ar)
{
	if (ar->noncontiguous)
		pm_glibc_problem(w, ar->address, "main arena is non-contiguous (brk failed); only its last segment is walked");
	uint64_t start = w->main_start;
	uint64_t end = ar->top + ar->top_size;
	if (!start || start > ar->top) {
		pm_glibc_problem(w, ar->address, "main heap start unknown");
		return;
	}
	ar->nheaps = 0;
	uint64_t covered = walk_range(w, 0, start, end, ar->top, ar->top_size);
	if (covered != ar->system_mem && !w->heap->partial)
		pm_glibc_problem(w, start, "main heap chunks cover 0x%llx bytes, system_mem is 0x%llx",
			(unsigned long long)covered,
			(unsigned long long)ar->system_mem);
}

static bool heap_seen(const struct pm_glibc_u64_vector *heaps, uint64_t h)
{
	for (size_t i = 0; i < heaps->size; i++) {
		if (heaps->data[i] == h)
			return true;
	}
	return false;
}

void pm_glibc_overhead_push(struct pm_glibc_walk *w, uint64_t addr,
			    uint64_t size, uint8_t kind, uint8_t arena)
{
	struct pm_glibc_overhead o = {addr, size, kind, arena};
	if (!pm_glibc_overhead_vector_append(&w->overheads, &o))
		w->fatal = &pm_error_no_memory;
}

/* The heaps of a non-main arena, newest first (heap_info.prev chain from
 * the heap holding top). Each starts with its heap_info, the first one
 * also with the arena's malloc_state; each but the newest ends with a
 * fencepost. Headers, chunks and fenceposts cover heap_info.size bytes. */
static void walk_arena_heaps(struct pm_glibc_walk *w, struct pm_glibc_arena *ar,
			     uint8_t idx)
{
	const struct pm_glibc_layout *l = w->l;
	uint64_t h = ar->top & ~(w->heap_max - 1);
	struct pm_glibc_u64_vector heaps = PM_VECTOR_INIT;
	bool damaged = false;       /* the chain ended at a bad heap_info */
	for (size_t n = 0; h && n < HEAPS_PER_ARENA_MAX && !w->fatal; n++) {
		uint64_t hi[3];
		if (!pm_glibc_read(w, h, hi, sizeof(hi))) {
			pm_glibc_problem(w, h, "heap_info 0x%llx unreadable",
				(unsigned long long)h);
			damaged = true;
			break;
		}
		uint64_t ar_ptr = hi[l->hi_ar_ptr / 8], prev = hi[l->hi_prev / 8],
			 size = hi[l->hi_size / 8];
		if (ar_ptr != ar->address || size > w->heap_max || size < PM_GLIBC_PAGE) {
			pm_glibc_problem(w, h, "heap_info 0x%llx: ar_ptr 0x%llx size 0x%llx do not fit arena 0x%llx",
				(unsigned long long)h, (unsigned long long)ar_ptr,
				(unsigned long long)size,
				(unsigned long long)ar->address);
			damaged = true;
			break;
		}
		if ((h & (w->heap_max - 1)) || heap_seen(&heaps, h)) {
			pm_glibc_problem(w, h, "arena 0x%llx: heap_info chain %s at 0x%llx",
					 (unsigned long long)ar->address,
					 (h & (w->heap_max - 1)) ? "misaligned"
								 : "loops",
					 (unsigned long long)h);
			damaged = true;
			break;
		}
		if (!pm_glibc_u64_vector_append(&heaps, &h)) {
			w->fatal = &pm_error_no_memory;
			break;
		}
		ar->heap_sizes_total += size;
		/* _int_new_arena puts malloc_state right after heap_info and
		 * the first chunk where its user data is 16-aligned. */
		bool has_arena = ar->address == h + l->hi_sizeof;
		uint64_t first = has_arena ? align16(ar->address + l->ms_size)
					   : align16(h + l->hi_sizeof);
		if (has_arena)
			w->first_chunks[w->nfirst++] = first;
		pm_glibc_overhead_push(w, h, first - h, has_arena ?
				       PM_OVERHEAD_ARENA_HEADER :
				       PM_OVERHEAD_HEAP_HEADER, idx);
		bool has_top = ar->top >= h && ar->top < h + size;
		uint64_t end = has_top ? ar->top + ar->top_size : h + size;
		bool partial_before = w->heap->partial;
		uint64_t covered = walk_range(w, idx, first, end,
					      has_top ? ar->top : 0, ar->top_size);
		if (!partial_before && !w->heap->partial &&
		    (first - h) + covered != size)
			pm_glibc_problem(w, h, "heap 0x%llx of arena 0x%llx: header and chunks cover 0x%llx bytes, heap_info.size is 0x%llx",
				(unsigned long long)h,
				(unsigned long long)ar->address,
				(unsigned long long)((first - h) + covered),
				(unsigned long long)size);
		h = prev;
	}
	ar->nheaps = heaps.size;
	ar->heaps = pm_glibc_u64_vector_steal(&heaps);
	if (!damaged && !w->fatal && ar->heap_sizes_total != ar->system_mem)
		pm_glibc_problem(w, ar->address, "arena 0x%llx: heaps hold 0x%llx bytes, system_mem is 0x%llx",
			(unsigned long long)ar->address,
			(unsigned long long)ar->heap_sizes_total,
			(unsigned long long)ar->system_mem);
}

/* ---- results ---- */

static int cmp_chunk(const void *a, const void *b)
{
	const struct pm_chunk *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

struct run {
	uint64_t first;
	size_t start, end;
};

static int cmp_run(const void *a, const void *b)
{
	const struct run *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* Orders the chunks by address: concatenates the runs by their first
 * address (O(n)); a full sort only if runs overlap (corruption). */
static void chunks_sort(struct pm_glibc_walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	struct run *runs = calloc(w->nruns + 1, sizeof(*runs));
	struct pm_chunk *out = malloc((h->nchunks + 1) * sizeof(*out));
	bool sorted = runs && out;
	size_t k = 0, n = 0;
	for (size_t i = 0; sorted && i < w->nruns; i++) {
		size_t end = i + 1 < w->nruns ? w->runs[i + 1] : h->nchunks;
		if (end > w->runs[i])
			runs[k++] = (struct run){h->chunks[w->runs[i]].addr,
						 w->runs[i], end};
	}
	if (sorted && k)
		qsort(runs, k, sizeof(*runs), cmp_run);
	for (size_t i = 0; sorted && i < k; i++) {
		memcpy(out + n, h->chunks + runs[i].start,
		       (runs[i].end - runs[i].start) * sizeof(*out));
		n += runs[i].end - runs[i].start;
	}
	for (size_t i = 1; sorted && i < n; i++)
		sorted = out[i - 1].addr < out[i].addr;
	if (sorted && n == h->nchunks) {
		free(h->chunks);
		h->chunks = out;
		w->chunks_cap = h->nchunks + 1;
	} else {
		free(out);
		if (h->nchunks)
			qsort(h->chunks, h->nchunks, sizeof(*h->chunks),
			      cmp_chunk);
	}
	free(runs);
}

static void check_free_seen(struct pm_glibc_walk *w)
{
	size_t seen = 0;
	for (size_t i = 0; i < w->heap->nchunks; i++) {
		uint8_t s = w->heap->chunks[i].state;
		seen += s == PM_CHUNK_FREE_BIN || s == PM_CHUNK_FREE_FASTBIN;
	}
	if (seen != w->fs.count && !w->heap->partial)
		pm_glibc_problem(w, w->heap->main_arena, "%zu free-list chunks, %zu of them found by the heap walk",
			w->fs.count, seen);
}

static void sum_totals(struct pm_glibc_walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	struct pm_mallinfo *t = &h->total;
	for (size_t i = 0; i < h->narenas; i++) {
		const struct pm_mallinfo *a = &h->arenas[i].info;
		t->arena += a->arena;
		t->ordblks += a->ordblks;
		t->smblks += a->smblks;
		t->fsmblks += a->fsmblks;
		t->uordblks += a->uordblks;
		t->fordblks += a->fordblks;
		t->keepcost += a->keepcost;
	}
}

/* mp_'s own count of mmapped chunks, to check the page scan against. */
static void check_mp(struct pm_glibc_walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	if (!h->mp)
		return;
	int32_t n_mmaps;
	uint64_t mmapped_mem;
	if (!pm_glibc_read(w, h->mp + w->l->mp_n_mmaps, &n_mmaps, 4) ||
	    !pm_glibc_read_u64(w, h->mp + w->l->mp_mmapped_mem, &mmapped_mem))
		return;
	h->mp_n_mmaps = (uint64_t)(int64_t)n_mmaps;
	h->mp_mmapped_mem = mmapped_mem;
	uint64_t drift = mmapped_mem - h->total.hblkhd;
	if (w->l->mmap_tail && h->mp_n_mmaps == h->total.hblks &&
	    mmapped_mem > h->total.hblkhd && drift % 16 == 0 && drift / 16 <= (1u << 20)) {
		/* glibc 2.43's mremap_chunk adds 16 bytes too many to
		 * mmapped_mem each time it resizes an mmapped chunk (it
		 * subtracts the old chunk's size, not its mapping's). The
		 * mappings are what is resident: they are the figure. */
		pm_target_warn(w->t, true, h->mp,
			       "glibc: mp_.mmapped_mem (mallinfo2's hblkhd) is %llu bytes above "
			       "the %llu mmapped chunks' mappings: glibc 2.43 counts 16 bytes "
			       "too many per mremap of an mmapped chunk (%llu here)",
			       (unsigned long long)drift, (unsigned long long)h->total.hblks,
			       (unsigned long long)(drift / 16));
		return;
	}
	if (h->mp_n_mmaps != h->total.hblks || mmapped_mem != h->total.hblkhd)
		pm_glibc_problem(w, h->mp, "mmapped chunks found: %llu (%llu bytes); mp_ says %llu (%llu bytes)",
			(unsigned long long)h->total.hblks,
			(unsigned long long)h->total.hblkhd,
			(unsigned long long)h->mp_n_mmaps,
			(unsigned long long)mmapped_mem);
}

static void label_heaps(struct pm_glibc_walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	char detail[48];
	for (size_t i = 0; i < h->narenas; i++) {
		struct pm_glibc_arena *ar = &h->arenas[i];
		if (ar->is_main) {
			snprintf(detail, sizeof(detail), "main arena 0x%llx",
				 (unsigned long long)ar->address);
			pm_target_label_area(w->t, w->main_start,
					     ar->top + ar->top_size,
					     PM_LABEL_GLIBC_MAIN_HEAP, detail);
			continue;
		}
		size_t n = pm_target_region_count(w->t);
		for (size_t k = 0; k < ar->nheaps; k++) {
			uint64_t hs = ar->heaps[k], he = hs + w->heap_max;
			for (size_t j = 0; j < n; j++) {
				struct pm_region *r = pm_target_region(w->t, j);
				if (r->end <= hs || r->start >= he)
					continue;
				bool used = r->perms & PM_PERM_R;
				snprintf(detail, sizeof(detail), "arena 0x%llx",
					 (unsigned long long)ar->address);
				pm_target_label_area(w->t, r->start > hs ? r->start : hs,
						     r->end < he ? r->end : he,
						     used ? PM_LABEL_GLIBC_ARENA_HEAP
							  : PM_LABEL_GLIBC_ARENA_RESERVED,
						     detail);
			}
		}
	}
}

static int cmp_overhead(const void *a, const void *b)
{
	const struct pm_glibc_overhead *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* The overheads, in address order, to the heap. */
static void overheads_finish(struct pm_glibc_walk *w)
{
	struct pm_glibc_overhead_vector *v = &w->overheads;
	if (v->size)
		qsort(v->data, v->size, sizeof(*v->data), cmp_overhead);
	w->heap->noverheads = v->size;
	w->heap->overheads = pm_glibc_overhead_vector_steal(v);
}

static void heap_destroy(void *p)
{
	struct pm_glibc_heap *h = p;
	if (!h)
		return;
	for (size_t i = 0; i < h->narenas; i++)
		free(h->arenas[i].heaps);
	free(h->arenas);
	free(h->chunks);
	free(h->overheads);
	free(h);
}

/* Main heap start: mp_.sbrk_base, else the top's end minus system_mem. */
static void main_start_find(struct pm_glibc_walk *w, const struct pm_glibc_roots *roots)
{
	struct pm_glibc_heap *h = w->heap;
	struct pm_glibc_arena *main = &h->arenas[0];
	uint64_t derived = main->top + main->top_size - main->system_mem;
	h->mp = roots->mp;
	h->mp_source = roots->mp_source;
	if (!h->mp && !main->noncontiguous) {
		h->mp = pm_glibc_scan_mp(w->t, w->l, h->main_arena, derived);
		h->mp_source = h->mp ? "signature scan" : NULL;
	}
	uint64_t sbrk = 0;
	if (h->mp)
		pm_glibc_read_u64(w, h->mp + w->l->mp_sbrk_base, &sbrk);
	if (h->mp && w->l->mp_hp_pagesize) {
		uint64_t hp = 0;
		pm_glibc_read_u64(w, h->mp + w->l->mp_hp_pagesize, &hp);
		if (hp)
			w->heap_max = 4 * hp;
	}
	w->main_start = sbrk ? align16(sbrk) : derived;
	if (sbrk && align16(sbrk) != derived && !main->noncontiguous)
		pm_glibc_problem(w, sbrk, "mp_.sbrk_base 0x%llx differs from top end - system_mem 0x%llx",
			(unsigned long long)sbrk, (unsigned long long)derived);
}

static struct pm_error *walk_run(struct pm_glibc_walk *w,
				 const struct pm_glibc_roots *roots)
{
	struct pm_glibc_heap *h = w->heap;
	struct pm_error *err = pm_glibc_arenas_collect(w);
	if (err)
		return err;
	w->first_chunks = calloc(h->narenas + 1, sizeof(*w->first_chunks));
	if (!w->first_chunks)
		return &pm_error_no_memory;
	for (size_t i = 0; i < h->narenas && !w->fatal; i++)
		pm_glibc_arena_load(w, &h->arenas[i]);
	if (w->fatal)
		return w->fatal;
	main_start_find(w, roots);
	known_build(w);
	for (size_t i = 0; i < h->narenas && !w->fatal; i++) {
		uint8_t idx = i < 0xfe ? (uint8_t)i : 0xfe;
		if (h->arenas[i].is_main)
			walk_main_heap(w, &h->arenas[i]);
		else
			walk_arena_heaps(w, &h->arenas[i], idx);
	}
	if (w->fatal)
		return w->fatal;
	check_free_seen(w);
	pm_glibc_scan_mmapped(w);
	if (w->fatal)
		return w->fatal;
	chunks_sort(w);
	pm_glibc_find_tcaches(w);
	sum_totals(w);
	check_mp(w);
	label_heaps(w);
	overheads_finish(w);
	return w->fatal;
}

/* A core whose bytes are partly missing (truncated) may lack main_arena:
 * then the report says so and is partial, rather than failing. */
static bool core_lacks_roots(struct pm_target *t, const struct pm_error *err)
{
	if (strcmp(pm_target_kind(t), "core") != 0)
		return false;
	if (err->code != PM_ERR_NOT_FOUND && err->code != PM_ERR_NOT_SAVED &&
	    err->code != PM_ERR_UNMAPPED)
		return false;
	/* the core source warns about what it lacks (truncation, notes) */
	return pm_target_warning_count(t) > 0;
}

struct pm_error *pm_glibc_walk(struct pm_target *t,
			       const struct pm_glibc_heap **ret)
{
	struct pm_glibc_heap *cached = pm_target_cache_get(t, PM_CACHE_GLIBC);
	if (cached) {
		*ret = cached;
		return NULL;
	}
	struct pm_glibc_roots roots;
	struct pm_error *err = pm_glibc_find_roots(t, &roots);
	if (err && !core_lacks_roots(t, err))
		return err;
	struct pm_glibc_heap *h = calloc(1, sizeof(*h));
	if (!h) {
		pm_error_destroy(err);
		return &pm_error_no_memory;
	}
	if (err) {
		/* Nothing to walk, but say why instead of failing the report. */
		pm_target_warn(t, err->has_address, err->address,
			       "glibc: %s; nothing to walk (is the core truncated?)",
			       err->message);
		pm_error_destroy(err);
		h->partial = true;
		h->problems = 1;
		h->version_source = h->main_arena_source = "not found";
		pm_target_cache_set(t, PM_CACHE_GLIBC, h, heap_destroy);
		*ret = h;
		return NULL;
	}
	h->version_major = roots.major;
	h->version_minor = roots.minor;
	snprintf(h->version_source_buf, sizeof(h->version_source_buf), "%s",
		 roots.version_source ? roots.version_source : "unknown");
	h->version_source = h->version_source_buf;
	h->main_arena = roots.main_arena;
	h->main_arena_source = roots.main_arena_source;
	if (roots.other_allocator) {
		snprintf(h->other_allocator_buf, sizeof(h->other_allocator_buf),
			 "%s", roots.other_allocator);
		h->other_allocator = h->other_allocator_buf;
	} else {
		struct pm_glibc_walk w = {.t = t, .l = roots.layout, .heap = h,
				 .heap_max = PM_GLIBC_HEAP_MAX_SIZE};
		err = walk_run(&w, &roots);
		pm_glibc_freeset_deinit(&w.fs);
		free(w.known);
		free(w.first_chunks);
		free(w.runs);
		pm_glibc_overhead_vector_deinit(&w.overheads);
		if (err) {
			heap_destroy(h);
			return err;
		}
	}
	pm_target_cache_set(t, PM_CACHE_GLIBC, h, heap_destroy);
	*ret = h;
	return NULL;
}

const char *pm_chunk_state_name(enum pm_chunk_state state)
{
	static const char *const names[] = {
		[PM_CHUNK_USED] = "used",
		[PM_CHUNK_FREE_BIN] = "free-bin",
		[PM_CHUNK_FREE_FASTBIN] = "free-fastbin",
		[PM_CHUNK_FREE_TCACHE] = "free-tcache",
		[PM_CHUNK_TOP] = "top",
		[PM_CHUNK_TCACHE_STRUCT] = "tcache-struct",
		[PM_CHUNK_MMAPPED] = "mmapped",
		[PM_CHUNK_FENCEPOST] = "fencepost",
	};
	if ((unsigned)state < sizeof(names) / sizeof(names[0]))
		return names[state];
	return "?";
}

bool pm_chunk_state_is_used(enum pm_chunk_state state)
{
	return state == PM_CHUNK_USED || state == PM_CHUNK_MMAPPED;
}

const struct pm_chunk *pm_glibc_chunk_containing(const struct pm_glibc_heap *h,
						 uint64_t addr)
{
	size_t lo = 0, hi = h->nchunks;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (h->chunks[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	const struct pm_chunk *c = &h->chunks[lo - 1];
	return addr < c->addr + c->size ? c : NULL;
}

const struct pm_glibc_overhead *pm_glibc_overhead_containing(
	const struct pm_glibc_heap *h, uint64_t addr)
{
	size_t lo = 0, hi = h->noverheads;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (h->overheads[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	const struct pm_glibc_overhead *o = &h->overheads[lo - 1];
	return addr - o->addr < o->size ? o : NULL;
}

bool pm_glibc_own_memory_name(const struct pm_glibc_heap *h, uint64_t addr,
			      const char **kind, const char **detail)
{
	*detail = "-";
	const struct pm_glibc_overhead *o = pm_glibc_overhead_containing(h, addr);
	if (o && o->addr == addr) {
		switch (o->kind) {
		case PM_OVERHEAD_ARENA_HEADER:
			*kind = "arena header";
			*detail = "heap_info + malloc_state";
			return true;
		case PM_OVERHEAD_HEAP_HEADER:
			*kind = "arena header";
			*detail = "heap_info";
			return true;
		case PM_OVERHEAD_MMAP_LEAD:
			*kind = "memalign padding";
			*detail = "mmapped chunk";
			return true;
		default:
			return false;
		}
	}
	const struct pm_chunk *c = pm_glibc_chunk_containing(h, addr);
	if (!c || c->addr != addr)
		return false;
	if (c->state == PM_CHUNK_TCACHE_STRUCT)
		*kind = "tcache_perthread_struct";
	else if (c->state == PM_CHUNK_FENCEPOST)
		*kind = "heap fencepost";
	else
		return false;
	return true;
}
