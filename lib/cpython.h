/* CPython objects in the heap: per-version layouts, recognition of objects in
 * every in-use allocation (pymalloc blocks, glibc chunks), attribution of the
 * buffers objects own (dict keys, list items, ...), and the categories that
 * the summary report prints. Facts: shared/reference/cpython-memory.md */
#ifndef PM_CPYTHON_H
#define PM_CPYTHON_H

#include <stdbool.h>
#include <stdint.h>

#include "python_version.h"
#include "target.h"

/* Offsets and flags of one CPython minor version (x86-64). */
struct pm_cpython_layout {
	int minor;
	/* PyTypeObject */
	uint32_t tp_name, tp_basicsize, tp_itemsize, tp_flags, tp_base;
	uint32_t tp_doc;            /* a heap type's: its own allocation */
	uint32_t ht_cached_keys;
	/* tp_flags bits that put a 16-byte pre-header before the GC head */
	uint64_t preheader_flags;
	bool immortal;              /* 3.12+: refcnt < 0 as int32 is immortal */
	/* 3.14+: the refcount word is {u32 ob_refcnt, u16 ob_overflow, u16
	 * ob_flags}: the flags (immortal, statically allocated) may be set
	 * in its top bits; ob_overflow stays 0 in GIL builds. */
	bool refcnt_flags;
	/* Owned-buffer pointers inside objects */
	uint32_t list_items, dict_keys, dict_values, set_table, set_smalltable;
	uint32_t bytearray_bytes;   /* 0: 3.15+, the data is a bytes object's */
	uint32_t str_ascii_size;    /* sizeof(PyASCIIObject) */
	uint32_t str_utf8;          /* PyCompactUnicodeObject.utf8 */
	uint32_t str_data;          /* PyUnicodeObject.data: a subclass's characters */
	int32_t str_wstr;           /* PyASCIIObject.wstr, -1 when absent */
	/* Pre-header words, relative to the object: values and dict pointers of
	 * a managed dict (0 = none in this version). */
	int32_t managed_values, managed_dict;
	bool managed_values_tagged; /* 3.12: values stored as pointer - 1, tag bit 0 */
	/* PyArena (Python/pyarena.c: the compiler's AST arena) and its blocks:
	 * the main script's arena lives as long as the script runs. */
	uint32_t arena_head, arena_cur, arena_objects, arena_size;
	uint32_t block_size, block_offset, block_next, block_mem, block_header;
	/* _Py_hashtable_t (Python/hashtable.c, 3.8: Modules/hashtable.c) */
	uint32_t hashtable_nentries, hashtable_nbuckets, hashtable_buckets,
		hashtable_hash_func, hashtable_compare_func, hashtable_size;
	/* The `buffered` struct of Modules/_io/bufferedio.c (BufferedReader,
	 * BufferedWriter, BufferedRandom): its basicsize, the buffer that
	 * PyMem_Malloc returned and the size it asked for. */
	uint32_t buffered_size, buffered_buffer, buffered_buffer_size;
	/* Containers of the standard library whose storage is not an object
	 * (ptype /o against libpython and lib-dynload/array*.so), each with
	 * the basicsize that identifies the C type by name:
	 * collections.deque (dequeobject) and its blocks (struct BLOCK: 64
	 * item pointers between leftlink and rightlink); 3.11+ keeps up to
	 * deque_freeblocks_max freed blocks per deque (0: none, 3.8-3.10 use
	 * a module-wide cache). */
	uint32_t deque_size, deque_leftblock, deque_rightblock,
		deque_leftindex, deque_rightindex, deque_numfreeblocks,
		deque_freeblocks, deque_freeblocks_max;
	uint32_t deque_block_size, deque_block_leftlink, deque_block_rightlink,
		deque_block_len;
	/* array.array (arrayobject) and its descriptor's itemsize */
	uint32_t array_size, array_items, array_allocated, array_descr,
		array_descr_itemsize;
	/* _io.StringIO (stringio): its Py_UCS4 buffer of buf_size chars */
	uint32_t stringio_size, stringio_buf, stringio_buf_size;
	/* collections.OrderedDict (PyODictObject): ma_used of its dict, the
	 * node list and the fast-nodes index; struct _odictnode */
	uint32_t odict_size, odict_used, odict_first, odict_last,
		odict_fast_nodes, odict_fast_nodes_size;
	uint32_t odict_node_size, odict_node_next, odict_node_prev;
	/* _elementtree's ElementObject and its ElementObjectExtra (attrib,
	 * length, allocated, children: its own _children[] inline until it
	 * holds more than element_static_children, then a separate array). */
	uint32_t element_size, element_extra, element_extra_size,
		element_extra_length, element_extra_allocated,
		element_extra_children, element_extra_inline,
		element_static_children;
	/* PyModuleObject md_def, md_state (PyMem_Malloc'd, md_def->m_size
	 * bytes) and PyModuleDef m_size. */
	uint32_t module_def, module_state, moduledef_size;
	/* 3.15: no md_def; the state's size is the module's md_state_size
	 * (0 before). */
	uint32_t module_state_size;
	/* PyModuleObject md_name, the reference graph's module name: 48 in
	 * 3.8-3.14, 40 in 3.15 (md_def gone; md_token_is_def is at 48). */
	uint32_t module_name;
	/* Extension objects whose storage is a separate allocation
	 * (cpython_owned_ext.c), each with the basicsize of its struct:
	 * ctypes' CDataObject: b_ptr, int b_needsfree, b_size and the inline
	 * union b_value (b_ptr points there while b_size fits in it). */
	uint32_t cdata_size, cdata_ptr, cdata_needsfree, cdata_bsize,
		cdata_value, cdata_value_size;
	/* _io.BytesIO (bytesio): its bytes object buf; the basicsize of
	 * bytes (PyBytesObject_SIZE: its allocation is that + ob_size) */
	uint32_t bytesio_size, bytesio_buf, bytes_basicsize;
	/* _decimal's PyDecObject: its mpd_t's flags, digits, len, alloc and
	 * data pointer; the inline data array (decimal_inline_words words). */
	uint32_t decimal_size, decimal_flags, decimal_digits, decimal_len,
		decimal_alloc, decimal_data, decimal_inline,
		decimal_inline_words;
	/* _bz2's BZ2Compressor and BZ2Decompressor (cpython_owned_bz2.c):
	 * their basicsizes, the bz_stream inside them and its state pointer
	 * (libbz2's EState or DState), their PyThread_type_lock (0: none,
	 * 3.15's lock is an inline PyMutex), and the decompressor's copy of
	 * input it has not used yet (input_buffer, its size, bzs_avail_in_real). */
	uint32_t bz2_compressor_size, bz2_decompressor_size, bz2_stream,
		bz2_state, bz2_compressor_lock, bz2_decompressor_lock;
	uint32_t bz2_input_buffer, bz2_input_buffer_size, bz2_avail_in_real;
	/* _PyRuntime.interpreters.head; PyInterpreterState: next, the head of
	 * its thread states and its size when malloc'd (0: 3.11+, the main
	 * one is static in _PyRuntime), where the thread state it embeds is
	 * (0: none); PyThreadState prev/next/interp and
	 * the size of its allocation (3.13: _PyThreadStateImpl). */
	uint32_t runtime_interp_head, interp_next, interp_threads_head,
		interp_size;
	uint32_t interp_initial_thread; /* 3.11+: the main thread's, inside */
	uint32_t tstate_prev, tstate_next, tstate_interp, tstate_size;
};

