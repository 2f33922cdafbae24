/* The CPython heap analysis in progress, shared by the files that do its
 * parts (not part of the library's interface):
 *   cpython.c             the pipeline: detect, collect, recognise, attribute,
 *                         categorise; the cached result
 *   cpython_allocs.c      every in-use allocation of the walkers, in address order
 *   cpython_types.c       type objects (validated once, cached) and categories
 *   cpython_recognise.c   the object at the start of each allocation
 *   cpython_owned.c       buffers that recognised objects point at
 *   cpython_chains.c      chains of container storage (deque blocks, odict nodes)
 *   cpython_structures.c  interpreter structures no object points at
 *   cpython_inferred.c    unknown allocations one object alone points at
 *   cpython_mmap.c        mmap.mmap objects and the regions they hold
 *   cpython_owned_ext.c, cpython_owned_bz2.c, cpython_owned_zlib.c,
 *   cpython_numpy.c
 *                         extension objects' buffers
 * Facts: shared/reference/cpython-memory.md */
#ifndef PM_CPYTHON_ANALYSIS_H
#define PM_CPYTHON_ANALYSIS_H

#include <stdbool.h>
#include <stdint.h>

#include "cpython.h"
#include "hash_table.h"
#include "pymalloc.h"
#include "vector.h"

enum {
	TPFLAG_HEAPTYPE = 1 << 9,
	TPFLAG_READY = 1 << 12,
	TPFLAG_HAVE_GC = 1 << 14,
	TPFLAG_MANAGED_DICT = 1 << 4,
	STR_STATE = 32,             /* PyASCIIObject.state */
	TYPE_NAME_MAX = 128,
	WINDOW = 224,               /* bytes of a glibc chunk read for recognition */
	DEBUG_HOOK_HEADER = PM_DEBUG_HOOK_HEADER, DEBUG_HOOK_TRAILER = PM_DEBUG_HOOK_TRAILER,
	ALLOC_SLACK = 64,           /* allocator rounding of a sized buffer */
	MMAP_SLACK = 4096 + 64,     /* ... mmapped: rounded to a page */
	CONTAINER_ITEMS_MAX = 1 << 30, /* array/StringIO/odict sizes taken */
	/* _datetimemodule.c: _PyTZINFO_HEAD's hastzinfo, after ob_type and
	 * hashcode (the same in 3.8-3.13) */
	DATETIME_HASTZINFO = 24,
};

/* A type object seen as some object's ob_type: validated once. */
struct type_info {
	uint64_t addr;
	bool valid;
	uint8_t kind;               /* enum type_kind */
	uint64_t flags, basicsize;
	/* Not 0: instances whose hastzinfo byte is 0 are allocated this small
	 * (datetime.time, datetime.datetime). */
	uint64_t short_size;
	uint32_t cat_live, cat_free;
	char *name;
};
PM_DEFINE_HASH_MAP(type_map, uint64_t, struct type_info, pm_hash_u64_key,
		   pm_u64_key_eq)

/* A category's three names, as the category index looks them up. */
struct category_key {
	const char *domain, *kind, *detail;
};
uint64_t category_key_hash(const struct category_key *k);
bool category_key_eq(const struct category_key *x, const struct category_key *y);
PM_DEFINE_HASH_MAP(category_index, struct category_key, uint32_t,
		   category_key_hash, category_key_eq)
PM_DEFINE_VECTOR(category_vector, struct pm_category)

/* A buffer (or chain) that a recognised object points at, attributed once
 * every object is known. */
struct pending {
	uint64_t ptr;
	/* 0: any allocation containing ptr; else the allocation's data must
	 * start at ptr and hold at least size bytes, not much more. */
	uint64_t size;
	uint32_t category;          /* PM_CATEGORY_NONE: owner was rejected */
	/* Not 0: ptr is an object (this enum type_kind) that owns a chain
	 * of allocations, walked after recognition (chains_attribute). */
	uint8_t chain;
	bool owner_gc;              /* the owner's GC head was checked */
	/* ptr is an object of its own that the owner keeps private (a
	 * BytesIO's bytes): it becomes the owner's buffer, no longer an
	 * object, when its allocation is exactly that object's. */
	bool object;
	/* ptr is a C library's own allocation (zlib's window, libbz2's
	 * arrays), found through a state the library's own fields vouch
	 * for: never a Python object, whatever stale header its first
	 * bytes still hold. */
	bool library;
	uint64_t owner;             /* the object whose field points at ptr */
};
PM_DEFINE_VECTOR(pending_vector, struct pending)

