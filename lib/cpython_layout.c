/* Per-version layouts of the CPython structures the recogniser reads, one
 * table row per minor version 3.8 to 3.15 (x86-64), checked with gdb
 * `ptype /o` against the pyenv builds (3.8-3.13) and Debian unstable's
 * 3.13.18, 3.14.10 and 3.15.2 with their -dbg symbols; pydebug builds
 * have rows of their own. */
#include "cpython.h"
#include "python_version.h"

#include <stddef.h>

#define PM_TYPE_OFFSETS .tp_name = 24, .tp_basicsize = 32, .tp_itemsize = 40, \
	.tp_flags = 168, .tp_doc = 176, .tp_base = 256
/* Same in 3.8-3.14 (ptype /o PyModuleObject, struct PyModuleDef; 3.14.10's
 * md_name checked in Debian's 3.14 and 3.14d) */
#define PM_MODULE_OFFSETS .module_def = 24, .module_state = 32, \
	.moduledef_size = 56, .module_name = 48
#define PM_CONTAINER_OFFSETS .list_items = 24, .dict_keys = 32, \
	.dict_values = 40, .set_table = 40, .set_smalltable = 64, \
	.bytearray_bytes = 32
/* 3.15: a bytearray's data is inside a bytes object (ob_bytes_object) */
#define PM_CONTAINER_OFFSETS_315 .list_items = 24, .dict_keys = 32, \
	.dict_values = 40, .set_table = 40, .set_smalltable = 64, \
	.bytearray_bytes = 0
/* Same in 3.8-3.13 (ptype /o struct _arena, block) */
#define PM_ARENA_OFFSETS .arena_head = 0, .arena_cur = 8, .arena_objects = 16, \
	.arena_size = 24, .block_size = 0, .block_offset = 8, .block_next = 16, \
	.block_mem = 24, .block_header = 32
/* ptype /o _Py_hashtable_t: 3.8 has key and data sizes before hash_func */
#define PM_HASHTABLE_38 .hashtable_nentries = 8, .hashtable_nbuckets = 0, \
	.hashtable_buckets = 16, .hashtable_hash_func = 40, \
	.hashtable_compare_func = 48, .hashtable_size = 72
#define PM_HASHTABLE_FROM_39 .hashtable_nentries = 0, .hashtable_nbuckets = 8, \
	.hashtable_buckets = 16, .hashtable_hash_func = 32, \
	.hashtable_compare_func = 40, .hashtable_size = 80
/* Same in 3.8-3.13 (ptype /o buffered) */
#define PM_BUFFERED_OFFSETS .buffered_size = 152, .buffered_buffer = 56, \
	.buffered_buffer_size = 120
/* Thread-state links, same in 3.8-3.13; the rest per row from gdb on each
 * libpython: print &((struct pyruntimestate *)0)->interpreters.head,
 * &((PyInterpreterState *)0)->threads.head (3.8-3.10: tstate_head), ->next,
 * ->_initial_thread, sizeof(PyInterpreterState), sizeof(PyThreadState)
 * (3.13: sizeof(_PyThreadStateImpl), what is allocated). */
/* ptype /o dequeobject, block, arrayobject, struct arraydescr, stringio,
 * PyODictObject, struct _odictnode: field offsets are the same in 3.8-3.13;
 * 3.11 added the deque's own free-block cache, 3.12 reworked stringio's
 * accumulator (so its size changed, the buffer fields did not). */
/* ptype /o CDataObject (lib-dynload/_ctypes*.so), bytesio,
 * PyBytesObject, PyDecObject and mpd_t (_decimal*.so): the same in the
 * pyenv builds of 3.8-3.13 and in Debian's 3.13d, 3.14d and 3.15d (their
 * debug symbols; the pydebug build changes none of these structs), and
 * test_buffers passes on the chroot's 3.13-3.15 and their pydebug builds
 * (PYMORTEM_CHROOT_MATRIX=1). */
#define PM_EXTENSION_OFFSETS .cdata_size = 96, .cdata_ptr = 16, \
	.cdata_needsfree = 24, .cdata_bsize = 40, .cdata_value = 80, \
	.cdata_value_size = 16, \
	.bytesio_size = 64, .bytesio_buf = 16, \
	.bytes_basicsize = 33, \
	.decimal_size = 104, .decimal_flags = 24, .decimal_digits = 40, \
	.decimal_len = 48, .decimal_alloc = 56, .decimal_data = 64, \
	.decimal_inline = 72, .decimal_inline_words = 4, \
	.bz2_decompressor_size = 152, .bz2_stream = 16, .bz2_state = 64, \
	.bz2_input_buffer = 120, .bz2_input_buffer_size = 128, \
	.bz2_avail_in_real = 136
/* _bz2module.c's BZ2Compressor and BZ2Decompressor: PyObject_HEAD, then
 * the bz_stream (its state pointer 48 bytes in), in every version (read
 * in 3.8-3.15: the only word pointing at a block whose first word is the
 * object + 16; the decompressor's input_buffer, its size and
 * bzs_avail_in_real where a decompress(max_length=10) left them); 3.8-3.14
 * end with a PyThread_type_lock pointer, 3.15 has an inline PyMutex
 * instead (the compressor 8 bytes smaller). */