/* Whether the word at an object's start can be its reference count in
 * this layout's versions beyond any count (3.12+): only the low 32 bits
 * count; 3.14+ may have ob_flags (a few low bits) in the top 16 bits. */
static inline bool pm_refcnt_high_bits_ok(const struct pm_cpython_layout *l,
					  uint64_t word)
{
	return l->refcnt_flags ? (word >> 32 & 0xffff) == 0 && word >> 56 == 0 :
				 word >> 32 == 0;
}

/* The count itself: 3.14+ without the flags. */
static inline uint64_t pm_refcnt_of(const struct pm_cpython_layout *l, uint64_t word)
{
	return l->refcnt_flags ? (uint32_t)word : word;
}

const struct pm_cpython_layout *pm_cpython_layout_for(int minor);
struct pm_python_info;
/* The same for the detected interpreter: its pydebug build's row where
 * the tables have one (3.13), else its minor's. */
const struct pm_cpython_layout *pm_cpython_layout_of(const struct pm_python_info *py);

/* What a type is, for attribution of the buffers its instances own and
 * for reading their references: the kind of the nearest base the analysis
 * knows (a subclass of list is TK_LIST; of str, TK_STR_SUB). */
enum type_kind { TK_OTHER = 0, TK_LIST, TK_DICT, TK_SET, TK_STR, TK_STR_SUB,
		 TK_BYTEARRAY, TK_TYPE, TK_BUFFERED, TK_DEQUE, TK_ARRAY,
		 TK_STRINGIO, TK_ODICT, TK_MODULE, TK_ELEMENT,
		 TK_NDARRAY,                /* numpy's (cpython_numpy.c) */
		 /* cpython_owned_ext.c: ctypes' instances, _io.BytesIO,
		  * decimal.Decimal */
		 TK_CDATA, TK_BYTESIO, TK_DECIMAL,
		 TK_MMAP,                   /* mmap.mmap (cpython_mmap.c) */
		 /* cpython_owned_bz2.c: _bz2's compressor and decompressor */
		 TK_BZ2_COMPRESSOR, TK_BZ2_DECOMPRESSOR,
		 /* cpython_owned_zlib.c: zlib's (de)compression objects */
		 TK_ZLIB_COMPRESS, TK_ZLIB_DECOMPRESS, TK_ZLIB_DECOMPRESSOR,
		 /* cpython_owned_lzma.c: _lzma's compressor and decompressor */
		 TK_LZMA_COMPRESSOR, TK_LZMA_DECOMPRESSOR,
		 TK_KINDS };

