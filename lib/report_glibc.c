/* Reports over the glibc walk: "malloc-stats" (mallinfo2's fields per arena
 * and in total), "chunks" (a chunk listing) and "sizes" (a histogram of
 * in-use allocation sizes: glibc chunks, and pymalloc's blocks by size class
 * in a CPython process). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc.h"
#include "pymalloc.h"
#include "report.h"
#include "vector.h"

#define SIZES_TOP_DEFAULT 40

/* A walk, or a report saying glibc malloc is not in use. Returns false
 * when the report is finished (other allocator). */
static struct pm_error *glibc_walk_for_report(struct pm_target *t,
					      const struct pm_report_args *args,
					      struct pm_strbuf *out,
					      const struct pm_glibc_heap **ret)
{
	struct pm_error *err = pm_glibc_walk(t, ret);
	if (err)
		return err;
	const struct pm_glibc_heap *h = *ret;
	if (!h->other_allocator)
		return NULL;
	if (args->format == PM_FORMAT_JSON) {
		pm_strbuf_append(out, "\"other_allocator\": ");
		pm_strbuf_json_string(out, h->other_allocator);
	} else {
		pm_strbuf_printf(out, "glibc malloc is not in use: %s\n",
				 h->other_allocator);
	}
	return NULL;
}

static const char *const mallinfo_names[] = {
	"arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
	"fsmblks", "uordblks", "fordblks", "keepcost",
};
#define NMALLINFO (sizeof(mallinfo_names) / sizeof(mallinfo_names[0]))

static void mallinfo_values(const struct pm_mallinfo *m, uint64_t *v)
{
	const uint64_t vals[NMALLINFO] = {
		m->arena, m->ordblks, m->smblks, m->hblks, m->hblkhd,
		m->usmblks, m->fsmblks, m->uordblks, m->fordblks, m->keepcost,
	};
	memcpy(v, vals, sizeof(vals));
}

static void mallinfo_json(struct pm_strbuf *out, const struct pm_mallinfo *m,
			  const char *indent)
{
	uint64_t v[NMALLINFO];
	mallinfo_values(m, v);
	for (size_t i = 0; i < NMALLINFO; i++)
		pm_strbuf_printf(out, "%s%s\"%s\": %llu", i ? "," : "", indent,
				 mallinfo_names[i], (unsigned long long)v[i]);
}

static void optional_address_json(struct pm_strbuf *out, const char *key,
				  uint64_t value)
{
	if (value)
		pm_strbuf_printf(out, ",\n\"%s\": %llu", key,
				 (unsigned long long)value);
	else
		pm_strbuf_printf(out, ",\n\"%s\": null", key);
}

/* Bytes of glibc's own heap headers (heap_info, malloc_state) in arena i:
 * in its uordblks, in no chunk. */
static uint64_t arena_header_bytes(const struct pm_glibc_heap *h, size_t i)
{
	uint64_t bytes = 0;
	for (size_t k = 0; k < h->noverheads; k++) {
		const struct pm_glibc_overhead *o = &h->overheads[k];
		if (o->arena == i && (o->kind == PM_OVERHEAD_ARENA_HEADER ||
				      o->kind == PM_OVERHEAD_HEAP_HEADER))
			bytes += o->size;
	}
	return bytes;
}

