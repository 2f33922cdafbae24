/* The reference graph: its nodes (every live recognised object, then the
 * objects outside the heap that one refers to), the edges the per-kind
 * readers emit (graph_referents.c) kept in compact CSR arrays, the lookups
 * from an address to a node, and the collector's view of it: which tracked
 * objects gc.collect() would free now (Python/gc.c's update_refs,
 * subtract_refs and move_unreachable, over the edges tp_traverse visits). */
#include "graph_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bits.h"
#include "bytes.h"
#include "pymalloc.h"

enum {
	WARNINGS_MAX = 200,         /* graph warnings stored, the rest counted */
	LABELS_MISSING_MAX = 8,     /* edges of a node not found again, then no more looked for */
	GC_HEAD = 16,
};
#define REFCNT_MAX_OLD (UINT64_C(1) << 40)

void builder_warn(struct builder *b, uint64_t addr, const char *what)
{
	if (b->replay)
		return;             /* said when the graph was built */
	b->g->bad_objects++;
	if (b->warned++ < WARNINGS_MAX)
		pm_target_warn(b->t, true, addr, "reference graph: %s (object 0x%llx)",
			       what, (unsigned long long)b->obj);
}

static void namer_destroy(struct pm_graph_namer *nm);
static struct pm_graph_namer *namer_new(const struct pm_graph *g, struct builder *built);

/* ---- reading --------------------------------------------------------- */

/* Keeps the pymalloc pool holding addr at hand (objects come in address
 * order: one read per pool instead of one per object). */
static bool pool_window(struct builder *b, uint64_t addr, size_t len,
			const uint8_t **ret)
{
	if (!b->pool_valid || addr < b->pool_addr ||
	    addr - b->pool_addr >= b->pool_size) {
		const struct pm_pymalloc *pm;
		struct pm_error *err = pm_pymalloc_walk(b->t, &pm);
		if (err) {
			pm_error_destroy(err);
			return false;
		}
		if (!pm->found || !b->pool_buf)
			return false;
		const struct pm_pymalloc_pool *pool = pm_pymalloc_find_pool(pm, addr);
		if (!pool)
			return false;
		b->pool_valid = false;
		/* A core's pool is in its mapping: no copy. */
		b->pool_bytes = pm_target_stable_view(b->t, pool->address, b->pool_size);
		if (!b->pool_bytes) {
			err = pm_target_read(b->t, pool->address, b->pool_buf, b->pool_size);
			if (err) {
				pm_error_destroy(err);
				return false;
			}
			b->pool_bytes = b->pool_buf;
		}
		b->pool_addr = pool->address;
		b->pool_valid = true;
	}
	uint64_t off = addr - b->pool_addr;
	if (off + len > b->pool_size)
		return false;
	*ret = b->pool_bytes + off;
	return true;
}

bool builder_read(struct builder *b, uint64_t addr, void *buf, size_t len)
{
	/* Inside the pool at hand: a copy, no read (a valid window is the
	 * pool's bytes, read by pool_window). */
	if (b->pool_valid && addr >= b->pool_addr && addr - b->pool_addr < b->pool_size &&
	    len <= b->pool_size - (addr - b->pool_addr)) {
		memcpy(buf, b->pool_bytes + (addr - b->pool_addr), len);
		return true;
	}
	struct pm_error *err = pm_target_read(b->t, addr, buf, len);
	pm_error_destroy(err);
	return !err;
}

bool builder_word(struct builder *b, uint64_t addr, uint64_t *ret)
{
	uint8_t w[8];
	if (addr & 7)
		return false;
	if (b->pool_valid && addr >= b->pool_addr && addr - b->pool_addr <= b->pool_size - 8) {
		*ret = pm_load_u64(b->pool_bytes + (addr - b->pool_addr));
		return true;
	}
	if (!builder_read(b, addr, w, 8))
		return false;
	*ret = pm_load_u64(w);
	return true;
}

/* ---- nodes ------------------------------------------------------------ */

static bool live_bit(const struct pm_graph *g, size_t alloc)
{
	return (g->live_bits[alloc / 64] >> (alloc % 64)) & 1;
}

static uint32_t live_rank_of(const struct pm_graph *g, size_t alloc)
{
	uint64_t below = g->live_bits[alloc / 64] & ((UINT64_C(1) << (alloc % 64)) - 1);
	return g->live_rank[alloc / 64] + pm_popcount64(below);
}

