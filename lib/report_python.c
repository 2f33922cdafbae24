/* Reports of the CPython layer: "pymalloc-stats" (the pymalloc part of
 * sys._debugmallocstats(), computed from the walk) and "summary" (every
 * in-use allocation of the process in exactly one category row). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpython.h"
#include "glibc.h"
#include "hash_table.h"
#include "graph.h"
#include "pymalloc.h"
#include "report_retained.h"
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
	python_json(py, out);
	pm_strbuf_printf(out, ", \"found\": %s", pm->found ? "true" : "false");
	if (!pm->found) {
		pm_strbuf_append(out, ", \"missing\": ");
		pm_strbuf_json_string(out, pm->missing);
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
	pm_strbuf_append(out, "]");
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

/* ---- summary ------------------------------------------------------ */

struct summary_row {
	char domain[32], kind[128], detail[96];
	uint64_t count, bytes;
};

/* Rows by the hash of their (cut) names: a grouping may make many rows
 * (one per retainer). */
PM_DEFINE_HASH_MAP(summary_row_index, uint64_t, size_t, pm_hash_u64_key, pm_u64_key_eq)

struct summary {
	struct summary_row *rows;
	size_t nrows, cap;
	size_t last;                /* consecutive allocations often share a row */
	struct summary_row_index index;
};

/* The hash of a row's names as the row keeps them (cut to its fields). */
static uint64_t summary_row_hash(const char *domain, const char *kind, const char *detail)
{
	const struct { const char *s; size_t max; } parts[] = {
		{ domain, sizeof(((struct summary_row *)0)->domain) - 1 },
		{ kind, sizeof(((struct summary_row *)0)->kind) - 1 },
		{ detail, sizeof(((struct summary_row *)0)->detail) - 1 },
	};
	uint64_t h = PM_HASH_STRING_SEED;
	for (size_t p = 0; p < 3; p++) {
		for (size_t i = 0; i < parts[p].max && parts[p].s[i]; i++)
			h = (h ^ (unsigned char)parts[p].s[i]) * UINT64_C(0x100000001b3);
		h = (h ^ 0xff) * UINT64_C(0x100000001b3);
	}
	return pm_hash_u64(h);
}

static bool summary_row_is(const struct summary_row *r, const char *domain,
			   const char *kind, const char *detail)
{
	return !strncmp(r->domain, domain, sizeof(r->domain) - 1) &&
	       !strncmp(r->kind, kind, sizeof(r->kind) - 1) &&
	       !strncmp(r->detail, detail, sizeof(r->detail) - 1);
}

static struct summary_row *summary_row_new(struct summary *s, const char *domain,
					   const char *kind, const char *detail)
{
	if (s->nrows == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		void *p = realloc(s->rows, cap * sizeof(*s->rows));
		if (!p)
			return NULL;
		s->rows = p;
		s->cap = cap;
	}
	struct summary_row *r = &s->rows[s->nrows];
	memset(r, 0, sizeof(*r));
	snprintf(r->domain, sizeof(r->domain), "%s", domain);
	snprintf(r->kind, sizeof(r->kind), "%s", kind);
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
	s->last = s->nrows++;
	uint64_t h = summary_row_hash(domain, kind, detail);
	size_t *slot = summary_row_index_insert(&s->index, &h, NULL);
	if (slot)
		*slot = s->last;
	return slot ? r : NULL;
}

/* The row for (domain, kind, detail), created on first use. */
static struct summary_row *summary_row(struct summary *s, const char *domain,
				       const char *kind, const char *detail)
{
	if (s->last < s->nrows && summary_row_is(&s->rows[s->last], domain,
						  kind, detail))
		return &s->rows[s->last];
	uint64_t h = summary_row_hash(domain, kind, detail);
	const size_t *found = summary_row_index_search(&s->index, &h);
	if (found && summary_row_is(&s->rows[*found], domain, kind, detail)) {
		s->last = *found;
		return &s->rows[*found];
	}
	/* Two names with one 64-bit hash: look them all through. */
	for (size_t i = 0; found && i < s->nrows; i++) {
		if (summary_row_is(&s->rows[i], domain, kind, detail)) {
			s->last = i;
			return &s->rows[i];
		}
	}
	return summary_row_new(s, domain, kind, detail);
}

