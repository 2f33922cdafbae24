/* Which reader an object's references are read with, decided once per type:
 * the built-in kinds by the analysis's type kinds and by tp_name (checked
 * against tp_basicsize), with the field offsets of each CPython version
 * (gdb `ptype /o` on the 3.8-3.13 builds, and on Debian's 3.14.10 and
 * 3.15.2 and their pydebug builds, the same in both: 3.14 added the
 * function's __annotate__, 3.15 a bytearray's bytes object); a heap
 * type's instances by their nearest static base plus the heap types' own
 * __slots__ and __dict__;
 * every other type conservatively. Types no recognised object has (None's,
 * say) are validated here when an object outside the heap is first seen. */
#include "graph_build.h"

#include <stdlib.h>
#include <string.h>

#include "bytes.h"

enum {
	TP_NAME = 24, TP_BASICSIZE = 32, TP_ITEMSIZE = 40, TP_FLAGS = 168,
	TP_DEALLOC = 48, TP_WEAKLISTOFFSET = 208, TP_BASE = 256,
	TP_DICTOFFSET = 288,
	TYPE_HEAD = 416,            /* sizeof(PyTypeObject), the larger one */
	TPFLAG_HEAPTYPE = 1 << 9, TPFLAG_READY = 1 << 12,
	TPFLAG_HAVE_GC = 1 << 14,
	BASE_HOPS_MAX = 64,
	MEMBERS_MAX = 4096,
	MEMBER_DEF = 40,            /* sizeof(PyMemberDef) */
	MEMBER_TYPE = 8, MEMBER_OFFSET = 16,
	T_OBJECT = 6, T_OBJECT_EX = 16,
	NAME_MAX_LEN = 128,
};

/* A type read by name: tp_name, the versions it holds for, the reader,
 * and for READER_FIELDS the object's PyObject * fields. The smallest
 * basicsize is a sanity check (the fields must lie inside). */
struct named_reader {
	const char *name;
	int min_minor, max_minor;
	enum reader reader;
	uint64_t min_basicsize;
	struct field_def fields[FIELDS_MAX];
};