static uint32_t heap_node(const struct pm_graph *g, uint64_t addr)
{
	size_t no_hint = SIZE_MAX;
	return pm_graph_heap_node_near(g, addr, &no_hint);
}

uint32_t pm_graph_heap_node_near(const struct pm_graph *g, uint64_t addr, size_t *hint)
{
	const struct pm_alloc *alloc = pm_cpython_find_alloc_near(g->heap, addr, hint);
	if (!alloc)
		return PM_NODE_NONE;
	size_t i = (size_t)(alloc - g->heap->allocs);
	if (!live_bit(g, i) || alloc->addr + alloc->object_offset != addr)
		return PM_NODE_NONE;
	return live_rank_of(g, i);
}

uint32_t builder_heap_node(struct builder *b, uint64_t addr)
{
	return pm_graph_heap_node_hinted(b->g, addr, &b->alloc_hints);
}

uint32_t pm_graph_node_at(const struct pm_graph *g, uint64_t addr)
{
	uint32_t n = heap_node(g, addr);
	if (n != PM_NODE_NONE)
		return n;
	const uint32_t *s = pm_static_node_map_search(&g->static_nodes, &addr);
	return s ? *s : PM_NODE_NONE;
}

uint32_t pm_graph_node_for(const struct pm_graph *g, uint64_t addr)
{
	uint32_t n = pm_graph_node_at(g, addr);
	if (n != PM_NODE_NONE)
		return n;
	const struct pm_alloc *alloc = pm_cpython_find_alloc(g->heap, addr);
	if (!alloc)
		return PM_NODE_NONE;
	size_t i = (size_t)(alloc - g->heap->allocs);
	if (live_bit(g, i))
		return live_rank_of(g, i);
	/* A buffer: its owner, when the analysis recorded one. */
	uint64_t owner = g->heap->owners ? g->heap->owners[i] : 0;
	return owner ? heap_node(g, owner) : PM_NODE_NONE;
}

uint64_t pm_graph_node_addr(const struct pm_graph *g, uint32_t node)
{
	if (node >= g->nnodes)
		return 0;
	if (node >= g->nheap)
		return g->static_addr[node - g->nheap];
	const struct pm_alloc *alloc = &g->heap->allocs[g->node_alloc[node]];
	return alloc->addr + alloc->object_offset;
}

uint64_t pm_graph_node_size(const struct pm_graph *g, uint32_t node)
{
	if (node >= g->nheap)
		return 0;
	return g->heap->allocs[g->node_alloc[node]].size;
}

const char *pm_graph_node_type(const struct pm_graph *g, uint32_t node)
{
	if (node >= g->nnodes)
		return "?";
	if (node < g->nheap) {
		uint32_t c = g->heap->allocs[g->node_alloc[node]].category;
		return c < g->heap->ncategories ? g->heap->categories[c].kind : "?";
	}
	const struct pm_cpython_type *tp =
		pm_cpython_find_type(g->heap, g->static_type[node - g->nheap]);
	return tp ? tp->name : "?";
}

static bool refcnt_plausible(const struct builder *b, uint64_t rc)
{
	return b->l->immortal ? pm_refcnt_high_bits_ok(b->l, rc) && pm_refcnt_of(b->l, rc) :
				rc && rc < REFCNT_MAX_OLD;
}

/* The node of an object outside the heap at ptr (None, a static type, ...),
 * made on first sight when ptr holds a plausible refcount and a valid type;
 * PM_NODE_NONE otherwise. Verdicts are cached. */
