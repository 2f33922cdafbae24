/* mmapped chunks: a page scan of the anonymous private mappings outside
 * the arenas' heaps, taking adjacent mappings together (a chunk's mapping
 * may be split into several), including memalign'd chunks whose header
 * lies past their mapping's start; and the labels of the regions they
 * cover. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc_internal.h"
#include "target.h"

static bool in_arena_heaps(const struct pm_glibc_walk *w, uint64_t start, uint64_t end)
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

/* May an mmapped chunk's mapping take in r? Private anonymous memory of
 * any permissions outside the arenas' heaps, stacks, guards and modules:
 * the kernel splits a chunk's mapping into several regions where the
 * program changes part of it (madvise(MADV_HUGEPAGE), as numpy does for
 * big arrays; mprotect of guard pages), and merges adjacent chunks'
 * mappings into one. Returns how far from r's start it may: all of r,
 * none of it (r->start), or up to the arena heap the kernel merged the
 * mappings below it with (a thread arena's heap region that begins with
 * mmapped chunks, seen with glibc 2.43's pydebug CPythons). */
static uint64_t mmapped_limit(const struct pm_glibc_walk *w, const struct pm_region *r)
{
	if (r->perms & PM_PERM_SHARED)
		return r->start;
	if (r->path && strcmp(r->path, "[heap]") != 0)
		return r->start;
	if (r->label == PM_LABEL_MAIN_STACK || r->label == PM_LABEL_THREAD_STACK ||
	    r->label == PM_LABEL_GUARD || r->label == PM_LABEL_MODULE)
		return r->start;
	if (!in_arena_heaps(w, r->start, r->end))
		return r->end;
	uint64_t limit = r->end;
	const struct pm_glibc_heap *h = w->heap;
	for (size_t i = 0; i < h->narenas; i++) {
		const struct pm_glibc_arena *ar = &h->arenas[i];
		if (ar->is_main) {
			uint64_t hs = w->main_start, he = ar->top + ar->top_size;
			if (r->start < he && r->end > hs && hs < limit)
				limit = hs;
			continue;
		}
		for (size_t k = 0; k < ar->nheaps; k++)
			if (r->start < ar->heaps[k] + w->heap_max && r->end > ar->heaps[k] &&
			    ar->heaps[k] < limit)
				limit = ar->heaps[k];
	}
	return limit > r->start ? limit : r->start;
}

/* memalign of an mmapped chunk leaves the mapping's header stale and puts
 * the real chunk `lead` bytes in, with prev_size == lead. Returns lead or 0. */
static uint64_t memalign_lead(struct pm_glibc_walk *w, uint64_t a, uint64_t size)
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
		if (!pm_glibc_window_u64(w, a + lead, &prev) || !pm_glibc_window_u64(w, a + lead + 8, &sz))
			continue;
		if ((prev & ~(uint64_t)(w->l->mmap_tail ? 1 : 0)) == lead &&
		    (sz & PM_GLIBC_IS_MMAPPED) &&
		    (sz & ~(uint64_t)PM_GLIBC_FLAGS) + w->l->mmap_tail == size - lead)
			return lead;
	}
	return 0;
}

/* Labels every region that [start, end), the mapping of the chunk at
 * chunk, reaches into, from region i on; a region where the mapping does
 * not start says whose part it holds. */
static void label_pieces(struct pm_glibc_walk *w, size_t i, uint64_t start,
			 uint64_t end, uint64_t chunk)
{
	char detail[48];
	snprintf(detail, sizeof(detail), "part of the chunk at 0x%llx",
		 (unsigned long long)chunk);
	size_t n = pm_target_region_count(w->t);
	for (; i < n; i++) {
		struct pm_region *r = pm_target_region(w->t, i);
		if (r->start >= end)
			break;
		if (r->end <= start)
			continue;
		pm_target_label_area(w->t, r->start > start ? r->start : start,
				     r->end < end ? r->end : end,
				     PM_LABEL_GLIBC_MMAPPED,
				     r->start > start ? detail : NULL);
	}
}

/* Scans the adjacent regions [first, last] up to end (see mmapped_limit)
 * for mmapped chunks: at each page start of a readable region, a header
 * (prev_size 0, size|IS_MMAPPED, page-multiple with 2.43's tail) whose
 * mapping fits in the
 * span; then on past the mapping. */
static void scan_mmapped_span(struct pm_glibc_walk *w, size_t first, uint64_t end)
{
	uint64_t a = pm_target_region(w->t, first)->start;
	size_t i = first;
	pm_glibc_run_begin(w);
	while (a + 16 <= end && !w->fatal) {
		const struct pm_region *r = pm_target_region(w->t, i);
		if (a >= r->end) {
			i++;
			continue;
		}
		if (!(r->perms & PM_PERM_R)) {
			a = r->end;         /* unreadable: no header here */
			continue;
		}
		uint64_t prev, raw;
		if (!pm_glibc_window_u64(w, a, &prev) || !pm_glibc_window_u64(w, a + 8, &raw)) {
			a += PM_GLIBC_PAGE;
			continue;
		}
		/* The whole mapping, page-multiple: the chunk, and in 2.43 a
		 * header's worth after it. */
		uint64_t tail = w->l->mmap_tail;
		uint64_t size = (raw & ~(uint64_t)PM_GLIBC_FLAGS) + tail;
		if ((tail ? (prev & ~UINT64_C(1)) : prev) != 0 ||
		    (raw & PM_GLIBC_FLAGS) != PM_GLIBC_IS_MMAPPED || (size & 0xfff) ||
		    size < PM_GLIBC_PAGE || size > end - a) {
			a += PM_GLIBC_PAGE;
			continue;
		}
		uint64_t lead = memalign_lead(w, a, size);
		pm_glibc_chunk_push(w, a + lead, size - lead, PM_CHUNK_MMAPPED, 0xff);
		if (lead)
			pm_glibc_overhead_push(w, a, lead, PM_OVERHEAD_MMAP_LEAD, 0xff);
		label_pieces(w, i, a, a + size, a + lead);
		w->heap->total.hblks++;
		w->heap->total.hblkhd += size;
		a += size;
	}
}

void pm_glibc_scan_mmapped(struct pm_glibc_walk *w)
{
	size_t n = pm_target_region_count(w->t);
	for (size_t i = 0; i < n && !w->fatal;) {
		const struct pm_region *r = pm_target_region(w->t, i);
		uint64_t end = mmapped_limit(w, r);
		if (end == r->start) {
			i++;
			continue;
		}
		/* On through adjacent regions while each may hold them to its
		 * end; the last may stop part way. */
		size_t last = i;
		while (end == pm_target_region(w->t, last)->end && last + 1 < n &&
		       pm_target_region(w->t, last + 1)->start == end) {
			const struct pm_region *next = pm_target_region(w->t, last + 1);
			uint64_t limit = mmapped_limit(w, next);
			if (limit == next->start)
				break;
			last++;
			end = limit;
		}
		scan_mmapped_span(w, i, end);
		i = last + 1;
	}
}
