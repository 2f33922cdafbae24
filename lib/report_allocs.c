/* Allocation-level reports: "allocations" (heap used|free|all: one line per
 * allocation with a preview of its content), "select" (the same listing
 * filtered by a query, query.h), "describe" (what contains an address:
 * region, chunk or pool/block, allocation, object, owner) and "hexdump". */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocs.h"
#include "glibc.h"
#include "pymalloc.h"
#include "query.h"
#include "report.h"
#include "report_graph.h"

enum {
	LIST_DEFAULT_LIMIT = 100,
	HEXDUMP_DEFAULT_LENGTH = 256,
	HEXDUMP_MAX_LENGTH = 1 << 16,
};

static void hex_address(uint64_t addr, char *buf, size_t size)
{
	snprintf(buf, size, "0x%" PRIx64, addr);
}

/* ---- listing (allocations, select) ---------------------------------- */

struct listing_filter {
	bool used, free;
	const char *type;           /* category kind, NULL = any */
	uint64_t min_size;
	const struct pm_query *query;
};

static bool entry_selected(const struct pm_alloc_entry *e,
			   const struct listing_filter *f)
{
	if (!(e->state == PM_ALLOC_STATE_FREE ? f->free : f->used))
		return false;
	if (e->size < f->min_size || (f->type && strcmp(f->type, e->kind) != 0))
		return false;
	if (!f->query)
		return true;
	struct pm_query_row row = {
		.domain = e->domain, .kind = e->kind, .detail = e->detail,
		.state = pm_alloc_state_name((enum pm_alloc_state)e->state),
		.addr = e->addr, .size = e->size,
	};
	return pm_query_match(f->query, &row);
}

static void entry_json(struct pm_target *t, const struct pm_alloc_list *l,
		       const struct pm_alloc_entry *e, bool first,
		       struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "%s\n  {\"address\": %" PRIu64 ", \"size\": %" PRIu64
			 ", \"header\": %u, \"allocator\": \"%s\", \"state\": \"%s\", "
			 "\"domain\": ", first ? "" : ",", e->addr, e->size, e->header,
			 e->pymalloc ? "pymalloc" : "glibc",
			 pm_alloc_state_name((enum pm_alloc_state)e->state));
	pm_strbuf_json_string(out, e->domain);
	pm_strbuf_append(out, ", \"kind\": ");
	pm_strbuf_json_string(out, e->kind);
	pm_strbuf_append(out, ", \"detail\": ");
	pm_strbuf_json_string(out, e->detail);
	if (e->has_object)
		pm_strbuf_printf(out, ", \"object\": %" PRIu64, e->addr + e->object_offset);
	else
		pm_strbuf_append(out, ", \"object\": null");
	struct pm_strbuf preview;
	pm_strbuf_init(&preview);
	pm_alloc_preview(t, l, e, &preview);
	pm_strbuf_append(out, ", \"preview\": ");
	pm_strbuf_json_string(out, preview.data ? preview.data : "");
	pm_strbuf_deinit(&preview);
	pm_strbuf_append(out, "}");
}

static void entry_row(struct pm_target *t, const struct pm_alloc_list *l,
		      const struct pm_alloc_entry *e, struct pm_table *table)
{
	char address[24], size[32];
	hex_address(e->addr, address, sizeof(address));
	struct pm_strbuf preview;
	pm_strbuf_init(&preview);
	pm_alloc_preview(t, l, e, &preview);
	const char *cells[] = { address, pm_format_grouped(e->size, size),
				pm_alloc_state_name((enum pm_alloc_state)e->state),
				e->domain, e->kind, e->detail,
				preview.data ? preview.data : "" };
	pm_table_add_row(table, cells);
	pm_strbuf_deinit(&preview);
}

static void notes_text(const struct pm_cpython_heap *heap, struct pm_strbuf *out)
{
	for (size_t i = 0; i < heap->nnotes; i++)
		pm_strbuf_printf(out, "note: %s\n", heap->notes[i]);
}

static void notes_json(const struct pm_cpython_heap *heap, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "\"notes\": [");
	for (size_t i = 0; i < heap->nnotes; i++) {
		if (i)
			pm_strbuf_append(out, ", ");
		pm_strbuf_json_string(out, heap->notes[i]);
	}
	pm_strbuf_append(out, "], ");
}

/* Lists the entries the filter selects (up to the limit) with totals of
 * all of them. */
