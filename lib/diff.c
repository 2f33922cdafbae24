/* `diff`: how the heap grew between two snapshots (snapshot.h). Per
 * summary row (by type, owner, or retainer) the count and bytes before, after and
 * the change, growth first, with a TOTAL; and when both snapshots are of
 * the same process (same pid and AT_RANDOM bytes), the allocations that
 * are new in the second: at an address the first did not have in use, or
 * had with another category. Those are summed by category, with examples
 * (address, size, and a preview when the snapshot's target is open); and
 * the same for what the first had that is gone. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocs.h"
#include "snapshot.h"
#include "strbuf.h"
#include "vector.h"

enum { EXAMPLES_TEXT = 3, EXAMPLES_JSON = 10 };

struct change {
	const char *domain, *kind, *detail;
	uint64_t count[2], bytes[2];    /* before, after */
};
PM_DEFINE_VECTOR(change_vector, struct change)
PM_DEFINE_VECTOR(u64_vector, uint64_t)

static int names_cmp(const char *d1, const char *k1, const char *t1,
		     const char *d2, const char *k2, const char *t2)
{
	int c = strcmp(d1, d2);
	if (!c)
		c = strcmp(k1, k2);
	return c ? c : strcmp(t1, t2);
}

static int change_name_cmp(const void *x, const void *y)
{
	const struct change *a = x, *b = y;
	return names_cmp(a->domain, a->kind, a->detail, b->domain, b->kind, b->detail);
}

static int64_t delta(uint64_t before, uint64_t after)
{
	return (int64_t)(after - before);
}

/* Growth first (bytes, then count), then by name. */
static int change_growth_cmp(const void *x, const void *y)
{
	const struct change *a = x, *b = y;
	int64_t da = delta(a->bytes[0], a->bytes[1]), db = delta(b->bytes[0], b->bytes[1]);
	if (da != db)
		return da > db ? -1 : 1;
	int64_t ca = delta(a->count[0], a->count[1]), cb = delta(b->count[0], b->count[1]);
	if (ca != cb)
		return ca > cb ? -1 : 1;
	return change_name_cmp(x, y);
}

/* Both snapshots' rows, one change per name. */
static bool changes_of(const struct pm_snapshot_row_vector *before,
		       const struct pm_snapshot_row_vector *after,
		       struct change_vector *out)
{
	const struct pm_snapshot_row_vector *sides[2] = { before, after };
	struct change_vector all = PM_VECTOR_INIT;
	for (int side = 0; side < 2; side++)
		for (size_t i = 0; i < sides[side]->size; i++) {
			const struct pm_snapshot_row *r = &sides[side]->data[i];
			struct change c = { r->domain, r->kind, r->detail, {0, 0}, {0, 0} };
			c.count[side] = r->count;
			c.bytes[side] = r->bytes;
			if (!change_vector_append(&all, &c)) {
				change_vector_deinit(&all);
				return false;
			}
		}
	if (all.size)
		qsort(all.data, all.size, sizeof(*all.data), change_name_cmp);
	for (size_t i = 0; i < all.size; i++) {
		if (out->size && !change_name_cmp(&out->data[out->size - 1], &all.data[i])) {
			struct change *last = &out->data[out->size - 1];
			for (int side = 0; side < 2; side++) {
				last->count[side] += all.data[i].count[side];
				last->bytes[side] += all.data[i].bytes[side];
			}
		} else if (!change_vector_append(out, &all.data[i])) {
			change_vector_deinit(&all);
			return false;
		}
	}
	change_vector_deinit(&all);
	if (out->size)
		qsort(out->data, out->size, sizeof(*out->data), change_growth_cmp);
	return true;
}

static const char *signed_grouped(int64_t v, char *buf)
{
	char digits[32];
	pm_format_grouped(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, digits);
	snprintf(buf, 40, "%s%s", v > 0 ? "+" : v < 0 ? "-" : "", digits);
	return buf;
}

static bool unchanged(const struct change *c)
{
	return c->count[0] == c->count[1] && c->bytes[0] == c->bytes[1];
}

/* A change's figures: JSON members, or the table row's six number cells
 * after its names (b holds their text). */
