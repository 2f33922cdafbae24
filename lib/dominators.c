/* Retained sizes: the dominator tree of the reference graph (strong edges
 * only) from a virtual root whose successors are the objects held from
 * outside the heap (by their refcounts), by the iterative algorithm of Cooper,
 * Harvey and Kennedy ("A Simple, Fast Dominance Algorithm") over a reverse
 * postorder from an iterative depth-first search: no recursion over target
 * data, and every loop bounded. Then each node's retained bytes and count,
 * summed up the tree in one reverse pass.
 *
 * Kept per node: its reverse-postorder index, the node at each index, and
 * in index space the immediate dominator, retained bytes (4 bytes: the
 * few above 4 GiB in a map) and count (for the tree's parents only: 1.5
 * bytes per node where two in three are leaves): about 17.5 bytes, and
 * nothing more at the peak (the algorithm runs along the graph's own
 * successor lists, so it needs no predecessor lists). */
#include "dominators.h"

#include <stdlib.h>
#include <string.h>

#include "prefetch.h"
#include "vector.h"

enum { PASSES_MAX = 1000 };
#define UNDEF UINT32_MAX

/* In index space (reverse postorder; the virtual root is 0): what
 * pm_dominators keeps behind its node-space view. */
struct dominators {
	struct pm_dominators pub;
	uint32_t *rpo;              /* node -> index, UNDEF when unreached */
	uint32_t *node_at;          /* index -> node (index 0: none) */
	uint32_t reached;           /* indexes 1..reached are nodes */
};

/* A node being searched and its next edge. */
struct dfs_frame {
	uint32_t node, edge;
};
PM_DEFINE_VECTOR(dfs_stack, struct dfs_frame)
PM_DEFINE_VECTOR(u32_list, uint32_t)

/* A reference that keeps its target alive. Not a weak one; nor a word of
 * a running frame's value stack (3.8-3.10: its depth is unknown, so every
 * slot is read, and a stale slot can point at an object now in a later
 * allocation there; CPython's collector leaves those slots out too): an
 * object that such a slot really holds has a refcount above its heap
 * references, so it is held from outside, as by a C stack. */
static bool strong(const struct pm_graph *g, uint64_t e)
{
	uint8_t kind = g->edge_kind[e];
	return PM_EDGE_KIND(kind) != PM_EDGE_WEAK &&
	       !(PM_EDGE_KIND(kind) == PM_EDGE_STACK && !(kind & PM_EDGE_TRAVERSED));
}

/* The virtual root's successors: every object something outside the heap
 * holds, known by its refcount: more references than the objects of the
 * heap hold (so the C stack's stale words, which the roots' conservative
 * scans find, make nothing a root); and the objects that are never freed
 * (immortal, or outside the heap). The count array (4 bytes per node) is
 * handed back in *spare for the caller to reuse: fresh memory costs a page
 * fault per 4 KiB. */
static struct pm_error *seeds_collect(struct pm_target *t, const struct pm_graph *g,
				      struct u32_list *seeds, uint32_t **spare)
{
	(void)t;
	uint32_t *incoming = calloc(g->nnodes ? g->nnodes : 1, sizeof(*incoming));
	if (!incoming)
		return &pm_error_no_memory;
	/* The heap nodes' edges, one run in node order (static nodes have
	 * none). */
	uint32_t edges = g->nheap ? g->edge_start[g->nheap] : 0;
	for (uint32_t e = 0; e < edges; e++) {
		if (e + PM_AHEAD < edges)
			PM_PREFETCH_W(&incoming[g->edge_target[e + PM_AHEAD]]);
		if (strong(g, e) && incoming[g->edge_target[e]] < UINT32_MAX)
			incoming[g->edge_target[e]]++;
	}
	struct pm_error *err = NULL;
	for (uint32_t n = 0; n < g->nnodes && !err; n++)
		if ((g->flags[n] & (PM_NODE_IMMORTAL | PM_NODE_STATIC) ||
		     pm_graph_refcnt(g, n) > incoming[n]) && !u32_list_append(seeds, &n))
			err = &pm_error_no_memory;
	*spare = incoming;
	return err;
}

