/* A generic, clearly labelled guess for the memory of C extensions that the
 * precise attributions know nothing of: a glibc allocation still unknown
 * after them whose data start is pointed at by the words of exactly one of
 * the heap's in-use allocations (and by nothing in modules' data), that
 * allocation a live recognised object, is taken as that object's buffer
 * ("cpython  inferred buffer  held by T (inferred)", heap->inferred_owners
 * naming the object); so is one whose holder is a C library's stream state
 * that the precise attributions gave an object (liblzma's coders behind
 * its lzma_internal), and one that only such buffers of the one object
 * point at, level by level. Several words of the one holder still say one holder (a C
 * library's tree keeps its root, leftmost and rightmost node in one
 * struct); a word anywhere else leaves the allocation unknown.
 * pm_options.precise turns it off. The guess changes labels only: the
 * reference graph still reads such a buffer as a root, conservatively, as
 * while it was unknown. */
#include "cpython_analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HOLDERS_MAX = 4 };      /* distinct holders kept per candidate */

/* The unknown allocation whose data starts at the key, and what points at
 * it: the allocations holding those words (up to HOLDERS_MAX; nholders
 * HOLDERS_MAX + 1 says more, or a word outside the heap), and while the
 * holders are resolved, the object they lead to. */
struct candidate {
	uint32_t alloc;             /* index in heap->allocs */
	uint32_t nholders;
	uint32_t holders[HOLDERS_MAX];
	uint64_t owner;             /* 0 while none is known */
	uint32_t owner_cat;         /* the owner's category */
	bool rejected;              /* a holder leads elsewhere */
};
PM_DEFINE_HASH_MAP(candidate_map, uint64_t, struct candidate, pm_hash_u64_key,
		   pm_u64_key_eq)

enum {
	/* Where a pointer at an allocation's data can be: glibc chunks'
	 * data (and past a debug header) is 16-byte aligned. */
	DATA_ALIGN = 16,
	SCAN_POLL = 1 << 16,        /* allocations between interrupt polls */
	/* Rounds of passes over the candidates (each linear) that resolve
	 * their holders: a private tree this deep behind an object, at
	 * least, is its. */
	NESTING_MAX = 16,
};
/* A module's data larger than this is not read (none is). */
#define OUTSIDE_REGION_MAX (UINT64_C(1) << 30)

struct scan {
	struct analysis *a;
	struct candidate_map map;
	uint64_t lo, hi;            /* the lowest and highest key */
	/* One bit per hash of a key's 16-byte granule: most heap words
	 * point at objects, not at candidates, and a bit test turns them
	 * away before a probe of the map would (a cache miss each). */
	uint64_t *filter;
	unsigned filter_shift;      /* 64 - log2(the filter's bits) */
	/* Per category: a live recognised object's; an object on a free
	 * list, dead, whose stale words hold nothing (3.8's free frames keep
	 * their last values); the allocator's unknown rows, where the
	 * candidates are. All know the first nlive categories, those before
	 * the inferred buffers' were added. */
	bool *live, *dead, *unknown;
	size_t nlive;
	/* The target memory at hand: [view_start, view_end) at view. */
	const uint8_t *view;
	uint64_t view_start, view_end;
};

static inline uint64_t filter_bit(const struct scan *s, uint64_t w)
{
	return ((w >> 4) * UINT64_C(0x9e3779b97f4a7c15)) >> s->filter_shift;
}

/* The filter: at least 32 bits per candidate (a word that is no key
 * passes with odds of 1 in 32 or less). */
static struct pm_error *filter_build(struct scan *s)
{
	unsigned bits_log2 = 16;
	while (bits_log2 < 40 && (UINT64_C(1) << bits_log2) < 32 * (uint64_t)s->map.size)
		bits_log2++;
	s->filter_shift = 64 - bits_log2;
	s->filter = calloc((UINT64_C(1) << bits_log2) / 64, sizeof(*s->filter));
	if (!s->filter)
		return &pm_error_no_memory;
	for (size_t k = 0; k < s->map.capacity; k++) {
		if (!s->map.ctrl[k])
			continue;
		uint64_t bit = filter_bit(s, s->map.entries[k].key);
		s->filter[bit / 64] |= UINT64_C(1) << (bit % 64);
	}
	return NULL;
}

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
		if (alloc->category >= s->nlive || !s->unknown[alloc->category] ||
		    !candidate_kind(alloc))
			continue;
		uint64_t start = alloc_data_of(a, alloc).start;
		bool fresh;
		struct candidate *c = candidate_map_insert(&s->map, &start, &fresh);
		if (!c)
			return &pm_error_no_memory;
		*c = (struct candidate){ .alloc = (uint32_t)i };
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

