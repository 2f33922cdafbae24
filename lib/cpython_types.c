/* Type objects and categories of the CPython analysis: every ob_type word
 * that may be a type is validated once (rules 1-4 of
 * shared/reference/cpython-memory.md) and cached with what kind of object
 * its instances are; every summary row is a category, found by its names. */
#include "bytes.h"
#include "cpython_analysis.h"

#include <stdlib.h>
#include <string.h>

enum {
	TYPE_CHAIN_MAX = 3,         /* ob_type hops from a type to PyType_Type */
	BASE_CHAIN_MAX = 64,        /* tp_base hops */
	BASICSIZE_MAX = 1 << 20,
};

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

/* The category names of enum owned. */
static const char *const owned_names[OWN_KINDS] = {
	"dict keys", "dict values", "list items", "set table", "str utf8",
	"str wstr", "bytearray buffer", "str hashtable entry",
	"pymalloc radix tree node", "AST arena", "AST arena block",
	"hashtable", "hashtable buckets", "hashtable entry", "io buffer",
	"interpreter state", "thread state", "deque block", "array buffer",
	"stringio buffer", "odict node", "odict fast nodes", "type doc",
	"module state", "element extra", "element children", "str data",
	"ctypes buffer", "bytesio buffer", "decimal digits",
	"bz2 stream state", "bz2 block arrays", "bz2 input buffer",
	"thread lock",
	"zlib stream state", "zlib window", "zlib hash chains",
	"zlib pending buffer", "zlib input buffer",
	"lzma stream state", "lzma input buffer",
	"link_map", "link_map name", "numpy data", "numpy dims/strides",
	"numpy strings",
};

/* ---- categories ---------------------------------------------------- */

uint64_t category_key_hash(const struct category_key *k)
{
	uint64_t h = pm_hash_string(PM_HASH_STRING_SEED, k->domain);
	h = pm_hash_string(h, k->kind);
	return pm_hash_string(h, k->detail);
}

bool category_key_eq(const struct category_key *x, const struct category_key *y)
{
	return !strcmp(x->domain, y->domain) && !strcmp(x->kind, y->kind) &&
	       !strcmp(x->detail, y->detail);
}

/* A new category with copies of the names; heap->categories follows the
 * vector that holds them. */
static struct pm_error *category_add(struct analysis *a,
				     const struct category_key *key,
				     uint32_t *ret)
{
	struct pm_category c = { .domain = strdup(key->domain),
				 .kind = strdup(key->kind),
				 .detail = strdup(key->detail) };
	if (!c.domain || !c.kind || !c.detail ||
	    a->categories.size >= PM_CATEGORY_NONE ||
	    !category_vector_append(&a->categories, &c)) {
		free(c.domain);
		free(c.kind);
		free(c.detail);
		return &pm_error_no_memory;
	}
	a->heap->categories = a->categories.data;
	a->heap->ncategories = a->categories.size;
	*ret = (uint32_t)(a->categories.size - 1);
	return NULL;
}

struct pm_error *category_get(struct analysis *a, const char *domain,
			      const char *kind, const char *detail,
			      uint32_t *ret)
{
	struct category_key key = { domain, kind, detail };
	const uint32_t *found = category_index_search(&a->category_index, &key);
	if (found) {
		*ret = *found;
		return NULL;
	}
	struct pm_error *err = category_add(a, &key, ret);
	if (err)
		return err;
	/* The index keeps the category's own copies of the names. */
	const struct pm_category *c = &a->categories.data[*ret];
	key = (struct category_key){ c->domain, c->kind, c->detail };
	uint32_t *slot = category_index_insert(&a->category_index, &key, NULL);
	if (!slot)
		return &pm_error_no_memory;
	*slot = *ret;
	return NULL;
}

/* ---- types --------------------------------------------------------- */

/* A type's name is UTF-8 text without control characters (CPython makes
 * tp_name from a str's UTF-8): a candidate whose name is not (a freed or
 * overwritten type object, "\xff\xff\xff\xff" once) is no type. */
bool pm_type_name_printable(const char *s)
{
	if (!*s)
		return false;
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p;
		if (c < 0x20 || c == 0x7f)
			return false;
		int more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 :
			   (c & 0xf8) == 0xf0 ? 3 : -1;
		if (more < 0 || (more == 1 && c < 0xc2) || (more == 3 && c > 0xf4))
			return false;       /* not a lead byte, or an overlong or too large one */
		p++;
		for (int k = 0; k < more; k++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;   /* cut short (the NUL ends it too) */
	}
	return true;
}