static struct pm_error *static_node(struct builder *b, uint64_t ptr, bool discover,
				    uint32_t *ret)
{
	*ret = PM_NODE_NONE;
	uint32_t *verdict = static_verdict_map_search(&b->verdicts, &ptr);
	if (verdict || !discover) {
		if (verdict)
			*ret = *verdict;
		return NULL;
	}
	bool fresh;
	verdict = static_verdict_map_insert(&b->verdicts, &ptr, &fresh);
	if (!verdict)
		return &pm_error_no_memory;
	*verdict = PM_NODE_NONE;
	uint8_t head[16];
	/* Objects at the start of heap allocations are heap nodes or not
	 * objects at all; elsewhere (module data, inside a runtime
	 * structure) one may be. */
	const struct pm_alloc *alloc = pm_cpython_find_alloc(b->heap, ptr);
	if (ptr & 7 || (alloc && alloc->addr + alloc->object_offset == ptr) ||
	    !builder_read(b, ptr, head, sizeof(head)) ||
	    !refcnt_plausible(b, pm_load_u64(head)))
		return NULL;
	const struct reader_type *rt;
	struct pm_error *err = reader_type_get(b, pm_load_u64(head + 8), &rt);
	if (err || !rt->valid)
		return err;
	uint32_t node = b->g->nheap + (uint32_t)b->static_addr.size;
	if (node == PM_NODE_NONE ||
	    !u64_vector_append(&b->static_addr, &ptr))
		return &pm_error_no_memory;
	uint64_t tp = pm_load_u64(head + 8);
	if (!u64_vector_append(&b->static_type, &tp))
		return &pm_error_no_memory;
	/* The insert may have moved the table: search again. */
	verdict = static_verdict_map_search(&b->verdicts, &ptr);
	*verdict = node;
	*ret = node;
	return NULL;
}

struct pm_error *builder_edge(struct builder *b, uint64_t ptr, uint8_t kind,
			      uint32_t label)
{
	if (!ptr)
		return NULL;
	if (b->replay) {
		/* The same words, read in the same order, as when the graph
		 * was built: no lookups, each one kept for the matching. */
		struct replayed_ref r = { ptr, label, PM_EDGE_KIND(kind) };
		return replayed_ref_vector_append(&b->replayed, &r) ? NULL : &pm_error_no_memory;
	}
	bool conservative = PM_EDGE_KIND(kind) == PM_EDGE_CONSERVATIVE;
	uint32_t target = builder_heap_node(b, ptr);
	if (target == PM_NODE_NONE) {
		struct pm_error *err = static_node(b, ptr, !conservative, &target);
		if (err)
			return err;
		if (target == PM_NODE_NONE) {
			if (!conservative && !b->stale_words) {
				b->g->dangling++;
				if (b->warned++ < WARNINGS_MAX)
					pm_target_warn(b->t, true, b->obj,
						       "reference graph: a reference to 0x%llx, "
						       "which is no live object",
						       (unsigned long long)ptr);
			}
			return NULL;
		}
	}
	if (b->targets.size >= UINT32_MAX)
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "more than 4 billion references: too big a graph");
	(void)label;                /* read again when wanted (pm_graph_edge_label) */
	if (!u32_vector_append(&b->targets, &target) ||
	    !u8_vector_append(&b->kinds, &kind))
		return &pm_error_no_memory;
	return NULL;
}

/* ---- building --------------------------------------------------------- */

static int owned_buffer_compare(const void *x, const void *y)
{
	const struct owned_buffer *p = x, *q = y;
	return p->node < q->node ? -1 : p->node > q->node;
}

/* The categories of the buffers whose words a conservative reader reads
 * with their owner: C structures that hold references (a module's state,
 * an element's children); not items that precise readers read, nor plain
 * data. */
static bool *owned_buffer_categories(const struct pm_cpython_heap *heap)
{
	static const char *const kinds[] = { "module state", "element extra",
					     "element children" };
	bool *wanted = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	if (!wanted)
		return NULL;
	for (size_t c = 0; c < heap->ncategories; c++)
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			wanted[c] |= !strcmp(heap->categories[c].kind, kinds[k]) &&
				     !strcmp(heap->categories[c].domain, "cpython");
	return wanted;
}

/* The owned buffers nodes_collect listed (their allocations): each with
 * its owner's node, now that every node is known, in node order. */
static void owned_buffers_resolve(struct builder *b)
{
	size_t kept = 0;
	for (size_t k = 0; k < b->owned.size; k++) {
		uint32_t alloc = b->owned.data[k].alloc;
		uint32_t node = heap_node(b->g, b->heap->owners[alloc]);
		if (node != PM_NODE_NONE)
			b->owned.data[kept++] = (struct owned_buffer){ node, alloc };
	}
	b->owned.size = kept;
	if (kept)
		qsort(b->owned.data, kept, sizeof(*b->owned.data), owned_buffer_compare);
}

