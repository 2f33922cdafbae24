/* The "waste" report: what the heap holds that a change to the program
 * would give back (waste.h finds it). One section per finding, ordered by
 * what fixing it saves: duplicated str/bytes/int/float values, slack in
 * over-allocated lists, dicts, sets and bytearrays, empty containers, tiny
 * dicts, classes whose instances would be smaller with __slots__; each with its cost, the saving, examples (address, value or type,
 * the path from a root) and one line of advice with the figure.
 * --top N: values or examples shown per section (10). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_path.h"
#include "report.h"
#include "waste.h"

enum { TOP_DEFAULT = 10, PREVIEW_TEXT = 50, PREVIEW_JSON = 200 };

enum section_kind { SEC_DUP, SEC_OVER, SEC_EMPTY, SEC_TINY, SEC_SLOTS, SEC_NUMERIC,
		    SEC_FREE_LISTS };

struct section {
	enum section_kind kind;
	int sub;                    /* dup type or container */
	uint64_t cost, saving;
};

static const char *human(uint64_t bytes, char *buf, size_t size)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}

static void path_text(const struct pm_graph *g, const struct pm_graph_paths *p,
		      uint32_t node, struct pm_strbuf *out)
{
	struct pm_graph_step_vector steps = PM_VECTOR_INIT;
	enum pm_path_start start;
	uint32_t root = 0;
	struct pm_error *err = pm_graph_path(g, p, node, &steps, &start, &root);
	if (err) {
		pm_error_destroy(err);
		pm_strbuf_append(out, "?");
	} else if (start == PM_PATH_ROOT) {
		pm_graph_root_text(g, &g->roots.data[root], out);
	} else if (start == PM_PATH_OUTSIDE) {
		pm_strbuf_printf(out, "(held from outside the heap: %s 0x%" PRIx64 ")",
				 pm_graph_node_type(g, root), pm_graph_node_addr(g, root));
	} else {
		pm_strbuf_append(out, "(not held)");
	}
	for (size_t k = 0; !err && k < steps.size; k++)
		pm_graph_edge_text(g, steps.data[k].from, steps.data[k].edge, out);
	pm_graph_step_vector_deinit(&steps);
}

static int section_cmp(const void *x, const void *y)
{
	const struct section *a = x, *b = y;
	if (a->saving != b->saving)
		return a->saving < b->saving ? 1 : -1;
	if (a->cost != b->cost)
		return a->cost < b->cost ? 1 : -1;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	return a->sub - b->sub;
}

static size_t sections_of(const struct pm_waste *w, struct section *sec)
{
	size_t n = 0;
	for (int d = 0; d < PM_DUP_TYPES; d++) {
		const struct pm_dup_stats *st = &w->dup[d];
		if (!st->dup_values)
			continue;
		uint64_t cost = 0;
		for (size_t i = 0; i < w->nvalues; i++)
			if (w->values[i].type == d)
				cost += w->values[i].bytes_total;
		sec[n++] = (struct section){SEC_DUP, d, cost, st->saving};
	}
	for (int c = 0; c < PM_CONT_KINDS; c++)
		if (w->over[c].over)
			sec[n++] = (struct section){SEC_OVER, c, w->over[c].unused,
						    w->over[c].saving};
	uint64_t empty = 0;
	for (int c = 0; c < PM_CONT_KINDS; c++)
		empty += w->empty[c].bytes;
	if (empty)
		sec[n++] = (struct section){SEC_EMPTY, 0, empty, empty};
	if (w->tiny_dicts)
		sec[n++] = (struct section){SEC_TINY, 0, w->tiny_dict_bytes,
					    w->tiny_dict_bytes > w->tiny_dict_as_tuples ?
					    w->tiny_dict_bytes - w->tiny_dict_as_tuples : 0};
	uint64_t now = 0, saving = 0;
	for (size_t i = 0; i < w->nclasses; i++) {
		now += w->classes[i].bytes_now;
		saving += w->classes[i].saving;
	}
	if (saving)
		sec[n++] = (struct section){SEC_SLOTS, 0, now, saving};
	for (int k = 0; k < 2; k++)
		if (w->numeric[k].saving)
			sec[n++] = (struct section){SEC_NUMERIC, k, w->numeric[k].bytes,
						    w->numeric[k].saving};
	if (w->free_list_bytes)
		/* No saving claimed: which of these a full collection empties
		 * depends on the type and version (some stay till exit). */
		sec[n++] = (struct section){SEC_FREE_LISTS, 0, w->free_list_bytes, 0};
	qsort(sec, n, sizeof(*sec), section_cmp);
	return n;
}