#define PM_BZ2_LOCKED .bz2_compressor_size = 112, .bz2_compressor_lock = 104, \
	.bz2_decompressor_lock = 144
#define PM_BZ2_315 .bz2_compressor_size = 104
#define PM_CONTAINERS_COMMON PM_EXTENSION_OFFSETS, .deque_leftblock = 24, .deque_rightblock = 32, \
	.deque_leftindex = 40, .deque_rightindex = 48, \
	.deque_block_size = 528, .deque_block_leftlink = 0, \
	.deque_block_rightlink = 520, .deque_block_len = 64, \
	.array_size = 64, .array_items = 24, .array_allocated = 32, \
	.array_descr = 40, .array_descr_itemsize = 4, \
	.stringio_buf = 16, .stringio_buf_size = 40, \
	.odict_size = 112, .odict_used = 16, .odict_first = 48, \
	.odict_last = 56, .odict_fast_nodes = 64, .odict_fast_nodes_size = 72, \
	.odict_node_size = 32, .odict_node_next = 16, .odict_node_prev = 24
#define PM_CONTAINERS_UP_TO_310 PM_CONTAINERS_COMMON, .deque_size = 80, \
	.stringio_size = 120
#define PM_CONTAINERS_311 PM_CONTAINERS_COMMON, .deque_size = 216, \
	.deque_numfreeblocks = 72, .deque_freeblocks = 80, \
	.deque_freeblocks_max = 16, .stringio_size = 120
#define PM_CONTAINERS_312_313 PM_CONTAINERS_COMMON, .deque_size = 216, \
	.deque_numfreeblocks = 72, .deque_freeblocks = 80, \
	.deque_freeblocks_max = 16, .stringio_size = 168
/* 3.14 keeps a pointer to a PyUnicodeWriter instead of the writer */
#define PM_CONTAINERS_FROM_314 PM_CONTAINERS_COMMON, .deque_size = 216, \
	.deque_numfreeblocks = 72, .deque_freeblocks = 80, \
	.deque_freeblocks_max = 16, .stringio_size = 120
/* ptype /o ElementObject, ElementObjectExtra (lib-dynload/_elementtree*.so):
 * the same in 3.8-3.13. */
#define PM_ELEMENT_OFFSETS .element_size = 56, .element_extra = 40, \
	.element_extra_size = 64, .element_extra_length = 8, \
	.element_extra_allocated = 16, .element_extra_children = 24, \
	.element_extra_inline = 32, .element_static_children = 4
#define PM_TSTATE_LINKS .tstate_prev = 0, .tstate_next = 8, .tstate_interp = 16
/* PyASCIIObject, PyCompactUnicodeObject.utf8, PyUnicodeObject.data */
#define PM_STR_UP_TO_311 .str_ascii_size = 48, .str_utf8 = 56, .str_wstr = 40, \
	.str_data = 72
#define PM_STR_FROM_312 .str_ascii_size = 40, .str_utf8 = 48, .str_wstr = -1, \
	.str_data = 56

enum {
	MANAGED_WEAKREF = 1 << 3,
	MANAGED_DICT = 1 << 4,
};

/* 3.13's row but for the embedded thread state and the thread state's
 * size, which its pydebug build changes. */
#define PM_LAYOUT_313 .minor = 13, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, \
	PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, \
	.runtime_interp_head = 632, .interp_threads_head = 7344, \
	.interp_next = 7264, .interp_size = 0, \
	PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS, PM_CONTAINERS_312_313, \
	PM_STR_FROM_312, PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39, \
	.ht_cached_keys = 880, .preheader_flags = MANAGED_DICT | MANAGED_WEAKREF, \
	.immortal = true, .managed_dict = -24, PM_BZ2_LOCKED

/* 3.14 (3.14.10): like 3.13 with a larger runtime and interpreter state;
 * its pydebug build moves the embedded thread state by 16 bytes. */
#define PM_LAYOUT_314 .minor = 14, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, \
	PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, \
	.runtime_interp_head = 808, .interp_threads_head = 7344, \
	.interp_next = 7272, .interp_size = 0, .tstate_size = 936, \
	PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS, PM_CONTAINERS_FROM_314, \
	PM_STR_FROM_312, PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39, \
	.ht_cached_keys = 880, .preheader_flags = MANAGED_DICT | MANAGED_WEAKREF, \
	.immortal = true, .refcnt_flags = true, .managed_dict = -24, \
	PM_BZ2_LOCKED
/* 3.15 (3.15.2): modules lost md_def (md_state_size is theirs; md_name
 * moved up to 40), heap types grew by 8 bytes before ht_cached_keys. */