/* Postorder of what the seeds reach, by an explicit stack. */
static struct pm_error *postorder(struct pm_target *t, const struct pm_graph *g,
				  const struct u32_list *seeds, struct u32_list *post)
{
	uint64_t *seen = calloc(g->nnodes / 64 + 1, sizeof(*seen));
	struct dfs_stack stack = PM_VECTOR_INIT;
	struct pm_error *err = seen ? NULL : &pm_error_no_memory;
	uint64_t steps = 0;
#define SEEN(n) ((seen[(n) / 64] >> ((n) % 64)) & 1)
#define MARK(n) (seen[(n) / 64] |= UINT64_C(1) << ((n) % 64))
	for (size_t s = 0; s < seeds->size && !err; s++) {
		uint32_t n = seeds->data[s];
		if (SEEN(n))
			continue;
		MARK(n);
		struct dfs_frame f = { n, g->edge_start[n] };
		if (!dfs_stack_append(&stack, &f)) {
			err = &pm_error_no_memory;
			break;
		}
		while (stack.size && !err) {
			if ((++steps & 0xfffff) == 0 && t) {
				pm_target_progress(t, "ordering the graph", post->size, g->nnodes);
				if (pm_target_interrupted(t)) {
					err = pm_error_interrupted();
					break;
				}
			}
			struct dfs_frame *top = &stack.data[stack.size - 1];
			uint32_t end = g->edge_start[top->node + 1];
			while (top->edge < end && (!strong(g, top->edge) ||
						   SEEN(g->edge_target[top->edge])))
				top->edge++;
			if (top->edge == end) {
				if (!u32_list_append(post, &top->node))
					err = &pm_error_no_memory;
				stack.size--;
				continue;
			}
			uint32_t next = g->edge_target[top->edge++];
			MARK(next);
			f = (struct dfs_frame){ next, g->edge_start[next] };
			if (!dfs_stack_append(&stack, &f))
				err = &pm_error_no_memory;
		}
	}
#undef SEEN
#undef MARK
	free(seen);
	dfs_stack_deinit(&stack);
	return err;
}

static uint32_t intersect(const uint32_t *idom, uint32_t a, uint32_t b)
{
	while (a != b) {
		while (a > b)
			a = idom[a];
		while (b > a)
			b = idom[b];
	}
	return a;
}

/* A strong reference in index space, from u to v. */
struct index_edge {
	uint32_t u, v;
};
PM_DEFINE_VECTOR(index_edge_list, struct index_edge)

/* After the first pass, the only references that can still change a
 * dominator are those to a target of several (one referrer settles its
 * target in the first pass). The first pass lists them, in index space,
 * so that later passes run along that list instead of every node's edges
 * (scattered reads of edge_start, edge_target and rpo): when it takes at
 * most 5 bytes per index, no more than the arrays that come after it
 * (retained bytes and counts), so the peak stays where it was. */
struct later_edges {
	struct index_edge_list list;
	size_t cap;
	bool ok;                    /* false: too many, or out of memory */
};

static void later_add(struct later_edges *later, uint32_t u, uint32_t v)
{
	struct index_edge ie = { u, v };
	if (later->ok && (later->list.size == later->cap ||
			  !index_edge_list_append(&later->list, &ie))) {
		later->ok = false;
		index_edge_list_deinit(&later->list);
	}
}

/* Narrows v's dominator with its referrer u; true when it changed along a
 * reference back (to v at or before u). */
static inline bool narrow(uint32_t *idom, uint32_t u, uint32_t v)
{
	uint32_t meet = intersect(idom, u, idom[v]);
	if (meet == idom[v])
		return false;
	idom[v] = meet;
	return v < u;
}