static struct pm_error *listing(struct pm_target *t,
				const struct pm_report_args *args,
				const struct listing_filter *f,
				struct pm_strbuf *out)
{
	const struct pm_alloc_list *l;
	struct pm_error *err = pm_alloc_list_get(t, &l);
	if (err)
		return err;
	uint64_t limit = args->limit < 0 ? UINT64_MAX :
		args->limit ? (uint64_t)args->limit : LIST_DEFAULT_LIMIT;
	uint64_t matching = 0, bytes = 0;
	bool json = args->format == PM_FORMAT_JSON;
	struct pm_table *table = NULL;
	if (json) {
		notes_json(l->heap, out);
		pm_strbuf_append(out, "\"allocations\": [");
	} else {
		static const char *const headers[] = { "address", "size", "state",
			"domain", "kind", "detail", "preview" };
		static const bool right[] = { false, true, false, false, false,
					      false, false };
		table = pm_table_create(7, headers, right);
		if (!table)
			return &pm_error_no_memory;
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct pm_alloc_entry *e = &l->entries[i];
		if (!entry_selected(e, f))
			continue;
		bytes += e->size;
		if (matching++ >= limit)
			continue;
		if (json)
			entry_json(t, l, e, matching == 1, out);
		else
			entry_row(t, l, e, table);
	}
	uint64_t shown = matching < limit ? matching : limit;
	if (json) {
		pm_strbuf_printf(out, "%s], \"matching\": %" PRIu64 ", \"matching_bytes\": %"
				 PRIu64 ", \"shown\": %" PRIu64, shown ? "\n" : "",
				 matching, bytes, shown);
		return NULL;
	}
	notes_text(l->heap, out);
	pm_table_render(table, out);
	pm_table_destroy(table);
	char b[32];
	pm_strbuf_printf(out, "%" PRIu64 " of %" PRIu64 " matching allocations shown "
			 "(%s bytes in all)%s\n", shown, matching,
			 pm_format_grouped(bytes, b),
			 shown < matching ? "; --limit N for more" : "");
	return NULL;
}

static struct pm_error *state_filter(const char *state, const char *what,
				     struct listing_filter *f)
{
	if (!state || !strcmp(state, "all")) {
		f->used = f->free = true;
		return NULL;
	}
	f->used = !strcmp(state, "used");
	f->free = !strcmp(state, "free");
	if (!f->used && !f->free)
		return pm_error_format(PM_ERR_INVALID,
				       "%s: state '%s': expected used, free or all",
				       what, state);
	return NULL;
}

/* heap used|free|all [--type T] [--min-size N] [--limit N] */
struct pm_error *pm_report_allocations(struct pm_target *t,
				       const struct pm_report_args *args,
				       struct pm_strbuf *out)
{
	struct listing_filter f = { .type = args->type, .min_size = args->min_size };
	struct pm_error *err = state_filter(args->state ? args->state : "used",
					    "allocations", &f);
	if (err)
		return err;
	if (args->format == PM_FORMAT_JSON)
		pm_strbuf_printf(out, "\"state\": \"%s\", ", args->state ? args->state : "used");
	return listing(t, args, &f, out);
}

/* heap select QUERY (also honours --used/--free, --type, --min-size) */
struct pm_error *pm_report_select(struct pm_target *t,
				  const struct pm_report_args *args,
				  struct pm_strbuf *out)
{
	if (!args->query || !args->query[0])
		return pm_error_format(PM_ERR_INVALID,
				       "select needs a query (--query EXPR), e.g. "
				       "'kind == \"str\" and size > 1000'");
	struct listing_filter f = { .type = args->type, .min_size = args->min_size };
	struct pm_query *q;
	struct pm_error *err = state_filter(args->state, "select", &f);
	if (!err)
		err = pm_query_parse(args->query, &q);
	if (err)
		return err;
	f.query = q;
	if (args->format == PM_FORMAT_JSON) {
		pm_strbuf_append(out, "\"query\": ");
		pm_strbuf_json_string(out, args->query);
		pm_strbuf_append(out, ", ");
	}
	err = listing(t, args, &f, out);
	pm_query_destroy(q);
	return err;
}

/* ---- describe ------------------------------------------------------ */

/* What contains the address, found once and printed as text or JSON. */
struct description {
	uint64_t address;
	const struct pm_region *region;
	const struct pm_glibc_heap *glibc;
	const struct pm_chunk *chunk;
	const struct pm_glibc_overhead *overhead;  /* glibc's, outside chunks */
	const struct pm_pymalloc *pm;
	const struct pm_pymalloc_pool *pool;
	const struct pm_alloc_entry *entry;
	const struct pm_alloc_entry *owner;
	const struct pm_alloc_list *list;
	struct pm_target *t;
};

