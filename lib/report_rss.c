/* Reports on why resident memory does not drop: "rss" (the writable memory
 * split into Python objects, other allocations, allocator free memory,
 * allocator overhead and memory no allocator owns, per region and in all)
 * and "fragmentation" (per glibc arena its free memory and what
 * malloc_trim(0) would return; per pymalloc arena its pools, and the
 * arenas a few live blocks pin, with those blocks' objects and paths;
 * advice in plain words). The figures come from rss.c and fragmentation.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpython.h"
#include "fragmentation.h"
#include "graph_path.h"
#include "report.h"
#include "rss.h"

enum {
	REGIONS_SHOWN_DEFAULT = 15,
	PINNED_ARENAS_SHOWN = 10,
	PINNED_BLOCKS_PER_ARENA_SHOWN = 5,
	PATHS_DEFAULT = 25,
};
#define ADVICE_MIN_BYTES (1u << 20)

/* 1536 -> "1.5 KiB": the figures of advice lines. */
static const char *human(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%" PRIu64 " bytes", bytes);
	else
		snprintf(buf, size, "%.1f %s", v, units[u]);
	return buf;
}

/* A figure that needs per-page residency: null without it. */
static void optional_u64(struct pm_strbuf *out, bool known, uint64_t value)
{
	if (known)
		pm_strbuf_printf(out, "%" PRIu64, value);
	else
		pm_strbuf_append(out, "null");
}

static void resident_json(struct pm_strbuf *out, const struct pm_resident_bytes *b,
			  bool per_page)
{
	if (per_page)
		pm_strbuf_printf(out, "{\"bytes\": %" PRIu64 ", \"resident\": %" PRIu64
				 ", \"swapped\": %" PRIu64 "}", b->bytes, b->resident,
				 b->swapped);
	else
		pm_strbuf_printf(out, "{\"bytes\": %" PRIu64 ", \"resident\": null, \"swapped\": null}",
				 b->bytes);
}

/* Runs the walks and the analysis the reports read (they are cached on
 * the target). First, because reading the target faults pages in (a
 * library's data pages not touched yet): the residency is read after,
 * so it describes the process as it is once pymortem has looked. */
static struct pm_error *analyse_first(struct pm_target *t, bool with_paths)
{
	const struct pm_glibc_heap *h;
	struct pm_error *err = pm_glibc_walk(t, &h);
	if (err)
		return err;
	const struct pm_cpython_heap *heap;
	err = pm_cpython_analyse(t, &heap);
	if (err && err->code != PM_ERR_INTERRUPTED && err != &pm_error_no_memory) {
		pm_error_destroy(err);
		return NULL;        /* the reports say what is missing */
	}
	if (err || !with_paths || !heap->python)
		return err;
	const struct pm_graph *g;
	const struct pm_graph_paths *paths;
	err = pm_graph_get(t, &g);
	if (!err)
		err = pm_graph_paths_get(t, g, &paths);
	if (err && err->code != PM_ERR_INTERRUPTED && err != &pm_error_no_memory) {
		pm_error_destroy(err);
		err = NULL;
	}
	return err;
}

/* The residency every figure below depends on, and what it means. */
static struct pm_error *residency_for_report(struct pm_target *t, bool with_paths,
					     struct pm_residency **ret)
{
	struct pm_error *err = analyse_first(t, with_paths);
	if (err)
		return err;
	err = pm_residency_create(t, ret);
	if (err)
		return err;
	if (pm_residency_source(*ret) == PM_RESIDENCY_SMAPS) {
		struct pm_partial partial = {
			.reason = "residency-per-mapping",
			.message = "pagemap is not readable: resident bytes are known per mapping only, not per part",
			.figure = "resident bytes per part unknown",
			.this_report = true,
		};
		err = pm_target_add_partial(t, &partial);
	} else if (pm_residency_source(*ret) == PM_RESIDENCY_NONE) {
		struct pm_partial partial = {
			.reason = "residency-unknown",
			.message = "this target tells no resident bytes (neither a live process nor a core): only address-space bytes are given",
			.figure = "resident bytes unknown",
			.this_report = true,
		};
		err = pm_target_add_partial(t, &partial);
	}
	if (err) {
		pm_residency_destroy(*ret);
		*ret = NULL;
	}
	return err;
}

/* The glibc analysis, or NULL (and a line saying why) when glibc malloc
 * is not the allocator. */
static struct pm_error *glibc_fragmentation(struct pm_target *t, struct pm_residency *res,
					    struct pm_glibc_fragmentation **ret,
					    const char **missing)
{
	*ret = NULL;
	*missing = NULL;
	const struct pm_glibc_heap *h;
	struct pm_error *err = pm_glibc_walk(t, &h);
	if (err)
		return err;
	if (h->other_allocator) {
		*missing = h->other_allocator;
		return NULL;
	}
	return pm_glibc_fragmentation_create(t, res, ret);
}

/* ------------------------------------------------------------------ rss */

static const char *region_name(struct pm_target *t, const struct pm_region *r,
			       char *buf, size_t size)
{
	char label[160];
	pm_region_label_text(r, label, sizeof(label));
	snprintf(buf, size, "%s", label);
	(void)t;
	return buf;
}

