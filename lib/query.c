/* The `select` query language (grammar in query.h): a tokenizer, a
 * recursive-descent parser into an array of nodes, and the evaluator. */
#include "query.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	QUERY_DEPTH_MAX = 64,       /* nesting of not/parentheses */
	QUERY_NODES_MAX = 4096,
	QUERY_TEXT_MAX = 16384,
};

enum node_type { NODE_OR, NODE_AND, NODE_NOT, NODE_CMP };
enum field { F_DOMAIN, F_KIND, F_DETAIL, F_STATE, F_ADDR, F_SIZE, F_COUNT };
enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_CONTAINS };

static const char *const field_names[F_COUNT] = {
	"domain", "kind", "detail", "state", "addr", "size",
};

static bool field_is_string(enum field f)
{
	return f < F_ADDR;
}

struct node {
	enum node_type type;
	size_t left, right;         /* child node indices (NOT: left only) */
	enum field field;
	enum op op;
	uint64_t number;
	char *string;
};

struct pm_query {
	struct node *nodes;
	size_t n, cap;
	size_t root;
};

enum token_type { T_END, T_IDENT, T_STRING, T_NUMBER, T_OP, T_LPAREN,
		  T_RPAREN, T_BAD };

struct token {
	enum token_type type;
	size_t pos, len;            /* in the text */
	enum op op;
	uint64_t number;
};

struct parser {
	const char *text;
	struct token tok;
	struct pm_query *q;
	int depth;
};

static struct pm_error *parse_error(const struct parser *p, size_t pos,
				    const char *what)
{
	const struct token *t = &p->tok;
	if (t->pos == pos && t->type == T_END)
		return pm_error_format(PM_ERR_INVALID,
				       "query: column %zu: %s, found the end of the query",
				       pos + 1, what);
	size_t len = t->pos == pos && t->len ? t->len : 1;
	if (len > 40)
		len = 40;
	return pm_error_format(PM_ERR_INVALID, "query: column %zu: %s, found '%.*s'",
			       pos + 1, what, (int)len, p->text + pos);
}

/* ---- tokens -------------------------------------------------------- */

static bool scan_op(const char *s, enum op *op, size_t *len)
{
	static const struct { const char *text; enum op op; } ops[] = {
		{"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE},
		{"<", OP_LT}, {">", OP_GT}, {"~", OP_CONTAINS},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t n = strlen(ops[i].text);
		if (!strncmp(s, ops[i].text, n)) {
			*op = ops[i].op;
			*len = n;
			return true;
		}
	}
	return false;
}

/* A number: decimal or 0x hex, optional k/M/G suffix. False on overflow
 * or a malformed literal (then *len covers the bad text). */
static bool scan_number(const char *s, uint64_t *ret, size_t *len)
{
	size_t i = 0;
	unsigned base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	size_t start = i;
	uint64_t v = 0;
	bool overflow = false;
	for (;; i++) {
		int c = (unsigned char)s[i], d;
		if (isdigit(c))
			d = c - '0';
		else if (base == 16 && isxdigit(c))
			d = tolower(c) - 'a' + 10;
		else
			break;
		if (v > (UINT64_MAX - (uint64_t)d) / base)
			overflow = true;
		v = v * base + (uint64_t)d;
	}
	bool ok = i > start && !overflow;
	unsigned shift = 0;
	switch (s[i]) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	default: break;
	}
	if (shift) {
		if (v >> (64 - shift))
			ok = false;
		v <<= shift;
		i++;
	}
	while (isalnum((unsigned char)s[i]) || s[i] == '_') {
		ok = false;     /* 12abc, 0x, 4kb */
		i++;
	}
	*ret = v;
	*len = i;
	return ok;
}

