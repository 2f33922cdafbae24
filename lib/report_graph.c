/* Reports of the reference graph: "referents" and "referrers" of an object
 * (how each reference was found), "path" (the shortest chain from a root),
 * "unreachable" (what gc.collect() would free now, by type), "outside"
 * (objects held from outside the heap by something no root names) and
 * "graph" (the whole graph, for tools). An address may be an object's or a
 * buffer's: a list's item array stands for its list. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dominators.h"
#include "graph.h"
#include "graph_path.h"
#include "report.h"
#include "report_graph.h"

enum { LIST_DEFAULT_LIMIT = 100 };

static const char *const edge_kind_names[PM_EDGE_KINDS] = {
	"item", "dict key", "dict value", "set member", "attribute",
	"__dict__", "slot", "field", "class", "local", "value stack",
	"conservative", "weak",
};

static struct pm_error *graph_node(struct pm_target *t, const struct pm_report_args *args,
				   const char *report, const struct pm_graph **g,
				   uint32_t *node)
{
	if (!args->has_address)
		return pm_error_format(PM_ERR_INVALID, "%s needs an address (%s ADDR)",
				       report, report);
	struct pm_error *err = pm_graph_get(t, g);
	if (err)
		return err;
	*node = pm_graph_node_for(*g, args->address);
	if (*node == PM_NODE_NONE)
		return pm_error_at(PM_ERR_NOT_FOUND, args->address,
				   "0x%" PRIx64 " is in no live object and no object's "
				   "buffer (describe ADDR says what is there)", args->address);
	return NULL;
}

static void node_json(const struct pm_graph *g, uint32_t node, struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "\"address\": %" PRIu64 ", \"type\": ",
			 pm_graph_node_addr(g, node));
	pm_strbuf_json_string(out, pm_graph_node_type(g, node));
}

static void text_of(const struct pm_graph *g, uint32_t node, struct pm_strbuf *out)
{
	struct pm_strbuf s;
	pm_strbuf_init(&s);
	pm_graph_object_text(g, node, &s);
	pm_strbuf_json_string(out, s.data ? s.data : "");
	pm_strbuf_deinit(&s);
}

static void edge_json(const struct pm_graph *g, uint32_t from, uint64_t e,
		      struct pm_strbuf *out)
{
	struct pm_strbuf how;
	pm_strbuf_init(&how);
	pm_graph_edge_text(g, from, e, &how);
	uint8_t kind = g->edge_kind[e];
	pm_strbuf_append(out, "\"how\": ");
	pm_strbuf_json_string(out, how.data ? how.data : "");
	pm_strbuf_append(out, ", \"kind\": ");
	pm_strbuf_json_string(out, edge_kind_names[PM_EDGE_KIND(kind)]);
	pm_strbuf_printf(out, ", \"traversed\": %s",
			 kind & PM_EDGE_TRAVERSED ? "true" : "false");
	pm_strbuf_deinit(&how);
}

/* referents ADDR */
struct pm_error *pm_report_referents(struct pm_target *t, const struct pm_report_args *args,
				     struct pm_strbuf *out)
{
	const struct pm_graph *g;
	uint32_t node;
	struct pm_error *err = graph_node(t, args, "referents", &g, &node);
	if (err)
		return err;
	uint32_t first = g->edge_start[node], end = g->edge_start[node + 1];
	if (args->format == PM_FORMAT_JSON) {
		node_json(g, node, out);
		pm_strbuf_printf(out, ", \"conservative\": %s, \"referents\": [",
				 g->flags[node] & PM_NODE_CONSERVATIVE ? "true" : "false");
		for (uint32_t e = first; e < end; e++) {
			pm_strbuf_append(out, e > first ? ",\n  {" : "\n  {");
			node_json(g, g->edge_target[e], out);
			pm_strbuf_append(out, ", ");
			edge_json(g, node, e, out);
			pm_strbuf_append(out, "}");
		}
		pm_strbuf_append(out, end > first ? "\n]" : "]");
		return NULL;
	}
	uint32_t traversed = 0;
	for (uint32_t e = first; e < end; e++)
		traversed += (g->edge_kind[e] & PM_EDGE_TRAVERSED) != 0;
	pm_strbuf_printf(out, "0x%" PRIx64 " %s: %u references (%u visited by its "
			 "tp_traverse)%s\n", pm_graph_node_addr(g, node),
			 pm_graph_node_type(g, node), end - first, traversed,
			 g->flags[node] & PM_NODE_CONSERVATIVE ?
			 "; no precise reader for its type: words that point at "
			 "objects" : "");
	for (uint32_t e = first; e < end; e++) {
		pm_strbuf_append(out, " ");
		pm_graph_edge_text(g, node, e, out);
		pm_strbuf_append(out, " -> ");
		pm_graph_object_text(g, g->edge_target[e], out);
		pm_strbuf_append(out, "\n");
	}
	return NULL;
}

