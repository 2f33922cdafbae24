/* The CPython heap analysis: list every in-use allocation (pymalloc used
 * blocks, glibc chunks), recognise the object at the start of each one with
 * the validation rules of shared/reference/cpython-memory.md, attribute the
 * buffers that recognised objects point at (dict keys, list items, ...), and
 * put each allocation into exactly one category. */
#include "bytes.h"
#include "cpython.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc.h"
#include "pymalloc.h"

enum {
	TPFLAG_HEAPTYPE = 1 << 9,
	TPFLAG_READY = 1 << 12,
	TPFLAG_HAVE_GC = 1 << 14,
	TPFLAG_MANAGED_DICT = 1 << 4,
	STR_STATE = 32,             /* PyASCIIObject.state */
	TYPE_NAME_MAX = 128,
	TYPE_CHAIN_MAX = 3,         /* ob_type hops from a type to PyType_Type */
	BASE_CHAIN_MAX = 64,        /* tp_base hops */
	BASICSIZE_MAX = 1 << 20,
	WINDOW = 224,               /* bytes of a glibc chunk read for recognition */
	DEBUG_HOOK_HEADER = 16, DEBUG_HOOK_TRAILER = 8,
	ALLOC_SLACK = 64,           /* allocator rounding of a sized buffer */
	MMAP_SLACK = 4096 + 64,     /* ... mmapped: rounded to a page */
	BUFFERED_SIZE_MAX = 1 << 30, /* an _io buffer_size taken as plausible */
	CONTAINER_ITEMS_MAX = 1 << 30, /* array/StringIO/odict sizes taken */
	TYPE_DOC_MAX = 1 << 20,     /* a docstring's allocation, at most */
	MODULE_STATE_MAX = 1 << 30, /* a PyModuleDef.m_size taken */
};
#define REFCNT_MAX (UINT64_C(1) << 40)

/* What a type is, for attribution of the buffers its instances own. */
enum type_kind { TK_OTHER = 0, TK_LIST, TK_DICT, TK_SET, TK_STR, TK_STR_SUB,
		 TK_BYTEARRAY, TK_TYPE, TK_BUFFERED, TK_DEQUE, TK_ARRAY,
		 TK_STRINGIO, TK_ODICT, TK_MODULE, TK_ELEMENT,
		 TK_KINDS };

/* The static types the recogniser needs to know by address (exported). */
static const char *const kind_symbols[TK_KINDS] = {
	[TK_LIST] = "PyList_Type", [TK_DICT] = "PyDict_Type",
	[TK_SET] = "PySet_Type", [TK_STR] = "PyUnicode_Type",
	[TK_BYTEARRAY] = "PyByteArray_Type", [TK_TYPE] = "PyType_Type",
};
/* ... and those whose absence only costs the attribution they give. */
static const char *const optional_kind_symbols[TK_KINDS] = {
	[TK_MODULE] = "PyModule_Type",
};

struct type_info {
	uint64_t addr;              /* 0 = empty slot */
	bool valid;
	uint8_t kind;               /* enum type_kind */
	uint64_t flags, basicsize;
	uint32_t cat_live, cat_free;
	char *name;
};

struct type_map {
	size_t cap, n;              /* cap is a power of two */
	struct type_info *slots;
};

struct pending {
	uint64_t ptr;
	/* 0: any allocation containing ptr; else the allocation's data must
	 * start at ptr and hold at least size bytes, not much more. */
	uint64_t size;
	uint32_t category;          /* PM_CATEGORY_NONE: owner was rejected */
	/* Not 0: ptr is an object (this enum type_kind) that owns a chain
	 * of allocations, walked after recognition (chains_attribute). */
	uint8_t chain;
	uint64_t owner;             /* the object whose field points at ptr */
};

/* A GC head of an accepted object: its list links. Pushed in address order,
 * so the array is sorted and neighbours are found by binary search. */
struct gc_link {
	uint64_t gc, next, prev;
};

/* A GC object accepted before its list neighbours could be checked (they
 * were not in memory at hand); checked after the pass, undone if wrong. */
struct gc_deferred {
	size_t alloc;               /* index in heap->allocs */
	uint64_t gc, next, prev;
	size_t pending_start, pending_end;
	uint8_t offset_index;       /* which of the offsets was accepted */
	bool free_list;
};

/* Buffers and structures attributed to an owner, each a category. */
enum owned { OWN_DICT_KEYS, OWN_DICT_VALUES, OWN_LIST_ITEMS, OWN_SET_TABLE,
	     OWN_STR_UTF8, OWN_STR_WSTR, OWN_BYTEARRAY, OWN_STR_TABLE_ENTRY,
	     OWN_RADIX_NODE, OWN_AST_ARENA, OWN_AST_ARENA_BLOCK, OWN_HASHTABLE,
	     OWN_HASHTABLE_BUCKETS, OWN_HASHTABLE_ENTRY, OWN_IO_BUFFER,
	     OWN_INTERP_STATE, OWN_THREAD_STATE, OWN_DEQUE_BLOCK,
	     OWN_ARRAY_BUFFER, OWN_STRINGIO_BUFFER, OWN_ODICT_NODE,
	     OWN_ODICT_FAST_NODES, OWN_TYPE_DOC, OWN_MODULE_STATE,
	     OWN_ELEMENT_EXTRA, OWN_ELEMENT_CHILDREN,
	     /* Not CPython's: the dynamic loader's (domain "ld.so"). */
	     OWN_LINK_MAP, OWN_LINK_MAP_NAME, OWN_KINDS };
static const char *const owned_names[OWN_KINDS] = {
	"dict keys", "dict values", "list items", "set table", "str utf8",
	"str wstr", "bytearray buffer", "str hashtable entry",
	"pymalloc radix tree node", "AST arena", "AST arena block",
	"hashtable", "hashtable buckets", "hashtable entry", "io buffer",
	"interpreter state", "thread state", "deque block", "array buffer",
	"stringio buffer", "odict node", "odict fast nodes", "type doc",
	"module state", "element extra", "element children",
	"link_map", "link_map name",
};

/* A chain of allocations being walked: each claimed (given its category)
 * as it is reached, so a cycle finds its own start taken; all released
 * if the chain turns out wrong. */
struct chain_link {
	struct pm_alloc *alloc;
	uint64_t start;
};

/* The analysis in progress. */
struct analysis {
	struct pm_target *t;
	struct pm_cpython_heap *heap;
	const struct pm_cpython_layout *l;
	const struct pm_python_info *py;
	const struct pm_pymalloc *pm;
	uint64_t kind_types[TK_KINDS];
	uint64_t frozenset_type;
	uint64_t object_type;       /* PyBaseObject_Type: ends a tp_base walk */
	struct chain_link *chain;
	size_t nchain, chain_cap;
	uint64_t chain_owner;       /* the deque or OrderedDict being walked */
	uint64_t owner_now;         /* the object whose buffers are pended */
	struct type_map types;
	uint32_t *cat_index;        /* open addressing over heap->categories */
	size_t cat_index_cap, categories_cap, allocs_cap;
	struct pending *pending;
	size_t npending, pending_cap;
	struct gc_link *links;
	size_t nlinks, links_cap;
	struct gc_deferred *deferred;
	size_t ndeferred, deferred_cap;
	struct pending *str_entries;    /* ptr = the chunk, category unused */
	uint64_t *str_entry_keys;
	size_t nstr_entries, str_entries_cap;
	bool no_defer;              /* check GC neighbours at once */
	bool no_defer_pass;         /* re-recognising after a failed check */
	uint32_t cat_owned[OWN_KINDS]; /* "dict keys", ... (enum owned) */
	/* The pymalloc pool currently in buf. */
	const struct pm_pymalloc_pool *pool;
	uint8_t *pool_buf;
	uint8_t window[WINDOW];
};

static const char *const alloc_kind_names[PM_ALLOC_KINDS] = {
	"pymalloc", "glibc", "glibc mmap", "glibc tcache", "glibc",
};

const char *pm_alloc_kind_name(enum pm_alloc_kind kind)
{
	return kind < PM_ALLOC_KINDS ? alloc_kind_names[kind] : "?";
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	return x;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
	return h * UINT64_C(0x100000001b3);
}

/* ---- categories ---------------------------------------------------- */

static uint64_t category_hash(const char *domain, const char *kind,
			      const char *detail)
{
	return hash_str(hash_str(hash_str(UINT64_C(0xcbf29ce484222325), domain),
				 kind), detail);
}

static struct pm_error *category_index_grow(struct analysis *a)
{
	size_t cap = a->cat_index_cap ? 2 * a->cat_index_cap : 256;
	uint32_t *index = malloc(cap * sizeof(*index));
	if (!index)
		return &pm_error_no_memory;
	memset(index, 0xff, cap * sizeof(*index));
	for (size_t i = 0; i < a->heap->ncategories; i++) {
		const struct pm_category *c = &a->heap->categories[i];
		size_t h = category_hash(c->domain, c->kind, c->detail) & (cap - 1);
		while (index[h] != PM_CATEGORY_NONE)
			h = (h + 1) & (cap - 1);
		index[h] = (uint32_t)i;
	}
	free(a->cat_index);
	a->cat_index = index;
	a->cat_index_cap = cap;
	return NULL;
}

static struct pm_error *category_add(struct analysis *a, const char *domain,
				     const char *kind, const char *detail,
				     uint32_t *ret)
{
	struct pm_cpython_heap *heap = a->heap;
	if (heap->ncategories == a->categories_cap) {
		size_t cap = a->categories_cap ? 2 * a->categories_cap : 64;
		void *p = realloc(heap->categories, cap * sizeof(*heap->categories));
		if (!p)
			return &pm_error_no_memory;
		heap->categories = p;
		a->categories_cap = cap;
	}
	struct pm_category *c = &heap->categories[heap->ncategories];
	memset(c, 0, sizeof(*c));
	c->domain = strdup(domain);
	c->kind = strdup(kind);
	c->detail = strdup(detail);
	if (!c->domain || !c->kind || !c->detail) {
		free(c->domain);
		free(c->kind);
		free(c->detail);
		return &pm_error_no_memory;
	}
	*ret = (uint32_t)heap->ncategories++;
	return NULL;
}

