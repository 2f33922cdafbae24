/* Where the process's resident memory is (rss.h). Every byte of every
 * writable region goes to exactly one part: the glibc walk's chunks (used
 * ones by their allocation's category, free ones by bin class) and heap
 * headers, the pymalloc arenas pool by pool and block by block, and what
 * is left of the region to "no allocator" by what the region is. Adjacent
 * bytes of the same part are measured together, so a heap of millions of
 * blocks asks the residency once per run, not once per block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpython.h"
#include "pymalloc.h"
#include "rss.h"

static const char *const part_names[PM_RSS_PARTS] = {
	"python objects", "other allocations",
	"glibc free: tcache", "glibc free: fastbins", "glibc free: unsorted bin",
	"glibc free: small bins", "glibc free: large bins", "glibc free: top chunks",
	"pymalloc free blocks", "pymalloc empty pools", "pymalloc never-used pools",
	"chunk headers", "pool headers", "alignment and pool tails",
	"arena headers and allocator structures",
	"stacks", "libraries' and files' data", "other anonymous memory",
};

static const char *const part_keys[PM_RSS_PARTS] = {
	"python", "other",
	"glibc_free_tcache", "glibc_free_fastbin", "glibc_free_unsorted",
	"glibc_free_small", "glibc_free_large", "glibc_free_top",
	"pymalloc_free_blocks", "pymalloc_empty_pools", "pymalloc_never_used",
	"chunk_headers", "pool_headers", "alignment", "allocator_structures",
	"stacks", "file_data", "anonymous_other",
};

const char *pm_rss_part_key(enum pm_rss_part part)
{
	return part < PM_RSS_PARTS ? part_keys[part] : "?";
}

const char *pm_rss_part_name(enum pm_rss_part part)
{
	return part < PM_RSS_PARTS ? part_names[part] : "?";
}

const char *pm_rss_part_group(enum pm_rss_part part)
{
	if (part <= PM_RSS_OTHER)
		return "in use";
	if (part <= PM_RSS_PYMALLOC_NEVER_USED)
		return "free";
	if (part <= PM_RSS_ALLOCATOR_STRUCTS)
		return "overhead";
	return "not allocator memory";
}

struct builder {
	struct pm_target *t;
	struct pm_residency *res;
	struct pm_rss *rss;
	const struct pm_cpython_heap *heap;     /* NULL without the analysis */
	size_t *slot;               /* target region -> rss->regions index */
	size_t nregions;
	size_t alloc_hint;
	/* The run being extended. */
	uint64_t start, end;
	enum pm_rss_part part;
	const char *domain;
	struct pm_error *err;
};

static void add_to(struct pm_resident_bytes *into, uint64_t bytes, uint64_t resident,
		   uint64_t swapped)
{
	into->bytes += bytes;
	into->resident += resident;
	into->swapped += swapped;
}

static void count_domain(struct builder *b, const char *domain, uint64_t bytes,
			 uint64_t resident, uint64_t swapped)
{
	struct pm_rss_domain_vector *v = &b->rss->domains;
	for (size_t i = 0; i < v->size; i++)
		if (!strcmp(v->data[i].domain, domain)) {
			add_to(&v->data[i].bytes, bytes, resident, swapped);
			return;
		}
	struct pm_rss_domain *d = pm_rss_domain_vector_append_entry(v);
	if (!d) {
		b->err = &pm_error_no_memory;
		return;
	}
	*d = (struct pm_rss_domain){domain, {bytes, resident, swapped}};
}

/* Measures the run and adds it to its regions' parts (only the writable
 * regions are split; a run elsewhere is not part of the account). */
static void flush(struct builder *b)
{
	uint64_t a = b->start, end = b->end;
	b->end = 0;
	while (a < end) {
		struct pm_region *r = pm_target_find_region(b->t, a);
		if (!r)
			return;         /* allocator memory is mapped: nothing to add */
		size_t i = (size_t)(r - pm_target_region(b->t, 0));
		uint64_t upto = r->end < end ? r->end : end;
		if (i < b->nregions && b->slot[i] != SIZE_MAX) {
			uint64_t resident = 0, swapped = 0;
			pm_residency_range(b->res, a, upto, &resident, &swapped);
			struct pm_rss_region *rr = &b->rss->regions.data[b->slot[i]];
			add_to(&rr->parts[b->part], upto - a, resident, swapped);
			add_to(&b->rss->parts[b->part], upto - a, resident, swapped);
			if (b->part == PM_RSS_OTHER)
				count_domain(b, b->domain, upto - a, resident, swapped);
		}
		a = upto;
	}
}

