/* Reports of the CPython layer: "pymalloc-stats" (the pymalloc part of
 * sys._debugmallocstats(), computed from the walk) and "summary" (every
 * in-use allocation of the process in exactly one category row). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pymalloc.h"
#include "python_version.h"
#include "report.h"

static void python_version_text(const struct pm_python_info *py, char *buf,
				size_t size)
{
	if (py->micro >= 0)
		snprintf(buf, size, "%d.%d.%d", py->major, py->minor, py->micro);
	else
		snprintf(buf, size, "%d.%d", py->major, py->minor);
}

/* One "label = value" line, laid out as CPython's printone() does. */
static void stats_line(struct pm_strbuf *out, const char *label, int64_t value)
{
	char num[32];
	if (value < 0)
		snprintf(num, sizeof(num), "unknown");
	else
		pm_format_grouped((uint64_t)value, num);
	pm_strbuf_printf(out, "%-35s= %20s\n", label, num);
}

static void pymalloc_state_text(const struct pm_pymalloc *pm,
				const struct pm_pymalloc_state *s,
				struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "Small block threshold = 512, in %d size classes.\n\n",
			 PM_PYMALLOC_NCLASSES);
	pm_strbuf_append(out, "class   size   num pools   blocks in use  avail blocks\n"
			      "-----   ----   ---------   -------------  ------------\n");
	for (uint16_t i = 0; i < PM_PYMALLOC_NCLASSES; i++) {
		const struct pm_pymalloc_class *c = &s->classes[i];
		if (!c->pools)
			continue;
		pm_strbuf_printf(out, "%5u %6u %11" PRIu64 " %15" PRIu64 " %13" PRIu64 "\n",
				 i, pm_pymalloc_block_size(i), c->pools,
				 c->used_blocks, c->avail_blocks);
	}
	pm_strbuf_append(out, "\n");
	int64_t reclaimed = s->ntimes_arena_allocated < 0 ? -1 :
		s->ntimes_arena_allocated - (int64_t)s->narenas;
	stats_line(out, "# arenas allocated total", s->ntimes_arena_allocated);
	stats_line(out, "# arenas reclaimed", reclaimed);
	stats_line(out, "# arenas highwater mark", s->narenas_highwater);
	stats_line(out, "# arenas allocated current", (int64_t)s->narenas);
	char label[64];
	snprintf(label, sizeof(label), "%" PRIu64 " arenas * %u bytes/arena",
		 s->narenas, pm->arena_size);
	stats_line(out, label, (int64_t)(s->narenas * pm->arena_size));
	pm_strbuf_append(out, "\n");
	stats_line(out, "# bytes in allocated blocks", (int64_t)s->allocated_bytes);
	stats_line(out, "# bytes in available blocks", (int64_t)s->available_bytes);
	snprintf(label, sizeof(label), "%" PRIu64 " unused pools * %u bytes",
		 s->unused_pools, pm->pool_size);
	stats_line(out, label, (int64_t)(s->unused_pools * pm->pool_size));
	stats_line(out, "# bytes lost to pool headers", (int64_t)s->pool_header_bytes);
	stats_line(out, "# bytes lost to quantization", (int64_t)s->quantization);
	stats_line(out, "# bytes lost to arena alignment", (int64_t)s->arena_alignment);
	stats_line(out, "Total", (int64_t)pm_pymalloc_state_total(pm, s));
}

static void json_count(struct pm_strbuf *out, const char *key, int64_t value)
{
	pm_strbuf_json_string(out, key);
	if (value < 0)
		pm_strbuf_append(out, ": null, ");
	else
		pm_strbuf_printf(out, ": %" PRId64 ", ", value);
}

static void pymalloc_state_json(const struct pm_pymalloc *pm,
				const struct pm_pymalloc_state *s,
				struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "{\"interpreter\": %" PRIu64 ", \"state\": %" PRIu64
			 ", \"classes\": [", s->interp, s->address);
	const char *sep = "";
	for (uint16_t i = 0; i < PM_PYMALLOC_NCLASSES; i++) {
		const struct pm_pymalloc_class *c = &s->classes[i];
		if (!c->pools)
			continue;
		pm_strbuf_printf(out, "%s{\"class\": %u, \"size\": %u, \"num pools\": %"
				 PRIu64 ", \"blocks in use\": %" PRIu64
				 ", \"avail blocks\": %" PRIu64 "}",
				 sep, i, pm_pymalloc_block_size(i), c->pools,
				 c->used_blocks, c->avail_blocks);
		sep = ", ";
	}
	pm_strbuf_append(out, "], ");
	json_count(out, "arenas allocated total", s->ntimes_arena_allocated);
	json_count(out, "arenas reclaimed", s->ntimes_arena_allocated < 0 ? -1 :
		   s->ntimes_arena_allocated - (int64_t)s->narenas);
	json_count(out, "arenas highwater mark", s->narenas_highwater);
	json_count(out, "arenas allocated current", (int64_t)s->narenas);
	json_count(out, "bytes in arenas", (int64_t)(s->narenas * pm->arena_size));
	json_count(out, "bytes in allocated blocks", (int64_t)s->allocated_bytes);
	json_count(out, "bytes in available blocks", (int64_t)s->available_bytes);
	json_count(out, "unused pools", (int64_t)s->unused_pools);
	json_count(out, "bytes in unused pools", (int64_t)(s->unused_pools * pm->pool_size));
	json_count(out, "bytes lost to pool headers", (int64_t)s->pool_header_bytes);
	json_count(out, "bytes lost to quantization", (int64_t)s->quantization);
	json_count(out, "bytes lost to arena alignment", (int64_t)s->arena_alignment);
	pm_strbuf_printf(out, "\"total\": %" PRIu64 "}", pm_pymalloc_state_total(pm, s));
}