/* Per category: a live object's (a node), an exact str's. */
static bool categories_init(struct builder *b)
{
	const struct pm_cpython_heap *heap = b->heap;
	b->live_category = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	b->str_category = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	if (!b->live_category || !b->str_category)
		return false;
	b->ncategories = heap->ncategories;
	for (size_t c = 0; c < heap->ncategories; c++) {
		b->live_category[c] = !strcmp(heap->categories[c].domain, "python") &&
				      strcmp(heap->categories[c].detail, "free list");
		b->str_category[c] = !strcmp(heap->categories[c].kind, "str");
	}
	return true;
}

/* One pass over the allocations for three lists: the live objects (the
 * nodes), the buffers read with their owners, and the allocations the
 * roots' scan reads (roots_scanned_categories). The allocations and their
 * owners are the analysis's biggest arrays (32 bytes per allocation): a
 * pass over them is some 50 ms on a heap of 18 million. */
static struct pm_error *nodes_collect(struct builder *b)
{
	struct pm_graph *g = b->g;
	const struct pm_cpython_heap *heap = b->heap;
	size_t words = heap->nallocs / 64 + 1;
	g->live_bits = calloc(words, sizeof(*g->live_bits));
	g->live_rank = calloc(words, sizeof(*g->live_rank));
	bool *owned_category = owned_buffer_categories(heap);
	bool *scanned_category = roots_scanned_categories(heap);
	struct pm_error *err = NULL;
	if (!categories_init(b) || !g->live_bits || !g->live_rank || !owned_category ||
	    !scanned_category)
		err = &pm_error_no_memory;
	for (size_t i = 0; i < heap->nallocs && !err; i++) {
		uint32_t c = heap->allocs[i].category, idx = (uint32_t)i;
		if (c >= heap->ncategories)
			continue;
		uint64_t owner = heap->owners ? heap->owners[i] : 0;
		bool listed = true;
		if (owner && owned_category[c]) {
			struct owned_buffer ob = { PM_NODE_NONE, idx };  /* node: later */
			listed = owned_buffer_vector_append(&b->owned, &ob);
		} else if (!owner && scanned_category[c]) {
			listed = u32_vector_append(&b->root_scan, &idx);
		}
		if (!listed) {
			err = &pm_error_no_memory;
			break;
		}
		if (!b->live_category[c])
			continue;
		if (b->node_alloc.size >= UINT32_MAX - 1)
			err = pm_error_format(PM_ERR_UNSUPPORTED,
					      "more than 4 billion objects: too big a graph");
		else if (!u32_vector_append(&b->node_alloc, &idx))
			err = &pm_error_no_memory;
		else
			g->live_bits[i / 64] |= UINT64_C(1) << (i % 64);
	}
	free(owned_category);
	free(scanned_category);
	if (err)
		return err;
	uint32_t count = 0;
	for (size_t w = 0; w < words; w++) {
		g->live_rank[w] = count;
		count += pm_popcount64(g->live_bits[w]);
	}
	u32_vector_shrink_to_fit(&b->node_alloc);
	g->nheap = (uint32_t)b->node_alloc.size;
	g->node_alloc = b->node_alloc.data;
	owned_buffers_resolve(b);
	return NULL;
}

/* Reads the first bytes of heap node n into the window. */
static bool object_window(struct builder *b, uint32_t n)
{
	const struct pm_alloc *alloc = &b->heap->allocs[b->g->node_alloc[n]];
	uint64_t end = pm_alloc_data_end(alloc);
	uint64_t room = end - (alloc->addr + alloc->object_offset);
	b->alloc = alloc;
	b->obj = alloc->addr + alloc->object_offset;
	b->window_len = room < OBJECT_WINDOW ? (size_t)room : OBJECT_WINDOW;
	if (b->window_len < 16)
		return false;
	/* A pymalloc object: its pool at hand, read once for all the objects
	 * in it (they come in address order); the window is in it. Reading
	 * the object's references never brings in another pool. */
	if (alloc->kind == PM_ALLOC_PYMALLOC &&
	    pool_window(b, b->obj, b->window_len, &b->window))
		return true;
	b->window = pm_target_stable_view(b->t, b->obj, b->window_len);
	if (b->window)
		return true;
	b->window = b->window_buf;
	return builder_read(b, b->obj, b->window_buf, b->window_len);
}