bool pm_category_buffer_domain(const char *domain)
{
	return !strcmp(domain, "cpython") || !strcmp(domain, "ld.so") ||
	       !strcmp(domain, "numpy");
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
		/* Every ctypes type (Structure, Union, Array, _SimpleCData,
		 * _Pointer, CFuncPtr and their subclasses) derives from it. */
		{ "_ctypes._CData", TK_CDATA, l->cdata_size },
		{ "_io.BytesIO", TK_BYTESIO, l->bytesio_size },
		{ "decimal.Decimal", TK_DECIMAL, l->decimal_size },
		{ "_bz2.BZ2Compressor", TK_BZ2_COMPRESSOR, l->bz2_compressor_size },
		{ "_bz2.BZ2Decompressor", TK_BZ2_DECOMPRESSOR,
		  l->bz2_decompressor_size },
		{ "zlib.Compress", TK_ZLIB_COMPRESS, ZLIB_OBJECT_SIZE },
		{ "zlib.Decompress", TK_ZLIB_DECOMPRESS, ZLIB_OBJECT_SIZE },
		{ "zlib._ZlibDecompressor", TK_ZLIB_DECOMPRESSOR,
		  ZLIB_DECOMPRESSOR_SIZE },
		{ "_lzma.LZMACompressor", TK_LZMA_COMPRESSOR,
		  l->minor >= 15 ? LZMA_COMPRESSOR_SIZE_315 : LZMA_COMPRESSOR_SIZE },
		{ "_lzma.LZMADecompressor", TK_LZMA_DECOMPRESSOR,
		  LZMA_DECOMPRESSOR_SIZE },
	};
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (basicsize == named[i].size && !strcmp(name, named[i].name))
			return named[i].kind;
	/* Its struct's size differs between patch releases (cpython_mmap.c). */
	if (mmap_object_size(l->minor, basicsize) && !strcmp(name, "mmap.mmap"))
		return TK_MMAP;
	return numpy_array_type(name, basicsize) ? TK_NDARRAY : TK_OTHER;
}

/* named_kind of a base type (not validated itself: read as untrusted,
 * its name only when its size is one of the named ones). */
static uint8_t base_named_kind(struct analysis *a, uint64_t tp)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t size, name_ptr;
	if (!analysis_read_word(a, tp + l->tp_basicsize, &size) ||
	    (size != l->deque_size && size != l->array_size &&
	     size != l->stringio_size && size != l->odict_size &&
	     size != l->cdata_size && size != l->bytesio_size &&
	     size != l->decimal_size && size != l->bz2_compressor_size &&
	     size != l->bz2_decompressor_size && size != ZLIB_OBJECT_SIZE &&
	     size != ZLIB_DECOMPRESSOR_SIZE &&
	     !mmap_object_size(l->minor, size) &&
	     !numpy_array_size(size)) ||
	    !analysis_read_word(a, tp + l->tp_name, &name_ptr))
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

/* Types whose instances may be allocated smaller than tp_basicsize:
 * _datetime's time_alloc and datetime_alloc leave out the tzinfo pointer
 * of a naive instance (sizeof(_PyDateTime_BaseTime) and
 * sizeof(_PyDateTime_BaseDateTime)). Only the exact types: subclasses
 * allocate through PyType_GenericAlloc, at full size. */
static uint64_t short_instance_size(const struct type_info *ti)
{
	static const struct { const char *name; uint64_t basicsize, naive; } types[] = {
		{ "datetime.time", 40, 32 },
		{ "datetime.datetime", 48, 40 },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (ti->basicsize == types[i].basicsize &&
		    !strcmp(ti->name, types[i].name))
			return types[i].naive;
	return 0;
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
	if (!pm_type_name_printable(name))
		return NULL;
	ti->name = strdup(name);
	if (!ti->name)
		return &pm_error_no_memory;
	ti->kind = type_kind_of(a, ti);
	if (ti->kind == TK_OTHER && buffered_type(a, ti))
		ti->kind = TK_BUFFERED;
	ti->short_size = short_instance_size(ti);
	ti->valid = true;
	a->heap->types++;
	return type_categories(a, ti);
}

/* Cheap rule before any read or cache entry (most candidate words are GC
 * links and data, not types): a type object is static (module data) or a
 * heap type (> 512 bytes, so a glibc chunk, at the chunk's user start plus
 * its GC head and up to two debug-hook headers); never in a pymalloc pool.
 * numpy's dtype classes are the exception: static types copied to the
 * start of a glibc chunk. */
static bool type_address_possible(struct analysis *a, uint64_t tp)
{
	if (a->pm && a->pm->found && pm_pymalloc_find_pool(a->pm, tp))
		return false;
	const struct pm_alloc *alloc = pm_cpython_find_alloc(a->heap, tp);
	if (!alloc)
		return true;
	uint64_t off = tp - alloc->addr;
	return alloc->kind != PM_ALLOC_PYMALLOC &&
	       (off == 16 || off == 32 || off == 48 ||
		(off == 0 && numpy_dtype_class_possible(a, tp)));
}

struct pm_error *type_get(struct analysis *a, uint64_t tp,
			  const struct type_info **ret)
{
	*ret = NULL;
	if (!tp || tp & 7)
		return NULL;
	struct type_info *ti = type_map_search(&a->types, &tp);
	if (!ti) {
		if (!type_address_possible(a, tp))
			return NULL;
		bool fresh;
		ti = type_map_insert(&a->types, &tp, &fresh);
		if (!ti)
			return &pm_error_no_memory;
		ti->addr = tp;
		struct pm_error *err = type_inspect(a, ti);
		if (err)
			return err;
	}
	if (ti->valid)
		*ret = ti;
	return NULL;
}

struct pm_error *types_find_static(struct analysis *a)
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
		if ((err = category_get(a, i >= OWN_NUMPY_DATA ? "numpy" :
					i >= OWN_LINK_MAP ? "ld.so" : "cpython",
					owned_names[i], "-", &a->cat_owned[i])))
			return err;
	return NULL;
}
