/* The CPython heap analysis, its pipeline: list every in-use allocation
 * (cpython_allocs.c), recognise the object at the start of each one
 * (cpython_recognise.c), attribute the buffers and chains that objects own
 * (cpython_owned.c, cpython_chains.c) and the structures nobody points at
 * (cpython_structures.c), then put each remaining allocation into its
 * "unknown" row, so that every allocation is in exactly one category. The
 * result is cached on the target. */
#include "cpython_analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc.h"

static const char *const alloc_kind_names[PM_ALLOC_KINDS] = {
	"pymalloc", "glibc", "glibc mmap", "glibc tcache", "glibc", "glibc",
};

const char *pm_alloc_kind_name(enum pm_alloc_kind kind)
{
	return kind < PM_ALLOC_KINDS ? alloc_kind_names[kind] : "?";
}

void analysis_note(struct pm_cpython_heap *heap, const char *fmt, const char *what)
{
	if (heap->nnotes < sizeof(heap->notes) / sizeof(heap->notes[0]))
		snprintf(heap->notes[heap->nnotes++], sizeof(heap->notes[0]), fmt, what);
}

/* "513-1024 B": glibc chunks are grouped by power-of-two size ranges. */
static void size_range(uint64_t size, char *buf, size_t len)
{
	uint64_t hi = 32;
	while (hi < size && hi < (UINT64_C(1) << 62))
		hi <<= 1;
	snprintf(buf, len, "%llu-%llu B", (unsigned long long)(hi / 2 + 1),
		 (unsigned long long)hi);
}

static struct pm_error *categorise_rest(struct analysis *a)
{
	/* glibc's own allocations are named by the walk (cached by now). */
	const struct pm_glibc_heap *g = NULL;
	if (a->heap->glibc_walked) {
		struct pm_error *err = pm_glibc_walk(a->t, &g);
		if (err)
			return err;
	}
	for (size_t i = 0; i < a->heap->nallocs; i++) {
		struct pm_alloc *alloc = &a->heap->allocs[i];
		if (alloc->category != PM_CATEGORY_NONE)
			continue;
		char detail[64];
		const char *domain = "glibc", *kind = "unknown";
		if (alloc->kind == PM_ALLOC_PYMALLOC) {
			domain = "pymalloc";
			snprintf(detail, sizeof(detail), "%llu B",
				 (unsigned long long)alloc->size);
		} else if (alloc->kind == PM_ALLOC_TCACHE) {
			kind = "free (tcache)";
			snprintf(detail, sizeof(detail), "-");
		} else if (alloc->kind == PM_ALLOC_GLIBC_META ||
			   alloc->kind == PM_ALLOC_GLIBC_OVERHEAD) {
			const char *what = "-";
			if (!g || !pm_glibc_own_memory_name(g, alloc->addr - pm_alloc_header(alloc),
							    &kind, &what))
				kind = "glibc structure";
			snprintf(detail, sizeof(detail), "%s", what);
		} else {
			domain = pm_alloc_kind_name(alloc->kind);
			size_range(alloc->size, detail, sizeof(detail));
		}
		/* Consecutive allocations mostly share a category: cache it. */
		struct pm_error *err = category_get(a, domain, kind, detail,
						    &alloc->category);
		if (err)
			return err;
	}
	for (size_t i = 0; i < a->heap->nallocs; i++) {
		struct pm_category *c = &a->heap->categories[a->heap->allocs[i].category];
		c->count++;
		c->bytes += a->heap->allocs[i].size;
	}
	return NULL;
}

static struct pm_error *recognise_all(struct analysis *a)
{
	struct pm_error *err = types_find_static(a);
	if (err) {
		analysis_note(a->heap, "objects not recognised: %s", err->message);
		pm_error_destroy(err);
		return NULL;
	}
	a->pool_buf = malloc(a->pm && a->pm->found ? a->pm->pool_size : 1);
	if (!a->pool_buf)
		return &pm_error_no_memory;
	a->heap->python = true;
	err = recognise_objects(a);
	/* Radix nodes are calloc'd: the pointer is the allocation's start, or
	 * (debug hooks, as in every pydebug build) just past its header. */
	for (size_t i = 0; !err && a->pm && i < a->pm->nradix_nodes; i++) {
		uint64_t at = a->pm->radix_nodes[i];
		const struct pm_alloc *node = pm_cpython_find_alloc(a->heap, at);
		if (node && (node->addr == at ||
			     (a->heap->debug_hooks && node->addr + DEBUG_HOOK_HEADER == at)))
			err = owned_pend(a, node->addr, OWN_RADIX_NODE);
	}
	if (!err)
		err = owned_resolve(a);
	if (!err)
		err = chains_attribute(a);
	if (!err)
		err = structures_resolve_str_entries(a);
	if (!err)
		err = structures_attribute(a);
	if (!err)
		inferred_defer(a);
	return err;
}