static void alloc_size_detail(const struct pm_alloc *alloc, char *buf, size_t len)
{
	if (alloc->kind == PM_ALLOC_PYMALLOC) {
		snprintf(buf, len, "%" PRIu64 " B", alloc->size);
		return;
	}
	uint64_t hi = 32;
	while (hi < alloc->size && hi < (UINT64_C(1) << 62))
		hi <<= 1;
	snprintf(buf, len, "%" PRIu64 "-%" PRIu64 " B", hi / 2 + 1, hi);
}

/* Groups every allocation by the key `by` asks for. */
static struct pm_error *summary_group(struct pm_target *t,
				      const struct pm_cpython_heap *heap,
				      const char *by, struct summary *s)
{
	for (size_t i = 0; i < heap->nallocs; i++) {
		const struct pm_alloc *alloc = &heap->allocs[i];
		const char *allocator = pm_alloc_kind_name(alloc->kind);
		char detail[64];
		struct summary_row *r;
		if (!strcmp(by, "size")) {
			alloc_size_detail(alloc, detail, sizeof(detail));
			r = summary_row(s, allocator, "size", detail);
		} else if (!strcmp(by, "allocator")) {
			r = summary_row(s, allocator, "-", "-");
		} else {
			/* A pymalloc block is in an arena and an mmapped chunk
			 * is its own mapping even when the kernel merged them
			 * with neighbours into one region of another label. */
			const struct pm_region *region = pm_target_find_region(t, alloc->addr);
			const char *label =
				alloc->kind == PM_ALLOC_PYMALLOC ?
				pm_region_label_name(PM_LABEL_PYMALLOC_ARENA) :
				alloc->kind == PM_ALLOC_MMAPPED ?
				pm_region_label_name(PM_LABEL_GLIBC_MMAPPED) :
				region ? pm_region_label_name(region->label) : "unmapped";
			const char *path = region && region->path ? region->path : "-";
			r = summary_row(s, "region", label, path);
		}
		if (!r)
			return &pm_error_no_memory;
		r->count++;
		r->bytes += alloc->size;
	}
	return NULL;
}

static int summary_row_compare(const void *x, const void *y)
{
	const struct summary_row *p = x, *q = y;
	if (p->bytes != q->bytes)
		return p->bytes > q->bytes ? -1 : 1;
	if (p->count != q->count)
		return p->count > q->count ? -1 : 1;
	int c = strcmp(p->domain, q->domain);
	if (!c)
		c = strcmp(p->kind, q->kind);
	return c ? c : strcmp(p->detail, q->detail);
}

static struct pm_error *summary_used(struct pm_target *t,
				     const struct pm_cpython_heap *heap,
				     const char *by, struct summary *s);

static struct pm_error *summary_add(struct summary *s, const char *domain,
				    const char *kind, uint64_t count,
				    uint64_t bytes)
{
	if (!bytes)
		return NULL;
	struct summary_row *r = summary_row(s, domain, kind, "-");
	if (!r)
		return &pm_error_no_memory;
	r->count += count;
	r->bytes += bytes;
	return NULL;
}

/* --all / --free: what the allocators hold that is not in use, so that the
 * rows add up to their whole footprint (pymalloc: arenas; glibc: heaps and
 * mmapped chunks). */