/* The allocation of the run allocs[first, last] that holds the word at
 * addr: the last starting at or before it (a chunk's prev_size word is its
 * predecessor's data). */
static uint32_t run_holder(const struct pm_cpython_heap *heap, size_t first,
			   size_t last, uint64_t addr)
{
	size_t lo = first, hi = last + 1;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (heap->allocs[mid].addr <= addr)
			lo = mid;
		else
			hi = mid;
	}
	return (uint32_t)lo;
}

/* Notes that a word of allocation holder points at c (its own words do
 * not count: a struct's empty list head points at itself). */
static void candidate_held(struct candidate *c, uint32_t holder)
{
	if (holder == c->alloc)
		return;
	for (uint32_t i = 0; i < c->nholders; i++)
		if (c->holders[i] == holder)
			return;
	if (c->nholders < HOLDERS_MAX)
		c->holders[c->nholders] = holder;
	c->nholders++;
}

/* Notes the words of [start, end) that point at a candidate's start. The
 * range is the run allocs[first, last] of adjacent allocations (their
 * chunk headers between them: a size word is never a 16-aligned heap
 * address, a prev_size word is the chunk before's data), or with first
 * SIZE_MAX memory outside the heap. */
static void scan_range(struct scan *s, uint64_t start, uint64_t end,
		       size_t first, size_t last)
{
	const uint64_t span = s->hi - s->lo;
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
			if (w - s->lo > span || (w & (DATA_ALIGN - 1)))
				continue;
			uint64_t bit = filter_bit(s, w);
			if (!(s->filter[bit / 64] >> (bit % 64) & 1))
				continue;
			struct candidate *c = candidate_map_search(&s->map, &w);
			if (!c || c->nholders > HOLDERS_MAX)
				continue;
			if (first == SIZE_MAX) {
				c->nholders = HOLDERS_MAX + 1;
				continue;
			}
			uint32_t holder = run_holder(s->a->heap, first, last, piece + off);
			uint32_t cat = s->a->heap->allocs[holder].category;
			if (cat < s->nlive && s->dead[cat])
				continue;
			candidate_held(c, holder);
		}
		piece += len;
	}
}

/* Scans the in-use allocations in runs of adjacent ones (one range each:
 * millions of small blocks cost little more than their words). */