/* The address's place in its pool: "pool header", "block N (used)", ... */
static void pool_place(const struct description *d, uint64_t *block,
		       char *buf, size_t size)
{
	const struct pm_pymalloc_pool *pool = d->pool;
	uint32_t bsize = pm_pymalloc_block_size(pool->szidx);
	uint64_t off = d->address - pool->address;
	*block = 0;
	if (off < PM_PYMALLOC_POOL_OVERHEAD) {
		snprintf(buf, size, "pool header");
		return;
	}
	uint64_t k = (off - PM_PYMALLOC_POOL_OVERHEAD) / bsize;
	if (k >= pool->nblocks) {
		snprintf(buf, size, "pool tail (no block fits)");
		return;
	}
	*block = pool->address + PM_PYMALLOC_POOL_OVERHEAD + k * bsize;
	snprintf(buf, size, "block %" PRIu64 " (%s)", k,
		 pm_pymalloc_block_used(d->pm, pool, (uint32_t)k) ? "used" : "free");
}

/* The live object that owns an attributed buffer, as the analysis
 * recorded it when it followed that object's field to the buffer. */
static const struct pm_alloc_entry *find_owner(const struct pm_alloc_list *l,
					       const struct pm_alloc_entry *target)
{
	uint64_t owner = pm_cpython_owner_of(l->heap, target->addr);
	const struct pm_alloc_entry *e = owner ? pm_alloc_list_find(l, owner) : NULL;
	if (!e || e == target || !e->has_object ||
	    e->addr + e->object_offset != owner)
		return NULL;
	return e;
}

/* prev_size and size: no allocation's data (prev_size may hold the last
 * bytes of the previous chunk's data when that one is in use). */
static bool in_chunk_header(const struct description *d)
{
	return d->chunk && d->address < d->chunk->addr + PM_GLIBC_CHUNK_HEADER;
}

static struct pm_error *describe_find(struct pm_target *t, uint64_t address,
				      struct description *d)
{
	const struct pm_alloc_list *l;
	memset(d, 0, sizeof(*d));
	d->address = address;
	d->t = t;
	if (!pm_target_find_region(t, address))
		return pm_error_at(PM_ERR_UNMAPPED, address,
				   "0x%" PRIx64 " is in no region of the target", address);
	struct pm_error *err = pm_alloc_list_get(t, &l);
	if (err)
		return err;
	d->list = l;
	/* Regions again: the walkers refined their labels. */
	d->region = pm_target_find_region(t, address);
	if (l->heap->glibc_walked && !pm_glibc_walk(t, &d->glibc)) {
		d->chunk = pm_glibc_chunk_containing(d->glibc, address);
		d->overhead = pm_glibc_overhead_containing(d->glibc, address);
	}
	if (l->heap->pymalloc_walked && !pm_pymalloc_walk(t, &d->pm))
		d->pool = pm_pymalloc_find_pool(d->pm, address);
	d->entry = pm_alloc_list_find(l, address);
	if (d->entry && d->entry->state == PM_ALLOC_STATE_USED &&
	    pm_category_buffer_domain(d->entry->domain))
		d->owner = find_owner(l, d->entry);
	return NULL;
}

/* The arena an overhead belongs to, or 0 (mmapped). */
static uint64_t overhead_arena(const struct description *d)
{
	const struct pm_glibc_overhead *o = d->overhead;
	return o->arena < d->glibc->narenas ? d->glibc->arenas[o->arena].address : 0;
}

/* glibc's own bytes outside chunks: which structure the address is in. */
static void overhead_text(const struct description *d, struct pm_strbuf *out)
{
	const struct pm_glibc_overhead *o = d->overhead;
	uint64_t end = o->addr + o->size, arena = overhead_arena(d);
	switch (o->kind) {
	case PM_OVERHEAD_ARENA_HEADER:
		pm_strbuf_printf(out, "  overhead:   glibc arena header: heap_info at 0x%" PRIx64
				 ", then the malloc_state of arena 0x%" PRIx64
				 "; first chunk at 0x%" PRIx64 "\n", o->addr, arena, end);
		break;
	case PM_OVERHEAD_HEAP_HEADER:
		pm_strbuf_printf(out, "  overhead:   glibc arena header: heap_info at 0x%" PRIx64
				 " of a later heap of arena 0x%" PRIx64
				 "; first chunk at 0x%" PRIx64 "\n", o->addr, arena, end);
		break;
	default:
		pm_strbuf_printf(out, "  overhead:   glibc memalign padding: the mapping at 0x%" PRIx64
				 " starts %" PRIu64 " bytes before its mmapped chunk at 0x%" PRIx64
				 "\n", o->addr, o->size, end);
		break;
	}
}

