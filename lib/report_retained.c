/* Reports of retained sizes (the dominator tree, dominators.h):
 * "retained" (the objects that hold the most, each named by its path; or
 * one object's retained size and what it dominates), "suspects" (objects
 * that retain a large share of the heap, in plain words) and the rows of
 * "summary --by retainer" (every allocation under the object that holds
 * it, below the interpreter's namespaces). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dominators.h"
#include "graph_path.h"
#include "prefetch.h"
#include "report.h"
#include "report_retained.h"

enum {
	LIST_DEFAULT = 25,
	SUSPECT_TYPES = 3,          /* the type mix shown for a suspect */
	PATH_TEXT_MAX = 127,
};
/* A node is left out of the "retained" list (and a suspect looked for
 * below it) when one object it dominates holds this share of it: the
 * module that holds a cache is not the leak, the cache is. */
#define DOMINANT_CHILD 0.9
#define SUSPECT_SHARE_DEFAULT 10.0

struct retained_view {
	const struct pm_graph *g;
	const struct pm_graph_paths *p;
	const struct pm_dominators *d;
	/* By index, a bit: a child retains DOMINANT_CHILD of it or more. */
	uint64_t *has_dominant_child;
	uint64_t heap_bytes;        /* every in-use allocation (summary's TOTAL) */
	uint64_t *ns;               /* by node, a bit: a namespace (namespaces()) */
};

static bool is_namespace(const uint64_t *ns, uint32_t node)
{
	return (ns[node / 64] >> (node % 64)) & 1;
}

static void namespace_mark(uint64_t *ns, uint32_t node)
{
	ns[node / 64] |= UINT64_C(1) << (node % 64);
}

/* The interpreter's namespaces: modules, classes, their dicts and the
 * root dicts (sys.modules, sys's and builtins'). A retainer is the first
 * object below them. */
static uint64_t *namespaces(const struct pm_graph *g)
{
	const struct pm_cpython_heap *heap = g->heap;
	uint64_t *ns = calloc(g->nnodes / 64 + 1, sizeof(*ns));
	/* The categories of classes (the instances of metatypes: type,
	 * ABCMeta, EnumMeta, ...: their kind is TK_TYPE) and of modules,
	 * decided once per category rather than per node. */
	uint8_t *namespace_category = calloc(heap->ncategories + 1, 1);
	if (!ns || !namespace_category) {
		free(ns);
		free(namespace_category);
		return NULL;
	}
	for (size_t i = 0; i < heap->ntype_table; i++)
		if (heap->type_table[i].kind == TK_TYPE &&
		    heap->type_table[i].category < heap->ncategories)
			namespace_category[heap->type_table[i].category] = 1;
	for (size_t c = 0; c < heap->ncategories; c++)
		if (!strcmp(heap->categories[c].kind, "module"))
			namespace_category[c] = 1;
	for (uint32_t n = 0; n < g->nheap; n++) {
		uint32_t c = heap->allocs[g->node_alloc[n]].category;
		if (c < heap->ncategories && namespace_category[c])
			namespace_mark(ns, n);
	}
	free(namespace_category);
	/* Every type object the analysis knows that is a node, whatever its
	 * metatype: one lookup per type, not a search per node. */
	for (size_t i = 0; i < heap->ntype_table; i++) {
		uint32_t n = pm_graph_node_at(g, heap->type_table[i].addr);
		if (n != PM_NODE_NONE && n < g->nheap)
			namespace_mark(ns, n);
	}
	for (uint32_t n = 0; n < g->nheap; n++) {
		if (!is_namespace(ns, n))
			continue;
		for (uint32_t e = g->edge_start[n]; e < g->edge_start[n + 1]; e++)
			if (PM_EDGE_KIND(g->edge_kind[e]) == PM_EDGE_DICT)
				namespace_mark(ns, g->edge_target[e]);
	}
	for (size_t i = 0; i < g->roots.size; i++)
		if (g->roots.data[i].kind <= PM_ROOT_BUILTINS)
			namespace_mark(ns, g->roots.data[i].node);
	return ns;
}