static void next_token(struct parser *p)
{
	const char *s = p->text;
	size_t i = p->tok.pos + p->tok.len;
	while (isspace((unsigned char)s[i]))
		i++;
	struct token t = { .type = T_BAD, .pos = i, .len = 1 };
	char c = s[i];
	if (!c) {
		t.type = T_END;
		t.len = 0;
	} else if (c == '(' || c == ')') {
		t.type = c == '(' ? T_LPAREN : T_RPAREN;
	} else if (isalpha((unsigned char)c) || c == '_') {
		size_t n = 0;
		while (isalnum((unsigned char)s[i + n]) || s[i + n] == '_')
			n++;
		t.type = T_IDENT;
		t.len = n;
	} else if (isdigit((unsigned char)c)) {
		t.type = scan_number(s + i, &t.number, &t.len) ? T_NUMBER : T_BAD;
	} else if (c == '"') {
		size_t n = 1;
		while (s[i + n] && s[i + n] != '"')
			n += s[i + n] == '\\' && s[i + n + 1] ? 2 : 1;
		t.type = s[i + n] == '"' ? T_STRING : T_BAD;
		t.len = s[i + n] ? n + 1 : n;
	} else if (scan_op(s + i, &t.op, &t.len)) {
		t.type = T_OP;
	}
	p->tok = t;
}

static bool token_is_word(const struct parser *p, const char *word)
{
	return p->tok.type == T_IDENT && p->tok.len == strlen(word) &&
	       !strncmp(p->text + p->tok.pos, word, p->tok.len);
}

/* The string literal's text without quotes and escapes. */
static char *string_value(const struct parser *p)
{
	const char *s = p->text + p->tok.pos + 1;
	size_t n = p->tok.len - 2;
	char *v = malloc(n + 1);
	if (!v)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		v[k++] = s[i];
	}
	v[k] = '\0';
	return v;
}

/* ---- parser -------------------------------------------------------- */

static struct pm_error *node_new(struct parser *p, const struct node *n,
				 size_t *ret)
{
	struct pm_query *q = p->q;
	if (q->n == QUERY_NODES_MAX)
		return pm_error_format(PM_ERR_INVALID, "query: column %zu: too long (more than %d terms)",
				       p->tok.pos + 1, QUERY_NODES_MAX);
	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 16;
		void *m = realloc(q->nodes, cap * sizeof(*q->nodes));
		if (!m)
			return &pm_error_no_memory;
		q->nodes = m;
		q->cap = cap;
	}
	q->nodes[q->n] = *n;
	*ret = q->n++;
	return NULL;
}

static struct pm_error *parse_or(struct parser *p, size_t *ret);

static struct pm_error *parse_field(struct parser *p, enum field *ret)
{
	if (p->tok.type == T_IDENT)
		for (int f = 0; f < F_COUNT; f++)
			if (token_is_word(p, field_names[f])) {
				*ret = (enum field)f;
				next_token(p);
				return NULL;
			}
	return parse_error(p, p->tok.pos, "expected a field (domain, kind, detail, "
			   "state, addr, size), 'not' or '('");
}

static struct pm_error *parse_comparison(struct parser *p, size_t *ret)
{
	struct node n = { .type = NODE_CMP };
	struct pm_error *err = parse_field(p, &n.field);
	if (err)
		return err;
	bool is_string = field_is_string(n.field);
	if (p->tok.type != T_OP)
		return parse_error(p, p->tok.pos, is_string ?
				   "expected an operator (== != ~)" :
				   "expected an operator (== != < <= > >=)");
	n.op = p->tok.op;
	if (is_string && n.op != OP_EQ && n.op != OP_NE && n.op != OP_CONTAINS)
		return parse_error(p, p->tok.pos, "a string field takes == != or ~");
	if (!is_string && n.op == OP_CONTAINS)
		return parse_error(p, p->tok.pos, "~ is for strings, not numbers");
	next_token(p);
	if (is_string && p->tok.type != T_STRING)
		return parse_error(p, p->tok.pos, p->tok.type == T_BAD && p->text[p->tok.pos] == '"' ?
				   "unterminated string" : "expected a string in double quotes");
	if (!is_string && p->tok.type != T_NUMBER)
		return parse_error(p, p->tok.pos, "expected a number (123, 0x7b, 4k, 2M, 1G)");
	if (is_string) {
		n.string = string_value(p);
		if (!n.string)
			return &pm_error_no_memory;
	} else {
		n.number = p->tok.number;
	}
	next_token(p);
	err = node_new(p, &n, ret);
	if (err)
		free(n.string);
	return err;
}

