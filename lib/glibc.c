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

#define ARENA_MAX 1024              /* arena ring cap */
#define HEAPS_PER_ARENA_MAX 65536   /* heap_info chain cap */
#define LIST_MAX (1u << 24)         /* any one free list */
#define RESYNC_STEPS_MAX (1u << 22)
#define PAGE 4096ull

/* Free-list membership: open-addressing hash of chunk address -> state. */
struct freeset {
	uint64_t *keys;
	uint8_t *states;
	size_t cap, count;
};

/* A read-only window of target memory for sequential heap walks; every
 * other read of target memory invalidates it (pm_target_view's rule). */
struct window {
	uint64_t start, end;
	const uint8_t *data;
};

struct walk {
	struct pm_target *t;
	const struct pm_glibc_layout *l;
	struct pm_glibc_heap *heap;
	struct freeset fs;
	uint64_t *known;            /* sorted free-list chunk addresses */
	size_t nknown;
	size_t chunks_cap;
	struct window win;
	uint64_t heap_max;          /* HEAP_MAX_SIZE in effect */
	uint64_t main_start;        /* first chunk of the main heap */
	uint64_t *first_chunks;     /* first chunk of each arena's first heap */
	size_t nfirst;
	struct pm_error *fatal;     /* host allocation failure */
};

static void problem(struct walk *w, uint64_t addr, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct walk *w, uint64_t addr, const char *fmt, ...)
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
static bool rd(struct walk *w, uint64_t addr, void *buf, size_t len)
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

static bool rd_u64(struct walk *w, uint64_t addr, uint64_t *v)
{
	return rd(w, addr, v, sizeof(*v));
}

static bool win_refill(struct walk *w, uint64_t addr)
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
			w->win = (struct window){addr, addr + len, p};
			return true;
		}
		pm_error_destroy(err);
		len = len > PAGE ? len / 2 : (len > 16 ? 16 : 0);
	}
	return false;
}

/* The u64 at addr through the window. */
static bool win_u64(struct walk *w, uint64_t addr, uint64_t *v)
{
	if (!(addr >= w->win.start && addr + 8 <= w->win.end)) {
		if (!win_refill(w, addr) || addr + 8 > w->win.end)
			return rd_u64(w, addr, v);
	}
	memcpy(v, w->win.data + (addr - w->win.start), 8);
	return true;
}

/* ---- free set ---- */

static uint64_t hash_addr(uint64_t a)
{
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	return a;
}

static bool freeset_grow(struct freeset *fs)
{
	size_t ncap = fs->cap ? fs->cap * 2 : 1024;
	uint64_t *keys = calloc(ncap, sizeof(*keys));
	uint8_t *states = calloc(ncap, 1);
	if (!keys || !states) {
		free(keys);
		free(states);
		return false;
	}
	for (size_t i = 0; i < fs->cap; i++) {
		if (!fs->keys[i])
			continue;
		size_t j = hash_addr(fs->keys[i]) & (ncap - 1);
		while (keys[j])
			j = (j + 1) & (ncap - 1);
		keys[j] = fs->keys[i];
		states[j] = fs->states[i];
	}
	free(fs->keys);
	free(fs->states);
	fs->keys = keys;
	fs->states = states;
	fs->cap = ncap;
	return true;
}

/* 0 when absent, else the state + 1. */
static int freeset_get(const struct freeset *fs, uint64_t addr)
{
	if (!fs->cap)
		return 0;
	size_t j = hash_addr(addr) & (fs->cap - 1);
	while (fs->keys[j]) {
		if (fs->keys[j] == addr)
			return fs->states[j] + 1;
		j = (j + 1) & (fs->cap - 1);
	}
	return 0;
}

/* Adds addr; false if it was already there (a loop or a chunk in two
 * lists) or on allocation failure (w->fatal set). */
static bool freeset_add(struct walk *w, uint64_t addr, uint8_t state)
{
	struct freeset *fs = &w->fs;
	if ((fs->count + 1) * 2 > fs->cap && !freeset_grow(fs)) {
		w->fatal = &pm_error_no_memory;
		return false;
	}
	size_t j = hash_addr(addr) & (fs->cap - 1);
	while (fs->keys[j]) {
		if (fs->keys[j] == addr)
			return false;
		j = (j + 1) & (fs->cap - 1);
	}
	fs->keys[j] = addr;
	fs->states[j] = state;
	fs->count++;
	return true;
}

