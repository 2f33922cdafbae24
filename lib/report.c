/* The report registry and runner: finds a report by name, runs it, and adds
 * the warnings collected on the target (problems that did not stop it).
 *
 * Convention: in JSON mode a report function writes the *members* of the
 * top-level object (`"regions": [...]`); this file adds the braces and a
 * "warnings" member, so every JSON document has the same envelope. */
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
	struct pm_strbuf out;
	pm_strbuf_init(&out);
	if (args->format == PM_FORMAT_JSON)
		pm_strbuf_append(&out, "{\n");
	struct pm_error *err = entry->fn(t, args, &out);
	if (err) {
		pm_strbuf_deinit(&out);
		return err;
	}
	append_warnings(t, args->format, &out);
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
