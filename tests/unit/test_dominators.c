/* Unit test of lib/dominators.c: on thousands of random graphs (cycles,
 * loops entered at several points, self-references, weak and untraversed
 * stack references that keep nothing alive, objects held from outside by
 * their refcounts, retained sums above 4 GiB), the immediate dominators,
 * retained bytes and counts and pm_dominates() equal a direct computation
 * from the definition: d
 * dominates v when v is no longer reachable from the held objects once d
 * is taken away. */
#include "check.h"
#include "dominators.h"

#include "../fuzz/fuzz_rng.h"

#include <stdlib.h>
#include <string.h>

enum { NODES_MAX = 48, EDGES_MAX = 4 * NODES_MAX, GRAPHS = 3000 };

struct test_graph {
	struct pm_graph g;
	struct pm_cpython_heap heap;
	struct pm_alloc allocs[NODES_MAX];
	uint32_t node_alloc[NODES_MAX];
	uint32_t edge_start[NODES_MAX + 1];
	uint32_t edge_target[EDGES_MAX];
	uint8_t edge_kind[EDGES_MAX];
	uint32_t refcnt[NODES_MAX];     /* the truth; the graph has them compacted */
	uint8_t refcnt_low[NODES_MAX];
	uint8_t flags[NODES_MAX];
	bool held[NODES_MAX];       /* what the refcounts are made to say */
};

static bool strong_kind(uint8_t kind)
{
	return PM_EDGE_KIND(kind) != PM_EDGE_WEAK &&
	       !(PM_EDGE_KIND(kind) == PM_EDGE_STACK && !(kind & PM_EDGE_TRAVERSED));
}

static uint8_t random_kind(void)
{
	switch (rng() % 10) {
	case 0: return PM_EDGE_WEAK;
	case 1: return PM_EDGE_STACK;                       /* not strong */
	case 2: return PM_EDGE_STACK | PM_EDGE_TRAVERSED;   /* strong */
	case 3: return PM_EDGE_DICT_VALUE | PM_EDGE_TRAVERSED;
	default: return PM_EDGE_ITEM | PM_EDGE_TRAVERSED;
	}
}

/* Random shapes: sparse or dense, a chain with back edges (nested loops,
 * loops entered from outside at two points), a few static nodes at the
 * end (no allocation) and a few objects held from outside. */
static int wide_refcnts;  /* refcounts of 255 or more made */

static void make_graph(struct test_graph *tg)
{
	memset(tg, 0, sizeof(*tg));
	uint32_t n = 1 + rng() % NODES_MAX;
	uint32_t nstatic = rng() % 3 == 0 ? (uint32_t)(rng() % (n < 4 ? n : 4)) : 0;
	uint32_t shape = rng() % 3;
	uint32_t want = shape == 0 ? n : shape == 1 ? 2 * n : (uint32_t)(rng() % EDGES_MAX);
	if (want > EDGES_MAX)
		want = EDGES_MAX;
	uint32_t e = 0;
	for (uint32_t u = 0; u < n; u++) {
		tg->edge_start[u] = e;
		uint32_t mine = u + 1 == n ? want - (e < want ? e : want) :
			(uint32_t)(rng() % (2 * want / n + 2));
		for (uint32_t k = 0; k < mine && e < want; k++) {
			uint32_t v;
			if (shape == 0 && k == 0)
				v = u + 1 < n ? u + 1 : (uint32_t)(rng() % n);  /* chain */
			else
				v = (uint32_t)(rng() % n);
			tg->edge_target[e] = v;
			tg->edge_kind[e++] = random_kind();
		}
	}
	tg->edge_start[n] = e;
	uint32_t incoming[NODES_MAX] = { 0 };
	for (uint32_t u = 0; u < n - nstatic; u++)
		for (uint32_t k = tg->edge_start[u]; k < tg->edge_start[u + 1]; k++)
			if (strong_kind(tg->edge_kind[k]))
				incoming[tg->edge_target[k]]++;
	for (uint32_t u = 0; u < n; u++) {
		tg->held[u] = u >= n - nstatic || rng() % 6 == 0;
		/* Held from outside: one reference more than the heap's. */
		/* Some well above 255: pm_graph_refcnt's wide path. */
		tg->refcnt[u] = incoming[u] + (!tg->held[u] ? 0 : rng() % 8 == 0 ? 300 :
					       1 + (uint32_t)(rng() % 2));
		if (tg->refcnt[u] < PM_REFCNT_WIDE) {
			tg->refcnt_low[u] = (uint8_t)tg->refcnt[u];
		} else {
			uint64_t key = u;
			*pm_refcnt_map_insert(&tg->g.refcnt_wide, &key, NULL) = tg->refcnt[u];
			tg->refcnt_low[u] = PM_REFCNT_WIDE;
			wide_refcnts++;
		}
		tg->flags[u] = u >= n - nstatic ? PM_NODE_STATIC : 0;
	}
	/* One graph in four has allocations of up to 5 GiB: retained sums
	 * above 4 GiB take the dominators' wide path. */
	unsigned size_shift = rng() % 4 == 0 ? 27 : 4;
	for (uint32_t u = 0; u < n - nstatic; u++) {
		tg->allocs[u].addr = 0x10000 + ((uint64_t)u << 33);
		tg->allocs[u].size = (uint64_t)(1 + rng() % 40) << size_shift;
		tg->node_alloc[u] = u;
	}
	tg->heap.nallocs = n - nstatic;
	tg->heap.allocs = tg->allocs;
	tg->g.heap = &tg->heap;
	tg->g.nnodes = n;
	tg->g.nheap = n - nstatic;
	tg->g.node_alloc = tg->node_alloc;
	tg->g.edge_start = tg->edge_start;
	tg->g.edge_target = tg->edge_target;
	tg->g.edge_kind = tg->edge_kind;
	tg->g.nedges = e;
	tg->g.refcnt_low = tg->refcnt_low;
	tg->g.flags = tg->flags;
}