static void freeset_deinit(struct freeset *fs)
{
	free(fs->keys);
	free(fs->states);
}

/* ---- free lists ---- */

static const char *list_state_name(uint8_t state)
{
	switch (state) {
	case PM_CHUNK_FREE_BIN: return "bin";
	case PM_CHUNK_FREE_FASTBIN: return "fastbin";
	case PM_CHUNK_FREE_TCACHE: return "tcache";
	default: return "list";
	}
}

static void list_duplicate(struct walk *w, uint64_t chunk, uint8_t state,
			   const char *list)
{
	int old = freeset_get(&w->fs, chunk);
	problem(w, chunk, "chunk 0x%llx of %s is already in a %s list (loop or double free); list cut here",
		(unsigned long long)chunk, list,
		old ? list_state_name((uint8_t)(old - 1)) : "free");
	(void)state;
}

/* Bin i (1..127) of arena: fd chain back to the bin's own fake chunk. */
static void walk_bin(struct walk *w, struct pm_glibc_arena *ar, int i,
		     const uint8_t *ms)
{
	const struct pm_glibc_layout *l = w->l;
	uint64_t head = ar->address + l->ms_bins + (uint64_t)(i - 1) * 16 - 16;
	uint64_t fd;
	memcpy(&fd, ms + l->ms_bins + (size_t)(i - 1) * 16, 8);
	uint64_t prev = head;
	char list[48];
	snprintf(list, sizeof(list), "bin %d of arena 0x%llx", i,
		 (unsigned long long)ar->address);
	for (size_t n = 0; fd != head; n++) {
		if (n >= LIST_MAX || (fd & 15) ||
		    !pm_target_is_mapped(w->t, fd, 32)) {
			problem(w, prev, "%s: bad forward pointer 0x%llx after 0x%llx",
				list, (unsigned long long)fd,
				(unsigned long long)prev);
			return;
		}
		uint64_t hdr[4];
		if (!rd(w, fd, hdr, sizeof(hdr))) {
			problem(w, fd, "%s: chunk 0x%llx unreadable", list,
				(unsigned long long)fd);
			return;
		}
		if (hdr[3] != prev)
			problem(w, fd, "%s: chunk 0x%llx has bk 0x%llx, expected 0x%llx",
				list, (unsigned long long)fd,
				(unsigned long long)hdr[3],
				(unsigned long long)prev);
		uint64_t size = hdr[1] & ~(uint64_t)PM_GLIBC_FLAGS;
		if (size < PM_GLIBC_MINSIZE || (size & 15)) {
			problem(w, fd, "%s: chunk 0x%llx has bad size 0x%llx",
				list, (unsigned long long)fd,
				(unsigned long long)hdr[1]);
			return;
		}
		if (!freeset_add(w, fd, PM_CHUNK_FREE_BIN)) {
			if (!w->fatal)
				list_duplicate(w, fd, PM_CHUNK_FREE_BIN, list);
			return;
		}
		ar->info.ordblks++;
		ar->info.fordblks += size;
		prev = fd;
		fd = hdr[2];
	}
}

/* Decodes a safe-linked pointer stored at field_addr. */
static uint64_t reveal(const struct pm_glibc_layout *l, uint64_t field_addr,
		       uint64_t stored)
{
	return l->safe_linking ? (field_addr >> 12) ^ stored : stored;
}

static void walk_fastbin(struct walk *w, struct pm_glibc_arena *ar, int i,
			 const uint8_t *ms)
{
	const struct pm_glibc_layout *l = w->l;
	uint64_t p;
	memcpy(&p, ms + l->ms_fastbins + (size_t)i * 8, 8);
	uint64_t want = (uint64_t)(i + 2) * 16;
	char list[48];
	snprintf(list, sizeof(list), "fastbin %d of arena 0x%llx", i,
		 (unsigned long long)ar->address);
	for (size_t n = 0; p; n++) {
		if (n >= LIST_MAX || (p & 15) ||
		    !pm_target_is_mapped(w->t, p, 32)) {
			problem(w, p, "%s: bad pointer 0x%llx", list,
				(unsigned long long)p);
			return;
		}
		uint64_t hdr[3];
		if (!rd(w, p, hdr, sizeof(hdr))) {
			problem(w, p, "%s: chunk unreadable", list);
			return;
		}
		uint64_t size = hdr[1] & ~(uint64_t)PM_GLIBC_FLAGS;
		if (size != want) {
			problem(w, p, "%s: chunk 0x%llx has size 0x%llx, expected 0x%llx",
				list, (unsigned long long)p,
				(unsigned long long)hdr[1],
				(unsigned long long)want);
			return;
		}
		if (!freeset_add(w, p, PM_CHUNK_FREE_FASTBIN)) {
			if (!w->fatal)
				list_duplicate(w, p, PM_CHUNK_FREE_FASTBIN, list);
			return;
		}
		ar->info.smblks++;
		ar->info.fsmblks += size;
		ar->info.fordblks += size;
		p = reveal(l, p + 16, hdr[2]);
	}
}