static void rss_json(struct pm_target *t, const struct pm_rss *rss, struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "\"residency_source\": \"%s\",\n\"per_page\": %s,\n\"total\": ",
			 pm_residency_source_name(rss->source), rss->per_page ? "true" : "false");
	resident_json(out, &rss->total, rss->source != PM_RESIDENCY_NONE);
	if (rss->smaps_known && (rss->source == PM_RESIDENCY_PAGEMAP ||
				 rss->source == PM_RESIDENCY_SMAPS))
		pm_strbuf_printf(out, ",\n\"smaps\": {\"rss\": %" PRIu64 ", \"swap\": %" PRIu64 "}",
				 rss->smaps_rss, rss->smaps_swap);
	else
		pm_strbuf_append(out, ",\n\"smaps\": null");
	struct pm_resident_bytes sum = {0};
	for (size_t p = 0; p < PM_RSS_PARTS; p++) {
		sum.bytes += rss->parts[p].bytes;
		sum.resident += rss->parts[p].resident;
		sum.swapped += rss->parts[p].swapped;
	}
	pm_strbuf_printf(out, ",\n\"parts_add_up\": %s,\n\"walked\": {\"glibc\": %s, \"pymalloc\": %s, \"python\": %s},\n\"parts\": {",
			 sum.bytes == rss->total.bytes && (!rss->per_page ||
			 (sum.resident == rss->total.resident &&
			  sum.swapped == rss->total.swapped)) ? "true" : "false",
			 rss->glibc ? "true" : "false", rss->pymalloc ? "true" : "false",
			 rss->python ? "true" : "false");
	for (size_t p = 0; p < PM_RSS_PARTS; p++) {
		pm_strbuf_printf(out, "%s\n  \"%s\": {\"name\": \"%s\", \"group\": \"%s\", \"value\": ",
				 p ? "," : "", pm_rss_part_key(p), pm_rss_part_name(p),
				 pm_rss_part_group(p));
		resident_json(out, &rss->parts[p], rss->per_page);
		pm_strbuf_append(out, "}");
	}
	pm_strbuf_append(out, "\n},\n\"other_by_domain\": [");
	for (size_t i = 0; i < rss->domains.size; i++) {
		pm_strbuf_append(out, i ? ",\n  {\"domain\": " : "\n  {\"domain\": ");
		pm_strbuf_json_string(out, rss->domains.data[i].domain);
		pm_strbuf_append(out, ", \"value\": ");
		resident_json(out, &rss->domains.data[i].bytes, rss->per_page);
		pm_strbuf_append(out, "}");
	}
	pm_strbuf_append(out, rss->domains.size ? "\n],\n\"regions\": [" : "],\n\"regions\": [");
	for (size_t k = 0; k < rss->regions.size; k++) {
		const struct pm_rss_region *rr = &rss->regions.data[k];
		const struct pm_region *r = pm_target_region(t, rr->region);
		char label[160];
		pm_strbuf_printf(out, "%s\n  {\"start\": %" PRIu64 ", \"end\": %" PRIu64 ", \"path\": ",
				 k ? "," : "", r->start, r->end);
		if (r->path)
			pm_strbuf_json_string(out, r->path);
		else
			pm_strbuf_append(out, "null");
		pm_strbuf_append(out, ", \"label\": ");
		pm_strbuf_json_string(out, region_name(t, r, label, sizeof(label)));
		pm_strbuf_append(out, ", \"total\": ");
		resident_json(out, &rr->total, rss->source != PM_RESIDENCY_NONE);
		if (rr->smaps_known && rss->source != PM_RESIDENCY_CORE)
			pm_strbuf_printf(out, ", \"smaps_rss\": %" PRIu64 ", \"smaps_swap\": %" PRIu64,
					 rr->smaps_rss, rr->smaps_swap);
		pm_strbuf_append(out, ", \"parts\": {");
		bool first = true;
		for (size_t p = 0; p < PM_RSS_PARTS; p++) {
			if (!rr->parts[p].bytes)
				continue;
			pm_strbuf_printf(out, "%s\"%s\": ", first ? "" : ", ", pm_rss_part_key(p));
			resident_json(out, &rr->parts[p], rss->per_page);
			first = false;
		}
		pm_strbuf_append(out, "}}");
	}
	pm_strbuf_append(out, rss->regions.size ? "\n]" : "]");
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void group_sums(const struct pm_resident_bytes *parts, uint64_t *in_use,
		       uint64_t *free_bytes, uint64_t *overhead, uint64_t *unowned)
{
	*in_use = *free_bytes = *overhead = *unowned = 0;
	for (size_t p = 0; p < PM_RSS_PARTS; p++) {
		uint64_t v = parts[p].resident + parts[p].swapped;
		const char *g = pm_rss_part_group(p);
		if (!strcmp(g, "in use"))
			*in_use += v;
		else if (!strcmp(g, "free"))
			*free_bytes += v;
		else if (!strcmp(g, "overhead"))
			*overhead += v;
		else
			*unowned += v;
	}
}

static int region_by_resident(const void *x, const void *y)
{
	const struct pm_rss_region *a = *(const struct pm_rss_region *const *)x;
	const struct pm_rss_region *b = *(const struct pm_rss_region *const *)y;
	uint64_t ra = a->total.resident + a->total.swapped;
	uint64_t rb = b->total.resident + b->total.swapped;
	return ra < rb ? 1 : ra > rb ? -1 : (a->region > b->region) - (a->region < b->region);
}