static void section_title(const struct section *s, struct pm_strbuf *out)
{
	switch (s->kind) {
	case SEC_DUP:
		pm_strbuf_printf(out, "duplicate %s values", pm_dup_type_name(s->sub));
		break;
	case SEC_OVER:
		pm_strbuf_printf(out, "over-allocated %ss", pm_container_name(s->sub));
		break;
	case SEC_EMPTY:
		pm_strbuf_append(out, "empty containers");
		break;
	case SEC_TINY:
		pm_strbuf_printf(out, "tiny dicts (1 to %d items, not objects' __dict__s)",
				 PM_TINY_DICT_MAX);
		break;
	case SEC_SLOTS:
		pm_strbuf_append(out, "__slots__ candidates");
		break;
	case SEC_NUMERIC:
		pm_strbuf_printf(out, "big lists of %s", s->sub ? "ints" : "floats");
		break;
	case SEC_FREE_LISTS:
		pm_strbuf_append(out, "interpreter free lists");
		break;
	}
}

static void advice(const struct pm_waste *w, const struct section *s, struct pm_strbuf *out)
{
	char a[32], b[32], c3[32];
	switch (s->kind) {
	case SEC_DUP: {
		const struct pm_dup_stats *st = &w->dup[s->sub];
		if (s->sub == PM_DUP_STR)
			pm_strbuf_printf(out, "%" PRIu64 " strs repeat %" PRIu64 " values: "
					 "sys.intern() them where they are made (names, "
					 "keys, parsed fields) to save %s.",
					 st->copies, st->dup_values, human(s->saving, a, sizeof(a)));
		else
			pm_strbuf_printf(out, "%" PRIu64 " %s objects repeat %" PRIu64
					 " values: keep one of each (a dict of the values "
					 "seen, or store them in an array) to save %s.",
					 st->copies, pm_dup_type_name(s->sub), st->dup_values,
					 human(s->saving, a, sizeof(a)));
		break;
	}
	case SEC_OVER: {
		const struct pm_over_stats *o = &w->over[s->sub];
		const char *how = s->sub == PM_CONT_LIST ?
			"build them at their final size (list(x), a comprehension) or copy "
			"them once they stop growing (x[:])" :
			s->sub == PM_CONT_BYTEARRAY ?
			"copy them to bytes() once they stop growing" :
			"rebuild them once they stop changing (d = dict(d), s = set(s))";
		pm_strbuf_printf(out, "%" PRIu64 " %ss have %s of room they do not use; %s "
				 "to save %s.", o->over, pm_container_name(s->sub),
				 human(o->unused, a, sizeof(a)), how,
				 human(s->saving, b, sizeof(b)));
		break;
	}
	case SEC_EMPTY: {
		uint64_t n = 0;
		for (int c = 0; c < PM_CONT_KINDS; c++)
			n += w->empty[c].count;
		pm_strbuf_printf(out, "%" PRIu64 " containers hold nothing and take %s: "
				 "create them when the first item comes (None until "
				 "then) to save it", n, human(s->saving, a, sizeof(a)));
		const struct pm_waste_owner *top = w->empty_owners.n ?
			&w->empty_owners.top[0] : NULL;
		if (top)
			pm_strbuf_printf(out, " (the most: %" PRIu64 " in %s, %s)", top->count,
					 top->name, human(top->bytes, a, sizeof(a)));
		pm_strbuf_append(out, ".");
		break;
	}
	case SEC_TINY:
		pm_strbuf_printf(out, "%" PRIu64 " dicts of at most %d items take %s; "
				 "tuples, namedtuples or classes with __slots__ would "
				 "save about %s.", w->tiny_dicts, PM_TINY_DICT_MAX,
				 human(s->cost, a, sizeof(a)), human(s->saving, b, sizeof(b)));
		break;
	case SEC_FREE_LISTS:
		pm_strbuf_printf(out, "%" PRIu64 " dead objects (%s) wait on the interpreter's "
				 "free lists and caches for reuse (capped by the interpreter; "
				 "some a full gc.collect() empties, others stay until exit): "
				 "nothing for the program to change, no saving counted.",
				 w->free_list_count, human(s->cost, a, sizeof(a)));
		break;
	case SEC_NUMERIC: {
		const struct pm_numeric_stats *st = &w->numeric[s->sub];
		pm_strbuf_printf(out, "%" PRIu64 " lists of %d %s or more (%" PRIu64
				 " items) take %s with their objects; array.array('%s')%s "
				 "or a numpy array would save %s.", st->lists,
				 PM_NUMERIC_LIST_MIN, s->sub ? "ints" : "floats", st->items,
				 human(st->bytes, a, sizeof(a)), s->sub ? "q" : "d",
				 s->sub ? " (they fit in 64 bits)" : "",
				 human(s->saving, b, sizeof(b)));
		break;
	}
	case SEC_SLOTS: {
		const struct pm_slots_class *c = &w->classes[0];
		pm_strbuf_printf(out, "instances with a __dict__ take %s; __slots__ on "
				 "their classes would save %s (the most: %s, %" PRIu64
				 " instances: __slots__ = (%s) saves %s).",
				 human(s->cost, a, sizeof(a)), human(s->saving, b, sizeof(b)),
				 c->name, c->instances, c->name_list ? c->name_list : "",
				 human(c->saving, c3, sizeof(c3)));
		break;
	}
	}
}