/* A GC head of an accepted object: its list links. Pushed in address order,
 * so the array is sorted and neighbours are found by binary search. */
struct gc_link {
	uint64_t gc, next, prev;
};
PM_DEFINE_VECTOR(gc_link_vector, struct gc_link)

/* A GC object accepted before its list neighbours could be checked (they
 * were not in memory at hand); checked after the pass, undone if wrong. */
struct gc_deferred {
	size_t alloc;               /* index in heap->allocs */
	uint64_t gc, next, prev;
	size_t pending_start, pending_end;
	uint8_t offset_index;       /* which of the offsets was accepted */
	bool free_list;
};
PM_DEFINE_VECTOR(gc_deferred_vector, struct gc_deferred)

/* Buffers and structures attributed to an owner, each a category. */
enum owned { OWN_DICT_KEYS, OWN_DICT_VALUES, OWN_LIST_ITEMS, OWN_SET_TABLE,
	     OWN_STR_UTF8, OWN_STR_WSTR, OWN_BYTEARRAY, OWN_STR_TABLE_ENTRY,
	     OWN_RADIX_NODE, OWN_AST_ARENA, OWN_AST_ARENA_BLOCK, OWN_HASHTABLE,
	     OWN_HASHTABLE_BUCKETS, OWN_HASHTABLE_ENTRY, OWN_IO_BUFFER,
	     OWN_INTERP_STATE, OWN_THREAD_STATE, OWN_DEQUE_BLOCK,
	     OWN_ARRAY_BUFFER, OWN_STRINGIO_BUFFER, OWN_ODICT_NODE,
	     OWN_ODICT_FAST_NODES, OWN_TYPE_DOC, OWN_MODULE_STATE,
	     OWN_ELEMENT_EXTRA, OWN_ELEMENT_CHILDREN, OWN_STR_DATA,
	     /* Extension objects' (cpython_owned_ext.c). */
	     OWN_CTYPES_BUFFER, OWN_BYTESIO_BUFFER, OWN_DECIMAL_DIGITS,
	     /* _bz2's (cpython_owned_bz2.c). */
	     OWN_BZ2_STATE, OWN_BZ2_ARRAYS, OWN_BZ2_INPUT, OWN_THREAD_LOCK,
	     /* zlib's (cpython_owned_zlib.c). */
	     OWN_ZLIB_STATE, OWN_ZLIB_WINDOW, OWN_ZLIB_HASH, OWN_ZLIB_PENDING,
	     OWN_ZLIB_INPUT,
	     /* _lzma's (cpython_owned_lzma.c). */
	     OWN_LZMA_STATE, OWN_LZMA_INPUT,
	     /* Not CPython's: the dynamic loader's (domain "ld.so"). */
	     OWN_LINK_MAP, OWN_LINK_MAP_NAME,
	     /* numpy's (domain "numpy", cpython_numpy.c). */
	     OWN_NUMPY_DATA, OWN_NUMPY_DIMS, OWN_NUMPY_STRINGS, OWN_KINDS };

/* A chain of allocations being walked: each claimed (given its category)
 * as it is reached, so a cycle finds its own start taken; all released
 * if the chain turns out wrong. */
struct chain_link {
	struct pm_alloc *alloc;
	uint64_t start;
};
PM_DEFINE_VECTOR(chain_vector, struct chain_link)

/* A hashtable entry candidate (a chunk) whose key must turn out to be a
 * str (cpython_structures.c). */
struct str_entry {
	size_t alloc;               /* index in heap->allocs */
	uint64_t key;
};
PM_DEFINE_VECTOR(str_entry_vector, struct str_entry)

PM_DEFINE_VECTOR(alloc_vector, struct pm_alloc)

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
	struct chain_vector chain;
	uint64_t chain_owner;       /* the deque or OrderedDict being walked */
	uint64_t owner_now;         /* the object whose buffers are pended */
	bool owner_gc_now;          /* ... is a GC object */
	struct type_map types;
	/* heap->categories is this vector's data (category_add keeps them
	 * equal); the index finds a category by its names. */
	struct category_vector categories;
	struct category_index category_index;
	struct alloc_vector allocs; /* while collecting; then heap->allocs */
	struct pending_vector pending;
	struct gc_link_vector links;
	struct gc_deferred_vector deferred;
	struct str_entry_vector str_entries;
	bool no_defer;              /* check GC neighbours at once */
	bool no_defer_pass;         /* re-recognising after a failed check */
	uint32_t cat_owned[OWN_KINDS]; /* "dict keys", ... (enum owned) */
	/* The pymalloc pool currently in buf. */
	const struct pm_pymalloc_pool *pool;
	uint8_t *pool_buf;
	uint8_t window[WINDOW];
};