#define ALL 8, 15
#define T true
#define U false
static const struct named_reader named_readers[] = {
	{ "tuple", ALL, READER_TUPLE, 24, {{0}} },
	{ "cell", ALL, READER_FIELDS, 24, {{ 16, PM_FIELD_CELL_CONTENTS, T }} },
	{ "method", ALL, READER_FIELDS, 32,
	  {{ 16, PM_FIELD_FUNC, T }, { 24, PM_FIELD_SELF, T }} },
	{ "builtin_function_or_method", ALL, READER_FIELDS, 40,
	  {{ 24, PM_FIELD_SELF, T }, { 32, PM_FIELD_MODULE, T }} },
	{ "builtin_method", 9, 15, READER_FIELDS, 64,
	  {{ 24, PM_FIELD_SELF, T }, { 32, PM_FIELD_MODULE, T },
	   { 56, PM_FIELD_CLASS, T }} },
	{ "slice", ALL, READER_FIELDS, 40,
	  {{ 16, PM_FIELD_START, T }, { 24, PM_FIELD_STOP, T },
	   { 32, PM_FIELD_STEP, T }} },
	{ "range", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_START, U }, { 24, PM_FIELD_STOP, U },
	   { 32, PM_FIELD_STEP, U }, { 40, PM_FIELD_LENGTH, U }} },
	{ "property", 8, 9, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_FGET, T }, { 24, PM_FIELD_FSET, T },
	   { 32, PM_FIELD_FDEL, T }, { 40, PM_FIELD_DOC, T }} },
	{ "property", 10, 15, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_FGET, T }, { 24, PM_FIELD_FSET, T },
	   { 32, PM_FIELD_FDEL, T }, { 40, PM_FIELD_DOC, T },
	   { 48, PM_FIELD_PROP_NAME, T }} },
	{ "classmethod", ALL, READER_FIELDS, 32,
	  {{ 16, PM_FIELD_FUNC, T }, { 24, PM_FIELD_DICT, T }} },
	{ "staticmethod", ALL, READER_FIELDS, 32,
	  {{ 16, PM_FIELD_FUNC, T }, { 24, PM_FIELD_DICT, T }} },
	{ "functools.partial", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_FUNC, T }, { 24, PM_FIELD_ARGS, T },
	   { 32, PM_FIELD_KEYWORDS, T }, { 40, PM_FIELD_DICT, T }} },
	{ "function", 8, 9, READER_FIELDS, 112,
	  {{ 16, PM_FIELD_CODE, T }, { 24, PM_FIELD_GLOBALS, T },
	   { 32, PM_FIELD_DEFAULTS, T }, { 40, PM_FIELD_KWDEFAULTS, T },
	   { 48, PM_FIELD_CLOSURE, T }, { 56, PM_FIELD_DOC, T },
	   { 64, PM_FIELD_NAME, T }, { 72, PM_FIELD_DICT, T },
	   { 88, PM_FIELD_MODULE, T }, { 96, PM_FIELD_ANNOTATIONS, T }} },
	/* ... and qualname at 104, in a second entry (FIELDS_MAX) */
	{ "function", 10, 11, READER_FIELDS, 120,
	  {{ 16, PM_FIELD_GLOBALS, T }, { 24, PM_FIELD_BUILTINS, T },
	   { 32, PM_FIELD_NAME, T }, { 40, PM_FIELD_QUALNAME, T },
	   { 48, PM_FIELD_CODE, T }, { 56, PM_FIELD_DEFAULTS, T },
	   { 64, PM_FIELD_KWDEFAULTS, T }, { 72, PM_FIELD_CLOSURE, T },
	   { 80, PM_FIELD_DOC, T }, { 88, PM_FIELD_DICT, T }} },
	{ "function", 12, 15, READER_FIELDS, 128,
	  {{ 16, PM_FIELD_GLOBALS, T }, { 24, PM_FIELD_BUILTINS, T },
	   { 32, PM_FIELD_NAME, T }, { 40, PM_FIELD_QUALNAME, T },
	   { 48, PM_FIELD_CODE, T }, { 56, PM_FIELD_DEFAULTS, T },
	   { 64, PM_FIELD_KWDEFAULTS, T }, { 72, PM_FIELD_CLOSURE, T },
	   { 80, PM_FIELD_DOC, T }, { 88, PM_FIELD_DICT, T }} },
	{ "traceback", ALL, READER_FIELDS, 32,
	  {{ 16, PM_FIELD_TB_NEXT, T }, { 24, PM_FIELD_TB_FRAME, T }} },
	{ "collections.defaultdict", ALL, READER_DEFAULTDICT, 56, {{0}} },
	{ "enumerate", ALL, READER_FIELDS, 48,
	  {{ 24, PM_FIELD_ITERATED, T }, { 32, PM_FIELD_RESULT, T },
	   { 40, PM_FIELD_INDEX, T }} },
	{ "list_iterator", ALL, READER_FIELDS, 32, {{ 24, PM_FIELD_ITERATED, T }} },
	{ "list_reverseiterator", ALL, READER_FIELDS, 32,
	  {{ 24, PM_FIELD_ITERATED, T }} },
	{ "tuple_iterator", ALL, READER_FIELDS, 32, {{ 24, PM_FIELD_ITERATED, T }} },
	{ "set_iterator", ALL, READER_FIELDS, 48, {{ 16, PM_FIELD_ITERATED, T }} },
	{ "dict_keyiterator", ALL, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_ITERATED, T }, { 40, PM_FIELD_RESULT, T }} },
	{ "dict_valueiterator", ALL, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_ITERATED, T }, { 40, PM_FIELD_RESULT, T }} },
	{ "dict_itemiterator", ALL, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_ITERATED, T }, { 40, PM_FIELD_RESULT, T }} },
	{ "dict_reversekeyiterator", ALL, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_ITERATED, T }, { 40, PM_FIELD_RESULT, T }} },
	{ "dict_reversevalueiterator", ALL, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_ITERATED, T }, { 40, PM_FIELD_RESULT, T }} },
	{ "dict_reverseitemiterator", ALL, READER_FIELDS, 56,
	  {{ 16, PM_FIELD_ITERATED, T }, { 40, PM_FIELD_RESULT, T }} },
	{ "dict_keys", ALL, READER_FIELDS, 24, {{ 16, PM_FIELD_MAPPING, T }} },
	{ "dict_values", ALL, READER_FIELDS, 24, {{ 16, PM_FIELD_MAPPING, T }} },
	{ "dict_items", ALL, READER_FIELDS, 24, {{ 16, PM_FIELD_MAPPING, T }} },
	{ "mappingproxy", ALL, READER_FIELDS, 24, {{ 16, PM_FIELD_MAPPING, T }} },
	/* descr_traverse visits d_type only; the names are strs */
	{ "member_descriptor", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_OBJCLASS, T }, { 24, PM_FIELD_NAME, U },
	   { 32, PM_FIELD_QUALNAME, U }} },
	{ "getset_descriptor", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_OBJCLASS, T }, { 24, PM_FIELD_NAME, U },
	   { 32, PM_FIELD_QUALNAME, U }} },
	{ "method_descriptor", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_OBJCLASS, T }, { 24, PM_FIELD_NAME, U },
	   { 32, PM_FIELD_QUALNAME, U }} },
	{ "classmethod_descriptor", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_OBJCLASS, T }, { 24, PM_FIELD_NAME, U },
	   { 32, PM_FIELD_QUALNAME, U }} },
	{ "wrapper_descriptor", ALL, READER_FIELDS, 48,
	  {{ 16, PM_FIELD_OBJCLASS, T }, { 24, PM_FIELD_NAME, U },
	   { 32, PM_FIELD_QUALNAME, U }} },
	{ "super", ALL, READER_FIELDS, 40,
	  {{ 16, PM_FIELD_THISCLASS, T }, { 24, PM_FIELD_OBJ, T },
	   { 32, PM_FIELD_OBJTYPE, T }} },
	{ "weakref", ALL, READER_WEAKREF, 56, {{0}} },
	{ "weakref.ReferenceType", ALL, READER_WEAKREF, 56, {{0}} },
	{ "weakproxy", ALL, READER_WEAKREF, 56, {{0}} },
	{ "weakcallableproxy", ALL, READER_WEAKREF, 56, {{0}} },
	{ "weakref.ProxyType", ALL, READER_WEAKREF, 56, {{0}} },
	{ "weakref.CallableProxyType", ALL, READER_WEAKREF, 56, {{0}} },
	{ "frame", ALL, READER_FRAME, 56, {{0}} },
	{ "generator", ALL, READER_GENERATOR, 80, {{0}} },
	{ "coroutine", ALL, READER_GENERATOR, 80, {{0}} },
	{ "async_generator", ALL, READER_GENERATOR, 80, {{0}} },
	{ "code", ALL, READER_CODE, 176, {{0}} },
	/* 3.15: a bytearray keeps its data in a bytes object it holds a
	 * reference to (ob_bytes_object at 56; ob_bytes and ob_start point
	 * inside it, at no object's start). bytearray has no tp_traverse, so
	 * the reference is not a visited one. Before 3.15 the data is a plain
	 * buffer. */
	{ "bytearray", 15, 15, READER_FIELDS, 64, {{ 56, PM_FIELD_BYTES_OBJECT, U }} },
	/* No references. */
	{ "int", ALL, READER_NONE, 0, {{0}} },
	{ "bool", ALL, READER_NONE, 0, {{0}} },
	{ "float", ALL, READER_NONE, 0, {{0}} },
	{ "complex", ALL, READER_NONE, 0, {{0}} },
	{ "bytes", ALL, READER_NONE, 0, {{0}} },
	{ "NoneType", ALL, READER_NONE, 0, {{0}} },
	{ "NotImplementedType", ALL, READER_NONE, 0, {{0}} },
	{ "ellipsis", ALL, READER_NONE, 0, {{0}} },
	{ "range_iterator", ALL, READER_NONE, 0, {{0}} },
	{ "longrange_iterator", ALL, READER_CONSERVATIVE, 0, {{0}} },
};
#undef ALL
#undef T
#undef U