struct view {
	const struct pm_graph *g;
	const struct pm_graph_paths *p;
	const struct pm_waste *w;
	long top;
	bool json;
};

static void example_json(const struct view *v, uint32_t node, struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"type\": ",
			 pm_graph_node_addr(v->g, node));
	pm_strbuf_json_string(out, pm_graph_node_type(v->g, node));
	pm_strbuf_printf(out, ", \"size\": %" PRIu64 ", \"path\": ",
			 pm_graph_node_size(v->g, node));
	struct pm_strbuf path;
	pm_strbuf_init(&path);
	path_text(v->g, v->p, node, &path);
	pm_strbuf_json_string(out, path.data ? path.data : "");
	pm_strbuf_deinit(&path);
	pm_strbuf_append(out, "}");
}

static size_t shown(const struct view *v, size_t have)
{
	return (size_t)v->top > have ? have : (size_t)v->top;
}

static void dup_section(const struct view *v, const struct section *s, struct pm_strbuf *out)
{
	const struct pm_waste *w = v->w;
	const struct pm_dup_stats *st = &w->dup[s->sub];
	size_t nvalues = st->dup_values;
	size_t want = shown(v, nvalues), done = 0;
	char a[32], b[32];
	if (v->json) {
		pm_strbuf_printf(out, ", \"objects\": %" PRIu64 ", \"object_bytes\": %" PRIu64
				 ", \"distinct\": %" PRIu64 ", \"duplicated_values\": %" PRIu64
				 ", \"copies\": %" PRIu64 ", \"interned\": %" PRIu64
				 ", \"skipped\": %" PRIu64 ", \"values\": [",
				 st->objects, st->bytes, st->distinct, st->dup_values,
				 st->copies, st->interned, st->skipped);
	} else {
		pm_strbuf_printf(out, "  %" PRIu64 " %s objects (%s) hold %" PRIu64 " distinct values; "
				 "%" PRIu64 " values are held %" PRIu64 " times (%s)",
				 st->objects, pm_dup_type_name(s->sub), human(st->bytes, a, sizeof(a)),
				 st->distinct, st->dup_values, st->copies,
				 human(s->cost, b, sizeof(b)));
		if (s->sub == PM_DUP_STR)
			pm_strbuf_printf(out, "; %" PRIu64 " strs are interned", st->interned);
		pm_strbuf_append(out, "\n");
		if (st->skipped)
			pm_strbuf_printf(out, "  (%" PRIu64 " not compared: unreadable, "
					 "inconsistent or over 64 KiB)\n", st->skipped);
		pm_strbuf_printf(out, "  %-8s %-10s %-8s %-18s %s\n", "copies", "saving",
				 "interned", "kept", "value, and where the kept copy is held");
	}
	for (size_t i = 0; i < w->nvalues && done < want; i++) {
		const struct pm_dup_value *d = &w->values[i];
		if (d->type != s->sub)
			continue;
		struct pm_strbuf text;
		pm_strbuf_init(&text);
		pm_dup_value_text(w, d, v->json ? PREVIEW_JSON : PREVIEW_TEXT, &text);
		if (v->json) {
			pm_strbuf_append(out, done ? ",\n    {\"value\": " : "\n    {\"value\": ");
			pm_strbuf_json_string(out, text.data ? text.data : "");
			pm_strbuf_printf(out, ", \"copies\": %" PRIu64 ", \"bytes\": %" PRIu64
					 ", \"saving\": %" PRIu64 ", \"interned\": %" PRIu64
					 ", \"examples\": [", d->copies, d->bytes_total,
					 d->saving, d->interned);
			for (uint32_t k = 0; k < d->nexamples; k++) {
				if (k)
					pm_strbuf_append(out, ", ");
				if (k == 0)
					example_json(v, d->examples[k], out);
				else
					pm_strbuf_printf(out, "{\"address\": %" PRIu64 "}",
							 pm_graph_node_addr(v->g, d->examples[k]));
			}
			pm_strbuf_append(out, "]}");
		} else {
			char kept[24];
			snprintf(kept, sizeof(kept), "0x%" PRIx64,
				 pm_graph_node_addr(v->g, d->examples[0]));
			pm_strbuf_printf(out, "  %-8" PRIu64 " %-10" PRIu64 " %-8" PRIu64
					 " %-18s %s  <- ", d->copies, d->saving, d->interned,
					 kept, text.data ? text.data : "");
			path_text(v->g, v->p, d->examples[0], out);
			pm_strbuf_append(out, "\n");
		}
		pm_strbuf_deinit(&text);
		done++;
	}
	if (v->json)
		pm_strbuf_append(out, done ? "\n  ]" : "]");
	else if (nvalues > done)
		pm_strbuf_printf(out, "  ... and %zu more values (--top N shows N)\n",
				 nvalues - done);
}