static struct pm_error *rss_text_regions(struct pm_target *t, const struct pm_rss *rss,
					 size_t top, struct pm_strbuf *out)
{
	size_t n = rss->regions.size;
	const struct pm_rss_region **order = malloc((n ? n : 1) * sizeof(*order));
	if (!order)
		return &pm_error_no_memory;
	for (size_t i = 0; i < n; i++)
		order[i] = &rss->regions.data[i];
	qsort(order, n, sizeof(*order), region_by_resident);
	static const char *const headers[] = {"region", "label", "resident+swap", "in use",
					      "free", "overhead", "no allocator"};
	static const bool right[] = {false, false, true, true, true, true, true};
	struct pm_table *table = pm_table_create(7, headers, right);
	if (!table) {
		free(order);
		return &pm_error_no_memory;
	}
	for (size_t i = 0; i < n && i < top; i++) {
		const struct pm_rss_region *rr = order[i];
		const struct pm_region *r = pm_target_region(t, rr->region);
		char where[48], label[160], c[5][32];
		uint64_t g[4];
		group_sums(rr->parts, &g[0], &g[1], &g[2], &g[3]);
		snprintf(where, sizeof(where), "0x%" PRIx64 "-0x%" PRIx64, r->start, r->end);
		region_name(t, r, label, sizeof(label));
		pm_format_grouped(rr->total.resident + rr->total.swapped, c[0]);
		for (size_t k = 0; k < 4; k++)
			pm_format_grouped(g[k], c[k + 1]);
		const char *cells[] = {where, label, c[0], c[1], c[2], c[3], c[4]};
		pm_table_add_row(table, cells);
	}
	pm_table_render(table, out);
	pm_table_destroy(table);
	if (n > top)
		pm_strbuf_printf(out, "%zu more writable regions (--top N to show more)\n", n - top);
	free(order);
	return NULL;
}

static struct pm_error *rss_text(struct pm_target *t, const struct pm_rss *rss,
				 const struct pm_report_args *args, struct pm_strbuf *out)
{
	char a[32], b[32], c[32], d[32];
	uint64_t whole = rss->total.resident + rss->total.swapped;
	if (rss->source == PM_RESIDENCY_NONE)
		pm_strbuf_printf(out, "writable memory: %s bytes mapped in %zu regions, resident bytes unknown\n",
				 pm_format_grouped(rss->total.bytes, a), rss->regions.size);
	else
		pm_strbuf_printf(out, "writable memory: %s bytes mapped in %zu regions, %s resident, %s swapped (residency: %s)\n",
				 pm_format_grouped(rss->total.bytes, a), rss->regions.size,
				 pm_format_grouped(rss->total.resident, b),
				 pm_format_grouped(rss->total.swapped, c),
				 pm_residency_source_name(rss->source));
	static const char *const headers[] = {"part", "group", "mapped", "resident",
					      "swapped", "% of rss+swap"};
	static const bool right[] = {false, false, true, true, true, true};
	struct pm_table *table = pm_table_create(6, headers, right);
	if (!table)
		return &pm_error_no_memory;
	struct pm_resident_bytes sum = {0};
	for (size_t p = 0; p < PM_RSS_PARTS; p++) {
		const struct pm_resident_bytes *v = &rss->parts[p];
		sum.bytes += v->bytes;
		sum.resident += v->resident;
		sum.swapped += v->swapped;
		if (!v->bytes)
			continue;
		char share[16];
		pm_format_grouped(v->bytes, a);
		if (rss->per_page) {
			pm_format_grouped(v->resident, b);
			pm_format_grouped(v->swapped, c);
			snprintf(share, sizeof(share), "%.1f", pct(v->resident + v->swapped, whole));
		} else {
			snprintf(b, sizeof(b), "?");
			snprintf(c, sizeof(c), "?");
			snprintf(share, sizeof(share), "?");
		}
		const char *cells[] = {pm_rss_part_name(p), pm_rss_part_group(p), a, b, c, share};
		pm_table_add_row(table, cells);
	}
	pm_format_grouped(sum.bytes, a);
	pm_format_grouped(rss->per_page ? sum.resident : rss->total.resident, b);
	pm_format_grouped(rss->per_page ? sum.swapped : rss->total.swapped, c);
	const char *cells[] = {"total", "", a, b, c, "100.0"};
	pm_table_add_row(table, cells);
	pm_table_render(table, out);
	pm_table_destroy(table);
	bool adds_up = sum.bytes == rss->total.bytes &&
		       (!rss->per_page || (sum.resident == rss->total.resident &&
					   sum.swapped == rss->total.swapped));
	if (adds_up)
		pm_strbuf_printf(out, "the parts add up to the whole: %s bytes resident + swapped\n",
				 pm_format_grouped(whole, a));
	else
		pm_strbuf_append(out, "the parts do NOT add up to the whole (see warnings)\n");
	if (rss->smaps_known && rss->source != PM_RESIDENCY_CORE)
		pm_strbuf_printf(out, "smaps over the same regions: Rss %s, Swap %s bytes%s\n",
				 pm_format_grouped(rss->smaps_rss, a),
				 pm_format_grouped(rss->smaps_swap, b),
				 rss->smaps_rss + rss->smaps_swap == whole ? " (the same)" :
				 " (they differ: see warnings)");
	if (rss->source == PM_RESIDENCY_CORE)
		pm_strbuf_append(out, "(a core: \"resident\" is what the core holds)\n");
	if (rss->domains.size) {
		pm_strbuf_append(out, "other allocations by domain:");
		for (size_t i = 0; i < rss->domains.size; i++) {
			const struct pm_rss_domain *dm = &rss->domains.data[i];
			pm_strbuf_printf(out, "%s %s %s", i ? ";" : "", dm->domain,
					 pm_format_grouped(rss->per_page ? dm->bytes.resident :
							   dm->bytes.bytes, d));
		}
		pm_strbuf_printf(out, " bytes%s\n", rss->per_page ? " resident" : " mapped");
	}
	pm_strbuf_append(out, "\nby region (largest first):\n");
	size_t top = args->top > 0 ? (size_t)args->top : REGIONS_SHOWN_DEFAULT;
	return rss_text_regions(t, rss, top, out);
}