/* What the held objects reach over strong references without `without`
 * (NODES_MAX: nothing taken away). */
static void reach(const struct test_graph *tg, uint32_t without, bool *seen)
{
	uint32_t n = tg->g.nnodes, stack[NODES_MAX], top = 0;
	memset(seen, 0, n * sizeof(*seen));
	for (uint32_t u = 0; u < n; u++)
		if (tg->held[u] && u != without) {
			seen[u] = true;
			stack[top++] = u;
		}
	while (top) {
		uint32_t u = stack[--top];
		for (uint32_t k = tg->edge_start[u]; k < tg->edge_start[u + 1]; k++) {
			uint32_t v = tg->edge_target[k];
			if (strong_kind(tg->edge_kind[k]) && v != without && !seen[v]) {
				seen[v] = true;
				stack[top++] = v;
			}
		}
	}
}

static int wide_sums;    /* retained sums of 4 GiB or more checked */
/* Graphs whose tree took 3 passes or more: passes after the first run
 * along the list of references to shared targets. */
static int many_passes, listed, unlisted;

/* Returns false at the first difference (after CHECK prints it). */
static bool check_graph(int which, const struct test_graph *tg)
{
	const struct pm_dominators *d;
	void (*destroy)(void *);
	struct pm_error *err = pm_dominators_compute(NULL, &tg->g, &d, &destroy);
	if (err) {
		CHECK(0, "graph %d: %s", which, err->message);
		return false;
	}
	many_passes += d->passes >= 3;
	listed += d->passes >= 2 && d->listed;
	unlisted += d->passes >= 2 && !d->listed;
	uint32_t n = tg->g.nnodes;
	bool reached[NODES_MAX], without[NODES_MAX][NODES_MAX];
	/* dom[a][b]: a dominates b (a == b included, for reached b). */
	bool dom[NODES_MAX][NODES_MAX];
	reach(tg, NODES_MAX, reached);
	for (uint32_t a = 0; a < n; a++)
		reach(tg, a, without[a]);
	for (uint32_t a = 0; a < n; a++)
		for (uint32_t b = 0; b < n; b++)
			dom[a][b] = reached[a] && reached[b] && (a == b || !without[a][b]);
	bool ok = true;
	uint32_t unreached = 0;
	for (uint32_t v = 0; v < n && ok; v++) {
		if (!reached[v]) {
			unreached++;
			ok = pm_idom(d, v) == PM_IDOM_UNREACHED && pm_retained_count(d, v) == 1;
			if (!ok)
				CHECK(ok, "graph %d: node %u, which nothing holds, is not unreached",
				      which, v);
			continue;
		}
		/* The immediate dominator: the strict dominator that all the
		 * others dominate. */
		uint32_t idom = PM_IDOM_ROOT;
		for (uint32_t a = 0; a < n; a++)
			if (a != v && dom[a][v] && (idom == PM_IDOM_ROOT || dom[idom][a]))
				idom = a;
		uint64_t bytes = 0;
		uint32_t count = 0;
		for (uint32_t w = 0; w < n; w++)
			if (dom[v][w]) {
				bytes += pm_graph_node_size(&tg->g, w);
				count++;
			}
		wide_sums += bytes >= UINT64_C(1) << 32;
		ok = pm_idom(d, v) == idom;
		if (!ok)
			CHECK(ok, "graph %d: idom of %u is %u (expected %u)", which, v,
			      pm_idom(d, v), idom);
		ok = ok && pm_retained_bytes(d, &tg->g, v) == bytes &&
		     pm_retained_count(d, v) == count;
		if (!ok)
			CHECK(ok, "graph %d: node %u retains %llu bytes in %u objects "
			      "(expected %llu in %u)", which, v,
			      (unsigned long long)pm_retained_bytes(d, &tg->g, v),
			      pm_retained_count(d, v), (unsigned long long)bytes, count);
		for (uint32_t a = 0; a < n && ok; a++) {
			ok = pm_dominates(d, a, v) == (dom[a][v] || a == v);
			if (!ok)
				CHECK(ok, "graph %d: pm_dominates(%u, %u) is %d", which, a, v,
				      !ok == !dom[a][v]);
		}
	}
	if (ok) {
		ok = d->unreached == unreached;
		if (!ok)
			CHECK(ok, "graph %d: %u unreached (expected %u)", which, d->unreached,
			      unreached);
	}
	destroy((void *)d);
	return ok;
}

int main(void)
{
	static struct test_graph tg;
	int passed = 0;
	for (int i = 0; i < GRAPHS; i++) {
		make_graph(&tg);
		bool ok = check_graph(i, &tg);
		pm_refcnt_map_deinit(&tg.g.refcnt_wide);
		if (!ok)
			break;
		passed++;
	}
	CHECK(passed == GRAPHS, "%d of %d random graphs: idom, retained bytes and counts, "
	      "dominates() and the unreached equal the definition's", passed, GRAPHS);
	CHECK(many_passes > 10, "%d graphs took 3 passes or more", many_passes);
	CHECK(listed > 10 && unlisted > 10, "of the graphs that took 2 passes or more, %d "
	      "ran them along the list of shared targets' references, %d (too many "
	      "for the list) along the edges", listed, unlisted);
	CHECK(wide_refcnts > 1000, "%d refcounts above 255 (the graph's map)", wide_refcnts);
	CHECK(wide_sums > 1000, "%d of the retained sums checked are 4 GiB or more", wide_sums);
	return check_exit_status();
}