static void malloc_stats_json(const struct pm_glibc_heap *h,
			      struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "\"glibc_version\": \"%d.%d\",\n\"version_source\": ",
			 h->version_major, h->version_minor);
	pm_strbuf_json_string(out, h->version_source);
	pm_strbuf_printf(out, ",\n\"main_arena\": %llu,\n\"main_arena_source\": ",
			 (unsigned long long)h->main_arena);
	pm_strbuf_json_string(out, h->main_arena_source);
	optional_address_json(out, "mp", h->mp);
	pm_strbuf_append(out, ",\n\"mp_source\": ");
	if (h->mp_source)
		pm_strbuf_json_string(out, h->mp_source);
	else
		pm_strbuf_append(out, "null");
	pm_strbuf_printf(out, ",\n\"partial\": %s,\n\"problems\": %zu,\n\"chunks\": %zu,\n\"tcaches\": %zu,\n",
			 h->partial ? "true" : "false", h->problems, h->nchunks,
			 h->ntcaches);
	mallinfo_json(out, &h->total, "\n");
	pm_strbuf_append(out, ",\n\"arenas\": [");
	for (size_t i = 0; i < h->narenas; i++) {
		const struct pm_glibc_arena *a = &h->arenas[i];
		pm_strbuf_printf(out, "%s\n  {\"address\": %llu, \"main\": %s, \"heaps\": %zu, \"top\": %llu, ",
				 i ? "," : "", (unsigned long long)a->address,
				 a->is_main ? "true" : "false",
				 a->is_main ? (size_t)1 : a->nheaps,
				 (unsigned long long)a->top);
		mallinfo_json(out, &a->info, " ");
		pm_strbuf_printf(out, ", \"header_bytes\": %llu",
				 (unsigned long long)arena_header_bytes(h, i));
		pm_strbuf_append(out, ", \"heap_addresses\": [");
		for (size_t k = 0; !a->is_main && k < a->nheaps; k++)
			pm_strbuf_printf(out, "%s%llu", k ? ", " : "",
					 (unsigned long long)a->heaps[k]);
		pm_strbuf_append(out, "]}");
	}
	pm_strbuf_append(out, h->narenas ? "\n]" : "]");
}

static void mallinfo_row(struct pm_table *table, const char *name,
			 const struct pm_mallinfo *m)
{
	uint64_t v[NMALLINFO];
	mallinfo_values(m, v);
	char buf[NMALLINFO][32];
	const char *cells[NMALLINFO + 1] = {name};
	for (size_t i = 0; i < NMALLINFO; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%llu", (unsigned long long)v[i]);
		cells[i + 1] = buf[i];
	}
	pm_table_add_row(table, cells);
}

/* Where each arena's memory is: the main arena's one heap ends with its top
 * chunk; a thread arena's heaps are 64 MiB-aligned mmaps (heap_info). */
static void arena_heaps_text(const struct pm_glibc_heap *h, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "heaps:\n");
	for (size_t i = 0; i < h->narenas; i++) {
		const struct pm_glibc_arena *a = &h->arenas[i];
		char top[32];
		pm_format_grouped(a->top_size, top);
		if (a->is_main) {
			pm_strbuf_printf(out, "  arena 0x%llx (main): %s heap, top chunk 0x%llx (%s bytes)\n",
					 (unsigned long long)a->address,
					 a->noncontiguous ? "non-contiguous" : "brk",
					 (unsigned long long)a->top, top);
			continue;
		}
		pm_strbuf_printf(out, "  arena 0x%llx: %zu heap%s at", (unsigned long long)a->address,
				 a->nheaps, a->nheaps == 1 ? "" : "s");
		for (size_t k = 0; k < a->nheaps; k++)
			pm_strbuf_printf(out, " 0x%llx", (unsigned long long)a->heaps[k]);
		char headers[32];
		pm_format_grouped(arena_header_bytes(h, i), headers);
		pm_strbuf_printf(out, ", top chunk 0x%llx (%s bytes), headers %s bytes\n",
				 (unsigned long long)a->top, top, headers);
	}
}

