/* The report registry and runner: finds a report by name, runs it, puts
 * first what makes its figures partial (a truncated core, memory no walker
 * reads) and adds the warnings collected on the target (problems that did
 * not stop it).
 *
 * Convention: in JSON mode a report function writes the *members* of the
 * top-level object (`"regions": [...]`); this file adds the braces, a
 * "partial_reasons" member before them and a "warnings" member after, so
 * every JSON document has the same envelope. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "report.h"

struct report_entry {
	struct pm_report_desc desc;
	pm_report_fn *fn;
};

static const struct report_entry reports[] = {
	{{"regions", "every mapping with its label"}, pm_report_regions},
	{{"info", "what was detected: executable, versions, modules, symbols"},
	 pm_report_info},
	{{"digest", "a digest of every readable region's bytes (for testing)"},
	 pm_report_digest},
	{{"malloc-stats", "glibc malloc totals per arena (mallinfo2's fields)"},
	 pm_report_malloc_stats},
	{{"chunks", "glibc malloc chunks (--used/--free, --min-size)"},
	 pm_report_chunks},
	{{"sizes", "in-use allocations by size: glibc chunks, pymalloc blocks (--top N)"},
	 pm_report_sizes},
	{{"pymalloc-stats", "pymalloc arenas, pools and blocks, as sys._debugmallocstats()"},
	 pm_report_pymalloc_stats},
	{{"summary", "every in-use allocation by Python type / owner / allocator"},
	 pm_report_summary},
	{{"objects", "recognised Python objects (--type T, --min-size N, --limit N)"},
	 pm_report_objects},
	{{"allocations", "every allocation with a preview (--used/--free/--all, --type T, --min-size N, --limit N)"},
	 pm_report_allocations},
	{{"select", "allocations matching --query EXPR, e.g. 'kind == \"str\" and size > 1000'"},
	 pm_report_select},
	{{"describe", "what contains --address ADDR: region, chunk/pool/block, object, owner"},
	 pm_report_describe},
	{{"hexdump", "bytes at --address ADDR (--length N, default 256)"},
	 pm_report_hexdump},
	{{"referents", "what the object at ADDR refers to, and how (dict key, attribute, index, ...)"},
	 pm_report_referents},
	{{"referrers", "every object (and root) that refers to the object at ADDR, and how"},
	 pm_report_referrers},
	{{"path", "the shortest chain of references from a root to the object at ADDR"},
	 pm_report_path},
	{{"unreachable", "what gc.collect() would free now, by type"},
	 pm_report_unreachable},
	{{"outside", "objects held from outside the heap by something no root names"},
	 pm_report_outside},
	{{"graph", "the reference graph: its size (text) or every object and edge (--json)"},
	 pm_report_graph},
	{{"retained", "objects retaining the most (dominator tree), with paths; retained ADDR: one object"},
	 pm_report_retained},
	{{"suspects", "leak suspects: objects retaining over --threshold % (default 10) of the heap"},
	 pm_report_suspects},
	{{"rss", "why RSS does not drop: writable memory split into objects, allocator free memory, overhead, the rest"},
	 pm_report_rss},
	{{"fragmentation", "per arena: free memory by class, what malloc_trim(0) would return, pinned pymalloc arenas, advice"},
	 pm_report_fragmentation},
	{{"waste", "memory a change to the program would save: duplicate values, __slots__, over-allocated and empty containers, tiny dicts, numeric lists (--top N)"},
	 pm_report_waste},
};

#define NREPORTS (sizeof(reports) / sizeof(reports[0]))

const struct pm_report_desc *pm_report_list(void)
{
	static struct pm_report_desc list[NREPORTS + 1];
	for (size_t i = 0; i < NREPORTS; i++)
		list[i] = reports[i].desc;
	list[NREPORTS] = (struct pm_report_desc){NULL, NULL};
	return list;
}

#define WARNINGS_SHOWN_TEXT 20

static void append_warnings(struct pm_target *t, enum pm_output_format format,
			    struct pm_strbuf *out)
{
	size_t total = pm_target_warning_count(t);
	size_t stored = pm_target_warnings_stored(t);
	if (format == PM_FORMAT_JSON) {
		pm_strbuf_printf(out, ",\n\"warning_count\": %zu,\n\"warnings\": [", total);
		for (size_t i = 0; i < stored; i++) {
			const struct pm_diag *d = pm_target_warning(t, i);
			pm_strbuf_append(out, i ? ",\n  {" : "\n  {");
			if (d->has_address)
				pm_strbuf_printf(out, "\"address\": %llu, ",
						 (unsigned long long)d->address);
			pm_strbuf_append(out, "\"message\": ");
			pm_strbuf_json_string(out, d->message);
			pm_strbuf_append(out, "}");
		}
		pm_strbuf_append(out, stored ? "\n]" : "]");
		return;
	}
	if (total == 0)
		return;
	pm_strbuf_printf(out, "\nwarnings (%zu):\n", total);
	for (size_t i = 0; i < stored && i < WARNINGS_SHOWN_TEXT; i++) {
		const struct pm_diag *d = pm_target_warning(t, i);
		if (d->has_address)
			pm_strbuf_printf(out, "  0x%llx: %s\n",
					 (unsigned long long)d->address, d->message);
		else
			pm_strbuf_printf(out, "  %s\n", d->message);
	}
	if (total > WARNINGS_SHOWN_TEXT)
		pm_strbuf_printf(out, "  ... and %zu more (see --json)\n",
				 total - WARNINGS_SHOWN_TEXT);
}

#define PARTIAL_RANGES_SHOWN_TEXT 3

static void append_partial_json(struct pm_target *t, struct pm_strbuf *out)
{
	size_t n = pm_target_partial_count(t);
	pm_strbuf_append(out, "\"partial_reasons\": [");
	for (size_t i = 0; i < n; i++) {
		const struct pm_partial *p = pm_target_partial(t, i);
		pm_strbuf_append(out, i ? ",\n  {\"reason\": " : "\n  {\"reason\": ");
		pm_strbuf_json_string(out, p->reason);
		pm_strbuf_append(out, ", \"message\": ");
		pm_strbuf_json_string(out, p->message);
		pm_strbuf_append(out, ", \"figure\": ");
		if (p->figure)
			pm_strbuf_json_string(out, p->figure);
		else
			pm_strbuf_append(out, "null");
		pm_strbuf_printf(out, ", \"missing_bytes\": %" PRIu64 ", \"ranges\": [",
				 p->missing_bytes);
		for (size_t k = 0; k < p->nranges; k++)
			pm_strbuf_printf(out, "%s{\"start\": %" PRIu64 ", \"end\": %"
					 PRIu64 ", \"missing\": %" PRIu64 "}",
					 k ? ", " : "", p->ranges[k].start,
					 p->ranges[k].end, p->ranges[k].missing);
		pm_strbuf_append(out, "]}");
	}
	pm_strbuf_append(out, n ? "\n]" : "]");
}

static void append_partial_text(struct pm_target *t, struct pm_strbuf *out)
{
	for (size_t i = 0; i < pm_target_partial_count(t); i++) {
		const struct pm_partial *p = pm_target_partial(t, i);
		pm_strbuf_printf(out, "partial: %s\n", p->message);
		size_t shown = p->nranges < PARTIAL_RANGES_SHOWN_TEXT ?
			p->nranges : PARTIAL_RANGES_SHOWN_TEXT;
		for (size_t k = 0; k < shown; k++) {
			char missing[32], size[32];
			const struct pm_partial_range *r = &p->ranges[k];
			pm_strbuf_printf(out, "partial:   0x%" PRIx64 "-0x%" PRIx64
					 ": %s of %s bytes missing\n", r->start,
					 r->end, pm_format_grouped(r->missing, missing),
					 pm_format_grouped(r->end - r->start, size));
		}
		if (p->nranges > shown)
			pm_strbuf_printf(out, "partial:   ... and %zu more (see --json)\n",
					 p->nranges - shown);
	}
}

/* The figures of the partial facts, "; "-separated; false if none. */
static bool partial_figures(struct pm_target *t, struct pm_strbuf *out)
{
	const char *sep = "";
	for (size_t i = 0; i < pm_target_partial_count(t); i++) {
		const struct pm_partial *p = pm_target_partial(t, i);
		if (!p->figure)
			continue;
		pm_strbuf_printf(out, "%s%s", sep, p->figure);
		sep = "; ";
	}
	return *sep != '\0';
}

