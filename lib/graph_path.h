/* How each object of the reference graph is held (graph_path.c): the
 * shortest chain of strong references from a named root, or from an object
 * held from outside the heap; and how many references to each object were
 * found, against its refcount. */
#ifndef PM_GRAPH_PATH_H
#define PM_GRAPH_PATH_H

#include "graph.h"

/* Per node one word, via: the edge it was reached by (< g->nedges), or
 * PM_VIA_ROOTS + the index of its root in g->roots, or PM_VIA_OUTSIDE
 * (held from outside: a path starts there), or PM_VIA_NONE (not held:
 * unreachable, or only weakly). Use pm_graph_path(). The references found
 * to each start held from outside are kept for its path's text; the counts
 * of every node live only while the search runs (pm_graph_incoming for a
 * report that needs them all). */
#define PM_VIA_NONE UINT32_MAX
#define PM_VIA_OUTSIDE (UINT32_MAX - 1)
PM_DEFINE_HASH_MAP(pm_node_count_map, uint64_t, uint32_t, pm_hash_u64_key, pm_u64_key_eq)
struct pm_graph_paths {
	uint32_t *via;
	uint32_t roots_base;        /* via of root i: roots_base + i (= nedges) */
	struct pm_node_count_map outside_found;   /* start node -> references found */
};

/* Computed once per target (cached in PM_CACHE_PATHS). */
struct pm_error *pm_graph_paths_get(struct pm_target *t, const struct pm_graph *g,
				    const struct pm_graph_paths **ret);

/* References found to every node (strong edges and roots): a new array. */
struct pm_error *pm_graph_incoming(const struct pm_graph *g, uint32_t **ret);

/* Refcount minus the references found (incoming[], from pm_graph_incoming):
 * > 0 is held from outside the heap by something no root names (0 for
 * immortal and static objects). */
int64_t pm_graph_outside(const struct pm_graph *g, const uint32_t *incoming, uint32_t node);

/* Is node where a path starts, held from outside (the outside report lists
 * those: the others it counts are reachable from a root too)? */
bool pm_graph_path_starts_outside(const struct pm_graph_paths *p, uint32_t node);
/* References found to such a start (0 for any other node). */
uint32_t pm_graph_path_start_found(const struct pm_graph_paths *p, uint32_t node);

uint32_t pm_graph_edge_source(const struct pm_graph *g, uint64_t edge);

struct pm_graph_step {
	uint32_t from;
	uint64_t edge;
};
PM_DEFINE_VECTOR(pm_graph_step_vector, struct pm_graph_step)

enum pm_path_start {
	PM_PATH_NONE = 0,           /* not held: unreachable, or only weakly */
	PM_PATH_ROOT,               /* start_root: an index in g->roots */
	PM_PATH_OUTSIDE,            /* start_root: the node held from outside */
};

/* The chain to node, root first, in steps (a vector of the caller's). */
struct pm_error *pm_graph_path(const struct pm_graph *g, const struct pm_graph_paths *p,
			       uint32_t node, struct pm_graph_step_vector *steps,
			       enum pm_path_start *start, uint32_t *start_root);

#endif
