/* The waste analysis (waste.h): a pass over the graph's heap objects,
 * reading each exact str, bytes, int, float, list, dict, set and bytearray
 * once from a view of its own allocation, then a pass over tuples and
 * frozensets (their items keyed by the values of the first pass), then the
 * free lists' allocations and the classes (waste_slots.c). Duplicates:
 * each value's key bytes are hashed (8 bytes a step) into a map of
 * distinct values whose contents are copied once into chunks (at most
 * CONTENT_MAX in all, values up to VALUE_MAX bytes); equal hashes are
 * confirmed by comparing bytes. Containers: their sizes against what their
 * buffers hold (offsets from cpython_layout.c, dict keys headers as
 * graph_referents.c reads them), each over-allocated one's holder named
 * from its path (graph_path.h). Facts: shared/reference/cpython-memory.md. */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "cpython.h"
#include "graph_path.h"
#include "hash_table.h"
#include "waste.h"

enum {
	VALUE_MAX = 1 << 16,        /* longer values are not compared */
	CHUNK_SIZE = 1 << 20,
	INT_DIGITS_MAX = 1 << 12,
	ITEMS_COMPARED_MAX = 4096,  /* a tuple's or frozenset's, else skipped */
	OBJECT_VIEW_MAX = VALUE_MAX + 128,
	OWNERS_MAX = 1 << 20,       /* over-allocated containers attributed */
	OWNER_TEXT_MAX = 160,
	ITEMS_MAX = 1 << 28,        /* a container's slots taken as plausible */
	TPFLAG_HEAPTYPE = 1 << 9,
};
#define CONTENT_MAX (UINT64_C(512) << 20)

const char *pm_dup_type_name(enum pm_dup_type type)
{
	static const char *names[] = {"str", "bytes", "int", "float", "tuple",
				      "frozenset"};
	return type < PM_DUP_TYPES ? names[type] : "?";
}

const char *pm_container_name(enum pm_container kind)
{
	static const char *names[] = {"list", "dict", "set", "bytearray"};
	return kind < PM_CONT_KINDS ? names[kind] : "?";
}

/* The kinds read here, by category. */
enum obj_kind { OK_NONE = 0, OK_STR, OK_BYTES, OK_INT, OK_FLOAT, OK_LIST,
		OK_DICT, OK_SET, OK_BYTEARRAY, OK_TUPLE, OK_FROZENSET, OK_KINDS };
static const char *const kind_names[OK_KINDS] = {
	NULL, "str", "bytes", "int", "float", "list", "dict", "set", "bytearray",
	"tuple", "frozenset",
};

struct value_key {
	const uint8_t *bytes;
	uint64_t hash;
	uint32_t len;
	uint8_t type;
};

static uint64_t value_key_hash(const struct value_key *k)
{
	return k->hash;
}

static bool value_key_eq(const struct value_key *a, const struct value_key *b)
{
	return a->hash == b->hash && a->len == b->len && a->type == b->type &&
	       !memcmp(a->bytes, b->bytes, a->len);
}

struct value_group {
	uint64_t copies, bytes_total, kept_size, interned;
	uint32_t id;                /* in order of first sight */
	uint32_t examples[PM_WASTE_EXAMPLES];
	uint32_t nexamples;
	bool kept_interned;
};
PM_DEFINE_HASH_MAP(value_map, struct value_key, struct value_group,
		   value_key_hash, value_key_eq)

static uint64_t hash_bytes(uint8_t type, const uint8_t *p, size_t n)
{
	uint64_t h = PM_HASH_STRING_SEED ^ type ^ ((uint64_t)n << 8);
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		h = (h ^ pm_load_u64(p + i)) * UINT64_C(0x100000001b3) +
		    (h >> 29);
	uint64_t tail = 0;
	if (i < n)
		memcpy(&tail, p + i, n - i);
	return pm_hash_u64(h ^ tail);
}

struct owner_key {
	const char *s;
	uint64_t h;
};
static uint64_t owner_key_hash(const struct owner_key *k)
{
	return k->h;
}
static bool owner_key_eq(const struct owner_key *a, const struct owner_key *b)
{
	return a->h == b->h && !strcmp(a->s, b->s);
}
struct owner_acc {
	uint64_t count, bytes;
};
PM_DEFINE_HASH_MAP(owner_map, struct owner_key, struct owner_acc, owner_key_hash,
		   owner_key_eq)

struct state {
	struct pm_target *t;
	const struct pm_graph *g;
	const struct pm_cpython_heap *heap;
	const struct pm_cpython_layout *l;
	int minor;
	struct pm_waste *w;
	uint8_t *cat_kind;          /* by category: enum obj_kind */
	uint64_t type_of[OK_KINDS]; /* the exact type of each kind, once seen */
	struct value_map values;
	uint64_t content_used;
	size_t chunk_left, chunk_size;
	uint8_t *key_buf;           /* sign + digits of an int being keyed */
	uint32_t *node_value;       /* by node: 1 + the id of its value, or 0 */
	uint32_t nids;
	uint64_t *items;            /* a tuple's or frozenset's keyed items */
	uint8_t *table;             /* a frozenset's table, read */
	const struct pm_graph_paths *paths;
	struct owner_map owners[PM_CONT_KINDS];   /* over-allocated, by kind */
	struct owner_map empty_owners;            /* empty containers */
};

/* Who holds node: see struct pm_waste_owner. Items of containers are
 * named by their container's holder and [i] (list, tuple), [k] (dict), or
 * {member} (set); depth bounds that. */