static void piece(struct builder *b, uint64_t start, uint64_t end,
		  enum pm_rss_part part, const char *domain)
{
	if (end <= start)
		return;
	if (b->end == start && b->part == part &&
	    (part != PM_RSS_OTHER || (b->domain && domain && !strcmp(b->domain, domain)))) {
		b->end = end;
		return;
	}
	if (b->end)
		flush(b);
	b->start = start;
	b->end = end;
	b->part = part;
	b->domain = domain;
}

/* The part of the used allocation whose data starts at addr. */
static enum pm_rss_part used_part(struct builder *b, uint64_t addr, const char *fallback,
				  const char **domain)
{
	*domain = fallback;
	if (!b->heap)
		return PM_RSS_OTHER;
	const struct pm_alloc *alloc = pm_cpython_find_alloc_near(b->heap, addr,
								  &b->alloc_hint);
	if (!alloc || alloc->addr != addr || alloc->category >= b->heap->ncategories)
		return PM_RSS_OTHER;
	*domain = b->heap->categories[alloc->category].domain;
	return !strcmp(*domain, "python") ? PM_RSS_PYTHON : PM_RSS_OTHER;
}

static void glibc_pieces(struct builder *b, const struct pm_glibc_fragmentation *f)
{
	const struct pm_glibc_heap *h = f->heap;
	size_t o = 0;
	for (size_t k = 0; k < h->nchunks; k++) {
		const struct pm_chunk *c = &h->chunks[k];
		/* Heap headers lie between chunks: keep address order. */
		for (; o < h->noverheads && h->overheads[o].addr < c->addr; o++)
			piece(b, h->overheads[o].addr,
			      h->overheads[o].addr + h->overheads[o].size,
			      PM_RSS_ALLOCATOR_STRUCTS, NULL);
		uint64_t end = c->addr + c->size;
		const char *domain;
		switch (c->state) {
		case PM_CHUNK_USED:
		case PM_CHUNK_MMAPPED: {
			enum pm_rss_part part = used_part(b, c->addr + PM_GLIBC_CHUNK_HEADER,
							  c->state == PM_CHUNK_MMAPPED ?
							  "mmapped" : "glibc", &domain);
			piece(b, c->addr, c->addr + PM_GLIBC_CHUNK_HEADER,
			      PM_RSS_CHUNK_HEADERS, NULL);
			piece(b, c->addr + PM_GLIBC_CHUNK_HEADER, end, part, domain);
			break;
		}
		case PM_CHUNK_TCACHE_STRUCT:
		case PM_CHUNK_FENCEPOST:
			piece(b, c->addr, end, PM_RSS_ALLOCATOR_STRUCTS, NULL);
			break;
		default:
			piece(b, c->addr, end, (enum pm_rss_part)(PM_RSS_GLIBC_FREE +
				pm_glibc_chunk_free_class(f, c)), NULL);
			break;
		}
	}
	for (; o < h->noverheads; o++)
		piece(b, h->overheads[o].addr, h->overheads[o].addr + h->overheads[o].size,
		      PM_RSS_ALLOCATOR_STRUCTS, NULL);
}

static void pool_pieces(struct builder *b, const struct pm_pymalloc *pm,
			const struct pm_pymalloc_pool *p)
{
	uint32_t size = pm_pymalloc_block_size(p->szidx);
	uint64_t first = p->address + PM_PYMALLOC_POOL_OVERHEAD;
	piece(b, p->address, first, PM_RSS_POOL_HEADERS, NULL);
	for (uint32_t k = 0; k < p->nblocks; k++) {
		uint64_t block = first + (uint64_t)k * size;
		if (!pm_pymalloc_block_used(pm, p, k)) {
			piece(b, block, block + size, PM_RSS_PYMALLOC_FREE_BLOCKS, NULL);
			continue;
		}
		const char *domain;
		enum pm_rss_part part = used_part(b, block, "pymalloc", &domain);
		piece(b, block, block + size, part, domain);
	}
	piece(b, first + (uint64_t)p->nblocks * size, p->address + pm->pool_size,
	      PM_RSS_ALIGNMENT, NULL);
}