static void view_deinit(struct retained_view *v)
{
	free(v->has_dominant_child);
	free(v->ns);
}

static struct pm_error *view_init(struct pm_target *t, struct retained_view *v)
{
	memset(v, 0, sizeof(*v));
	struct pm_error *err = pm_graph_get(t, &v->g);
	if (!err)
		err = pm_graph_paths_get(t, v->g, &v->p);
	if (!err)
		err = pm_dominators_get(t, &v->d);
	if (err)
		return err;
	const struct pm_dominators *d = v->d;
	uint32_t n = d->reached + 1;
	v->has_dominant_child = calloc((size_t)n / 64 + 1, sizeof(uint64_t));
	v->ns = namespaces(v->g);
	if (!v->has_dominant_child || !v->ns) {
		view_deinit(v);
		return &pm_error_no_memory;
	}
	for (uint32_t i = 1; i < n; i++) {
		if (i + PM_AHEAD < n) {
			uint32_t ahead = d->idom[i + PM_AHEAD];
			PM_PREFETCH(&d->retained_low[ahead]);
			PM_PREFETCH_W(&v->has_dominant_child[ahead / 64]);
		}
		uint32_t parent = d->idom[i];
		if ((double)pm_retained_at(d, i) >= DOMINANT_CHILD * (double)pm_retained_at(d, parent))
			v->has_dominant_child[parent / 64] |= UINT64_C(1) << (parent % 64);
	}
	const struct pm_cpython_heap *heap = v->g->heap;
	/* Every allocation is in one category: their bytes, not another
	 * pass over the allocations. */
	for (size_t c = 0; c < heap->ncategories; c++)
		v->heap_bytes += heap->categories[c].bytes;
	return NULL;
}

/* An accumulation point: no single object it dominates holds most of it. */
static bool accumulates(const struct retained_view *v, uint32_t i)
{
	return !((v->has_dominant_child[i / 64] >> (i % 64)) & 1);
}

static void path_of(const struct retained_view *v, uint32_t node, struct pm_strbuf *out)
{
	struct pm_graph_step_vector steps = PM_VECTOR_INIT;
	enum pm_path_start start;
	uint32_t root = 0;
	struct pm_error *err = pm_graph_path(v->g, v->p, node, &steps, &start, &root);
	if (err) {
		pm_error_destroy(err);
		pm_strbuf_append(out, "?");
	} else if (start == PM_PATH_ROOT) {
		pm_graph_root_text(v->g, &v->g->roots.data[root], out);
	} else if (start == PM_PATH_OUTSIDE) {
		pm_strbuf_printf(out, "(held from outside the heap: %s 0x%" PRIx64 ")",
				 pm_graph_node_type(v->g, root), pm_graph_node_addr(v->g, root));
	} else {
		pm_strbuf_append(out, "(not held)");
	}
	for (size_t k = 0; !err && k < steps.size; k++)
		pm_graph_edge_text(v->g, steps.data[k].from, steps.data[k].edge, out);
	pm_graph_step_vector_deinit(&steps);
}

