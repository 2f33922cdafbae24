/* How each object is held: one breadth-first search over the strong edges
 * from the named roots (sys.modules first, so a path reads as a user would
 * write it), then from the objects held from outside the heap that no root
 * explains; every object's shortest chain back to where it is held. Also
 * the count behind "held from outside": an object's refcount minus every
 * reference found to it (from heap objects and from roots). */
#include "graph_path.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void paths_destroy(void *p)
{
	struct pm_graph_paths *paths = p;
	if (!paths)
		return;
	free(paths->via);
	pm_node_count_map_deinit(&paths->outside_found);
	free(paths);
}

struct pm_error *pm_graph_incoming(const struct pm_graph *g, uint32_t **ret)
{
	uint32_t *in = calloc(g->nnodes ? g->nnodes : 1, sizeof(*in));
	if (!in)
		return &pm_error_no_memory;
	for (uint64_t e = 0; e < g->nedges; e++)
		if (PM_EDGE_KIND(g->edge_kind[e]) != PM_EDGE_WEAK &&
		    in[g->edge_target[e]] < UINT32_MAX)
			in[g->edge_target[e]]++;
	for (size_t i = 0; i < g->roots.size; i++)
		if (in[g->roots.data[i].node] < UINT32_MAX)
			in[g->roots.data[i].node]++;
	*ret = in;
	return NULL;
}

int64_t pm_graph_outside(const struct pm_graph *g, const uint32_t *incoming, uint32_t node)
{
	if (g->flags[node] & (PM_NODE_IMMORTAL | PM_NODE_STATIC))
		return 0;
	return (int64_t)pm_graph_refcnt(g, node) - (int64_t)incoming[node];
}

bool pm_graph_path_starts_outside(const struct pm_graph_paths *p, uint32_t node)
{
	return p->via[node] == PM_VIA_OUTSIDE;
}

uint32_t pm_graph_path_start_found(const struct pm_graph_paths *p, uint32_t node)
{
	uint64_t key = node;
	const uint32_t *found = pm_node_count_map_search(
		(struct pm_node_count_map *)&p->outside_found, &key);
	return found ? *found : 0;
}

/* Returns the new tail of the queue. */
static size_t bfs(const struct pm_graph *g, struct pm_graph_paths *p, uint32_t *queue,
		  size_t head, size_t tail)
{
	while (head < tail) {
		uint32_t n = queue[head++];
		for (uint32_t e = g->edge_start[n]; e < g->edge_start[n + 1]; e++) {
			uint32_t m = g->edge_target[e];
			if (PM_EDGE_KIND(g->edge_kind[e]) == PM_EDGE_WEAK ||
			    p->via[m] != PM_VIA_NONE)
				continue;
			p->via[m] = e;
			queue[tail++] = m;
		}
	}
	return tail;
}

struct pm_error *pm_graph_paths_get(struct pm_target *t, const struct pm_graph *g,
				    const struct pm_graph_paths **ret)
{
	struct pm_graph_paths *p = pm_target_cache_get(t, PM_CACHE_PATHS);
	if (p) {
		*ret = p;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	size_t n = g->nnodes ? g->nnodes : 1;
	if (p && (uint64_t)g->nedges + g->roots.size >= PM_VIA_OUTSIDE) {
		free(p);
		return pm_error_format(PM_ERR_UNSUPPORTED, "%" PRIu64 " references and %zu "
				       "roots: too many to name paths (at most %u)",
				       g->nedges, g->roots.size, PM_VIA_OUTSIDE - 1);
	}
	uint32_t *queue = malloc(n * sizeof(*queue)), *incoming = NULL;
	if (!p || !queue || !(p->via = malloc(n * sizeof(*p->via)))) {
		free(queue);
		paths_destroy(p);
		return &pm_error_no_memory;
	}
	memset(p->via, 0xff, n * sizeof(*p->via));   /* PM_VIA_NONE */
	p->roots_base = (uint32_t)g->nedges;
	struct pm_error *err = pm_graph_incoming(g, &incoming);
	if (err) {
		free(queue);
		paths_destroy(p);
		return err;
	}
	/* The interpreter's modules, sys and builtins first, then the
	 * threads' frames, then the words found by scanning (static data,
	 * stacks, C memory): a path from sys.modules reads better than a
	 * shorter one from a frame's globals or a stray pointer in a
	 * library's data. */
	size_t head = 0, tail = 0;
	for (int tier = 0; tier < 3; tier++) {
		for (size_t i = 0; i < g->roots.size; i++) {
			const struct pm_graph_root *r = &g->roots.data[i];
			int its_tier = r->kind <= PM_ROOT_BUILTINS ? 0 :
				r->kind <= PM_ROOT_FRAME_LOCAL ? 1 : 2;
			if (p->via[r->node] != PM_VIA_NONE || its_tier != tier)
				continue;
			p->via[r->node] = p->roots_base + (uint32_t)i;
			queue[tail++] = r->node;
		}
		tail = bfs(g, p, queue, head, tail);
		head = tail;
	}
	/* What no root reaches but an unexplained outside reference holds. */
	for (uint32_t m = 0; m < g->nnodes && !err; m++) {
		if (p->via[m] != PM_VIA_NONE || pm_graph_outside(g, incoming, m) <= 0)
			continue;
		p->via[m] = PM_VIA_OUTSIDE;
		queue[tail++] = m;
		uint64_t key = m;
		bool fresh;
		uint32_t *found = pm_node_count_map_insert(&p->outside_found, &key, &fresh);
		if (found)
			*found = incoming[m];
		else
			err = &pm_error_no_memory;
	}
	free(incoming);
	if (!err)
		bfs(g, p, queue, head, tail);
	free(queue);
	if (err) {
		paths_destroy(p);
		return err;
	}
	pm_target_cache_set(t, PM_CACHE_PATHS, p, paths_destroy);
	*ret = p;
	return NULL;
}

/* The source node of edge e (the CSR has no back-pointer). */
uint32_t pm_graph_edge_source(const struct pm_graph *g, uint64_t e)
{
	uint32_t lo = 0, hi = g->nnodes;
	while (lo + 1 < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (g->edge_start[mid] <= e)
			lo = mid;
		else
			hi = mid;
	}
	/* The last node starting at or before e: nodes after it start
	 * beyond e, so e is in its range (nodes without edges share starts). */
	return lo;
}

struct pm_error *pm_graph_path(const struct pm_graph *g, const struct pm_graph_paths *p,
			       uint32_t node, struct pm_graph_step_vector *steps,
			       enum pm_path_start *start, uint32_t *start_root)
{
	steps->size = 0;
	*start = PM_PATH_NONE;
	uint32_t cur = node;
	for (uint32_t hops = 0; hops <= g->nnodes; hops++) {
		uint32_t via = p->via[cur];
		if (via == PM_VIA_NONE)
			break;
		if (via == PM_VIA_OUTSIDE) {
			*start = PM_PATH_OUTSIDE;
			*start_root = cur;
			break;
		}
		if (via >= p->roots_base) {
			*start = PM_PATH_ROOT;
			*start_root = via - p->roots_base;
			break;
		}
		uint64_t e = via;
		struct pm_graph_step step = { pm_graph_edge_source(g, e), e };
		if (!pm_graph_step_vector_append(steps, &step))
			return &pm_error_no_memory;
		cur = step.from;
	}
	/* Root first. */
	for (size_t i = 0; i < steps->size / 2; i++) {
		struct pm_graph_step s = steps->data[i];
		steps->data[i] = steps->data[steps->size - 1 - i];
		steps->data[steps->size - 1 - i] = s;
	}
	return NULL;
}