void pm_report_mark_total_partial(struct pm_target *t, struct pm_strbuf *out)
{
	struct pm_strbuf figures;
	pm_strbuf_init(&figures);
	if (partial_figures(t, &figures) && out->len && figures.data &&
	    out->data[out->len - 1] == '\n') {
		out->len--;     /* onto the total's own line */
		pm_strbuf_printf(out, "  partial: %s\n", figures.data);
	}
	pm_strbuf_deinit(&figures);
}

void pm_report_partial_figure_json(struct pm_target *t, struct pm_strbuf *out)
{
	struct pm_strbuf figures;
	pm_strbuf_init(&figures);
	if (partial_figures(t, &figures) && figures.data)
		pm_strbuf_json_string(out, figures.data);
	else
		pm_strbuf_append(out, "null");
	pm_strbuf_deinit(&figures);
}

struct pm_error *pm_report_note_unaccounted(struct pm_target *t,
					    uint64_t attributed)
{
	bool other_allocator = false;
	for (size_t i = 0; i < pm_target_partial_count(t); i++)
		if (!strcmp(pm_target_partial(t, i)->reason, "other-allocator"))
			other_allocator = true;
	uint64_t writable = pm_target_writable_bytes(t);
	if (!other_allocator || writable <= attributed)
		return NULL;
	uint64_t unaccounted = writable - attributed;
	char a[32], w[32], u[32], message[320], figure[160];
	double pct = 100.0 * (double)unaccounted / (double)writable;
	pm_format_grouped(attributed, a);
	pm_format_grouped(writable, w);
	pm_format_grouped(unaccounted, u);
	snprintf(message, sizeof(message),
		 "this report accounts for %s of the process's %s writable bytes: %s (%.1f%%) are not accounted for, and %% bytes is of the accounted part only",
		 a, w, u, pct);
	snprintf(figure, sizeof(figure),
		 "%s of %s writable bytes (%.1f%%) not accounted for", u, w, pct);
	struct pm_partial partial = {
		.reason = "unaccounted",
		.message = message,
		.figure = figure,
		.missing_bytes = unaccounted,
		.this_report = true,
	};
	return pm_target_add_partial(t, &partial);
}