/* referrers ADDR */
struct pm_error *pm_report_referrers(struct pm_target *t, const struct pm_report_args *args,
				     struct pm_strbuf *out)
{
	const struct pm_graph *g;
	uint32_t node;
	struct pm_error *err = graph_node(t, args, "referrers", &g, &node);
	if (err)
		return err;
	bool json = args->format == PM_FORMAT_JSON;
	uint64_t found = 0, roots = 0;
	if (json) {
		node_json(g, node, out);
		pm_strbuf_append(out, ", \"referrers\": [");
	} else {
		pm_strbuf_printf(out, "0x%" PRIx64 " %s ", pm_graph_node_addr(g, node),
				 pm_graph_node_type(g, node));
		pm_graph_object_text(g, node, out);
		pm_strbuf_printf(out, " (refcount %u) is referred to by:\n", pm_graph_refcnt(g, node));
	}
	for (uint32_t from = 0; from < g->nnodes; from++) {
		for (uint32_t e = g->edge_start[from]; e < g->edge_start[from + 1]; e++) {
			if (g->edge_target[e] != node)
				continue;
			if (json) {
				pm_strbuf_append(out, found ? ",\n  {" : "\n  {");
				node_json(g, from, out);
				pm_strbuf_printf(out, ", \"gc\": %s, ",
						 g->flags[from] & PM_NODE_TRACKED ? "true" : "false");
				edge_json(g, from, e, out);
				pm_strbuf_append(out, "}");
			} else {
				pm_strbuf_printf(out, "  0x%" PRIx64 " %s", pm_graph_node_addr(g, from),
						 pm_graph_node_type(g, from));
				pm_graph_edge_text(g, from, e, out);
				pm_strbuf_append(out, "\n");
			}
			found++;
		}
	}
	if (json)
		pm_strbuf_append(out, found ? "\n], \"roots\": [" : "], \"roots\": [");
	for (size_t i = 0; i < g->roots.size; i++) {
		const struct pm_graph_root *r = &g->roots.data[i];
		if (r->node != node)
			continue;
		struct pm_strbuf s;
		pm_strbuf_init(&s);
		pm_graph_root_text(g, r, &s);
		if (json) {
			pm_strbuf_append(out, roots ? ", " : "");
			pm_strbuf_json_string(out, s.data ? s.data : "");
		} else {
			pm_strbuf_printf(out, "  root: %s\n", s.data ? s.data : "");
		}
		pm_strbuf_deinit(&s);
		roots++;
	}
	if (json) {
		pm_strbuf_printf(out, "], \"refcount\": %u", pm_graph_refcnt(g, node));
		return NULL;
	}
	if (!found && !roots)
		pm_strbuf_append(out, "  nothing found in the heap, the threads or static data\n");
	return NULL;
}

/* The chain to node as one line: root, edges, "-> type 0x...". */
static void path_text(const struct pm_graph *g, const struct pm_graph_step_vector *steps,
		      enum pm_path_start start, uint32_t start_root,
		      const struct pm_graph_paths *p, uint32_t node, struct pm_strbuf *out)
{
	if (start == PM_PATH_ROOT) {
		pm_graph_root_text(g, &g->roots.data[start_root], out);
	} else {
		pm_strbuf_printf(out, "held from outside the heap (refcount %u, %u "
				 "references found) %s 0x%" PRIx64, pm_graph_refcnt(g, start_root),
				 pm_graph_path_start_found(p, start_root),
				 pm_graph_node_type(g, start_root),
				 pm_graph_node_addr(g, start_root));
	}
	for (size_t i = 0; i < steps->size; i++)
		pm_graph_edge_text(g, steps->data[i].from, steps->data[i].edge, out);
	pm_strbuf_printf(out, " -> %s 0x%" PRIx64, pm_graph_node_type(g, node),
			 pm_graph_node_addr(g, node));
}