static const char *overhead_kind_name(uint8_t kind)
{
	switch (kind) {
	case PM_OVERHEAD_ARENA_HEADER: return "arena header";
	case PM_OVERHEAD_HEAP_HEADER: return "heap header";
	default: return "memalign padding";
	}
}

static void describe_text(const struct description *d, struct pm_strbuf *out)
{
	char label[128], a[24];
	pm_region_label_text(d->region, label, sizeof(label));
	pm_strbuf_printf(out, "0x%" PRIx64 ":\n  region:     0x%" PRIx64 "-0x%" PRIx64
			 " %s%s%s\n", d->address, d->region->start, d->region->end,
			 label, d->region->path ? " " : "",
			 d->region->path ? d->region->path : "");
	if (d->chunk) {
		const struct pm_chunk *c = d->chunk;
		pm_strbuf_printf(out, "  chunk:      0x%" PRIx64 " size %" PRIu64 " (%s)",
				 c->addr, c->size,
				 pm_chunk_state_name((enum pm_chunk_state)c->state));
		if (c->arena < d->glibc->narenas)
			pm_strbuf_printf(out, ", arena 0x%" PRIx64,
					 d->glibc->arenas[c->arena].address);
		pm_strbuf_printf(out, ", user data at 0x%" PRIx64 "\n", c->addr + 16);
	}
	if (d->overhead)
		overhead_text(d, out);
	if (d->pool) {
		uint64_t block;
		char place[64];
		pool_place(d, &block, place, sizeof(place));
		pm_strbuf_printf(out, "  pool:       0x%" PRIx64 " size class %u (%u B"
				 " blocks), %u of %u used; %s",
				 d->pool->address, d->pool->szidx,
				 pm_pymalloc_block_size(d->pool->szidx),
				 d->pool->nused, d->pool->nblocks, place);
		if (block)
			pm_strbuf_printf(out, " at 0x%" PRIx64, block);
		pm_strbuf_append(out, "\n");
	}
	const struct pm_alloc_entry *e = d->entry;
	if (!e) {
		pm_strbuf_printf(out, "  allocation: none (%s)\n", in_chunk_header(d) ?
				 "in the chunk's header: prev_size, size" :
				 "in no allocation the walkers found");
		return;
	}
	pm_strbuf_printf(out, "  allocation: 0x%" PRIx64 " size %" PRIu64 " %s: %s / %s / %s"
			 " (offset %" PRIu64 ")\n", e->addr, e->size,
			 pm_alloc_state_name((enum pm_alloc_state)e->state),
			 e->domain, e->kind, e->detail, d->address - e->addr);
	pm_strbuf_append(out, "  content:    ");
	pm_alloc_preview(d->t, d->list, e, out);
	pm_strbuf_append(out, "\n");
	if (e->has_object) {
		uint64_t obj = e->addr + e->object_offset;
		pm_strbuf_printf(out, "  object:     0x%" PRIx64 " %s%s, address at offset %"
				 PRId64 "%s\n", obj, e->kind,
				 strcmp(e->detail, "free list") ? "" : " (on a free list)",
				 (int64_t)(d->address - obj),
				 d->address < obj ? " (its GC header / pre-header)" : "");
	}
	if (d->owner) {
		hex_address(d->owner->addr + d->owner->object_offset, a, sizeof(a));
		pm_strbuf_printf(out, "  owner:      %s %s (holds this %s)\n", a,
				 d->owner->kind, e->kind);
	} else if (e->state == PM_ALLOC_STATE_USED && !strcmp(e->domain, "cpython")) {
		pm_strbuf_append(out, "  owner:      no owning object recorded (a runtime structure's)\n");
	}
}