/* The fields that do not fit in one entry: a function's qualname (3.8,
 * 3.9), annotations, module and type params (3.10+). */
static const struct field_def function_extra_38[] = {
	{ 104, PM_FIELD_QUALNAME, true },
};
static const struct field_def function_extra_310[] = {
	{ 104, PM_FIELD_MODULE, true }, { 112, PM_FIELD_ANNOTATIONS, true },
};
static const struct field_def function_extra_312[] = {
	{ 104, PM_FIELD_MODULE, true }, { 112, PM_FIELD_ANNOTATIONS, true },
	{ 120, PM_FIELD_TYPE_PARAMS, true },
};
/* 3.14: __annotate__ before the type params */
static const struct field_def function_extra_314[] = {
	{ 104, PM_FIELD_MODULE, true }, { 112, PM_FIELD_ANNOTATIONS, true },
	{ 120, PM_FIELD_ANNOTATE, true }, { 128, PM_FIELD_TYPE_PARAMS, true },
};

/* The code object's references (not traversed: code is no GC object). */
static const struct field_def code_fields_38[] = {
	{ 48, PM_FIELD_BYTECODE, false }, { 56, PM_FIELD_CONSTS, false },
	{ 64, PM_FIELD_NAMES, false }, { 72, PM_FIELD_VARNAMES, false },
	{ 80, PM_FIELD_FREEVARS, false }, { 88, PM_FIELD_CELLVARS, false },
	{ 104, PM_FIELD_FILENAME, false }, { 112, PM_FIELD_NAME, false },
	{ 120, PM_FIELD_LINETABLE, false },
};
static const struct field_def code_fields_311[] = {
	{ 24, PM_FIELD_CONSTS, false }, { 32, PM_FIELD_NAMES, false },
	{ 40, PM_FIELD_EXCEPTIONTABLE, false },
	{ 96, PM_FIELD_LOCALSPLUSNAMES, false },
	{ 104, PM_FIELD_BYTECODE, false }, /* co_localspluskinds: bytes */
	{ 112, PM_FIELD_FILENAME, false }, { 120, PM_FIELD_NAME, false },
	{ 128, PM_FIELD_QUALNAME, false }, { 136, PM_FIELD_LINETABLE, false },
};