/* The id of category (domain, kind, detail), created on first use. */
static struct pm_error *category_get(struct analysis *a, const char *domain,
				     const char *kind, const char *detail,
				     uint32_t *ret)
{
	struct pm_error *err;
	if (2 * (a->heap->ncategories + 1) > a->cat_index_cap &&
	    (err = category_index_grow(a)))
		return err;
	size_t mask = a->cat_index_cap - 1;
	size_t h = category_hash(domain, kind, detail) & mask;
	for (; a->cat_index[h] != PM_CATEGORY_NONE; h = (h + 1) & mask) {
		const struct pm_category *c = &a->heap->categories[a->cat_index[h]];
		if (!strcmp(c->domain, domain) && !strcmp(c->kind, kind) &&
		    !strcmp(c->detail, detail)) {
			*ret = a->cat_index[h];
			return NULL;
		}
	}
	err = category_add(a, domain, kind, detail, ret);
	if (!err)
		a->cat_index[h] = *ret;
	return err;
}

/* ---- types --------------------------------------------------------- */

static struct pm_error *type_map_grow(struct type_map *m)
{
	size_t cap = m->cap ? 2 * m->cap : 1024;
	struct type_info *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return &pm_error_no_memory;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].addr)
			continue;
		size_t h = hash_u64(m->slots[i].addr) & (cap - 1);
		while (slots[h].addr)
			h = (h + 1) & (cap - 1);
		slots[h] = m->slots[i];
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return NULL;
}

static bool name_printable(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

/* Follows ob_type from a candidate type: PyType_Type within a few hops
 * (type -> metaclass -> type). */
static bool type_chain_ok(struct analysis *a, uint64_t tp)
{
	uint64_t cur = tp;
	for (int hop = 0; hop <= TYPE_CHAIN_MAX; hop++) {
		uint64_t meta;
		if (cur & 7 || !pm_target_is_mapped(a->t, cur + 8, 8))
			return false;
		struct pm_error *err = pm_target_read_u64(a->t, cur + 8, &meta);
		if (err) {
			pm_error_destroy(err);
			return false;
		}
		if (meta == a->kind_types[TK_TYPE])
			return true;
		cur = meta;
	}
	return false;
}

static bool read_word(struct analysis *a, uint64_t addr, uint64_t *ret);

/* Container types of the standard library that are not exported (static
 * in an extension module, or heap types since 3.12): known by tp_name and
 * by the basicsize of the struct whose fields we read. */
static uint8_t named_kind(const struct analysis *a, const char *name,
			  uint64_t basicsize)
{
	const struct pm_cpython_layout *l = a->l;
	const struct { const char *name; uint8_t kind; uint32_t size; } named[] = {
		{ "collections.deque", TK_DEQUE, l->deque_size },
		{ "array.array", TK_ARRAY, l->array_size },
		{ "_io.StringIO", TK_STRINGIO, l->stringio_size },
		{ "collections.OrderedDict", TK_ODICT, l->odict_size },
		{ "xml.etree.ElementTree.Element", TK_ELEMENT, l->element_size },
	};
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (basicsize == named[i].size && !strcmp(name, named[i].name))
			return named[i].kind;
	return TK_OTHER;
}

/* named_kind of a base type (not validated itself: read as untrusted,
 * its name only when its size is one of the named ones). */
static uint8_t base_named_kind(struct analysis *a, uint64_t tp)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t size, name_ptr;
	if (!read_word(a, tp + l->tp_basicsize, &size) ||
	    (size != l->deque_size && size != l->array_size &&
	     size != l->stringio_size && size != l->odict_size) ||
	    !read_word(a, tp + l->tp_name, &name_ptr))
		return TK_OTHER;
	char name[TYPE_NAME_MAX];
	struct pm_error *err = pm_target_read_cstr(a->t, name_ptr, name, sizeof(name));
	if (err) {
		pm_error_destroy(err);
		return TK_OTHER;
	}
	return named_kind(a, name, size);
}

static uint8_t type_kind_of(struct analysis *a, const struct type_info *ti)
{
	uint64_t cur = ti->addr;
	for (int hop = 0; cur && hop < BASE_CHAIN_MAX; hop++) {
		for (int k = 1; k < TK_KINDS; k++) {
			if (!a->kind_types[k] || cur != a->kind_types[k])
				continue;
			if (k == TK_STR && hop)
				return TK_STR_SUB;
			return (uint8_t)k;
		}
		if (cur == a->frozenset_type)
			return TK_SET;
		if (cur == a->object_type)
			return TK_OTHER;
		uint8_t named = hop ? base_named_kind(a, cur) :
			named_kind(a, ti->name, ti->basicsize);
		if (named != TK_OTHER)
			return named;
		struct pm_error *err = pm_target_read_u64(a->t, cur + a->l->tp_base, &cur);
		if (err) {
			pm_error_destroy(err);
			return TK_OTHER;
		}
	}
	return TK_OTHER;
}

static struct pm_error *type_categories(struct analysis *a, struct type_info *ti)
{
	struct pm_error *err = category_get(a, "python", ti->name, "-", &ti->cat_live);
	if (!err)
		err = category_get(a, "python", ti->name, "free list", &ti->cat_free);
	return err;
}

/* _io's buffered classes themselves (not subclasses, whose layout may
 * differ): the name and the struct size both match. */
static bool buffered_type(const struct analysis *a, const struct type_info *ti)
{
	static const char *const names[] = {
		"_io.BufferedReader", "_io.BufferedWriter", "_io.BufferedRandom",
	};
	if (ti->basicsize != a->l->buffered_size)
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(ti->name, names[i]))
			return true;
	return false;
}

/* Validates a candidate type object (rules 1-4 of the reference). */
static struct pm_error *type_inspect(struct analysis *a, struct type_info *ti)
{
	uint8_t head[264];
	const struct pm_cpython_layout *l = a->l;
	if (ti->addr & 7 || !pm_target_is_mapped(a->t, ti->addr, sizeof(head)))
		return NULL;
	struct pm_error *err = pm_target_read(a->t, ti->addr, head, sizeof(head));
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	ti->flags = pm_load_u64(head + l->tp_flags);
	ti->basicsize = pm_load_u64(head + l->tp_basicsize);
	if (!(ti->flags & TPFLAG_READY) || ti->basicsize < 16 ||
	    ti->basicsize >= BASICSIZE_MAX || !type_chain_ok(a, ti->addr))
		return NULL;
	char name[TYPE_NAME_MAX];
	err = pm_target_read_cstr(a->t, pm_load_u64(head + l->tp_name), name, sizeof(name));
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	if (!name_printable(name))
		return NULL;
	ti->name = strdup(name);
	if (!ti->name)
		return &pm_error_no_memory;
	ti->kind = type_kind_of(a, ti);
	if (ti->kind == TK_OTHER && buffered_type(a, ti))
		ti->kind = TK_BUFFERED;
	ti->valid = true;
	a->heap->types++;
	return type_categories(a, ti);
}

/* Cheap rule before any read or cache entry (most candidate words are GC
 * links and data, not types): a type object is static (module data) or a
 * heap type (> 512 bytes, so a glibc chunk, at the chunk's user start plus
 * its GC head and up to two debug-hook headers); never in a pymalloc pool. */
static bool type_address_possible(const struct analysis *a, uint64_t tp)
{
	if (a->pm && a->pm->found && pm_pymalloc_find_pool(a->pm, tp))
		return false;
	const struct pm_alloc *alloc = pm_cpython_find_alloc(a->heap, tp);
	if (!alloc)
		return true;
	uint64_t off = tp - alloc->addr;
	return alloc->kind != PM_ALLOC_PYMALLOC &&
	       (off == 16 || off == 32 || off == 48);
}

/* The cached verdict on a type pointer; *ret NULL when it is not a type. */
static struct pm_error *type_get(struct analysis *a, uint64_t tp,
				 const struct type_info **ret)
{
	*ret = NULL;
	if (!tp || tp & 7)
		return NULL;
	struct type_map *m = &a->types;
	struct pm_error *err;
	if (2 * (m->n + 1) > m->cap && (err = type_map_grow(m)))
		return err;
	size_t h = hash_u64(tp) & (m->cap - 1);
	while (m->slots[h].addr && m->slots[h].addr != tp)
		h = (h + 1) & (m->cap - 1);
	struct type_info *ti = &m->slots[h];
	if (!ti->addr) {
		if (!type_address_possible(a, tp))
			return NULL;
		ti->addr = tp;
		m->n++;
		if ((err = type_inspect(a, ti)))
			return err;
	}
	if (ti->valid)
		*ret = ti;
	return NULL;
}

/* ---- recognition --------------------------------------------------- */

/* A word of target memory, from the current pool buffer when it is there. */
static bool read_word(struct analysis *a, uint64_t addr, uint64_t *ret)
{
	if (a->pool && addr >= a->pool->address &&
	    addr - a->pool->address <= a->pm->pool_size - 8) {
		*ret = pm_load_u64(a->pool_buf + (addr - a->pool->address));
		return true;
	}
	struct pm_error *err = pm_target_read_u64(a->t, addr, ret);
	pm_error_destroy(err);
	return !err;
}

/* A word of current memory at hand (the pool buffer), without a read. */
static bool local_word(const struct analysis *a, uint64_t addr, uint64_t *ret)
{
	if (a->pool && addr >= a->pool->address &&
	    addr - a->pool->address <= a->pm->pool_size - 8) {
		*ret = pm_load_u64(a->pool_buf + (addr - a->pool->address));
		return true;
	}
	return false;
}

enum gc_verdict { GC_BAD, GC_OK, GC_UNKNOWN };

/* Rule 8 with what is at hand: an untracked GC head, or one whose list
 * neighbours point back. GC_UNKNOWN when a neighbour is elsewhere (then
 * the check is deferred, see gc_verify_deferred: reading it now would cost a
 * system call per object on a live process). */
static enum gc_verdict gc_head_check(struct analysis *a, uint64_t gc,
				     uint64_t next, uint64_t prev)
{
	if (next == 0)
		return (prev & ~UINT64_C(3)) == 0 ? GC_OK : GC_BAD;
	uint64_t p = prev & ~UINT64_C(3), n = next & ~UINT64_C(3), v;
	enum gc_verdict verdict = GC_OK;
	if (local_word(a, p, &v)) {
		if ((v & ~UINT64_C(1)) != gc)
			return GC_BAD;
	} else {
		verdict = GC_UNKNOWN;
	}
	if (local_word(a, n + 8, &v)) {
		if ((v & ~UINT64_C(3)) != gc)
			return GC_BAD;
	} else {
		verdict = GC_UNKNOWN;
	}
	if (verdict == GC_UNKNOWN && a->no_defer)
		return read_word(a, p, &v) && (v & ~UINT64_C(1)) == gc &&
		       read_word(a, n + 8, &v) && (v & ~UINT64_C(3)) == gc ?
			GC_OK : GC_BAD;
	return verdict;
}

