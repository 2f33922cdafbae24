/* A generic, clearly labelled guess for the memory of C extensions that the
 * precise attributions know nothing of: a glibc allocation still unknown
 * after them whose data start is pointed at by exactly one word of the
 * heap's in-use allocations (and modules' data), that word inside a live
 * recognised object, is taken as that object's buffer ("cpython  inferred
 * buffer  held by T (inferred)", owner the object); so is one that such a
 * buffer alone points at, level by level. Any second pointer leaves it
 * unknown. pm_options.precise turns it off. */
#include "cpython_analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The unknown allocation whose data starts at the key, and what points at
 * it: how many words (capped at 2: more says nothing new) and, for the
 * first, the allocation holding it. */
struct candidate {
	uint32_t alloc;             /* index in heap->allocs */
	uint32_t refs;
	uint32_t holder;            /* index of the first word's allocation */
};
PM_DEFINE_HASH_MAP(candidate_map, uint64_t, struct candidate, pm_hash_u64_key,
		   pm_u64_key_eq)

enum {
	/* Where a pointer at an allocation's data can be: glibc chunks'
	 * data (and past a debug header) is 16-byte aligned. */
	DATA_ALIGN = 16,
	SCAN_POLL = 1 << 16,        /* allocations between interrupt polls */
	/* Levels of inferred buffers behind an object followed (passes over
	 * the candidates, each linear). */
	NESTING_MAX = 16,
};
/* A module's data larger than this is not read (none is). */
#define OUTSIDE_REGION_MAX (UINT64_C(1) << 30)

struct scan {
	struct analysis *a;
	struct candidate_map map;
	uint64_t lo, hi;            /* the lowest and highest key */
	/* The target memory at hand: [view_start, view_end) at view. */
	const uint8_t *view;
	uint64_t view_start, view_end;
};

static bool candidate_kind(const struct pm_alloc *alloc)
{
	return alloc->kind == PM_ALLOC_GLIBC || alloc->kind == PM_ALLOC_MMAPPED;
}

/* Allocations whose words count as pointers: what the program has in use
 * (not tcache'd chunks, whose stale words point at nothing held; not
 * glibc's own structures, which point at chunks, never at their data). */
static bool scanned_kind(const struct pm_alloc *alloc)
{
	return alloc->kind == PM_ALLOC_PYMALLOC || candidate_kind(alloc);
}

static struct pm_error *candidates_collect(struct scan *s)
{
	struct analysis *a = s->a;
	const struct pm_cpython_heap *heap = a->heap;
	s->lo = UINT64_MAX;
	s->hi = 0;
	for (size_t i = 0; i < heap->nallocs && i < UINT32_MAX; i++) {
		const struct pm_alloc *alloc = &heap->allocs[i];
		if (alloc->category != PM_CATEGORY_NONE || !candidate_kind(alloc))
			continue;
		uint64_t start = alloc_data_of(a, alloc).start;
		bool fresh;
		struct candidate *c = candidate_map_insert(&s->map, &start, &fresh);
		if (!c)
			return &pm_error_no_memory;
		*c = (struct candidate){ .alloc = (uint32_t)i, .holder = UINT32_MAX };
		s->lo = start < s->lo ? start : s->lo;
		s->hi = start > s->hi ? start : s->hi;
	}
	return NULL;
}

/* Makes [addr, addr + len) readable at s->view, as one view of up to
 * PM_VIEW_MAX bytes from addr to its region's end (the next allocations
 * are mostly in it), else of the range alone. False when unreadable. */
static bool view_cover(struct scan *s, uint64_t addr, uint64_t len)
{
	if (addr >= s->view_start && addr + len <= s->view_end && s->view)
		return true;
	struct pm_target *t = s->a->t;
	const struct pm_region *r = pm_target_find_region(t, addr);
	uint64_t want = r && r->end > addr ? r->end - addr : len;
	if (want > PM_VIEW_MAX)
		want = PM_VIEW_MAX;
	if (want < len)
		want = len;
	const void *p;
	struct pm_error *err = pm_target_view(t, addr, (size_t)want, &p);
	if (err && want > len) {
		pm_error_destroy(err);
		want = len;
		err = pm_target_view(t, addr, (size_t)want, &p);
	}
	if (err) {
		pm_error_destroy(err);
		s->view = NULL;
		return false;
	}
	s->view = p;
	s->view_start = addr;
	s->view_end = addr + want;
	return true;
}

/* Counts the words of [start, end) that point at a candidate's start;
 * holder: the allocation they are in (UINT32_MAX: outside the heap). */
static void scan_range(struct scan *s, uint64_t start, uint64_t end,
		       uint32_t holder)
{
	/* In pieces of at most a view each (a large mmapped chunk). */
	for (uint64_t piece = start; piece + 8 <= end; ) {
		uint64_t len = end - piece < PM_VIEW_MAX ? end - piece : PM_VIEW_MAX;
		len &= ~UINT64_C(7);
		if (!view_cover(s, piece, len))
			return;     /* not in memory at hand: no pointer seen */
		const uint8_t *b = s->view + (piece - s->view_start);
		for (uint64_t off = 0; off < len; off += 8) {
			uint64_t w;
			memcpy(&w, b + off, 8);
			if ((w & (DATA_ALIGN - 1)) || w < s->lo || w > s->hi)
				continue;
			struct candidate *c = candidate_map_search(&s->map, &w);
			if (!c || c->refs >= 2)
				continue;
			if (c->refs++ == 0)
				c->holder = holder;
		}
		piece += len;
	}
}