static void figures_json(const struct change *c, struct pm_strbuf *out)
{
	pm_strbuf_printf(out, "\"count_before\": %" PRIu64 ", \"count_after\": %" PRIu64
			 ", \"count_delta\": %" PRId64 ", \"bytes_before\": %" PRIu64
			 ", \"bytes_after\": %" PRIu64 ", \"bytes_delta\": %" PRId64 "}",
			 c->count[0], c->count[1], delta(c->count[0], c->count[1]),
			 c->bytes[0], c->bytes[1], delta(c->bytes[0], c->bytes[1]));
}

static void table_row(struct pm_table *table, const struct change *c)
{
	char b[6][40];
	const char *cells[] = {
		c->domain, c->kind, c->detail,
		pm_format_grouped(c->count[0], b[0]), pm_format_grouped(c->count[1], b[1]),
		signed_grouped(delta(c->count[0], c->count[1]), b[2]),
		pm_format_grouped(c->bytes[0], b[3]), pm_format_grouped(c->bytes[1], b[4]),
		signed_grouped(delta(c->bytes[0], c->bytes[1]), b[5]) };
	pm_table_add_row(table, cells);
}

static bool same_process(const struct pm_snapshot *a, const struct pm_snapshot *b)
{
	return a->pid && a->pid == b->pid && a->has_identity && b->has_identity &&
	       !memcmp(a->identity, b->identity, sizeof(a->identity));
}

/* New allocations of one of after's categories. */
struct fresh {
	uint64_t count, bytes;
	struct u64_vector examples;     /* indexes into after's allocations */
};

static const struct pm_snapshot *sort_snapshot;

static int cat_index_cmp(const void *x, const void *y)
{
	const struct pm_snapshot_category *a = &sort_snapshot->categories.data[*(const uint32_t *)x];
	const struct pm_snapshot_category *b = &sort_snapshot->categories.data[*(const uint32_t *)y];
	return names_cmp(a->domain, a->kind, a->detail, b->domain, b->kind, b->detail);
}

/* For each of after's categories, before's category of the same names, or
 * UINT32_MAX. */
static uint32_t *category_map(const struct pm_snapshot *before, const struct pm_snapshot *after)
{
	size_t nb = before->categories.size, na = after->categories.size;
	uint32_t *sorted = malloc((nb ? nb : 1) * sizeof(*sorted));
	uint32_t *map = malloc((na ? na : 1) * sizeof(*map));
	if (!sorted || !map) {
		free(sorted);
		free(map);
		return NULL;
	}
	for (size_t i = 0; i < nb; i++)
		sorted[i] = (uint32_t)i;
	sort_snapshot = before;
	if (nb)
		qsort(sorted, nb, sizeof(*sorted), cat_index_cmp);
	for (size_t j = 0; j < na; j++) {
		const struct pm_snapshot_category *c = &after->categories.data[j];
		size_t lo = 0, hi = nb;
		map[j] = UINT32_MAX;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const struct pm_snapshot_category *m = &before->categories.data[sorted[mid]];
			int cmp = names_cmp(c->domain, c->kind, c->detail, m->domain, m->kind, m->detail);
			if (!cmp) {
				map[j] = sorted[mid];
				break;
			}
			if (cmp < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
	}
	free(sorted);
	return map;
}

static struct pm_error *fresh_allocations(const struct pm_snapshot *before,
					  const struct pm_snapshot *after,
					  size_t examples_max, struct fresh *fresh)
{
	uint32_t *map = category_map(before, after);
	if (!map)
		return &pm_error_no_memory;
	size_t i = 0;
	for (size_t j = 0; j < after->nallocs; j++) {
		uint64_t addr = after->addr[j];
		while (i < before->nallocs && before->addr[i] < addr)
			i++;
		uint32_t c = after->category[j];
		if (i < before->nallocs && before->addr[i] == addr &&
		    map[c] == before->category[i])
			continue;
		struct fresh *f = &fresh[c];
		f->count++;
		f->bytes += after->size[j];
		uint64_t index = j;
		if (f->examples.size < examples_max && !u64_vector_append(&f->examples, &index)) {
			free(map);
			return &pm_error_no_memory;
		}
	}
	free(map);
	return NULL;
}

static const struct fresh *fresh_sort;

static int fresh_index_cmp(const void *x, const void *y)
{
	const struct fresh *a = &fresh_sort[*(const uint32_t *)x], *b = &fresh_sort[*(const uint32_t *)y];
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes ? -1 : 1;
	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	return *(const uint32_t *)x < *(const uint32_t *)y ? -1 : 1;
}

static void side_json(const struct pm_snapshot *s, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "{\"source\": ");
	pm_strbuf_json_string(out, s->source);
	pm_strbuf_append(out, ", \"python\": ");
	pm_strbuf_json_string(out, s->python);
	pm_strbuf_printf(out, ", \"pid\": %" PRId64 ", \"allocations\": %zu}", s->pid, s->nallocs);
}

