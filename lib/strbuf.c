/* Growable text buffer and the shared text/JSON formatting helpers. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pm_strbuf_init(struct pm_strbuf *sb)
{
	memset(sb, 0, sizeof(*sb));
}

void pm_strbuf_deinit(struct pm_strbuf *sb)
{
	free(sb->data);
	memset(sb, 0, sizeof(*sb));
}

static bool strbuf_reserve(struct pm_strbuf *sb, size_t extra)
{
	if (sb->failed)
		return false;
	if (sb->len + extra + 1 <= sb->cap)
		return true;
	size_t cap = sb->cap ? sb->cap : 256;
	while (cap < sb->len + extra + 1)
		cap *= 2;
	char *data = realloc(sb->data, cap);
	if (!data) {
		sb->failed = true;
		return false;
	}
	sb->data = data;
	sb->cap = cap;
	return true;
}

char *pm_strbuf_steal(struct pm_strbuf *sb)
{
	if (sb->failed || !strbuf_reserve(sb, 0)) {
		pm_strbuf_deinit(sb);
		return NULL;
	}
	sb->data[sb->len] = '\0';
	char *data = sb->data;
	memset(sb, 0, sizeof(*sb));
	return data;
}

void pm_strbuf_appendn(struct pm_strbuf *sb, const char *s, size_t n)
{
	if (!strbuf_reserve(sb, n))
		return;
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

void pm_strbuf_append(struct pm_strbuf *sb, const char *s)
{
	pm_strbuf_appendn(sb, s, strlen(s));
}

void pm_strbuf_printf(struct pm_strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !strbuf_reserve(sb, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

char *pm_format_grouped(uint64_t value, char *buf)
{
	char digits[24];
	int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)value);
	char *out = buf;
	for (int i = 0; i < n; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			*out++ = ',';
		*out++ = digits[i];
	}
	*out = '\0';
	return buf;
}

void pm_strbuf_json_string(struct pm_strbuf *sb, const char *s)
{
	pm_strbuf_append(sb, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': pm_strbuf_append(sb, "\\\""); break;
		case '\\': pm_strbuf_append(sb, "\\\\"); break;
		case '\n': pm_strbuf_append(sb, "\\n"); break;
		case '\t': pm_strbuf_append(sb, "\\t"); break;
		default:
			/* Target strings may hold anything: escape control and
			 * non-ASCII bytes rather than emit invalid UTF-8. */
			if (*p < 0x20 || *p >= 0x7f)
				pm_strbuf_printf(sb, "\\u%04x", *p);
			else
				pm_strbuf_appendn(sb, (const char *)p, 1);
		}
	}
	pm_strbuf_append(sb, "\"");
}

struct pm_table {
	size_t ncols, nrows, cap;
	char **cells;           /* nrows * ncols, row-major; row 0 = headers */
	bool *right_align;
};

struct pm_table *pm_table_create(size_t ncols, const char *const *headers,
				 const bool *right_align)
{
	struct pm_table *table = calloc(1, sizeof(*table));
	if (!table)
		return NULL;
	table->ncols = ncols;
	table->right_align = calloc(ncols, sizeof(bool));
	if (!table->right_align) {
		free(table);
		return NULL;
	}
	if (right_align)
		memcpy(table->right_align, right_align, ncols * sizeof(bool));
	pm_table_add_row(table, headers);
	return table;
}

void pm_table_add_row(struct pm_table *table, const char *const *cells)
{
	if (!table)
		return;
	if (table->nrows == table->cap) {
		size_t cap = table->cap ? table->cap * 2 : 16;
		char **grown = realloc(table->cells,
				       cap * table->ncols * sizeof(char *));
		if (!grown)
			return;
		table->cells = grown;
		table->cap = cap;
	}
	char **row = table->cells + table->nrows * table->ncols;
	for (size_t i = 0; i < table->ncols; i++)
		row[i] = strdup(cells[i] ? cells[i] : "");
	table->nrows++;
}

void pm_table_render(const struct pm_table *table, struct pm_strbuf *sb)
{
	if (!table)
		return;
	size_t widths[32] = {0};
	size_t ncols = table->ncols < 32 ? table->ncols : 32;
	for (size_t r = 0; r < table->nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			const char *cell = table->cells[r * table->ncols + c];
			size_t w = cell ? strlen(cell) : 0;
			if (w > widths[c])
				widths[c] = w;
		}
	for (size_t r = 0; r < table->nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *cell = table->cells[r * table->ncols + c];
			if (!cell)
				cell = "";
			bool last = c + 1 == ncols;
			if (table->right_align[c])
				pm_strbuf_printf(sb, "%*s", (int)widths[c], cell);
			else if (last)
				pm_strbuf_append(sb, cell);
			else
				pm_strbuf_printf(sb, "%-*s", (int)widths[c], cell);
			if (!last)
				pm_strbuf_append(sb, "  ");
		}
		pm_strbuf_append(sb, "\n");
	}
}

void pm_table_destroy(struct pm_table *table)
{
	if (!table)
		return;
	for (size_t i = 0; i < table->nrows * table->ncols; i++)
		free(table->cells[i]);
	free(table->cells);
	free(table->right_align);
	free(table);
}

void pm_strbuf_python_chars(struct pm_strbuf *out, const uint8_t *chars, size_t n,
			    unsigned width)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = chars + i * width;
		uint32_t c = width == 1 ? p[0] : width == 2 ?
			(uint32_t)(p[0] | p[1] << 8) :
			(uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24);
		if (c == '\'' || c == '\\')
			pm_strbuf_printf(out, "\\%c", (char)c);
		else if (c >= 0x20 && c < 0x7f)
			pm_strbuf_printf(out, "%c", (char)c);
		else if (c < 0x100)
			pm_strbuf_printf(out, "\\x%02x", c);
		else if (c < 0x10000)
			pm_strbuf_printf(out, "\\u%04x", c);
		else
			pm_strbuf_printf(out, "\\U%08x", c);
	}
}