/* Why node has no path: "unreachable: ..." or "only weakly referred to". */
static struct pm_error *unheld_text(const struct pm_graph *g, uint32_t node,
				    struct pm_strbuf *out)
{
	struct pm_error *err = pm_graph_collect((struct pm_graph *)g);
	if (err)
		return err;
	if (pm_graph_unreachable(g, node)) {
		uint64_t n = 0;
		for (uint32_t m = 0; m < g->nnodes; m++)
			n += pm_graph_unreachable(g, m);
		pm_strbuf_printf(out, "unreachable: garbage that the next collection "
				 "frees (%" PRIu64 " unreachable objects in all)", n);
	} else {
		pm_strbuf_append(out, "not held: no reference to it was found (only weak "
				 "references, or from unreachable objects)");
	}
	return NULL;
}

/* path ADDR */
struct pm_error *pm_report_path(struct pm_target *t, const struct pm_report_args *args,
				struct pm_strbuf *out)
{
	const struct pm_graph *g;
	const struct pm_graph_paths *p;
	uint32_t node, start_root = 0;
	struct pm_error *err = graph_node(t, args, "path", &g, &node);
	if (!err)
		err = pm_graph_paths_get(t, g, &p);
	if (err)
		return err;
	struct pm_graph_step_vector steps = PM_VECTOR_INIT;
	enum pm_path_start start;
	err = pm_graph_path(g, p, node, &steps, &start, &start_root);
	struct pm_strbuf line;
	pm_strbuf_init(&line);
	if (!err && start == PM_PATH_NONE)
		err = unheld_text(g, node, &line);
	else if (!err)
		path_text(g, &steps, start, start_root, p, node, &line);
	if (err) {
		pm_graph_step_vector_deinit(&steps);
		pm_strbuf_deinit(&line);
		return err;
	}
	if (args->format == PM_FORMAT_JSON) {
		node_json(g, node, out);
		pm_strbuf_append(out, ", \"held\": ");
		pm_strbuf_json_string(out, start == PM_PATH_ROOT ? "root" :
				      start == PM_PATH_OUTSIDE ? "outside" :
				      pm_graph_unreachable(g, node) ? "unreachable" : "none");
		pm_strbuf_append(out, ", \"root\": ");
		if (start == PM_PATH_ROOT) {
			struct pm_strbuf s;
			pm_strbuf_init(&s);
			pm_graph_root_text(g, &g->roots.data[start_root], &s);
			pm_strbuf_json_string(out, s.data ? s.data : "");
			pm_strbuf_deinit(&s);
		} else {
			pm_strbuf_append(out, "null");
		}
		/* Roots found by reading words (states, static data, C stacks,
		 * allocations that are no object): the word's address, so a
		 * user can look at what holds the object. */
		const struct pm_graph_root *r = start == PM_PATH_ROOT ?
			&g->roots.data[start_root] : NULL;
		if (r && r->kind >= PM_ROOT_THREAD_STATE)
			pm_strbuf_printf(out, ", \"root_word\": %" PRIu64, r->where);
		else
			pm_strbuf_append(out, ", \"root_word\": null");
		pm_strbuf_append(out, ", \"steps\": [");
		for (size_t i = 0; i < steps.size; i++) {
			const struct pm_graph_step *s = &steps.data[i];
			pm_strbuf_append(out, i ? ", {\"from\": " : "{\"from\": ");
			pm_strbuf_printf(out, "%" PRIu64 ", \"to\": %" PRIu64 ", ",
					 pm_graph_node_addr(g, s->from),
					 pm_graph_node_addr(g, g->edge_target[s->edge]));
			edge_json(g, s->from, s->edge, out);
			pm_strbuf_append(out, "}");
		}
		pm_strbuf_append(out, "], \"text\": ");
		pm_strbuf_json_string(out, line.data ? line.data : "");
	} else {
		pm_strbuf_printf(out, "%s\n", line.data ? line.data : "");
	}
	pm_graph_step_vector_deinit(&steps);
	pm_strbuf_deinit(&line);
	return NULL;
}

