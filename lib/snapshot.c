/* Taking a snapshot of a target (snapshot.h), and writing and reading it
 * as a file: PM_SNAPSHOT_MAGIC, a 32-bit version, then unsigned LEB128
 * numbers and length-prefixed strings; the allocations as address deltas
 * (sorted, so each is small), sizes and category indexes, a few bytes
 * each; and "END\n" last. Version 2 added the rows by retainer (a flag,
 * then the rows) after those by owner; version 1 files are still read, so that a file cut short says so. Every number
 * read is checked against what is left of the file. */
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cpython.h"
#include "strbuf.h"
#include "target.h"

enum { AT_RANDOM_TYPE = 25, STRING_MAX = 1 << 16 };
#define SNAPSHOT_END "END\n"

struct pm_error *pm_summary_rows(struct pm_target *t, const char *by,
				 void (*sink)(void *arg, const char *domain, const char *kind,
					      const char *detail, uint64_t count,
					      uint64_t bytes),
				 void *arg);

void pm_snapshot_destroy(struct pm_snapshot *s)
{
	if (!s)
		return;
	struct pm_snapshot_row_vector *rows[] = { &s->by_type, &s->by_owner, &s->by_retainer };
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < rows[k]->size; i++) {
			free(rows[k]->data[i].domain);
			free(rows[k]->data[i].kind);
			free(rows[k]->data[i].detail);
		}
		pm_snapshot_row_vector_deinit(rows[k]);
	}
	for (size_t i = 0; i < s->categories.size; i++) {
		free(s->categories.data[i].domain);
		free(s->categories.data[i].kind);
		free(s->categories.data[i].detail);
	}
	pm_snapshot_category_vector_deinit(&s->categories);
	free(s->addr);
	free(s->size);
	free(s->category);
	free(s->object_offset);
	free(s->source);
	free(s->python);
	free(s);
}

struct pm_error *pm_snapshot_set_source(struct pm_snapshot *s, const char *source)
{
	char *copy = strdup(source);
	if (!copy)
		return &pm_error_no_memory;
	free(s->source);
	s->source = copy;
	return NULL;
}

struct row_sink {
	struct pm_snapshot_row_vector *rows;
	bool failed;
};

static void row_add(void *arg, const char *domain, const char *kind, const char *detail,
		    uint64_t count, uint64_t bytes)
{
	struct row_sink *sink = arg;
	struct pm_snapshot_row r = { strdup(domain), strdup(kind), strdup(detail), count, bytes };
	if (!r.domain || !r.kind || !r.detail ||
	    !pm_snapshot_row_vector_append(sink->rows, &r)) {
		free(r.domain);
		free(r.kind);
		free(r.detail);
		sink->failed = true;
	}
}

struct pm_error *pm_snapshot_add_retainers(struct pm_snapshot *s, struct pm_target *t)
{
	if (s->has_retainers)
		return NULL;
	struct row_sink retainers = { &s->by_retainer, false };
	struct pm_error *err = pm_summary_rows(t, "retainer", row_add, &retainers);
	if (!err && retainers.failed)
		err = &pm_error_no_memory;
	if (err)
		return err;
	s->has_retainers = true;
	return NULL;
}

/* Who the process is: its pid and the bytes at AT_RANDOM (in its stack,
 * so in a core too). */
static void identity_of(struct pm_target *t, struct pm_snapshot *s)
{
	s->pid = pm_target_pid(t);
	uint64_t at_random;
	if (!pm_target_auxv(t, AT_RANDOM_TYPE, &at_random) || !at_random)
		return;
	struct pm_error *err = pm_target_read(t, at_random, s->identity, sizeof(s->identity));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	s->has_identity = true;
}