/* What the first pass will read for later indexes (prefetch.h): their
 * nodes' edges, the targets' indexes and their dominators, asked for in
 * stages, each reading what an earlier stage brought in. In steps ahead:
 * 4 x PM_AHEAD, the node's edge range; 2 x, its edges; 1 x, the targets'
 * indexes and shared bits; 1/2 x, those indexes' dominators. A node's first
 * PREFETCH_EDGES edges only: most nodes have fewer. */
enum { PREFETCH_EDGES = 8 };

static inline void first_pass_prefetch(const struct pm_graph *g, const struct dominators *d,
				       const uint64_t *shared, const uint32_t *idom,
				       uint32_t u, uint32_t n)
{
	if (u + 4 * PM_AHEAD < n)
		PM_PREFETCH(&g->edge_start[d->node_at[u + 4 * PM_AHEAD]]);
	if (u + 2 * PM_AHEAD < n) {
		uint32_t e = g->edge_start[d->node_at[u + 2 * PM_AHEAD]];
		PM_PREFETCH(&g->edge_target[e]);
		PM_PREFETCH(&g->edge_kind[e]);
	}
	if (u + PM_AHEAD < n) {
		uint32_t node = d->node_at[u + PM_AHEAD];
		uint32_t e = g->edge_start[node], end = g->edge_start[node + 1];
		for (uint32_t k = 0; e < end && k < PREFETCH_EDGES; e++, k++) {
			PM_PREFETCH(&d->rpo[g->edge_target[e]]);
			PM_PREFETCH(&shared[g->edge_target[e] / 64]);
		}
	}
	if (u + PM_AHEAD / 2 < n) {
		uint32_t node = d->node_at[u + PM_AHEAD / 2];
		uint32_t e = g->edge_start[node], end = g->edge_start[node + 1];
		for (uint32_t k = 0; e < end && k < PREFETCH_EDGES; e++, k++) {
			uint32_t v = d->rpo[g->edge_target[e]];
			if (v != UNDEF)
				PM_PREFETCH(&idom[v]);
		}
	}
}

/* Cooper-Harvey-Kennedy, pushed along successors instead of pulled from
 * predecessors (so no predecessor lists: 4 bytes per reference and per node
 * saved at the peak). In reverse postorder, each reached index u narrows
 * the immediate dominator of each index it points at to the intersection
 * of that dominator and u, until no index changes. Every value only moves
 * up the tree and always stays at or below the true dominator (it is an
 * intersection over predecessors whose dominator chains hold their true
 * ones), so the fixed point reached is the true tree, as with the pulled
 * form. idom[v] < v holds throughout: v's depth-first parent comes before
 * it and before any later predecessor, so v's first value is an earlier
 * index, and intersections only go lower.
 *
 * A pass in which no reference back (to an index at or before its
 * source's) changed anything is the last: a change along a forward
 * reference is to an index not yet processed, so within the pass nothing
 * has used its old value (chains walked from u only visit indexes below
 * u), and every index below the one being processed is then final. So each
 * reference's target dominator is an ancestor of its source at the end: a
 * fixed point, without a pass to confirm it (a heap whose cycles all are
 * entered at one object, as most are, takes one pass). */
