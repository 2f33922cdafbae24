/* Buffers that recognised objects own: while an object is recognised its
 * fields are read and the allocations they point at are pended (a list's
 * item array, a dict's keys, ...); once every object is known the pended
 * buffers are given their owner's category and owner, when the allocation
 * there is what the field says (exact start and size where known). */
#include "bytes.h"
#include "cpython_analysis.h"

#include <stdlib.h>
#include <string.h>

enum {
	STR_LENGTH = 16,            /* PyASCIIObject.length */
	BUFFERED_SIZE_MAX = 1 << 30, /* an _io buffer_size taken as plausible */
	TYPE_DOC_MAX = 1 << 20,     /* a docstring's allocation, at most */
	MODULE_STATE_MAX = 1 << 30, /* a PyModuleDef.m_size taken */
};

/* Records that the allocation at ptr (exactly, holding size bytes, when
 * size is not 0) belongs to an object just recognised (undone with it). */
static struct pm_error *pend_sized(struct analysis *a, uint64_t ptr,
				   uint64_t size, enum owned what)
{
	if (!ptr)
		return NULL;
	struct pending p = { .ptr = ptr, .size = size,
			     .category = a->cat_owned[what], .owner = a->owner_now,
			     .owner_gc = a->owner_gc_now };
	return pending_vector_append(&a->pending, &p) ? NULL : &pm_error_no_memory;
}

struct pm_error *owned_pend(struct analysis *a, uint64_t ptr, enum owned what)
{
	return pend_sized(a, ptr, 0, what);
}

struct pm_error *owned_pend_sized(struct analysis *a, uint64_t ptr,
				  uint64_t size, enum owned what)
{
	return pend_sized(a, ptr, size, what);
}

/* A sized pend (none for size 0) of a private object (object) or of a
 * C library's own allocation (struct pending's object and library). */
static struct pm_error *pend_marked(struct analysis *a, uint64_t ptr,
				    uint64_t size, enum owned what, bool object)
{
	struct pm_error *err = size ? pend_sized(a, ptr, size, what) : NULL;
	if (!err && size && ptr) {
		struct pending *p = &a->pending.data[a->pending.size - 1];
		p->object = object;
		p->library = !object;
	}
	return err;
}

struct pm_error *owned_pend_library(struct analysis *a, uint64_t ptr,
				    uint64_t size, enum owned what)
{
	return pend_marked(a, ptr, size, what, false);
}

struct pm_error *owned_pend_object_buffer(struct analysis *a, uint64_t ptr,
					  uint64_t size, enum owned what)
{
	return pend_marked(a, ptr, size, what, true);
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
		a->pending.data[a->pending.size - 1].chain = (uint8_t)kind;
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
	    !analysis_read_word(a, field(b, avail, l->array_descr), &descr))
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
	struct pm_error *err = owned_pend(a, field(b, avail, l->dict_keys), OWN_DICT_KEYS);
	if (!err)
		err = owned_pend(a, field(b, avail, l->dict_values), OWN_DICT_VALUES);
	uint64_t nodes = field(b, avail, l->odict_fast_nodes_size);
	if (!err && nodes && nodes <= CONTAINER_ITEMS_MAX)
		err = pend_sized(a, field(b, avail, l->odict_fast_nodes), nodes * 8,
				 OWN_ODICT_FAST_NODES);
	return err ? err : pend_chain(a, obj, TK_ODICT, OWN_ODICT_NODE);
}



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
	if (!analysis_read_word(a, obj + l->tp_flags, &flags) ||
	    !(flags & TPFLAG_HEAPTYPE))
		return NULL;
	struct pm_error *err = NULL;
	if (analysis_read_word(a, obj + l->ht_cached_keys, &keys))
		err = owned_pend(a, keys, OWN_DICT_KEYS);
	if (!err && analysis_read_word(a, obj + l->tp_doc, &doc) && doc)
		err = type_doc_owned(a, doc);
	return err;
}