struct pm_error *pm_report_rss(struct pm_target *t, const struct pm_report_args *args,
			       struct pm_strbuf *out)
{
	struct pm_residency *res;
	struct pm_error *err = residency_for_report(t, false, &res);
	if (err)
		return err;
	struct pm_glibc_fragmentation *glibc;
	const char *missing;
	err = glibc_fragmentation(t, res, &glibc, &missing);
	struct pm_rss *rss = NULL;
	if (!err)
		err = pm_rss_create(t, res, glibc, &rss);
	if (!err) {
		bool json = args->format == PM_FORMAT_JSON;
		if (missing && json) {
			pm_strbuf_append(out, "\"other_allocator\": ");
			pm_strbuf_json_string(out, missing);
			pm_strbuf_append(out, ",\n");
		} else if (missing) {
			pm_strbuf_printf(out, "glibc malloc is not in use (%s): its memory counts as no allocator's\n",
					 missing);
		}
		if (json)
			rss_json(t, rss, out);
		else
			err = rss_text(t, rss, args, out);
	}
	pm_rss_destroy(rss);
	pm_glibc_fragmentation_destroy(glibc);
	pm_residency_destroy(res);
	return err;
}

/* -------------------------------------------------------- fragmentation */

static uint64_t arena_free_total(const struct pm_trim_arena *a, bool resident)
{
	uint64_t sum = 0;
	for (size_t c = 0; c < PM_FREE_CLASSES; c++)
		sum += resident ? a->free_by_class[c].resident : a->free_by_class[c].bytes;
	return sum;
}

struct thread_arenas {
	size_t count;
	uint64_t free_bytes, free_resident;
};

static struct thread_arenas thread_arenas_of(const struct pm_glibc_fragmentation *f)
{
	struct thread_arenas ta = {0};
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_trim_arena *a = &f->arenas.data[i];
		if (a->is_main)
			continue;
		ta.count++;
		ta.free_bytes += arena_free_total(a, false);
		ta.free_resident += arena_free_total(a, true);
	}
	return ta;
}

static void glibc_json(const struct pm_glibc_fragmentation *f, bool per_page,
		       struct pm_strbuf *out)
{
	const struct pm_glibc_heap *h = f->heap;
	pm_strbuf_printf(out, "\"glibc\": {\"version\": \"%d.%d\", \"page_size\": %" PRIu64,
			 h->version_major, h->version_minor, f->page);
	if (f->mp_known)
		pm_strbuf_printf(out, ", \"tunables\": {\"trim_threshold\": %" PRIu64
				 ", \"top_pad\": %" PRIu64 ", \"mmap_threshold\": %" PRIu64
				 ", \"arena_test\": %" PRIu64 ", \"arena_max\": %" PRIu64
				 ", \"thp_pagesize\": %" PRIu64 "}",
				 f->trim_threshold, f->top_pad, f->mmap_threshold,
				 f->arena_test, f->arena_max, f->thp_pagesize);
	else
		pm_strbuf_append(out, ", \"tunables\": null");
	pm_strbuf_append(out, ",\n  \"malloc_trim_returns\": ");
	optional_u64(out, per_page, f->trim_returns);
	pm_strbuf_printf(out, ", \"malloc_trim_range_bytes\": %" PRIu64 ",\n  \"arenas\": [",
			 f->trim_range);
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_trim_arena *a = &f->arenas.data[i];
		pm_strbuf_printf(out, "%s\n    {\"address\": %" PRIu64 ", \"main\": %s, \"mapped\": %"
				 PRIu64 ", \"in_use\": %" PRIu64 ", \"top_size\": %" PRIu64
				 ", \"free\": {", i ? "," : "", a->address,
				 a->is_main ? "true" : "false", a->mapped, a->in_use, a->top_size);
		for (size_t c = 0; c < PM_FREE_CLASSES; c++) {
			pm_strbuf_printf(out, "%s\"%s\": ", c ? ", " : "", pm_glibc_free_class_name(c));
			resident_json(out, &a->free_by_class[c], per_page);
		}
		pm_strbuf_append(out, "},\n     \"malloc_trim_returns\": ");
		optional_u64(out, per_page, a->madvise.resident + a->systrim.resident);
		pm_strbuf_printf(out, ", \"madvise_chunks\": %" PRIu64 ", \"madvise\": ",
				 a->madvise_chunks);
		resident_json(out, &a->madvise, per_page);
		pm_strbuf_printf(out, ", \"top_after_consolidation\": %" PRIu64 ", \"systrim\": ",
				 a->top_after_consolidation);
		resident_json(out, &a->systrim, per_page);
		pm_strbuf_append(out, ", \"systrim_note\": ");
		if (a->systrim_note)
			pm_strbuf_json_string(out, a->systrim_note);
		else
			pm_strbuf_append(out, "null");
		pm_strbuf_append(out, "}");
	}
	struct thread_arenas ta = thread_arenas_of(f);
	pm_strbuf_printf(out, "%s,\n  \"thread_arenas\": {\"count\": %zu, \"free_bytes\": %" PRIu64
			 ", \"free_resident\": %" PRIu64 "},\n  \"mmapped_chunks\": {\"count\": %"
			 PRIu64 ", \"value\": ", f->arenas.size ? "\n  ]" : "]", ta.count,
			 ta.free_bytes, ta.free_resident, f->mmapped_chunks);
	resident_json(out, &f->mmapped, per_page);
	pm_strbuf_append(out, "}}");
}