/* An arena, in address order: alignment lead, carved pools (used or
 * empty), never-carved pools, the tail an unaligned arena cannot use. */
static void arena_pieces(struct builder *b, const struct pm_pymalloc *pm,
			 const struct pm_pymalloc_arena *ar, size_t *pool_index)
{
	uint64_t pool = pm->pool_size;
	uint64_t base = (ar->address + pool - 1) & ~(pool - 1);
	uint64_t end = ar->address + pm->arena_size;
	uint64_t pools_end = base + (uint64_t)ar->ntotalpools * pool;
	if (pools_end > end)
		pools_end = end;
	uint64_t carved_end = ar->pool_address < pools_end ? ar->pool_address : pools_end;
	piece(b, ar->address, base, PM_RSS_ALIGNMENT, NULL);
	size_t k = *pool_index;
	while (k < pm->npools && pm->pools[k].address < base)
		k++;
	for (uint64_t p = base; p + pool <= carved_end; p += pool) {
		if (k < pm->npools && pm->pools[k].address == p) {
			pool_pieces(b, pm, &pm->pools[k]);
			k++;
		} else {
			piece(b, p, p + pool, PM_RSS_PYMALLOC_EMPTY_POOLS, NULL);
		}
	}
	*pool_index = k;
	piece(b, carved_end, pools_end, PM_RSS_PYMALLOC_NEVER_USED, NULL);
	piece(b, pools_end, end, PM_RSS_ALIGNMENT, NULL);
}

static int arena_compare(const void *x, const void *y)
{
	const struct pm_pymalloc_arena *a = x, *c = y;
	return a->address < c->address ? -1 : a->address > c->address;
}

static struct pm_error *pymalloc_pieces(struct builder *b, const struct pm_pymalloc *pm)
{
	if (!pm->found || !pm->arena_list.size)
		return NULL;
	/* Arenas in address order, so pools are met in order too. */
	size_t n = pm->arena_list.size;
	struct pm_pymalloc_arena *sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return &pm_error_no_memory;
	memcpy(sorted, pm->arena_list.data, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), arena_compare);
	size_t pool_index = 0;
	for (size_t i = 0; i < n && !b->err; i++) {
		if ((i & 255) == 255 && pm_target_interrupted(b->t)) {
			free(sorted);
			return pm_error_interrupted();
		}
		arena_pieces(b, pm, &sorted[i], &pool_index);
	}
	free(sorted);
	return NULL;
}

static enum pm_rss_part unowned_part(const struct pm_region *r)
{
	switch (r->label) {
	case PM_LABEL_MAIN_STACK:
	case PM_LABEL_THREAD_STACK:
		return PM_RSS_STACKS;
	case PM_LABEL_MODULE:
	case PM_LABEL_FILE:
		return PM_RSS_FILE_DATA;
	default:
		return r->path && r->path[0] != '[' ? PM_RSS_FILE_DATA : PM_RSS_ANON_OTHER;
	}
}

static struct pm_error *regions_init(struct builder *b)
{
	b->nregions = pm_target_region_count(b->t);
	b->slot = malloc((b->nregions ? b->nregions : 1) * sizeof(*b->slot));
	if (!b->slot)
		return &pm_error_no_memory;
	struct pm_rss *rss = b->rss;
	for (size_t i = 0; i < b->nregions; i++) {
		const struct pm_region *r = pm_target_region(b->t, i);
		b->slot[i] = SIZE_MAX;
		if (!(r->perms & PM_PERM_W))
			continue;
		struct pm_rss_region *rr = pm_rss_region_vector_append_entry(&rss->regions);
		if (!rr)
			return &pm_error_no_memory;
		memset(rr, 0, sizeof(*rr));
		b->slot[i] = rss->regions.size - 1;
		rr->region = i;
		rr->total.bytes = r->end - r->start;
		rr->smaps_known = pm_residency_region(b->res, i, &rr->smaps_rss,
						      &rr->smaps_swap);
		if (rss->per_page)
			pm_residency_range(b->res, r->start, r->end, &rr->total.resident,
					   &rr->total.swapped);
		else {
			rr->total.resident = rr->smaps_rss;
			rr->total.swapped = rr->smaps_swap;
		}
	}
	return NULL;
}