/* Reads one arena's malloc_state, walks its bins and fastbins and fills
 * its mallinfo share the way int_mallinfo does. */
static bool arena_load(struct walk *w, struct pm_glibc_arena *ar)
{
	const struct pm_glibc_layout *l = w->l;
	uint8_t ms[0x900];
	if (l->ms_size > sizeof(ms) || !rd(w, ar->address, ms, l->ms_size)) {
		problem(w, ar->address, "arena 0x%llx unreadable",
			(unsigned long long)ar->address);
		return false;
	}
	memcpy(&ar->top, ms + l->ms_top, 8);
	memcpy(&ar->system_mem, ms + l->ms_system_mem, 8);
	uint32_t flags;
	memcpy(&flags, ms + l->ms_flags, 4);
	ar->noncontiguous = flags & PM_GLIBC_NONCONTIGUOUS;
	uint64_t top_hdr = 0;
	if ((ar->top & 15) || !rd_u64(w, ar->top + 8, &top_hdr)) {
		problem(w, ar->top, "arena 0x%llx: top chunk 0x%llx unreadable",
			(unsigned long long)ar->address,
			(unsigned long long)ar->top);
		top_hdr = 0;
	}
	ar->top_size = top_hdr & ~(uint64_t)PM_GLIBC_FLAGS;
	if (ar->top_size > ar->system_mem) {
		problem(w, ar->top, "arena 0x%llx: top size 0x%llx exceeds system_mem 0x%llx",
			(unsigned long long)ar->address,
			(unsigned long long)ar->top_size,
			(unsigned long long)ar->system_mem);
	}
	ar->info.arena = ar->system_mem;
	ar->info.ordblks = 1;
	ar->info.fordblks = ar->top_size;
	for (int i = 0; i < PM_GLIBC_NFASTBINS && !w->fatal; i++)
		walk_fastbin(w, ar, i, ms);
	for (int i = 1; i < PM_GLIBC_NBINS && !w->fatal; i++)
		walk_bin(w, ar, i, ms);
	ar->info.uordblks = ar->system_mem - ar->info.fordblks;
	if (ar->is_main)
		ar->info.keepcost = ar->top_size;
	return true;
}

static struct pm_error *arenas_collect(struct walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	uint64_t a = h->main_arena;
	size_t cap = 8;
	h->arenas = calloc(cap, sizeof(*h->arenas));
	if (!h->arenas)
		return &pm_error_no_memory;
	for (size_t i = 0; i < ARENA_MAX; i++) {
		if (h->narenas == cap) {
			void *n = realloc(h->arenas, 2 * cap * sizeof(*h->arenas));
			if (!n)
				return &pm_error_no_memory;
			h->arenas = n;
			memset(h->arenas + cap, 0, cap * sizeof(*h->arenas));
			cap *= 2;
		}
		h->arenas[h->narenas].address = a;
		h->arenas[h->narenas].is_main = i == 0;
		h->narenas++;
		uint64_t next;
		if (!rd_u64(w, a + w->l->ms_next, &next)) {
			problem(w, a, "arena 0x%llx: next unreadable",
				(unsigned long long)a);
			return NULL;
		}
		if (next == h->main_arena)
			return NULL;
		if (!next || (next & 7)) {
			problem(w, a, "arena 0x%llx: bad next 0x%llx",
				(unsigned long long)a, (unsigned long long)next);
			return NULL;
		}
		for (size_t j = 0; j < h->narenas; j++) {
			if (h->arenas[j].address == next) {
				problem(w, a, "arena ring loops at 0x%llx",
					(unsigned long long)next);
				return NULL;
			}
		}
		a = next;
	}
	problem(w, a, "more than %d arenas; ring cut", ARENA_MAX);
	return NULL;
}