static void holder_text(struct state *s, uint32_t node, struct pm_strbuf *out, int depth)
{
	const struct pm_graph *g = s->g;
	const struct pm_graph_paths *p = s->paths;
	uint32_t via = node < g->nnodes ? p->via[node] : PM_VIA_NONE;
	if (via == PM_VIA_NONE) {
		pm_strbuf_append(out, "(not held)");
		return;
	}
	if (via == PM_VIA_OUTSIDE) {
		pm_strbuf_append(out, "(held from outside the heap)");
		return;
	}
	if (via >= p->roots_base) {
		size_t r = via - p->roots_base;
		if (r < g->roots.size)
			pm_graph_root_text(g, &g->roots.data[r], out);
		else
			pm_strbuf_append(out, "?");
		return;
	}
	uint32_t from = pm_graph_edge_source(g, via);
	enum pm_edge_kind kind = PM_EDGE_KIND(g->edge_kind[via]);
	uint32_t fvia = from < g->nnodes ? p->via[from] : PM_VIA_NONE;
	const char *ftype = pm_graph_node_type(g, from);
	if (fvia < g->nedges && PM_EDGE_KIND(g->edge_kind[fvia]) == PM_EDGE_DICT) {
		/* An attribute in an object's __dict__. */
		uint32_t owner = pm_graph_edge_source(g, fvia);
		const struct pm_cpython_type *cls =
			pm_cpython_find_type(g->heap, pm_graph_node_addr(g, owner));
		if (cls && cls->name) {
			pm_strbuf_printf(out, "class %s.__dict__", cls->name);
		} else if (!strcmp(pm_graph_node_type(g, owner), "module") && depth < 4) {
			holder_text(s, owner, out, depth + 1);
			pm_strbuf_append(out, ".__dict__");
		} else {
			pm_strbuf_printf(out, "%s.__dict__", pm_graph_node_type(g, owner));
		}
		pm_graph_edge_text(g, from, via, out);
		return;
	}
	bool container = !strcmp(ftype, "list") || !strcmp(ftype, "tuple") ||
			 !strcmp(ftype, "dict") || !strcmp(ftype, "set") ||
			 !strcmp(ftype, "frozenset") || !strcmp(ftype, "collections.deque");
	/* A root dict's keys name things (sys.modules['x']): kept. */
	bool root_dict = fvia != PM_VIA_NONE && fvia != PM_VIA_OUTSIDE &&
			 fvia >= p->roots_base && kind == PM_EDGE_DICT_VALUE;
	if (root_dict && depth < 4) {
		holder_text(s, from, out, depth + 1);
		pm_graph_edge_text(g, from, via, out);
		return;
	}
	if (container && depth < 4 &&
	    (kind == PM_EDGE_ITEM || kind == PM_EDGE_DICT_VALUE ||
	     kind == PM_EDGE_DICT_KEY || kind == PM_EDGE_SET_ITEM)) {
		holder_text(s, from, out, depth + 1);
		pm_strbuf_append(out, kind == PM_EDGE_ITEM ? "[i]" :
				 kind == PM_EDGE_SET_ITEM ? "{member}" :
				 kind == PM_EDGE_DICT_KEY ? "{key}" : "[k]");
		return;
	}
	pm_strbuf_append(out, ftype);
	pm_graph_edge_text(g, from, via, out);
}

/* Counts node and its bytes for its holder in m (the map of one finding). */
static void owner_add(struct state *s, struct owner_map *m, struct pm_waste_owners *o,
		      uint32_t node, uint64_t bytes)
{
	if (!s->paths || o->seen >= OWNERS_MAX)
		return;
	o->seen++;
	struct pm_strbuf text;
	pm_strbuf_init(&text);
	holder_text(s, node, &text, 0);
	char name[OWNER_TEXT_MAX];
	snprintf(name, sizeof(name), "%s", text.data ? text.data : "?");
	pm_strbuf_deinit(&text);
	struct owner_key key = {name, pm_hash_string(PM_HASH_STRING_SEED, name)};
	bool fresh = false;
	struct owner_acc *acc = owner_map_insert(m, &key, &fresh);
	if (!acc)
		return;
	if (fresh) {
		struct owner_map_entry *e = (struct owner_map_entry *)
			((char *)acc - offsetof(struct owner_map_entry, value));
		char *copy = strdup(name);
		if (!copy) {
			e->key.s = name;
			owner_map_delete(m, &key);
			return;
		}
		e->key.s = copy;
	}
	acc->count++;
	acc->bytes += bytes;
}

/* The holders of m with the most bytes into o; frees m. */
static void owners_finish(struct owner_map *m, struct pm_waste_owners *o)
{
	for (size_t i = 0; i < m->capacity; i++) {
		if (!m->ctrl[i])
			continue;
		struct owner_acc *a = &m->entries[i].value;
		char *name = (char *)m->entries[i].key.s;
		if (o->n == PM_WASTE_OWNERS && o->top[PM_WASTE_OWNERS - 1].bytes >= a->bytes) {
			free(name);
			continue;
		}
		uint32_t j = o->n < PM_WASTE_OWNERS ? o->n++ : PM_WASTE_OWNERS - 1;
		if (j == PM_WASTE_OWNERS - 1 && o->top[j].name && o->n == PM_WASTE_OWNERS)
			free(o->top[j].name);
		while (j > 0 && o->top[j - 1].bytes < a->bytes) {
			o->top[j] = o->top[j - 1];
			j--;
		}
		o->top[j] = (struct pm_waste_owner){name, a->count, a->bytes};
	}
	owner_map_deinit(m);
}

static void owners_free(struct pm_waste_owners *o)
{
	for (uint32_t i = 0; i < o->n; i++)
		free(o->top[i].name);
	o->n = 0;
}

static bool exact_type(struct state *s, enum obj_kind k, uint64_t tp)
{
	if (s->type_of[k])
		return tp == s->type_of[k];
	const struct pm_cpython_type *t = pm_cpython_find_type(s->heap, tp);
	if (!t || !t->name || strcmp(t->name, kind_names[k]) ||
	    (t->flags & TPFLAG_HEAPTYPE))
		return false;
	static const uint8_t tk[OK_KINDS] = {
		[OK_STR] = TK_STR, [OK_LIST] = TK_LIST, [OK_DICT] = TK_DICT,
		[OK_SET] = TK_SET, [OK_BYTEARRAY] = TK_BYTEARRAY,
	};
	if (tk[k] && s->heap->kind_types[tk[k]] && s->heap->kind_types[tk[k]] != tp)
		return false;
	s->type_of[k] = tp;
	return true;
}