static struct pm_error *edges_collect(struct builder *b)
{
	struct pm_graph *g = b->g;
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_pymalloc_walk(b->t, &pm);
	if (err)
		return err;
	if (pm->found) {
		b->pool_size = pm->pool_size;
		b->pool_buf = malloc(pm->pool_size);
		if (!b->pool_buf)
			return &pm_error_no_memory;
	}
	g->refcnt_low = calloc(g->nheap ? g->nheap : 1, sizeof(*g->refcnt_low));
	g->flags = calloc(g->nheap ? g->nheap : 1, sizeof(*g->flags));
	if (!g->refcnt_low || !g->flags)
		return &pm_error_no_memory;
	for (uint32_t n = 0; n < g->nheap && !err; n++) {
		if ((n & 0xffff) == 0xffff) {
			pm_target_progress(b->t, "reading references", n, g->nheap);
			if (pm_target_interrupted(b->t))
				return pm_error_interrupted();
		}
		uint32_t start = (uint32_t)b->targets.size;
		if (!u32_vector_append(&b->edge_start, &start))
			return &pm_error_no_memory;
		b->node = n;
		if (!object_window(b, n)) {
			builder_warn(b, b->obj, "object unreadable");
			continue;
		}
		uint64_t rc = pm_refcnt_of(b->l, pm_load_u64(b->window));
		if (rc < PM_REFCNT_WIDE) {
			g->refcnt_low[n] = (uint8_t)rc;
		} else {
			uint64_t key = n;
			uint32_t *wide = pm_refcnt_map_insert(&g->refcnt_wide, &key, NULL);
			if (!wide)
				return &pm_error_no_memory;
			*wide = rc > UINT32_MAX ? UINT32_MAX : (uint32_t)rc;
			g->refcnt_low[n] = PM_REFCNT_WIDE;
		}
		if (b->l->immortal && (int32_t)rc < 0)
			g->flags[n] |= PM_NODE_IMMORTAL;
		err = reader_type_get(b, pm_load_u64(b->window + 8), &b->type);
		if (err)
			return err;
		if (!b->type->valid) {
			builder_warn(b, b->obj, "its type is no longer valid");
			continue;
		}
		if (b->type->gc) {
			uint64_t next;
			g->flags[n] |= PM_NODE_GC;
			if (b->obj - b->alloc->addr >= GC_HEAD &&
			    builder_word(b, b->obj - GC_HEAD, &next) && next)
				g->flags[n] |= PM_NODE_TRACKED;
		}
		if (b->type->reader == READER_CONSERVATIVE)
			g->flags[n] |= PM_NODE_CONSERVATIVE;
		err = referents_read(b);
	}
	return err ? err : dict_lookups_fix(b);
}

/* Moves the vectors into the graph; static nodes have no edges. */
static struct pm_error *graph_finish(struct builder *b)
{
	struct pm_graph *g = b->g;
	size_t nstatic = b->static_addr.size;
	if ((uint64_t)g->nheap + nstatic >= PM_NODE_NONE)
		return pm_error_format(PM_ERR_UNSUPPORTED, "too many objects");
	g->nnodes = g->nheap + (uint32_t)nstatic;
	uint32_t end = (uint32_t)b->targets.size;
	for (size_t i = 0; i <= nstatic; i++)
		if (!u32_vector_append(&b->edge_start, &end))
			return &pm_error_no_memory;
	uint8_t *fl = realloc(g->flags, g->nnodes ? g->nnodes : 1);
	if (!fl)
		return &pm_error_no_memory;
	g->flags = fl;
	/* Objects outside the heap are never collected: immortal for the
	 * collector's and the roots' purposes (and pm_graph_refcnt's
	 * UINT32_MAX). */
	for (uint32_t n = g->nheap; n < g->nnodes; n++)
		g->flags[n] = PM_NODE_STATIC | PM_NODE_IMMORTAL;
	u32_vector_shrink_to_fit(&b->edge_start);
	u32_vector_shrink_to_fit(&b->targets);
	u8_vector_shrink_to_fit(&b->kinds);
	g->nedges = b->targets.size;
	g->edge_target = u32_vector_steal(&b->targets);
	g->edge_kind = u8_vector_steal(&b->kinds);
	g->edge_start = u32_vector_steal(&b->edge_start);
	g->static_addr = u64_vector_steal(&b->static_addr);
	g->static_type = u64_vector_steal(&b->static_type);
	/* Static nodes' addresses, for lookups after the build. */
	for (size_t i = 0; i < nstatic; i++) {
		uint32_t *slot = pm_static_node_map_insert(&g->static_nodes,
							   &g->static_addr[i], NULL);
		if (!slot)
			return &pm_error_no_memory;
		*slot = g->nheap + (uint32_t)i;
	}
	return NULL;
}