struct pm_error *pm_snapshot_take(struct pm_target *t, const char *source,
				  struct pm_snapshot **ret)
{
	struct pm_snapshot *s = calloc(1, sizeof(*s));
	if (!s)
		return &pm_error_no_memory;
	const struct pm_cpython_heap *heap;
	struct pm_error *err = pm_cpython_analyse(t, &heap);
	if (err) {
		pm_snapshot_destroy(s);
		return err;
	}
	identity_of(t, s);
	char version[32] = "";
	if (heap->py && heap->py->is_python)
		snprintf(version, sizeof(version), heap->py->micro >= 0 ? "%d.%d.%d" : "%d.%d",
			 heap->py->major, heap->py->minor, heap->py->micro);
	s->source = strdup(source ? source : "");
	s->python = strdup(version);
	if (!s->source || !s->python) {
		pm_snapshot_destroy(s);
		return &pm_error_no_memory;
	}
	struct row_sink types = { &s->by_type, false }, owners = { &s->by_owner, false };
	err = pm_summary_rows(t, "type", row_add, &types);
	if (!err)
		err = pm_summary_rows(t, "owner", row_add, &owners);
	if (!err && (types.failed || owners.failed))
		err = &pm_error_no_memory;
	for (size_t i = 0; !err && i < heap->ncategories; i++) {
		const struct pm_category *c = &heap->categories[i];
		struct pm_snapshot_category sc = { strdup(c->domain), strdup(c->kind),
						   strdup(c->detail) };
		if (!sc.domain || !sc.kind || !sc.detail ||
		    !pm_snapshot_category_vector_append(&s->categories, &sc)) {
			free(sc.domain);
			free(sc.kind);
			free(sc.detail);
			err = &pm_error_no_memory;
		}
	}
	size_t n = heap->nallocs;
	if (!err) {
		s->addr = malloc((n ? n : 1) * sizeof(*s->addr));
		s->size = malloc((n ? n : 1) * sizeof(*s->size));
		s->category = malloc((n ? n : 1) * sizeof(*s->category));
		s->object_offset = malloc(n ? n : 1);
		if (!s->addr || !s->size || !s->category || !s->object_offset)
			err = &pm_error_no_memory;
	}
	for (size_t i = 0; !err && i < n; i++) {
		const struct pm_alloc *a = &heap->allocs[i];
		if (a->category >= heap->ncategories)
			continue;   /* no row: not in the summary either */
		s->addr[s->nallocs] = a->addr;
		s->size[s->nallocs] = a->size;
		s->category[s->nallocs] = a->category;
		s->object_offset[s->nallocs] = a->object_offset;
		s->nallocs++;
	}
	if (err) {
		pm_snapshot_destroy(s);
		return err;
	}
	*ret = s;
	return NULL;
}

/* ---- writing --------------------------------------------------------- */

static void put_number(struct pm_strbuf *out, uint64_t v)
{
	char bytes[10];
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		bytes[n++] = (char)(b | (v ? 0x80 : 0));
	} while (v);
	pm_strbuf_appendn(out, bytes, n);
}

static void put_string(struct pm_strbuf *out, const char *s)
{
	size_t n = strlen(s);
	put_number(out, n);
	pm_strbuf_appendn(out, s, n);
}

static void put_rows(struct pm_strbuf *out, const struct pm_snapshot_row_vector *rows)
{
	put_number(out, rows->size);
	for (size_t i = 0; i < rows->size; i++) {
		put_string(out, rows->data[i].domain);
		put_string(out, rows->data[i].kind);
		put_string(out, rows->data[i].detail);
		put_number(out, rows->data[i].count);
		put_number(out, rows->data[i].bytes);
	}
}

struct pm_error *pm_snapshot_save(const struct pm_snapshot *s, const char *path)
{
	struct pm_strbuf out;
	pm_strbuf_init(&out);
	pm_strbuf_append(&out, PM_SNAPSHOT_MAGIC);
	uint8_t version[4] = { PM_SNAPSHOT_VERSION, 0, 0, 0 };
	pm_strbuf_appendn(&out, (const char *)version, sizeof(version));
	put_string(&out, s->source);
	put_string(&out, s->python);
	put_number(&out, (uint64_t)(s->pid > 0 ? s->pid : 0));
	put_number(&out, s->has_identity);
	pm_strbuf_appendn(&out, (const char *)s->identity, sizeof(s->identity));
	put_rows(&out, &s->by_type);
	put_rows(&out, &s->by_owner);
	put_number(&out, s->has_retainers);
	if (s->has_retainers)
		put_rows(&out, &s->by_retainer);
	put_number(&out, s->categories.size);
	for (size_t i = 0; i < s->categories.size; i++) {
		put_string(&out, s->categories.data[i].domain);
		put_string(&out, s->categories.data[i].kind);
		put_string(&out, s->categories.data[i].detail);
	}
	put_number(&out, s->nallocs);
	uint64_t prev = 0;
	for (size_t i = 0; i < s->nallocs; i++) {
		put_number(&out, s->addr[i] - prev);
		put_number(&out, s->size[i]);
		put_number(&out, s->category[i]);
		put_number(&out, s->object_offset[i]);
		prev = s->addr[i];
	}
	pm_strbuf_append(&out, SNAPSHOT_END);
	if (out.failed) {
		pm_strbuf_deinit(&out);
		return &pm_error_no_memory;
	}
	FILE *f = fopen(path, "wb");
	if (!f) {
		int e = errno;
		pm_strbuf_deinit(&out);
		return pm_error_format(PM_ERR_OS, "cannot write the snapshot %s: %s", path,
				       strerror(e));
	}
	bool ok = fwrite(out.data, 1, out.len, f) == out.len;
	int e = errno;
	ok = fclose(f) == 0 && ok;
	pm_strbuf_deinit(&out);
	if (!ok)
		return pm_error_format(PM_ERR_OS, "cannot write the snapshot %s: %s", path,
				       strerror(e ? e : EIO));
	return NULL;
}