/* A copy of n bytes in the chunks, or NULL when the cap is reached. */
static const uint8_t *keep_content(struct state *s, const uint8_t *p, size_t n)
{
	struct pm_waste *w = s->w;
	if (s->content_used + n > CONTENT_MAX) {
		w->content_full = true;
		return NULL;
	}
	if (n > s->chunk_left || !w->nchunks) {
		size_t size = n > CHUNK_SIZE ? n : CHUNK_SIZE;
		uint8_t **grown = realloc(w->chunks, (w->nchunks + 1) * sizeof(*grown));
		if (!grown)
			return NULL;
		w->chunks = grown;
		uint8_t *c = malloc(size ? size : 1);
		if (!c)
			return NULL;
		w->chunks[w->nchunks++] = c;
		s->chunk_left = s->chunk_size = size;
	}
	uint8_t *dst = w->chunks[w->nchunks - 1] + (s->chunk_size - s->chunk_left);
	memcpy(dst, p, n);
	s->chunk_left -= n;
	s->content_used += n;
	return dst;
}

/* extra: bytes of the object's own buffer (a frozenset's table). */
static struct pm_error *add_value_extra(struct state *s, enum pm_dup_type type,
					uint32_t node, const struct pm_alloc *a,
					const uint8_t *p, size_t n, bool interned,
					uint64_t extra)
{
	uint64_t size = a->size + extra;
	struct pm_dup_stats *st = &s->w->dup[type];
	struct value_key key = {p, hash_bytes((uint8_t)type, p, n), (uint32_t)n,
				(uint8_t)type};
	bool fresh = false;
	struct value_group *v = value_map_search(&s->values, &key);
	if (!v) {
		if (s->w->content_full) {
			st->skipped++;
			return NULL;
		}
		v = value_map_insert(&s->values, &key, &fresh);
		if (!v)
			return &pm_error_no_memory;
		struct value_map_entry *e = (struct value_map_entry *)
			((char *)v - offsetof(struct value_map_entry, value));
		e->key.bytes = keep_content(s, p, n);
		if (!e->key.bytes) {
			/* Not kept: take it out again (the map owns no copy). */
			struct value_key gone = key;
			e->key.bytes = p;
			value_map_delete(&s->values, &gone);
			st->skipped++;
			return s->w->content_full ? NULL : &pm_error_no_memory;
		}
		st->distinct++;
		v->id = s->nids++;
	}
	if (s->node_value && node < s->g->nheap)
		s->node_value[node] = v->id + 1;
	st->objects++;
	st->bytes += size;
	if (interned)
		st->interned++;
	v->copies++;
	v->bytes_total += size;
	if (interned)
		v->interned++;
	/* The copy kept: an interned one if any (what sys.intern returns),
	 * else the first seen; it is the first example. */
	if (fresh || (interned && !v->kept_interned)) {
		v->kept_size = size;
		v->kept_interned = interned;
		if (!fresh) {
			uint32_t n_ex = v->nexamples < PM_WASTE_EXAMPLES ?
					v->nexamples + 1 : PM_WASTE_EXAMPLES;
			memmove(v->examples + 1, v->examples,
				(n_ex - 1) * sizeof(v->examples[0]));
			v->examples[0] = node;
			v->nexamples = n_ex;
			return NULL;
		}
	}
	if (v->nexamples < PM_WASTE_EXAMPLES)
		v->examples[v->nexamples++] = node;
	return NULL;
}

static struct pm_error *add_value(struct state *s, enum pm_dup_type type,
				  uint32_t node, const struct pm_alloc *a,
				  const uint8_t *p, size_t n, bool interned)
{
	return add_value_extra(s, type, node, a, p, n, interned, 0);
}

/* Keeps the example among the largest `cap` by figure, in order. */
static void keep_example(struct pm_waste_example *ex, uint32_t *n, uint32_t cap,
			 struct pm_waste_example e)
{
	if (*n == cap && ex[cap - 1].figure >= e.figure)
		return;
	uint32_t k = *n < cap ? (*n)++ : cap - 1;
	while (k > 0 && ex[k - 1].figure < e.figure) {
		ex[k] = ex[k - 1];
		k--;
	}
	ex[k] = e;
}

#define KEEP(arr, n, e) keep_example(arr, &(n), (uint32_t)(sizeof(arr) / sizeof(arr[0])), e)

/* The allocation whose data the program gets at addr and that holds need
 * bytes. With the debug hooks the data is past their header, or past two
 * for a large PyMem_Malloc (the hooks of the object domain around those of
 * the raw domain, in a glibc chunk). */
static const struct pm_alloc *buffer_at(struct state *s, uint64_t addr, uint64_t need)
{
	if (!addr || (addr & 7))
		return NULL;
	const struct pm_alloc *a = pm_cpython_find_alloc(s->heap, addr);
	if (!a || pm_alloc_data_end(a) - addr < need)
		return NULL;
	uint64_t past = addr - a->addr;
	bool hooked = s->heap->debug_hooks &&
		(past == PM_DEBUG_HOOK_HEADER ||
		 (past == 2 * PM_DEBUG_HOOK_HEADER && a->kind != PM_ALLOC_PYMALLOC));
	return past == 0 || hooked ? a : NULL;
}

static void empty_add(struct state *s, enum pm_container k, uint32_t node, uint64_t bytes)
{
	struct pm_empty_stats *e = &s->w->empty[k];
	e->count++;
	e->bytes += bytes;
	owner_add(s, &s->empty_owners, &s->w->empty_owners, node, bytes);
	KEEP(e->examples, e->nexamples, ((struct pm_waste_example){node, bytes, 0, 0}));
}

static void over_add(struct state *s, enum pm_container k, uint32_t node,
		     uint64_t buffer, uint64_t unused, uint64_t deleted,
		     uint64_t saving, uint64_t used, uint64_t capacity)
{
	struct pm_over_stats *o = &s->w->over[k];
	o->buffer_bytes += buffer;
	if (!unused)
		return;
	o->over++;
	owner_add(s, &s->owners[k], &o->owners, node, unused);
	o->unused += unused;
	o->deleted += deleted;
	o->saving += saving;
	KEEP(o->worst, o->nworst, ((struct pm_waste_example){node, unused, used, capacity}));
}