static struct pm_error *summary_free_rows(struct pm_target *t, struct summary *s)
{
	const struct pm_pymalloc *pm;
	const struct pm_glibc_heap *g;
	struct pm_error *err = pm_pymalloc_walk(t, &pm);
	for (size_t i = 0; !err && pm->found && i < pm->nstates; i++) {
		const struct pm_pymalloc_state *st = &pm->states[i];
		uint64_t avail = 0, pools = 0;
		for (int c = 0; c < PM_PYMALLOC_NCLASSES; c++) {
			avail += st->classes[c].avail_blocks;
			pools += st->classes[c].pools;
		}
		err = summary_add(s, "pymalloc", "free blocks", avail, st->available_bytes);
		if (!err)
			err = summary_add(s, "pymalloc", "unused pools", st->unused_pools,
					  st->unused_pools * pm->pool_size);
		if (!err)
			err = summary_add(s, "pymalloc", "pool headers", pools,
					  st->pool_header_bytes);
		if (!err)
			err = summary_add(s, "pymalloc", "quantization", pools,
					  st->quantization);
		if (!err)
			err = summary_add(s, "pymalloc", "arena alignment", 0,
					  st->arena_alignment);
	}
	if (err)
		return err;
	err = pm_glibc_walk(t, &g);
	if (err) {
		pm_error_destroy(err);
		return NULL;    /* the notes already say the glibc heap is missing */
	}
	for (size_t i = 0; !err && i < g->nchunks; i++) {
		const struct pm_chunk *c = &g->chunks[i];
		const char *kind = c->state == PM_CHUNK_FREE_BIN ? "free (bins)" :
				   c->state == PM_CHUNK_FREE_FASTBIN ? "free (fastbins)" :
				   c->state == PM_CHUNK_TOP ? "top" : NULL;
		if (kind)
			err = summary_add(s, "glibc", kind, 1, c->size);
	}
	return err;
}

static struct pm_error *summary_build(struct pm_target *t,
				      const struct pm_cpython_heap *heap,
				      const struct pm_report_args *args,
				      struct summary *s)
{
	const char *by = args->by ? args->by : "type";
	const char *state = args->state ? args->state : "used";
	struct pm_error *err = NULL;
	if (strcmp(state, "free") != 0)
		err = summary_used(t, heap, by, s);
	if (!err && strcmp(state, "used") != 0)
		err = summary_free_rows(t, s);
	return err;
}

/* (allocation's category, its owner's category) -> count and bytes, for
 * --by owner: open addressing on key = the pair's index + 1 (0 = empty). */
struct owner_cells {
	struct owner_cell { uint64_t key, count, bytes; } *cells;
	size_t cap, used;
};

static struct pm_error *owner_cells_add(struct owner_cells *m, uint64_t key,
					uint64_t bytes)
{
	if (2 * (m->used + 1) > m->cap) {
		struct owner_cells grown = { calloc(m->cap ? 2 * m->cap : 1024,
						    sizeof(struct owner_cell)),
					     m->cap ? 2 * m->cap : 1024, 0 };
		if (!grown.cells)
			return &pm_error_no_memory;
		for (size_t i = 0; i < m->cap; i++)
			if (m->cells[i].key) {
				size_t j = m->cells[i].key * 0x9e3779b97f4a7c15u % grown.cap;
				while (grown.cells[j].key)
					j = (j + 1) % grown.cap;
				grown.cells[j] = m->cells[i];
				grown.used++;
			}
		free(m->cells);
		*m = grown;
	}
	size_t j = key * 0x9e3779b97f4a7c15u % m->cap;
	while (m->cells[j].key && m->cells[j].key != key)
		j = (j + 1) % m->cap;
	if (!m->cells[j].key) {
		m->cells[j].key = key;
		m->used++;
	}
	m->cells[j].count++;
	m->cells[j].bytes += bytes;
	return NULL;
}

/* --by owner: the type rows, with every buffer that an object owns split
 * by that object's type in the detail column (e.g. "cpython  dict values
 * Order"): which types the buffers belong to. */
/* The instance whose __dict__ each dict is (graph edges of that kind): by
 * the dict's node, the instance's category, or UINT32_MAX. NULL when
 * there is no graph (or no memory): owners are then named by type only. */