static struct pm_error *scan_heap(struct scan *s)
{
	const struct pm_cpython_heap *heap = s->a->heap;
	size_t n = heap->nallocs < UINT32_MAX ? heap->nallocs : UINT32_MAX;
	for (size_t i = 0; i < n;) {
		if (!scanned_kind(&heap->allocs[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j + 1 < n && scanned_kind(&heap->allocs[j + 1]) &&
		       heap->allocs[j + 1].addr - pm_alloc_header(&heap->allocs[j + 1]) ==
		       pm_alloc_end(&heap->allocs[j]))
			j++;
		const struct pm_alloc *last = &heap->allocs[j];
		scan_range(s, heap->allocs[i].addr, last->addr + alloc_usable(last), i, j);
		if (i / SCAN_POLL != (j + 1) / SCAN_POLL) {
			if (pm_target_interrupted(s->a->t))
				return pm_error_interrupted();
			pm_target_progress(s->a->t, "inferring owners", j + 1, heap->nallocs);
		}
		i = j + 1;
	}
	return NULL;
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
			scan_range(s, r->start, r->end, SIZE_MAX, SIZE_MAX);
	}
}

/* Whether category c is a live recognised object's (a "python" row that is
 * not a free list's), or with free_list, a free list's. */
static bool *live_categories(const struct pm_cpython_heap *heap, bool free_list)
{
	bool *live = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	for (size_t c = 0; live && c < heap->ncategories; c++)
		live[c] = !strcmp(heap->categories[c].domain, "python") &&
			  !strcmp(heap->categories[c].detail, "free list") == free_list;
	return live;
}

static struct pm_error *candidate_give(struct analysis *a, uint64_t start,
				       const struct candidate *c, uint32_t cat)
{
	struct pm_cpython_heap *heap = a->heap;
	struct pm_alloc *alloc = &heap->allocs[c->alloc];
	/* The analysis has counted its rows: the allocation moves from its
	 * unknown row to the inferred one. */
	heap->categories[alloc->category].count--;
	heap->categories[alloc->category].bytes -= alloc->size;
	heap->categories[cat].count++;
	heap->categories[cat].bytes += alloc->size;
	alloc->category = cat;
	alloc->object_offset = (uint8_t)(start - alloc->addr);
	heap->inferred++;
	heap->inferred_bytes += alloc->size;
	if (!heap->inferred_owners &&
	    !(heap->inferred_owners = calloc(heap->nallocs, sizeof(*heap->inferred_owners))))
		return &pm_error_no_memory;
	heap->inferred_owners[c->alloc] = c->owner;
	return NULL;
}

/* What a holder's words lead to. */
enum lead { LEADS_NOWHERE, LEADS_NOT_YET, LEADS_TO_OWNER };

/* Where the words in holder lead: to a live object (the holder itself);
 * to the object that owns the holder when it is a C library's stream
 * state (liblzma's lzma_internal, the root of its private tree); to the
 * owner a candidate holder has been given so far (not yet: none so far);
 * nowhere for anything else (a buffer of CPython's, another unknown
 * allocation). */
static enum lead holder_lead(struct scan *s, uint32_t holder, uint64_t *owner,
			     uint32_t *owner_cat)
{
	const bool *live = s->live;
	const size_t nlive = s->nlive;
	struct analysis *a = s->a;
	const struct pm_cpython_heap *heap = a->heap;
	const struct pm_alloc *h = &heap->allocs[holder];
	if (h->category < nlive && s->unknown[h->category]) {
		uint64_t start = alloc_data_of(a, h).start;
		const struct candidate *c = candidate_map_search(&s->map, &start);
		if (!c || c->rejected)
			return LEADS_NOWHERE;
		*owner = c->owner;
		*owner_cat = c->owner_cat;
		return c->owner ? LEADS_TO_OWNER : LEADS_NOT_YET;
	}
	if (h->category < nlive && live[h->category]) {
		*owner = h->addr + h->object_offset;
		*owner_cat = h->category;
		return LEADS_TO_OWNER;
	}
	if (!heap->owners || (h->category != heap->stream_state_categories[0] &&
			      h->category != heap->stream_state_categories[1] &&
			      h->category != heap->stream_state_categories[2]))
		return LEADS_NOWHERE;
	uint64_t o = heap->owners[holder];
	const struct pm_alloc *oa = o ? pm_cpython_find_alloc(heap, o) : NULL;
	if (!oa || oa->addr + oa->object_offset != o || oa->category >= nlive ||
	    !live[oa->category])
		return LEADS_NOWHERE;
	*owner = o;
	*owner_cat = oa->category;
	return LEADS_TO_OWNER;
}

/* One round over the candidates: each whose holders all lead to one
 * object (or not yet anywhere, at least one to it) takes that object as
 * its owner; one with a holder leading elsewhere, or to another object,
 * is rejected, for good. final: the owners stay, and one with a holder
 * not yet leading to its owner is rejected too. Whether anything
 * changed. */
static bool owners_round(struct scan *s, bool final)
{
	bool changed = false;
	for (size_t k = 0; k < s->map.capacity; k++) {
		if (!s->map.ctrl[k])
			continue;
		struct candidate *c = &s->map.entries[k].value;
		if (c->rejected || (final && !c->owner))
			continue;
		/* Finally, every holder must lead to the owner it has. */
		uint64_t owner = final ? c->owner : 0;
		uint32_t owner_cat = final ? c->owner_cat : 0;
		bool ok = c->nholders >= 1 && c->nholders <= HOLDERS_MAX;
		for (uint32_t i = 0; ok && i < c->nholders; i++) {
			uint64_t o = 0;
			uint32_t o_cat = 0;
			enum lead lead = holder_lead(s, c->holders[i], &o, &o_cat);
			if (lead == LEADS_NOWHERE || (final && lead == LEADS_NOT_YET) ||
			    (lead == LEADS_TO_OWNER && owner && o != owner))
				ok = false;
			else if (lead == LEADS_TO_OWNER) {
				owner = o;
				owner_cat = o_cat;
			}
		}
		if (!ok) {
			c->rejected = true;
			c->owner = 0;
			changed = true;
		} else if (owner != c->owner) {
			c->owner = owner;
			c->owner_cat = owner_cat;
			changed = true;
		}
	}
	return changed;
}

/* Gives each candidate whose holders all lead to one live object that
 * object as its inferred owner: the ones the object (or a C library's
 * stream state it owns) alone points at, and, level by level, the ones
 * only those buffers point at (a C library's structures behind the
 * object's: liblzma's coders behind its lzma_internal), so the object's
 * whole private tree is its, back-pointers and all. Rounds until nothing
 * changes, at most NESTING_MAX; a candidate whose holders are still not
 * all known to lead to its owner then (a cycle of unknown allocations
 * that nothing leads into, or a chain deeper than the rounds) stays
 * unknown. */
static struct pm_error *candidates_attribute(struct scan *s)
{
	struct analysis *a = s->a;
	struct pm_cpython_heap *heap = a->heap;
	for (int round = 0; round < NESTING_MAX && owners_round(s, false); round++)
		;
	/* Kept only where every holder leads to the owner now (a holder
	 * rejected in a round rejects what it holds in the next). */
	for (int round = 0; round < NESTING_MAX && owners_round(s, true); round++)
		;
	for (size_t k = 0; k < s->map.capacity; k++) {
		if (!s->map.ctrl[k])
			continue;
		const struct candidate *c = &s->map.entries[k].value;
		if (c->rejected || !c->owner)
			continue;
		char detail[TYPE_NAME_MAX + 32];
		snprintf(detail, sizeof(detail), "held by %s (inferred)",
			 heap->categories[c->owner_cat].kind);
		uint32_t cat;
		struct pm_error *err = category_get(a, "cpython", "inferred buffer", detail, &cat);
		if (!err)
			err = candidate_give(a, s->map.entries[k].key, c, cat);
		if (err)
			return err;
	}
	return NULL;
}

void inferred_defer(struct analysis *a)
{
	struct pm_cpython_heap *heap = a->heap;
	const struct pm_options *options = pm_target_options(a->t);
	heap->precise = options && options->precise;
	heap->inference_pending = heap->python && !heap->precise;
	heap->stream_state_categories[0] = a->cat_owned[OWN_LZMA_STATE];
	heap->stream_state_categories[1] = a->cat_owned[OWN_ZLIB_STATE];
	heap->stream_state_categories[2] = a->cat_owned[OWN_BZ2_STATE];
}

/* Which categories are the allocator's unknown rows (categorise_rest's). */
static bool *unknown_categories(const struct pm_cpython_heap *heap)
{
	bool *unknown = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	for (size_t c = 0; unknown && c < heap->ncategories; c++)
		unknown[c] = !strcmp(heap->categories[c].kind, "unknown");
	return unknown;
}

struct pm_error *inferred_attribute(struct pm_target *t, struct pm_cpython_heap *heap)
{
	/* The finished analysis's categories, for category_get to add the
	 * inferred rows to (none of those is there yet: the index can start
	 * empty). */
	struct analysis late = { .t = t, .heap = heap };
	late.categories = (struct category_vector){ heap->categories, heap->ncategories,
						    heap->ncategories };
	struct analysis *a = &late;
	struct scan s = { .a = a, .map = PM_HASH_MAP_INIT, .nlive = heap->ncategories };
	s.live = live_categories(heap, false);
	s.dead = live_categories(heap, true);
	s.unknown = unknown_categories(heap);
	struct pm_error *err = s.live && s.dead && s.unknown ? candidates_collect(&s) :
		&pm_error_no_memory;
	if (!err && s.map.size)
		err = filter_build(&s);
	if (!err && s.map.size)
		err = scan_heap(&s);
	if (!err && s.map.size) {
		scan_outside_heap(&s);
		pm_target_progress(a->t, "inferring owners", heap->nallocs, heap->nallocs);
		err = candidates_attribute(&s);
	}
	free(s.live);
	free(s.dead);
	free(s.unknown);
	free(s.filter);
	candidate_map_deinit(&s.map);
	category_index_deinit(&late.category_index);
	return err;
}