static void examples_out(const struct view *v, const struct pm_waste_example *ex,
			 uint32_t n, bool with_slots, struct pm_strbuf *out)
{
	size_t want = shown(v, n);
	if (v->json)
		pm_strbuf_append(out, ", \"examples\": [");
	for (size_t i = 0; i < want; i++) {
		uint32_t node = ex[i].node;
		if (v->json) {
			pm_strbuf_printf(out, "%s{\"address\": %" PRIu64 ", \"type\": ",
					 i ? ",\n    " : "\n    ",
					 pm_graph_node_addr(v->g, node));
			pm_strbuf_json_string(out, pm_graph_node_type(v->g, node));
			pm_strbuf_printf(out, ", \"bytes\": %" PRIu64 ", \"used\": %" PRIu64
					 ", \"capacity\": %" PRIu64 ", \"path\": ",
					 ex[i].figure, ex[i].used, ex[i].capacity);
			struct pm_strbuf path;
			pm_strbuf_init(&path);
			path_text(v->g, v->p, node, &path);
			pm_strbuf_json_string(out, path.data ? path.data : "");
			pm_strbuf_deinit(&path);
			pm_strbuf_append(out, "}");
		} else {
			pm_strbuf_printf(out, "  0x%-16" PRIx64 " %-10s %8" PRIu64 " B",
					 pm_graph_node_addr(v->g, node),
					 pm_graph_node_type(v->g, node), ex[i].figure);
			if (with_slots)
				pm_strbuf_printf(out, "  %" PRIu64 "/%" PRIu64,
						 ex[i].used, ex[i].capacity);
			pm_strbuf_append(out, "  <- ");
			path_text(v->g, v->p, node, out);
			pm_strbuf_append(out, "\n");
		}
	}
	if (v->json)
		pm_strbuf_append(out, want ? "\n  ]" : "]");
}

/* The holders of a finding's containers: lines "bytes count holder"
 * under a header naming what the bytes are, or in --json "owners" with
 * the bytes under the key `what`. */