static struct pm_error *gc_link_push(struct analysis *a, uint64_t gc,
				     uint64_t next, uint64_t prev)
{
	if (a->no_defer)
		return NULL;    /* out of address order; neighbours are checked */
	if (a->nlinks == a->links_cap) {
		size_t cap = a->links_cap ? 2 * a->links_cap : 65536;
		void *p = realloc(a->links, cap * sizeof(*a->links));
		if (!p)
			return &pm_error_no_memory;
		a->links = p;
		a->links_cap = cap;
	}
	a->links[a->nlinks++] = (struct gc_link){ gc, next, prev };
	return NULL;
}

static struct pm_error *gc_defer(struct analysis *a, const struct gc_deferred *d)
{
	if (a->ndeferred == a->deferred_cap) {
		size_t cap = a->deferred_cap ? 2 * a->deferred_cap : 4096;
		void *p = realloc(a->deferred, cap * sizeof(*a->deferred));
		if (!p)
			return &pm_error_no_memory;
		a->deferred = p;
		a->deferred_cap = cap;
	}
	a->deferred[a->ndeferred++] = *d;
	return NULL;
}

static const struct gc_link *gc_link_find(const struct analysis *a, uint64_t gc)
{
	size_t lo = 0, hi = a->nlinks;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->links[mid].gc == gc)
			return &a->links[mid];
		if (a->links[mid].gc < gc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The _gc_next (word 0) or _gc_prev (word 1) of the GC head at addr: from
 * the accepted objects, else (list heads in the interpreter state, static
 * objects) read from the target. */
static bool gc_neighbour_word(struct analysis *a, uint64_t addr, int word,
			      uint64_t *ret)
{
	const struct gc_link *l = gc_link_find(a, addr);
	if (l) {
		*ret = word ? l->prev : l->next;
		return true;
	}
	return read_word(a, addr + 8 * (uint64_t)word, ret);
}

/* Records that the allocation at ptr (exactly, holding size bytes, when
 * size is not 0) belongs to an object just recognised (undone with it). */
static struct pm_error *pend_sized(struct analysis *a, uint64_t ptr,
				   uint64_t size, enum owned what)
{
	if (!ptr)
		return NULL;
	if (a->npending == a->pending_cap) {
		size_t cap = a->pending_cap ? 2 * a->pending_cap : 4096;
		void *p = realloc(a->pending, cap * sizeof(*a->pending));
		if (!p)
			return &pm_error_no_memory;
		a->pending = p;
		a->pending_cap = cap;
	}
	a->pending[a->npending++] = (struct pending){
		.ptr = ptr, .size = size, .category = a->cat_owned[what],
		.owner = a->owner_now };
	return NULL;
}

static struct pm_error *pend(struct analysis *a, uint64_t ptr, enum owned what)
{
	return pend_sized(a, ptr, 0, what);
}

/* The pointer field at off of an object whose avail bytes are in b (0 when
 * the field is not inside them). */
static uint64_t field(const uint8_t *b, size_t avail, uint32_t off)
{
	return off + 8 <= avail ? pm_load_u64(b + off) : 0;
}

/* Records that the object at obj (a deque, an OrderedDict) owns a chain
 * of allocations of category `what`, walked once all objects are known. */
static struct pm_error *pend_chain(struct analysis *a, uint64_t obj,
				   enum type_kind kind, enum owned what)
{
	struct pm_error *err = pend_sized(a, obj, 0, what);
	if (!err)
		a->pending[a->npending - 1].chain = (uint8_t)kind;
	return err;
}

/* An array's items: `allocated` items of its descriptor's itemsize (the
 * descriptor is a static table in the array module: typecode, itemsize). */
static struct pm_error *array_owned(struct analysis *a, const uint8_t *b,
				    size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t items = field(b, avail, l->array_items);
	uint64_t allocated = field(b, avail, l->array_allocated), descr;
	if (!items || !allocated || allocated > CONTAINER_ITEMS_MAX ||
	    !read_word(a, field(b, avail, l->array_descr), &descr))
		return NULL;
	char typecode = (char)(descr & 0xff);
	uint64_t itemsize = (uint32_t)(descr >> (8 * l->array_descr_itemsize));
	if (!typecode || !strchr("bBuwhHiIlLqQfd", typecode) ||
	    (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8))
		return NULL;
	return pend_sized(a, items, allocated * itemsize, OWN_ARRAY_BUFFER);
}

/* An OrderedDict: its dict's buffers, the fast-nodes index (one node
 * pointer per slot of the dict's keys) and the chain of nodes. */
static struct pm_error *odict_owned(struct analysis *a, uint64_t obj,
				    const uint8_t *b, size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	struct pm_error *err = pend(a, field(b, avail, l->dict_keys), OWN_DICT_KEYS);
	if (!err)
		err = pend(a, field(b, avail, l->dict_values), OWN_DICT_VALUES);
	uint64_t nodes = field(b, avail, l->odict_fast_nodes_size);
	if (!err && nodes && nodes <= CONTAINER_ITEMS_MAX)
		err = pend_sized(a, field(b, avail, l->odict_fast_nodes), nodes * 8,
				 OWN_ODICT_FAST_NODES);
	return err ? err : pend_chain(a, obj, TK_ODICT, OWN_ODICT_NODE);
}

struct alloc_data {
	uint64_t start, usable;
};
static struct alloc_data alloc_data_of(const struct analysis *a,
				       const struct pm_alloc *alloc);

/* A heap type's tp_doc: type_new and PyType_FromSpec copy the docstring
 * into an allocation of strlen + 1 bytes. The string is measured within
 * the allocation whose data starts at doc (none: not pended); pend_sized
 * then checks that its size is what was asked for. */
static struct pm_error *type_doc_owned(struct analysis *a, uint64_t doc)
{
	const struct pm_alloc *alloc = pm_cpython_find_alloc(a->heap, doc);
	if (!alloc || (alloc->kind != PM_ALLOC_PYMALLOC &&
		       alloc->kind != PM_ALLOC_GLIBC &&
		       alloc->kind != PM_ALLOC_MMAPPED))
		return NULL;
	struct alloc_data d = alloc_data_of(a, alloc);
	if (d.start != doc || d.usable > TYPE_DOC_MAX)
		return NULL;
	uint8_t buf[512];
	for (uint64_t off = 0; off < d.usable; off += sizeof(buf)) {
		size_t n = d.usable - off < sizeof(buf) ? (size_t)(d.usable - off) :
			sizeof(buf);
		struct pm_error *err = pm_target_read(a->t, doc + off, buf, n);
		if (err) {
			pm_error_destroy(err);
			return NULL;
		}
		const uint8_t *nul = memchr(buf, 0, n);
		if (nul)
			return pend_sized(a, doc, off + (uint64_t)(nul - buf) + 1,
					  OWN_TYPE_DOC);
	}
	return NULL;
}

/* A class: its shared-keys table (instances' split dicts) and its doc. */
static struct pm_error *type_owned(struct analysis *a, uint64_t obj)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t flags, keys, doc;
	if (!read_word(a, obj + l->tp_flags, &flags) ||
	    !(flags & TPFLAG_HEAPTYPE))
		return NULL;
	struct pm_error *err = NULL;
	if (read_word(a, obj + l->ht_cached_keys, &keys))
		err = pend(a, keys, OWN_DICT_KEYS);
	if (!err && read_word(a, obj + l->tp_doc, &doc) && doc)
		err = type_doc_owned(a, doc);
	return err;
}

/* A module's state: md_def->m_size bytes from PyMem_Malloc (m_size is
 * read from the definition, static data of the module's library). */
static struct pm_error *module_owned(struct analysis *a, const uint8_t *b,
				     size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t def = field(b, avail, l->module_def), size;
	uint64_t state = field(b, avail, l->module_state);
	if (!state || !def || def & 7 ||
	    !read_word(a, def + l->moduledef_size, &size) ||
	    !size || size > MODULE_STATE_MAX)
		return NULL;
	return pend_sized(a, state, size, OWN_MODULE_STATE);
}

/* An ElementTree element's extra (attributes and children; NULL while it
 * has neither): PyObject_Malloc'd, and so is its children array once it
 * outgrows the inline one. Both only when the extra is consistent. */
static struct pm_error *element_owned(struct analysis *a, const uint8_t *b,
				      size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t extra = field(b, avail, l->element_extra);
	uint64_t length, allocated, children;
	if (!extra || extra & 7 ||
	    !read_word(a, extra + l->element_extra_length, &length) ||
	    !read_word(a, extra + l->element_extra_allocated, &allocated) ||
	    !read_word(a, extra + l->element_extra_children, &children) ||
	    length > allocated || allocated > CONTAINER_ITEMS_MAX)
		return NULL;
	bool inline_children = children == extra + l->element_extra_inline;
	if (inline_children != (allocated <= l->element_static_children))
		return NULL;
	struct pm_error *err = pend_sized(a, extra, l->element_extra_size,
					  OWN_ELEMENT_EXTRA);
	if (!err && !inline_children)
		err = pend_sized(a, children, allocated * 8, OWN_ELEMENT_CHILDREN);
	return err;
}

static struct pm_error *str_owned(struct analysis *a, const uint8_t *b,
				  size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	if (STR_STATE + 4 > avail)
		return NULL;
	uint32_t state = pm_load_u32(b + STR_STATE);
	bool compact = state & (1u << 5), ascii = state & (1u << 6);
	struct pm_error *err = NULL;
	if (compact && !ascii)
		err = pend(a, field(b, avail, l->str_utf8), OWN_STR_UTF8);
	if (!err && l->str_wstr >= 0)
		err = pend(a, field(b, avail, (uint32_t)l->str_wstr), OWN_STR_WSTR);
	return err;
}

/* 3.11/3.12 instances with a managed dict keep their values array apart,
 * pointed at from the pre-header (pre bytes before the object). */