static void read_str(struct state *s, uint32_t node, const struct pm_alloc *a,
		     const uint8_t *p, uint64_t avail)
{
	struct pm_dup_stats *st = &s->w->dup[PM_DUP_STR];
	if (avail < s->l->str_ascii_size) {
		st->skipped++;
		return;
	}
	uint64_t length = pm_load_u64(p + 16);
	uint32_t state = pm_load_u32(p + 32);
	unsigned width = (state >> 2) & 7;
	bool compact = state & (1u << 5), ascii = state & (1u << 6);
	uint64_t off = ascii ? s->l->str_ascii_size : s->l->str_data;
	if (!compact || (width != 1 && width != 2 && width != 4) ||
	    length > VALUE_MAX || (ascii && width != 1) ||
	    off + (length + 1) * width > avail) {
		st->skipped++;
		return;
	}
	/* The key: the kind's width, then the characters. */
	size_t n = (size_t)length * width;
	s->key_buf[0] = (uint8_t)width;
	memcpy(s->key_buf + 1, p + off, n);
	struct pm_error *err = add_value(s, PM_DUP_STR, node, a, s->key_buf, n + 1,
					 (state & 3) != 0);
	pm_error_destroy(err);
}

static void read_bytes(struct state *s, uint32_t node, const struct pm_alloc *a,
		       const uint8_t *p, uint64_t avail)
{
	uint64_t size = pm_load_u64(p + 16);
	if (size > VALUE_MAX || 32 + size + 1 > avail) {
		s->w->dup[PM_DUP_BYTES].skipped++;
		return;
	}
	pm_error_destroy(add_value(s, PM_DUP_BYTES, node, a, p + 32, (size_t)size, false));
}

static void read_int(struct state *s, uint32_t node, const struct pm_alloc *a,
		     const uint8_t *p, uint64_t avail)
{
	uint64_t tag = pm_load_u64(p + 16), ndigits;
	uint8_t sign;
	if (s->minor >= 12) {
		ndigits = tag >> 3;
		sign = (uint8_t)(tag & 3);          /* 0 +, 1 zero, 2 - */
	} else {
		bool negative = (int64_t)tag < 0;
		ndigits = negative ? (uint64_t)0 - tag : tag;
		sign = negative ? 2 : ndigits ? 0 : 1;
	}
	if (sign == 3 || ndigits > INT_DIGITS_MAX || 24 + ndigits * 4 > avail) {
		s->w->dup[PM_DUP_INT].skipped++;
		return;
	}
	s->key_buf[0] = sign;
	memcpy(s->key_buf + 1, p + 24, (size_t)ndigits * 4);
	pm_error_destroy(add_value(s, PM_DUP_INT, node, a, s->key_buf,
				   (size_t)ndigits * 4 + 1, false));
}

static void read_float(struct state *s, uint32_t node, const struct pm_alloc *a,
		       const uint8_t *p, uint64_t avail)
{
	if (avail < 24) {
		s->w->dup[PM_DUP_FLOAT].skipped++;
		return;
	}
	pm_error_destroy(add_value(s, PM_DUP_FLOAT, node, a, p + 16, 8, false));
}

/* An item's key: the id of its value if it is a compared one. */
static uint64_t item_key(struct state *s, uint64_t item)
{
	uint32_t n = pm_graph_node_at(s->g, item);
	if (n < s->g->nheap && s->node_value[n])
		return PM_DUP_ITEM_VALUE | (s->node_value[n] - 1);
	return item;
}

static void read_tuple(struct state *s, uint32_t node, const struct pm_alloc *a,
		       const uint8_t *p, uint64_t avail)
{
	uint64_t size = pm_load_u64(p + 16);
	uint32_t items = s->minor >= 14 ? 32 : 24;
	if (size > ITEMS_COMPARED_MAX || items + size * 8 > avail) {
		s->w->dup[PM_DUP_TUPLE].skipped++;
		return;
	}
	for (uint64_t i = 0; i < size; i++)
		s->items[i] = pm_load_u64(p + items + 8 * i);
	/* The view ends at the next memory call: items copied first. */
	for (uint64_t i = 0; i < size; i++)
		s->items[i] = item_key(s, s->items[i]);
	pm_error_destroy(add_value(s, PM_DUP_TUPLE, node, a, (const uint8_t *)s->items,
				   (size_t)size * 8, false));
}

static int u64_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static void read_frozenset(struct state *s, uint32_t node, const struct pm_alloc *a,
			   const uint8_t *p, uint64_t avail)
{
	struct pm_dup_stats *st = &s->w->dup[PM_DUP_FROZENSET];
	if (avail < s->l->set_smalltable + 8 * 16) {
		st->skipped++;
		return;
	}
	int64_t fill = (int64_t)pm_load_u64(p + 16);
	int64_t used = (int64_t)pm_load_u64(p + 24);
	uint64_t mask = pm_load_u64(p + 32);
	uint64_t table = pm_load_u64(p + s->l->set_table);
	uint64_t obj = a->addr + a->object_offset;
	if (used < 0 || fill != used || used > ITEMS_COMPARED_MAX || mask < 7 ||
	    mask > 4 * ITEMS_COMPARED_MAX || (mask & (mask + 1))) {
		st->skipped++;
		return;
	}
	size_t slots = (size_t)mask + 1;
	uint64_t table_bytes = 0;
	if (table == obj + s->l->set_smalltable) {
		if (slots != 8) {
			st->skipped++;
			return;
		}
		memcpy(s->table, p + s->l->set_smalltable, 8 * 16);
	} else {
		const struct pm_alloc *tb = buffer_at(s, table, slots * 16);
		if (!tb) {
			st->skipped++;
			return;
		}
		table_bytes = tb->size;
		struct pm_error *err = pm_target_read(s->t, table, s->table, slots * 16);
		if (err) {
			pm_error_destroy(err);
			st->skipped++;
			return;
		}
	}
	size_t n = 0;
	for (size_t i = 0; i < slots && n < (size_t)used; i++) {
		uint64_t key = pm_load_u64(s->table + 16 * i);
		if (key)
			s->items[n++] = key;
	}
	if (n != (size_t)used) {
		st->skipped++;
		return;
	}
	for (size_t i = 0; i < n; i++)
		s->items[i] = item_key(s, s->items[i]);
	qsort(s->items, n, sizeof(s->items[0]), u64_cmp);
	pm_error_destroy(add_value_extra(s, PM_DUP_FROZENSET, node, a,
					 (const uint8_t *)s->items, n * 8, false, table_bytes));
}