const struct field_def *graph_extra_fields(int minor, const char *name,
					   size_t *n)
{
	*n = 0;
	if (!strcmp(name, "function")) {
		if (minor <= 9) {
			*n = 1;
			return function_extra_38;
		}
		if (minor <= 11) {
			*n = 2;
			return function_extra_310;
		}
		if (minor <= 13) {
			*n = 3;
			return function_extra_312;
		}
		*n = 4;
		return function_extra_314;
	}
	if (!strcmp(name, "code")) {
		*n = 9;
		return minor <= 10 ? code_fields_38 : code_fields_311;
	}
	return NULL;
}

/* The head of a type object, read once: false when unreadable. */
struct type_head {
	uint64_t flags, basicsize, itemsize, weaklistoffset, base, name_ptr, meta;
	int64_t dictoffset;
};

static bool type_head_read(struct builder *b, uint64_t tp, struct type_head *h)
{
	uint8_t head[TYPE_HEAD];
	if (tp & 7 || !builder_read(b, tp, head, sizeof(head)))
		return false;
	h->meta = pm_load_u64(head + 8);
	h->flags = pm_load_u64(head + TP_FLAGS);
	h->basicsize = pm_load_u64(head + TP_BASICSIZE);
	h->itemsize = pm_load_u64(head + TP_ITEMSIZE);
	h->weaklistoffset = pm_load_u64(head + TP_WEAKLISTOFFSET);
	h->dictoffset = (int64_t)pm_load_u64(head + TP_DICTOFFSET);
	h->base = pm_load_u64(head + TP_BASE);
	h->name_ptr = pm_load_u64(head + TP_NAME);
	return true;
}

/* A type the analysis never saw (only objects outside the heap have it):
 * its metatype is type (or a type whose kind is type), it is ready, its
 * size sane and its name printable. */
static bool type_plausible(struct builder *b, const struct type_head *h,
			   char *name, size_t size)
{
	const struct pm_cpython_type *meta = pm_cpython_find_type(b->heap, h->meta);
	bool meta_ok = h->meta == b->heap->kind_types[TK_TYPE] ||
		       (meta && meta->kind == TK_TYPE);
	if (!meta_ok || !(h->flags & TPFLAG_READY) || h->basicsize < 16 ||
	    h->basicsize >= (1u << 20))
		return false;
	struct pm_error *err = pm_target_read_cstr(b->t, h->name_ptr, name, size);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return pm_type_name_printable(name);
}