static double percent(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* The largest candidates (accumulation points below the namespaces, of the
 * type asked for; with all, every object), selected without sorting every
 * node: a small array kept in order. A module or its dict holds what its
 * code keeps, which is not an answer: the cache in it is. */
static size_t top_candidates(const struct retained_view *v, const char *type, bool all,
			     uint32_t *best, size_t want)
{
	size_t have = 0;
	const struct pm_dominators *d = v->d;
	for (uint32_t i = 1; i <= d->reached; i++) {
		/* The list's bound first: one read in order, which rules out
		 * most indexes before the filters' scattered reads. */
		if (have == want && pm_retained_at(d, i) <= pm_retained_at(d, best[want - 1]))
			continue;
		if ((!all && (!accumulates(v, i) || is_namespace(v->ns, d->node_at[i]))) ||
		    (type && strcmp(pm_graph_node_type(v->g, d->node_at[i]), type)))
			continue;
		size_t k = have < want ? have++ : want - 1;
		while (k > 0 && pm_retained_at(d, best[k - 1]) < pm_retained_at(d, i)) {
			best[k] = best[k - 1];
			k--;
		}
		best[k] = i;
	}
	return have;
}

/* The own bytes (allocation and buffers) of the objects at the indices
 * rows[0, n), as the tree counts them (pm_own_bytes). */
static struct pm_error *own_of_rows(const struct retained_view *v, const uint32_t *rows,
				    size_t n, uint64_t *own)
{
	uint32_t *nodes = malloc((n ? n : 1) * sizeof(*nodes));
	if (!nodes)
		return &pm_error_no_memory;
	for (size_t k = 0; k < n; k++)
		nodes[k] = v->d->node_at[rows[k]];
	struct pm_error *err = pm_own_bytes(v->g, nodes, n, own);
	free(nodes);
	return err;
}

static void object_json(const struct retained_view *v, uint32_t i, uint64_t own,
			struct pm_strbuf *out)
{
	uint32_t node = v->d->node_at[i];
	struct pm_strbuf path;
	pm_strbuf_init(&path);
	path_of(v, node, &path);
	pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"type\": ", pm_graph_node_addr(v->g, node));
	pm_strbuf_json_string(out, pm_graph_node_type(v->g, node));
	pm_strbuf_printf(out, ", \"own\": %" PRIu64 ", \"retained\": %" PRIu64
			 ", \"count\": %u, \"path\": ", own, pm_retained_at(v->d, i),
			 pm_retained_count_at(v->d, i));
	pm_strbuf_json_string(out, path.data ? path.data : "");
	pm_strbuf_append(out, "}");
	pm_strbuf_deinit(&path);
}

/* retained ADDR: one object's retained size and the objects it dominates. */
static struct pm_error *retained_one(const struct retained_view *v,
				     const struct pm_report_args *args, struct pm_strbuf *out)
{
	uint32_t node = pm_graph_node_for(v->g, args->address);
	if (node == PM_NODE_NONE)
		return pm_error_at(PM_ERR_NOT_FOUND, args->address,
				   "0x%" PRIx64 " is in no live object and no object's buffer",
				   args->address);
	const struct pm_dominators *d = v->d;
	uint32_t i = d->rpo[node];
	bool json = args->format == PM_FORMAT_JSON;
	if (i == UINT32_MAX) {
		if (json)
			pm_strbuf_printf(out, "\"address\": %" PRIu64 ", \"reached\": false, "
					 "\"retained\": %" PRIu64 ", \"count\": 1, \"dominated\": []",
					 pm_graph_node_addr(v->g, node), pm_graph_node_size(v->g, node));
		else
			pm_strbuf_printf(out, "0x%" PRIx64 " %s: no root reaches it (garbage, or "
					 "held only weakly): it retains only itself, %" PRIu64
					 " bytes\n", pm_graph_node_addr(v->g, node),
					 pm_graph_node_type(v->g, node), pm_graph_node_size(v->g, node));
		return NULL;
	}
	uint64_t own;
	struct pm_error *err = own_of_rows(v, &i, 1, &own);
	if (err)
		return err;
	if (!json) {
		struct pm_strbuf path;
		pm_strbuf_init(&path);
		path_of(v, node, &path);
		char own_text[32], ret[32];
		pm_strbuf_printf(out, "0x%" PRIx64 " %s: %s bytes of its own, %s retained "
				 "(%u objects, %.1f%% of the heap)\n  held by: %s\n",
				 pm_graph_node_addr(v->g, node), pm_graph_node_type(v->g, node),
				 pm_format_grouped(own, own_text),
				 pm_format_grouped(pm_retained_at(d, i), ret), pm_retained_count_at(d, i),
				 percent(pm_retained_at(d, i), v->heap_bytes), path.data ? path.data : "");
		pm_strbuf_deinit(&path);
		return NULL;
	}
	pm_strbuf_append(out, "\"object\": ");
	object_json(v, i, own, out);
	uint64_t limit = args->limit ? (uint64_t)args->limit : LIST_DEFAULT, listed = 0;
	pm_strbuf_append(out, ", \"dominated\": [");
	for (uint32_t k = i + 1; k <= d->reached && listed < limit; k++) {
		if (!pm_dominates(d, node, d->node_at[k]))
			continue;
		pm_strbuf_printf(out, "%s%" PRIu64, listed++ ? ", " : "",
				 pm_graph_node_addr(v->g, d->node_at[k]));
	}
	pm_strbuf_append(out, "]");
	return NULL;
}