struct pm_error *pm_graph_describe(struct pm_target *t, uint64_t addr,
				   enum pm_output_format format, struct pm_strbuf *out)
{
	const struct pm_graph *g;
	const struct pm_graph_paths *p;
	bool json = format == PM_FORMAT_JSON;
	/* No graph (no Python objects, say): describe says the rest. */
	struct pm_error *err = pm_graph_get(t, &g);
	if (err && err->code != PM_ERR_NO_MEMORY && err->code != PM_ERR_INTERRUPTED) {
		pm_error_destroy(err);
		if (json)
			pm_strbuf_append(out, ",\n\"graph\": null");
		return NULL;
	}
	if (!err)
		err = pm_graph_paths_get(t, g, &p);
	if (err)
		return err;
	uint32_t node = pm_graph_node_for(g, addr);
	if (node == PM_NODE_NONE) {
		if (json)
			pm_strbuf_append(out, ",\n\"graph\": null");
		return NULL;
	}
	uint64_t referrers = 0;
	for (uint64_t e = 0; e < g->nedges; e++)
		referrers += g->edge_target[e] == node;
	struct pm_graph_step_vector steps = PM_VECTOR_INIT;
	enum pm_path_start start;
	uint32_t start_root = 0;
	struct pm_strbuf line;
	pm_strbuf_init(&line);
	err = pm_graph_path(g, p, node, &steps, &start, &start_root);
	if (!err && start == PM_PATH_NONE)
		err = unheld_text(g, node, &line);
	else if (!err)
		path_text(g, &steps, start, start_root, p, node, &line);
	pm_graph_step_vector_deinit(&steps);
	const struct pm_dominators *d = NULL;
	if (!err)
		err = pm_dominators_get(t, &d);
	uint64_t retained = d ? pm_retained_bytes(d, g, node) : 0;
	uint32_t retained_count = d ? pm_retained_count(d, node) : 0;
	uint64_t addr_of_node = pm_graph_node_addr(g, node);
	if (!err && json) {
		pm_strbuf_printf(out, ",\n\"graph\": {\"object\": %" PRIu64
				 ", \"referrers\": %" PRIu64 ", \"refcount\": %u, \"path\": ",
				 addr_of_node, referrers, pm_graph_refcnt(g, node));
		pm_strbuf_json_string(out, line.data ? line.data : "");
		pm_strbuf_printf(out, ", \"retained\": %" PRIu64 ", \"retained_count\": %u}",
				 retained, retained_count);
	} else if (!err) {
		char bytes[32], count[32];
		pm_strbuf_printf(out, "  referrers:  %" PRIu64 " (heap referrers 0x%" PRIx64
				 "), refcount %u\n  path:       %s\n", referrers,
				 addr_of_node, pm_graph_refcnt(g, node), line.data ? line.data : "");
		pm_strbuf_printf(out, "  retained:   %s bytes, %s object%s (heap retained 0x%"
				 PRIx64 ")\n", pm_format_grouped(retained, bytes),
				 pm_format_grouped(retained_count, count),
				 retained_count == 1 ? "" : "s", addr_of_node);
	}
	pm_strbuf_deinit(&line);
	return err;
}

/* ---- unreachable / outside -------------------------------------------- */

struct type_row {
	const char *type;
	uint64_t count, bytes;
};

static int type_row_compare(const void *x, const void *y)
{
	const struct type_row *p = x, *q = y;
	if (p->bytes != q->bytes)
		return p->bytes > q->bytes ? -1 : 1;
	return strcmp(p->type, q->type);
}

PM_DEFINE_VECTOR(type_row_vector, struct type_row)

/* Adds node to its type's row (types are few: a linear search). */
static bool rows_add(struct type_row_vector *rows, const struct pm_graph *g, uint32_t node)
{
	const char *type = pm_graph_node_type(g, node);
	for (size_t i = 0; i < rows->size; i++)
		if (rows->data[i].type == type || !strcmp(rows->data[i].type, type)) {
			rows->data[i].count++;
			rows->data[i].bytes += pm_graph_node_size(g, node);
			return true;
		}
	struct type_row r = { type, 1, pm_graph_node_size(g, node) };
	return type_row_vector_append(rows, &r);
}

static void rows_text(const struct type_row_vector *rows, struct pm_strbuf *out)
{
	static const char *const headers[] = { "type", "count", "bytes" };
	static const bool right[] = { false, true, true };
	struct pm_table *table = pm_table_create(3, headers, right);
	if (!table)
		return;
	uint64_t count = 0, bytes = 0;
	char c[32], b[32];
	for (size_t i = 0; i < rows->size; i++) {
		const char *cells[] = { rows->data[i].type,
					pm_format_grouped(rows->data[i].count, c),
					pm_format_grouped(rows->data[i].bytes, b) };
		pm_table_add_row(table, cells);
		count += rows->data[i].count;
		bytes += rows->data[i].bytes;
	}
	const char *total[] = { "TOTAL", pm_format_grouped(count, c),
				pm_format_grouped(bytes, b) };
	pm_table_add_row(table, total);
	pm_table_render(table, out);
	pm_table_destroy(table);
}

