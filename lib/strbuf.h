/* A growable text buffer, and the text/JSON building blocks every report uses
 * (so all reports format numbers, tables and JSON the same way). */
#ifndef PM_STRBUF_H
#define PM_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pm_strbuf {
	char *data;
	size_t len, cap;
	bool failed;        /* an allocation failed; contents are incomplete */
};

void pm_strbuf_init(struct pm_strbuf *sb);
void pm_strbuf_deinit(struct pm_strbuf *sb);
/* Hands the NUL-terminated text to the caller (NULL if an allocation failed). */
char *pm_strbuf_steal(struct pm_strbuf *sb);
void pm_strbuf_append(struct pm_strbuf *sb, const char *s);
void pm_strbuf_appendn(struct pm_strbuf *sb, const char *s, size_t n);
void pm_strbuf_printf(struct pm_strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* 1234567 -> "1,234,567" into buf (>= 32 bytes); returns buf. */
char *pm_format_grouped(uint64_t value, char *buf);
/* JSON string literal with escapes (non-UTF-8 bytes as \u00XX). */
void pm_strbuf_json_string(struct pm_strbuf *sb, const char *s);

/* A text table: add cells row by row, then render with aligned columns
 * (numeric columns right-aligned). */
struct pm_table;
struct pm_table *pm_table_create(size_t ncols, const char *const *headers,
				 const bool *right_align);
void pm_table_add_row(struct pm_table *table, const char *const *cells);
void pm_table_render(const struct pm_table *table, struct pm_strbuf *sb);
void pm_table_destroy(struct pm_table *table);

/* n characters of width bytes each (1, 2 or 4: a str's kind, little
 * endian) as a Python literal's body between single quotes: quote and
 * backslash escaped, printable ASCII as is, the rest \xNN, \uNNNN or
 * \UNNNNNNNN (previews of strs and bytes). */
void pm_strbuf_python_chars(struct pm_strbuf *out, const uint8_t *chars, size_t n,
			    unsigned width);

#endif