/* A type object that some recognised object has as its ob_type. */
struct pm_cpython_type {
	uint64_t addr;
	uint64_t flags, basicsize;
	char *name;                 /* tp_name */
	uint8_t kind;               /* enum type_kind */
	uint32_t category;          /* the category of its live instances */
};

/* An open mmap.mmap object and the mapping it made (cpython_mmap.c): no
 * allocator's memory, so in no summary row; the regions holding it are
 * labelled with it. */
struct pm_cpython_mmap {
	uint64_t object;            /* its address, as `objects` lists it */
	const char *type;           /* its type's tp_name (the heap's copy) */
	uint64_t data, size;        /* its fields: the mapping's start, len() */
	uint64_t mapped;            /* size rounded up to whole pages: what the
				     * kernel mapped */
};

enum pm_alloc_kind {
	PM_ALLOC_PYMALLOC = 0,      /* a used pymalloc block */
	PM_ALLOC_GLIBC,             /* an in-use glibc chunk in an arena */
	PM_ALLOC_MMAPPED,           /* a glibc mmapped chunk */
	PM_ALLOC_TCACHE,            /* a chunk in a tcache bin (counted in use by mallinfo2) */
	PM_ALLOC_GLIBC_META,        /* glibc's own chunk: a tcache_perthread_struct,
				 * a heap's fencepost */
	PM_ALLOC_GLIBC_OVERHEAD,    /* glibc's own bytes outside any chunk: a heap's
				 * header, a memalign'd mmapped chunk's lead */
	PM_ALLOC_KINDS
};
const char *pm_alloc_kind_name(enum pm_alloc_kind kind);

/* A type name as CPython makes them: not empty, no control characters
 * (a candidate type whose tp_name reads otherwise is no type). */
bool pm_type_name_printable(const char *name);

/* Whether a category's domain is one of attributed buffers and structures
 * ("cpython", "ld.so", "numpy"): not objects, not unknown. */
bool pm_category_buffer_domain(const char *domain);

#define PM_CATEGORY_NONE UINT32_MAX

#include "debug_hooks.h"

/* One allocation: addr is where its user data starts (glibc: chunk + 16),
 * size what it occupies in its allocator (block size, chunk size with its
 * header): [addr - pm_alloc_header, + size) is its block or chunk. */
struct pm_alloc {
	uint64_t addr;
	uint64_t size;
	uint32_t category;
	uint8_t kind;               /* enum pm_alloc_kind */
	uint8_t object_offset;      /* a recognised object is at addr + this */
};

/* Bytes before addr that are part of the allocation: a glibc chunk's
 * header (prev_size, size); none for a pymalloc block. */
static inline uint64_t pm_alloc_header(const struct pm_alloc *alloc)
{
	return alloc->kind == PM_ALLOC_PYMALLOC ||
	       alloc->kind == PM_ALLOC_GLIBC_OVERHEAD ? 0 : 16;
}

/* Where the allocation ends: its chunk's or block's end, so [addr,
 * pm_alloc_end) is its data and never reaches into the next mapping. (An
 * in-use chunk's data may also use the next chunk's prev_size word, which
 * belongs to that chunk's extent.) */
static inline uint64_t pm_alloc_end(const struct pm_alloc *alloc)
{
	return alloc->addr - pm_alloc_header(alloc) + alloc->size;
}

/* Where the program's data may end: an in-use arena chunk's data uses the
 * next chunk's prev_size word too (malloc_usable_size is size - 8). */
static inline uint64_t pm_alloc_data_end(const struct pm_alloc *alloc)
{
	return pm_alloc_end(alloc) + (alloc->kind == PM_ALLOC_GLIBC ? 8 : 0);
}

/* A summary row: domain ("python", "cpython", "pymalloc", "glibc"), kind (a
 * type name, "dict keys", ...) and detail ("-", a size range). */
struct pm_category {
	char *domain, *kind, *detail;
	uint64_t count, bytes;
};