static struct pm_error *immediate_dominators(struct pm_target *t, const struct pm_graph *g,
					     struct dominators *d,
					     const struct u32_list *seeds, uint32_t *idom)
{
	uint32_t n = d->reached + 1;
	for (uint32_t i = 0; i < n; i++)
		idom[i] = UNDEF;
	/* The virtual root's successors: dominated by it alone, for good. */
	idom[0] = 0;
	for (size_t s = 0; s < seeds->size; s++)
		idom[d->rpo[seeds->data[s]]] = 0;
	/* Targets of more than one strong reference (by node, a bit each):
	 * after the first pass the others' dominator is their one referrer
	 * for good, so later passes look only at these. */
	uint64_t *shared = calloc(g->nnodes / 64 + 1, sizeof(*shared));
	if (!shared)
		return &pm_error_no_memory;
	struct later_edges later = { PM_VECTOR_INIT, (size_t)n * 5 / sizeof(struct index_edge),
				     true };
	bool changed_back = true;
	struct pm_error *err = NULL;
	while (changed_back) {
		if (d->pub.passes++ == PASSES_MAX) {
			err = pm_error_format(PM_ERR_CORRUPT, "the dominator tree did not "
					      "settle in %d passes", PASSES_MAX);
			break;
		}
		if (t && pm_target_interrupted(t)) {
			err = pm_error_interrupted();
			break;
		}
		/* Most heaps settle in one or two passes: the stage's units
		 * are passes, out of the next one. */
		if (t)
			pm_target_progress(t, "computing dominators", d->pub.passes - 1,
					   d->pub.passes);
		bool first = d->pub.passes == 1;
		changed_back = false;
		d->pub.listed = !first && later.ok;
		if (d->pub.listed) {
			/* The list is in index order but for each target's
			 * first referrer, listed when a second came: the rule
			 * above for the last pass needs index order, so here
			 * the last pass is one that changed nothing. */
			for (size_t k = 0; k < later.list.size; k++) {
				if (k + PM_AHEAD < later.list.size) {
					PM_PREFETCH(&idom[later.list.data[k + PM_AHEAD].u]);
					PM_PREFETCH(&idom[later.list.data[k + PM_AHEAD].v]);
				}
				uint32_t u = later.list.data[k].u, v = later.list.data[k].v;
				if (idom[v] == 0)
					continue;
				uint32_t meet = intersect(idom, u, idom[v]);
				if (meet != idom[v]) {
					idom[v] = meet;
					changed_back = true;
				}
			}
			continue;
		}
		for (uint32_t u = 1; u < n; u++) {
			if (first)
				first_pass_prefetch(g, d, shared, idom, u, n);
			uint32_t node = d->node_at[u];
			for (uint32_t e = g->edge_start[node]; e < g->edge_start[node + 1]; e++) {
				uint32_t target = g->edge_target[e];
				bool is_shared = (shared[target / 64] >> (target % 64)) & 1;
				if (!first && !is_shared)
					continue;
				if (!strong(g, e))
					continue;
				uint32_t v = d->rpo[target];
				if (v == UNDEF || idom[v] == 0 || v == u)
					continue;
				if (idom[v] == UNDEF) {
					idom[v] = u;
					changed_back |= v < u;
					continue;
				}
				if (first) {
					if (!is_shared) {
						shared[target / 64] |= UINT64_C(1) << (target % 64);
						/* The first referrer: idom[v] is
						 * still the one it set. */
						later_add(&later, idom[v], v);
					}
					later_add(&later, u, v);
				}
				changed_back |= narrow(idom, u, v);
			}
		}
	}
	index_edge_list_deinit(&later.list);
	free(shared);
	return err;
}

uint64_t pm_retained_wide_at(const struct pm_dominators *d, uint32_t i)
{
	uint64_t key = i;
	const uint64_t *wide = pm_wide_retained_map_search(
		(struct pm_wide_retained_map *)&d->retained_wide, &key);
	return wide ? *wide : PM_RETAINED_WIDE;
}

/* Adds bytes to index i's retained bytes; false when out of memory. */
static inline bool retained_add(struct pm_dominators *d, uint32_t i, uint64_t bytes)
{
	uint32_t low = d->retained_low[i];
	/* The common case first, inline: below 4 GiB before and after. */
	if (low != PM_RETAINED_WIDE && bytes < PM_RETAINED_WIDE - low) {
		d->retained_low[i] = low + (uint32_t)bytes;
		return true;
	}
	uint64_t sum = pm_retained_at(d, i) + bytes;
	if (sum < PM_RETAINED_WIDE) {
		d->retained_low[i] = (uint32_t)sum;
		return true;
	}
	uint64_t key = i;
	bool fresh;
	uint64_t *wide = pm_wide_retained_map_insert(&d->retained_wide, &key, &fresh);
	if (!wide)
		return false;
	*wide = sum;
	d->retained_low[i] = PM_RETAINED_WIDE;
	return true;
}