/* A list of only floats or only ints (see struct pm_numeric_stats). */
static void numeric_list(struct state *s, uint32_t node, uint64_t ob_item, uint64_t size,
			 uint64_t buf_size)
{
	const struct pm_graph *g = s->g;
	enum obj_kind want = OK_NONE;
	uint64_t sole = 0;
	for (uint64_t done = 0; done < size;) {
		size_t n = size - done < ITEMS_COMPARED_MAX ? (size_t)(size - done) :
			   ITEMS_COMPARED_MAX;
		struct pm_error *err = pm_target_read(s->t, ob_item + done * 8, s->items, n * 8);
		if (err) {
			pm_error_destroy(err);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			uint32_t item = pm_graph_node_at(g, s->items[i]);
			if (item >= g->nheap)
				return;
			const struct pm_alloc *a = &s->heap->allocs[g->node_alloc[item]];
			enum obj_kind k = a->category < s->heap->ncategories ?
					  (enum obj_kind)s->cat_kind[a->category] : OK_NONE;
			if (k != OK_FLOAT && k != OK_INT)
				return;
			if (want == OK_NONE)
				want = k;
			if (k != want)
				return;
			/* an int over 2 digits (60 bits) may not fit in 64 */
			if (k == OK_INT) {
				uint64_t tag;
				err = pm_target_read_u64(s->t, s->items[i] + 16, &tag);
				if (err) {
					pm_error_destroy(err);
					return;
				}
				uint64_t nd = s->minor >= 12 ? tag >> 3 :
					      (int64_t)tag < 0 ? (uint64_t)0 - tag : tag;
				if (nd > 2)
					return;
			}
			if (pm_graph_refcnt(g, item) == 1)
				sole += a->size;
		}
		done += n;
	}
	struct pm_numeric_stats *st = &s->w->numeric[want == OK_FLOAT ? 0 : 1];
	uint64_t bytes = buf_size + sole;
	uint64_t saving = bytes > size * 8 ? bytes - size * 8 : 0;
	st->lists++;
	st->items += size;
	st->bytes += bytes;
	st->saving += saving;
	KEEP(st->examples, st->nexamples, ((struct pm_waste_example){node, saving, size, 0}));
}

static void read_list(struct state *s, uint32_t node, const struct pm_alloc *a,
		      const uint8_t *p, uint64_t avail)
{
	uint32_t items = s->l->list_items;
	if (avail < items + 16)
		return;
	int64_t size = (int64_t)pm_load_u64(p + 16);
	uint64_t ob_item = pm_load_u64(p + items);
	int64_t allocated = (int64_t)pm_load_u64(p + items + 8);
	if (size < 0 || allocated < size || allocated > ITEMS_MAX)
		return;
	const struct pm_alloc *buf = allocated ?
		buffer_at(s, ob_item, (uint64_t)allocated * 8) : NULL;
	if (allocated && !buf)
		return;
	s->w->over[PM_CONT_LIST].containers++;
	uint64_t buf_size = buf ? buf->size : 0;
	if (size == 0)
		empty_add(s, PM_CONT_LIST, node, a->size + buf_size);
	uint64_t unused = (uint64_t)(allocated - size) * 8;
	over_add(s, PM_CONT_LIST, node, buf_size, unused, 0, unused,
		 (uint64_t)size, (uint64_t)allocated);
	if (size >= PM_NUMERIC_LIST_MIN)
		numeric_list(s, node, ob_item, (uint64_t)size, buf_size);
}

/* The slots of the smallest table that holds n (a power of two from 8;
 * full at `num`/`den` of it). */
static uint64_t min_table(uint64_t n, uint64_t num, uint64_t den)
{
	uint64_t size = 8;
	while (size * num / den < n && size < ((uint64_t)1 << 40))
		size *= 2;
	return size;
}

/* Is the dict an object's __dict__ (its path's last edge says so)? Those
 * are the __slots__ finding's, not tiny dicts. */
static bool is_dunder_dict(struct state *s, uint32_t node)
{
	if (!s->paths)
		return false;
	uint32_t via = s->paths->via[node];
	return via < s->g->nedges && PM_EDGE_KIND(s->g->edge_kind[via]) == PM_EDGE_DICT;
}