/* Where the data of an allocation starts (after debug-hook headers) and
 * what it can hold. */
struct alloc_data {
	uint64_t start, usable;
};

/* cpython.c */
void analysis_note(struct pm_cpython_heap *heap, const char *fmt,
		   const char *what);

/* cpython_allocs.c */
struct pm_error *allocs_collect(struct analysis *a);
/* What the program may store from alloc->addr on (debug hooks included). */
uint64_t alloc_usable(const struct pm_alloc *alloc);
struct alloc_data alloc_data_of(const struct analysis *a,
				const struct pm_alloc *alloc);
/* The unattributed allocation whose data starts exactly at ptr, or NULL. */
struct pm_alloc *alloc_unknown_at(struct analysis *a, uint64_t ptr,
				  struct alloc_data *ret);
/* The unknown allocation holding exactly one structure of size bytes at
 * ptr (its data starts there; allocator rounding aside), or NULL. */
struct pm_alloc *alloc_unknown_sized(struct analysis *a, uint64_t ptr,
				     uint64_t size);

/* cpython_types.c */
struct pm_error *types_find_static(struct analysis *a);
/* The cached verdict on a type pointer; *ret NULL when it is not a type. */
struct pm_error *type_get(struct analysis *a, uint64_t tp,
			  const struct type_info **ret);
/* The id of category (domain, kind, detail), created on first use. */
struct pm_error *category_get(struct analysis *a, const char *domain,
			      const char *kind, const char *detail,
			      uint32_t *ret);

/* cpython_recognise.c */
/* A word of target memory, from the current pool buffer when it is there. */
bool analysis_read_word(struct analysis *a, uint64_t addr, uint64_t *ret);
/* Whether addr is in an executable mapping (a C function's code). */
bool analysis_executable(const struct analysis *a, uint64_t addr);
/* n words at addr, false when any is unreadable. */
bool analysis_read_words(struct analysis *a, uint64_t addr, size_t n,
			 uint64_t *words);
/* Recognises the object at the start of every allocation, then checks the
 * GC neighbours of those accepted with a neighbour out of reach. */
struct pm_error *recognise_objects(struct analysis *a);

/* cpython_owned.c */
/* Buffers owned by a recognised object: obj is its address, b its bytes
 * (avail of them), pre the bytes before it in the same allocation. */
struct pm_error *owned_pend_object(struct analysis *a,
				   const struct type_info *ti, uint64_t obj,
				   const uint8_t *b, size_t avail, size_t pre);
/* Records that the allocation containing ptr belongs to the object now
 * being recognised (or to none) as a buffer of kind what. */
struct pm_error *owned_pend(struct analysis *a, uint64_t ptr, enum owned what);
/* The same for an allocation whose data starts at ptr and holds size
 * bytes (give or take the allocator's rounding). */
struct pm_error *owned_pend_sized(struct analysis *a, uint64_t ptr,
				  uint64_t size, enum owned what);
/* Gives every pended buffer its owner's category. */
struct pm_error *owned_resolve(struct analysis *a);
/* Records that owner's field (or chain) leads to the allocation alloc. */
struct pm_error *owned_record_owner(struct analysis *a,
				    const struct pm_alloc *alloc,
				    uint64_t owner);

/* cpython_owned_ext.c */
/* Pends the buffer a ctypes instance, a BytesIO or a Decimal (avail bytes
 * in b) owns. */
struct pm_error *ext_cdata_owned(struct analysis *a, uint64_t obj,
				 const uint8_t *b, size_t avail);
struct pm_error *ext_bytesio_owned(struct analysis *a, const uint8_t *b,
				   size_t avail);
struct pm_error *ext_decimal_owned(struct analysis *a, uint64_t obj,
				   const uint8_t *b, size_t avail);
/* Records that the private object at ptr, whose allocation holds size
 * bytes, is a buffer of the object being recognised. */
struct pm_error *owned_pend_object_buffer(struct analysis *a, uint64_t ptr,
					  uint64_t size, enum owned what);