static void builder_deinit(struct builder *b)
{
	free(b->live_category);
	free(b->str_category);
	free(b->pool_buf);
	u32_vector_deinit(&b->targets);
	u8_vector_deinit(&b->kinds);
	u32_vector_deinit(&b->edge_start);
	u64_vector_deinit(&b->static_addr);
	u64_vector_deinit(&b->static_type);
	static_verdict_map_deinit(&b->verdicts);
	dict_lookup_vector_deinit(&b->dict_lookups);
	owned_buffer_vector_deinit(&b->owned);
	u32_vector_deinit(&b->root_scan);
	replayed_ref_vector_deinit(&b->replayed);
	reader_types_deinit(b);
}

static void graph_destroy(void *p)
{
	struct pm_graph *g = p;
	if (!g)
		return;
	if (g->node_alloc)
		free(g->node_alloc);
	free(g->static_addr);
	free(g->static_type);
	pm_static_node_map_deinit(&g->static_nodes);
	free(g->live_bits);
	free(g->live_rank);
	free(g->edge_start);
	free(g->edge_target);
	namer_destroy(g->namer);
	free(g->edge_kind);
	free(g->refcnt_low);
	pm_refcnt_map_deinit(&g->refcnt_wide);
	free(g->flags);
	pm_graph_root_vector_deinit(&g->roots);
	free(g);
}

static struct pm_error *graph_build(struct pm_graph *g)
{
	struct builder b = { .g = g, .t = g->t, .heap = g->heap, .l = g->l,
			     .minor = g->heap->py->minor,
			     .rl = referent_layout_for(g->heap->py->minor) };
	if (!b.rl || !b.l)
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "no reference graph for CPython 3.%d",
				       g->heap->py->minor);
	reader_types_init(&b);
	struct pm_error *err = nodes_collect(&b);
	if (!err)
		err = edges_collect(&b);
	if (!err)
		err = graph_finish(&b);
	if (!err && !(g->namer = namer_new(g, &b)))
		err = &pm_error_no_memory;
	/* The node array went to the graph in nodes_collect. */
	b.node_alloc.data = NULL;
	struct u32_vector root_scan = b.root_scan;
	b.root_scan = (struct u32_vector)PM_VECTOR_INIT;
	builder_deinit(&b);
	if (!err)
		err = roots_find(g, &root_scan);
	u32_vector_deinit(&root_scan);
	return err;
}

/* ---- edge labels, read again ----------------------------------------- */

/* The graph keeps no edge labels (4 bytes per reference, a fifth of it):
 * a list item's index, a dict entry's, a slot's offset or a field are
 * needed only to name the few edges a report prints. The namer reads the
 * referrer again with the builder's own readers, in a builder of its own
 * that adds nothing and records every reference found: the same words in
 * the same order give the same labels. */
struct pm_graph_namer {
	struct builder b;
	/* The last node read again (a report names its edges one after
	 * another: a dict of 200,000 entries is read once, not once per
	 * entry): its edges' labels, and whether each was found again. */
	uint32_t labelled;          /* PM_NODE_NONE: none yet */
	struct u32_vector labels;
	struct u8_vector label_found;
};

static void namer_destroy(struct pm_graph_namer *nm)
{
	if (!nm)
		return;
	/* Views of the graph's arrays, not the namer's to free. */
	nm->b.node_alloc.data = NULL;
	nm->b.static_type.data = NULL;
	builder_deinit(&nm->b);
	u32_vector_deinit(&nm->labels);
	u8_vector_deinit(&nm->label_found);
	free(nm);
}

/* Made at the end of the build, with what the build learnt that reading
 * again needs: the buffers read with their owners and the types' readers
 * (taken from b, so not looked for again). */