static void malloc_stats_text(const struct pm_glibc_heap *h,
			      struct pm_strbuf *out)
{
	if (h->version_major)
		pm_strbuf_printf(out, "glibc %d.%d (%s); ", h->version_major,
				 h->version_minor, h->version_source);
	pm_strbuf_printf(out, "main_arena 0x%llx (%s); ",
			 (unsigned long long)h->main_arena, h->main_arena_source);
	if (h->mp)
		pm_strbuf_printf(out, "mp_ 0x%llx (%s)\n",
				 (unsigned long long)h->mp, h->mp_source);
	else
		pm_strbuf_append(out, "mp_ not found\n");
	const char *headers[NMALLINFO + 1] = {"arena"};
	bool right[NMALLINFO + 1] = {false};
	for (size_t i = 0; i < NMALLINFO; i++) {
		headers[i + 1] = mallinfo_names[i];
		right[i + 1] = true;
	}
	struct pm_table *table = pm_table_create(NMALLINFO + 1, headers, right);
	if (!table)
		return;
	for (size_t i = 0; i < h->narenas; i++) {
		char name[48];
		snprintf(name, sizeof(name), "0x%llx%s",
			 (unsigned long long)h->arenas[i].address,
			 h->arenas[i].is_main ? " (main)" : "");
		mallinfo_row(table, name, &h->arenas[i].info);
	}
	if (!h->narenas)
		pm_strbuf_append(out, "no glibc arena could be read (see warnings)\n");
	mallinfo_row(table, "total", &h->total);
	pm_table_render(table, out);
	pm_table_destroy(table);
	pm_strbuf_printf(out, "%zu arenas, %zu chunks, %zu tcaches\n",
			 h->narenas, h->nchunks, h->ntcaches);
	arena_heaps_text(h, out);
	if (h->partial)
		pm_strbuf_printf(out, "totals are PARTIAL: %zu problems found (see warnings)\n",
				 h->problems);
}

struct pm_error *pm_report_malloc_stats(struct pm_target *t,
					const struct pm_report_args *args,
					struct pm_strbuf *out)
{
	const struct pm_glibc_heap *h;
	struct pm_error *err = glibc_walk_for_report(t, args, out, &h);
	if (err || h->other_allocator)
		return err;
	if (args->format == PM_FORMAT_JSON)
		malloc_stats_json(h, out);
	else
		malloc_stats_text(h, out);
	return NULL;
}

static bool chunk_selected(const struct pm_chunk *c,
			   const struct pm_report_args *args)
{
	if (c->size < args->min_size)
		return false;
	if (!args->state || strcmp(args->state, "all") == 0)
		return true;
	bool used = pm_chunk_state_is_used(c->state);
	if (strcmp(args->state, "used") == 0)
		return used;
	if (strcmp(args->state, "free") == 0)
		return c->state == PM_CHUNK_FREE_BIN ||
		       c->state == PM_CHUNK_FREE_FASTBIN ||
		       c->state == PM_CHUNK_FREE_TCACHE ||
		       c->state == PM_CHUNK_TOP;
	return true;
}

static void chunk_arena_name(const struct pm_glibc_heap *h,
			     const struct pm_chunk *c, char *buf, size_t size)
{
	if (c->arena == 0xff)
		snprintf(buf, size, "mmapped");
	else if (c->arena < h->narenas)
		snprintf(buf, size, "0x%llx",
			 (unsigned long long)h->arenas[c->arena].address);
	else
		snprintf(buf, size, "?");
}