/* ---- reading --------------------------------------------------------- */

struct reader {
	const uint8_t *p, *start, *end;
	const char *path;
	struct pm_error *err;
};

static struct pm_error *cut(struct reader *r, const char *what)
{
	if (!r->err)
		r->err = pm_error_format(PM_ERR_CORRUPT, "%s: not a complete pymortem snapshot: "
					 "%s at byte %td cannot be read (the file is cut "
					 "short or damaged; take the snapshot again)",
					 r->path, what, r->p - r->start);
	return r->err;
}

static uint64_t get_number(struct reader *r, const char *what)
{
	uint64_t v = 0;
	for (int shift = 0; !r->err && shift < 64; shift += 7) {
		if (r->p >= r->end) {
			cut(r, what);
			break;
		}
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	cut(r, what);
	return 0;
}

static char *get_string(struct reader *r, const char *what)
{
	uint64_t n = get_number(r, what);
	if (r->err)
		return NULL;
	if (n > STRING_MAX || n > (uint64_t)(r->end - r->p)) {
		cut(r, what);
		return NULL;
	}
	char *s = malloc(n + 1);
	if (!s) {
		r->err = &pm_error_no_memory;
		return NULL;
	}
	memcpy(s, r->p, n);
	s[n] = 0;
	r->p += n;
	return s;
}

static void get_rows(struct reader *r, struct pm_snapshot_row_vector *rows)
{
	uint64_t n = get_number(r, "the number of rows");
	/* Each row takes at least 5 bytes: a bound from the file's size. */
	if (!r->err && n > (uint64_t)(r->end - r->p) / 5)
		cut(r, "the rows");
	for (uint64_t i = 0; !r->err && i < n; i++) {
		struct pm_snapshot_row row = { 0 };
		row.domain = get_string(r, "a row's domain");
		row.kind = get_string(r, "a row's kind");
		row.detail = get_string(r, "a row's detail");
		row.count = get_number(r, "a row's count");
		row.bytes = get_number(r, "a row's bytes");
		if (!r->err && !pm_snapshot_row_vector_append(rows, &row))
			r->err = &pm_error_no_memory;
		if (r->err) {
			free(row.domain);
			free(row.kind);
			free(row.detail);
		}
	}
}

static struct pm_error *read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return pm_error_format(PM_ERR_OS, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
		fclose(f);
		return pm_error_format(PM_ERR_OS, "%s: %s", path, strerror(errno));
	}
	*len = (size_t)st.st_size;
	*data = malloc(*len ? *len : 1);
	if (!*data) {
		fclose(f);
		return &pm_error_no_memory;
	}
	bool ok = fread(*data, 1, *len, f) == *len;
	fclose(f);
	if (!ok) {
		free(*data);
		return pm_error_format(PM_ERR_OS, "%s: cannot read it", path);
	}
	return NULL;
}

bool pm_snapshot_is_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	char magic[8];
	bool is = fread(magic, 1, sizeof(magic), f) == sizeof(magic) &&
		  !memcmp(magic, PM_SNAPSHOT_MAGIC, sizeof(magic));
	fclose(f);
	return is;
}