/* retained [--top N] [--type T] [--all] or retained ADDR */
struct pm_error *pm_report_retained(struct pm_target *t, const struct pm_report_args *args,
				    struct pm_strbuf *out)
{
	struct retained_view v;
	struct pm_error *err = view_init(t, &v);
	if (err)
		return err;
	if (args->has_address) {
		err = retained_one(&v, args, out);
		view_deinit(&v);
		return err;
	}
	size_t want = args->top > 0 ? (size_t)args->top : LIST_DEFAULT;
	uint32_t *best = malloc(want * sizeof(*best));
	if (!best) {
		view_deinit(&v);
		return &pm_error_no_memory;
	}
	bool all = args->state && !strcmp(args->state, "all");
	size_t n = top_candidates(&v, args->type, all, best, want);
	uint64_t *own = malloc((n ? n : 1) * sizeof(*own));
	err = own ? own_of_rows(&v, best, n, own) : &pm_error_no_memory;
	if (err) {
		free(own);
		free(best);
		view_deinit(&v);
		return err;
	}
	if (args->format == PM_FORMAT_JSON) {
		pm_strbuf_printf(out, "\"heap_bytes\": %" PRIu64 ", \"reached_bytes\": %" PRIu64
				 ", \"unreached\": {\"count\": %u, \"bytes\": %" PRIu64 "}, "
				 "\"objects\": [", v.heap_bytes, v.d->reached_bytes,
				 v.d->unreached, v.d->unreached_bytes);
		for (size_t k = 0; k < n; k++) {
			pm_strbuf_append(out, k ? ",\n  " : "\n  ");
			object_json(&v, best[k], own[k], out);
		}
		pm_strbuf_append(out, n ? "\n]" : "]");
	} else {
		static const char *const headers[] = { "type", "own", "retained", "%",
						       "objects", "held by" };
		static const bool right[] = { false, true, true, true, true, false };
		struct pm_table *table = pm_table_create(6, headers, right);
		for (size_t k = 0; table && k < n; k++) {
			uint32_t i = best[k], node = v.d->node_at[i];
			char own_text[32], ret[32], cnt[32], pct[16];
			struct pm_strbuf path;
			pm_strbuf_init(&path);
			path_of(&v, node, &path);
			snprintf(pct, sizeof(pct), "%.1f", percent(pm_retained_at(v.d, i), v.heap_bytes));
			const char *cells[] = { pm_graph_node_type(v.g, node),
						pm_format_grouped(own[k], own_text),
						pm_format_grouped(pm_retained_at(v.d, i), ret), pct,
						pm_format_grouped(pm_retained_count_at(v.d, i), cnt),
						path.data ? path.data : "" };
			pm_table_add_row(table, cells);
			pm_strbuf_deinit(&path);
		}
		if (table) {
			pm_table_render(table, out);
			pm_table_destroy(table);
		}
		char b[32];
		pm_strbuf_printf(out, "%u objects no root reaches (garbage, or held only "
				 "weakly): %s bytes\n", v.d->unreached,
				 pm_format_grouped(v.d->unreached_bytes, b));
	}
	free(own);
	free(best);
	view_deinit(&v);
	return NULL;
}

/* ---- suspects --------------------------------------------------------- */

struct type_share {
	const char *type;
	uint64_t count, bytes;
};