static void glibc_text(const struct pm_glibc_fragmentation *f, bool per_page,
		       struct pm_strbuf *out)
{
	const struct pm_glibc_heap *h = f->heap;
	char a[32], b[32], c[32], d[32], e[32];
	if (h->version_major)
		pm_strbuf_printf(out, "glibc %d.%d malloc", h->version_major, h->version_minor);
	else
		pm_strbuf_append(out, "glibc malloc (version unknown)");
	if (f->mp_known) {
		pm_strbuf_printf(out, ": M_TRIM_THRESHOLD %s, M_TOP_PAD %s, M_MMAP_THRESHOLD %s, arena_max %s",
				 pm_format_grouped(f->trim_threshold, a),
				 pm_format_grouped(f->top_pad, b),
				 pm_format_grouped(f->mmap_threshold, c),
				 f->arena_max ? pm_format_grouped(f->arena_max, d) :
				 "default (8 per CPU)");
	}
	pm_strbuf_append(out, "\n");
	static const char *const headers[] = {"arena", "mapped", "in use", "tcache",
					      "fastbins", "unsorted", "small", "large",
					      "top", "trim returns"};
	static const bool right[] = {false, true, true, true, true, true, true, true,
				     true, true};
	struct pm_table *table = pm_table_create(10, headers, right);
	if (!table)
		return;
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_trim_arena *ar = &f->arenas.data[i];
		char name[48], cell[9][32];
		snprintf(name, sizeof(name), "0x%" PRIx64 "%s", ar->address,
			 ar->is_main ? " (main)" : "");
		pm_format_grouped(ar->mapped, cell[0]);
		pm_format_grouped(ar->in_use, cell[1]);
		for (size_t k = 0; k < PM_FREE_CLASSES; k++)
			pm_format_grouped(ar->free_by_class[k].bytes, cell[2 + k]);
		if (per_page)
			pm_format_grouped(ar->madvise.resident + ar->systrim.resident, cell[8]);
		else
			snprintf(cell[8], sizeof(cell[8]), "?");
		const char *cells[] = {name, cell[0], cell[1], cell[2], cell[3], cell[4],
				       cell[5], cell[6], cell[7], cell[8]};
		pm_table_add_row(table, cells);
	}
	pm_table_render(table, out);
	pm_table_destroy(table);
	uint64_t madvise = 0, systrim = 0, chunks = 0;
	for (size_t i = 0; i < f->arenas.size; i++) {
		madvise += f->arenas.data[i].madvise.resident;
		systrim += f->arenas.data[i].systrim.resident;
		chunks += f->arenas.data[i].madvise_chunks;
	}
	if (per_page)
		pm_strbuf_printf(out, "malloc_trim(0) would return %s bytes now resident: %s from whole pages inside %s free chunks (madvise), %s from the main heap's top (sbrk); the pages span %s bytes\n",
				 pm_format_grouped(f->trim_returns, a),
				 pm_format_grouped(madvise, b), pm_format_grouped(chunks, c),
				 pm_format_grouped(systrim, d), pm_format_grouped(f->trim_range, e));
	else
		pm_strbuf_printf(out, "malloc_trim(0) would give back pages spanning %s bytes (whole pages inside %s free chunks, and the main heap's top); which of them are resident is unknown\n",
				 pm_format_grouped(f->trim_range, e), pm_format_grouped(chunks, c));
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_trim_arena *ar = &f->arenas.data[i];
		if (!ar->is_main)
			continue;
		pm_strbuf_printf(out, "main arena top chunk: %s bytes (%s after consolidating the fastbins); free() trims it when it exceeds M_TRIM_THRESHOLD, keeping M_TOP_PAD%s%s\n",
				 pm_format_grouped(ar->top_size, a),
				 pm_format_grouped(ar->top_after_consolidation, b),
				 ar->systrim_note ? "; sbrk: " : "",
				 ar->systrim_note ? ar->systrim_note : "");
	}
	struct thread_arenas ta = thread_arenas_of(f);
	if (ta.count)
		pm_strbuf_printf(out, "thread arenas: %zu hold %s bytes free (%s resident); malloc_trim only madvises inside their free chunks, their heaps' tops stay\n",
				 ta.count, pm_format_grouped(ta.free_bytes, a),
				 pm_format_grouped(ta.free_resident, b));
	if (f->mmapped_chunks)
		pm_strbuf_printf(out, "mmapped chunks: %s, %s bytes mapped, %s resident (a page-rounded mapping each: untouched pages cost nothing)\n",
				 pm_format_grouped(f->mmapped_chunks, a),
				 pm_format_grouped(f->mmapped.bytes, b),
				 per_page ? pm_format_grouped(f->mmapped.resident, c) : "?");
}

/* What a pinning block is: its category, its object (the block's, or
 * the owner whose buffer it is) and that object's path. */
struct block_name {
	const char *kind;
	uint64_t object;            /* 0: none known */
	bool is_buffer;
};