#define PM_LAYOUT_315 .minor = 15, PM_TYPE_OFFSETS, .module_def = 0, \
	.module_state = 24, .module_state_size = 56, .module_name = 40, \
	PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, \
	.runtime_interp_head = 936, .interp_threads_head = 7336, \
	.interp_next = 7264, .interp_size = 0, .tstate_size = 1104, \
	PM_CONTAINER_OFFSETS_315, PM_BUFFERED_OFFSETS, PM_CONTAINERS_FROM_314, \
	PM_STR_FROM_312, PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39, \
	.ht_cached_keys = 888, .preheader_flags = MANAGED_DICT | MANAGED_WEAKREF, \
	.immortal = true, .refcnt_flags = true, .managed_dict = -24, PM_BZ2_315

static const struct pm_cpython_layout layouts[] = {
	{ .minor = 8, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, PM_BZ2_LOCKED,
	  .runtime_interp_head = 32, .interp_threads_head = 8,
	  .interp_next = 0, .interp_size = 2720, .interp_initial_thread = 0,
	  .tstate_size = 264, PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS,
	  PM_CONTAINERS_UP_TO_310,
	  PM_STR_UP_TO_311,
	  PM_ARENA_OFFSETS, PM_HASHTABLE_38,
	  .ht_cached_keys = 872 },
	{ .minor = 9, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, PM_BZ2_LOCKED,
	  .runtime_interp_head = 32, .interp_threads_head = 8,
	  .interp_next = 0, .interp_size = 5656, .interp_initial_thread = 0,
	  .tstate_size = 264, PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS,
	  PM_CONTAINERS_UP_TO_310,
	  PM_STR_UP_TO_311,
	  PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39,
	  .ht_cached_keys = 864 },
	{ .minor = 10, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, PM_BZ2_LOCKED,
	  .runtime_interp_head = 32, .interp_threads_head = 8,
	  .interp_next = 0, .interp_size = 113528, .interp_initial_thread = 0,
	  .tstate_size = 280, PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS,
	  PM_CONTAINERS_UP_TO_310,
	  PM_STR_UP_TO_311,
	  PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39,
	  .ht_cached_keys = 872 },
	/* 3.11: values pointer at obj-32, dict pointer at obj-24 */
	{ .minor = 11, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, PM_BZ2_LOCKED,
	  .runtime_interp_head = 40, .interp_threads_head = 16,
	  .interp_next = 0, .interp_size = 0, .interp_initial_thread = 107392,
	  .tstate_size = 360, PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS,
	  PM_CONTAINERS_311,
	  PM_STR_UP_TO_311,
	  PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39,
	  .ht_cached_keys = 872, .preheader_flags = MANAGED_DICT,
	  .managed_values = -32, .managed_dict = -24 },
	/* 3.12: one word at obj-24, values (tagged) or dict; weakrefs at obj-32 */
	{ .minor = 12, PM_TYPE_OFFSETS, PM_MODULE_OFFSETS, PM_ELEMENT_OFFSETS, PM_TSTATE_LINKS, PM_BZ2_LOCKED,
	  .runtime_interp_head = 40, .interp_threads_head = 72,
	  .interp_next = 0, .interp_size = 0, .interp_initial_thread = 383264,
	  .tstate_size = 288, PM_CONTAINER_OFFSETS, PM_BUFFERED_OFFSETS,
	  PM_CONTAINERS_312_313,
	  PM_STR_FROM_312,
	  PM_ARENA_OFFSETS, PM_HASHTABLE_FROM_39,
	  .ht_cached_keys = 880, .preheader_flags = MANAGED_DICT | MANAGED_WEAKREF,
	  .immortal = true, .managed_values = -24, .managed_dict = -24,
	  .managed_values_tagged = true },
	/* 3.13: values are inline in the object; dict pointer at obj-24 */
	{ PM_LAYOUT_313, .interp_initial_thread = 194624, .tstate_size = 336 },
	{ PM_LAYOUT_314, .interp_initial_thread = 224928 },
	{ PM_LAYOUT_315, .interp_initial_thread = 225136 },
};

/* 3.13's pydebug build (Debian's python3.13d, 3.13.18): the interpreter
 * state's embedded thread state is 16 bytes further in. */
static const struct pm_cpython_layout pydebug_layouts[] = {
	{ PM_LAYOUT_313, .interp_initial_thread = 194640, .tstate_size = 344 },
	/* 3.14.10d, 3.15.2d: 16 bytes further in, the same thread state */
	{ PM_LAYOUT_314, .interp_initial_thread = 224944 },
	{ PM_LAYOUT_315, .interp_initial_thread = 225152 },
};

const struct pm_cpython_layout *pm_cpython_layout_of(const struct pm_python_info *py)
{
	for (size_t i = 0; py->pydebug && i < sizeof(pydebug_layouts) / sizeof(pydebug_layouts[0]); i++)
		if (pydebug_layouts[i].minor == py->minor)
			return &pydebug_layouts[i];
	return pm_cpython_layout_for(py->minor);
}

const struct pm_cpython_layout *pm_cpython_layout_for(int minor)
{
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].minor == minor)
			return &layouts[i];
	return NULL;
}