/* ---- chunks ---- */

static bool chunk_push(struct walk *w, uint64_t addr, uint64_t size,
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

static void known_build(struct walk *w)
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
static uint64_t known_after(const struct walk *w, uint64_t p, uint64_t top,
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
static bool chain_lands(struct walk *w, uint64_t q, uint64_t target,
			size_t *budget)
{
	size_t good = 0;
	while (q < target && *budget > 0) {
		(*budget)--;
		uint64_t sz;
		if (!win_u64(w, q + 8, &sz))
			return false;
		sz &= ~(uint64_t)PM_GLIBC_FLAGS;
		if (sz < PM_GLIBC_MINSIZE || (sz & 15) || sz > target - q)
			return good >= RESYNC_CHAIN_MIN;
		good++;
		q += sz;
	}
	return q == target;
}

/* After damage at p: the first 16-aligned address from which chunk sizes
 * chain onto the next known chunk (see chain_lands), else that chunk. */
static uint64_t resync(struct walk *w, uint64_t p, uint64_t top, uint64_t end)
{
	uint64_t target = known_after(w, p, top, end);
	size_t budget = RESYNC_STEPS_MAX;
	for (uint64_t q = p + 16; q < target && budget > 0; q += 16) {
		if (chain_lands(w, q, target, &budget))
			return q;
	}
	return target;
}

/* Walks chunks in [start, end) of one heap. top is the arena's top when it
 * lies in this heap (the walk ends there), else 0 (the walk ends at the
 * fencepost). Returns the bytes covered by the chunks seen. */
static uint64_t walk_range(struct walk *w, uint8_t arena_idx, uint64_t start,
			   uint64_t end, uint64_t top, uint64_t top_size)
{
	uint64_t p = start, covered = 0;
	bool prev_free = false;     /* the previous chunk is in a bin */
	uint64_t steps_max = (end - start) / 16 + 2;
	for (uint64_t steps = 0; p < end && steps < steps_max && !w->fatal;
	     steps++) {
		if (top && p == top) {
			chunk_push(w, p, top_size, PM_CHUNK_TOP, arena_idx);
			return covered + top_size;
		}
		uint64_t raw;
		if (!win_u64(w, p + 8, &raw)) {
			problem(w, p, "chunk header at 0x%llx unreadable",
				(unsigned long long)p);
			p = resync(w, p, top, end);
			prev_free = false;
			continue;
		}
		uint64_t size = raw & ~(uint64_t)PM_GLIBC_FLAGS;
		if (!top && size == 0x10)
			return covered;     /* fencepost ending an old heap */
		uint64_t limit = top ? top : end;
		if (size < PM_GLIBC_MINSIZE || (size & 15) || size > limit - p) {
			problem(w, p, "chunk 0x%llx has bad size 0x%llx",
				(unsigned long long)p, (unsigned long long)raw);
			p = resync(w, p, top, end);
			prev_free = false;
			continue;
		}
		bool p_bit = raw & PM_GLIBC_PREV_INUSE;
		if (p != start && p_bit == prev_free)
			problem(w, p, "chunk 0x%llx: PREV_INUSE is %s but the previous chunk is %sin a bin",
				(unsigned long long)p, p_bit ? "set" : "clear",
				prev_free ? "" : "not ");
		int st = freeset_get(&w->fs, p);
		uint8_t state = st ? (uint8_t)(st - 1) : PM_CHUNK_USED;
		chunk_push(w, p, size, state, arena_idx);
		prev_free = state == PM_CHUNK_FREE_BIN;
		covered += size;
		p += size;
	}
	if (top)
		problem(w, p, "heap walk from 0x%llx did not reach top 0x%llx",
			(unsigned long long)start, (unsigned long long)top);
	return covered;
}

static uint64_t align16(uint64_t a)
{
	return (a + 15) & ~15ull;
}

static void walk_main_heap(struct walk *w, struct pm_glibc_arena *ar)
{
	if (ar->noncontiguous)
		problem(w, ar->address, "main arena is non-contiguous (brk failed); only its last segment is walked");
	uint64_t start = w->main_start;
	uint64_t end = ar->top + ar->top_size;
	if (!start || start > ar->top) {
		problem(w, ar->address, "main heap start unknown");
		return;
	}
	ar->nheaps = 0;
	uint64_t covered = walk_range(w, 0, start, end, ar->top, ar->top_size);
	if (covered != ar->system_mem && !w->heap->partial)
		problem(w, start, "main heap chunks cover 0x%llx bytes, system_mem is 0x%llx",
			(unsigned long long)covered,
			(unsigned long long)ar->system_mem);
}

static void walk_arena_heaps(struct walk *w, struct pm_glibc_arena *ar,
			     uint8_t idx)
{
	const struct pm_glibc_layout *l = w->l;
	uint64_t h = ar->top & ~(w->heap_max - 1);
	uint64_t total = 0;
	for (size_t n = 0; h && n < HEAPS_PER_ARENA_MAX && !w->fatal; n++) {
		uint64_t hi[3];
		if (!rd(w, h, hi, sizeof(hi))) {
			problem(w, h, "heap_info 0x%llx unreadable",
				(unsigned long long)h);
			return;
		}
		uint64_t ar_ptr = hi[l->hi_ar_ptr / 8], prev = hi[l->hi_prev / 8],
			 size = hi[l->hi_size / 8];
		if (ar_ptr != ar->address || size > w->heap_max || size < PAGE) {
			problem(w, h, "heap_info 0x%llx: ar_ptr 0x%llx size 0x%llx do not fit arena 0x%llx",
				(unsigned long long)h, (unsigned long long)ar_ptr,
				(unsigned long long)size,
				(unsigned long long)ar->address);
			return;
		}
		uint64_t *heaps = realloc(ar->heaps, (ar->nheaps + 1) * sizeof(*heaps));
		if (!heaps) {
			w->fatal = &pm_error_no_memory;
			return;
		}
		ar->heaps = heaps;
		ar->heaps[ar->nheaps++] = h;
		ar->heap_sizes_total += size;
		uint64_t first = h + l->hi_sizeof;
		if (ar->address == first) {
			first = align16(ar->address + l->ms_size);
			w->first_chunks[w->nfirst++] = first;
		}
		bool has_top = ar->top >= h && ar->top < h + size;
		uint64_t end = has_top ? ar->top + ar->top_size : h + size;
		total += walk_range(w, idx, align16(first), end,
				    has_top ? ar->top : 0, ar->top_size);
		h = prev;
	}
	if (ar->heap_sizes_total != ar->system_mem)
		problem(w, ar->address, "arena 0x%llx: heaps hold 0x%llx bytes, system_mem is 0x%llx",
			(unsigned long long)ar->address,
			(unsigned long long)ar->heap_sizes_total,
			(unsigned long long)ar->system_mem);
	(void)total;
}

/* ---- mmapped chunks ---- */

static bool in_arena_heaps(const struct walk *w, uint64_t start, uint64_t end)
{
	const struct pm_glibc_heap *h = w->heap;
	for (size_t i = 0; i < h->narenas; i++) {
		const struct pm_glibc_arena *ar = &h->arenas[i];
		if (ar->is_main) {
			uint64_t hs = w->main_start, he = ar->top + ar->top_size;
			if (start < he && end > hs)
				return true;
			continue;
		}
		for (size_t k = 0; k < ar->nheaps; k++) {
			if (start < ar->heaps[k] + w->heap_max &&
			    end > ar->heaps[k])
				return true;
		}
	}
	return false;
}

static bool region_may_hold_mmapped(const struct walk *w,
				    const struct pm_region *r)
{
	if ((r->perms & (PM_PERM_R | PM_PERM_W)) != (PM_PERM_R | PM_PERM_W))
		return false;
	if (r->path && strcmp(r->path, "[heap]") != 0)
		return false;
	if (r->label == PM_LABEL_MAIN_STACK || r->label == PM_LABEL_THREAD_STACK ||
	    r->label == PM_LABEL_GUARD || r->label == PM_LABEL_MODULE)
		return false;
	return !in_arena_heaps(w, r->start, r->end);
}

/* memalign of an mmapped chunk leaves the mapping's header stale and puts
 * the real chunk `lead` bytes in, with prev_size == lead. Returns lead or 0. */
static uint64_t memalign_lead(struct walk *w, uint64_t a, uint64_t size)
{
	for (uint64_t align = 32; align < size && align; align <<= 1) {
		uint64_t user = (a + 16 + align - 1) & ~(align - 1);
		uint64_t lead = user - 16 - a;
		if (lead == 0)
			continue;
		if (lead < PM_GLIBC_MINSIZE)
			lead += align;
		if (lead >= size || (lead & 15))
			continue;
		uint64_t prev, sz;
		if (!win_u64(w, a + lead, &prev) || !win_u64(w, a + lead + 8, &sz))
			continue;
		if (prev == lead && (sz & PM_GLIBC_IS_MMAPPED) &&
		    (sz & ~(uint64_t)PM_GLIBC_FLAGS) == size - lead)
			return lead;
	}
	return 0;
}

static void label_region(struct pm_target *t, uint64_t addr,
			 enum pm_region_label label, const char *detail)
{
	struct pm_region *r = pm_target_find_region(t, addr);
	if (!r)
		return;
	r->label = label;
	snprintf(r->label_detail, sizeof(r->label_detail), "%s", detail);
}

static void scan_mmapped_region(struct walk *w, const struct pm_region *r)
{
	uint64_t a = r->start, end = r->end;
	while (a + 16 <= end && !w->fatal) {
		uint64_t prev, raw;
		if (!win_u64(w, a, &prev) || !win_u64(w, a + 8, &raw)) {
			a += PAGE;
			continue;
		}
		uint64_t size = raw & ~(uint64_t)PM_GLIBC_FLAGS;
		if (prev != 0 || (raw & 0xfff) != PM_GLIBC_IS_MMAPPED ||
		    size < PAGE || size > r->end - a) {
			a += PAGE;
			continue;
		}
		uint64_t lead = memalign_lead(w, a, size);
		chunk_push(w, a + lead, size - lead, PM_CHUNK_MMAPPED, 0xff);
		w->heap->total.hblks++;
		w->heap->total.hblkhd += size;
		a += size;
	}
}

static void scan_mmapped(struct walk *w)
{
	size_t n = pm_target_region_count(w->t);
	for (size_t i = 0; i < n && !w->fatal; i++) {
		struct pm_region *r = pm_target_region(w->t, i);
		if (!region_may_hold_mmapped(w, r))
			continue;
		size_t before = w->heap->nchunks;
		scan_mmapped_region(w, r);
		size_t found = w->heap->nchunks - before;
		if (found) {
			char detail[48];
			snprintf(detail, sizeof(detail), "%zu mmapped chunk%s",
				 found, found == 1 ? "" : "s");
			label_region(w->t, r->start, PM_LABEL_GLIBC_MMAPPED,
				     detail);
		}
	}
}

/* ---- tcache ---- */

static struct pm_chunk *chunk_lookup(struct pm_glibc_heap *h, uint64_t addr)
{
	size_t lo = 0, hi = h->nchunks;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (h->chunks[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < h->nchunks && h->chunks[lo].addr == addr ? &h->chunks[lo]
							      : NULL;
}

/* Length of a tcache chain from entry (a user pointer), or -1 if it is
 * broken, loops or leaves the mappings. */
static long tcache_chain_len(struct walk *w, uint64_t e, long cap)
{
	long n = 0;
	uint64_t first = e;
	while (e) {
		if (n >= cap || (e & 15) || !pm_target_is_mapped(w->t, e - 16, 32))
			return -1;
		if (n > 0 && e == first)
			return -1;
		uint64_t stored;
		if (!rd_u64(w, e, &stored))
			return -1;
		e = reveal(w->l, e, stored);
		n++;
	}
	return n;
}

static unsigned tcache_count(const struct pm_glibc_layout *l,
			     const uint8_t *tc, uint32_t i)
{
	if (l->tc_count_width == 1)
		return tc[i];
	uint16_t c;
	memcpy(&c, tc + 2 * i, 2);
	return c;
}

static bool is_first_chunk(const struct walk *w, uint64_t addr)
{
	if (addr == w->main_start)
		return true;
	for (size_t i = 0; i < w->nfirst; i++) {
		if (w->first_chunks[i] == addr)
			return true;
	}
	return false;
}

/* A chunk of the tcache struct's size is one when every entries[] chain
 * is well formed and (before 2.42) as long as its count says. */
static bool tcache_validate(struct walk *w, uint64_t user, uint8_t *tc,
			    size_t tc_len, bool *empty)
{
	const struct pm_glibc_layout *l = w->l;
	if (!rd(w, user, tc, tc_len))
		return false;
	*empty = true;
	for (uint32_t i = 0; i < l->tc_bins; i++) {
		uint64_t e;
		memcpy(&e, tc + l->tc_entries + 8 * i, 8);
		unsigned count = tcache_count(l, tc, i);
		if (!e) {
			if (count && !l->tc_counts_down)
				return false;
			continue;
		}
		*empty = false;
		long len = tcache_chain_len(w, e, 65536);
		if (len < 0 || (!l->tc_counts_down && (unsigned long)len != count))
			return false;
	}
	return true;
}

/* Marks the chunks of one tcache bin; reports (and stops at) a pointer
 * outside the heaps, a loop, or a chunk that is also in another list. */
static void tcache_mark_chain(struct walk *w, uint64_t tc_chunk, uint32_t bin,
			      uint64_t e, unsigned count)
{
	uint64_t want = 0x20 + 0x10 * (uint64_t)bin;
	long n = 0;
	for (; e && n < 65536; n++) {
		struct pm_chunk *c = (e & 15) ? NULL : chunk_lookup(w->heap, e - 16);
		if (!c) {
			problem(w, e, "tcache 0x%llx bin %u: entry 0x%llx is not a heap chunk",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)e);
			return;
		}
		if (c->state == PM_CHUNK_FREE_TCACHE) {
			problem(w, e, "tcache 0x%llx bin %u: loop at entry 0x%llx",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)e);
			return;
		}
		if (c->state != PM_CHUNK_USED) {
			problem(w, e, "tcache 0x%llx bin %u: entry 0x%llx is %s",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)e,
				pm_chunk_state_name(c->state));
			return;
		}
		if (bin < 64 && c->size != want)
			problem(w, c->addr, "tcache 0x%llx bin %u: chunk 0x%llx has size 0x%llx",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)c->addr,
				(unsigned long long)c->size);
		c->state = PM_CHUNK_FREE_TCACHE;
		uint64_t stored;
		if (!rd_u64(w, e, &stored)) {
			problem(w, e, "tcache entry 0x%llx unreadable",
				(unsigned long long)e);
			return;
		}
		e = reveal(w->l, e, stored);
	}
	if (!w->l->tc_counts_down && (unsigned long)n != count)
		problem(w, tc_chunk, "tcache 0x%llx bin %u: %ld entries, count says %u",
			(unsigned long long)tc_chunk, bin, n, count);
}