/* What no walk covered: the region less its parts. */
static void regions_finish(struct builder *b)
{
	struct pm_rss *rss = b->rss;
	rss->smaps_known = rss->regions.size > 0;
	for (size_t k = 0; k < rss->regions.size; k++) {
		struct pm_rss_region *rr = &rss->regions.data[k];
		struct pm_resident_bytes covered = {0};
		for (size_t p = 0; p < PM_RSS_PARTS; p++)
			add_to(&covered, rr->parts[p].bytes, rr->parts[p].resident,
			       rr->parts[p].swapped);
		const struct pm_region *r = pm_target_region(b->t, rr->region);
		if (covered.bytes > rr->total.bytes)
			pm_target_warn(b->t, true, r->start,
				       "rss: allocator memory counted twice in this region");
		struct pm_resident_bytes rest = {
			rr->total.bytes > covered.bytes ? rr->total.bytes - covered.bytes : 0,
			rr->total.resident > covered.resident ?
				rr->total.resident - covered.resident : 0,
			rr->total.swapped > covered.swapped ?
				rr->total.swapped - covered.swapped : 0,
		};
		enum pm_rss_part part = unowned_part(r);
		add_to(&rr->parts[part], rest.bytes, rest.resident, rest.swapped);
		add_to(&rss->parts[part], rest.bytes, rest.resident, rest.swapped);
		add_to(&rss->total, rr->total.bytes, rr->total.resident, rr->total.swapped);
		rss->smaps_known &= rr->smaps_known;
		rss->smaps_rss += rr->smaps_rss;
		rss->smaps_swap += rr->smaps_swap;
	}
}

struct pm_error *pm_rss_create(struct pm_target *t, struct pm_residency *res,
			       const struct pm_glibc_fragmentation *glibc,
			       struct pm_rss **ret)
{
	struct pm_rss *rss = calloc(1, sizeof(*rss));
	if (!rss)
		return &pm_error_no_memory;
	rss->source = pm_residency_source(res);
	rss->per_page = pm_residency_per_page(res);
	struct builder b = {.t = t, .res = res, .rss = rss};
	struct pm_error *err = regions_init(&b);
	/* The categories, when the process is a CPython the analysis knows
	 * (else every allocation is "other", by allocator). */
	const struct pm_cpython_heap *heap = NULL;
	if (!err) {
		struct pm_error *e = pm_cpython_analyse(t, &heap);
		if (e) {
			if (e->code == PM_ERR_INTERRUPTED || e == &pm_error_no_memory)
				err = e;
			else
				pm_error_destroy(e);
			heap = NULL;
		}
		b.heap = heap;
		rss->python = heap && heap->python;
	}
	if (!err && glibc) {
		rss->glibc = true;
		glibc_pieces(&b, glibc);
	}
	const struct pm_pymalloc *pm = NULL;
	if (!err) {
		struct pm_error *e = pm_pymalloc_walk(t, &pm);
		if (e) {
			pm_error_destroy(e);
			pm = NULL;
		}
	}
	if (!err && pm) {
		rss->pymalloc = pm->found && pm->in_use;
		err = pymalloc_pieces(&b, pm);
	}
	if (!err && b.end)
		flush(&b);
	if (!err)
		err = b.err;
	if (!err)
		regions_finish(&b);
	free(b.slot);
	if (err) {
		pm_rss_destroy(rss);
		return err;
	}
	*ret = rss;
	return NULL;
}

void pm_rss_destroy(struct pm_rss *rss)
{
	if (!rss)
		return;
	pm_rss_region_vector_deinit(&rss->regions);
	pm_rss_domain_vector_deinit(&rss->domains);
	free(rss);
}