/* Cuts every line that would not fit a terminal `width` columns wide (GDB's
 * `set width`) to width - 1 columns ending in "...": a line filling the last
 * column makes terminals and GDB's pager wrap on their own. */
static void cut_lines(struct pm_strbuf *in, size_t width, struct pm_strbuf *out)
{
	const char *p = in->data ? in->data : "";
	width--;
	while (*p) {
		size_t len = strcspn(p, "\n");
		if (len > width && width > 3) {
			pm_strbuf_appendn(out, p, width - 3);
			pm_strbuf_append(out, "...");
		} else {
			pm_strbuf_appendn(out, p, len);
		}
		if (p[len] == '\n')
			pm_strbuf_append(out, "\n");
		p += len + (p[len] == '\n');
	}
}

struct pm_error *pm_report_run(struct pm_target *t, const char *name,
			       const struct pm_report_args *args, char **ret)
{
	const struct report_entry *entry = NULL;
	for (size_t i = 0; i < NREPORTS; i++)
		if (strcmp(reports[i].desc.name, name) == 0)
			entry = &reports[i];
	if (!entry)
		return pm_error_format(PM_ERR_INVALID, "no report named '%s'", name);
	struct pm_report_args defaults = {0};
	if (!args)
		args = &defaults;
	/* One check for every report that takes a state filter. */
	if (args->state && strcmp(args->state, "used") != 0 &&
	    strcmp(args->state, "free") != 0 && strcmp(args->state, "all") != 0)
		return pm_error_format(PM_ERR_INVALID,
				       "state must be used, free or all, not '%s'",
				       args->state);
	/* A process that exited mid-analysis left nothing true to report. */
	struct pm_error *err = pm_target_exited(t);
	if (err)
		return err;
	pm_target_drop_report_partials(t);
	uint32_t outer_uses = pm_target_report_begin(t);
	struct pm_strbuf body;
	pm_strbuf_init(&body);
	err = entry->fn(t, args, &body);
	struct pm_error *exited = pm_target_exited(t);
	if (exited) {
		pm_error_destroy(err);
		err = exited;
	}
	if (err) {
		pm_strbuf_deinit(&body);
		pm_target_drop_report_partials(t);
		pm_target_report_end(t, outer_uses);
		return err;
	}
	/* The partial facts are known once the report has run (the walks it
	 * started found them), but go first. */
	struct pm_strbuf out;
	pm_strbuf_init(&out);
	if (args->format == PM_FORMAT_JSON) {
		pm_strbuf_append(&out, "{\n");
		append_partial_json(t, &out);
		if (body.len)
			pm_strbuf_append(&out, ",\n");
	} else {
		append_partial_text(t, &out);
	}
	pm_strbuf_appendn(&out, body.data ? body.data : "", body.len);
	if (body.failed)
		out.failed = true;
	pm_strbuf_deinit(&body);
	pm_target_drop_report_partials(t);
	append_warnings(t, args->format, &out);
	pm_target_report_end(t, outer_uses);
	if (args->format == PM_FORMAT_JSON)
		pm_strbuf_append(&out, "\n}\n");
	else if (args->width > 0) {
		struct pm_strbuf cut;
		pm_strbuf_init(&cut);
		cut_lines(&out, (size_t)args->width, &cut);
		pm_strbuf_deinit(&out);
		out = cut;
	}
	*ret = pm_strbuf_steal(&out);
	return *ret ? NULL : &pm_error_no_memory;
}