/* Each thread's tcache_perthread_struct: a chunk of its size whose chains
 * all match their counts; the first chunk of an arena is taken even when
 * damaged (that is where glibc puts it), and its damage reported. */
static void find_tcaches(struct walk *w)
{
	const struct pm_glibc_layout *l = w->l;
	size_t tc_len = l->tc_entries + 8 * (size_t)l->tc_bins;
	uint8_t *tc = malloc(tc_len);
	if (!tc) {
		w->fatal = &pm_error_no_memory;
		return;
	}
	struct pm_glibc_heap *h = w->heap;
	for (size_t i = 0; i < h->nchunks; i++) {
		struct pm_chunk *c = &h->chunks[i];
		if (c->state != PM_CHUNK_USED || c->size != l->tc_chunk_size)
			continue;
		bool empty = true, first = is_first_chunk(w, c->addr);
		bool ok = tcache_validate(w, c->addr + 16, tc, tc_len, &empty);
		if (!(ok && (!empty || first)) && !(first && !ok &&
		    rd(w, c->addr + 16, tc, tc_len)))
			continue;
		c->state = PM_CHUNK_TCACHE_STRUCT;
		h->ntcaches++;
		for (uint32_t b = 0; b < l->tc_bins; b++) {
			uint64_t e;
			memcpy(&e, tc + l->tc_entries + 8 * b, 8);
			tcache_mark_chain(w, c->addr, b, e, tcache_count(l, tc, b));
		}
	}
	free(tc);
}