static struct pm_error *analyse(struct analysis *a)
{
	struct pm_error *err = pm_python_detect(a->t, &a->py);
	if (err)
		return err;
	a->heap->py = a->py;
	if (!a->py->supported)
		analysis_note(a->heap, "no Python objects: %s", a->py->unsupported);
	if ((err = allocs_collect(a)))
		return err;
	if (a->py->supported) {
		a->l = pm_cpython_layout_of(a->py);
		if ((err = recognise_all(a)))
			return err;
	}
	return categorise_rest(a);
}

static void heap_destroy(void *p)
{
	struct pm_cpython_heap *heap = p;
	if (!heap)
		return;
	for (size_t i = 0; i < heap->ncategories; i++) {
		free(heap->categories[i].domain);
		free(heap->categories[i].kind);
		free(heap->categories[i].detail);
	}
	free(heap->categories);
	for (size_t i = 0; i < heap->ntype_table; i++)
		free(heap->type_table[i].name);
	free(heap->type_table);
	free(heap->allocs);
	pm_alloc_index_destroy(heap->alloc_index);
	free(heap->owners);
	free(heap->inferred_owners);
	free(heap->mmaps);
	free(heap);
}

static int type_compare(const void *x, const void *y)
{
	const struct pm_cpython_type *p = x, *q = y;
	return p->addr < q->addr ? -1 : p->addr > q->addr;
}

/* Keeps the validated types with the result (the reference graph reads
 * objects by their type); the names move there. */
static struct pm_error *keep_types(struct analysis *a)
{
	struct pm_cpython_heap *heap = a->heap;
	memcpy(heap->kind_types, a->kind_types, sizeof(heap->kind_types));
	heap->object_type = a->object_type;
	size_t n = 0;
	for (size_t i = 0; i < a->types.capacity; i++)
		n += a->types.ctrl[i] && a->types.entries[i].value.valid;
	heap->type_table = calloc(n ? n : 1, sizeof(*heap->type_table));
	if (!heap->type_table)
		return &pm_error_no_memory;
	for (size_t i = 0; i < a->types.capacity; i++) {
		struct type_info *ti = &a->types.entries[i].value;
		if (!a->types.ctrl[i] || !ti->valid)
			continue;
		heap->type_table[heap->ntype_table++] = (struct pm_cpython_type){
			.addr = ti->addr, .flags = ti->flags,
			.basicsize = ti->basicsize, .name = ti->name,
			.kind = ti->kind, .category = ti->cat_live };
		ti->name = NULL;
	}
	if (heap->ntype_table)
		qsort(heap->type_table, heap->ntype_table,
		      sizeof(*heap->type_table), type_compare);
	return NULL;
}

const struct pm_cpython_type *pm_cpython_find_type(const struct pm_cpython_heap *heap,
						   uint64_t addr)
{
	size_t lo = 0, hi = heap->ntype_table;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (heap->type_table[mid].addr == addr)
			return &heap->type_table[mid];
		if (heap->type_table[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void analysis_deinit(struct analysis *a)
{
	for (size_t i = 0; i < a->types.capacity; i++)
		if (a->types.ctrl[i])
			free(a->types.entries[i].value.name);
	type_map_deinit(&a->types);
	/* The categories themselves are the heap's now. */
	category_index_deinit(&a->category_index);
	alloc_vector_deinit(&a->allocs);
	pending_vector_deinit(&a->pending);
	gc_link_vector_deinit(&a->links);
	gc_deferred_vector_deinit(&a->deferred);
	str_entry_vector_deinit(&a->str_entries);
	chain_vector_deinit(&a->chain);
	free(a->pool_buf);
}

static struct pm_error *analyse_cached(struct pm_target *t, struct pm_cpython_heap **ret)
{
	struct pm_cpython_heap *heap = pm_target_cache_get(t, PM_CACHE_CPYTHON);
	if (!heap) {
		heap = calloc(1, sizeof(*heap));
		if (!heap)
			return &pm_error_no_memory;
		struct analysis a = { .t = t, .heap = heap };
		struct pm_error *err = analyse(&a);
		if (!err)
			err = keep_types(&a);
		analysis_deinit(&a);
		if (!err)
			err = mmap_objects_find(t, heap);
		if (err) {
			heap_destroy(heap);
			return err;
		}
		pm_target_cache_set(t, PM_CACHE_CPYTHON, heap, heap_destroy);
	}
	*ret = heap;
	return NULL;
}

struct pm_error *pm_cpython_analyse_objects(struct pm_target *t,
					    const struct pm_cpython_heap **ret)
{
	struct pm_cpython_heap *heap;
	struct pm_error *err = analyse_cached(t, &heap);
	if (!err)
		*ret = heap;
	return err;
}

struct pm_error *pm_cpython_analyse(struct pm_target *t,
				    const struct pm_cpython_heap **ret)
{
	struct pm_cpython_heap *heap;
	struct pm_error *err = analyse_cached(t, &heap);
	if (err)
		return err;
	if (heap->inference_pending) {
		err = inferred_attribute(t, heap);
		/* Interrupted in its scan, it gave nothing yet: the next
		 * report runs it again. */
		if (!err || err->code != PM_ERR_INTERRUPTED)
			heap->inference_pending = false;
		if (err)
			return err;
	}
	*ret = heap;
	return NULL;
}