/* Own bytes (allocation and owned buffers) of every index, then summed
 * up the tree: retained bytes and counts. */
static struct pm_error *retained_sums(const struct pm_graph *g, struct dominators *d,
				      const uint32_t *idom)
{
	const struct pm_cpython_heap *heap = g->heap;
	uint32_t n = d->reached + 1;
	memset(d->pub.retained_low, 0, (size_t)n * sizeof(*d->pub.retained_low));
	/* The parents (every index some index's dominator), ranked: counts
	 * are kept for them alone, and summed there (1 for each index
	 * itself, but the virtual root). */
	size_t words = (size_t)n / 64 + 1;
	uint64_t *parent_bits = d->pub.parent_bits = calloc(words, sizeof(*parent_bits));
	uint32_t *parent_rank = d->pub.parent_rank = malloc(words * sizeof(*parent_rank));
	if (!parent_bits || !parent_rank)
		return &pm_error_no_memory;
	for (uint32_t i = 1; i < n; i++) {
		if (i + PM_AHEAD < n)
			PM_PREFETCH_W(&parent_bits[idom[i + PM_AHEAD] / 64]);
		parent_bits[idom[i] / 64] |= UINT64_C(1) << (idom[i] % 64);
	}
	uint32_t parents = 0;
	for (size_t w = 0; w < words; w++) {
		parent_rank[w] = parents;
		parents += pm_popcount64(parent_bits[w]);
	}
	uint32_t *parent_count = d->pub.parent_count =
		malloc((parents ? parents : 1) * sizeof(*parent_count));
	if (!parent_count)
		return &pm_error_no_memory;
	for (uint32_t k = 0; k < parents; k++)
		parent_count[k] = 1;
	if (parents && (parent_bits[0] & 1))
		parent_count[0] = 0;        /* the virtual root: rank 0 */
	bool ok = true;
	/* In node order: the allocations are read in address order. */
	for (uint32_t v = 0; v < g->nnodes; v++) {
		if (v + PM_AHEAD < g->nnodes && d->rpo[v + PM_AHEAD] != UNDEF)
			PM_PREFETCH_W(&d->pub.retained_low[d->rpo[v + PM_AHEAD]]);
		if (d->rpo[v] != UNDEF)
			ok &= retained_add(&d->pub, d->rpo[v], pm_graph_node_size(g, v));
	}
	struct pm_node_hints *hints = calloc(1, sizeof(*hints));
	if (!hints)
		return &pm_error_no_memory;
	for (size_t a = 0; heap->owners && a < heap->nallocs; a++) {
		if (!heap->owners[a])
			continue;
		uint32_t owner = pm_graph_heap_node_hinted(g, heap->owners[a], hints);
		if (owner != PM_NODE_NONE && d->rpo[owner] != UNDEF)
			ok &= retained_add(&d->pub, d->rpo[owner], heap->allocs[a].size);
	}
	for (uint32_t i = n; i-- > 1;) {
		if (i > PM_AHEAD) {
			uint32_t p = idom[i - PM_AHEAD];
			PM_PREFETCH_W(&d->pub.retained_low[p]);
			PM_PREFETCH(&parent_bits[p / 64]);
			PM_PREFETCH(&parent_rank[p / 64]);
		}
		uint32_t low = d->pub.retained_low[i];
		ok &= retained_add(&d->pub, idom[i], low != PM_RETAINED_WIDE ? low :
				   pm_retained_at(&d->pub, i));
		uint32_t p = idom[i];
		parent_count[parent_rank[p / 64] +
			     pm_popcount64(parent_bits[p / 64] & ((UINT64_C(1) << (p % 64)) - 1))] +=
			pm_retained_count_at(&d->pub, i);
	}
	free(hints);
	d->pub.reached_bytes = pm_retained_at(&d->pub, 0);
	return ok ? NULL : &pm_error_no_memory;
}