static struct pm_error *managed_values_owned(struct analysis *a,
					     const struct type_info *ti,
					     const uint8_t *b, size_t pre)
{
	const struct pm_cpython_layout *l = a->l;
	if (!l->managed_values || !(ti->flags & TPFLAG_MANAGED_DICT) ||
	    pre < (size_t)-l->managed_values)
		return NULL;
	uint64_t v = pm_load_u64(b + l->managed_values);
	if (!l->managed_values_tagged)
		return pend(a, v, OWN_DICT_VALUES);
	return v & 1 ? pend(a, v + 1, OWN_DICT_VALUES) : NULL;
}

/* Buffers owned by a recognised object: obj is its address, b its bytes
 * (avail of them), pre the bytes before it in the same allocation. */
static struct pm_error *object_owned(struct analysis *a,
				     const struct type_info *ti, uint64_t obj,
				     const uint8_t *b, size_t avail, size_t pre)
{
	const struct pm_cpython_layout *l = a->l;
	a->owner_now = obj;
	struct pm_error *err = managed_values_owned(a, ti, b, pre);
	if (err)
		return err;
	switch (ti->kind) {
	case TK_LIST:
		return pend(a, field(b, avail, l->list_items), OWN_LIST_ITEMS);
	case TK_DICT:
		err = pend(a, field(b, avail, l->dict_keys), OWN_DICT_KEYS);
		return err ? err : pend(a, field(b, avail, l->dict_values),
					OWN_DICT_VALUES);
	case TK_SET: {
		uint64_t table = field(b, avail, l->set_table);
		return table == obj + l->set_smalltable ? NULL :
			pend(a, table, OWN_SET_TABLE);
	}
	case TK_STR:
		return str_owned(a, b, avail);
	case TK_BYTEARRAY:
		return pend(a, field(b, avail, l->bytearray_bytes), OWN_BYTEARRAY);
	case TK_TYPE:
		return type_owned(a, obj);
	case TK_MODULE:
		return module_owned(a, b, avail);
	case TK_ELEMENT:
		return element_owned(a, b, avail);
	case TK_DEQUE:
		return pend_chain(a, obj, TK_DEQUE, OWN_DEQUE_BLOCK);
	case TK_ARRAY:
		return array_owned(a, b, avail);
	case TK_STRINGIO: {
		/* Py_UCS4 buf[buf_size]: PyMem_Realloc'd, never NULL while
		 * open (PyMem_Malloc(0) at first). */
		uint64_t chars = field(b, avail, l->stringio_buf_size);
		if (chars > CONTAINER_ITEMS_MAX)
			return NULL;
		return pend_sized(a, field(b, avail, l->stringio_buf),
				  chars ? chars * 4 : 1, OWN_STRINGIO_BUFFER);
	}
	case TK_ODICT:
		return odict_owned(a, obj, b, avail);
	case TK_BUFFERED: {
		/* Its read/write buffer: PyMem_Malloc(buffer_size), NULL once
		 * closed. */
		uint64_t size = field(b, avail, l->buffered_buffer_size);
		if (!size || size > BUFFERED_SIZE_MAX)
			return NULL;
		return pend_sized(a, field(b, avail, l->buffered_buffer), size,
				  OWN_IO_BUFFER);
	}
	default:
		return NULL;
	}
}

/* 3.12+ (64-bit) only ever change the low 32 bits of ob_refcnt (Py_INCREF
 * stops at UINT32_MAX, immortal objects have (int32)refcnt < 0): a high
 * half that is not 0 is a pointer, not a reference count. */
static bool refcnt_ok(const struct analysis *a, uint64_t rc)
{
	if (a->l->immortal)
		return rc >> 32 == 0;
	return rc < REFCNT_MAX;
}

/* Recognises the object at the start of an allocation (rules 5-9): bytes
 * holds len bytes from alloc->addr; usable is what the allocation can hold.
 * Offsets before first_offset are not tried (a deferred check failed). */
static struct pm_error *recognise(struct analysis *a, struct pm_alloc *alloc,
				  const uint8_t *bytes, size_t len, size_t usable,
				  size_t first_offset)
{
	static const size_t offsets[] = { 0, 16, 32 };
	/* Debug hooks put {size, api id, 7 x 0xfd} before the data; large
	 * object allocations go obj -> raw, each wrapped: up to two headers. */
	size_t base = 0;
	for (int nested = 0; nested < 2; nested++) {
		const uint8_t *h = bytes + base;
		if (base + 16 > len || usable < DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER ||
		    memcmp(h + 9, "\xfd\xfd\xfd\xfd\xfd\xfd\xfd", 7) != 0)
			break;
		base += DEBUG_HOOK_HEADER;
		usable -= DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER;
		a->heap->debug_hooks = true;
	}
	for (size_t i = first_offset; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		size_t off = offsets[i], at = base + off;
		if (at + 16 > len)
			break;
		const uint8_t *b = bytes + at;
		uint64_t rc = pm_load_u64(b);
		const struct type_info *ti;
		struct pm_error *err = type_get(a, pm_load_u64(b + 8), &ti);
		if (err)
			return err;
		if (!ti)
			continue;
		size_t expect = (ti->flags & TPFLAG_HAVE_GC ? 16 : 0) +
				(ti->flags & a->l->preheader_flags ? 16 : 0);
		uint64_t need = ti->kind == TK_STR ? a->l->str_ascii_size : ti->basicsize;
		if (expect != off || off + need > usable || !refcnt_ok(a, rc))
			continue;
		uint64_t obj = alloc->addr + at;
		struct gc_deferred d = { .alloc = (size_t)(alloc - a->heap->allocs),
					 .gc = obj - 16, .offset_index = (uint8_t)i,
					 .free_list = rc == 0 };
		enum gc_verdict verdict = GC_OK;
		if (ti->flags & TPFLAG_HAVE_GC) {
			d.next = pm_load_u64(b - 16);
			d.prev = pm_load_u64(b - 8);
			verdict = gc_head_check(a, d.gc, d.next, d.prev);
			if (verdict == GC_BAD)
				continue;
			if ((err = gc_link_push(a, d.gc, d.next, d.prev)))
				return err;
		}
		alloc->object_offset = (uint8_t)at;
		if (rc == 0) {
			alloc->category = ti->cat_free;
			a->heap->free_list_objects++;
		} else {
			alloc->category = ti->cat_live;
			a->heap->objects++;
			d.pending_start = a->npending;
			err = object_owned(a, ti, obj, b, len - at, at);
			a->owner_now = 0;
			d.pending_end = a->npending;
		}
		if (!err && verdict == GC_UNKNOWN)
			err = gc_defer(a, &d);
		return err;
	}
	return NULL;
}

/* ---- allocations --------------------------------------------------- */

static struct pm_error *alloc_push(struct analysis *a, uint64_t addr,
				   uint64_t size, enum pm_alloc_kind kind)
{
	struct pm_cpython_heap *heap = a->heap;
	if (heap->nallocs == a->allocs_cap) {
		size_t cap = a->allocs_cap ? 2 * a->allocs_cap : 65536;
		void *p = realloc(heap->allocs, cap * sizeof(*heap->allocs));
		if (!p)
			return &pm_error_no_memory;
		heap->allocs = p;
		a->allocs_cap = cap;
	}
	heap->allocs[heap->nallocs++] = (struct pm_alloc){
		.addr = addr, .size = size, .category = PM_CATEGORY_NONE,
		.kind = (uint8_t)kind };
	return NULL;
}

static struct pm_error *allocs_from_pymalloc(struct analysis *a)
{
	const struct pm_pymalloc *pm = a->pm;
	struct pm_error *err = NULL;
	for (size_t i = 0; i < pm->npools && !err; i++) {
		const struct pm_pymalloc_pool *pool = &pm->pools[i];
		uint32_t size = pm_pymalloc_block_size(pool->szidx);
		for (uint32_t k = 0; k < pool->nblocks && !err; k++)
			if (pm_pymalloc_block_used(pm, pool, k))
				err = alloc_push(a, pool->address + PM_PYMALLOC_POOL_OVERHEAD +
						 (uint64_t)k * size, size, PM_ALLOC_PYMALLOC);
	}
	return err;
}

static struct pm_error *allocs_from_glibc(struct analysis *a,
					  const struct pm_glibc_heap *g)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < g->nchunks && !err; i++) {
		const struct pm_chunk *c = &g->chunks[i];
		enum pm_alloc_kind kind;
		switch (c->state) {
		case PM_CHUNK_USED: kind = PM_ALLOC_GLIBC; break;
		case PM_CHUNK_MMAPPED: kind = PM_ALLOC_MMAPPED; break;
		case PM_CHUNK_FREE_TCACHE: kind = PM_ALLOC_TCACHE; break;
		case PM_CHUNK_TCACHE_STRUCT: kind = PM_ALLOC_GLIBC_META; break;
		default: continue;
		}
		err = alloc_push(a, c->addr + 16, c->size, kind);
	}
	return err;
}

static int alloc_compare(const void *x, const void *y)
{
	const struct pm_alloc *p = x, *q = y;
	return p->addr < q->addr ? -1 : p->addr > q->addr;
}

/* A stretch of allocations already in address order: [start, end). */
struct alloc_run {
	size_t start, end;
};

/* Merges the adjacent sorted runs src[r0.start, r0.end) and src[r1.start,
 * r1.end) (r1.start == r0.end) into dst at the same places. */
static void allocs_merge(const struct pm_alloc *src, struct pm_alloc *dst,
			 struct alloc_run r0, struct alloc_run r1)
{
	size_t i = r0.start, j = r1.start, k = r0.start;
	while (i < r0.end && j < r1.end)
		dst[k++] = src[j].addr < src[i].addr ? src[j++] : src[i++];
	memcpy(dst + k, src + i, (r0.end - i) * sizeof(*dst));
	k += r0.end - i;
	memcpy(dst + k, src + j, (r1.end - j) * sizeof(*dst));
}

/* Puts the allocations in address order. The walkers emit them in order
 * within each source (pymalloc's pools, each glibc heap and the mmapped
 * chunks), so the array is a few sorted runs: merged pairwise, each round
 * linear (a general sort of millions of entries was the analysis's
 * biggest cost). No memory for the merge: a general sort. */