/* The reader of a static (non-heap) type's instances. */
static void static_reader(struct builder *b, uint64_t tp, uint8_t kind,
			  const char *name, const struct type_head *h,
			  struct reader_type *rt)
{
	for (size_t i = 0; i < sizeof(named_readers) / sizeof(named_readers[0]); i++) {
		const struct named_reader *r = &named_readers[i];
		if (b->minor < r->min_minor || b->minor > r->max_minor ||
		    strcmp(r->name, name) || h->basicsize < r->min_basicsize)
			continue;
		rt->reader = r->reader;
		rt->fields = r->fields;
		rt->nfields = 0;
		while (rt->nfields < FIELDS_MAX && r->fields[rt->nfields].offset)
			rt->nfields++;
		return;
	}
	/* A C subclass of list, dict, set or type may add fields of its own
	 * (3.13's ctypes metaclasses keep their StgInfo in the class). */
	uint64_t container_size[TK_KINDS] = {
		[TK_LIST] = 40, [TK_DICT] = 48, [TK_SET] = 200,
		[TK_TYPE] = b->rl->ht_size };
	if (container_size[kind] && h->basicsize > container_size[kind])
		rt->extra_from = container_size[kind];
	switch (kind) {
	case TK_LIST: rt->reader = READER_LIST; return;
	case TK_DICT: rt->reader = READER_DICT; return;
	case TK_SET: rt->reader = READER_SET; return;
	case TK_TYPE: rt->reader = READER_TYPE; return;
	case TK_DEQUE: rt->reader = READER_DEQUE; return;
	case TK_ODICT: rt->reader = READER_ODICT; return;
	case TK_MODULE: rt->reader = READER_MODULE; return;
	case TK_NDARRAY: rt->reader = READER_NDARRAY; return;
	case TK_STR: case TK_STR_SUB: case TK_BYTEARRAY: case TK_ARRAY:
		rt->reader = READER_NONE;
		return;
	default:
		break;
	}
	/* BaseException and its C subclasses. */
	uint64_t cur = tp;
	for (int hop = 0; cur && hop < BASE_HOPS_MAX; hop++) {
		char base_name[NAME_MAX_LEN];
		struct type_head bh;
		if (!type_head_read(b, cur, &bh))
			break;
		struct pm_error *err = pm_target_read_cstr(b->t, bh.name_ptr, base_name,
							   sizeof(base_name));
		bool is_base_exception = !err && !strcmp(base_name, "BaseException");
		pm_error_destroy(err);
		if (is_base_exception) {
			rt->reader = READER_EXCEPTION;
			return;
		}
		cur = bh.base;
	}
	rt->reader = h->flags & TPFLAG_HAVE_GC || h->basicsize > 16 ?
		READER_CONSERVATIVE : READER_NONE;
}

/* A heap type's __slots__ of object kind: its PyMemberDef array follows
 * the type at its metatype's basicsize, Py_SIZE(type) of them. */
static struct pm_error *slots_add(struct builder *b, uint64_t tp,
				  struct reader_type *rt)
{
	uint64_t nmembers, meta_size;
	struct type_head meta;
	if (!builder_word(b, tp + 16, &nmembers) || !nmembers)
		return NULL;
	if (!builder_word(b, tp + 8, &meta_size) || !type_head_read(b, meta_size, &meta) ||
	    nmembers > MEMBERS_MAX)
		return NULL;
	for (uint64_t i = 0; i < nmembers; i++) {
		uint8_t def[MEMBER_DEF];
		if (!builder_read(b, tp + meta.basicsize + i * MEMBER_DEF, def, sizeof(def)))
			return NULL;
		uint32_t type = pm_load_u32(def + MEMBER_TYPE);
		uint64_t offset = pm_load_u64(def + MEMBER_OFFSET);
		if ((type != T_OBJECT && type != T_OBJECT_EX) || offset + 8 > rt->basicsize)
			continue;
		struct slot_def slot = { (uint32_t)offset };
		if (!slot_vector_append(&rt->slots, &slot))
			return &pm_error_no_memory;
	}
	return NULL;
}

/* A heap type's instances: read as their nearest static base's, plus the
 * __slots__ of every heap type on the way. */
static struct pm_error *heap_reader(struct builder *b, uint64_t tp,
				    const struct type_head *h,
				    struct reader_type *rt)
{
	uint64_t cur = tp;
	struct type_head ch = *h;
	for (int hop = 0; hop < BASE_HOPS_MAX; hop++) {
		if (!(ch.flags & TPFLAG_HEAPTYPE)) {
			const struct pm_cpython_type *known = pm_cpython_find_type(b->heap, cur);
			char name[NAME_MAX_LEN] = "";
			struct pm_error *err = pm_target_read_cstr(b->t, ch.name_ptr, name,
								   sizeof(name));
			pm_error_destroy(err);
			uint8_t kind = known ? known->kind : TK_OTHER;
			if (!known) {
				for (int k = 1; k < TK_KINDS; k++)
					if (cur && cur == b->heap->kind_types[k])
						kind = (uint8_t)k;
			}
			static_reader(b, cur, kind, name, &ch, rt);
			rt->base_dictoffset = ch.dictoffset;
			rt->base_basicsize = ch.basicsize;
			return NULL;
		}
		/* A heap type made by C (PyType_FromSpec) has its own
		 * dealloc and layout: read its instances by its name, or
		 * conservatively. */
		uint64_t dealloc;
		if (builder_word(b, cur + TP_DEALLOC, &dealloc) && dealloc &&
		    b->subtype_dealloc && dealloc != b->subtype_dealloc) {
			char name[NAME_MAX_LEN] = "";
			struct pm_error *err = pm_target_read_cstr(b->t, ch.name_ptr, name,
								   sizeof(name));
			pm_error_destroy(err);
			const struct pm_cpython_type *known = pm_cpython_find_type(b->heap, cur);
			static_reader(b, cur, known ? known->kind : TK_OTHER, name, &ch, rt);
			if (rt->reader == READER_NONE && ch.basicsize > 16)
				rt->reader = READER_CONSERVATIVE;
			rt->base_dictoffset = ch.dictoffset;
			rt->base_basicsize = ch.basicsize;
			return NULL;
		}
		struct pm_error *err = slots_add(b, cur, rt);
		if (err)
			return err;
		cur = ch.base;
		if (!cur || !type_head_read(b, cur, &ch))
			break;
	}
	rt->reader = READER_CONSERVATIVE;
	return NULL;
}

