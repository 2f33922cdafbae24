/* Every in-use allocation of the process, from the walkers (pymalloc's used
 * blocks, glibc's in-use, mmapped and tcache'd chunks), in one address-
 * sorted array that the recogniser fills in; and the lookups over it. */
#include "cpython_analysis.h"

#include <stdlib.h>
#include <string.h>

#include "glibc.h"
#include "hash_table.h"

static struct pm_error *alloc_push(struct analysis *a, uint64_t addr,
				   uint64_t size, enum pm_alloc_kind kind)
{
	struct pm_alloc *alloc = alloc_vector_append_entry(&a->allocs);
	if (!alloc)
		return &pm_error_no_memory;
	*alloc = (struct pm_alloc){ .addr = addr, .size = size,
				    .category = PM_CATEGORY_NONE,
				    .kind = (uint8_t)kind };
	return NULL;
}

static struct pm_error *allocs_from_pymalloc(struct analysis *a)
{
	const struct pm_pymalloc *pm = a->pm;
	struct pm_error *err = NULL;
	for (size_t i = 0; i < pm->npools && !err; i++) {
		const struct pm_pymalloc_pool *pool = &pm->pools[i];
		uint32_t size = pm_pymalloc_block_size(pool->szidx);
		for (uint32_t k = 0; k < pool->nblocks && !err; k++)
			if (pm_pymalloc_block_used(pm, pool, k))
				err = alloc_push(a, pool->address + PM_PYMALLOC_POOL_OVERHEAD +
						 (uint64_t)k * size, size, PM_ALLOC_PYMALLOC);
	}
	return err;
}

/* glibc's in-use chunks (program, mmapped, tcache'd, glibc's own tcache
 * structs and fenceposts) and glibc's overheads outside chunks (heap
 * headers of non-main arenas, memalign'd mmapped chunks' leads), which
 * mallinfo2 counts in use too: each in address order, so the two merge
 * into one sorted run. An overhead has no chunk header: its allocation
 * starts where it does. */
static struct pm_error *allocs_from_glibc(struct analysis *a,
					  const struct pm_glibc_heap *g)
{
	struct pm_error *err = NULL;
	size_t k = 0;   /* the next overhead */
	for (size_t i = 0; i < g->nchunks && !err; i++) {
		const struct pm_chunk *c = &g->chunks[i];
		for (; k < g->noverheads && g->overheads[k].addr < c->addr && !err; k++)
			err = alloc_push(a, g->overheads[k].addr, g->overheads[k].size,
					 PM_ALLOC_GLIBC_OVERHEAD);
		enum pm_alloc_kind kind;
		switch (c->state) {
		case PM_CHUNK_USED: kind = PM_ALLOC_GLIBC; break;
		case PM_CHUNK_MMAPPED: kind = PM_ALLOC_MMAPPED; break;
		case PM_CHUNK_FREE_TCACHE: kind = PM_ALLOC_TCACHE; break;
		case PM_CHUNK_TCACHE_STRUCT:
		case PM_CHUNK_FENCEPOST: kind = PM_ALLOC_GLIBC_META; break;
		default: continue;
		}
		if (!err)
			err = alloc_push(a, c->addr + PM_GLIBC_CHUNK_HEADER, c->size, kind);
	}
	for (; k < g->noverheads && !err; k++)
		err = alloc_push(a, g->overheads[k].addr, g->overheads[k].size,
				 PM_ALLOC_GLIBC_OVERHEAD);
	return err;
}

static int alloc_compare(const void *x, const void *y)
{
	const struct pm_alloc *p = x, *q = y;
	return p->addr < q->addr ? -1 : p->addr > q->addr;
}

/* A stretch of allocations already in address order: [start, end). */
struct alloc_run {
	size_t start, end;
};
PM_DEFINE_VECTOR(alloc_run_vector, struct alloc_run)

/* Merges the adjacent sorted runs src[r0.start, r0.end) and src[r1.start,
 * r1.end) (r1.start == r0.end) into dst at the same places. */
static void allocs_merge(const struct pm_alloc *src, struct pm_alloc *dst,
			 struct alloc_run r0, struct alloc_run r1)
{
	size_t i = r0.start, j = r1.start, k = r0.start;
	while (i < r0.end && j < r1.end)
		dst[k++] = src[j].addr < src[i].addr ? src[j++] : src[i++];
	memcpy(dst + k, src + i, (r0.end - i) * sizeof(*dst));
	k += r0.end - i;
	memcpy(dst + k, src + j, (r1.end - j) * sizeof(*dst));
}

/* Puts the allocations in address order. The walkers emit them in order
 * within each source (pymalloc's pools, each glibc heap and the mmapped
 * chunks), so the array is a few sorted runs: merged pairwise, each round
 * linear (a general sort of millions of entries was the analysis's
 * biggest cost). No memory for the merge: a general sort. */