static void allocs_sort(struct analysis *a)
{
	struct pm_cpython_heap *heap = a->heap;
	size_t n = heap->nallocs, nruns = 0, cap = 0;
	struct alloc_run *runs = NULL;
	struct pm_alloc *src = heap->allocs, *dst = NULL;
	bool ok = true;
	for (size_t i = 0; i < n && ok;) {
		size_t j = i + 1;
		while (j < n && src[j - 1].addr <= src[j].addr)
			j++;
		if (nruns == cap) {
			cap = cap ? 2 * cap : 256;
			void *p = realloc(runs, cap * sizeof(*runs));
			ok = p != NULL;
			if (ok)
				runs = p;
		}
		if (ok)
			runs[nruns++] = (struct alloc_run){ i, j };
		i = j;
	}
	if (ok && nruns > 1)
		ok = (dst = malloc(n * sizeof(*dst))) != NULL;
	while (ok && nruns > 1) {
		size_t merged = 0;
		for (size_t k = 0; k < nruns; k += 2) {
			if (k + 1 < nruns) {
				allocs_merge(src, dst, runs[k], runs[k + 1]);
				runs[merged++] = (struct alloc_run){ runs[k].start,
								     runs[k + 1].end };
			} else {
				memcpy(dst + runs[k].start, src + runs[k].start,
				       (runs[k].end - runs[k].start) * sizeof(*dst));
				runs[merged++] = runs[k];
			}
		}
		nruns = merged;
		struct pm_alloc *swap = src;
		src = dst;
		dst = swap;
	}
	if (!ok)
		qsort(heap->allocs, n, sizeof(*heap->allocs), alloc_compare);
	else if (src != heap->allocs) {
		free(heap->allocs);
		heap->allocs = src;
		a->allocs_cap = n;
		dst = NULL;
	}
	if (dst != heap->allocs)
		free(dst);
	free(runs);
}

static void heap_note(struct pm_cpython_heap *heap, const char *fmt, const char *what)
{
	if (heap->nnotes < sizeof(heap->notes) / sizeof(heap->notes[0]))
		snprintf(heap->notes[heap->nnotes++], sizeof(heap->notes[0]), fmt, what);
}

static struct pm_error *collect_allocs(struct analysis *a)
{
	struct pm_cpython_heap *heap = a->heap;
	struct pm_error *err = NULL;
	if (a->py->supported) {
		err = pm_pymalloc_walk(a->t, &a->pm);
		if (err)
			return err;
		if (a->pm->found) {
			heap->pymalloc_walked = true;
			err = allocs_from_pymalloc(a);
		} else {
			heap_note(heap, "pymalloc not walked: %s", a->pm->missing);
		}
	}
	if (err)
		return err;
	const struct pm_glibc_heap *g;
	err = pm_glibc_walk(a->t, &g);
	if (err) {
		heap_note(heap, "glibc heap not walked: %s", err->message);
		pm_error_destroy(err);
	} else if (g->other_allocator) {
		heap_note(heap, "glibc malloc not in use: %s", g->other_allocator);
	} else {
		heap->glibc_walked = true;
		if ((err = allocs_from_glibc(a, g)))
			return err;
	}
	if (heap->nallocs)
		allocs_sort(a);
	return NULL;
}

/* Brings the pool holding addr into pool_buf (one view per pool). */
static bool load_pool(struct analysis *a, uint64_t addr)
{
	if (a->pool && addr >= a->pool->address &&
	    addr < a->pool->address + a->pm->pool_size)
		return true;
	a->pool = pm_pymalloc_find_pool(a->pm, addr);
	if (!a->pool)
		return false;
	struct pm_error *err = pm_target_read(a->t, a->pool->address, a->pool_buf,
					      a->pm->pool_size);
	if (err) {
		pm_target_warn(a->t, true, a->pool->address, "pool unreadable: %s",
			       err->message);
		pm_error_destroy(err);
		a->pool = NULL;
		return false;
	}
	return true;
}

static struct pm_error *str_entry_push(struct analysis *a, size_t alloc,
				       uint64_t key)
{
	if (a->nstr_entries == a->str_entries_cap) {
		size_t cap = a->str_entries_cap ? 2 * a->str_entries_cap : 1024;
		void *p = realloc(a->str_entries, cap * sizeof(*a->str_entries));
		if (!p)
			return &pm_error_no_memory;
		a->str_entries = p;
		p = realloc(a->str_entry_keys, cap * sizeof(*a->str_entry_keys));
		if (!p)
			return &pm_error_no_memory;
		a->str_entry_keys = p;
		a->str_entries_cap = cap;
	}
	a->str_entries[a->nstr_entries] = (struct pending){ .ptr = alloc };
	a->str_entry_keys[a->nstr_entries++] = key;
	return NULL;
}

/* Hashtable entries whose key is a str (exact type): recognised in the
 * heap, or a static string in the interpreter's data. */
static struct pm_error *resolve_str_entries(struct analysis *a)
{
	const struct type_info *str;
	struct pm_error *err = type_get(a, a->kind_types[TK_STR], &str);
	if (err || !str)
		return err;
	for (size_t i = 0; i < a->nstr_entries; i++) {
		const struct pm_alloc *key = pm_cpython_find_alloc(a->heap,
								   a->str_entry_keys[i]);
		struct pm_alloc *entry = &a->heap->allocs[a->str_entries[i].ptr];
		uint64_t tp = 0;
		bool is_str = key ? key->addr == a->str_entry_keys[i] &&
				    key->category == str->cat_live :
			/* static (statically allocated) strings */
			read_word(a, a->str_entry_keys[i] + 8, &tp) &&
			tp == a->kind_types[TK_STR];
		if (is_str && entry->category == PM_CATEGORY_NONE) {
			entry->category = a->cat_owned[OWN_STR_TABLE_ENTRY];
			a->heap->attributed++;
		}
	}
	return NULL;
}

static struct pm_error *recognise_alloc(struct analysis *a, struct pm_alloc *alloc,
				       size_t first_offset)
{
	if (alloc->kind == PM_ALLOC_PYMALLOC) {
		if (!load_pool(a, alloc->addr))
			return NULL;
		const uint8_t *b = a->pool_buf + (alloc->addr - a->pool->address);
		return recognise(a, alloc, b, alloc->size, alloc->size, first_offset);
	}
	if (alloc->kind != PM_ALLOC_GLIBC && alloc->kind != PM_ALLOC_MMAPPED)
		return NULL;
	/* In-use chunk: user data is size - 8 (the next chunk's prev_size is
	 * ours), mmapped: size - 16. */
	uint64_t usable = alloc->size - (alloc->kind == PM_ALLOC_MMAPPED ? 16 : 8);
	size_t len = usable < WINDOW ? (size_t)usable : WINDOW;
	struct pm_error *err = pm_target_read(a->t, alloc->addr, a->window, len);
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	a->pool = NULL;
	err = recognise(a, alloc, a->window, len, usable, first_offset);
	if (err || alloc->category != PM_CATEGORY_NONE || len < 32 ||
	    a->no_defer_pass)
		return err;
	/* _Py_hashtable entries {next, hash, key, value} with key == value:
	 * the 3.12+ runtime table of interned strings (malloc'd, 48 B). Kept
	 * if the key turns out to be a str. */
	uint64_t key = pm_load_u64(a->window + 16);
	if (key && !(key & 7) && key == pm_load_u64(a->window + 24))
		return str_entry_push(a, (size_t)(alloc - a->heap->allocs), key);
	return NULL;
}

const struct pm_alloc *pm_cpython_find_alloc(const struct pm_cpython_heap *heap,
					     uint64_t addr)
{
	size_t lo = 0, hi = heap->nallocs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_alloc *p = &heap->allocs[mid];
		if (addr < p->addr)
			hi = mid;
		else if (addr >= p->addr + p->size)
			lo = mid + 1;
		else
			return p;
	}
	return NULL;
}

/* A sized pending buffer is only its allocation when that starts at ptr
 * and is the size asked for, give or take the allocator's rounding. */
static bool pending_fits(const struct analysis *a, const struct pending *p,
			 const struct pm_alloc *alloc)
{
	if (!p->size)
		return true;
	struct alloc_data d = alloc_data_of(a, alloc);
	uint64_t slack = alloc->kind == PM_ALLOC_MMAPPED ? MMAP_SLACK : ALLOC_SLACK;
	return d.start == p->ptr && d.usable >= p->size &&
		d.usable <= p->size + slack;
}

/* A module state holds pointers, often a heap type's at word 1, so its
 * start can pass for a plain object (no GC head, so at offset 0, owning
 * nothing). The state, of its module's exact size, is the better reading:
 * that object is given up. */
static bool plain_object_yields(struct analysis *a, const struct pending *p,
				struct pm_alloc *alloc)
{
	uint64_t tp;
	const struct type_info *ti;
	if (p->category != a->cat_owned[OWN_MODULE_STATE] ||
	    alloc->category == PM_CATEGORY_NONE ||
	    alloc->addr + alloc->object_offset != p->ptr ||
	    !pending_fits(a, p, alloc) || !read_word(a, p->ptr + 8, &tp))
		return false;
	struct pm_error *err = type_get(a, tp, &ti);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	if (!ti || ti->kind != TK_OTHER ||
	    ti->flags & (TPFLAG_HAVE_GC | a->l->preheader_flags) ||
	    (alloc->category != ti->cat_live && alloc->category != ti->cat_free))
		return false;
	if (alloc->category == ti->cat_free)
		a->heap->free_list_objects--;
	else
		a->heap->objects--;
	alloc->category = PM_CATEGORY_NONE;
	return true;
}

/* Records that owner's field (or chain) leads to the allocation alloc. */
static struct pm_error *owner_record(struct analysis *a,
				     const struct pm_alloc *alloc, uint64_t owner)
{
	struct pm_cpython_heap *h = a->heap;
	if (!owner)
		return NULL;
	if (!h->owners) {
		h->owners = calloc(h->nallocs, sizeof(*h->owners));
		if (!h->owners)
			return &pm_error_no_memory;
	}
	h->owners[alloc - h->allocs] = owner;
	return NULL;
}

uint64_t pm_cpython_owner_of(const struct pm_cpython_heap *heap,
			     uint64_t alloc_addr)
{
	const struct pm_alloc *alloc = pm_cpython_find_alloc(heap, alloc_addr);
	if (!heap->owners || !alloc || alloc->addr != alloc_addr)
		return 0;
	return heap->owners[alloc - heap->allocs];
}