static struct pm_error *parse_unary(struct parser *p, size_t *ret)
{
	if (++p->depth > QUERY_DEPTH_MAX)
		return parse_error(p, p->tok.pos, "nested too deeply");
	struct pm_error *err;
	if (token_is_word(p, "not")) {
		next_token(p);
		struct node n = { .type = NODE_NOT };
		err = parse_unary(p, &n.left);
		if (!err)
			err = node_new(p, &n, ret);
	} else if (p->tok.type == T_LPAREN) {
		size_t open = p->tok.pos;
		next_token(p);
		err = parse_or(p, ret);
		if (!err && p->tok.type != T_RPAREN) {
			char what[64];
			snprintf(what, sizeof(what),
				 "expected ')' to close the '(' of column %zu", open + 1);
			err = parse_error(p, p->tok.pos, what);
		}
		if (!err)
			next_token(p);
	} else {
		err = parse_comparison(p, ret);
	}
	p->depth--;
	return err;
}

/* A left-associative chain of `sub` joined by `word`. */
static struct pm_error *parse_chain(struct parser *p, const char *word,
				    enum node_type type,
				    struct pm_error *(*sub)(struct parser *, size_t *),
				    size_t *ret)
{
	struct pm_error *err = sub(p, ret);
	while (!err && token_is_word(p, word)) {
		next_token(p);
		struct node n = { .type = type, .left = *ret };
		err = sub(p, &n.right);
		if (!err)
			err = node_new(p, &n, ret);
	}
	return err;
}

static struct pm_error *parse_and(struct parser *p, size_t *ret)
{
	return parse_chain(p, "and", NODE_AND, parse_unary, ret);
}

static struct pm_error *parse_or(struct parser *p, size_t *ret)
{
	return parse_chain(p, "or", NODE_OR, parse_and, ret);
}

struct pm_error *pm_query_parse(const char *text, struct pm_query **ret)
{
	if (!text)
		return pm_error_format(PM_ERR_INVALID, "query: empty");
	if (strlen(text) > QUERY_TEXT_MAX)
		return pm_error_format(PM_ERR_INVALID, "query: longer than %d characters",
				       QUERY_TEXT_MAX);
	struct pm_query *q = calloc(1, sizeof(*q));
	if (!q)
		return &pm_error_no_memory;
	struct parser p = { .text = text, .q = q };
	next_token(&p);
	struct pm_error *err;
	if (p.tok.type == T_END)
		err = pm_error_format(PM_ERR_INVALID, "query: empty");
	else
		err = parse_or(&p, &q->root);
	if (!err && p.tok.type != T_END)
		err = parse_error(&p, p.tok.pos, "expected 'and', 'or' or the end");
	if (err) {
		pm_query_destroy(q);
		return err;
	}
	*ret = q;
	return NULL;
}

void pm_query_destroy(struct pm_query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++)
		free(q->nodes[i].string);
	free(q->nodes);
	free(q);
}

/* ---- evaluation ---------------------------------------------------- */

static bool compare_numbers(enum op op, uint64_t a, uint64_t b)
{
	switch (op) {
	case OP_EQ: return a == b;
	case OP_NE: return a != b;
	case OP_LT: return a < b;
	case OP_LE: return a <= b;
	case OP_GT: return a > b;
	case OP_GE: return a >= b;
	default: return false;
	}
}

static bool compare(const struct node *n, const struct pm_query_row *row)
{
	const char *s = NULL;
	switch (n->field) {
	case F_DOMAIN: s = row->domain; break;
	case F_KIND: s = row->kind; break;
	case F_DETAIL: s = row->detail; break;
	case F_STATE: s = row->state; break;
	case F_ADDR: return compare_numbers(n->op, row->addr, n->number);
	case F_SIZE: return compare_numbers(n->op, row->size, n->number);
	default: return false;
	}
	if (!s)
		s = "";
	switch (n->op) {
	case OP_EQ: return !strcmp(s, n->string);
	case OP_NE: return strcmp(s, n->string) != 0;
	case OP_CONTAINS: return strstr(s, n->string) != NULL;
	default: return false;
	}
}

/* Recursion depth is at most the node count (QUERY_NODES_MAX). */
static bool eval(const struct pm_query *q, size_t i, const struct pm_query_row *row)
{
	const struct node *n = &q->nodes[i];
	switch (n->type) {
	case NODE_OR: return eval(q, n->left, row) || eval(q, n->right, row);
	case NODE_AND: return eval(q, n->left, row) && eval(q, n->right, row);
	case NODE_NOT: return !eval(q, n->left, row);
	default: return compare(n, row);
	}
}

bool pm_query_match(const struct pm_query *q, const struct pm_query_row *row)
{
	return eval(q, q->root, row);
}