static uint32_t *instance_dict_owners(struct pm_target *t, const struct pm_graph **ret)
{
	const struct pm_graph *g;
	struct pm_error *err = pm_graph_get(t, &g);
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	uint32_t *owner = malloc((g->nnodes ? g->nnodes : 1) * sizeof(*owner));
	if (!owner)
		return NULL;
	memset(owner, 0xff, (g->nnodes ? g->nnodes : 1) * sizeof(*owner));
	for (uint32_t n = 0; n < g->nheap; n++)
		for (uint32_t e = g->edge_start[n]; e < g->edge_start[n + 1]; e++)
			if (PM_EDGE_KIND(g->edge_kind[e]) == PM_EDGE_DICT &&
			    g->edge_target[e] < g->nheap)
				owner[g->edge_target[e]] =
					g->heap->allocs[g->node_alloc[n]].category;
	*ret = g;
	return owner;
}

static struct pm_error *summary_by_owner(struct pm_target *t,
					 const struct pm_cpython_heap *heap,
					 struct summary *s)
{
	/* An owner key is the owner's category, that plus ncat for "the
	 * __dict__ of an instance of" that category, or 2 * ncat for none. */
	const size_t ncat = heap->ncategories, nkeys = 2 * ncat + 1;
	struct owner_cells m = { 0 };
	struct pm_error *err = NULL;
	const struct pm_graph *g = NULL;
	uint32_t *dict_owner = instance_dict_owners(t, &g);
	for (size_t i = 0; i < heap->nallocs && !err; i++) {
		const struct pm_alloc *alloc = &heap->allocs[i];
		if (alloc->category >= ncat)
			continue;
		uint64_t owner_key = 2 * ncat;      /* none */
		if (heap->owners && heap->owners[i]) {
			const struct pm_alloc *owner =
				pm_cpython_find_alloc(heap, heap->owners[i]);
			if (owner && owner->category < ncat)
				owner_key = owner->category;
			uint32_t node = dict_owner ? pm_graph_node_at(g, heap->owners[i]) :
				PM_NODE_NONE;
			if (node != PM_NODE_NONE && node < g->nheap &&
			    dict_owner[node] < ncat)
				owner_key = ncat + dict_owner[node];
		}
		err = owner_cells_add(&m, alloc->category * nkeys + owner_key + 1,
				      alloc->size);
	}
	free(dict_owner);
	for (size_t i = 0; i < m.cap && !err; i++) {
		const struct owner_cell *cell = &m.cells[i];
		if (!cell->key)
			continue;
		const struct pm_category *c = &heap->categories[(cell->key - 1) / nkeys];
		size_t owner_key = (cell->key - 1) % nkeys;
		char detail[sizeof(((struct summary_row *)0)->detail)];
		if (owner_key == 2 * ncat)
			snprintf(detail, sizeof(detail), "%s", c->detail);
		else if (owner_key >= ncat)
			snprintf(detail, sizeof(detail), "__dict__ of %s",
				 heap->categories[owner_key - ncat].kind);
		else
			snprintf(detail, sizeof(detail), "%s",
				 heap->categories[owner_key].kind);
		struct summary_row *r = summary_row(s, c->domain, c->kind, detail);
		if (!r) {
			err = &pm_error_no_memory;
			break;
		}
		r->count += cell->count;
		r->bytes += cell->bytes;
	}
	free(m.cells);
	return err;
}

/* A row from another layer (pm_retainer_rows). */
static bool summary_row_sink(void *arg, const char *domain, const char *kind,
			     const char *detail, uint64_t count, uint64_t bytes)
{
	struct summary_row *r = summary_row(arg, domain, kind, detail);
	if (r) {
		r->count += count;
		r->bytes += bytes;
	}
	return r != NULL;
}