struct pm_error *pm_snapshot_load(const char *path, struct pm_snapshot **ret)
{
	uint8_t *data = NULL;
	size_t len = 0;
	struct pm_error *err = read_file(path, &data, &len);
	if (err)
		return err;
	if (len < 12 || memcmp(data, PM_SNAPSHOT_MAGIC, 8)) {
		free(data);
		return pm_error_format(PM_ERR_INVALID, "%s: not a pymortem snapshot (write "
				       "one with `pymortem snapshot TARGET -o FILE`)", path);
	}
	uint32_t version = data[8] | (uint32_t)data[9] << 8 | (uint32_t)data[10] << 16 |
			   (uint32_t)data[11] << 24;
	if (version < 1 || version > PM_SNAPSHOT_VERSION) {
		free(data);
		return pm_error_format(PM_ERR_UNSUPPORTED, "%s: a snapshot of format version %"
				       PRIu32 "; this pymortem reads versions 1 to %d (take it again "
				       "with this pymortem)", path, version, PM_SNAPSHOT_VERSION);
	}
	struct pm_snapshot *s = calloc(1, sizeof(*s));
	if (!s) {
		free(data);
		return &pm_error_no_memory;
	}
	struct reader r = { data + 12, data, data + len, path, NULL };
	s->source = get_string(&r, "the source");
	s->python = get_string(&r, "the Python version");
	s->pid = (int64_t)get_number(&r, "the pid");
	s->has_identity = get_number(&r, "the identity flag") != 0;
	if (!r.err && (size_t)(r.end - r.p) < sizeof(s->identity))
		cut(&r, "the identity");
	if (!r.err) {
		memcpy(s->identity, r.p, sizeof(s->identity));
		r.p += sizeof(s->identity);
	}
	get_rows(&r, &s->by_type);
	get_rows(&r, &s->by_owner);
	if (version >= 2) {
		uint64_t flag = get_number(&r, "the retainer rows' flag");
		if (!r.err && flag > 1)
			cut(&r, "the retainer rows' flag");
		s->has_retainers = flag == 1;
		if (s->has_retainers)
			get_rows(&r, &s->by_retainer);
	}
	uint64_t ncats = get_number(&r, "the number of categories");
	if (!r.err && ncats > (uint64_t)(r.end - r.p) / 3)
		cut(&r, "the categories");
	for (uint64_t i = 0; !r.err && i < ncats; i++) {
		struct pm_snapshot_category c = { get_string(&r, "a category's domain"),
						  get_string(&r, "a category's kind"),
						  get_string(&r, "a category's detail") };
		if (!r.err && !pm_snapshot_category_vector_append(&s->categories, &c))
			r.err = &pm_error_no_memory;
		if (r.err) {
			free(c.domain);
			free(c.kind);
			free(c.detail);
		}
	}
	uint64_t n = get_number(&r, "the number of allocations");
	if (!r.err && n > (uint64_t)(r.end - r.p) / 4)
		cut(&r, "the allocations");
	if (!r.err) {
		s->addr = malloc((n ? n : 1) * sizeof(*s->addr));
		s->size = malloc((n ? n : 1) * sizeof(*s->size));
		s->category = malloc((n ? n : 1) * sizeof(*s->category));
		s->object_offset = malloc(n ? n : 1);
		if (!s->addr || !s->size || !s->category || !s->object_offset)
			r.err = &pm_error_no_memory;
	}
	uint64_t addr = 0;
	for (uint64_t i = 0; !r.err && i < n; i++) {
		uint64_t delta = get_number(&r, "an allocation's address");
		uint64_t size = get_number(&r, "an allocation's size");
		uint64_t category = get_number(&r, "an allocation's category");
		uint64_t offset = get_number(&r, "an allocation's object offset");
		if (r.err)
			break;
		if ((i && !delta) || addr + delta < addr || category >= s->categories.size ||
		    offset > UINT8_MAX) {
			cut(&r, "an allocation");
			break;
		}
		addr += delta;
		s->addr[i] = addr;
		s->size[i] = size;
		s->category[i] = (uint32_t)category;
		s->object_offset[i] = (uint8_t)offset;
		s->nallocs++;
	}
	if (!r.err && ((size_t)(r.end - r.p) != strlen(SNAPSHOT_END) ||
		       memcmp(r.p, SNAPSHOT_END, strlen(SNAPSHOT_END))))
		cut(&r, "the end marker");
	free(data);
	if (!r.err) {
		/* Named by the file in diff's text, and by what it was taken of. */
		struct pm_strbuf named;
		pm_strbuf_init(&named);
		pm_strbuf_printf(&named, "snapshot %s of %s", path, s->source);
		if (named.failed) {
			pm_strbuf_deinit(&named);
			r.err = &pm_error_no_memory;
		} else {
			free(s->source);
			s->source = pm_strbuf_steal(&named);
		}
	}
	if (r.err) {
		pm_snapshot_destroy(s);
		return r.err;
	}
	*ret = s;
	return NULL;
}