static struct pm_graph_namer *namer_new(const struct pm_graph *g, struct builder *built)
{
	struct pm_graph_namer *nm = calloc(1, sizeof(*nm));
	if (!nm)
		return NULL;
	nm->labelled = PM_NODE_NONE;
	struct builder *b = &nm->b;
	*b = (struct builder){ .g = (struct pm_graph *)g, .t = g->t, .heap = g->heap,
			       .l = g->l, .minor = g->heap->py->minor,
			       .rl = referent_layout_for(g->heap->py->minor),
			       .replay = true };
	b->node_alloc.data = g->node_alloc;
	b->node_alloc.size = g->nheap;
	b->static_type.data = g->static_type;
	b->static_type.size = g->nnodes - g->nheap;
	b->subtype_dealloc = built->subtype_dealloc;
	b->types = built->types;
	b->owned = built->owned;
	built->types = (struct reader_type_map)PM_HASH_MAP_INIT;
	built->owned = (struct owned_buffer_vector)PM_VECTOR_INIT;
	if (!b->rl || !categories_init(b)) {
		namer_destroy(nm);
		return NULL;
	}
	return nm;
}

uint64_t pm_graph_node_bytes(const struct pm_graph *g)
{
	uint64_t nstatic = g->nnodes - g->nheap, words = g->heap->nallocs / 64 + 1;
	return (uint64_t)g->nheap * (sizeof(*g->node_alloc) + sizeof(*g->refcnt_low)) +
	       ((uint64_t)g->nnodes + 1) * sizeof(*g->edge_start) +
	       (uint64_t)g->nnodes * sizeof(*g->flags) +
	       words * (sizeof(*g->live_bits) + sizeof(*g->live_rank)) +
	       nstatic * (sizeof(*g->static_addr) + sizeof(*g->static_type)) +
	       g->static_nodes.capacity * (sizeof(*g->static_nodes.entries) + 1) +
	       g->refcnt_wide.capacity * (sizeof(*g->refcnt_wide.entries) + 1) +
	       g->roots.size * sizeof(*g->roots.data);
}

uint64_t pm_graph_edge_bytes(const struct pm_graph *g)
{
	return g->nedges * (sizeof(*g->edge_target) + sizeof(*g->edge_kind));
}

/* Reads node `from` again and matches what the readers find to its edges,
 * in order: the graph's edges of a node are the references its readers
 * emitted, less those to no object, and whether a word is an object
 * depends on the word alone, so each edge is the next reference found
 * with its target's address and kind. */
static bool labels_read(struct pm_graph_namer *nm, const struct pm_graph *g, uint32_t from)
{
	struct builder *b = &nm->b;
	nm->labelled = PM_NODE_NONE;
	b->node = from;
	b->targets.size = 0;
	b->kinds.size = 0;
	b->dict_lookups.size = 0;
	b->replayed.size = 0;
	if (!object_window(b, from))
		return false;
	struct pm_error *err = reader_type_get(b, pm_load_u64(b->window + 8), &b->type);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	if (!b->type->valid)
		return false;
	/* What was read up to an error still names those edges. */
	pm_error_destroy(referents_read(b));
	uint32_t first = g->edge_start[from], end = g->edge_start[from + 1];
	nm->labels.size = nm->label_found.size = 0;
	if (!u32_vector_reserve(&nm->labels, end - first) ||
	    !u8_vector_reserve(&nm->label_found, end - first))
		return false;
	/* An object that changed since the build (a live process let run)
	 * finds some edges nowhere: after a few, the rest are not looked for,
	 * so that each edge is not a search of every reference. */
	size_t next = 0, missing = 0;
	for (uint32_t e = first; e < end; e++) {
		uint64_t addr = pm_graph_node_addr(g, g->edge_target[e]);
		uint8_t kind = PM_EDGE_KIND(g->edge_kind[e]);
		size_t k = missing < LABELS_MISSING_MAX ? next : b->replayed.size;
		while (k < b->replayed.size &&
		       (b->replayed.data[k].ptr != addr || b->replayed.data[k].kind != kind))
			k++;
		bool found = k < b->replayed.size;
		uint32_t label = found ? b->replayed.data[k].label : 0;
		uint8_t f = found;
		u32_vector_append(&nm->labels, &label);
		u8_vector_append(&nm->label_found, &f);
		if (found)
			next = k + 1;   /* not found: the next edge looks from here */
		else
			missing++;
	}
	nm->labelled = from;
	return true;
}