static void allocs_sort(struct analysis *a)
{
	size_t n = a->allocs.size;
	struct alloc_run_vector runs = PM_VECTOR_INIT;
	struct pm_alloc *src = a->allocs.data, *dst = NULL;
	bool ok = true;
	for (size_t i = 0; i < n && ok;) {
		size_t j = i + 1;
		while (j < n && src[j - 1].addr <= src[j].addr)
			j++;
		ok = alloc_run_vector_append(&runs, &(struct alloc_run){ i, j });
		i = j;
	}
	if (ok && runs.size > 1)
		ok = (dst = malloc(n * sizeof(*dst))) != NULL;
	while (ok && runs.size > 1) {
		size_t merged = 0;
		for (size_t k = 0; k < runs.size; k += 2) {
			struct alloc_run *r = runs.data;
			if (k + 1 < runs.size) {
				allocs_merge(src, dst, r[k], r[k + 1]);
				r[merged++] = (struct alloc_run){ r[k].start, r[k + 1].end };
			} else {
				memcpy(dst + r[k].start, src + r[k].start,
				       (r[k].end - r[k].start) * sizeof(*dst));
				r[merged++] = r[k];
			}
		}
		runs.size = merged;
		struct pm_alloc *swap = src;
		src = dst;
		dst = swap;
	}
	if (!ok) {
		qsort(a->allocs.data, n, sizeof(*a->allocs.data), alloc_compare);
	} else if (src != a->allocs.data) {
		/* The sorted copy is the one to keep. */
		dst = a->allocs.data;
		a->allocs.data = src;
		a->allocs.capacity = n;
	}
	if (dst != a->allocs.data)
		free(dst);
	alloc_run_vector_deinit(&runs);
}

struct pm_error *allocs_collect(struct analysis *a)
{
	struct pm_cpython_heap *heap = a->heap;
	struct pm_error *err = NULL;
	if (a->py->supported) {
		err = pm_pymalloc_walk(a->t, &a->pm);
		if (err)
			return err;
		if (a->pm->found) {
			heap->pymalloc_walked = true;
			err = allocs_from_pymalloc(a);
		} else {
			analysis_note(heap, "pymalloc not walked: %s", a->pm->missing);
		}
	}
	if (err)
		return err;
	const struct pm_glibc_heap *g;
	err = pm_glibc_walk(a->t, &g);
	if (err) {
		analysis_note(heap, "glibc heap not walked: %s", err->message);
		pm_error_destroy(err);
	} else if (g->other_allocator) {
		analysis_note(heap, "glibc malloc not in use: %s", g->other_allocator);
	} else {
		heap->glibc_walked = true;
		if ((err = allocs_from_glibc(a, g)))
			return err;
	}
	if (a->allocs.size)
		allocs_sort(a);
	alloc_vector_shrink_to_fit(&a->allocs);
	heap->nallocs = a->allocs.size;
	heap->allocs = alloc_vector_steal(&a->allocs);
	heap->alloc_index = pm_alloc_index_build(heap);
	return NULL;
}

/* ---- address index ------------------------------------------------- */

/* The graph looks up every reference's target, and a binary search over
 * tens of millions of allocations misses the cache at each of its ~25
 * steps. Instead: for each 64 KiB of address space that an allocation
 * overlaps, the range of allocations that overlap it; a lookup is one hash
 * probe and a short search within that range. */
#define INDEX_BUCKET_SHIFT 12

struct alloc_range {
	uint32_t first, end;        /* allocs[first, end) overlap the bucket */
};

PM_DEFINE_HASH_MAP(alloc_bucket_map, uint64_t, struct alloc_range, pm_hash_u64_key,
		   pm_u64_key_eq)

struct pm_alloc_index {
	struct alloc_bucket_map buckets;
};

void pm_alloc_index_destroy(struct pm_alloc_index *index)
{
	if (!index)
		return;
	alloc_bucket_map_deinit(&index->buckets);
	free(index);
}

struct pm_alloc_index *pm_alloc_index_build(const struct pm_cpython_heap *heap)
{
	if (heap->nallocs >= UINT32_MAX)
		return NULL;
	struct pm_alloc_index *index = calloc(1, sizeof(*index));
	if (!index)
		return NULL;
	struct alloc_range *current = NULL;
	uint64_t current_bucket = UINT64_MAX;
	for (size_t i = 0; i < heap->nallocs; i++) {
		const struct pm_alloc *p = &heap->allocs[i];
		uint64_t end = pm_alloc_end(p);
		if (end <= p->addr)
			continue;
		for (uint64_t b = p->addr >> INDEX_BUCKET_SHIFT;
		     b <= (end - 1) >> INDEX_BUCKET_SHIFT; b++) {
			if (b != current_bucket) {
				bool fresh;
				current = alloc_bucket_map_insert(&index->buckets, &b, &fresh);
				if (!current) {
					pm_alloc_index_destroy(index);
					return NULL;
				}
				if (fresh)
					current->first = (uint32_t)i;
				current_bucket = b;
			}
			current->end = (uint32_t)i + 1;
		}
	}
	return index;
}