struct pm_error *pm_report_chunks(struct pm_target *t,
				  const struct pm_report_args *args,
				  struct pm_strbuf *out)
{
	const struct pm_glibc_heap *h;
	struct pm_error *err = glibc_walk_for_report(t, args, out, &h);
	if (err || h->other_allocator)
		return err;
	bool json = args->format == PM_FORMAT_JSON;
	size_t limit = args->limit > 0 ? (size_t)args->limit : SIZE_MAX;
	size_t matched = 0, listed = 0;
	static const char *const headers[] = {"address", "size", "state", "arena"};
	static const bool right[] = {false, true, false, false};
	struct pm_table *table = json ? NULL : pm_table_create(4, headers, right);
	if (!json && !table)
		return &pm_error_no_memory;
	if (json)
		pm_strbuf_append(out, "\"chunks\": [");
	for (size_t i = 0; i < h->nchunks; i++) {
		const struct pm_chunk *c = &h->chunks[i];
		if (!chunk_selected(c, args))
			continue;
		if (matched++ >= limit)
			continue;
		listed++;
		char arena[32];
		chunk_arena_name(h, c, arena, sizeof(arena));
		const char *state = pm_chunk_state_name(c->state);
		if (json) {
			pm_strbuf_printf(out, "%s\n  {\"address\": %llu, \"size\": %llu, \"state\": \"%s\", \"arena\": \"%s\"}",
					 listed > 1 ? "," : "",
					 (unsigned long long)c->addr,
					 (unsigned long long)c->size, state, arena);
			continue;
		}
		char addr[32], size[32];
		snprintf(addr, sizeof(addr), "0x%llx", (unsigned long long)c->addr);
		snprintf(size, sizeof(size), "%llu", (unsigned long long)c->size);
		const char *cells[] = {addr, size, state, arena};
		pm_table_add_row(table, cells);
	}
	if (json) {
		pm_strbuf_printf(out, "%s,\n\"listed\": %zu,\n\"matched\": %zu,\n\"partial\": %s",
				 listed ? "\n]" : "]", listed, matched,
				 h->partial ? "true" : "false");
		return NULL;
	}
	pm_table_render(table, out);
	pm_table_destroy(table);
	pm_strbuf_printf(out, "%zu chunks listed, %zu matched, %zu in all%s\n",
			 listed, matched, h->nchunks,
			 h->partial ? " (walk PARTIAL, see warnings)" : "");
	return NULL;
}

/* One row of "sizes": in-use allocations of one allocator and one size
 * (a glibc chunk size, or a pymalloc block size class). */
struct size_row {
	const char *allocator;
	uint64_t size, count;
};

PM_DEFINE_VECTOR(size_row_vector, struct size_row)

/* Totals of one allocator's rows, and the pymalloc walk's state: glibc is
 * always walked (or the report fails); pymalloc only in a CPython. */