bool pm_graph_edge_label(const struct pm_graph *g, uint32_t from, uint64_t edge,
			 uint32_t *label)
{
	if (from >= g->nheap || edge < g->edge_start[from] || edge >= g->edge_start[from + 1])
		return false;
	struct pm_graph_namer *nm = g->namer;
	if (!nm)
		return false;       /* out of memory when the graph was built */
	if (nm->labelled != from && !labels_read(nm, g, from))
		return false;
	size_t i = (size_t)(edge - g->edge_start[from]);
	*label = nm->labels.data[i];
	return nm->label_found.data[i];
}

struct pm_error *pm_graph_get(struct pm_target *t, const struct pm_graph **ret)
{
	struct pm_graph *g = pm_target_cache_get(t, PM_CACHE_GRAPH);
	if (!g) {
		const struct pm_cpython_heap *heap;
		struct pm_error *err = pm_cpython_analyse_objects(t, &heap);
		if (err)
			return err;
		if (!heap->python)
			return pm_error_format(PM_ERR_UNSUPPORTED,
					       "no reference graph: %s",
					       heap->nnotes ? heap->notes[0] :
					       "no Python objects were recognised");
		g = calloc(1, sizeof(*g));
		if (!g)
			return &pm_error_no_memory;
		g->t = t;
		g->heap = heap;
		g->l = pm_cpython_layout_of(heap->py);
		err = graph_build(g);
		if (err) {
			graph_destroy(g);
			return err;
		}
		pm_target_cache_set(t, PM_CACHE_GRAPH, g, graph_destroy);
	}
	*ret = g;
	return NULL;
}

/* ---- the collector's view --------------------------------------------- */

static bool tracked(const struct pm_graph *g, uint32_t n)
{
	return (g->flags[n] & (PM_NODE_TRACKED | PM_NODE_STATIC)) == PM_NODE_TRACKED;
}

struct pm_error *pm_graph_collect(struct pm_graph *g)
{
	if (g->collected)
		return NULL;
	int64_t *gc_refs = malloc((g->nnodes ? g->nnodes : 1) * sizeof(*gc_refs));
	uint32_t *queue = malloc((g->nnodes ? g->nnodes : 1) * sizeof(*queue));
	if (!gc_refs || !queue) {
		free(gc_refs);
		free(queue);
		return &pm_error_no_memory;
	}
	/* update_refs: the refcount of every tracked object. */
	for (uint32_t n = 0; n < g->nnodes; n++)
		gc_refs[n] = tracked(g, n) ? (int64_t)pm_graph_refcnt(g, n) : 0;
	/* subtract_refs: minus each reference a tracked object's
	 * tp_traverse visits. */
	for (uint32_t n = 0; n < g->nnodes; n++) {
		if (!tracked(g, n))
			continue;
		for (uint32_t e = g->edge_start[n]; e < g->edge_start[n + 1]; e++)
			if (g->edge_kind[e] & PM_EDGE_TRAVERSED &&
			    tracked(g, g->edge_target[e]))
				gc_refs[g->edge_target[e]]--;
	}
	/* move_unreachable: what the externally held ones reach. */
	size_t head = 0, tail = 0;
	for (uint32_t n = 0; n < g->nnodes; n++) {
		g->flags[n] &= (uint8_t)~PM_NODE_REACHABLE;
		if (tracked(g, n) &&
		    (gc_refs[n] > 0 || g->flags[n] & PM_NODE_IMMORTAL)) {
			g->flags[n] |= PM_NODE_REACHABLE;
			queue[tail++] = n;
		}
	}
	while (head < tail) {
		uint32_t n = queue[head++];
		for (uint32_t e = g->edge_start[n]; e < g->edge_start[n + 1]; e++) {
			uint32_t m = g->edge_target[e];
			if (g->edge_kind[e] & PM_EDGE_TRAVERSED && tracked(g, m) &&
			    !(g->flags[m] & PM_NODE_REACHABLE)) {
				g->flags[m] |= PM_NODE_REACHABLE;
				queue[tail++] = m;
			}
		}
	}
	free(gc_refs);
	free(queue);
	g->collected = true;
	return NULL;
}

bool pm_graph_unreachable(const struct pm_graph *g, uint32_t node)
{
	return g->collected && node < g->nnodes && tracked(g, node) &&
	       !(g->flags[node] & PM_NODE_REACHABLE);
}