static void describe_json(const struct description *d, struct pm_strbuf *out)
{
	char label[128];
	pm_region_label_text(d->region, label, sizeof(label));
	pm_strbuf_printf(out, "\"address\": %" PRIu64 ",\n\"region\": {\"start\": %" PRIu64
			 ", \"end\": %" PRIu64 ", \"label\": ", d->address,
			 d->region->start, d->region->end);
	pm_strbuf_json_string(out, label);
	pm_strbuf_append(out, ", \"path\": ");
	if (d->region->path)
		pm_strbuf_json_string(out, d->region->path);
	else
		pm_strbuf_append(out, "null");
	pm_strbuf_append(out, "},\n\"chunk\": ");
	if (d->chunk) {
		const struct pm_chunk *c = d->chunk;
		pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"size\": %" PRIu64
				 ", \"state\": \"%s\", \"arena\": %" PRIu64 "}",
				 c->addr, c->size,
				 pm_chunk_state_name((enum pm_chunk_state)c->state),
				 c->arena < d->glibc->narenas ?
				 d->glibc->arenas[c->arena].address : 0);
	} else {
		pm_strbuf_append(out, "null");
	}
	pm_strbuf_append(out, ",\n\"overhead\": ");
	if (d->overhead) {
		const struct pm_glibc_overhead *o = d->overhead;
		pm_strbuf_printf(out, "{\"kind\": \"%s\", \"address\": %" PRIu64
				 ", \"size\": %" PRIu64 ", \"arena\": ",
				 overhead_kind_name(o->kind), o->addr, o->size);
		uint64_t arena = overhead_arena(d);
		if (arena)
			pm_strbuf_printf(out, "%" PRIu64 "}", arena);
		else
			pm_strbuf_append(out, "null}");
	} else {
		pm_strbuf_append(out, "null");
	}
	pm_strbuf_append(out, ",\n\"pool\": ");
	if (d->pool) {
		uint64_t block;
		char place[64];
		pool_place(d, &block, place, sizeof(place));
		pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"size_class\": %u"
				 ", \"block_size\": %u, \"used\": %u, \"blocks\": %u"
				 ", \"place\": ", d->pool->address, d->pool->szidx,
				 pm_pymalloc_block_size(d->pool->szidx),
				 d->pool->nused, d->pool->nblocks);
		pm_strbuf_json_string(out, place);
		pm_strbuf_printf(out, ", \"block\": %" PRIu64 "}", block);
	} else {
		pm_strbuf_append(out, "null");
	}
	const struct pm_alloc_entry *e = d->entry;
	pm_strbuf_append(out, ",\n\"allocation\": ");
	if (e) {
		pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"size\": %" PRIu64
				 ", \"header\": %u, \"state\": \"%s\", \"domain\": ",
				 e->addr, e->size, e->header,
				 pm_alloc_state_name((enum pm_alloc_state)e->state));
		pm_strbuf_json_string(out, e->domain);
		pm_strbuf_append(out, ", \"kind\": ");
		pm_strbuf_json_string(out, e->kind);
		pm_strbuf_append(out, ", \"detail\": ");
		pm_strbuf_json_string(out, e->detail);
		struct pm_strbuf preview;
		pm_strbuf_init(&preview);
		pm_alloc_preview(d->t, d->list, e, &preview);
		pm_strbuf_append(out, ", \"preview\": ");
		pm_strbuf_json_string(out, preview.data ? preview.data : "");
		pm_strbuf_deinit(&preview);
		pm_strbuf_append(out, "}");
	} else {
		pm_strbuf_append(out, "null");
	}
	pm_strbuf_append(out, ",\n\"object\": ");
	if (e && e->has_object) {
		uint64_t obj = e->addr + e->object_offset;
		pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"type\": ", obj);
		pm_strbuf_json_string(out, e->kind);
		pm_strbuf_printf(out, ", \"offset\": %" PRId64 ", \"free_list\": %s}",
				 (int64_t)(d->address - obj),
				 strcmp(e->detail, "free list") ? "false" : "true");
	} else {
		pm_strbuf_append(out, "null");
	}
	pm_strbuf_append(out, ",\n\"owner\": ");
	if (d->owner) {
		pm_strbuf_printf(out, "{\"address\": %" PRIu64 ", \"type\": ",
				 d->owner->addr + d->owner->object_offset);
		pm_strbuf_json_string(out, d->owner->kind);
		pm_strbuf_append(out, "}");
	} else {
		pm_strbuf_append(out, "null");
	}
}