/* A node asked for by pm_own_bytes: its address, its place in the answer. */
struct own_slot {
	uint64_t addr;
	size_t k;
};

static int own_slot_compare(const void *a, const void *b)
{
	const struct own_slot *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

struct pm_error *pm_own_bytes(const struct pm_graph *g, const uint32_t *nodes, size_t n,
			      uint64_t *own)
{
	const struct pm_cpython_heap *heap = g->heap;
	struct own_slot *slots = malloc((n ? n : 1) * sizeof(*slots));
	if (!slots)
		return &pm_error_no_memory;
	/* An allocation counts for the node whose object is at exactly its
	 * owner's address, as in retained_sums (a static node owns none). */
	size_t m = 0;
	for (size_t k = 0; k < n; k++) {
		own[k] = pm_graph_node_size(g, nodes[k]);
		if (nodes[k] < g->nheap)
			slots[m++] = (struct own_slot){ pm_graph_node_addr(g, nodes[k]), k };
	}
	qsort(slots, m, sizeof(*slots), own_slot_compare);
	for (size_t a = 0; m && heap->owners && a < heap->nallocs; a++) {
		uint64_t owner = heap->owners[a];
		if (owner < slots[0].addr || owner > slots[m - 1].addr)
			continue;
		size_t lo = 0, hi = m;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (slots[mid].addr < owner)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < m && slots[lo].addr == owner; lo++)
			own[slots[lo].k] += heap->allocs[a].size;
	}
	free(slots);
	return NULL;
}

static void dominators_destroy(void *p)
{
	struct dominators *d = p;
	if (!d)
		return;
	free(d->rpo);
	free(d->node_at);
	free(d->pub.idom);
	free(d->pub.retained_low);
	pm_wide_retained_map_deinit(&d->pub.retained_wide);
	free(d->pub.parent_bits);
	free(d->pub.parent_rank);
	free(d->pub.parent_count);
	free(d);
}

static struct pm_error *dominators_build(struct pm_target *t, const struct pm_graph *g,
					 struct dominators *d)
{
	struct u32_list seeds = PM_VECTOR_INIT, post = PM_VECTOR_INIT;
	/* The seeds' counts (one per node) become rpo, in the same pages. */
	struct pm_error *err = seeds_collect(t, g, &seeds, &d->rpo);
	/* Every node at most once, and a slot for the root (post turns into
	 * node_at): no growth, and no doubling's peak. */
	if (!err && !u32_list_reserve(&post, (size_t)g->nnodes + 1))
		err = &pm_error_no_memory;
	if (!err)
		err = postorder(t, g, &seeds, &post);
	if (!err && !d->rpo)
		err = &pm_error_no_memory;
	if (err) {
		u32_list_deinit(&seeds);
		u32_list_deinit(&post);
		return err;
	}
	/* Reverse postorder: the last finished comes first, after the root. */
	d->reached = (uint32_t)post.size;
	memset(d->rpo, 0xff, (g->nnodes ? g->nnodes : 1) * sizeof(*d->rpo));
	for (uint32_t k = 0; k < d->reached; k++) {
		if (k + PM_AHEAD < d->reached)
			PM_PREFETCH_W(&d->rpo[post.data[k + PM_AHEAD]]);
		d->rpo[post.data[k]] = d->reached - k;
	}
	/* node_at is the postorder reversed, after the root's slot: made in
	 * place, in order, in post's array. */
	uint32_t *order = post.data;
	for (uint32_t lo = 0, hi = d->reached; lo + 1 < hi; lo++, hi--) {
		uint32_t swap = order[lo];
		order[lo] = order[hi - 1];
		order[hi - 1] = swap;
	}
	memmove(order + 1, order, (size_t)d->reached * sizeof(*order));
	order[0] = PM_NODE_NONE;
	d->node_at = order;
	post = (struct u32_list)PM_VECTOR_INIT;
	uint32_t n = d->reached + 1;
	d->pub.idom = malloc((size_t)n * sizeof(*d->pub.idom));
	if (!d->pub.idom) {
		u32_list_deinit(&seeds);
		return &pm_error_no_memory;
	}
	err = immediate_dominators(t, g, d, &seeds, d->pub.idom);
	u32_list_deinit(&seeds);
	if (err)
		return err;
	d->pub.retained_low = malloc((size_t)n * sizeof(*d->pub.retained_low));
	if (!d->pub.retained_low)
		return &pm_error_no_memory;
	err = retained_sums(g, d, d->pub.idom);
	if (err)
		return err;
	d->pub.reached = d->reached;
	d->pub.rpo = d->rpo;
	d->pub.node_at = d->node_at;
	for (uint32_t v = 0; v < g->nnodes; v++) {
		if (d->rpo[v] != UNDEF)
			continue;
		d->pub.unreached++;
		d->pub.unreached_bytes += pm_graph_node_size(g, v);
	}
	return NULL;
}