static struct pm_error *summary_used(struct pm_target *t,
				     const struct pm_cpython_heap *heap,
				     const char *by, struct summary *s)
{
	if (!strcmp(by, "owner"))
		return summary_by_owner(t, heap, s);
	if (!strcmp(by, "retainer"))
		return pm_retainer_rows(t, summary_row_sink, s);
	if (strcmp(by, "type") != 0)
		return summary_group(t, heap, by, s);
	for (size_t i = 0; i < heap->ncategories; i++) {
		const struct pm_category *c = &heap->categories[i];
		if (!c->count)
			continue;
		struct summary_row *r = summary_row_new(s, c->domain, c->kind,
							c->detail);
		if (!r)
			return &pm_error_no_memory;
		r->count = c->count;
		r->bytes = c->bytes;
	}
	return NULL;
}

/* The rows past --top, added up: with the rows shown they make TOTAL. */
static struct summary_row summary_rows_not_shown(const struct summary *s,
						  size_t shown)
{
	struct summary_row hidden = { .count = 0 };
	for (size_t i = shown; i < s->nrows; i++) {
		hidden.count += s->rows[i].count;
		hidden.bytes += s->rows[i].bytes;
	}
	return hidden;
}

static uint64_t summary_bytes(const struct summary *s)
{
	uint64_t bytes = 0;
	for (size_t i = 0; i < s->nrows; i++)
		bytes += s->rows[i].bytes;
	return bytes;
}

static void summary_json(struct pm_target *t, const struct pm_cpython_heap *heap,
			 const struct summary *s, size_t shown, const char *by,
			 struct pm_strbuf *out)
{
	uint64_t count = 0, bytes = 0;
	for (size_t i = 0; i < s->nrows; i++) {
		count += s->rows[i].count;
		bytes += s->rows[i].bytes;
	}
	python_json(heap->py, out);
	pm_strbuf_append(out, ", \"by\": ");
	pm_strbuf_json_string(out, by);
	pm_strbuf_printf(out, ", \"pymalloc_walked\": %s, \"glibc_walked\": %s, "
			 "\"debug_hooks\": %s, \"objects\": %" PRIu64
			 ", \"free_list_objects\": %" PRIu64 ", \"attributed\": %"
			 PRIu64 ", \"inferred\": {\"allocations\": %" PRIu64
			 ", \"bytes\": %" PRIu64 ", \"precise\": %s}, \"notes\": [",
			 heap->pymalloc_walked ? "true" : "false",
			 heap->glibc_walked ? "true" : "false",
			 heap->debug_hooks ? "true" : "false", heap->objects,
			 heap->free_list_objects, heap->attributed, heap->inferred,
			 heap->inferred_bytes, heap->precise ? "true" : "false");
	for (size_t i = 0; i < heap->nnotes; i++) {
		if (i)
			pm_strbuf_append(out, ", ");
		pm_strbuf_json_string(out, heap->notes[i]);
	}
	pm_strbuf_append(out, "], \"rows\": [");
	for (size_t i = 0; i < shown; i++) {
		const struct summary_row *r = &s->rows[i];
		pm_strbuf_append(out, i ? ", {\"domain\": " : "{\"domain\": ");
		pm_strbuf_json_string(out, r->domain);
		pm_strbuf_append(out, ", \"kind\": ");
		pm_strbuf_json_string(out, r->kind);
		pm_strbuf_append(out, ", \"detail\": ");
		pm_strbuf_json_string(out, r->detail);
		pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
				 r->count, r->bytes);
	}
	struct summary_row hidden = summary_rows_not_shown(s, shown);
	pm_strbuf_printf(out, "], \"rows_not_shown\": {\"rows\": %zu, \"count\": %"
			 PRIu64 ", \"bytes\": %" PRIu64 "}", s->nrows - shown,
			 hidden.count, hidden.bytes);
	pm_strbuf_printf(out, ", \"total\": {\"count\": %" PRIu64 ", \"bytes\": %"
			 PRIu64 ", \"partial\": ", count, bytes);
	pm_report_partial_figure_json(t, out);
	uint64_t writable = pm_target_writable_bytes(t);
	pm_strbuf_printf(out, "}, \"writable_bytes\": %" PRIu64
			 ", \"unaccounted_bytes\": %" PRIu64, writable,
			 writable > bytes ? writable - bytes : 0);
}