/* heap describe ADDR */
struct pm_error *pm_report_describe(struct pm_target *t,
				    const struct pm_report_args *args,
				    struct pm_strbuf *out)
{
	if (!args->has_address)
		return pm_error_format(PM_ERR_INVALID,
				       "describe needs an address (--address ADDR)");
	struct description d;
	struct pm_error *err = describe_find(t, args->address, &d);
	if (err)
		return err;
	if (args->format == PM_FORMAT_JSON)
		describe_json(&d, out);
	else
		describe_text(&d, out);
	/* What holds it, when the address is a live object's or one of its
	 * buffers' (the graph is not built for anything else). */
	const struct pm_alloc_entry *e = d.entry;
	if (e && e->state == PM_ALLOC_STATE_USED &&
	    ((e->has_object && strcmp(e->detail, "free list")) || d.owner))
		return pm_graph_describe(t, args->address, args->format, out);
	if (args->format == PM_FORMAT_JSON)
		pm_strbuf_append(out, ",\n\"graph\": null");
	return NULL;
}

/* ---- hexdump ------------------------------------------------------- */

static void hexdump_text(uint64_t address, const uint8_t *b, size_t len,
			 struct pm_strbuf *out)
{
	for (size_t line = 0; line < len; line += 16) {
		pm_strbuf_printf(out, "0x%016" PRIx64 ": ", address + line);
		for (size_t i = line; i < line + 16; i++) {
			if (i < len)
				pm_strbuf_printf(out, "%02x ", b[i]);
			else
				pm_strbuf_append(out, "   ");
			if (i == line + 7)
				pm_strbuf_append(out, " ");
		}
		pm_strbuf_append(out, " |");
		for (size_t i = line; i < line + 16 && i < len; i++)
			pm_strbuf_printf(out, "%c", b[i] >= 0x20 && b[i] < 0x7f ? b[i] : '.');
		pm_strbuf_append(out, "|\n");
	}
}

/* heap hexdump ADDR [LEN] */
struct pm_error *pm_report_hexdump(struct pm_target *t,
				   const struct pm_report_args *args,
				   struct pm_strbuf *out)
{
	if (!args->has_address)
		return pm_error_format(PM_ERR_INVALID,
				       "hexdump needs an address (--address ADDR)");
	uint64_t address = args->address;
	uint64_t len = args->length ? args->length : HEXDUMP_DEFAULT_LENGTH;
	if (len > HEXDUMP_MAX_LENGTH)
		return pm_error_format(PM_ERR_INVALID,
				       "hexdump: length %" PRIu64 " is more than %d bytes",
				       len, HEXDUMP_MAX_LENGTH);
	if (address + len < address)
		return pm_error_format(PM_ERR_INVALID,
				       "hexdump: 0x%" PRIx64 " + %" PRIu64 " wraps around",
				       address, len);
	if (!pm_target_find_region(t, address))
		return pm_error_at(PM_ERR_UNMAPPED, address,
				   "0x%" PRIx64 " is in no region of the target", address);
	/* The walkers label the regions, in the order the CPython analysis
	 * runs them (so a label reads the same as after describe); a failed
	 * walk leaves its regions unlabelled. */
	const struct pm_pymalloc *pm;
	pm_error_destroy(pm_pymalloc_walk(t, &pm));
	const struct pm_glibc_heap *g;
	pm_error_destroy(pm_glibc_walk(t, &g));
	const struct pm_region *r = pm_target_find_region(t, address);
	uint8_t *buf = malloc((size_t)len);
	if (!buf)
		return &pm_error_no_memory;
	struct pm_error *err = pm_target_read(t, address, buf, (size_t)len);
	if (err) {
		free(buf);
		return pm_error_wrap(err, "hexdump 0x%" PRIx64 "+%" PRIu64, address, len);
	}
	char label[128];
	pm_region_label_text(r, label, sizeof(label));
	if (args->format == PM_FORMAT_JSON) {
		pm_strbuf_printf(out, "\"address\": %" PRIu64 ", \"length\": %" PRIu64
				 ", \"region\": ", address, len);
		pm_strbuf_json_string(out, label);
		pm_strbuf_append(out, ", \"hex\": \"");
		for (uint64_t i = 0; i < len; i++)
			pm_strbuf_printf(out, "%02x", buf[i]);
		pm_strbuf_append(out, "\"");
	} else {
		pm_strbuf_printf(out, "0x%" PRIx64 "-0x%" PRIx64 " (%" PRIu64
				 " bytes) in %s%s%s\n", address, address + len, len,
				 label, r->path ? " " : "", r->path ? r->path : "");
		hexdump_text(address, buf, (size_t)len, out);
	}
	free(buf);
	return NULL;
}