static void read_dict(struct state *s, uint32_t node, const struct pm_alloc *a,
		      const uint8_t *p, uint64_t avail)
{
	if (avail < s->l->dict_values + 8)
		return;
	int64_t used = (int64_t)pm_load_u64(p + 16);
	uint64_t keys = pm_load_u64(p + s->l->dict_keys);
	uint64_t values = pm_load_u64(p + s->l->dict_values);
	if (used < 0 || used > ITEMS_MAX)
		return;
	s->w->over[PM_CONT_DICT].containers++;
	uint8_t h[40];
	const struct pm_alloc *kb = buffer_at(s, keys, sizeof(h));
	uint64_t keys_bytes = kb && !values ? kb->size : 0;
	if (used == 0)
		empty_add(s, PM_CONT_DICT, node, a->size + keys_bytes);
	else if (used <= PM_TINY_DICT_MAX && !is_dunder_dict(s, node)) {
		struct pm_waste *w = s->w;
		uint64_t bytes = a->size + keys_bytes;
		/* A tuple of the values: GC head, header, items, to 16. */
		uint64_t tuple = (16 + 24 + 8 * (uint64_t)used + 15) & ~UINT64_C(15);
		w->tiny_dicts++;
		w->tiny_dict_bytes += bytes;
		w->tiny_dict_as_tuples += tuple;
		KEEP(w->tiny_examples, w->ntiny_examples,
		     ((struct pm_waste_example){node, bytes, (uint64_t)used, 0}));
	}
	if (!kb || values)
		return;         /* a split dict's keys are its class's */
	struct pm_error *err = pm_target_read(s->t, keys, h, sizeof(h));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint64_t size, entry, index_width;
	int64_t usable, nentries;
	if (s->minor >= 11) {
		if (h[8] > 30 || h[9] > 33 || h[10] > 2)
			return;
		size = (uint64_t)1 << h[8];
		index_width = ((uint64_t)1 << h[9]) / size;
		entry = h[10] ? 16 : 24;
		usable = (int64_t)pm_load_u64(h + 16);
		nentries = (int64_t)pm_load_u64(h + 24);
	} else {
		size = pm_load_u64(h + 8);
		if (!size || size > ITEMS_MAX || (size & (size - 1)))
			return;
		index_width = size <= 0xff ? 1 : size <= 0xffff ? 2 : 4;
		entry = 24;
		usable = (int64_t)pm_load_u64(h + 24);
		nentries = (int64_t)pm_load_u64(h + 32);
	}
	if (usable < 0 || nentries < used || (uint64_t)usable > size ||
	    (uint64_t)nentries > size)
		return;
	uint64_t capacity = (uint64_t)usable + (uint64_t)nentries;
	if (capacity > size)
		return;
	/* dict(d) builds a table sized for its items (2/3 usable) unless it
	 * may clone d: no deletions and not twice too large, where this size
	 * is that of d (Objects/dictobject.c dict_merge). */
	uint64_t fresh = min_table((uint64_t)used, 2, 3);
	uint64_t saving = 0;
	if (fresh < size && capacity > fresh * 2 / 3)
		saving = (size - fresh) * index_width +
			 (capacity - fresh * 2 / 3) * entry;
	over_add(s, PM_CONT_DICT, node, keys_bytes, (capacity - (uint64_t)used) * entry,
		 (uint64_t)(nentries - used) * entry, saving, (uint64_t)used, capacity);
}

static void read_set(struct state *s, uint32_t node, const struct pm_alloc *a,
		     const uint8_t *p, uint64_t avail)
{
	if (avail < s->l->set_smalltable)
		return;
	int64_t fill = (int64_t)pm_load_u64(p + 16);
	int64_t used = (int64_t)pm_load_u64(p + 24);
	int64_t mask = (int64_t)pm_load_u64(p + 32);
	uint64_t table = pm_load_u64(p + s->l->set_table);
	if (used < 0 || fill < used || mask < 7 || mask > ITEMS_MAX ||
	    ((uint64_t)mask & ((uint64_t)mask + 1)) || fill > mask)
		return;
	uint64_t size = (uint64_t)mask + 1;
	bool inline_table = table == a->addr + a->object_offset + s->l->set_smalltable;
	const struct pm_alloc *tb = inline_table ? NULL : buffer_at(s, table, size * 16);
	if (!inline_table && !tb)
		return;
	s->w->over[PM_CONT_SET].containers++;
	uint64_t table_bytes = tb ? tb->size : 0;
	if (used == 0)
		empty_add(s, PM_CONT_SET, node, a->size + table_bytes);
	if (inline_table)
		return;         /* the 8 slots are part of the object */
	/* set(s) of a set resizes to (used * 2): the smallest power of two
	 * from 8 above it (Objects/setobject.c set_merge, set_table_resize). */
	uint64_t fresh = 8;
	while (fresh <= 2 * (uint64_t)used && fresh < ((uint64_t)1 << 40))
		fresh *= 2;
	uint64_t saving = fresh <= 8 ? table_bytes : fresh < size ? (size - fresh) * 16 : 0;
	over_add(s, PM_CONT_SET, node, table_bytes, (size - (uint64_t)used) * 16,
		 (uint64_t)(fill - used) * 16, saving, (uint64_t)used, size);
}

static void read_bytearray(struct state *s, uint32_t node, const struct pm_alloc *a,
			   const uint8_t *p, uint64_t avail)
{
	(void)a;
	uint32_t off = s->l->bytearray_bytes;
	if (!off || avail < off + 8)
		return;
	int64_t size = (int64_t)pm_load_u64(p + 16);
	int64_t alloc = (int64_t)pm_load_u64(p + 24);
	uint64_t bytes = pm_load_u64(p + off);
	if (size < 0 || alloc < 0 || (alloc && alloc <= size) || alloc > ((int64_t)1 << 40))
		return;
	const struct pm_alloc *buf = alloc ? buffer_at(s, bytes, (uint64_t)alloc) : NULL;
	if (alloc && !buf)
		return;
	s->w->over[PM_CONT_BYTEARRAY].containers++;
	/* ob_alloc counts the trailing NUL. */
	uint64_t unused = alloc ? (uint64_t)(alloc - size - 1) : 0;
	over_add(s, PM_CONT_BYTEARRAY, node, buf ? buf->size : 0, unused, 0, unused,
		 (uint64_t)size, (uint64_t)alloc);
}

static int value_cmp(const void *x, const void *y)
{
	const struct pm_dup_value *a = x, *b = y;
	if (a->saving != b->saving)
		return a->saving < b->saving ? 1 : -1;
	if (a->copies != b->copies)
		return a->copies < b->copies ? 1 : -1;
	return a->examples[0] < b->examples[0] ? -1 : a->examples[0] > b->examples[0];
}