static void summary_text(struct pm_target *t, const struct pm_cpython_heap *heap,
			 const struct summary *s, size_t shown, const char *all_rows_option,
			 struct pm_strbuf *out)
{
	static const char *const headers[] = { "domain", "kind", "detail", "count",
					       "bytes", "% bytes" };
	static const bool right[] = { false, false, false, true, true, true };
	uint64_t count = 0, bytes = 0;
	for (size_t i = 0; i < s->nrows; i++) {
		count += s->rows[i].count;
		bytes += s->rows[i].bytes;
	}
	if (heap->py->is_python && !heap->python) {
		/* An interpreter newer (or older) than the tables: said first,
		 * then the rows the allocators alone can tell. */
		char version[32];
		python_version_text(heap->py, version, sizeof(version));
		pm_strbuf_printf(out, "CPython %s: its objects not recognised (see the "
				 "note); glibc and mmap rows only\n", version);
	} else if (heap->py->is_python) {
		char version[32];
		python_version_text(heap->py, version, sizeof(version));
		pm_strbuf_printf(out, "CPython %s: %" PRIu64 " objects recognised, %"
				 PRIu64 " on free lists, %" PRIu64 " owned buffers attributed%s\n",
				 version, heap->objects, heap->free_list_objects,
				 heap->attributed,
				 heap->debug_hooks ? " (debug allocator hooks)" : "");
	}
	for (size_t i = 0; i < heap->nnotes; i++)
		pm_strbuf_printf(out, "note: %s\n", heap->notes[i]);
	struct pm_table *table = pm_table_create(6, headers, right);
	if (!table)
		return;
	char c[32], b[32], pct[16];
	for (size_t i = 0; i < shown; i++) {
		const struct summary_row *r = &s->rows[i];
		snprintf(pct, sizeof(pct), "%.1f", bytes ? 100.0 * (double)r->bytes / (double)bytes : 0.0);
		const char *cells[] = { r->domain, r->kind, r->detail,
					pm_format_grouped(r->count, c),
					pm_format_grouped(r->bytes, b), pct };
		pm_table_add_row(table, cells);
	}
	const char *total[] = { "TOTAL", "", "", pm_format_grouped(count, c),
				pm_format_grouped(bytes, b), "100.0" };
	pm_table_add_row(table, total);
	pm_table_render(table, out);
	pm_table_destroy(table);
	pm_report_mark_total_partial(t, out);
	if (shown < s->nrows) {
		struct summary_row hidden = summary_rows_not_shown(s, shown);
		size_t more = s->nrows - shown;
		pm_strbuf_printf(out, "%zu more row%s: %s allocations, %s bytes (%s to show them)\n",
				 more, more == 1 ? "" : "s",
				 pm_format_grouped(hidden.count, c),
				 pm_format_grouped(hidden.bytes, b),
				 all_rows_option ? all_rows_option : "--top 0");
	}
}

/* How much the inference of cpython_inferred.c covered, said after
 * everything else (the lines before keep their places): its rows are apart
 * from the precise ones, and --precise leaves them unknown. */
static void summary_inferred_text(const struct pm_cpython_heap *heap,
				  struct pm_strbuf *out)
{
	char c[32], b[32];
	if (heap->precise)
		pm_strbuf_append(out, "inferred owners: off (--precise; GDB: set pymortem "
				 "precise on): an unknown allocation that one object alone "
				 "points at stays unknown\n");
	else if (heap->inferred)
		pm_strbuf_printf(out, "inferred owners: %s allocations, %s bytes in the "
				 "\"held by T (inferred)\" rows (each pointed at only from one "
				 "object of type T, or from buffers inferred as its); "
				 "--precise (GDB: set pymortem precise on) leaves them "
				 "unknown\n",
				 pm_format_grouped(heap->inferred, c),
				 pm_format_grouped(heap->inferred_bytes, b));
}

