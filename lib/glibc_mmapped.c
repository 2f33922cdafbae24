/* mmapped chunks: a page scan of the anonymous writable mappings outside
 * the arenas' heaps, including memalign'd chunks whose header lies past
 * their mapping's start; and region labelling. */
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

static bool region_may_hold_mmapped(const struct pm_glibc_walk *w,
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
		if (prev == lead && (sz & PM_GLIBC_IS_MMAPPED) &&
		    (sz & ~(uint64_t)PM_GLIBC_FLAGS) == size - lead)
			return lead;
	}
	return 0;
}

static void scan_mmapped_region(struct pm_glibc_walk *w, const struct pm_region *r)
{
	uint64_t a = r->start, end = r->end;
	pm_glibc_run_begin(w);
	while (a + 16 <= end && !w->fatal) {
		uint64_t prev, raw;
		if (!pm_glibc_window_u64(w, a, &prev) || !pm_glibc_window_u64(w, a + 8, &raw)) {
			a += PM_GLIBC_PAGE;
			continue;
		}
		uint64_t size = raw & ~(uint64_t)PM_GLIBC_FLAGS;
		if (prev != 0 || (raw & 0xfff) != PM_GLIBC_IS_MMAPPED ||
		    size < PM_GLIBC_PAGE || size > r->end - a) {
			a += PM_GLIBC_PAGE;
			continue;
		}
		uint64_t lead = memalign_lead(w, a, size);
		pm_glibc_chunk_push(w, a + lead, size - lead, PM_CHUNK_MMAPPED, 0xff);
		if (lead)
			pm_glibc_overhead_push(w, a, lead, PM_OVERHEAD_MMAP_LEAD, 0xff);
		w->heap->total.hblks++;
		w->heap->total.hblkhd += size;
		a += size;
	}
}

void pm_glibc_scan_mmapped(struct pm_glibc_walk *w)
{
	size_t n = pm_target_region_count(w->t);
	for (size_t i = 0; i < n && !w->fatal; i++) {
		struct pm_region *r = pm_target_region(w->t, i);
		if (!region_may_hold_mmapped(w, r))
			continue;
		size_t before = w->heap->nchunks;
		scan_mmapped_region(w, r);
		for (size_t k = before; k < w->heap->nchunks; k++) {
			const struct pm_chunk *c = &w->heap->chunks[k];
			pm_target_label_area(w->t, c->addr, c->addr + c->size,
					     PM_LABEL_GLIBC_MMAPPED, NULL);
		}
	}
}