/* A block that once held an object and now holds a buffer keeps the old
 * header where the buffer does not write (3.12's dict values leave their
 * first words untouched): it reads as an object on a free list. A live
 * object pointing at it as its buffer is the better reading (free-list
 * objects are never owners: only live ones pend buffers). */
static bool free_object_yields(struct analysis *a, const struct pending *p,
			       struct pm_alloc *alloc)
{
	if (alloc->category >= a->heap->ncategories || !p->owner ||
	    strcmp(a->heap->categories[alloc->category].detail, "free list") ||
	    !pending_fits(a, p, alloc))
		return false;
	a->heap->free_list_objects--;
	alloc->category = PM_CATEGORY_NONE;
	alloc->object_offset = 0;
	return true;
}

static struct pm_error *resolve_pending(struct analysis *a)
{
	for (size_t i = 0; i < a->npending; i++) {
		if (a->pending[i].category == PM_CATEGORY_NONE ||
		    a->pending[i].chain)
			continue;
		struct pm_alloc *alloc = (struct pm_alloc *)
			pm_cpython_find_alloc(a->heap, a->pending[i].ptr);
		if (alloc && !plain_object_yields(a, &a->pending[i], alloc))
			free_object_yields(a, &a->pending[i], alloc);
		if (alloc && alloc->category == PM_CATEGORY_NONE &&
		    pending_fits(a, &a->pending[i], alloc)) {
			alloc->category = a->pending[i].category;
			/* A sized buffer is listed at its data (after a debug
			 * header), which pending_fits found at ptr. */
			if (a->pending[i].size)
				alloc->object_offset = (uint8_t)(a->pending[i].ptr - alloc->addr);
			a->heap->attributed++;
			struct pm_error *err = owner_record(a, alloc,
							    a->pending[i].owner);
			if (err)
				return err;
		}
	}
	return NULL;
}

/* "513-1024 B": glibc chunks are grouped by power-of-two size ranges. */
static void size_range(uint64_t size, char *buf, size_t len)
{
	uint64_t hi = 32;
	while (hi < size && hi < (UINT64_C(1) << 62))
		hi <<= 1;
	snprintf(buf, len, "%llu-%llu B", (unsigned long long)(hi / 2 + 1),
		 (unsigned long long)hi);
}

static struct pm_error *categorise_rest(struct analysis *a)
{
	for (size_t i = 0; i < a->heap->nallocs; i++) {
		struct pm_alloc *alloc = &a->heap->allocs[i];
		if (alloc->category != PM_CATEGORY_NONE)
			continue;
		char detail[64];
		const char *domain = "glibc", *kind = "unknown";
		if (alloc->kind == PM_ALLOC_PYMALLOC) {
			domain = "pymalloc";
			snprintf(detail, sizeof(detail), "%llu B",
				 (unsigned long long)alloc->size);
		} else if (alloc->kind == PM_ALLOC_TCACHE) {
			kind = "free (tcache)";
			snprintf(detail, sizeof(detail), "-");
		} else if (alloc->kind == PM_ALLOC_GLIBC_META) {
			kind = "tcache_perthread_struct";
			snprintf(detail, sizeof(detail), "-");
		} else {
			domain = pm_alloc_kind_name(alloc->kind);
			size_range(alloc->size, detail, sizeof(detail));
		}
		/* Consecutive allocations mostly share a category: cache it. */
		struct pm_error *err = category_get(a, domain, kind, detail,
						    &alloc->category);
		if (err)
			return err;
	}
	for (size_t i = 0; i < a->heap->nallocs; i++) {
		struct pm_category *c = &a->heap->categories[a->heap->allocs[i].category];
		c->count++;
		c->bytes += a->heap->allocs[i].size;
	}
	return NULL;
}

static struct pm_error *find_static_types(struct analysis *a)
{
	for (int k = 1; k < TK_KINDS; k++) {
		if (!kind_symbols[k])
			continue;
		struct pm_symbol sym;
		struct pm_error *err = pm_target_symbol(a->t, NULL, kind_symbols[k], &sym);
		if (err)
			return pm_error_wrap(err, "CPython static type");
		a->kind_types[k] = sym.address;
	}
	struct pm_symbol sym;
	struct pm_error *err;
	for (int k = 1; k < TK_KINDS; k++) {
		if (!optional_kind_symbols[k])
			continue;
		err = pm_target_symbol(a->t, NULL, optional_kind_symbols[k], &sym);
		if (!err)
			a->kind_types[k] = sym.address;
		pm_error_destroy(err);
	}
	err = pm_target_symbol(a->t, NULL, "PyFrozenSet_Type", &sym);
	if (!err)
		a->frozenset_type = sym.address;
	pm_error_destroy(err);
	err = pm_target_symbol(a->t, NULL, "PyBaseObject_Type", &sym);
	if (!err)
		a->object_type = sym.address;
	pm_error_destroy(err);
	for (int i = 0; i < OWN_KINDS; i++)
		if ((err = category_get(a, i >= OWN_LINK_MAP ? "ld.so" : "cpython",
					owned_names[i], "-", &a->cat_owned[i])))
			return err;
	return NULL;
}

/* ---- runtime structures -------------------------------------------- */

/* Allocations still unknown after object recognition may be interpreter
 * structures that no object points at: found by their own shape, each
 * checked against what it points at (exact allocation starts, a chain that
 * ends where its owner says, a count that matches). */

enum {
	ARENA_BLOCKS_MAX = 1 << 16,         /* blocks of one AST arena */
	HASHTABLE_BUCKETS_MIN = 8,
	HASHTABLE_BUCKETS_MAX = 1 << 26,
	HASHTABLE_ENTRIES_MAX = 1 << 22,
	HASHTABLE_SLACK = ALLOC_SLACK,
	INTERPRETERS_MAX = 256,
	THREAD_STATES_MAX = 1 << 16,
};

/* Where the data of an allocation starts (after a debug-hook header) and
 * what it can hold. */

static struct alloc_data alloc_data_of(const struct analysis *a,
				       const struct pm_alloc *alloc)
{
	uint64_t usable = alloc->kind == PM_ALLOC_PYMALLOC ? alloc->size :
		alloc->size - (alloc->kind == PM_ALLOC_MMAPPED ? 16 : 8);
	struct alloc_data d = { alloc->addr, usable };
	/* Up to two nested headers, as in recognise() (PyMem_Malloc of a large
	 * size: the object hooks around the raw hooks). */
	for (int nested = 0; nested < 2 && a->heap->debug_hooks &&
	     d.usable >= DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER; nested++) {
		uint8_t h[16];
		struct pm_error *err = pm_target_read(a->t, d.start, h, sizeof(h));
		bool hooked = !err && !memcmp(h + 9, "\xfd\xfd\xfd\xfd\xfd\xfd\xfd", 7);
		pm_error_destroy(err);
		if (!hooked)
			break;
		d.start += DEBUG_HOOK_HEADER;
		d.usable -= DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER;
	}
	return d;
}

/* The unattributed allocation whose data starts exactly at ptr, or NULL. */
static struct pm_alloc *unknown_at(struct analysis *a, uint64_t ptr,
				   struct alloc_data *ret)
{
	struct pm_alloc *alloc = (struct pm_alloc *)pm_cpython_find_alloc(a->heap, ptr);
	if (!alloc || alloc->category != PM_CATEGORY_NONE ||
	    (alloc->kind != PM_ALLOC_PYMALLOC && alloc->kind != PM_ALLOC_GLIBC &&
	     alloc->kind != PM_ALLOC_MMAPPED))
		return NULL;
	*ret = alloc_data_of(a, alloc);
	return ret->start == ptr ? alloc : NULL;
}

static bool read_fields(struct analysis *a, uint64_t addr, size_t n,
			uint64_t *words)
{
	struct pm_error *err = pm_target_read(a->t, addr, words, n * 8);
	pm_error_destroy(err);
	return !err;
}

/* Gives alloc the category `what`; its data (after a debug-hook header)
 * starts at start, which is where `objects` lists it. */
static void attribute(struct analysis *a, struct pm_alloc *alloc, enum owned what,
		      uint64_t start)
{
	alloc->category = a->cat_owned[what];
	alloc->object_offset = (uint8_t)(start - alloc->addr);
	a->heap->attributed++;
}

/* A PyArena {a_head, a_cur, a_objects}: a_objects a recognised list, a_head
 * the first of a chain of blocks {ab_size, ab_offset, ab_next, ab_mem} with
 * ab_mem right after the header, that ends (ab_next 0) at a_cur. The arena
 * and its blocks are attributed only when the whole chain checks out. */
static void ast_arena_attribute(struct analysis *a, struct pm_alloc *alloc,
				struct alloc_data d, uint32_t list_cat)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t arena[3], block[4];
	if (d.usable < l->arena_size ||
	    !read_fields(a, d.start + l->arena_head, 1, &arena[0]) ||
	    !read_fields(a, d.start + l->arena_cur, 1, &arena[1]) ||
	    !read_fields(a, d.start + l->arena_objects, 1, &arena[2]))
		return;
	const struct pm_alloc *objects = pm_cpython_find_alloc(a->heap, arena[2]);
	if (!objects || objects->category != list_cat ||
	    objects->addr + objects->object_offset != arena[2])
		return;
	for (int pass = 0; pass < 2; pass++) {
		uint64_t b = arena[0], last = 0;
		size_t n = 0;
		for (; b && n < ARENA_BLOCKS_MAX; n++) {
			struct alloc_data bd;
			struct pm_alloc *ba = unknown_at(a, b, &bd);
			if (!ba || bd.usable < l->block_header ||
			    !read_fields(a, b + l->block_size, 1, &block[0]) ||
			    !read_fields(a, b + l->block_offset, 1, &block[1]) ||
			    !read_fields(a, b + l->block_next, 1, &block[2]) ||
			    !read_fields(a, b + l->block_mem, 1, &block[3]) ||
			    block[3] != b + l->block_header || block[1] > block[0] ||
			    block[0] > bd.usable - l->block_header)
				return;
			if (pass)
				attribute(a, ba, OWN_AST_ARENA_BLOCK, b);
			last = b;
			b = block[2];
		}
		if (b || last != arena[1])
			return;
	}
	attribute(a, alloc, OWN_AST_ARENA, d.start);
}

