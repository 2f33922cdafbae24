/* The list of every allocation, used and free, that the allocation-level
 * reports walk, and the short content preview they print per allocation.
 * Used allocations and their categories come from the CPython analysis; the
 * free ones from glibc's free sets and pymalloc's free blocks, each with a
 * category that says where the allocator keeps it. */
#include "allocs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc.h"
#include "pymalloc.h"
#include "vector.h"

/* Size-class names of pymalloc free blocks ("detail"), class i = (i+1)*16. */
static const char *const block_size_names[PM_PYMALLOC_NCLASSES] = {
	"16 B", "32 B", "48 B", "64 B", "80 B", "96 B", "112 B", "128 B",
	"144 B", "160 B", "176 B", "192 B", "208 B", "224 B", "240 B", "256 B",
	"272 B", "288 B", "304 B", "320 B", "336 B", "352 B", "368 B", "384 B",
	"400 B", "416 B", "432 B", "448 B", "464 B", "480 B", "496 B", "512 B",
};

const char *pm_alloc_state_name(enum pm_alloc_state state)
{
	return state == PM_ALLOC_STATE_FREE ? "free" : "used";
}

PM_DEFINE_VECTOR(alloc_entry_vector, struct pm_alloc_entry)

static struct pm_error *entry_push(struct alloc_entry_vector *v,
				   const struct pm_alloc_entry *e)
{
	return alloc_entry_vector_append(v, e) ? NULL : &pm_error_no_memory;
}

/* The analysis's allocations, except tcache'd chunks: those are free and
 * come from the glibc walk with the other free chunks. */
static struct pm_error *add_used(struct alloc_entry_vector *b,
				 const struct pm_cpython_heap *heap)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < heap->nallocs && !err; i++) {
		const struct pm_alloc *a = &heap->allocs[i];
		if (a->kind == PM_ALLOC_TCACHE || a->category >= heap->ncategories)
			continue;
		const struct pm_category *c = &heap->categories[a->category];
		struct pm_alloc_entry e = {
			.addr = a->addr, .size = a->size,
			.header = (uint8_t)pm_alloc_header(a), .domain = c->domain,
			.kind = c->kind, .detail = c->detail,
			.state = PM_ALLOC_STATE_USED,
			.object_offset = a->object_offset,
			.has_object = !strcmp(c->domain, "python"),
			.pymalloc = a->kind == PM_ALLOC_PYMALLOC,
		};
		err = entry_push(b, &e);
	}
	return err;
}

static const char *free_chunk_detail(enum pm_chunk_state state)
{
	switch (state) {
	case PM_CHUNK_FREE_BIN: return "bin";
	case PM_CHUNK_FREE_FASTBIN: return "fastbin";
	case PM_CHUNK_FREE_TCACHE: return "tcache";
	case PM_CHUNK_TOP: return "top";
	default: return NULL;
	}
}

static struct pm_error *add_free_chunks(struct alloc_entry_vector *b,
					const struct pm_glibc_heap *g)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < g->nchunks && !err; i++) {
		const struct pm_chunk *c = &g->chunks[i];
		const char *detail = free_chunk_detail((enum pm_chunk_state)c->state);
		if (!detail)
			continue;
		struct pm_alloc_entry e = {
			.addr = c->addr + PM_GLIBC_CHUNK_HEADER, .size = c->size,
			.header = PM_GLIBC_CHUNK_HEADER, .domain = "glibc",
			.kind = "free chunk", .detail = detail,
			.state = PM_ALLOC_STATE_FREE,
		};
		err = entry_push(b, &e);
	}
	return err;
}

/* Free blocks of the pools that hold used ones (the free chain and the
 * never-used tail alike). Empty pools are not blocks: not listed. */