struct pm_error *pm_dominators_compute(struct pm_target *t, const struct pm_graph *g,
				       const struct pm_dominators **ret,
				       void (**ret_destroy)(void *))
{
	struct dominators *d = calloc(1, sizeof(*d));
	if (!d)
		return &pm_error_no_memory;
	struct pm_error *err = dominators_build(t, g, d);
	if (err) {
		dominators_destroy(d);
		return err;
	}
	*ret = &d->pub;
	*ret_destroy = dominators_destroy;
	return NULL;
}

struct pm_error *pm_dominators_get(struct pm_target *t,
				   const struct pm_dominators **ret)
{
	const struct pm_dominators *d = pm_target_cache_get(t, PM_CACHE_DOMINATORS);
	if (!d) {
		const struct pm_graph *g;
		struct pm_error *err = pm_graph_get(t, &g);
		if (err)
			return err;
		void (*destroy)(void *);
		err = pm_dominators_compute(t, g, &d, &destroy);
		if (err)
			return err;
		/* pub is the first member: the cache frees the whole. */
		pm_target_cache_set(t, PM_CACHE_DOMINATORS, (void *)d, destroy);
	}
	*ret = d;
	return NULL;
}

uint32_t pm_idom(const struct pm_dominators *d, uint32_t node)
{
	uint32_t i = d->rpo[node];
	if (i == UNDEF)
		return PM_IDOM_UNREACHED;
	return d->idom[i] ? d->node_at[d->idom[i]] : PM_IDOM_ROOT;
}

uint64_t pm_retained_bytes(const struct pm_dominators *d, const struct pm_graph *g,
			   uint32_t node)
{
	uint32_t i = d->rpo[node];
	return i == UNDEF ? pm_graph_node_size(g, node) : pm_retained_at(d, i);
}

uint32_t pm_retained_count(const struct pm_dominators *d, uint32_t node)
{
	uint32_t i = d->rpo[node];
	return i == UNDEF ? 1 : pm_retained_count_at(d, i);
}

bool pm_dominates(const struct pm_dominators *d, uint32_t a, uint32_t b)
{
	uint32_t ia = d->rpo[a], ib = d->rpo[b];
	if (ia == UNDEF || ib == UNDEF)
		return a == b;
	/* Dominators come first in reverse postorder: walk up from b while
	 * its index is above a's. */
	while (ib > ia)
		ib = d->idom[ib];
	return ib == ia;
}