/* A leak usually shows as one Python type holding most of the heap (the
 * demo's bytes, 76%): then summary ends with the leak suspects, whose
 * reference graph and dominator tree take about twice summary's time; on
 * other heaps summary does not spend it (`suspects` does). */
#define STANDOUT_SHARE 0.5

static bool one_type_stands_out(const struct summary *s)
{
	uint64_t total = 0, top = 0;
	for (size_t i = 0; i < s->nrows; i++) {
		total += s->rows[i].bytes;
		if (!strcmp(s->rows[i].domain, "python") && s->rows[i].bytes > top)
			top = s->rows[i].bytes;
	}
	return total && (double)top >= STANDOUT_SHARE * (double)total;
}

struct pm_error *pm_report_summary(struct pm_target *t,
				   const struct pm_report_args *args,
				   struct pm_strbuf *out)
{
	const char *by = args->by ? args->by : "type";
	if (strcmp(by, "type") && strcmp(by, "owner") && strcmp(by, "retainer") &&
	    strcmp(by, "size") &&
	    strcmp(by, "region") && strcmp(by, "allocator"))
		return pm_error_format(PM_ERR_INVALID,
				       "summary --by %s: expected type, owner, retainer, size, region or allocator", by);
	const struct pm_cpython_heap *heap;
	struct pm_error *err = pm_cpython_analyse(t, &heap);
	if (err)
		return err;
	struct summary s = { 0 };
	err = summary_build(t, heap, args, &s);
	size_t shown = 0;
	if (!err) {
		if (s.nrows)
			qsort(s.rows, s.nrows, sizeof(*s.rows), summary_row_compare);
		shown = args->top > 0 && (size_t)args->top < s.nrows ?
			(size_t)args->top : s.nrows;
		err = pm_report_note_unaccounted(t, summary_bytes(&s));
	}
	if (!err) {
		if (args->format == PM_FORMAT_JSON)
			summary_json(t, heap, &s, shown, by, out);
		else
			summary_text(t, heap, &s, shown, args->all_rows_option, out);
		if (!strcmp(by, "type") && !args->state && one_type_stands_out(&s))
			err = pm_summary_suspects(t, args->format == PM_FORMAT_JSON, out);
		if (!err && args->format != PM_FORMAT_JSON)
			summary_inferred_text(heap, out);
	}
	free(s.rows);
	summary_row_index_deinit(&s.index);
	return err;
}

/* The summary's rows for `by` (type or owner; in-use memory), each passed
 * to sink: what a snapshot keeps for diff. */
struct pm_error *pm_summary_rows(struct pm_target *t, const char *by,
				 void (*sink)(void *arg, const char *domain, const char *kind,
					      const char *detail, uint64_t count,
					      uint64_t bytes),
				 void *arg)
{
	const struct pm_cpython_heap *heap;
	struct pm_error *err = pm_cpython_analyse(t, &heap);
	if (err)
		return err;
	struct summary s = { 0 };
	struct pm_report_args args = { .by = by };
	err = summary_build(t, heap, &args, &s);
	for (size_t i = 0; !err && i < s.nrows; i++)
		sink(arg, s.rows[i].domain, s.rows[i].kind, s.rows[i].detail,
		     s.rows[i].count, s.rows[i].bytes);
	free(s.rows);
	summary_row_index_deinit(&s.index);
	return err;
}

/* ---- objects ------------------------------------------------------- */

enum { OBJECTS_DEFAULT_LIMIT = 100 };

static bool object_selected(const struct pm_cpython_heap *heap,
			    const struct pm_alloc *alloc,
			    const struct pm_report_args *args)
{
	if (alloc->category >= heap->ncategories)
		return false;
	const struct pm_category *c = &heap->categories[alloc->category];
	/* Attributed buffers and structures ("cpython", "ld.so", "numpy" rows) are
	 * listed when asked for by their kind, e.g. --type "AST arena block". */
	bool named = args->type && !strcmp(args->type, c->kind);
	if (strcmp(c->domain, "python") != 0 &&
	    !(named && pm_category_buffer_domain(c->domain)))
		return false;
	if (args->type && !named)
		return false;
	return alloc->size >= args->min_size;
}