static struct block_name name_block(const struct pm_cpython_heap *heap, uint64_t addr)
{
	struct block_name n = {"?", 0, false};
	if (!heap)
		return n;
	const struct pm_alloc *alloc = pm_cpython_find_alloc(heap, addr);
	if (!alloc || alloc->addr != addr)
		return n;
	if (alloc->category < heap->ncategories)
		n.kind = heap->categories[alloc->category].kind;
	uint64_t owner = pm_cpython_owner_of(heap, addr);
	if (owner) {
		n.object = owner;
		n.is_buffer = true;
	} else if (alloc->category < heap->ncategories &&
		   !strcmp(heap->categories[alloc->category].domain, "python")) {
		n.object = addr + alloc->object_offset;
	}
	return n;
}

static void path_text(const struct pm_graph *g, const struct pm_graph_paths *p,
		      uint64_t object, struct pm_strbuf *out)
{
	uint32_t node = g ? pm_graph_node_at(g, object) : PM_NODE_NONE;
	if (!g || !p || node == PM_NODE_NONE || node >= g->nnodes) {
		pm_strbuf_append(out, "?");
		return;
	}
	struct pm_graph_step_vector steps = PM_VECTOR_INIT;
	enum pm_path_start start;
	uint32_t root = 0;
	struct pm_error *err = pm_graph_path(g, p, node, &steps, &start, &root);
	if (err) {
		pm_error_destroy(err);
		pm_strbuf_append(out, "?");
		return;
	}
	if (start == PM_PATH_ROOT)
		pm_graph_root_text(g, &g->roots.data[root], out);
	else if (start == PM_PATH_OUTSIDE)
		pm_strbuf_printf(out, "(held from outside the heap: %s 0x%" PRIx64 ")",
				 pm_graph_node_type(g, root), pm_graph_node_addr(g, root));
	else
		pm_strbuf_append(out, "(not held)");
	for (size_t k = 0; k < steps.size; k++)
		pm_graph_edge_text(g, steps.data[k].from, steps.data[k].edge, out);
	pm_graph_step_vector_deinit(&steps);
}

struct naming {
	const struct pm_cpython_heap *heap;
	const struct pm_graph *g;
	const struct pm_graph_paths *paths;
	size_t paths_left;          /* paths still to compute (a bound on work) */
};

static void naming_init(struct pm_target *t, const struct pm_report_args *args,
			struct naming *n)
{
	memset(n, 0, sizeof(*n));
	n->paths_left = args->limit > 0 ? (size_t)args->limit : PATHS_DEFAULT;
	struct pm_error *err = pm_cpython_analyse(t, &n->heap);
	if (err) {
		pm_error_destroy(err);
		n->heap = NULL;
		return;
	}
	if (!n->heap->python)
		return;
	err = pm_graph_get(t, &n->g);
	if (!err)
		err = pm_graph_paths_get(t, n->g, &n->paths);
	if (err) {
		pm_error_destroy(err);
		n->g = NULL;
		n->paths = NULL;
	}
}

static void pymalloc_json(const struct pm_pymalloc_fragmentation *f, struct naming *nm,
			  bool per_page, struct pm_strbuf *out)
{
	const struct pm_pymalloc *pm = f->pm;
	uint64_t used = 0, empty = 0, never = 0;
	for (size_t i = 0; i < f->arenas.size; i++) {
		used += f->arenas.data[i].used_pools;
		empty += f->arenas.data[i].empty_pools;
		never += f->arenas.data[i].never_pools;
	}
	pm_strbuf_printf(out, "\"pymalloc\": {\"found\": %s, \"arena_size\": %u, \"pool_size\": %u, \"arenas\": %zu, \"used_pools\": %" PRIu64
			 ", \"empty_pools\": %" PRIu64 ", \"never_used_pools\": %" PRIu64,
			 pm->found ? "true" : "false", pm->arena_size, pm->pool_size,
			 f->arenas.size, used, empty, never);
	pm_strbuf_append(out, ",\n  \"arena_list\": [");
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_pymalloc_arena_use *u = &f->arenas.data[i];
		pm_strbuf_printf(out, "%s\n    {\"address\": %" PRIu64 ", \"used_pools\": %u, \"empty_pools\": %u, \"never_used_pools\": %u, \"used_blocks\": %" PRIu64
				 ", \"used_bytes\": %" PRIu64 ", \"pinned\": %s, \"value\": ",
				 i ? "," : "", u->address, u->used_pools, u->empty_pools,
				 u->never_pools, u->used_blocks, u->used_bytes,
				 u->pinned ? "true" : "false");
		resident_json(out, &u->whole, per_page);
		pm_strbuf_append(out, "}");
	}
	pm_strbuf_append(out, f->arenas.size ? "\n  ]" : "]");
	pm_strbuf_printf(out, ",\n  \"pinned\": {\"share_max\": %.2f, \"arenas\": %" PRIu64
			 ", \"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"value\": ",
			 PM_PINNED_SHARE, f->pinned_arenas, f->pinned_blocks, f->pinned_bytes);
	resident_json(out, &f->pinned_whole, per_page);
	pm_strbuf_printf(out, ", \"arenas_freed_if_released\": %" PRIu64
			 ", \"keeps_one_empty\": %s,\n   \"list\": [",
			 f->arenas_freed_if_released, f->keeps_one_empty ? "true" : "false");
	size_t b = 0, listed = 0;
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_pymalloc_arena_use *u = &f->arenas.data[i];
		if (!u->pinned)
			continue;
		pm_strbuf_printf(out, "%s\n    {\"address\": %" PRIu64 ", \"used_pools\": %u, \"empty_pools\": %u, \"never_used_pools\": %u, \"used_blocks\": %" PRIu64
				 ", \"used_bytes\": %" PRIu64 ", \"resident\": %" PRIu64 ", \"blocks\": [",
				 listed++ ? "," : "", u->address, u->used_pools, u->empty_pools,
				 u->never_pools, u->used_blocks, u->used_bytes, u->whole.resident);
		bool first = true;
		for (; b < f->blocks.size && f->blocks.data[b].arena <= i; b++) {
			const struct pm_pinning_block *blk = &f->blocks.data[b];
			if (blk->arena != i)
				continue;
			struct block_name n = name_block(nm->heap, blk->addr);
			pm_strbuf_printf(out, "%s{\"address\": %" PRIu64 ", \"size\": %u, \"kind\": ",
					 first ? "" : ", ", blk->addr, blk->size);
			pm_strbuf_json_string(out, n.kind);
			if (n.object)
				pm_strbuf_printf(out, ", \"object\": %" PRIu64 ", \"buffer_of_object\": %s",
						 n.object, n.is_buffer ? "true" : "false");
			else
				pm_strbuf_append(out, ", \"object\": null");
			if (n.object && nm->paths_left) {
				struct pm_strbuf path;
				pm_strbuf_init(&path);
				path_text(nm->g, nm->paths, n.object, &path);
				pm_strbuf_append(out, ", \"path\": ");
				pm_strbuf_json_string(out, path.data ? path.data : "?");
				pm_strbuf_deinit(&path);
				nm->paths_left--;
			}
			pm_strbuf_append(out, "}");
			first = false;
		}
		pm_strbuf_append(out, "]}");
	}
	pm_strbuf_append(out, listed ? "\n  ]}}" : "]}}");
}