/* A module's state: md_def->m_size bytes from PyMem_Malloc (m_size is
 * read from the definition, static data of the module's library; 3.15
 * keeps the size in the module as md_state_size). */
static struct pm_error *module_owned(struct analysis *a, const uint8_t *b,
				     size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t state = field(b, avail, l->module_state), size;
	if (l->module_state_size) {
		size = field(b, avail, l->module_state_size);
	} else {
		uint64_t def = field(b, avail, l->module_def);
		if (!def || def & 7 ||
		    !analysis_read_word(a, def + l->moduledef_size, &size))
			return NULL;
	}
	if (!state || !size || size > MODULE_STATE_MAX)
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
	    !analysis_read_word(a, extra + l->element_extra_length, &length) ||
	    !analysis_read_word(a, extra + l->element_extra_allocated, &allocated) ||
	    !analysis_read_word(a, extra + l->element_extra_children, &children) ||
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
		err = owned_pend(a, field(b, avail, l->str_utf8), OWN_STR_UTF8);
	if (!err && l->str_wstr >= 0)
		err = owned_pend(a, field(b, avail, (uint32_t)l->str_wstr), OWN_STR_WSTR);
	return err;
}

/* A str subclass's instance is never compact: its characters are an
 * allocation of their own, (length + 1) * kind bytes (unicode_subtype_new),
 * which the UTF-8 form (and before 3.12 the wchar_t form) shares when the
 * encodings agree; a separate UTF-8 or wchar_t copy is pended as well. */
static struct pm_error *str_subclass_owned(struct analysis *a, const uint8_t *b,
					   size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	if (STR_STATE + 4 > avail || l->str_data + 8 > avail)
		return NULL;
	uint32_t state = pm_load_u32(b + STR_STATE);
	int64_t length = (int64_t)pm_load_u64(b + STR_LENGTH);
	uint32_t kind = (state >> 2) & 7;
	if (state & (1u << 5))      /* compact: as an exact str */
		return str_owned(a, b, avail);
	if (length < 0 || length >= CONTAINER_ITEMS_MAX ||
	    (kind != 1 && kind != 2 && kind != 4))
		return NULL;
	struct pm_error *err = pend_sized(a, field(b, avail, l->str_data),
					  ((uint64_t)length + 1) * kind, OWN_STR_DATA);
	if (!err)
		err = owned_pend(a, field(b, avail, l->str_utf8), OWN_STR_UTF8);
	if (!err && l->str_wstr >= 0)
		err = owned_pend(a, field(b, avail, (uint32_t)l->str_wstr), OWN_STR_WSTR);
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
		return owned_pend(a, v, OWN_DICT_VALUES);
	return v & 1 ? owned_pend(a, v + 1, OWN_DICT_VALUES) : NULL;
}