static void example_preview(struct pm_target *t, const struct pm_alloc_list *list,
			    uint64_t addr, struct pm_strbuf *out)
{
	const struct pm_alloc_entry *e = list ? pm_alloc_list_find(list, addr) : NULL;
	if (e)
		pm_alloc_preview(t, list, e, out);
}

/* One list of allocations that one snapshot (of) has and the other (than)
 * has not at that address with that category, by category, the largest
 * first: a "key" member in JSON, a titled list in text. Previews from t
 * (the target `of` was taken from) when list is not NULL. */
static struct pm_error *section(struct pm_strbuf *out, bool json, const char *key,
				const char *title, const struct pm_snapshot *of,
				const struct pm_snapshot *than, struct pm_target *t,
				const struct pm_alloc_list *list, size_t examples_max, long top)
{
	size_t ncat = of->categories.size;
	struct fresh *fresh = calloc(ncat ? ncat : 1, sizeof(*fresh));
	uint32_t *order = malloc((ncat ? ncat : 1) * sizeof(*order));
	struct pm_error *err = fresh && order ? fresh_allocations(than, of, examples_max, fresh) :
		&pm_error_no_memory;
	uint64_t count = 0, bytes = 0;
	size_t n = 0;
	for (size_t c = 0; !err && c < ncat; c++) {
		count += fresh[c].count;
		bytes += fresh[c].bytes;
		if (fresh[c].count)
			order[n++] = (uint32_t)c;
	}
	if (!err && n) {
		fresh_sort = fresh;
		qsort(order, n, sizeof(*order), fresh_index_cmp);
	}
	size_t rows = top > 0 && (size_t)top < n ? (size_t)top : n;
	char b[2][40];
	if (!err && json) {
		pm_strbuf_printf(out, ", \"%s\": {\"count\": %" PRIu64 ", \"bytes\": %" PRIu64
				 ", \"categories\": %zu, \"by_category\": [", key, count, bytes, n);
		for (size_t k = 0; k < rows; k++) {
			const struct pm_snapshot_category *c = &of->categories.data[order[k]];
			const struct fresh *f = &fresh[order[k]];
			pm_strbuf_append(out, k ? ",\n  {\"domain\": " : "\n  {\"domain\": ");
			pm_strbuf_json_string(out, c->domain);
			pm_strbuf_append(out, ", \"kind\": ");
			pm_strbuf_json_string(out, c->kind);
			pm_strbuf_append(out, ", \"detail\": ");
			pm_strbuf_json_string(out, c->detail);
			pm_strbuf_printf(out, ", \"count\": %" PRIu64 ", \"bytes\": %" PRIu64
					 ", \"examples\": [", f->count, f->bytes);
			for (size_t e = 0; e < f->examples.size; e++) {
				size_t j = (size_t)f->examples.data[e];
				pm_strbuf_printf(out, "%s{\"address\": %" PRIu64 ", \"object\": %"
						 PRIu64 ", \"size\": %" PRIu64 ", \"preview\": ",
						 e ? ", " : "", of->addr[j],
						 of->addr[j] + of->object_offset[j], of->size[j]);
				struct pm_strbuf p;
				pm_strbuf_init(&p);
				example_preview(t, list, of->addr[j], &p);
				if (list)
					pm_strbuf_json_string(out, p.data ? p.data : "");
				else
					pm_strbuf_append(out, "null");
				pm_strbuf_deinit(&p);
				pm_strbuf_append(out, "}");
			}
			pm_strbuf_append(out, "]}");
		}
		pm_strbuf_printf(out, "%s]}", rows ? "\n" : "");
	} else if (!err) {
		pm_strbuf_printf(out, "\n%s: %s in %zu rows, %s bytes\n", title,
				 pm_format_grouped(count, b[0]), n, pm_format_grouped(bytes, b[1]));
		for (size_t k = 0; k < rows; k++) {
			const struct pm_snapshot_category *c = &of->categories.data[order[k]];
			const struct fresh *f = &fresh[order[k]];
			pm_strbuf_printf(out, "  %-8s %-24s %-10s %12s %14s bytes\n", c->domain,
					 c->kind, c->detail, pm_format_grouped(f->count, b[0]),
					 pm_format_grouped(f->bytes, b[1]));
			for (size_t e = 0; e < f->examples.size; e++) {
				size_t j = (size_t)f->examples.data[e];
				pm_strbuf_printf(out, "      0x%" PRIx64 " %10" PRIu64 " B  ",
						 of->addr[j], of->size[j]);
				example_preview(t, list, of->addr[j], out);
				pm_strbuf_append(out, "\n");
			}
		}
		if (n > rows)
			pm_strbuf_printf(out, "  ... and %zu more rows (--top 0 shows them)\n",
					 n - rows);
	}
	for (size_t c = 0; fresh && c < ncat; c++)
		u64_vector_deinit(&fresh[c].examples);
	free(fresh);
	free(order);
	return err;
}