/* The types of the objects node dominates (itself left out), by bytes. */
static size_t type_mix(const struct retained_view *v, uint32_t node,
		       struct type_share *mix, size_t max)
{
	size_t n = 0;
	const struct pm_dominators *d = v->d;
	for (uint32_t k = d->rpo[node] + 1; k <= d->reached; k++) {
		uint32_t m = d->node_at[k];
		if (!pm_dominates(d, node, m))
			continue;
		const char *type = pm_graph_node_type(v->g, m);
		size_t j = 0;
		while (j < n && strcmp(mix[j].type, type))
			j++;
		if (j == n) {
			if (n == max)
				continue;       /* rare types past the table: left out */
			mix[n++] = (struct type_share){ type, 0, 0 };
		}
		mix[j].count++;
		mix[j].bytes += pm_graph_node_size(v->g, m);
	}
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && mix[b - 1].bytes < mix[b].bytes; b--) {
			struct type_share s = mix[b];
			mix[b] = mix[b - 1];
			mix[b - 1] = s;
		}
	return n;
}

/* "keyed by str": a dict's keys' commonest type. */
static const char *dict_key_type(const struct retained_view *v, uint32_t node)
{
	const struct pm_graph *g = v->g;
	struct type_share keys[8];
	size_t n = 0;
	for (uint32_t e = g->edge_start[node]; e < g->edge_start[node + 1]; e++) {
		if (PM_EDGE_KIND(g->edge_kind[e]) != PM_EDGE_DICT_KEY)
			continue;
		const char *type = pm_graph_node_type(g, g->edge_target[e]);
		size_t j = 0;
		while (j < n && strcmp(keys[j].type, type))
			j++;
		if (j == n && n < 8)
			keys[n++] = (struct type_share){ type, 0, 0 };
		if (j < n)
			keys[j].count++;
	}
	size_t top = 0;
	for (size_t j = 1; j < n; j++)
		if (keys[j].count > keys[top].count)
			top = j;
	return n ? keys[top].type : NULL;
}

static void size_text(uint64_t bytes, char *buf, size_t size)
{
	if (bytes >= (1u << 20))
		snprintf(buf, size, "%.1f MB", (double)bytes / (1 << 20));
	else if (bytes >= 1024)
		snprintf(buf, size, "%.1f KB", (double)bytes / 1024);
	else
		snprintf(buf, size, "%" PRIu64 " B", bytes);
}

/* One suspect in words: "a dict at sys.modules['x'].__dict__['cache']
 * retains 76.0% of the heap (265,936,624 bytes, 200,453 objects): 200,000
 * bytes of ~1.3 KB, ...; keyed by str". */
static void suspect_text(const struct retained_view *v, uint32_t i, struct pm_strbuf *out)
{
	uint32_t node = v->d->node_at[i];
	const char *type = pm_graph_node_type(v->g, node);
	char ret[32], cnt[32];
	struct pm_strbuf path;
	pm_strbuf_init(&path);
	path_of(v, node, &path);
	pm_strbuf_printf(out, "a %s at %s retains %.1f%% of the heap (%s bytes, %s objects)",
			 type, path.data ? path.data : "?",
			 percent(pm_retained_at(v->d, i), v->heap_bytes),
			 pm_format_grouped(pm_retained_at(v->d, i), ret),
			 pm_format_grouped(pm_retained_count_at(v->d, i), cnt));
	pm_strbuf_deinit(&path);
	struct type_share mix[32];
	size_t n = type_mix(v, node, mix, sizeof(mix) / sizeof(mix[0]));
	for (size_t k = 0; k < n && k < SUSPECT_TYPES; k++) {
		char each[32];
		size_text(mix[k].count ? mix[k].bytes / mix[k].count : 0, each, sizeof(each));
		pm_strbuf_printf(out, "%s%s %s objects of ~%s", k ? ", " : ": ",
				 pm_format_grouped(mix[k].count, cnt), mix[k].type, each);
	}
	const char *keys = !strcmp(type, "dict") || strstr(type, "dict") ?
		dict_key_type(v, node) : NULL;
	if (keys)
		pm_strbuf_printf(out, "; keyed by %s", keys);
}

/* The suspects: accumulation points retaining at least share% of the heap,
 * largest first (at most want). */
static size_t suspects_find(const struct retained_view *v, double share, uint32_t *best,
			    size_t want)
{
	size_t n = top_candidates(v, NULL, false, best, want);
	size_t kept = 0;
	for (size_t k = 0; k < n; k++)
		if (percent(pm_retained_at(v->d, best[k]), v->heap_bytes) >= share)
			best[kept++] = best[k];
	return kept;
}