static void rows_json(const struct type_row_vector *rows, struct pm_strbuf *out)
{
	uint64_t count = 0, bytes = 0;
	pm_strbuf_append(out, "\"rows\": [");
	for (size_t i = 0; i < rows->size; i++) {
		pm_strbuf_append(out, i ? ", {\"type\": " : "{\"type\": ");
		pm_strbuf_json_string(out, rows->data[i].type);
		pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
				 rows->data[i].count, rows->data[i].bytes);
		count += rows->data[i].count;
		bytes += rows->data[i].bytes;
	}
	pm_strbuf_printf(out, "], \"total\": {\"count\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
			 count, bytes);
}

/* unreachable [--limit N] */
struct pm_error *pm_report_unreachable(struct pm_target *t, const struct pm_report_args *args,
				       struct pm_strbuf *out)
{
	const struct pm_graph *cg;
	struct pm_error *err = pm_graph_get(t, &cg);
	struct pm_graph *g = (struct pm_graph *)cg;
	if (!err)
		err = pm_graph_collect(g);
	if (err)
		return err;
	struct type_row_vector rows = PM_VECTOR_INIT;
	uint64_t limit = args->limit ? (uint64_t)args->limit : LIST_DEFAULT_LIMIT, listed = 0;
	bool json = args->format == PM_FORMAT_JSON;
	if (json)
		pm_strbuf_append(out, "\"objects\": [");
	for (uint32_t n = 0; n < g->nnodes; n++) {
		if (!pm_graph_unreachable(g, n))
			continue;
		if (!rows_add(&rows, g, n)) {
			type_row_vector_deinit(&rows);
			return &pm_error_no_memory;
		}
		if (json && listed < limit) {
			pm_strbuf_append(out, listed ? ", {" : "{");
			node_json(g, n, out);
			pm_strbuf_append(out, "}");
			listed++;
		}
	}
	if (rows.size)
		qsort(rows.data, rows.size, sizeof(*rows.data), type_row_compare);
	if (json) {
		pm_strbuf_append(out, "], ");
		rows_json(&rows, out);
	} else if (!rows.size) {
		pm_strbuf_append(out, "nothing unreachable: gc.collect() would free no "
				 "tracked object now\n");
	} else {
		pm_strbuf_append(out, "unreachable objects (what gc.collect() would free "
				 "now), by type:\n");
		rows_text(&rows, out);
	}
	type_row_vector_deinit(&rows);
	return NULL;
}

/* outside [--limit N] */
struct pm_error *pm_report_outside(struct pm_target *t, const struct pm_report_args *args,
				   struct pm_strbuf *out)
{
	const struct pm_graph *g;
	const struct pm_graph_paths *p;
	uint32_t *incoming = NULL;
	struct pm_error *err = pm_graph_get(t, &g);
	if (!err)
		err = pm_graph_paths_get(t, g, &p);
	if (!err)
		err = pm_graph_incoming(g, &incoming);
	if (err)
		return err;
	uint64_t limit = args->limit ? (uint64_t)args->limit : LIST_DEFAULT_LIMIT;
	uint64_t matching = 0, rooted = 0;
	bool json = args->format == PM_FORMAT_JSON;
	struct type_row_vector rows = PM_VECTOR_INIT;
	struct pm_table *table = NULL;
	if (json) {
		pm_strbuf_append(out, "\"objects\": [");
	} else {
		static const char *const headers[] = { "address", "type", "refcount",
						       "found", "value" };
		static const bool right[] = { false, false, true, true, false };
		table = pm_table_create(5, headers, right);
		if (!table) {
			free(incoming);
			return &pm_error_no_memory;
		}
	}
	for (uint32_t n = 0; n < g->nnodes; n++) {
		int64_t extra = pm_graph_outside(g, incoming, n);
		if (extra <= 0)
			continue;
		/* Held by something unnamed but also reachable from a root:
		 * counted, not listed. */
		if (!pm_graph_path_starts_outside(p, n)) {
			rooted++;
			continue;
		}
		if (!rows_add(&rows, g, n)) {
			err = &pm_error_no_memory;
			break;
		}
		if (matching++ >= limit)
			continue;
		if (json) {
			pm_strbuf_append(out, matching > 1 ? ",\n  {" : "\n  {");
			node_json(g, n, out);
			pm_strbuf_printf(out, ", \"refcount\": %u, \"found\": %u, \"value\": ",
					 pm_graph_refcnt(g, n), incoming[n]);
			text_of(g, n, out);
			pm_strbuf_append(out, "}");
			continue;
		}
		char a[24], rc[32], found[32];
		snprintf(a, sizeof(a), "0x%" PRIx64, pm_graph_node_addr(g, n));
		struct pm_strbuf v;
		pm_strbuf_init(&v);
		pm_graph_object_text(g, n, &v);
		const char *cells[] = { a, pm_graph_node_type(g, n),
					pm_format_grouped(pm_graph_refcnt(g, n), rc),
					pm_format_grouped(incoming[n], found),
					v.data ? v.data : "" };
		pm_table_add_row(table, cells);
		pm_strbuf_deinit(&v);
	}
	if (!err && json) {
		pm_strbuf_printf(out, "%s], \"matching\": %" PRIu64 ", \"also_rooted\": %" PRIu64
				 ", ", matching ? "\n" : "", matching, rooted);
		rows_json(&rows, out);
	} else if (!err) {
		pm_strbuf_printf(out, "objects held from outside the heap, no root found "
				 "(refcount above the references found): %" PRIu64 "\n",
				 matching);
		if (matching)
			pm_table_render(table, out);
		pm_strbuf_printf(out, "%" PRIu64 " more objects reachable from a root hold "
				 "more references than were found\n", rooted);
	}
	free(incoming);
	pm_table_destroy(table);
	type_row_vector_deinit(&rows);
	return err;
}