struct pm_error *reader_type_get(struct builder *b, uint64_t tp,
				 const struct reader_type **ret)
{
	static const struct reader_type invalid = { .valid = false };
	*ret = &invalid;
	if (!tp || tp & 7)
		return NULL;
	struct reader_type **found = reader_type_map_search(&b->types, &tp);
	if (found) {
		*ret = *found;
		return NULL;
	}
	struct reader_type *rt = calloc(1, sizeof(*rt));
	struct reader_type **slot = rt ? reader_type_map_insert(&b->types, &tp, NULL) : NULL;
	if (!slot) {
		free(rt);
		return &pm_error_no_memory;
	}
	*slot = rt;
	*ret = rt;
	struct type_head h;
	const struct pm_cpython_type *known = pm_cpython_find_type(b->heap, tp);
	char name[NAME_MAX_LEN];
	if (!type_head_read(b, tp, &h) ||
	    (!known && !type_plausible(b, &h, name, sizeof(name))))
		return NULL;
	rt->valid = true;
	rt->flags = h.flags;
	rt->gc = h.flags & TPFLAG_HAVE_GC;
	rt->heap_type = h.flags & TPFLAG_HEAPTYPE;
	rt->basicsize = h.basicsize;
	rt->itemsize = h.itemsize;
	rt->dictoffset = h.dictoffset;
	rt->weaklistoffset = h.weaklistoffset;
	if (known) {
		rt->name = known->name;
	} else {
		rt->owned_name = strdup(name);
		if (!rt->owned_name)
			return &pm_error_no_memory;
		rt->name = rt->owned_name;
	}
	if (rt->heap_type)
		return heap_reader(b, tp, &h, rt);
	static_reader(b, tp, known ? known->kind : TK_OTHER, rt->name, &h, rt);
	rt->base_dictoffset = h.dictoffset;
	rt->base_basicsize = h.basicsize;
	return NULL;
}

PM_DEFINE_HASH_MAP(count_map, uint64_t, uint32_t, pm_hash_u64_key, pm_u64_key_eq)

/* subtype_dealloc, the tp_dealloc of every class a class statement made:
 * by symbol, else the one most heap types share (C heap types each have
 * their own). */
void reader_types_init(struct builder *b)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(b->t, NULL, "subtype_dealloc", &sym);
	if (!err) {
		b->subtype_dealloc = sym.address;
		return;
	}
	pm_error_destroy(err);
	struct count_map counts = PM_HASH_MAP_INIT;
	uint32_t best = 0;
	for (size_t i = 0; i < b->heap->ntype_table; i++) {
		const struct pm_cpython_type *tp = &b->heap->type_table[i];
		uint64_t dealloc;
		if (!(tp->flags & TPFLAG_HEAPTYPE) ||
		    !builder_word(b, tp->addr + TP_DEALLOC, &dealloc) || !dealloc)
			continue;
		uint32_t *n = count_map_insert(&counts, &dealloc, NULL);
		if (n && ++*n > best) {
			best = *n;
			b->subtype_dealloc = dealloc;
		}
	}
	count_map_deinit(&counts);
}

void reader_types_deinit(struct builder *b)
{
	for (size_t i = 0; i < b->types.capacity; i++) {
		if (!b->types.ctrl[i])
			continue;
		struct reader_type *rt = b->types.entries[i].value;
		slot_vector_deinit(&rt->slots);
		free(rt->owned_name);
		free(rt);
	}
	reader_type_map_deinit(&b->types);
}