/* Records that the owner's C library allocated size bytes at ptr for
 * itself (struct pending's library). */
struct pm_error *owned_pend_library(struct analysis *a, uint64_t ptr,
				    uint64_t size, enum owned what);

/* cpython_owned_bz2.c */
/* Pends the libbz2 stream state, its block arrays, the lock and the
 * unused input that a BZ2Compressor or BZ2Decompressor (avail bytes in b)
 * owns. */
struct pm_error *bz2_owned(struct analysis *a, uint64_t obj, const uint8_t *b,
			   size_t avail, bool decompressor);

/* cpython_owned_zlib.c */
/* zlib.Compress's and zlib.Decompress's basicsize, and 3.12+'s
 * zlib._ZlibDecompressor's: the same in 3.8-3.15. */
enum { ZLIB_OBJECT_SIZE = 168, ZLIB_DECOMPRESSOR_SIZE = 184 };
/* Pends the zlib stream state and its buffers, the lock and the unread
 * input that a zlib.Compress, zlib.Decompress or zlib._ZlibDecompressor
 * (kind TK_ZLIB_*; avail bytes in b) owns. */
struct pm_error *zlib_owned(struct analysis *a, uint64_t obj, const uint8_t *b,
			    size_t avail, uint8_t kind);

/* cpython_owned_lzma.c */
/* _lzma.LZMACompressor's basicsize (3.15's lock is an inline PyMutex) and
 * _lzma.LZMADecompressor's. */
enum { LZMA_COMPRESSOR_SIZE = 192, LZMA_COMPRESSOR_SIZE_315 = 184,
       LZMA_DECOMPRESSOR_SIZE = 224 };
/* Pends the liblzma stream state, the lock and the unread input that an
 * LZMACompressor or LZMADecompressor (avail bytes in b) owns. */
struct pm_error *lzma_owned(struct analysis *a, uint64_t obj, const uint8_t *b,
			    size_t avail, bool decompressor);

/* cpython_numpy.c */
/* Whether a type is numpy.ndarray itself; whether a basicsize can be an
 * ndarray's (for its subclasses' bases). */
bool numpy_array_type(const char *name, uint64_t basicsize);
bool numpy_array_size(uint64_t basicsize);
/* Pends the data and dims/strides block that an ndarray (avail bytes in
 * b) owns. */
/* Whether tp, at the start of an allocation, may be a dtype class; whether
 * ti is their metatype (its instances have no GC head). */
bool numpy_dtype_class_type(const struct type_info *ti);
bool numpy_dtype_class_possible(struct analysis *a, uint64_t tp);
struct pm_error *numpy_array_owned(struct analysis *a, const uint8_t *b,
				   size_t avail);

/* cpython_mmap.c */
/* Whether an instance of a type named mmap.mmap is this large in the
 * interpreter's minor version (its struct is the one read). */
bool mmap_object_size(int minor, uint64_t basicsize);
/* Once the objects are known and heap->type_table kept: finds the open
 * mmap.mmap objects (heap->mmaps) and labels the regions they hold. */
struct pm_error *mmap_objects_find(struct pm_target *t,
				   struct pm_cpython_heap *heap);

/* cpython_chains.c */
struct pm_error *chains_attribute(struct analysis *a);

/* cpython_structures.c */
/* A chunk that may be a hashtable entry of interned strs, keyed by key. */
struct pm_error *structures_str_entry_push(struct analysis *a, size_t alloc,
					   uint64_t key);
struct pm_error *structures_resolve_str_entries(struct analysis *a);
struct pm_error *structures_attribute(struct analysis *a);

/* cpython_inferred.c */
/* At the analysis's end: whether the inference is to run (not with
 * pm_options.precise), and what it needs of the analysis. */
void inferred_defer(struct analysis *a);
/* Gives each unknown glibc allocation that only one live object's tree
 * points at to that object, labelled inferred; run once, on a finished
 * analysis, by the first report that shows labels (pm_cpython_analyse). */
struct pm_error *inferred_attribute(struct pm_target *t, struct pm_cpython_heap *heap);

/* The address index of heap->allocs (NULL on no memory: then lookups
 * search the whole array); destroy takes NULL. */
struct pm_alloc_index *pm_alloc_index_build(const struct pm_cpython_heap *heap);
void pm_alloc_index_destroy(struct pm_alloc_index *index);

#endif