static void owners_out(const struct view *v, const struct pm_waste_owners *o,
		       const char *what, struct pm_strbuf *out)
{
	if (v->json) {
		pm_strbuf_append(out, ", \"owners\": [");
		for (uint32_t i = 0; i < o->n; i++) {
			pm_strbuf_append(out, i ? ", {\"holder\": " : "{\"holder\": ");
			pm_strbuf_json_string(out, o->top[i].name);
			pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"%s\": %" PRIu64 "}",
					 o->top[i].count, what, o->top[i].bytes);
		}
		pm_strbuf_append(out, "]");
		return;
	}
	if (!o->n)
		return;
	pm_strbuf_printf(out, "  held by (%s, containers):\n", what);
	for (uint32_t i = 0; i < o->n && i < shown(v, o->n); i++)
		pm_strbuf_printf(out, "  %10" PRIu64 " B %8" PRIu64 "  %s\n",
				 o->top[i].bytes, o->top[i].count, o->top[i].name);
}

static void over_section(const struct view *v, const struct section *s, struct pm_strbuf *out)
{
	const struct pm_over_stats *o = &v->w->over[s->sub];
	char a[32], b[32];
	if (v->json) {
		pm_strbuf_printf(out, ", \"containers\": %" PRIu64 ", \"over_allocated\": %"
				 PRIu64 ", \"buffer_bytes\": %" PRIu64 ", \"unused\": %" PRIu64
				 ", \"deleted\": %" PRIu64, o->containers, o->over,
				 o->buffer_bytes, o->unused, o->deleted);
		owners_out(v, &o->owners, "unused", out);
	} else {
		pm_strbuf_printf(out, "  %" PRIu64 " of %" PRIu64 " %ss have unused slots: "
				 "%s of their buffers' %s", o->over, o->containers,
				 pm_container_name(s->sub), human(o->unused, a, sizeof(a)),
				 human(o->buffer_bytes, b, sizeof(b)));
		if (o->deleted)
			pm_strbuf_printf(out, " (%s in deleted entries)",
					 human(o->deleted, a, sizeof(a)));
		pm_strbuf_append(out, "\n");
		owners_out(v, &o->owners, "unused bytes", out);
		pm_strbuf_printf(out, "  the largest (unused bytes, used/allocated slots):\n");
	}
	examples_out(v, o->worst, o->nworst, true, out);
}

static void empty_section(const struct view *v, struct pm_strbuf *out)
{
	const struct pm_waste *w = v->w;
	char a[32];
	if (v->json) {
		pm_strbuf_append(out, ", \"by_type\": {");
		for (int c = 0; c < PM_CONT_KINDS; c++)
			pm_strbuf_printf(out, "%s\"%s\": {\"count\": %" PRIu64 ", \"bytes\": %"
					 PRIu64 "}", c ? ", " : "", pm_container_name(c),
					 w->empty[c].count, w->empty[c].bytes);
		pm_strbuf_append(out, "}");
	} else {
		pm_strbuf_append(out, " ");
		for (int c = 0; c < PM_CONT_KINDS; c++)
			if (w->empty[c].count)
				pm_strbuf_printf(out, " %" PRIu64 " %ss (%s)", w->empty[c].count,
						 pm_container_name(c),
						 human(w->empty[c].bytes, a, sizeof(a)));
		pm_strbuf_append(out, "\n");
	}
	owners_out(v, &w->empty_owners, "bytes", out);
	if (!v->json && w->empty_owners.n)
		pm_strbuf_append(out, "  the largest:\n");
	/* The largest of each kind, merged. */
	struct pm_waste_example ex[PM_CONT_KINDS * 16];
	uint32_t n = 0;
	for (int c = 0; c < PM_CONT_KINDS; c++)
		for (uint32_t i = 0; i < w->empty[c].nexamples; i++)
			ex[n++] = w->empty[c].examples[i];
	for (uint32_t i = 1; i < n; i++)
		for (uint32_t j = i; j > 0 && ex[j - 1].figure < ex[j].figure; j--) {
			struct pm_waste_example tmp = ex[j];
			ex[j] = ex[j - 1];
			ex[j - 1] = tmp;
		}
	examples_out(v, ex, n, false, out);
}

