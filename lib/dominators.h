/* Retained sizes (dominators.c): the dominator tree of the reference graph
 * from one virtual root that points at every object held from outside the
 * heap (more references than heap objects hold); an object's retained size
 * is its own allocation,
 * the buffers it owns, and everything it dominates (what would be freed if
 * it went away). Objects no root reaches (garbage, or held only weakly)
 * form their own group. */
#ifndef PM_DOMINATORS_H
#define PM_DOMINATORS_H

#include "bits.h"
#include "graph.h"

/* pm_idom() of a node the virtual root dominates directly, and of a node
 * no root reaches. */
#define PM_IDOM_ROOT (UINT32_MAX - 1)
#define PM_IDOM_UNREACHED UINT32_MAX

/* Arrays are in reverse-postorder index space; index 0 is the virtual
 * root, 1..reached the nodes it reaches. Use the functions below. */
PM_DEFINE_HASH_MAP(pm_wide_retained_map, uint64_t, uint64_t, pm_hash_u64_key, pm_u64_key_eq)
struct pm_dominators {
	uint32_t *idom;             /* by index: the immediate dominator's index */
	/* By index: own bytes + what it dominates (pm_retained_at): below 4
	 * GiB here, else PM_RETAINED_WIDE here and the value in the map (the
	 * few objects near the root of a big heap; 4 bytes per object saved). */
	uint32_t *retained_low;
	struct pm_wide_retained_map retained_wide;
	/* By index: objects retained, itself too (pm_retained_count_at). A
	 * leaf of the tree (two objects in three) retains only itself: the
	 * count is kept only for the others, the parents, at an index's rank
	 * among them (2.5 bytes per object saved). */
	uint64_t *parent_bits;      /* a bit per index: some index's dominator */
	uint32_t *parent_rank;      /* per 64 indexes: the parents before them */
	uint32_t *parent_count;
	uint64_t reached_bytes, unreached_bytes;
	uint32_t reached, unreached;
	uint32_t passes;            /* iterations until the tree was stable */
	bool listed;                /* passes after the first ran along the list
				     * of references to shared targets */
	const uint32_t *rpo;        /* node -> index, UINT32_MAX if unreached */
	const uint32_t *node_at;    /* index -> node */
};

#define PM_RETAINED_WIDE UINT32_MAX

/* The retained bytes of an index at or above 4 GiB (from the map). */
uint64_t pm_retained_wide_at(const struct pm_dominators *d, uint32_t i);

/* Retained bytes of index i (index space, as the arrays). Inline: the
 * reports' passes over every index call it for each. */
static inline uint64_t pm_retained_at(const struct pm_dominators *d, uint32_t i)
{
	uint32_t low = d->retained_low[i];
	return low != PM_RETAINED_WIDE ? low : pm_retained_wide_at(d, i);
}

/* Objects index i retains, itself included (the virtual root, 0: all). */
static inline uint32_t pm_retained_count_at(const struct pm_dominators *d, uint32_t i)
{
	uint64_t word = d->parent_bits[i / 64];
	if (!((word >> (i % 64)) & 1))
		return i ? 1 : 0;
	return d->parent_count[d->parent_rank[i / 64] +
			       pm_popcount64(word & ((UINT64_C(1) << (i % 64)) - 1))];
}

/* Computed once per target (cached in PM_CACHE_DOMINATORS). */
struct pm_error *pm_dominators_get(struct pm_target *t,
				   const struct pm_dominators **ret);

/* The same for any graph, uncached (t may be NULL: no interruption
 * checks); *ret is freed by (*ret_destroy)(*ret). For tests. */
struct pm_error *pm_dominators_compute(struct pm_target *t, const struct pm_graph *g,
				       const struct pm_dominators **ret,
				       void (**ret_destroy)(void *));

/* The own bytes of each of nodes[0, n) into own[]: its allocation and the
 * buffers the analysis says it owns, as the tree counts them (its retained
 * bytes less its children's). One pass over the owners: for a few nodes,
 * no pass over the tree. */
struct pm_error *pm_own_bytes(const struct pm_graph *g, const uint32_t *nodes, size_t n,
			      uint64_t *own);

/* The node's immediate dominator: a node, PM_IDOM_ROOT or PM_IDOM_UNREACHED. */
uint32_t pm_idom(const struct pm_dominators *d, uint32_t node);
/* Bytes that would be freed with the node (its own when unreached). */
uint64_t pm_retained_bytes(const struct pm_dominators *d, const struct pm_graph *g,
			   uint32_t node);
/* Objects that would be freed with it (itself included). */
uint32_t pm_retained_count(const struct pm_dominators *d, uint32_t node);
/* Does a dominate b (a == b included)? */
bool pm_dominates(const struct pm_dominators *d, uint32_t a, uint32_t b);

#endif
