/* Unit tests of lib/query.c, the `select` language: queries evaluated
 * against rows whose expected verdicts follow from the grammar's meaning
 * (precedence, numbers, strings), and bad queries whose errors must name
 * the column and the problem. */
#include "check.h"
#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const struct pm_query_row str_row = {
	.domain = "python", .kind = "str", .detail = "-", .state = "used",
	.addr = 0x7f0000001000, .size = 2048,
};
static const struct pm_query_row free_row = {
	.domain = "glibc", .kind = "free chunk", .detail = "tcache",
	.state = "free", .addr = 0x55550000a010, .size = 48,
};

/* -1: parse error; else whether row matches. */
static int verdict(const char *text, const struct pm_query_row *row)
{
	struct pm_query *q;
	struct pm_error *err = pm_query_parse(text, &q);
	if (err) {
		printf("      (error: %s)\n", err->message);
		pm_error_destroy(err);
		return -1;
	}
	int v = pm_query_match(q, row);
	pm_query_destroy(q);
	return v;
}

static void expect(const char *text, int on_str, int on_free)
{
	int a = verdict(text, &str_row), b = verdict(text, &free_row);
	CHECK(a == on_str && b == on_free, "%-55s str row %d (want %d), free row %d (want %d)",
	      text, a, on_str, b, on_free);
}

/* A bad query: the message must contain each of the expected pieces. */
static void expect_error(const char *text, const char *want1, const char *want2)
{
	struct pm_query *q = NULL;
	struct pm_error *err = pm_query_parse(text, &q);
	bool ok = err && strstr(err->message, want1) &&
		  (!want2 || strstr(err->message, want2));
	CHECK(ok, "error for %-30s -> %s", text, err ? err->message : "(parsed!)");
	pm_error_destroy(err);
	pm_query_destroy(q);
}

int main(void)
{
	/* comparisons */
	expect("kind == \"str\"", 1, 0);
	expect("kind != \"str\"", 0, 1);
	expect("kind ~ \"chunk\"", 0, 1);
	expect("detail~\"cac\"", 0, 1);
	expect("state == \"free\"", 0, 1);
	expect("domain == \"glibc\"", 0, 1);
	expect("size > 1000", 1, 0);
	expect("size >= 2048", 1, 0);
	expect("size > 2048", 0, 0);
	expect("size < 48", 0, 0);
	expect("size <= 48", 0, 1);
	expect("size == 48", 0, 1);
	expect("size != 48", 1, 0);
	/* numbers: hex, suffixes (k = 1024) */
	expect("size == 2k", 1, 0);
	expect("size == 2K", 1, 0);
	expect("size == 0x800", 1, 0);
	expect("size < 1M", 1, 1);
	expect("size < 1G and size > 0", 1, 1);
	expect("addr >= 0x7f0000000000", 1, 0);
	expect("addr == 0x55550000A010", 0, 1);
	/* precedence: and binds tighter than or; not tighter than and */
	expect("kind == \"str\" or kind == \"x\" and size == 1", 1, 0);
	expect("(kind == \"str\" or kind == \"x\") and size == 1", 0, 0);
	expect("not kind == \"str\" and size < 100", 0, 1);
	expect("not (kind == \"str\" and size < 100)", 1, 1);
	expect("not not state == \"used\"", 1, 0);
	expect("size > 1 and size > 2 and size > 100", 1, 0);
	expect("size == 1 or size == 2 or size == 48", 0, 1);
	expect("((((size == 48))))", 0, 1);
	/* strings with escapes, empty string, keywords inside strings */
	expect("kind != \"a \\\"quoted\\\" and\"", 1, 1);
	expect("kind ~ \"\"", 1, 1);
	expect("kind == \"free chunk\" or kind == \"str\"", 1, 1);
	/* words are whole: 'order' is not 'or', 'sizes' not 'size' */
	expect_error("size > 1 order size > 2", "column 10", "expected 'and', 'or'");
	expect_error("sizes > 1", "column 1", "expected a field");

	/* errors: column and what */
	expect_error("", "empty", NULL);
	expect_error("   ", "empty", NULL);
	expect_error("kind = \"str\"", "column 6", "expected an operator");
	expect_error("kind == str", "column 9", "expected a string");
	expect_error("kind == \"str", "column 9", "unterminated string");
	expect_error("kind < \"str\"", "column 6", "string field takes == != or ~");
	expect_error("size ~ 4", "column 6", "~ is for strings");
	expect_error("size > \"4\"", "column 8", "expected a number");
	expect_error("size > 12q", "column 8", "expected a number");
	expect_error("size > 0x", "column 8", "expected a number");
	expect_error("size > 99999999999999999999", "column 8", "expected a number");
	expect_error("size > 17179869184G", "column 8", "expected a number");
	expect_error("size > 1 and", "column 13", "found the end of the query");
	expect_error("(size > 1", "column 10", "to close the '(' of column 1");
	expect_error("size > 1)", "column 9", "expected 'and', 'or' or the end");
	expect_error("colour == \"red\"", "column 1", "expected a field");
	expect_error("kind == \"a\" xor size > 1", "column 13", "expected 'and'");
	expect_error("size @ 1", "column 6", "expected an operator");
	expect_error("not", "column 4", "found the end");

	/* nesting is capped, not a stack overflow */
	char deep[4096];
	size_t n = 0;
	for (int i = 0; i < 1000; i++)
		deep[n++] = '(';
	strcpy(deep + n, "size > 1");
	expect_error(deep, "nested too deeply", NULL);
	n = 0;
	for (int i = 0; i < 1000; i++)
		n += (size_t)sprintf(deep + n, "not ");
	strcpy(deep + n, "size > 1");
	expect_error(deep, "nested too deeply", NULL);

	/* a long flat chain is fine */
	char *chain = malloc(200000);
	n = (size_t)sprintf(chain, "size == 1");
	for (int i = 0; i < 1000; i++)
		n += (size_t)sprintf(chain + n, " or size == %d", i + 2);
	CHECK(verdict(chain, &free_row) == 1, "1001-term or-chain matches size 48");
	free(chain);

	return check_exit_status();
}