/* graph: every node and edge (JSON), or how big the graph is (text). */
struct pm_error *pm_report_graph(struct pm_target *t, const struct pm_report_args *args,
				 struct pm_strbuf *out)
{
	const struct pm_graph *g;
	struct pm_error *err = pm_graph_get(t, &g);
	if (err)
		return err;
	uint64_t node_bytes = pm_graph_node_bytes(g), edge_bytes = pm_graph_edge_bytes(g);
	if (args->format != PM_FORMAT_JSON) {
		pm_strbuf_printf(out, "reference graph: %u objects (%u outside the heap), "
				 "%" PRIu64 " references, %zu roots; %" PRIu64
				 " bytes (%.1f per object, %.1f per reference)\n",
				 g->nnodes, g->nnodes - g->nheap, g->nedges, g->roots.size,
				 node_bytes + edge_bytes,
				 g->nnodes ? (double)node_bytes / g->nnodes : 0.0,
				 g->nedges ? (double)edge_bytes / (double)g->nedges : 0.0);
		return NULL;
	}
	pm_strbuf_printf(out, "\"nodes\": %u, \"heap_nodes\": %u, \"edges\": %" PRIu64
			 ", \"objects\": [", g->nnodes, g->nheap, g->nedges);
	for (uint32_t n = 0; n < g->nnodes; n++) {
		pm_strbuf_append(out, n ? ",\n  {" : "\n  {");
		node_json(g, n, out);
		pm_strbuf_printf(out, ", \"refcount\": %u, \"gc\": %s, \"tracked\": %s, "
				 "\"static\": %s, \"edges\": [", pm_graph_refcnt(g, n),
				 g->flags[n] & PM_NODE_GC ? "true" : "false",
				 g->flags[n] & PM_NODE_TRACKED ? "true" : "false",
				 g->flags[n] & PM_NODE_STATIC ? "true" : "false");
		for (uint32_t e = g->edge_start[n]; e < g->edge_start[n + 1]; e++)
			pm_strbuf_printf(out, "%s[%u, %u, %u]", e > g->edge_start[n] ? ", " : "",
					 g->edge_target[e], PM_EDGE_KIND(g->edge_kind[e]),
					 g->edge_kind[e] & PM_EDGE_TRAVERSED ? 1 : 0);
		pm_strbuf_append(out, "]}");
	}
	pm_strbuf_append(out, "\n], \"roots\": [");
	for (size_t i = 0; i < g->roots.size; i++) {
		struct pm_strbuf s;
		pm_strbuf_init(&s);
		pm_graph_root_text(g, &g->roots.data[i], &s);
		pm_strbuf_printf(out, "%s{\"node\": %u, \"kind\": %u, \"text\": ", i ? ",\n  " : "\n  ",
				 g->roots.data[i].node, g->roots.data[i].kind);
		pm_strbuf_json_string(out, s.data ? s.data : "");
		pm_strbuf_append(out, "}");
		pm_strbuf_deinit(&s);
	}
	pm_strbuf_append(out, "]");
	return NULL;
}