static void python_json(const struct pm_python_info *py, struct pm_strbuf *out)
{
	char version[32];
	python_version_text(py, version, sizeof(version));
	pm_strbuf_append(out, "\"python\": {\"found\": ");
	pm_strbuf_append(out, py->is_python ? "true" : "false");
	if (py->is_python) {
		pm_strbuf_append(out, ", \"version\": ");
		pm_strbuf_json_string(out, version);
		pm_strbuf_append(out, ", \"version_source\": ");
		pm_strbuf_json_string(out, py->version_source ? py->version_source : "none");
		pm_strbuf_printf(out, ", \"free_threaded\": %s",
				 py->free_threaded ? "true" : "false");
	}
	pm_strbuf_printf(out, ", \"supported\": %s", py->supported ? "true" : "false");
	if (!py->supported) {
		pm_strbuf_append(out, ", \"unsupported\": ");
		pm_strbuf_json_string(out, py->unsupported);
	}
	pm_strbuf_append(out, "}");
}

static void pymalloc_stats_json(const struct pm_python_info *py,
				const struct pm_pymalloc *pm, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "{");
	python_json(py, out);
	pm_strbuf_printf(out, ", \"found\": %s", pm->found ? "true" : "false");
	if (!pm->found) {
		pm_strbuf_append(out, ", \"missing\": ");
		pm_strbuf_json_string(out, pm->missing);
		pm_strbuf_append(out, "}\n");
		return;
	}
	pm_strbuf_printf(out, ", \"in_use\": %s, \"how\": ", pm->in_use ? "true" : "false");
	pm_strbuf_json_string(out, pm->how);
	pm_strbuf_printf(out, ", \"arena_size\": %u, \"pool_size\": %u, \"problems\": %"
			 PRIu64 ", \"states\": [", pm->arena_size, pm->pool_size,
			 pm->problems);
	for (size_t i = 0; i < pm->nstates; i++) {
		if (i)
			pm_strbuf_append(out, ", ");
		pymalloc_state_json(pm, &pm->states[i], out);
	}
	pm_strbuf_append(out, "]}\n");
}

static void pymalloc_stats_text(const struct pm_python_info *py,
				const struct pm_pymalloc *pm, struct pm_strbuf *out)
{
	char version[32];
	if (!pm->found) {
		pm_strbuf_printf(out, "pymalloc: not analysed: %s\n", pm->missing);
		return;
	}
	python_version_text(py, version, sizeof(version));
	pm_strbuf_printf(out, "CPython %s (version from %s); pymalloc state found by %s\n",
			 version, py->version_source, pm->how);
	if (!pm->in_use) {
		pm_strbuf_append(out, "pymalloc is not in use (no arena allocated; "
				      "PYTHONMALLOC=malloc?)\n");
		return;
	}
	for (size_t i = 0; i < pm->nstates; i++) {
		const struct pm_pymalloc_state *s = &pm->states[i];
		if (s->interp)
			pm_strbuf_printf(out, "\n%s interpreter 0x%" PRIx64 ":\n",
					 i ? "Sub-" : "Main", s->interp);
		else
			pm_strbuf_append(out, "\n");
		pymalloc_state_text(pm, s, out);
	}
}

struct pm_error *pm_report_pymalloc_stats(struct pm_target *t,
					  const struct pm_report_args *args,
					  struct pm_strbuf *out)
{
	const struct pm_python_info *py;
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_python_detect(t, &py);
	if (!err)
		err = pm_pymalloc_walk(t, &pm);
	if (err)
		return err;
	if (args->format == PM_FORMAT_JSON)
		pymalloc_stats_json(py, pm, out);
	else
		pymalloc_stats_text(py, pm, out);
	return NULL;
}

struct pm_error *pm_report_summary(struct pm_target *t,
				   const struct pm_report_args *args,
				   struct pm_strbuf *out)
{
	(void)t; (void)args; (void)out;
	return pm_error_format(PM_ERR_UNSUPPORTED, "summary: not yet");
}