struct size_totals {
	uint64_t glibc_count, glibc_bytes, pymalloc_count, pymalloc_bytes;
	bool pymalloc_found, pymalloc_in_use;
	uint64_t pymalloc_problems;
	char pymalloc_missing[256];
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_row_bytes(const void *a, const void *b)
{
	const struct size_row *x = a, *y = b;
	uint64_t bx = x->size * x->count, by = y->size * y->count;
	if (bx != by)
		return bx > by ? -1 : 1;
	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return strcmp(x->allocator, y->allocator);
}

/* In-use glibc chunks grouped by exact chunk size. */
static struct pm_error *glibc_size_rows(const struct pm_glibc_heap *h,
					const struct pm_report_args *args,
					struct size_row_vector *rows,
					struct size_totals *totals)
{
	uint64_t *sizes = malloc((h->nchunks + 1) * sizeof(*sizes));
	if (!sizes)
		return &pm_error_no_memory;
	size_t n = 0;
	for (size_t i = 0; i < h->nchunks; i++) {
		const struct pm_chunk *c = &h->chunks[i];
		if (pm_chunk_state_is_used(c->state) && c->size >= args->min_size)
			sizes[n++] = c->size;
	}
	qsort(sizes, n, sizeof(*sizes), cmp_u64);
	size_t first = rows->size;
	for (size_t i = 0; i < n; i++) {
		totals->glibc_count++;
		totals->glibc_bytes += sizes[i];
		if (rows->size > first && rows->data[rows->size - 1].size == sizes[i]) {
			rows->data[rows->size - 1].count++;
			continue;
		}
		struct size_row *r = size_row_vector_append_entry(rows);
		if (!r) {
			free(sizes);
			return &pm_error_no_memory;
		}
		*r = (struct size_row){"glibc", sizes[i], 1};
	}
	free(sizes);
	return NULL;
}

/* Blocks in use per pymalloc size class, over every interpreter's state:
 * the "blocks in use" column of sys._debugmallocstats(). A process without
 * pymalloc (not a CPython, PYTHONMALLOC=malloc) has none and says why. */
static struct pm_error *pymalloc_size_rows(struct pm_target *t,
					   const struct pm_report_args *args,
					   struct size_row_vector *rows,
					   struct size_totals *totals)
{
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_pymalloc_walk(t, &pm);
	if (err) {
		snprintf(totals->pymalloc_missing, sizeof(totals->pymalloc_missing),
			 "%s", err->message);
		pm_error_destroy(err);
		return NULL;
	}
	if (!pm->found) {
		snprintf(totals->pymalloc_missing, sizeof(totals->pymalloc_missing),
			 "%s", pm->missing);
		return NULL;
	}
	totals->pymalloc_found = true;
	totals->pymalloc_in_use = pm->in_use;
	totals->pymalloc_problems = pm->problems;
	for (uint16_t k = 0; k < PM_PYMALLOC_NCLASSES; k++) {
		uint64_t used = 0, size = pm_pymalloc_block_size(k);
		for (size_t i = 0; i < pm->nstates; i++)
			used += pm->states[i].classes[k].used_blocks;
		if (!used || size < args->min_size)
			continue;
		struct size_row *r = size_row_vector_append_entry(rows);
		if (!r)
			return &pm_error_no_memory;
		*r = (struct size_row){"pymalloc", size, used};
		totals->pymalloc_count += used;
		totals->pymalloc_bytes += used * size;
	}
	return NULL;
}

static void sizes_json(const struct pm_glibc_heap *h,
		       const struct size_row_vector *rows,
		       const struct size_totals *totals, size_t top,
		       struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "\"count\": %llu,\n\"bytes\": %llu,\n\"partial\": %s,\n"
			 "\"glibc\": {\"count\": %llu, \"bytes\": %llu},\n"
			 "\"pymalloc\": {\"found\": %s",
			 (unsigned long long)(totals->glibc_count + totals->pymalloc_count),
			 (unsigned long long)(totals->glibc_bytes + totals->pymalloc_bytes),
			 h->partial ? "true" : "false",
			 (unsigned long long)totals->glibc_count,
			 (unsigned long long)totals->glibc_bytes,
			 totals->pymalloc_found ? "true" : "false");
	if (totals->pymalloc_found) {
		pm_strbuf_printf(out, ", \"in_use\": %s, \"problems\": %llu",
				 totals->pymalloc_in_use ? "true" : "false",
				 (unsigned long long)totals->pymalloc_problems);
	} else {
		pm_strbuf_append(out, ", \"missing\": ");
		pm_strbuf_json_string(out, totals->pymalloc_missing);
	}
	pm_strbuf_printf(out, ", \"count\": %llu, \"bytes\": %llu},\n\"sizes\": [",
			 (unsigned long long)totals->pymalloc_count,
			 (unsigned long long)totals->pymalloc_bytes);
	uint64_t hidden_count = 0, hidden_bytes = 0;
	for (size_t i = 0; i < rows->size; i++) {
		const struct size_row *r = &rows->data[i];
		if (i >= top) {
			hidden_count += r->count;
			hidden_bytes += r->count * r->size;
			continue;
		}
		pm_strbuf_printf(out, "%s\n  {\"allocator\": \"%s\", \"size\": %llu, \"count\": %llu, \"bytes\": %llu}",
				 i ? "," : "", r->allocator,
				 (unsigned long long)r->size,
				 (unsigned long long)r->count,
				 (unsigned long long)(r->size * r->count));
	}
	pm_strbuf_append(out, rows->size ? "\n]" : "]");
	pm_strbuf_printf(out, ",\n\"rows_not_shown\": {\"rows\": %zu, \"count\": %llu, \"bytes\": %llu}",
			 rows->size > top ? rows->size - top : 0,
			 (unsigned long long)hidden_count,
			 (unsigned long long)hidden_bytes);
}