struct pm_cpython_heap {
	const struct pm_python_info *py;
	bool python;                /* objects were recognised (supported CPython) */
	bool pymalloc_walked;
	bool glibc_walked;
	char notes[4][200];         /* what was not analysed and why */
	size_t nnotes;
	bool debug_hooks;           /* PYTHONMALLOC=debug / -X dev layout seen:
				     * the program's pointer to a block is
				     * PM_DEBUG_HOOK_HEADER past its start */
	size_t nallocs;
	struct pm_alloc *allocs;    /* sorted by addr */
	size_t ncategories;
	struct pm_category *categories;
	uint64_t objects;           /* allocations recognised as live objects */
	uint64_t free_list_objects; /* refcount 0, on a free list */
	uint64_t attributed;        /* buffers given their owner's category */
	/* Unknown allocations given to the one object that alone points at
	 * them (cpython_inferred.c): how many, their bytes; precise: that
	 * inference was turned off (pm_options.precise). */
	uint64_t inferred, inferred_bytes;
	bool precise;
	/* The inference has yet to run (it only labels: the reference graph
	 * and the reports on it do without); and the categories of the C
	 * libraries' stream states (lzma, zlib, bz2), where it starts too. */
	bool inference_pending;
	uint32_t stream_state_categories[3];
	/* Per allocation, the object an inferred buffer is guessed to be
	 * held by, 0 for none (NULL when none was inferred). Apart from
	 * owners: the reference graph, retained sizes and --by owner keep to
	 * the precise owners (an inferred buffer stays a root scanned
	 * conservatively, as while unknown); listings and describe name it. */
	uint64_t *inferred_owners;
	/* Per allocation (the index in allocs), the object that owns it as
	 * a buffer, recorded when the analysis followed the owner's field or
	 * chain to it; 0 for none. NULL when nothing was recorded. */
	uint64_t *owners;
	uint64_t types;             /* distinct valid type objects seen */
	/* Those types, sorted by address. */
	size_t ntype_table;
	struct pm_cpython_type *type_table;
	/* Where the static types the analysis knows by symbol are (0 when
	 * not found): PyType_Type, PyList_Type, ... by enum type_kind. */
	uint64_t kind_types[TK_KINDS];
	uint64_t object_type;       /* PyBaseObject_Type */
	/* The open mmap.mmap objects, by data (their mappings do not
	 * overlap: two objects claiming one page are both left out). */
	size_t nmmaps;
	struct pm_cpython_mmap *mmaps;
	/* Address -> allocation in one probe (pm_cpython_find_alloc): the
	 * allocations of each 64 KiB of address space (cpython_allocs.c). */
	struct pm_alloc_index *alloc_index;
};

/* Runs the whole analysis once per target (cached in PM_CACHE_CPYTHON);
 * *ret stays owned by the target. Works on non-Python processes too (then
 * everything is glibc, by size) and says what it could not do in notes. */
struct pm_error *pm_cpython_analyse(struct pm_target *t,
				    const struct pm_cpython_heap **ret);
/* The same analysis without the inferred owners (cpython_inferred.c),
 * when they were not made yet: for the reference graph, which keeps to
 * the precise owners. pm_cpython_analyse adds them to the same heap
 * later (labels and category counts change; allocations do not). */
struct pm_error *pm_cpython_analyse_objects(struct pm_target *t,
					    const struct pm_cpython_heap **ret);

/* The object owning the attributed allocation that starts at alloc_addr
 * (its address, where `objects` lists it), or 0 when none was recorded. */
uint64_t pm_cpython_owner_of(const struct pm_cpython_heap *heap,
			     uint64_t alloc_addr);

/* Whether the target may hold mmap.mmap objects: the mmap extension is
 * mapped, or built into the interpreter (PyInit_mmap). Only then do
 * `regions` and the analysis look for them, so that regions stays quick
 * (no object analysis) in the processes that have none. */
bool pm_cpython_mmap_possible(struct pm_target *t);

/* The index of the first of heap->mmaps whose mapping ends after addr
 * (heap->nmmaps when none does). */
size_t pm_cpython_mmap_first_after(const struct pm_cpython_heap *heap,
				   uint64_t addr);

/* The type at addr that the analysis validated, or NULL. */
const struct pm_cpython_type *pm_cpython_find_type(const struct pm_cpython_heap *heap,
						   uint64_t addr);

/* The allocation containing addr, or NULL. */
const struct pm_alloc *pm_cpython_find_alloc(const struct pm_cpython_heap *heap,
					     uint64_t addr);
/* The same, starting from *hint (an index in allocs, any value), which it
 * sets to the allocation found: a few steps when addr is near the last
 * answer. */
const struct pm_alloc *pm_cpython_find_alloc_near(const struct pm_cpython_heap *heap,
						  uint64_t addr, size_t *hint);

#endif