static struct pm_error *collect_values(struct state *s)
{
	struct pm_waste *w = s->w;
	size_t n = 0;
	for (size_t i = 0; i < s->values.capacity; i++)
		if (s->values.ctrl[i] && s->values.entries[i].value.copies > 1)
			n++;
	w->values = calloc(n ? n : 1, sizeof(*w->values));
	if (!w->values)
		return &pm_error_no_memory;
	for (size_t i = 0; i < s->values.capacity; i++) {
		if (!s->values.ctrl[i])
			continue;
		const struct value_map_entry *e = &s->values.entries[i];
		const struct value_group *v = &e->value;
		if (v->copies < 2)
			continue;
		struct pm_dup_value *d = &w->values[w->nvalues++];
		d->bytes = e->key.bytes;
		d->len = e->key.len;
		d->type = e->key.type;
		d->copies = v->copies;
		d->bytes_total = v->bytes_total;
		d->saving = v->bytes_total - v->kept_size;
		d->interned = v->interned;
		memcpy(d->examples, v->examples, sizeof(d->examples));
		d->nexamples = v->nexamples;
		struct pm_dup_stats *st = &w->dup[d->type];
		st->dup_values++;
		st->copies += d->copies;
		st->saving += d->saving;
	}
	qsort(w->values, w->nvalues, sizeof(*w->values), value_cmp);
	/* Every distinct value by its id, for the items of tuples. */
	w->by_id = calloc(s->nids ? s->nids : 1, sizeof(*w->by_id));
	if (!w->by_id)
		return &pm_error_no_memory;
	w->nids = s->nids;
	for (size_t i = 0; i < s->values.capacity; i++) {
		if (!s->values.ctrl[i] || s->values.entries[i].value.id >= s->nids)
			continue;
		const struct value_map_entry *e = &s->values.entries[i];
		struct pm_dup_value *d = &w->by_id[e->value.id];
		d->bytes = e->key.bytes;
		d->len = e->key.len;
		d->type = e->key.type;
		d->copies = e->value.copies;
	}
	return NULL;
}

struct pm_error *pm_waste_analyse(struct pm_target *t, const struct pm_graph *g,
				  const struct pm_graph_paths *paths, struct pm_waste *w)
{
	memset(w, 0, sizeof(*w));
	w->g = g;
	struct state s = {
		.t = t, .g = g, .heap = g->heap, .l = g->l,
		.minor = g->heap->py ? g->heap->py->minor : 0, .w = w,
		.paths = paths,
	};
	s.cat_kind = calloc(s.heap->ncategories + 1, 1);
	s.key_buf = malloc(VALUE_MAX * 4 + 16);
	s.node_value = calloc(g->nheap ? g->nheap : 1, sizeof(*s.node_value));
	s.items = malloc(ITEMS_COMPARED_MAX * sizeof(*s.items));
	s.table = malloc(4 * ITEMS_COMPARED_MAX * 16 + 16);
	struct pm_error *err = NULL;
	if (!s.cat_kind || !s.key_buf || !s.node_value || !s.items || !s.table) {
		err = &pm_error_no_memory;
		goto out;
	}
	for (size_t c = 0; c < s.heap->ncategories; c++) {
		const struct pm_category *cat = &s.heap->categories[c];
		if (!cat->kind || !cat->domain || strcmp(cat->domain, "python"))
			continue;
		for (int k = 1; k < OK_KINDS; k++)
			if (!strcmp(cat->kind, kind_names[k]))
				s.cat_kind[c] = (uint8_t)k;
	}
	/* Pass 0: the values; pass 1: tuples and frozensets of them. */
	for (int pass = 0; pass < 2; pass++)
	for (uint32_t node = 0; node < g->nheap; node++) {
		if ((node & 0xffff) == 0) {
			pm_target_progress(t, "looking for duplicates",
					   (uint64_t)pass * g->nheap + node, 2 * (uint64_t)g->nheap);
			if (pm_target_interrupted(t)) {
				err = pm_error_interrupted();
				goto out;
			}
		}
		const struct pm_alloc *a = &s.heap->allocs[g->node_alloc[node]];
		enum obj_kind k = a->category < s.heap->ncategories ?
				  (enum obj_kind)s.cat_kind[a->category] : OK_NONE;
		if (k == OK_NONE || (pass == 1) != (k == OK_TUPLE || k == OK_FROZENSET))
			continue;
		uint64_t obj = a->addr + a->object_offset;
		uint64_t end = pm_alloc_data_end(a);
		if (end < obj + 24)     /* a float is 24 bytes: each reader checks more */
			continue;
		uint64_t avail = end - obj;
		if (avail > OBJECT_VIEW_MAX)
			avail = OBJECT_VIEW_MAX;
		const void *view;
		struct pm_error *rerr = pm_target_view(t, obj, (size_t)avail, &view);
		if (rerr) {
			pm_error_destroy(rerr);
			continue;
		}
		const uint8_t *p = view;
		if (!exact_type(&s, k, pm_load_u64(p + 8)))
			continue;
		switch (k) {
		case OK_STR: read_str(&s, node, a, p, avail); break;
		case OK_BYTES: read_bytes(&s, node, a, p, avail); break;
		case OK_INT: read_int(&s, node, a, p, avail); break;
		case OK_FLOAT: read_float(&s, node, a, p, avail); break;
		case OK_LIST: read_list(&s, node, a, p, avail); break;
		case OK_DICT: read_dict(&s, node, a, p, avail); break;
		case OK_SET: read_set(&s, node, a, p, avail); break;
		case OK_BYTEARRAY: read_bytearray(&s, node, a, p, avail); break;
		case OK_TUPLE: read_tuple(&s, node, a, p, avail); break;
		case OK_FROZENSET: read_frozenset(&s, node, a, p, avail); break;
		default: break;
		}
	}
	/* The interpreter's free lists, by type. */
	for (size_t i = 0; i < s.heap->nallocs; i++) {
		const struct pm_alloc *a = &s.heap->allocs[i];
		if (a->category >= s.heap->ncategories)
			continue;
		const struct pm_category *cat = &s.heap->categories[a->category];
		if (!cat->detail || strcmp(cat->detail, "free list") || !cat->domain ||
		    strcmp(cat->domain, "python"))
			continue;
		w->free_list_count++;
		w->free_list_bytes += a->size;
		uint32_t r = 0;
		while (r < w->nfree_lists && strcmp(w->free_lists[r].type, cat->kind))
			r++;
		if (r == w->nfree_lists) {
			if (r == PM_FREE_LIST_TYPES)
				continue;
			w->free_lists[w->nfree_lists++].type = cat->kind;
		}
		w->free_lists[r].count++;
		w->free_lists[r].bytes += a->size;
	}
	err = collect_values(&s);
	if (!err)
		err = pm_waste_slots(t, g, w);
out:
	for (int k = 0; k < PM_CONT_KINDS; k++)
		owners_finish(&s.owners[k], &w->over[k].owners);
	owners_finish(&s.empty_owners, &w->empty_owners);
	value_map_deinit(&s.values);
	free(s.cat_kind);
	free(s.key_buf);
	free(s.node_value);
	free(s.items);
	free(s.table);
	if (err)
		pm_waste_deinit(w);
	return err;
}