/* The suspects over share% as text lines or as a JSON array. */
static struct pm_error *suspects_write(const struct retained_view *v, double share,
				       bool json, struct pm_strbuf *out)
{
	uint32_t best[LIST_DEFAULT];
	uint64_t own[LIST_DEFAULT];
	size_t n = suspects_find(v, share, best, LIST_DEFAULT);
	struct pm_error *err = json ? own_of_rows(v, best, n, own) : NULL;
	if (err)
		return err;
	if (json)
		pm_strbuf_append(out, "[");
	for (size_t k = 0; k < n; k++) {
		struct pm_strbuf line;
		pm_strbuf_init(&line);
		suspect_text(v, best[k], &line);
		if (json) {
			pm_strbuf_append(out, k ? ",\n  {\"object\": " : "\n  {\"object\": ");
			object_json(v, best[k], own[k], out);
			pm_strbuf_append(out, ", \"text\": ");
			pm_strbuf_json_string(out, line.data ? line.data : "");
			pm_strbuf_append(out, "}");
		} else {
			pm_strbuf_printf(out, "leak suspect: %s\n", line.data ? line.data : "");
		}
		pm_strbuf_deinit(&line);
	}
	if (json)
		pm_strbuf_append(out, n ? "\n]" : "]");
	else if (!n)
		pm_strbuf_printf(out, "no leak suspect: no object retains %.0f%% of the heap "
				 "or more\n", share);
	return NULL;
}

/* suspects [--threshold PCT] */
struct pm_error *pm_report_suspects(struct pm_target *t, const struct pm_report_args *args,
				    struct pm_strbuf *out)
{
	struct retained_view v;
	struct pm_error *err = view_init(t, &v);
	if (err)
		return err;
	double share = args->threshold > 0 ? args->threshold : SUSPECT_SHARE_DEFAULT;
	bool json = args->format == PM_FORMAT_JSON;
	if (json)
		pm_strbuf_printf(out, "\"threshold\": %.1f, \"suspects\": ", share);
	err = suspects_write(&v, share, json, out);
	view_deinit(&v);
	return err;
}

struct pm_error *pm_summary_suspects(struct pm_target *t, bool json, struct pm_strbuf *out)
{
	struct retained_view v;
	struct pm_error *err = view_init(t, &v);
	if (err && err->code != PM_ERR_NO_MEMORY && err->code != PM_ERR_INTERRUPTED &&
	    err->code != PM_ERR_EXITED) {
		/* No graph (say, an unsupported object layout): summary stands
		 * without its suspects, and says why. */
		if (json) {
			pm_strbuf_append(out, ", \"suspects\": null, \"suspects_error\": ");
			pm_strbuf_json_string(out, err->message);
		} else {
			pm_strbuf_printf(out, "leak suspects not computed: %s\n", err->message);
		}
		pm_error_destroy(err);
		return NULL;
	}
	if (err)
		return err;
	if (json)
		pm_strbuf_append(out, ", \"suspects\": ");
	err = suspects_write(&v, SUSPECT_SHARE_DEFAULT, json, out);
	view_deinit(&v);
	return err;
}

/* ---- summary --by retainer -------------------------------------------- */

/* Does node from hold a reference to node to? */
static bool refers_to(const struct pm_graph *g, uint32_t from, uint32_t to)
{
	if (from >= g->nheap)
		return true;    /* outside the heap: its references are not read */
	for (uint32_t e = g->edge_start[from]; e < g->edge_start[from + 1]; e++)
		if (g->edge_target[e] == to)
			return true;
	return false;
}