static void slots_section(const struct view *v, struct pm_strbuf *out)
{
	const struct pm_waste *w = v->w;
	size_t want = 0;
	for (size_t i = 0; i < w->nclasses; i++)
		want += w->classes[i].saving > 0;
	want = shown(v, want);
	if (v->json)
		pm_strbuf_append(out, ", \"classes\": [");
	else
		pm_strbuf_printf(out, "  %-24s %9s %6s %5s %7s %10s %10s %10s\n", "class",
				 "instances", "names", "sets", "common", "bytes now",
				 "slotted", "saving");
	for (size_t i = 0; i < want; i++) {
		const struct pm_slots_class *c = &w->classes[i];
		if (v->json) {
			pm_strbuf_append(out, i ? ",\n    {\"class\": " : "\n    {\"class\": ");
			pm_strbuf_json_string(out, c->name);
			pm_strbuf_printf(out, ", \"type\": %" PRIu64 ", \"instances\": %" PRIu64
					 ", \"with_dict\": %" PRIu64 ", \"names\": %u"
					 ", \"names_capped\": %s, \"name_sets\": %" PRIu64
					 ", \"commonest_set\": %" PRIu64 ", \"bytes_now\": %" PRIu64
					 ", \"bytes_slotted\": %" PRIu64 ", \"saving\": %" PRIu64
					 ", \"slots\": ", c->type, c->instances, c->with_dict,
					 c->names, c->names_capped ? "true" : "false",
					 c->name_sets, c->top_set_share, c->bytes_now,
					 c->bytes_slotted, c->saving);
			pm_strbuf_json_string(out, c->name_list ? c->name_list : "");
			pm_strbuf_append(out, ", \"example\": ");
			example_json(v, c->examples[0], out);
			pm_strbuf_append(out, "}");
		} else {
			pm_strbuf_printf(out, "  %-24s %9" PRIu64 " %6u %5" PRIu64 " %6.0f%% %10"
					 PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", c->name,
					 c->instances, c->names, c->name_sets,
					 c->instances ? 100.0 * (double)c->top_set_share /
					 (double)c->instances : 0.0, c->bytes_now,
					 c->bytes_slotted, c->saving);
			pm_strbuf_printf(out, "    __slots__ = (%s)  e.g. 0x%" PRIx64 " <- ",
					 c->name_list ? c->name_list : "",
					 pm_graph_node_addr(v->g, c->examples[0]));
			path_text(v->g, v->p, c->examples[0], out);
			pm_strbuf_append(out, "\n");
		}
	}
	if (v->json)
		pm_strbuf_append(out, want ? "\n  ]" : "]");
}

static void numeric_section(const struct view *v, const struct section *s,
			    struct pm_strbuf *out)
{
	const struct pm_numeric_stats *st = &v->w->numeric[s->sub];
	if (v->json)
		pm_strbuf_printf(out, ", \"lists\": %" PRIu64 ", \"items\": %" PRIu64,
				 st->lists, st->items);
	else
		pm_strbuf_printf(out, "  %" PRIu64 " lists, %" PRIu64 " items; the largest savings:\n",
				 st->lists, st->items);
	examples_out(v, st->examples, st->nexamples, false, out);
}

static void free_lists_section(const struct view *v, struct pm_strbuf *out)
{
	const struct pm_waste *w = v->w;
	char a[32];
	if (v->json)
		pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"by_type\": [",
				 w->free_list_count);
	for (uint32_t i = 0; i < w->nfree_lists; i++) {
		const struct pm_free_list_row *r = &w->free_lists[i];
		if (v->json) {
			pm_strbuf_append(out, i ? ", {\"type\": " : "{\"type\": ");
			pm_strbuf_json_string(out, r->type);
			pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
					 r->count, r->bytes);
		} else {
			pm_strbuf_printf(out, "  %-24s %8" PRIu64 " objects  %s\n", r->type,
					 r->count, human(r->bytes, a, sizeof(a)));
		}
	}
	if (v->json)
		pm_strbuf_append(out, "]");
}

static void tiny_section(const struct view *v, struct pm_strbuf *out)
{
	const struct pm_waste *w = v->w;
	char a[32], b[32];
	if (v->json)
		pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"as_tuples\": %" PRIu64,
				 w->tiny_dicts, w->tiny_dict_as_tuples);
	else
		pm_strbuf_printf(out, "  %" PRIu64 " dicts (%s); as tuples: %s\n",
				 w->tiny_dicts, human(w->tiny_dict_bytes, a, sizeof(a)),
				 human(w->tiny_dict_as_tuples, b, sizeof(b)));
	examples_out(v, w->tiny_examples, w->ntiny_examples, false, out);
}