static bool executable(struct pm_target *t, uint64_t addr)
{
	const struct pm_region *r = pm_target_find_region(t, addr);
	return r && (r->perms & PM_PERM_X);
}

/* Walks a _Py_hashtable_t's bucket lists (singly linked entries, next
 * first); counts them, attributing unknown ones on the second pass. False
 * when a list is broken or the count is not nentries. */
static bool hashtable_entries(struct analysis *a, const uint64_t *buckets,
			      uint64_t nbuckets, uint64_t nentries, bool mark)
{
	uint64_t seen = 0;
	for (uint64_t i = 0; i < nbuckets; i++) {
		uint64_t next;
		for (uint64_t e = buckets[i]; e; e = next, seen++) {
			if (seen >= nentries)
				return false;
			struct pm_alloc *ea = (struct pm_alloc *)pm_cpython_find_alloc(a->heap, e);
			if (!ea || alloc_data_of(a, ea).start != e ||
			    !read_fields(a, e, 1, &next))
				return false;
			if (mark && ea->category == PM_CATEGORY_NONE)
				attribute(a, ea, OWN_HASHTABLE_ENTRY, e);
		}
	}
	return seen == nentries;
}

/* A _Py_hashtable_t: a power-of-two bucket count, a bucket array that is an
 * unknown allocation of that size, hash and compare functions in code, and
 * exactly nentries entries on its lists. */
static struct pm_error *hashtable_attribute(struct analysis *a,
					    struct pm_alloc *alloc,
					    struct alloc_data d)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t nentries, nbuckets, buckets, hash, compare;
	if (d.usable < l->hashtable_size ||
	    !read_fields(a, d.start + l->hashtable_nbuckets, 1, &nbuckets) ||
	    nbuckets < HASHTABLE_BUCKETS_MIN || nbuckets > HASHTABLE_BUCKETS_MAX ||
	    (nbuckets & (nbuckets - 1)) ||
	    !read_fields(a, d.start + l->hashtable_nentries, 1, &nentries) ||
	    nentries > HASHTABLE_ENTRIES_MAX ||
	    !read_fields(a, d.start + l->hashtable_buckets, 1, &buckets) ||
	    !read_fields(a, d.start + l->hashtable_hash_func, 1, &hash) ||
	    !read_fields(a, d.start + l->hashtable_compare_func, 1, &compare) ||
	    !executable(a->t, hash) || !executable(a->t, compare))
		return NULL;
	struct alloc_data bd;
	struct pm_alloc *ba = unknown_at(a, buckets, &bd);
	uint64_t slack = ba && ba->kind == PM_ALLOC_MMAPPED ? MMAP_SLACK : HASHTABLE_SLACK;
	if (!ba || bd.usable < nbuckets * 8 || bd.usable > nbuckets * 8 + slack)
		return NULL;
	uint64_t *words = malloc(nbuckets * 8);
	if (!words)
		return &pm_error_no_memory;
	if (read_fields(a, buckets, nbuckets, words) &&
	    hashtable_entries(a, words, nbuckets, nentries, false)) {
		hashtable_entries(a, words, nbuckets, nentries, true);
		attribute(a, alloc, OWN_HASHTABLE, d.start);
		attribute(a, ba, OWN_HASHTABLE_BUCKETS, buckets);
	}
	free(words);
	return NULL;
}

/* The unknown allocation holding exactly one structure of size bytes at
 * ptr (its data starts there; allocator rounding aside), or NULL. */
static struct pm_alloc *unknown_sized(struct analysis *a, uint64_t ptr,
				      uint64_t size)
{
	struct alloc_data d;
	struct pm_alloc *alloc = unknown_at(a, ptr, &d);
	uint64_t slack = alloc && alloc->kind == PM_ALLOC_MMAPPED ? MMAP_SLACK : ALLOC_SLACK;
	return alloc && d.usable >= size && d.usable <= size + slack ? alloc : NULL;
}

/* The thread states of interp: a list from its head whose every entry
 * points back at interp and at the previous one. Each is a malloc'd
 * structure, except one inside interp (3.11+: the main thread's, with the
 * static main interpreter). Attributed on the second pass, when the whole
 * list checked out. */
static bool thread_states_attribute(struct analysis *a, uint64_t interp,
				    bool mark)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t ts, prev = 0;
	if (!read_fields(a, interp + l->interp_threads_head, 1, &ts))
		return false;
	for (size_t n = 0; ts; n++) {
		uint64_t back, owner, next;
		if (n == THREAD_STATES_MAX ||
		    !read_fields(a, ts + l->tstate_prev, 1, &back) ||
		    !read_fields(a, ts + l->tstate_interp, 1, &owner) ||
		    !read_fields(a, ts + l->tstate_next, 1, &next) ||
		    back != prev || owner != interp)
			return false;
		struct pm_alloc *alloc = unknown_sized(a, ts, l->tstate_size);
		bool embedded = l->interp_initial_thread &&
				ts == interp + l->interp_initial_thread;
		if (!alloc && !embedded)
			return false;
		if (mark && alloc)
			attribute(a, alloc, OWN_THREAD_STATE, ts);
		prev = ts;
		ts = next;
	}
	return true;
}

/* The interpreters listed in _PyRuntime (3.8-3.10 malloc'd, each exactly
 * a PyInterpreterState) and their thread states. */
static void interpreters_attribute(struct analysis *a)
{
	const struct pm_cpython_layout *l = a->l;
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(a->t, NULL, "_PyRuntime", &sym);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint64_t interp;
	if (!read_fields(a, sym.address + l->runtime_interp_head, 1, &interp))
		return;
	for (int n = 0; interp && n < INTERPRETERS_MAX; n++) {
		struct pm_alloc *alloc = l->interp_size ?
			unknown_sized(a, interp, l->interp_size) : NULL;
		if ((alloc || !l->interp_size) &&
		    thread_states_attribute(a, interp, false)) {
			thread_states_attribute(a, interp, true);
			if (alloc)
				attribute(a, alloc, OWN_INTERP_STATE, interp);
		}
		if (!read_fields(a, interp + l->interp_next, 1, &interp))
			return;
	}
}

/* The dynamic loader's list of loaded objects (_r_debug.r_map, linked by
 * l_next with l_prev back-links). Objects loaded at start-up live in
 * ld.so's own early memory; those dlopen'ed later (extension modules and
 * what they need) are glibc allocations: a struct link_map (plus audit
 * space and the name it was asked for) and its l_name copy. Attributed
 * only when the whole list checked out. */
enum {
	LINK_MAPS_MAX = 1 << 16,
	LINK_MAP_MIN = 512,                 /* struct link_map is ~1.1 KiB */
	LINK_MAP_MAX = 1 << 16,
	LINK_MAP_NAME_MAX = 4096,           /* PATH_MAX */
	/* struct link_map's public head */
	LM_NAME = 8, LM_NEXT = 24, LM_PREV = 32,
	R_DEBUG_MAP = 8,                    /* struct r_debug's r_map */
};

static bool link_maps_walk(struct analysis *a, uint64_t map, bool mark)
{
	uint64_t prev = 0;
	for (size_t n = 0; map; n++) {
		uint64_t head[5];
		if (n == LINK_MAPS_MAX || !read_fields(a, map, 5, head) ||
		    head[LM_PREV / 8] != prev)
			return false;
		struct alloc_data d;
		struct pm_alloc *alloc = unknown_at(a, map, &d);
		if (mark && alloc && d.usable >= LINK_MAP_MIN &&
		    d.usable <= LINK_MAP_MAX) {
			attribute(a, alloc, OWN_LINK_MAP, map);
			char name[LINK_MAP_NAME_MAX];
			struct pm_error *err = pm_target_read_cstr(
				a->t, head[LM_NAME / 8], name, sizeof(name));
			struct pm_alloc *name_alloc = err ? NULL :
				unknown_sized(a, head[LM_NAME / 8], strlen(name) + 1);
			pm_error_destroy(err);
			if (name_alloc)
				attribute(a, name_alloc, OWN_LINK_MAP_NAME,
					  head[LM_NAME / 8]);
		}
		prev = map;
		map = head[LM_NEXT / 8];
	}
	return true;
}

static void link_maps_attribute(struct analysis *a)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(a->t, NULL, "_r_debug", &sym);
	uint64_t first;
	if (err) {
		pm_error_destroy(err);
		return;
	}
	if (read_fields(a, sym.address + R_DEBUG_MAP, 1, &first) &&
	    link_maps_walk(a, first, false))
		link_maps_walk(a, first, true);
}

/* ---- chains of container storage ----------------------------------- */

enum {
	DEQUE_ITEMS_MAX = 1 << 30,
	CHAIN_BLOCK_MAX = 1024,         /* bytes of a deque block read at once */
};

static struct pm_error *chain_claim(struct analysis *a, struct pm_alloc *alloc,
				    uint64_t start, enum owned what)
{
	if (a->nchain == a->chain_cap) {
		size_t cap = a->chain_cap ? 2 * a->chain_cap : 1024;
		void *p = realloc(a->chain, cap * sizeof(*a->chain));
		if (!p)
			return &pm_error_no_memory;
		a->chain = p;
		a->chain_cap = cap;
	}
	alloc->category = a->cat_owned[what];
	a->chain[a->nchain++] = (struct chain_link){ alloc, start };
	return NULL;
}

/* Ends a walk: the claimed allocations are attributed if it checked
 * out, else given back. */
static struct pm_error *chain_finish(struct analysis *a, bool ok)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < a->nchain; i++) {
		struct pm_alloc *alloc = a->chain[i].alloc;
		if (!ok || err) {
			alloc->category = PM_CATEGORY_NONE;
			continue;
		}
		alloc->object_offset = (uint8_t)(a->chain[i].start - alloc->addr);
		a->heap->attributed++;
		err = owner_record(a, alloc, a->chain_owner);
	}
	a->nchain = 0;
	return err;
}

/* A deque's blocks, leftblock to rightblock by rightlink, each the exact
 * start of a block-sized allocation whose leftlink is the one before; as
 * many as its length and indexes say: leftindex + len + (BLOCKLEN - 1 -
 * rightindex) is a whole number of blocks. The ends' outer links are
 * stale in CPython, so not checked. */