static void sizes_text(const struct pm_glibc_heap *h,
		       const struct size_row_vector *rows,
		       const struct size_totals *totals, size_t top,
		       struct pm_table *table, struct pm_strbuf *out)
{
	uint64_t bytes = totals->glibc_bytes + totals->pymalloc_bytes;
	uint64_t hidden_count = 0, hidden_bytes = 0;
	for (size_t i = 0; i < rows->size; i++) {
		const struct size_row *r = &rows->data[i];
		if (i >= top) {
			hidden_count += r->count;
			hidden_bytes += r->count * r->size;
			continue;
		}
		char s[32], c[32], b[32], pct[16];
		pm_format_grouped(r->size, s);
		pm_format_grouped(r->count, c);
		pm_format_grouped(r->size * r->count, b);
		snprintf(pct, sizeof(pct), "%.1f",
			 bytes ? 100.0 * (double)(r->size * r->count) / (double)bytes : 0.0);
		const char *cells[] = {r->allocator, s, c, b, pct};
		pm_table_add_row(table, cells);
	}
	pm_table_render(table, out);
	char c[32], b[32];
	pm_strbuf_printf(out, "glibc: %s in-use chunks, %s bytes%s; ",
			 pm_format_grouped(totals->glibc_count, c),
			 pm_format_grouped(totals->glibc_bytes, b),
			 h->partial ? " (walk PARTIAL, see warnings)" : "");
	if (!totals->pymalloc_found)
		pm_strbuf_printf(out, "pymalloc: not analysed: %s\n",
				 totals->pymalloc_missing);
	else if (!totals->pymalloc_in_use)
		pm_strbuf_append(out, "pymalloc: not in use (no arena allocated)\n");
	else
		pm_strbuf_printf(out, "pymalloc: %s blocks in use, %s bytes%s\n",
				 pm_format_grouped(totals->pymalloc_count, c),
				 pm_format_grouped(totals->pymalloc_bytes, b),
				 totals->pymalloc_problems ? " (problems found, see warnings)" : "");
	if (rows->size > top) {
		size_t more = rows->size - top;
		pm_strbuf_printf(out, "%zu more row%s: %s allocations, %s bytes (--top N to show more)\n",
				 more, more == 1 ? "" : "s",
				 pm_format_grouped(hidden_count, c),
				 pm_format_grouped(hidden_bytes, b));
	}
}

/* In-use allocations by size, largest total first: glibc chunks by chunk
 * size and pymalloc blocks by size class, each allocator its own rows. */
struct pm_error *pm_report_sizes(struct pm_target *t,
				 const struct pm_report_args *args,
				 struct pm_strbuf *out)
{
	const struct pm_glibc_heap *h;
	struct pm_error *err = glibc_walk_for_report(t, args, out, &h);
	if (err || h->other_allocator)
		return err;
	struct size_row_vector rows = PM_VECTOR_INIT;
	struct size_totals totals = {0};
	err = glibc_size_rows(h, args, &rows, &totals);
	if (!err)
		err = pymalloc_size_rows(t, args, &rows, &totals);
	if (err) {
		size_row_vector_deinit(&rows);
		return err;
	}
	if (rows.size)
		qsort(rows.data, rows.size, sizeof(*rows.data), cmp_row_bytes);
	size_t top = args->top > 0 ? (size_t)args->top : SIZES_TOP_DEFAULT;
	if (args->format == PM_FORMAT_JSON) {
		sizes_json(h, &rows, &totals, top, out);
	} else {
		static const char *const headers[] = {"allocator", "size", "count",
						      "bytes", "% bytes"};
		static const bool right[] = {false, true, true, true, true};
		struct pm_table *table = pm_table_create(5, headers, right);
		if (!table)
			err = &pm_error_no_memory;
		else
			sizes_text(h, &rows, &totals, top, table, out);
		pm_table_destroy(table);
	}
	size_row_vector_deinit(&rows);
	return err;
}