static void pymalloc_text(const struct pm_pymalloc_fragmentation *f, struct naming *nm,
			  bool per_page, struct pm_strbuf *out)
{
	const struct pm_pymalloc *pm = f->pm;
	char a[32], b[32], c[32], d[32], e[32];
	uint64_t used = 0, empty = 0, never = 0, used_bytes = 0;
	for (size_t i = 0; i < f->arenas.size; i++) {
		used += f->arenas.data[i].used_pools;
		empty += f->arenas.data[i].empty_pools;
		never += f->arenas.data[i].never_pools;
		used_bytes += f->arenas.data[i].used_bytes;
	}
	pm_strbuf_printf(out, "\npymalloc: %zu arenas of %s bytes: %s pools used, %s empty, %s never carved; %s bytes in live blocks\n",
			 f->arenas.size, pm_format_grouped(pm->arena_size, a),
			 pm_format_grouped(used, b), pm_format_grouped(empty, c),
			 pm_format_grouped(never, d), pm_format_grouped(used_bytes, e));
	if (!f->pinned_arenas) {
		pm_strbuf_printf(out, "no pinned arena (one whose live blocks fill at most %.0f%% of it)\n",
				 100 * PM_PINNED_SHARE);
		return;
	}
	pm_strbuf_printf(out, "pinned arenas (live blocks fill at most %.0f%%): %s arenas, %s bytes (%s resident), kept by %s live blocks\n",
			 100 * PM_PINNED_SHARE, pm_format_grouped(f->pinned_arenas, a),
			 pm_format_grouped(f->pinned_bytes, b),
			 per_page ? pm_format_grouped(f->pinned_whole.resident, c) : "?",
			 pm_format_grouped(f->pinned_blocks, d));
	size_t shown = 0, b_index = 0;
	for (size_t i = 0; i < f->arenas.size && shown < PINNED_ARENAS_SHOWN; i++) {
		const struct pm_pymalloc_arena_use *u = &f->arenas.data[i];
		if (!u->pinned)
			continue;
		shown++;
		pm_strbuf_printf(out, "  arena 0x%" PRIx64 ": %s live blocks, %s bytes\n", u->address,
				 pm_format_grouped(u->used_blocks, a),
				 pm_format_grouped(u->used_bytes, b));
		size_t listed = 0;
		for (; b_index < f->blocks.size && f->blocks.data[b_index].arena <= i; b_index++) {
			const struct pm_pinning_block *blk = &f->blocks.data[b_index];
			if (blk->arena != i || listed++ >= PINNED_BLOCKS_PER_ARENA_SHOWN)
				continue;
			struct block_name n = name_block(nm->heap, blk->addr);
			pm_strbuf_printf(out, "    0x%" PRIx64 " %4u %s", blk->addr, blk->size, n.kind);
			if (n.object && n.is_buffer)
				pm_strbuf_printf(out, " of object 0x%" PRIx64, n.object);
			if (n.object && nm->paths_left) {
				pm_strbuf_append(out, ": ");
				path_text(nm->g, nm->paths, n.object, out);
				nm->paths_left--;
			}
			pm_strbuf_append(out, "\n");
		}
		if (listed > PINNED_BLOCKS_PER_ARENA_SHOWN)
			pm_strbuf_printf(out, "    ... and %zu more blocks (see --json)\n",
					 listed - PINNED_BLOCKS_PER_ARENA_SHOWN);
	}
	if (f->pinned_arenas > shown)
		pm_strbuf_printf(out, "  ... and %" PRIu64 " more pinned arenas (see --json)\n",
				 f->pinned_arenas - shown);
	pm_strbuf_printf(out, "if those blocks were freed, pymalloc would unmap %s arenas (%s bytes)%s\n",
			 pm_format_grouped(f->arenas_freed_if_released, a),
			 pm_format_grouped(f->arenas_freed_if_released * pm->arena_size, b),
			 f->keeps_one_empty ? " (it keeps one empty arena for reuse)" : "");
}