struct pm_error *owned_pend_object(struct analysis *a,
				     const struct type_info *ti, uint64_t obj,
				     const uint8_t *b, size_t avail, size_t pre)
{
	const struct pm_cpython_layout *l = a->l;
	a->owner_now = obj;
	a->owner_gc_now = ti->flags & TPFLAG_HAVE_GC;
	struct pm_error *err = managed_values_owned(a, ti, b, pre);
	if (err)
		return err;
	switch (ti->kind) {
	case TK_LIST:
		return owned_pend(a, field(b, avail, l->list_items), OWN_LIST_ITEMS);
	case TK_DICT:
		err = owned_pend(a, field(b, avail, l->dict_keys), OWN_DICT_KEYS);
		return err ? err : owned_pend(a, field(b, avail, l->dict_values),
					OWN_DICT_VALUES);
	case TK_SET: {
		uint64_t table = field(b, avail, l->set_table);
		return table == obj + l->set_smalltable ? NULL :
			owned_pend(a, table, OWN_SET_TABLE);
	}
	case TK_STR:
		return str_owned(a, b, avail);
	case TK_STR_SUB:
		return str_subclass_owned(a, b, avail);
	case TK_BYTEARRAY:
		return l->bytearray_bytes ?
			owned_pend(a, field(b, avail, l->bytearray_bytes), OWN_BYTEARRAY) : NULL;
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
	case TK_NDARRAY:
		return numpy_array_owned(a, b, avail);
	case TK_CDATA:
		return ext_cdata_owned(a, obj, b, avail);
	case TK_BYTESIO:
		return ext_bytesio_owned(a, b, avail);
	case TK_DECIMAL:
		return ext_decimal_owned(a, obj, b, avail);
	case TK_BZ2_COMPRESSOR:
	case TK_BZ2_DECOMPRESSOR:
		return bz2_owned(a, obj, b, avail, ti->kind == TK_BZ2_DECOMPRESSOR);
	case TK_ZLIB_COMPRESS:
	case TK_ZLIB_DECOMPRESS:
	case TK_ZLIB_DECOMPRESSOR:
		return zlib_owned(a, obj, b, avail, ti->kind);
	case TK_LZMA_COMPRESSOR:
	case TK_LZMA_DECOMPRESSOR:
		return lzma_owned(a, obj, b, avail, ti->kind == TK_LZMA_DECOMPRESSOR);
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

/* The type of the object recognised at obj, or NULL (unreadable, not a
 * type). */
static const struct type_info *object_type(struct analysis *a, uint64_t obj)
{
	uint64_t tp;
	const struct type_info *ti;
	if (!analysis_read_word(a, obj + 8, &tp))
		return NULL;
	struct pm_error *err = type_get(a, tp, &ti);
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	return ti;
}

/* A buffer's first words can pass for a plain object (no GC head, so at
 * offset 0, owning nothing): a module state often holds a heap type's
 * pointer at word 1; a list's item array reuses a block whose old int
 * header is still there after the first item (an item pointer below 2^40,
 * as in a non-PIE interpreter, passes for a refcount). A live GC object
 * (its GC links checked) pointing at exactly that start as its buffer is
 * the better reading: the plain object is given up. */
static bool plain_object_yields(struct analysis *a, const struct pending *p,
				struct pm_alloc *alloc)
{
	if (!p->owner_gc || alloc->category == PM_CATEGORY_NONE ||
	    alloc->addr + alloc->object_offset != p->ptr ||
	    !pending_fits(a, p, alloc))
		return false;
	const struct type_info *ti = object_type(a, p->ptr);
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

struct pm_error *owned_record_owner(struct analysis *a,
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
	if (!alloc || alloc->addr != alloc_addr)
		return 0;
	size_t i = (size_t)(alloc - heap->allocs);
	uint64_t owner = heap->owners ? heap->owners[i] : 0;
	return owner || !heap->inferred_owners ? owner : heap->inferred_owners[i];
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

/* An object recognised at the start of a pending buffer gives way to it
 * when the allocation is exactly the buffer's size and:
 *   - the owner keeps the object private (a BytesIO's bytes, pended with
 *     .object once its refcount said only the owner holds it): it is the
 *     owner's buffer, as CPython's own __sizeof__ counts it;
 *   - the buffer is a C library's own (pended with .library): what reads
 *     as a plain object at offset 0 is the stale header of a bytes or str
 *     freed into the same chunk before the library took it (a fresh zlib
 *     window is not written until data comes), live or on a free list.
 *     GC objects are never given up: their GC head puts them at offset
 *     16, never at the start the library pointed at. */
static bool pended_object_yields(struct analysis *a, const struct pending *p,
				 struct pm_alloc *alloc)
{
	if ((!p->object && !p->library) ||
	    alloc->category >= a->heap->ncategories ||
	    alloc->addr + alloc->object_offset != p->ptr ||
	    !pending_fits(a, p, alloc))
		return false;
	const struct pm_category *c = &a->heap->categories[alloc->category];
	if (strcmp(c->domain, "python"))
		return false;
	if (!strcmp(c->detail, "-"))
		a->heap->objects--;
	else if (p->library && !strcmp(c->detail, "free list"))
		a->heap->free_list_objects--;
	else
		return false;
	alloc->category = PM_CATEGORY_NONE;
	alloc->object_offset = 0;
	return true;
}

/* A sized buffer covers its first p->size bytes: an object recognised
 * further into the same allocation, its header inside those bytes, is a
 * stale header the buffer's writes left in part (numpy's calloc'd data
 * zeroes only the bytes it asked for: a freed lock's header 32 bytes in,
 * its GC head zeroed, its refcount's low bytes cleared, still reads as an
 * untracked lock). The live owner's word for its buffer is the better
 * reading, unless the object's GC head is linked into a GC list (a live
 * object's links, checked against its neighbours, are never stale) or it
 * may own buffers of its own: only a plain object, or an untracked one
 * whose pre-header is empty, is given up. */
static bool covered_object_yields(struct analysis *a, const struct pending *p,
				  struct pm_alloc *alloc)
{
	uint64_t obj = alloc->addr + alloc->object_offset;
	if (!p->size || !p->owner || alloc->category >= a->heap->ncategories ||
	    obj <= p->ptr || obj - p->ptr >= p->size || !pending_fits(a, p, alloc))
		return false;
	const struct pm_category *c = &a->heap->categories[alloc->category];
	if (strcmp(c->domain, "python") || strcmp(c->detail, "-"))
		return false;
	const struct type_info *ti = object_type(a, obj);
	if (!ti || ti->kind != TK_OTHER || alloc->category != ti->cat_live)
		return false;
	/* Its GC head (before it) untracked; its pre-header (before that:
	 * a managed dict's values and dict, a managed weakref list) empty,
	 * so it pended nothing of its own. */
	bool gc = ti->flags & TPFLAG_HAVE_GC;
	uint64_t gc_head = obj - 16, gc_next, pre[2];
	uint64_t preheader = (gc ? gc_head : obj) - 16;
	if (gc && (!analysis_read_word(a, gc_head, &gc_next) || gc_next))
		return false;
	if (ti->flags & a->l->preheader_flags &&
	    (preheader < alloc->addr ||
	     !analysis_read_words(a, preheader, 2, pre) || pre[0] || pre[1]))
		return false;
	a->heap->objects--;
	alloc->category = PM_CATEGORY_NONE;
	alloc->object_offset = 0;
	return true;
}

struct pm_error *owned_resolve(struct analysis *a)
{
	for (size_t i = 0; i < a->pending.size; i++) {
		if (a->pending.data[i].category == PM_CATEGORY_NONE ||
		    a->pending.data[i].chain)
			continue;
		struct pm_alloc *alloc = (struct pm_alloc *)
			pm_cpython_find_alloc(a->heap, a->pending.data[i].ptr);
		if (alloc && !pended_object_yields(a, &a->pending.data[i], alloc) &&
		    !plain_object_yields(a, &a->pending.data[i], alloc) &&
		    !covered_object_yields(a, &a->pending.data[i], alloc))
			free_object_yields(a, &a->pending.data[i], alloc);
		if (alloc && alloc->category == PM_CATEGORY_NONE &&
		    pending_fits(a, &a->pending.data[i], alloc)) {
			alloc->category = a->pending.data[i].category;
			/* A buffer is listed at its data (after a debug
			 * header): a sized one's pending_fits found at ptr. */
			uint64_t start = a->pending.data[i].size ? a->pending.data[i].ptr :
				alloc_data_of(a, alloc).start;
			alloc->object_offset = (uint8_t)(start - alloc->addr);
			a->heap->attributed++;
			struct pm_error *err = owned_record_owner(a, alloc,
							    a->pending.data[i].owner);
			if (err)
				return err;
		}
	}
	return NULL;
}