/* ---- results ---- */

static int cmp_chunk(const void *a, const void *b)
{
	const struct pm_chunk *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void check_free_seen(struct walk *w)
{
	size_t seen = 0;
	for (size_t i = 0; i < w->heap->nchunks; i++) {
		uint8_t s = w->heap->chunks[i].state;
		seen += s == PM_CHUNK_FREE_BIN || s == PM_CHUNK_FREE_FASTBIN;
	}
	if (seen != w->fs.count && !w->heap->partial)
		problem(w, w->heap->main_arena, "%zu free-list chunks, %zu of them found by the heap walk",
			w->fs.count, seen);
}

static void sum_totals(struct walk *w)
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
static void check_mp(struct walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	if (!h->mp)
		return;
	int32_t n_mmaps;
	uint64_t mmapped_mem;
	if (!rd(w, h->mp + w->l->mp_n_mmaps, &n_mmaps, 4) ||
	    !rd_u64(w, h->mp + w->l->mp_mmapped_mem, &mmapped_mem))
		return;
	h->mp_n_mmaps = (uint64_t)(int64_t)n_mmaps;
	h->mp_mmapped_mem = mmapped_mem;
	if (h->mp_n_mmaps != h->total.hblks || mmapped_mem != h->total.hblkhd)
		problem(w, h->mp, "mmapped chunks found: %llu (%llu bytes); mp_ says %llu (%llu bytes)",
			(unsigned long long)h->total.hblks,
			(unsigned long long)h->total.hblkhd,
			(unsigned long long)h->mp_n_mmaps,
			(unsigned long long)mmapped_mem);
}

static void label_heaps(struct walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	char detail[48];
	for (size_t i = 0; i < h->narenas; i++) {
		struct pm_glibc_arena *ar = &h->arenas[i];
		if (ar->is_main) {
			snprintf(detail, sizeof(detail), "main arena 0x%llx",
				 (unsigned long long)ar->address);
			label_region(w->t, w->main_start, PM_LABEL_GLIBC_MAIN_HEAP,
				     detail);
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
				snprintf(detail, sizeof(detail), "arena 0x%llx%s",
					 (unsigned long long)ar->address,
					 used ? "" : " (reserved)");
				r->label = used ? PM_LABEL_GLIBC_ARENA_HEAP
						: PM_LABEL_GLIBC_ARENA_RESERVED;
				snprintf(r->label_detail, sizeof(r->label_detail),
					 "%s", detail);
			}
		}
	}
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
	free(h);
}

