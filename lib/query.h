/* The `select` query language: a small expression over an allocation's
 * fields, parsed once by recursive descent and evaluated per allocation.
 *
 *   expr    := and ("or" and)*
 *   and     := unary ("and" unary)*
 *   unary   := "not" unary | "(" expr ")" | field op value
 *   field   := domain | kind | detail | state      (strings)
 *            | addr | size                         (numbers)
 *   op      := == != < <= > >=  (numbers)   == != ~  (strings; ~ = contains)
 *   value   := "text" (\" and \\ escapes) | 123 | 0x1f0 | 4k | 2M | 1G
 *              (k/M/G multiply by 1024, 1024^2, 1024^3)
 *
 * Errors name the column (1-based) of the problem. */
#ifndef PM_QUERY_H
#define PM_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct pm_query;

/* What a query is evaluated against. */
struct pm_query_row {
	const char *domain, *kind, *detail, *state;
	uint64_t addr, size;
};

struct pm_error *pm_query_parse(const char *text, struct pm_query **ret);
bool pm_query_match(const struct pm_query *q, const struct pm_query_row *row);
void pm_query_destroy(struct pm_query *q);

#endif