static void object_json(const struct pm_cpython_heap *heap,
			const struct pm_alloc *alloc, bool first,
			struct pm_strbuf *out)
{
	const struct pm_category *c = &heap->categories[alloc->category];
	pm_strbuf_printf(out, "%s{\"address\": %" PRIu64 ", \"type\": ",
			 first ? "" : ", ", alloc->addr + alloc->object_offset);
	pm_strbuf_json_string(out, c->kind);
	pm_strbuf_printf(out, ", \"state\": \"%s\", \"allocation\": %" PRIu64
			 ", \"size\": %" PRIu64 ", \"header\": %" PRIu64
			 ", \"allocator\": ",
			 strcmp(c->detail, "free list") ? "live" : "free list",
			 alloc->addr, alloc->size, pm_alloc_header(alloc));
	pm_strbuf_json_string(out, pm_alloc_kind_name(alloc->kind));
	/* An attributed buffer: the object that owns it. */
	uint64_t owner = heap->owners ? heap->owners[alloc - heap->allocs] : 0;
	if (!owner && heap->inferred_owners)
		owner = heap->inferred_owners[alloc - heap->allocs];
	if (owner)
		pm_strbuf_printf(out, ", \"owner\": %" PRIu64, owner);
	pm_strbuf_append(out, "}");
}

/* Lists recognised objects (--type NAME, --min-size N, --limit N; limit 0
 * is OBJECTS_DEFAULT_LIMIT, negative is all). */
struct pm_error *pm_report_objects(struct pm_target *t,
				   const struct pm_report_args *args,
				   struct pm_strbuf *out)
{
	const struct pm_cpython_heap *heap;
	struct pm_error *err = pm_cpython_analyse(t, &heap);
	if (err)
		return err;
	uint64_t limit = args->limit < 0 ? UINT64_MAX :
		args->limit ? (uint64_t)args->limit : OBJECTS_DEFAULT_LIMIT;
	uint64_t matching = 0;
	bool json = args->format == PM_FORMAT_JSON;
	struct pm_table *table = NULL;
	if (json) {
		pm_strbuf_append(out, "\"objects\": [");
	} else {
		static const char *const headers[] = { "address", "type", "state",
						       "size", "allocator" };
		static const bool right[] = { false, false, false, true, false };
		table = pm_table_create(5, headers, right);
		if (!table)
			return &pm_error_no_memory;
	}
	for (size_t i = 0; i < heap->nallocs; i++) {
		const struct pm_alloc *alloc = &heap->allocs[i];
		if (!object_selected(heap, alloc, args) || matching++ >= limit)
			continue;
		if (json) {
			object_json(heap, alloc, matching == 1, out);
			continue;
		}
		const struct pm_category *c = &heap->categories[alloc->category];
		char address[24], size[32];
		snprintf(address, sizeof(address), "0x%" PRIx64,
			 alloc->addr + alloc->object_offset);
		const char *cells[] = { address, c->kind,
					strcmp(c->detail, "free list") ? "live" : "free list",
					pm_format_grouped(alloc->size, size),
					pm_alloc_kind_name(alloc->kind) };
		pm_table_add_row(table, cells);
	}
	uint64_t shown = matching < limit ? matching : limit;
	if (json) {
		pm_strbuf_printf(out, "], \"matching\": %" PRIu64 ", \"shown\": %" PRIu64,
				 matching, shown);
		return NULL;
	}
	pm_table_render(table, out);
	pm_table_destroy(table);
	pm_strbuf_printf(out, "%" PRIu64 " of %" PRIu64 " matching objects shown%s\n",
			 shown, matching, shown < matching ? " (--limit N for more)" : "");
	return NULL;
}