static struct pm_error *deque_blocks_walk(struct analysis *a, uint64_t obj,
					  bool *ret)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t f[7], span, nblocks, b, prev = 0, per = l->deque_block_len;
	uint8_t block[CHAIN_BLOCK_MAX];
	*ret = false;
	if (l->deque_block_size > sizeof(block) ||
	    !read_fields(a, obj, 7, f))
		return NULL;
	int64_t len = (int64_t)f[2];
	uint64_t left = f[l->deque_leftindex / 8], right = f[l->deque_rightindex / 8];
	if (len < 0 || len > DEQUE_ITEMS_MAX || left >= per || right >= per)
		return NULL;
	span = left + (uint64_t)len + (per - 1 - right);
	if (span % per)
		return NULL;
	nblocks = span / per;
	b = f[l->deque_leftblock / 8];
	for (uint64_t i = 0; i < nblocks; i++) {
		struct pm_alloc *alloc = unknown_sized(a, b, l->deque_block_size);
		if (!alloc || !read_fields(a, b, l->deque_block_size / 8,
					   (uint64_t *)(void *)block) ||
		    (i && pm_load_u64(block + l->deque_block_leftlink) != prev))
			return NULL;
		struct pm_error *err = chain_claim(a, alloc, b, OWN_DEQUE_BLOCK);
		if (err)
			return err;
		prev = b;
		b = pm_load_u64(block + l->deque_block_rightlink);
	}
	*ret = prev == f[l->deque_rightblock / 8];
	return NULL;
}

/* 3.11+: the blocks a deque keeps for reuse (freeblocks[numfreeblocks]),
 * each on its own. */
static struct pm_error *deque_free_blocks(struct analysis *a, uint64_t obj)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t n, blocks[64];
	if (!l->deque_freeblocks_max ||
	    !read_fields(a, obj + l->deque_numfreeblocks, 1, &n) ||
	    !n || n > l->deque_freeblocks_max || n > 64 ||
	    !read_fields(a, obj + l->deque_freeblocks, n, blocks))
		return NULL;
	for (uint64_t i = 0; i < n; i++) {
		struct pm_alloc *alloc = unknown_sized(a, blocks[i], l->deque_block_size);
		struct pm_error *err = alloc ?
			chain_claim(a, alloc, blocks[i], OWN_DEQUE_BLOCK) : NULL;
		if (!err)
			err = chain_finish(a, true);
		if (err)
			return err;
	}
	return NULL;
}

/* An OrderedDict's nodes from od_first by next, each the exact start of a
 * node-sized allocation whose prev is the one before; exactly ma_used of
 * them, the last od_last with no next. */
static struct pm_error *odict_nodes_walk(struct analysis *a, uint64_t obj,
					 bool *ret)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t used, node, last, prev = 0, n[4];
	*ret = false;
	if (l->odict_node_size != sizeof(n) ||
	    !read_fields(a, obj + l->odict_used, 1, &used) ||
	    !read_fields(a, obj + l->odict_first, 1, &node) ||
	    !read_fields(a, obj + l->odict_last, 1, &last) ||
	    used > CONTAINER_ITEMS_MAX)
		return NULL;
	for (uint64_t i = 0; i < used; i++) {
		struct pm_alloc *alloc = unknown_sized(a, node, l->odict_node_size);
		if (!alloc || !read_fields(a, node, 4, n) ||
		    n[l->odict_node_prev / 8] != prev)
			return NULL;
		struct pm_error *err = chain_claim(a, alloc, node, OWN_ODICT_NODE);
		if (err)
			return err;
		prev = node;
		node = n[l->odict_node_next / 8];
	}
	*ret = !node && prev == last;
	return NULL;
}

/* The chains of the recognised deques and OrderedDicts (pend_chain). */
static struct pm_error *chains_attribute(struct analysis *a)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < a->npending && !err; i++) {
		const struct pending *p = &a->pending[i];
		bool ok = false;
		if (!p->chain || p->category == PM_CATEGORY_NONE)
			continue;
		a->chain_owner = p->ptr;
		if (p->chain == TK_DEQUE)
			err = deque_blocks_walk(a, p->ptr, &ok);
		else
			err = odict_nodes_walk(a, p->ptr, &ok);
		struct pm_error *finish_err = chain_finish(a, ok && !err);
		if (!err)
			err = finish_err;
		if (!err && p->chain == TK_DEQUE)
			err = deque_free_blocks(a, p->ptr);
	}
	return err;
}

static struct pm_error *structures_attribute(struct analysis *a)
{
	interpreters_attribute(a);
	link_maps_attribute(a);
	const struct type_info *list;
	struct pm_error *err = type_get(a, a->kind_types[TK_LIST], &list);
	for (size_t i = 0; i < a->heap->nallocs && !err; i++) {
		struct pm_alloc *alloc = &a->heap->allocs[i];
		struct alloc_data d;
		if (alloc->category != PM_CATEGORY_NONE)
			continue;
		d = alloc_data_of(a, alloc);
		if (!unknown_at(a, d.start, &d))
			continue;
		if (list)
			ast_arena_attribute(a, alloc, d, list->cat_live);
		if (alloc->category == PM_CATEGORY_NONE)
			err = hashtable_attribute(a, alloc, d);
	}
	return err;
}

/* Rule 8 for the objects accepted with a neighbour out of reach: the
 * neighbours are now known (accepted objects, or a read). An object that
 * fails is undone (category, count, the buffers it claimed) and its
 * allocation recognised again from the next offset, checking at once. */
static struct pm_error *gc_verify_deferred(struct analysis *a)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < a->ndeferred && !err; i++) {
		const struct gc_deferred *d = &a->deferred[i];
		uint64_t v;
		bool ok = gc_neighbour_word(a, d->prev & ~UINT64_C(3), 0, &v) &&
			  (v & ~UINT64_C(1)) == d->gc &&
			  gc_neighbour_word(a, d->next & ~UINT64_C(3), 1, &v) &&
			  (v & ~UINT64_C(3)) == d->gc;
		if (ok)
			continue;
		struct pm_alloc *alloc = &a->heap->allocs[d->alloc];
		alloc->category = PM_CATEGORY_NONE;
		if (d->free_list)
			a->heap->free_list_objects--;
		else
			a->heap->objects--;
		for (size_t k = d->pending_start; k < d->pending_end; k++)
			a->pending[k].category = PM_CATEGORY_NONE;
		a->no_defer = true;
		a->pool = NULL;
		err = recognise_alloc(a, alloc, d->offset_index + 1u);
		a->no_defer = false;
	}
	return err;
}

static struct pm_error *recognise_all(struct analysis *a)
{
	struct pm_error *err = find_static_types(a);
	if (err) {
		heap_note(a->heap, "objects not recognised: %s", err->message);
		pm_error_destroy(err);
		return NULL;
	}
	a->pool_buf = malloc(a->pm && a->pm->found ? a->pm->pool_size : 1);
	if (!a->pool_buf)
		return &pm_error_no_memory;
	a->heap->python = true;
	/* A core is mapped: a neighbour's word costs a memory access there,
	 * less than the deferred lookup; a live process pays a system call. */
	a->no_defer = !strcmp(pm_target_kind(a->t), "core");
	for (size_t i = 0; i < a->heap->nallocs && !err; i++) {
		if ((i & 0xffff) == 0xffff && pm_target_interrupted(a->t))
			err = pm_error_interrupted();
		else
			err = recognise_alloc(a, &a->heap->allocs[i], 0);
	}
	a->no_defer = false;
	a->no_defer_pass = true;
	if (!err)
		err = gc_verify_deferred(a);
	a->no_defer_pass = false;
	/* Radix nodes are calloc'd: the pointer is the allocation's start. */
	for (size_t i = 0; !err && a->pm && i < a->pm->nradix_nodes; i++) {
		const struct pm_alloc *node = pm_cpython_find_alloc(a->heap,
								    a->pm->radix_nodes[i]);
		if (node && node->addr == a->pm->radix_nodes[i])
			err = pend(a, node->addr, OWN_RADIX_NODE);
	}
	if (!err)
		err = resolve_pending(a);
	if (!err)
		err = chains_attribute(a);
	if (!err)
		err = resolve_str_entries(a);
	if (!err)
		err = structures_attribute(a);
	return err;
}

static struct pm_error *analyse(struct analysis *a)
{
	struct pm_error *err = pm_python_detect(a->t, &a->py);
	if (err)
		return err;
	a->heap->py = a->py;
	if (!a->py->supported)
		heap_note(a->heap, "no Python objects: %s", a->py->unsupported);
	if ((err = collect_allocs(a)))
		return err;
	if (a->py->supported) {
		a->l = pm_cpython_layout_for(a->py->minor);
		if ((err = recognise_all(a)))
			return err;
	}
	return categorise_rest(a);
}

static void heap_destroy(void *p)
{
	struct pm_cpython_heap *heap = p;
	if (!heap)
		return;
	for (size_t i = 0; i < heap->ncategories; i++) {
		free(heap->categories[i].domain);
		free(heap->categories[i].kind);
		free(heap->categories[i].detail);
	}
	free(heap->categories);
	free(heap->allocs);
	free(heap->owners);
	free(heap);
}

static void analysis_deinit(struct analysis *a)
{
	for (size_t i = 0; i < a->types.cap; i++)
		free(a->types.slots[i].name);
	free(a->types.slots);
	free(a->cat_index);
	free(a->pending);
	free(a->links);
	free(a->deferred);
	free(a->str_entries);
	free(a->str_entry_keys);
	free(a->pool_buf);
	free(a->chain);
}

struct pm_error *pm_cpython_analyse(struct pm_target *t,
				    const struct pm_cpython_heap **ret)
{
	struct pm_cpython_heap *heap = pm_target_cache_get(t, PM_CACHE_CPYTHON);
	if (!heap) {
		heap = calloc(1, sizeof(*heap));
		if (!heap)
			return &pm_error_no_memory;
		struct analysis a = { .t = t, .heap = heap };
		struct pm_error *err = analyse(&a);
		analysis_deinit(&a);
		if (err) {
			heap_destroy(heap);
			return err;
		}
		pm_target_cache_set(t, PM_CACHE_CPYTHON, heap, heap_destroy);
	}
	*ret = heap;
	return NULL;
}