static void scan_alloc(struct scan *s, size_t i)
{
	const struct pm_alloc *alloc = &s->a->heap->allocs[i];
	scan_range(s, alloc->addr, alloc->addr + alloc_usable(alloc), (uint32_t)i);
}

/* Memory outside the heap that holds pointers to it: the modules' writable
 * data (a static type's tp_members, a C library's globals) and the .bss
 * after it. A pointer there is a second holder too: the buffer is not the
 * object's alone. Not the stacks: their live frames keep dead values in
 * spill slots (a freed buffer's address at startup matches a later
 * allocation's), and a stopped process's buffers are rarely held by a
 * frame alone. */
static void scan_outside_heap(struct scan *s)
{
	struct pm_target *t = s->a->t;
	bool after_module = false;
	uint64_t prev_end = 0;
	for (size_t i = 0; i < pm_target_region_count(t); i++) {
		const struct pm_region *r = pm_target_region(t, i);
		bool writable = (r->perms & PM_PERM_W) && (r->perms & PM_PERM_R);
		bool module = r->label == PM_LABEL_MODULE;
		bool bss = r->label == PM_LABEL_ANON && after_module && r->start == prev_end;
		after_module = module && writable;
		prev_end = r->end;
		if (writable && (module || bss) && r->end > r->start &&
		    r->end - r->start <= OUTSIDE_REGION_MAX)
			scan_range(s, r->start, r->end, UINT32_MAX);
	}
}

/* Whether category c is a live recognised object's (a "python" row that is
 * not a free list's). */
static bool *live_categories(const struct pm_cpython_heap *heap)
{
	bool *live = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	for (size_t c = 0; live && c < heap->ncategories; c++)
		live[c] = !strcmp(heap->categories[c].domain, "python") &&
			  strcmp(heap->categories[c].detail, "free list");
	return live;
}

static struct pm_error *candidate_give(struct analysis *a, uint64_t start,
				       const struct candidate *c, uint32_t cat,
				       uint64_t owner)
{
	struct pm_cpython_heap *heap = a->heap;
	struct pm_alloc *alloc = &heap->allocs[c->alloc];
	alloc->category = cat;
	alloc->object_offset = (uint8_t)(start - alloc->addr);
	heap->inferred++;
	heap->inferred_bytes += alloc->size;
	return owned_record_owner(a, alloc, owner);
}

/* Gives each candidate that one live object alone points at its category;
 * then, level by level, each that one inferred buffer alone points at its
 * holder's (a C library's structure behind the object's: zlib's window
 * behind its z_stream state), so the object's whole private tree is its. */
static struct pm_error *candidates_attribute(struct scan *s, const bool *live)
{
	struct analysis *a = s->a;
	struct pm_cpython_heap *heap = a->heap;
	/* The categories live[] knows. Those added here come after: an
	 * allocation given one is an inferred buffer, no object. */
	const size_t nlive = heap->ncategories;
	bool more = true;
	for (int level = 0; more && level < NESTING_MAX; level++) {
		more = false;
		for (size_t k = 0; k < s->map.capacity; k++) {
			if (!s->map.ctrl[k])
				continue;
			const struct candidate *c = &s->map.entries[k].value;
			/* One word, in another allocation (not outside the heap). */
			if (c->refs != 1 || c->holder >= heap->nallocs ||
			    c->holder == c->alloc ||
			    heap->allocs[c->alloc].category != PM_CATEGORY_NONE)
				continue;
			const struct pm_alloc *holder = &heap->allocs[c->holder];
			struct pm_error *err = NULL;
			if (level == 0 && holder->category < nlive && live[holder->category]) {
				char detail[TYPE_NAME_MAX + 32];
				snprintf(detail, sizeof(detail), "held by %s (inferred)",
					 heap->categories[holder->category].kind);
				uint32_t cat;
				err = category_get(a, "cpython", "inferred buffer", detail, &cat);
				if (!err)
					err = candidate_give(a, s->map.entries[k].key, c, cat,
							     holder->addr + holder->object_offset);
				more = true;
			} else if (level > 0 && holder->category >= nlive &&
				   holder->category < heap->ncategories && heap->owners &&
				   heap->owners[c->holder]) {
				err = candidate_give(a, s->map.entries[k].key, c,
						     holder->category, heap->owners[c->holder]);
				more = true;
			}
			if (err)
				return err;
		}
	}
	return NULL;
}

struct pm_error *inferred_attribute(struct analysis *a)
{
	struct pm_cpython_heap *heap = a->heap;
	const struct pm_options *options = pm_target_options(a->t);
	heap->precise = options && options->precise;
	if (heap->precise || !heap->python)
		return NULL;
	struct scan s = { .a = a, .map = PM_HASH_MAP_INIT };
	struct pm_error *err = candidates_collect(&s);
	bool *live = NULL;
	if (!err && s.map.size) {
		live = live_categories(heap);
		if (!live)
			err = &pm_error_no_memory;
	}
	for (size_t i = 0; !err && s.map.size && i < heap->nallocs; i++) {
		if ((i & (SCAN_POLL - 1)) == SCAN_POLL - 1) {
			if (pm_target_interrupted(a->t))
				err = pm_error_interrupted();
			pm_target_progress(a->t, "inferring owners", i, heap->nallocs);
		}
		if (!err && scanned_kind(&heap->allocs[i]))
			scan_alloc(&s, i);
	}
	if (!err && s.map.size) {
		scan_outside_heap(&s);
		pm_target_progress(a->t, "inferring owners", heap->nallocs, heap->nallocs);
		err = candidates_attribute(&s, live);
	}
	free(live);
	candidate_map_deinit(&s.map);
	return err;
}