struct pm_error *pm_retainer_rows(struct pm_target *t, pm_row_sink *sink, void *arg)
{
	struct retained_view v;
	struct pm_error *err = view_init(t, &v);
	if (err)
		return err;
	const struct pm_graph *g = v.g;
	const struct pm_dominators *d = v.d;
	const struct pm_cpython_heap *heap = g->heap;
	uint32_t n = d->reached + 1;
	const uint64_t *ns = v.ns;
	/* By index: the retainer (highest non-namespace ancestor), else the
	 * top namespace below the virtual root (marked with a high bit). */
	uint32_t *holder = malloc((size_t)n * sizeof(*holder));
	uint64_t *bytes = calloc((size_t)n + 1, sizeof(*bytes));
	uint32_t *count = calloc((size_t)n + 1, sizeof(*count));
	uint64_t *cat_bytes = calloc(heap->ncategories + 1, sizeof(*cat_bytes));
	uint64_t *cat_count = calloc(heap->ncategories + 1, sizeof(*cat_count));
	const uint32_t NAMESPACE = UINT32_C(1) << 31;
	if (!ns || !holder || !bytes || !count || !cat_bytes || !cat_count) {
		err = &pm_error_no_memory;
		goto out;
	}
	holder[0] = 0;
	for (uint32_t i = 1; i < n; i++) {
		uint32_t up = holder[d->idom[i]];
		if (d->idom[i] && !(up & NAMESPACE))
			holder[i] = up;             /* below a retainer already */
		else if (!is_namespace(ns, d->node_at[i]) &&
			 (!d->idom[i] || refers_to(g, d->node_at[d->idom[i]], d->node_at[i])))
			holder[i] = i;              /* the first below namespaces */
		else
			/* A namespace, or an object that several retainers
			 * share (an int both an Order and a cache hold): with
			 * its namespace. */
			holder[i] = d->idom[i] ? up : (i | NAMESPACE);
	}
	/* Every allocation: its object's (or buffer owner's) holder; slot
	 * n counts the objects no root reaches; allocations of no object stay
	 * in their categories' rows. */
	for (size_t a = 0; a < heap->nallocs && !err; a++) {
		const struct pm_alloc *alloc = &heap->allocs[a];
		uint64_t addr = alloc->addr + alloc->object_offset;
		uint32_t node = pm_graph_node_at(g, addr);
		if (node == PM_NODE_NONE && heap->owners && heap->owners[a])
			node = pm_graph_node_at(g, heap->owners[a]);
		if (node == PM_NODE_NONE) {
			if (alloc->category < heap->ncategories) {
				cat_bytes[alloc->category] += alloc->size;
				cat_count[alloc->category]++;
			}
			continue;
		}
		uint32_t i = d->rpo[node];
		uint32_t slot = i == UINT32_MAX ? n : holder[i] & ~NAMESPACE;
		bytes[slot] += alloc->size;
		count[slot]++;
	}
	for (size_t c = 0; c < heap->ncategories && !err; c++)
		if (cat_count[c] && !sink(arg, heap->categories[c].domain,
					  heap->categories[c].kind, heap->categories[c].detail,
					  cat_count[c], cat_bytes[c]))
			err = &pm_error_no_memory;
	for (uint32_t slot = 1; slot <= n && !err; slot++) {
		if (!count[slot])
			continue;
		if (slot == n) {
			if (!sink(arg, "retained by", "(no root reaches them: garbage, or held "
				  "only weakly)", "-", count[slot], bytes[slot]))
				err = &pm_error_no_memory;
			continue;
		}
		uint32_t node = d->node_at[slot];
		struct pm_strbuf path;
		pm_strbuf_init(&path);
		path_of(&v, node, &path);
		if (is_namespace(ns, node))
			pm_strbuf_append(&path, " (namespace, with what objects below it share)");
		char kind[PATH_TEXT_MAX + 1];
		size_t len = path.data ? strlen(path.data) : 0;
		if (len > PATH_TEXT_MAX)
			snprintf(kind, sizeof(kind), "...%s", path.data + len - (PATH_TEXT_MAX - 3));
		else
			snprintf(kind, sizeof(kind), "%s", path.data ? path.data : "?");
		pm_strbuf_deinit(&path);
		if (!sink(arg, "retained by", kind, pm_graph_node_type(g, node), count[slot],
			  bytes[slot]))
			err = &pm_error_no_memory;
	}
out:
	free(cat_bytes);
	free(cat_count);
	free(holder);
	free(bytes);
	free(count);
	view_deinit(&v);
	return err;
}