struct pm_error *pm_report_waste(struct pm_target *t, const struct pm_report_args *args,
				 struct pm_strbuf *out)
{
	struct view v = {.top = args->top > 0 ? args->top : TOP_DEFAULT,
			 .json = args->format == PM_FORMAT_JSON};
	struct pm_error *err = pm_graph_get(t, &v.g);
	if (!err)
		err = pm_graph_paths_get(t, v.g, &v.p);
	struct pm_waste w;
	if (!err)
		err = pm_waste_analyse(t, v.g, v.p, &w);
	if (err)
		return err;
	v.w = &w;
	struct section sec[PM_DUP_TYPES + PM_CONT_KINDS + 6];
	size_t n = sections_of(&w, sec);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += sec[i].saving;
	char a[32];
	if (v.json) {
		pm_strbuf_printf(out, "\"total_saving\": %" PRIu64 ",\n\"content_full\": %s,\n"
				 "\"findings\": [", total, w.content_full ? "true" : "false");
	} else {
		pm_strbuf_printf(out, "waste: %zu findings; fixing them would save up to %s "
				 "(%" PRIu64 " bytes; findings may overlap)\n", n,
				 human(total, a, sizeof(a)), total);
		if (w.content_full)
			pm_strbuf_append(out, "(distinct values beyond 512 MiB of contents "
					 "were not compared)\n");
	}
	for (size_t i = 0; i < n; i++) {
		const struct section *s = &sec[i];
		struct pm_strbuf title, adv;
		pm_strbuf_init(&title);
		pm_strbuf_init(&adv);
		section_title(s, &title);
		advice(&w, s, &adv);
		static const char *kinds[] = {"duplicates", "over-allocation", "empty",
					      "tiny-dicts", "slots", "numeric-lists",
					      "free-lists"};
		if (v.json) {
			pm_strbuf_append(out, i ? ",\n {\"finding\": " : "\n {\"finding\": ");
			pm_strbuf_json_string(out, kinds[s->kind]);
			pm_strbuf_append(out, ", \"type\": ");
			pm_strbuf_json_string(out, s->kind == SEC_DUP ? pm_dup_type_name(s->sub) :
					      s->kind == SEC_OVER ? pm_container_name(s->sub) :
					      s->kind == SEC_TINY ? "dict" :
					      s->kind == SEC_SLOTS ? "classes" :
					      s->kind == SEC_NUMERIC ? (s->sub ? "int" : "float") :
					      s->kind == SEC_FREE_LISTS ? "objects" :
					      "containers");
			pm_strbuf_append(out, ", \"title\": ");
			pm_strbuf_json_string(out, title.data ? title.data : "");
			pm_strbuf_printf(out, ", \"cost\": %" PRIu64 ", \"saving\": %" PRIu64
					 ", \"advice\": ", s->cost, s->saving);
			pm_strbuf_json_string(out, adv.data ? adv.data : "");
		} else {
			char c[32], sv[32];
			pm_strbuf_printf(out, "\n%zu. %s: costs %s, a fix saves %s\n", i + 1,
					 title.data ? title.data : "", human(s->cost, c, sizeof(c)),
					 human(s->saving, sv, sizeof(sv)));
		}
		switch (s->kind) {
		case SEC_DUP: dup_section(&v, s, out); break;
		case SEC_OVER: over_section(&v, s, out); break;
		case SEC_EMPTY: empty_section(&v, out); break;
		case SEC_TINY: tiny_section(&v, out); break;
		case SEC_SLOTS: slots_section(&v, out); break;
		case SEC_NUMERIC: numeric_section(&v, s, out); break;
		case SEC_FREE_LISTS: free_lists_section(&v, out); break;
		}
		if (v.json)
			pm_strbuf_append(out, "}");
		else
			pm_strbuf_printf(out, "  advice: %s\n", adv.data ? adv.data : "");
		pm_strbuf_deinit(&title);
		pm_strbuf_deinit(&adv);
	}
	if (v.json)
		pm_strbuf_append(out, n ? "\n]" : "]");
	pm_waste_deinit(&w);
	return NULL;
}