static const struct pm_alloc *search_range(const struct pm_cpython_heap *heap,
					   size_t lo, size_t hi, uint64_t addr)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_alloc *p = &heap->allocs[mid];
		if (addr < p->addr)
			hi = mid;
		else if (addr >= pm_alloc_end(p))
			lo = mid + 1;
		else
			return p;
	}
	return NULL;
}

/* Looking up references in the order a container holds them mostly goes
 * to objects allocated shortly after one another: an exponential search
 * from the previous answer (steps 1, 2, 4, ... up to NEAR_SPAN) finds the
 * next in a few cache-near steps. */
enum { NEAR_SPAN = 64 };

const struct pm_alloc *pm_cpython_find_alloc_near(const struct pm_cpython_heap *heap,
						  uint64_t addr, size_t *hint)
{
	size_t i = *hint, n = heap->nallocs;
	const struct pm_alloc *allocs = heap->allocs, *found = NULL;
	if (i < n && addr >= allocs[i].addr) {
		/* allocs[i].addr <= addr: find hi with addr < allocs[hi].addr */
		size_t lo = i, step = 1;
		while (step <= NEAR_SPAN && i + step < n && allocs[i + step].addr <= addr) {
			lo = i + step;
			step *= 2;
		}
		if (step <= NEAR_SPAN || i + step >= n)
			found = search_range(heap, lo, i + step < n ? i + step : n, addr);
		else
			found = pm_cpython_find_alloc(heap, addr);
	} else if (i < n) {
		/* addr < allocs[hi].addr: find lo with allocs[lo].addr <= addr */
		size_t hi = i, step = 1;
		while (step <= NEAR_SPAN && step <= i && allocs[i - step].addr > addr) {
			hi = i - step;
			step *= 2;
		}
		if (step <= NEAR_SPAN || step > i)
			found = search_range(heap, step <= i ? i - step : 0, hi, addr);
		else
			found = pm_cpython_find_alloc(heap, addr);
	} else {
		found = pm_cpython_find_alloc(heap, addr);
	}
	if (found)
		*hint = (size_t)(found - allocs);
	return found;
}

const struct pm_alloc *pm_cpython_find_alloc(const struct pm_cpython_heap *heap,
					     uint64_t addr)
{
	if (!heap->alloc_index)
		return search_range(heap, 0, heap->nallocs, addr);
	uint64_t bucket = addr >> INDEX_BUCKET_SHIFT;
	const struct alloc_range *r =
		alloc_bucket_map_search(&heap->alloc_index->buckets, &bucket);
	return r ? search_range(heap, r->first, r->end, addr) : NULL;
}

uint64_t alloc_usable(const struct pm_alloc *alloc)
{
	/* In-use chunk: user data is size - 8 (the next chunk's prev_size is
	 * ours), mmapped: size - 16. */
	return alloc->kind == PM_ALLOC_PYMALLOC ? alloc->size :
		alloc->size - (alloc->kind == PM_ALLOC_MMAPPED ? 16 : 8);
}

struct alloc_data alloc_data_of(const struct analysis *a,
				const struct pm_alloc *alloc)
{
	struct alloc_data d = { alloc->addr, alloc_usable(alloc) };
	/* Up to two nested headers, as in recognise() (PyMem_Malloc of a large
	 * size: the object hooks around the raw hooks). */
	for (int nested = 0; nested < 2 && a->heap->debug_hooks &&
	     d.usable >= DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER; nested++) {
		uint8_t h[16];
		struct pm_error *err = pm_target_read(a->t, d.start, h, sizeof(h));
		bool hooked = !err && pm_debug_hook_header(h, d.usable - DEBUG_HOOK_HEADER -
							    DEBUG_HOOK_TRAILER, NULL);
		pm_error_destroy(err);
		if (!hooked)
			break;
		d.start += DEBUG_HOOK_HEADER;
		d.usable -= DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER;
	}
	return d;
}

struct pm_alloc *alloc_unknown_at(struct analysis *a, uint64_t ptr,
				  struct alloc_data *ret)
{
	struct pm_alloc *alloc = (struct pm_alloc *)pm_cpython_find_alloc(a->heap, ptr);
	if (!alloc || alloc->category != PM_CATEGORY_NONE ||
	    (alloc->kind != PM_ALLOC_PYMALLOC && alloc->kind != PM_ALLOC_GLIBC &&
	     alloc->kind != PM_ALLOC_MMAPPED))
		return NULL;
	*ret = alloc_data_of(a, alloc);
	return ret->start == ptr ? alloc : NULL;
}

struct pm_alloc *alloc_unknown_sized(struct analysis *a, uint64_t ptr,
				     uint64_t size)
{
	struct alloc_data d;
	struct pm_alloc *alloc = alloc_unknown_at(a, ptr, &d);
	uint64_t slack = alloc && alloc->kind == PM_ALLOC_MMAPPED ? MMAP_SLACK : ALLOC_SLACK;
	return alloc && d.usable >= size && d.usable <= size + slack ? alloc : NULL;
}