static struct pm_error *add_free_blocks(struct alloc_entry_vector *b,
					struct pm_target *t)
{
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_pymalloc_walk(t, &pm);
	if (err)
		return err;
	for (size_t i = 0; i < pm->npools && !err; i++) {
		const struct pm_pymalloc_pool *pool = &pm->pools[i];
		if (pool->szidx >= PM_PYMALLOC_NCLASSES)
			continue;
		uint32_t size = pm_pymalloc_block_size(pool->szidx);
		for (uint32_t k = 0; k < pool->nblocks && !err; k++) {
			if (pm_pymalloc_block_used(pm, pool, k))
				continue;
			struct pm_alloc_entry e = {
				.addr = pool->address + PM_PYMALLOC_POOL_OVERHEAD +
					(uint64_t)k * size,
				.size = size, .domain = "pymalloc",
				.kind = "free block",
				.detail = block_size_names[pool->szidx],
				.state = PM_ALLOC_STATE_FREE, .pymalloc = true,
			};
			err = entry_push(b, &e);
		}
	}
	return err;
}

static int entry_compare(const void *x, const void *y)
{
	const struct pm_alloc_entry *p = x, *q = y;
	return p->addr < q->addr ? -1 : p->addr > q->addr;
}

static void list_destroy(void *p)
{
	struct pm_alloc_list *l = p;
	if (l)
		free(l->entries);
	free(l);
}

static struct pm_error *list_build(struct pm_target *t, struct pm_alloc_list *l)
{
	const struct pm_cpython_heap *heap;
	struct pm_error *err = pm_cpython_analyse(t, &heap);
	if (err)
		return err;
	l->heap = heap;
	const struct pm_glibc_heap *g = NULL;
	if (heap->glibc_walked && (err = pm_glibc_walk(t, &g)))
		return err;
	struct alloc_entry_vector b = PM_VECTOR_INIT;
	err = add_used(&b, heap);
	if (!err && g)
		err = add_free_chunks(&b, g);
	if (!err && heap->pymalloc_walked)
		err = add_free_blocks(&b, t);
	/* No allocation at all (a truncated core, a heap whose files are
	 * missing) leaves the array NULL, which qsort must not be given. */
	if (!err && b.size > 1)
		qsort(b.data, b.size, sizeof(*b.data), entry_compare);
	if (err) {
		alloc_entry_vector_deinit(&b);
		return err;
	}
	alloc_entry_vector_shrink_to_fit(&b);
	l->n = b.size;
	l->entries = alloc_entry_vector_steal(&b);
	return NULL;
}

struct pm_error *pm_alloc_list_get(struct pm_target *t,
				   const struct pm_alloc_list **ret)
{
	struct pm_alloc_list *l = pm_target_cache_get(t, PM_CACHE_ALLOCS);
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l)
			return &pm_error_no_memory;
		struct pm_error *err = list_build(t, l);
		if (err) {
			list_destroy(l);
			return err;
		}
		pm_target_cache_set(t, PM_CACHE_ALLOCS, l, list_destroy);
	}
	*ret = l;
	return NULL;
}