/* Main heap start: mp_.sbrk_base, else the top's end minus system_mem. */
static void main_start_find(struct walk *w, const struct pm_glibc_roots *roots)
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
		rd_u64(w, h->mp + w->l->mp_sbrk_base, &sbrk);
	if (h->mp && w->l->mp_hp_pagesize) {
		uint64_t hp = 0;
		rd_u64(w, h->mp + w->l->mp_hp_pagesize, &hp);
		if (hp)
			w->heap_max = 4 * hp;
	}
	w->main_start = sbrk ? align16(sbrk) : derived;
	if (sbrk && align16(sbrk) != derived && !main->noncontiguous)
		problem(w, sbrk, "mp_.sbrk_base 0x%llx differs from top end - system_mem 0x%llx",
			(unsigned long long)sbrk, (unsigned long long)derived);
}

static struct pm_error *walk_run(struct walk *w,
				 const struct pm_glibc_roots *roots)
{
	struct pm_glibc_heap *h = w->heap;
	struct pm_error *err = arenas_collect(w);
	if (err)
		return err;
	w->first_chunks = calloc(h->narenas + 1, sizeof(*w->first_chunks));
	if (!w->first_chunks)
		return &pm_error_no_memory;
	for (size_t i = 0; i < h->narenas && !w->fatal; i++)
		arena_load(w, &h->arenas[i]);
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
	scan_mmapped(w);
	if (w->fatal)
		return w->fatal;
	if (h->nchunks)
		qsort(h->chunks, h->nchunks, sizeof(*h->chunks), cmp_chunk);
	find_tcaches(w);
	sum_totals(w);
	check_mp(w);
	label_heaps(w);
	return w->fatal;
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
	if (err)
		return err;
	struct pm_glibc_heap *h = calloc(1, sizeof(*h));
	if (!h)
		return &pm_error_no_memory;
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
		struct walk w = {.t = t, .l = roots.layout, .heap = h,
				 .heap_max = PM_GLIBC_HEAP_MAX_SIZE};
		err = walk_run(&w, &roots);
		freeset_deinit(&w.fs);
		free(w.known);
		free(w.first_chunks);
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