void pm_waste_deinit(struct pm_waste *w)
{
	for (size_t i = 0; i < w->nchunks; i++)
		free(w->chunks[i]);
	free(w->chunks);
	free(w->values);
	free(w->by_id);
	for (int k = 0; k < PM_CONT_KINDS; k++)
		owners_free(&w->over[k].owners);
	owners_free(&w->empty_owners);
	for (size_t i = 0; i < w->nclasses; i++)
		free(w->classes[i].name_list);
	free(w->classes);
	memset(w, 0, sizeof(*w));
}

/* An int's decimal digits from its 30-bit digits (at most 64 of them). */
static void int_decimal(const uint8_t *b, uint32_t len, struct pm_strbuf *out)
{
	uint32_t nd = (len - 1) / 4;
	if (b[0] == 1 || nd == 0) {
		pm_strbuf_append(out, "0");
		return;
	}
	if (nd > 64) {
		pm_strbuf_printf(out, "<int of %u digits>", nd);
		return;
	}
	uint32_t d[64];
	for (uint32_t i = 0; i < nd; i++)
		d[i] = pm_load_u32(b + 1 + 4 * i) & 0x3fffffff;
	char dec[64 * 10 + 2];
	size_t pos = sizeof(dec) - 1;
	dec[pos] = 0;
	uint32_t top = nd;
	while (top > 0) {
		uint64_t rem = 0;
		for (uint32_t i = top; i-- > 0;) {
			uint64_t cur = (rem << 30) | d[i];
			d[i] = (uint32_t)(cur / 1000000000);
			rem = cur % 1000000000;
		}
		while (top > 0 && d[top - 1] == 0)
			top--;
		for (int k = 0; k < 9 && pos > 0; k++) {
			dec[--pos] = (char)('0' + rem % 10);
			rem /= 10;
			if (!top && !rem)
				break;
		}
	}
	while (dec[pos] == '0' && dec[pos + 1])
		pos++;
	if (b[0] == 2)
		pm_strbuf_append(out, "-");
	pm_strbuf_append(out, dec + pos);
}

static void float_repr(double v, struct pm_strbuf *out)
{
	char buf[40];
	if (isnan(v)) {
		pm_strbuf_append(out, "nan");
		return;
	}
	if (isinf(v)) {
		pm_strbuf_append(out, v < 0 ? "-inf" : "inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	pm_strbuf_append(out, buf);
	if (!strpbrk(buf, ".e"))
		pm_strbuf_append(out, ".0");
}

static void items_text(const struct pm_waste *w, const struct pm_dup_value *v,
		       size_t max, struct pm_strbuf *out)
{
	size_t n = v->len / 8;
	bool tuple = v->type == PM_DUP_TUPLE;
	if (!tuple && n == 0) {
		pm_strbuf_append(out, "frozenset()");
		return;
	}
	pm_strbuf_append(out, tuple ? "(" : "frozenset({");
	for (size_t i = 0; i < n; i++) {
		if (out->len > max * 4) {
			pm_strbuf_append(out, ", ...");
			break;
		}
		if (i)
			pm_strbuf_append(out, ", ");
		uint64_t item = pm_load_u64(v->bytes + 8 * i);
		if (item & PM_DUP_ITEM_VALUE) {
			uint64_t id = item & ~PM_DUP_ITEM_VALUE;
			if (id < w->nids && w->by_id[id].bytes && w->by_id[id].type < PM_DUP_TUPLE)
				pm_dup_value_text(w, &w->by_id[id], max, out);
			else
				pm_strbuf_append(out, "?");
			continue;
		}
		uint32_t node = pm_graph_node_at(w->g, item);
		if (node != PM_NODE_NONE)
			pm_graph_object_text(w->g, node, out);
		else
			pm_strbuf_printf(out, "<0x%" PRIx64 ">", item);
	}
	pm_strbuf_append(out, tuple ? (n == 1 ? ",)" : ")") : "})");
}

void pm_dup_value_text(const struct pm_waste *w, const struct pm_dup_value *v,
		       size_t max, struct pm_strbuf *out)
{
	const uint8_t *b = v->bytes;
	if (v->type == PM_DUP_TUPLE || v->type == PM_DUP_FROZENSET) {
		items_text(w, v, max, out);
		return;
	}
	if (v->type == PM_DUP_INT) {
		int_decimal(b, v->len, out);
		return;
	}
	if (v->type == PM_DUP_FLOAT) {
		double d;
		memcpy(&d, b, sizeof(d));
		float_repr(d, out);
		return;
	}
	unsigned width = v->type == PM_DUP_STR ? b[0] : 1;
	const uint8_t *p = v->type == PM_DUP_STR ? b + 1 : b;
	size_t n = (v->type == PM_DUP_STR ? v->len - 1 : v->len) / (width ? width : 1);
	size_t shown = n < max ? n : max;
	pm_strbuf_append(out, v->type == PM_DUP_BYTES ? "b'" : "'");
	pm_strbuf_python_chars(out, p, shown, width ? width : 1);
	pm_strbuf_append(out, n > shown ? "'..." : "'");
}