static void advice(const struct pm_glibc_fragmentation *g,
		   const struct pm_pymalloc_fragmentation *p, bool per_page, bool json,
		   struct pm_strbuf *out)
{
	struct pm_strbuf lines[3];
	size_t n = 0;
	char a[32], b[32], c[32];
	if (g && per_page && g->trim_returns >= ADVICE_MIN_BYTES) {
		pm_strbuf_init(&lines[n]);
		pm_strbuf_printf(&lines[n++], "malloc_trim(0) would return %s (call it after large frees, or set MALLOC_TRIM_THRESHOLD_)",
				 human(g->trim_returns, a, sizeof(a)));
	}
	struct thread_arenas ta = g ? thread_arenas_of(g) : (struct thread_arenas){0};
	if (ta.count >= 1 && per_page && ta.free_resident >= ADVICE_MIN_BYTES) {
		pm_strbuf_init(&lines[n]);
		pm_strbuf_printf(&lines[n++], "%zu thread arena%s hold%s %s free: MALLOC_ARENA_MAX=2 makes threads share arenas and reuse that memory",
				 ta.count, ta.count == 1 ? "" : "s", ta.count == 1 ? "s" : "",
				 human(ta.free_resident, a, sizeof(a)));
	}
	if (p && p->pinned_arenas) {
		pm_strbuf_init(&lines[n]);
		pm_format_grouped(p->pinned_arenas, b);
		pm_format_grouped(p->pinned_blocks, c);
		pm_strbuf_printf(&lines[n++], "pymalloc: %s arenas (%s) are kept by %s live blocks: free those objects to give the arenas back",
				 b, human(p->pinned_bytes, a, sizeof(a)), c);
	}
	if (json) {
		pm_strbuf_append(out, ",\n\"advice\": [");
		for (size_t i = 0; i < n; i++) {
			pm_strbuf_append(out, i ? ",\n  " : "\n  ");
			pm_strbuf_json_string(out, lines[i].data ? lines[i].data : "");
		}
		pm_strbuf_append(out, n ? "\n]" : "]");
	} else {
		pm_strbuf_append(out, n ? "\nadvice:\n" : "\nadvice: none (little free memory to give back)\n");
		for (size_t i = 0; i < n; i++)
			pm_strbuf_printf(out, "  %s\n", lines[i].data ? lines[i].data : "");
	}
	for (size_t i = 0; i < n; i++)
		pm_strbuf_deinit(&lines[i]);
}

struct pm_error *pm_report_fragmentation(struct pm_target *t,
					 const struct pm_report_args *args,
					 struct pm_strbuf *out)
{
	struct pm_residency *res;
	struct pm_error *err = residency_for_report(t, true, &res);
	if (err)
		return err;
	bool per_page = pm_residency_per_page(res);
	bool json = args->format == PM_FORMAT_JSON;
	struct pm_glibc_fragmentation *g;
	const char *missing;
	err = glibc_fragmentation(t, res, &g, &missing);
	struct pm_pymalloc_fragmentation *p = NULL;
	if (!err) {
		struct pm_error *e = pm_pymalloc_fragmentation_create(t, res, &p);
		if (e && (e->code == PM_ERR_INTERRUPTED || e == &pm_error_no_memory))
			err = e;
		else
			pm_error_destroy(e);
	}
	if (err)
		goto done;
	if (json) {
		pm_strbuf_printf(out, "\"residency_source\": \"%s\",\n\"per_page\": %s,\n",
				 pm_residency_source_name(pm_residency_source(res)),
				 per_page ? "true" : "false");
		if (g) {
			pm_strbuf_append(out, "\"malloc_trim_returns\": ");
			optional_u64(out, per_page, g->trim_returns);
			pm_strbuf_append(out, ",\n");
			glibc_json(g, per_page, out);
		} else {
			pm_strbuf_append(out, "\"malloc_trim_returns\": null,\n\"glibc\": null, \"other_allocator\": ");
			pm_strbuf_json_string(out, missing ? missing : "?");
		}
	} else if (g) {
		glibc_text(g, per_page, out);
	} else {
		pm_strbuf_printf(out, "glibc malloc is not in use: %s\n", missing ? missing : "?");
	}
	struct naming nm;
	bool pymalloc = p && p->pm->found && p->pm->in_use;
	if (pymalloc)
		naming_init(t, args, &nm);
	if (json) {
		pm_strbuf_append(out, ",\n");
		if (pymalloc)
			pymalloc_json(p, &nm, per_page, out);
		else
			pm_strbuf_append(out, "\"pymalloc\": null");
	} else if (pymalloc) {
		pymalloc_text(p, &nm, per_page, out);
	} else {
		pm_strbuf_append(out, "\npymalloc: not in use or not found\n");
	}
	advice(g, pymalloc ? p : NULL, per_page, json, out);
done:
	pm_pymalloc_fragmentation_destroy(p);
	pm_glibc_fragmentation_destroy(g);
	pm_residency_destroy(res);
	return err;
}