const struct pm_alloc_entry *pm_alloc_list_find(const struct pm_alloc_list *list,
						uint64_t addr)
{
	size_t lo = 0, hi = list->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_alloc_entry *e = &list->entries[mid];
		if (addr < e->addr)
			hi = mid;
		else if (addr >= pm_alloc_entry_end(e))
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

/* ---- preview ------------------------------------------------------- */

enum {
	PREVIEW_RAW_BYTES = 16,
	PREVIEW_CHARS = 32,         /* characters of a str/bytes shown */
	PREVIEW_READ_MAX = 4 * PREVIEW_CHARS,
	OB_SIZE = 16,               /* PyVarObject.ob_size, PyLongObject lv_tag */
	BYTES_SVAL = 32,            /* PyBytesObject.ob_sval */
	FLOAT_FVAL = 16,            /* PyFloatObject.ob_fval */
	LONG_DIGITS = 24,           /* PyLongObject.ob_digit */
	LONG_DIGITS_MAX = 8,        /* decoded up to 240 bits */
	STR_LENGTH = 16, STR_STATE = 32,
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Reads [addr, addr+len) only if it lies inside the allocation's data. */
static bool read_inside(struct pm_target *t, const struct pm_alloc_entry *e,
			uint64_t addr, void *buf, size_t len)
{
	uint64_t room = pm_alloc_entry_end(e) - e->addr;
	if (addr < e->addr || addr - e->addr > room ||
	    len > room - (addr - e->addr))
		return false;
	struct pm_error *err = pm_target_read(t, addr, buf, len);
	pm_error_destroy(err);
	return err == NULL;
}

static void escape_char(struct pm_strbuf *out, uint32_t c, char quote)
{
	if ((quote && c == (uint32_t)quote) || c == '\\')
		pm_strbuf_printf(out, "\\%c", (char)c);
	else if (c == '\n')
		pm_strbuf_append(out, "\\n");
	else if (c == '\t')
		pm_strbuf_append(out, "\\t");
	else if (c >= 0x20 && c < 0x7f)
		pm_strbuf_printf(out, "%c", (char)c);
	else if (c < 0x100)
		pm_strbuf_printf(out, "\\x%02x", c);
	else if (c < 0x10000)
		pm_strbuf_printf(out, "\\u%04x", c);
	else
		pm_strbuf_printf(out, "\\U%08x", c);
}

static void preview_raw(struct pm_target *t, const struct pm_alloc_entry *e,
			struct pm_strbuf *out)
{
	uint8_t buf[PREVIEW_RAW_BYTES];
	uint64_t room = pm_alloc_entry_end(e) - e->addr;
	size_t len = room < sizeof(buf) ? (size_t)room : sizeof(buf);
	if (!read_inside(t, e, e->addr, buf, len)) {
		pm_strbuf_append(out, "<unreadable>");
		return;
	}
	for (size_t i = 0; i < len; i++)
		escape_char(out, buf[i], 0);
}

/* Text of `length` characters of `width` bytes at data, quoted. */
static bool preview_chars(struct pm_target *t, const struct pm_alloc_entry *e,
			  const char *prefix, uint64_t data, uint64_t length,
			  unsigned width, struct pm_strbuf *out)
{
	uint8_t buf[PREVIEW_READ_MAX];
	uint64_t shown = length < PREVIEW_CHARS ? length : PREVIEW_CHARS;
	if (!read_inside(t, e, data, buf, (size_t)shown * width))
		return false;
	pm_strbuf_printf(out, "%s\"", prefix);
	for (uint64_t i = 0; i < shown; i++) {
		const uint8_t *p = buf + i * width;
		uint32_t c = width == 1 ? p[0] : width == 2 ?
			(uint32_t)(p[0] | p[1] << 8) : le32(p);
		escape_char(out, c, '"');
	}
	pm_strbuf_append(out, shown < length ? "\"..." : "\"");
	return true;
}

static bool preview_str(struct pm_target *t, const struct pm_alloc_list *l,
			const struct pm_alloc_entry *e, uint64_t obj,
			struct pm_strbuf *out)
{
	const struct pm_cpython_layout *lay = l->heap->py ?
		pm_cpython_layout_of(l->heap->py) : NULL;
	uint8_t head[STR_STATE + 4];
	if (!lay || !read_inside(t, e, obj, head, sizeof(head)))
		return false;
	int64_t length = (int64_t)le64(head + STR_LENGTH);
	uint32_t state = le32(head + STR_STATE);
	unsigned width = (state >> 2) & 7;
	bool compact = state & (1u << 5), ascii = state & (1u << 6);
	if (length < 0 || !compact || (width != 1 && width != 2 && width != 4))
		return false;
	/* PyCompactUnicodeObject adds utf8_length and utf8 (and wstr_length
	 * up to 3.11) to PyASCIIObject. */
	uint64_t data = obj + lay->str_ascii_size;
	if (!ascii)
		data += lay->str_wstr >= 0 ? 24 : 16;
	return preview_chars(t, e, "", data, (uint64_t)length, width, out);
}

static bool preview_bytes(struct pm_target *t, const struct pm_alloc_entry *e,
			  uint64_t obj, struct pm_strbuf *out)
{
	uint8_t head[OB_SIZE + 8];
	if (!read_inside(t, e, obj, head, sizeof(head)))
		return false;
	int64_t size = (int64_t)le64(head + OB_SIZE);
	return size >= 0 && preview_chars(t, e, "b", obj + BYTES_SVAL,
					  (uint64_t)size, 1, out);
}

static bool preview_float(struct pm_target *t, const struct pm_alloc_entry *e,
			  uint64_t obj, struct pm_strbuf *out)
{
	double v;
	if (!read_inside(t, e, obj + FLOAT_FVAL, &v, sizeof(v)))
		return false;
	pm_strbuf_printf(out, "%.17g", v);
	return true;
}

/* Base-2^30 digits (little-endian, modified in place) in decimal. */
static void digits_decimal(uint32_t *d, size_t n, struct pm_strbuf *out)
{
	uint32_t groups[LONG_DIGITS_MAX * 2];    /* 10^9 groups, low first */
	size_t ngroups = 0;
	while (n && ngroups < sizeof(groups) / sizeof(groups[0])) {
		uint64_t rem = 0;
		for (size_t i = n; i-- > 0;) {
			uint64_t cur = (rem << 30) | d[i];
			d[i] = (uint32_t)(cur / 1000000000u);
			rem = cur % 1000000000u;
		}
		groups[ngroups++] = (uint32_t)rem;
		while (n && d[n - 1] == 0)
			n--;
	}
	if (!ngroups)
		groups[ngroups++] = 0;
	pm_strbuf_printf(out, "%u", groups[ngroups - 1]);
	for (size_t i = ngroups - 1; i-- > 0;)
		pm_strbuf_printf(out, "%09u", groups[i]);
}

static bool preview_int(struct pm_target *t, const struct pm_alloc_list *l,
			const struct pm_alloc_entry *e, uint64_t obj,
			struct pm_strbuf *out)
{
	uint64_t word;
	if (!l->heap->py || !read_inside(t, e, obj + OB_SIZE, &word, sizeof(word)))
		return false;
	uint64_t ndigits;
	bool negative;
	if (l->heap->py->minor >= 12) {
		/* lv_tag: digit count << 3 | sign (0 positive, 1 zero, 2 negative) */
		ndigits = word >> 3;
		negative = (word & 3) == 2;
		if ((word & 3) == 3)
			return false;
	} else {
		int64_t size = (int64_t)word;
		negative = size < 0;
		ndigits = negative ? (uint64_t)0 - word : word;
	}
	uint32_t d[LONG_DIGITS_MAX];
	if (ndigits > LONG_DIGITS_MAX) {
		pm_strbuf_printf(out, "<int of %llu digits>", (unsigned long long)ndigits);
		return true;
	}
	if (ndigits && !read_inside(t, e, obj + LONG_DIGITS, d, (size_t)ndigits * 4))
		return false;
	for (size_t i = 0; i < ndigits; i++)
		if (d[i] >> 30)
			return false;
	if (negative)
		pm_strbuf_append(out, "-");
	digits_decimal(d, (size_t)ndigits, out);
	return true;
}

/* The value of a recognised str/bytes/int/float (exact types only: a
 * subclass may put its fields elsewhere); false when it is not one. */
static bool preview_object(struct pm_target *t, const struct pm_alloc_list *l,
			   const struct pm_alloc_entry *e, struct pm_strbuf *out)
{
	if (!e->has_object || strcmp(e->detail, "-") != 0)
		return false;
	uint64_t obj = e->addr + e->object_offset;
	size_t mark = out->len;
	bool ok = false;
	if (!strcmp(e->kind, "str"))
		ok = preview_str(t, l, e, obj, out);
	else if (!strcmp(e->kind, "bytes"))
		ok = preview_bytes(t, e, obj, out);
	else if (!strcmp(e->kind, "float"))
		ok = preview_float(t, e, obj, out);
	else if (!strcmp(e->kind, "int"))
		ok = preview_int(t, l, e, obj, out);
	if (!ok && out->len > mark && !out->failed) {
		out->len = mark;
		out->data[mark] = '\0';
	}
	return ok;
}

void pm_alloc_preview(struct pm_target *t, const struct pm_alloc_list *list,
		      const struct pm_alloc_entry *e, struct pm_strbuf *out)
{
	if (!preview_object(t, list, e, out))
		preview_raw(t, e, out);
}