struct pm_error *pm_diff_run(const struct pm_snapshot *before, const struct pm_snapshot *after,
			     struct pm_target *before_target, struct pm_target *after_target,
			     const struct pm_report_args *args, char **ret)
{
	const char *by = args->by ? args->by : "type";
	if (strcmp(by, "type") && strcmp(by, "owner") && strcmp(by, "retainer"))
		return pm_error_format(PM_ERR_INVALID, "diff --by %s: expected type, owner or "
				       "retainer", by);
	bool json = args->format == PM_FORMAT_JSON;
	const struct pm_snapshot_row_vector *rows[2];
	if (!strcmp(by, "retainer")) {
		const struct pm_snapshot *sides[2] = { before, after };
		for (int side = 0; side < 2; side++)
			if (!sides[side]->has_retainers)
				return pm_error_format(PM_ERR_INVALID, "diff --by retainer: %s (%s) "
						       "has no rows by retainer: take it with "
						       "`pymortem snapshot --retainers` (GDB: `heap "
						       "snapshot --retainers`)",
						       side ? "AFTER" : "BEFORE",
						       sides[side]->source);
		rows[0] = &before->by_retainer;
		rows[1] = &after->by_retainer;
	} else if (!strcmp(by, "owner")) {
		rows[0] = &before->by_owner;
		rows[1] = &after->by_owner;
	} else {
		rows[0] = &before->by_type;
		rows[1] = &after->by_type;
	}
	struct change_vector changes = PM_VECTOR_INIT;
	if (!changes_of(rows[0], rows[1], &changes))
		return &pm_error_no_memory;
	bool same = same_process(before, after);
	size_t examples_max = args->limit > 0 ? (size_t)args->limit :
		json ? EXAMPLES_JSON : EXAMPLES_TEXT;
	struct pm_error *err = NULL;
	const struct pm_alloc_list *list = NULL, *before_list = NULL;
	struct pm_target *targets[2] = { before_target, after_target };
	const struct pm_alloc_list **lists[2] = { &before_list, &list };
	for (int side = 0; same && side < 2; side++) {
		struct pm_error *lerr = targets[side] ?
			pm_alloc_list_get(targets[side], lists[side]) : NULL;
		if (lerr) {
			pm_error_destroy(lerr);   /* examples without previews */
			*lists[side] = NULL;
		}
	}
	struct pm_strbuf out;
	pm_strbuf_init(&out);
	size_t shown = 0, changed = 0;
	struct change total = { "TOTAL", "", "", {0, 0}, {0, 0} };
	for (size_t i = 0; i < changes.size; i++) {
		changed += !unchanged(&changes.data[i]);
		for (int side = 0; side < 2; side++) {
			total.count[side] += changes.data[i].count[side];
			total.bytes[side] += changes.data[i].bytes[side];
		}
	}
	size_t limit_rows = args->top > 0 && (size_t)args->top < changed ? (size_t)args->top : changed;
	if (!err && json) {
		pm_strbuf_append(&out, "{\"before\": ");
		side_json(before, &out);
		pm_strbuf_append(&out, ", \"after\": ");
		side_json(after, &out);
		pm_strbuf_printf(&out, ", \"same_process\": %s, \"by\": \"%s\", \"rows\": [",
				 same ? "true" : "false", by);
		for (size_t i = 0; i < changes.size; i++) {
			const struct change *c = &changes.data[i];
			if (unchanged(c))
				continue;
			if (shown++ >= limit_rows)
				break;
			pm_strbuf_append(&out, shown > 1 ? ",\n  {\"domain\": " : "\n  {\"domain\": ");
			pm_strbuf_json_string(&out, c->domain);
			pm_strbuf_append(&out, ", \"kind\": ");
			pm_strbuf_json_string(&out, c->kind);
			pm_strbuf_append(&out, ", \"detail\": ");
			pm_strbuf_json_string(&out, c->detail);
			pm_strbuf_append(&out, ", ");
			figures_json(c, &out);
		}
		pm_strbuf_printf(&out, "%s], \"changed_rows\": %zu, \"total\": {",
				 shown ? "\n" : "", changed);
		figures_json(&total, &out);
	} else if (!err) {
		pm_strbuf_printf(&out, "diff by %s: before: %s%s%s; after: %s%s%s: %s\n", by,
				 before->source, *before->python ? ", CPython " : "",
				 before->python, after->source,
				 *after->python ? ", CPython " : "", after->python,
				 same ? "the same process" :
				 before->pid == after->pid && before->pid ?
				 "the same pid, but not the same process (or unknown): rows only" :
				 "different processes: rows only");
		static const char *const headers[] = { "domain", "kind", "detail", "count before",
						       "count after", "count +/-", "bytes before",
						       "bytes after", "bytes +/-" };
		static const bool right[] = { false, false, false, true, true, true, true, true, true };
		struct pm_table *table = pm_table_create(9, headers, right);
		if (!table) {
			err = &pm_error_no_memory;
		} else {
			for (size_t i = 0; i < changes.size; i++) {
				if (unchanged(&changes.data[i]))
					continue;
				if (shown++ >= limit_rows)
					break;
				table_row(table, &changes.data[i]);
			}
			table_row(table, &total);
			pm_table_render(table, &out);
			pm_table_destroy(table);
			if (changed > limit_rows)
				pm_strbuf_printf(&out, "%zu more changed rows (--top 0 shows them)\n",
						 changed - limit_rows);
			pm_strbuf_printf(&out, "%zu rows unchanged\n", changes.size - changed);
		}
	}
	if (!err && same) {
		/* What is new, with previews from the target; what is gone
		 * (freed, or reused as something else). */
		err = section(&out, json, "new", "new allocations (not in use at that "
			      "address, or in use as something else, before)", after, before,
			      after_target, list, examples_max, args->top);
		if (!err)
			err = section(&out, json, "gone", "allocations gone (freed, or in use "
				      "as something else, after)", before, after, before_target,
				      before_list, examples_max, args->top);
	} else if (!err && json) {
		pm_strbuf_append(&out, ", \"new\": null, \"gone\": null");
	}
	if (!err && json)
		pm_strbuf_append(&out, "}\n");
	change_vector_deinit(&changes);
	if (!err && out.failed)
		err = &pm_error_no_memory;
	if (err) {
		pm_strbuf_deinit(&out);
		return err;
	}
	*ret = pm_strbuf_steal(&out);
	return NULL;
}
