/* The reference graph being built, shared by the files that build it (not
 * part of the library's interface):
 *   graph.c             nodes, the edge arrays, address lookups, the
 *                       collector's reachability; the cached result
 *   graph_types.c       which reader a type's instances get, per version
 *   graph_referents.c   the per-kind readers that emit an object's edges
 *   graph_roots.c       references from outside the heap, named
 *   graph_text.c        edges, roots and objects as text
 *   graph_path.c        shortest chains from a root */
#ifndef PM_GRAPH_BUILD_H
#define PM_GRAPH_BUILD_H

#include "graph.h"

PM_DEFINE_VECTOR(u32_vector, uint32_t)
PM_DEFINE_VECTOR(u64_vector, uint64_t)
PM_DEFINE_VECTOR(u8_vector, uint8_t)

/* How an object's references are read (graph_referents.c). */
enum reader {
	READER_NONE = 0,        /* holds no references (int, str, bytes, ...) */
	READER_CONSERVATIVE,    /* every word that points at an object's start */
	READER_TUPLE,
	READER_LIST,
	READER_DICT,
	READER_SET,
	READER_DEQUE,
	READER_ODICT,           /* dict + od_inst_dict + nodes' keys */
	READER_DEFAULTDICT,     /* dict + default_factory */
	READER_TYPE,            /* a heap type: __dict__, __mro__, ... */
	READER_MODULE,
	READER_FIELDS,          /* a fixed list of named fields (graph_types.c) */
	READER_EXCEPTION,       /* BaseException's fields, then the rest of a
				 * C subclass conservatively */
	READER_FRAME,           /* a frame object */
	READER_GENERATOR,       /* generator, coroutine, async generator */
	READER_CODE,
	READER_WEAKREF,         /* the referent is weak, the callback strong */
	READER_NDARRAY,         /* numpy's: its fields, an object array's items */
	READER_KINDS
};

/* One field of a READER_FIELDS type: a PyObject * at offset. */
struct field_def {
	uint16_t offset;
	uint8_t field;              /* enum pm_field */
	bool traversed;             /* tp_traverse visits it */
};
#define FIELDS_MAX 10

/* A __slots__ member (PyMemberDef of type T_OBJECT or T_OBJECT_EX). */
struct slot_def {
	uint32_t offset;
};
PM_DEFINE_VECTOR(slot_vector, struct slot_def)

/* What the builder knows of a type, found once per type address. */
struct reader_type {
	bool valid;
	enum reader reader;         /* for a heap type: its nearest static base's */
	bool heap_type;             /* instances refer to their class */
	bool gc;
	uint64_t flags, basicsize, itemsize;
	int64_t dictoffset;         /* tp_dictoffset (0: none) */
	int64_t base_dictoffset;    /* ... of the type whose reader it has */
	uint64_t base_basicsize;    /* ... and that type's basicsize */
	/* A C subclass of a container (ctypes' StgDict, say): its own fields
	 * from this offset to base_basicsize are read conservatively. */
	uint64_t extra_from;
	uint64_t weaklistoffset;
	struct slot_vector slots;   /* of every heap type in the tp_base chain */
	const struct field_def *fields;
	size_t nfields;
	const char *name;           /* the analysis's copy, or owned_name */
	char *owned_name;
};
/* By type address; each entry allocated on its own, so that a pointer to
 * it stays valid while the map grows (the object being read keeps its
 * type's while its references meet new types). */
PM_DEFINE_HASH_MAP(reader_type_map, uint64_t, struct reader_type *,
		   pm_hash_u64_key, pm_u64_key_eq)

/* A cached verdict on an address that is not a heap object's start:
 * a static object's node, or PM_NODE_NONE. */
PM_DEFINE_HASH_MAP(static_verdict_map, uint64_t, uint32_t, pm_hash_u64_key,
		   pm_u64_key_eq)

enum { OBJECT_WINDOW = 1024 };  /* bytes of an object read at once */

/* 3.8-3.10: a combined dict's edges and its keys' lookup function, to
 * settle at the end whether tp_traverse visits its keys. */
struct dict_lookup {
	uint32_t first_edge, end_edge;
	uint64_t lookup;
	bool general;               /* it has a key that is not a str */
};
PM_DEFINE_VECTOR(dict_lookup_vector, struct dict_lookup)

/* A buffer that a node owns and that may hold references (a module's
 * state, an ElementTree element's children): read with its owner. */
struct owned_buffer {
	uint32_t node, alloc;
};
PM_DEFINE_VECTOR(owned_buffer_vector, struct owned_buffer)

/* A reference found when an object is read again (pm_graph_edge_label):
 * the word, its kind and its label, before any lookup. */
struct replayed_ref {
	uint64_t ptr;
	uint32_t label;
	uint8_t kind;
};
PM_DEFINE_VECTOR(replayed_ref_vector, struct replayed_ref)

/* Per-version offsets the readers need beyond the type table's. */
struct referent_layout {
	int minor;
	/* PyHeapTypeObject and its size */
	uint32_t ht_name, ht_slots, ht_qualname, ht_cached_keys, ht_module,
		ht_size;
	/* BaseException's fields (dict, args, notes, traceback, context,
	 * cause; notes 0 before 3.11) and its size */
	uint32_t exc_notes, exc_traceback, exc_context, exc_cause, exc_size;
	/* PyFrameObject (3.8-3.10) */
	uint32_t f_back, f_code, f_builtins, f_globals, f_locals, f_valuestack,
		f_stacktop, f_stackdepth, f_trace, f_localsplus;
	/* PyCodeObject (3.8-3.10) */
	uint32_t co_nlocals, co_cellvars, co_freevars;
	/* PyFrameObject (3.11+): f_back, f_frame, f_trace, its own frame data;
	 * the dicts f_locals writes and PyEval_GetLocals keep (3.13+:
	 * f_extra_locals, f_locals_cache) and the values a write to f_locals
	 * replaced (3.14+: f_overwritten_fast_locals); 0: none */
	uint32_t f11_back, f11_frame, f11_trace, f11_data;
	uint32_t f11_extra_locals, f11_locals_cache, f11_overwritten;
	/* _PyInterpreterFrame (3.11+) */
	uint32_t if_func, if_code, if_locals, if_frame_obj, if_stacktop,
		if_owner, if_localsplus;
	/* PyGenObject: gi_frame (3.8-3.10), gi_code (3.8-3.11), gi_name,
	 * gi_qualname, the exc_state's exc_type/value/traceback (type and
	 * traceback 0 from 3.11), gi_frame_state and gi_iframe (3.11+) and
	 * the coroutine's / async generator's origin or finalizer */
	uint32_t gi_frame, gi_code, gi_name, gi_qualname, gi_exc_type,
		gi_exc_value, gi_exc_traceback, gi_frame_state, gi_iframe,
		gi_origin;
	/* 3.11+ dict keys: dk_kind; dk_nentries, first index */
	bool dict_keys_311;
	/* 3.13: dict values are {capacity, size, embedded, valid, values[]} */
	bool dict_values_313;
	/* 3.14+: an interpreter frame's stack top is a pointer (at
	 * if_stacktop), its code, function and stack are _PyStackRefs */
	bool stackrefs;
};

const struct referent_layout *referent_layout_for(int minor);

/* Where the interpreter keeps what the roots need (gdb ptype /o). */
struct roots_layout {
	int minor;
	uint32_t interp_modules, interp_sysdict, interp_builtins;
	uint32_t tstate_frame;      /* 3.8-3.10: tstate->frame */
	uint32_t tstate_cframe;     /* 3.11/3.12: tstate->cframe */
	uint32_t cframe_current;    /* ... ->current_frame */
	uint32_t tstate_current;    /* 3.13: tstate->current_frame */
	uint32_t tstate_thread_id;  /* pthread_self(), the thread pointer */
	uint32_t tstate_native_id;  /* 3.11+: the LWP */
	/* PyCodeObject (3.11+): co_nlocalsplus, co_stacksize (ints) */
	uint32_t co_nlocalsplus, co_stacksize;
	/* _PyInterpreterFrame: previous, owner, code, stacktop, localsplus,
	 * f_locals, f_func/f_funcobj, frame_obj */
	uint32_t if_previous, if_owner, if_code, if_stacktop, if_localsplus,
		if_locals, if_func, if_frame_obj;
	/* 3.14+: the stack's top is a pointer (stackpointer, at if_stacktop)
	 * and code, function and the localsplus entries are tagged
	 * _PyStackRefs. */
	bool stackrefs;
};

const struct roots_layout *roots_layout_for(int minor);

/* Where a tuple's items start: 3.14 caches the hash in ob_hash first. */
static inline uint32_t pm_tuple_items(int minor)
{
	return minor >= 14 ? 32 : 24;
}

/* The object a 3.14+ _PyStackRef refers to: the low bit marks a reference
 * that owns no count (immortal or borrowed), both low bits a tagged int
 * (no object); 0 for none. */
static inline uint64_t pm_stackref_object(uint64_t bits)
{
	return (bits & 3) == 3 ? 0 : bits & ~UINT64_C(3);
}

/* A dict keys table's geometry, from its first DICT_KEYS_HEAD bytes. */
enum { DICT_KEYS_HEAD = 40 };
struct dict_keys {
	uint64_t nentries;
	uint64_t entries;           /* address of entry 0 */
	uint32_t entry_size;        /* 24 {hash, key, value} or 16 {key, value} */
	uint32_t key_off, value_off;
	bool keys_traversed;        /* tp_traverse visits the keys */
	uint64_t lookup;            /* 3.8-3.10: dk_lookup */
};
bool dict_keys_geometry(const uint8_t *head, uint64_t keys, bool v311,
			struct dict_keys *ret);

struct builder {
	struct pm_graph *g;
	struct pm_target *t;
	const struct pm_cpython_heap *heap;
	const struct pm_cpython_layout *l;
	int minor;
	const struct referent_layout *rl;
	uint64_t subtype_dealloc;   /* tp_dealloc of the classes Python made */
	uint64_t set_dummy;         /* a set's deleted-entry marker, once seen */
	bool stackref_words;        /* emit_array reads _PyStackRefs (3.14+) */
	struct dict_lookup_vector dict_lookups;
	struct owned_buffer_vector owned;   /* sorted by node */
	/* The allocations the roots' scan reads, listed by nodes_collect (in
	 * address order). */
	struct u32_vector root_scan;
	bool *live_category;        /* per category: a live object's */
	bool *str_category;         /* per category: an exact str's */
	/* The categories those know: the heap's when the graph was built
	 * (the inference, run later, adds some). */
	size_t ncategories;
	struct u32_vector node_alloc;
	struct u32_vector targets;
	struct u8_vector kinds;
	struct u32_vector edge_start;
	struct u64_vector static_addr, static_type;
	struct reader_type_map types;
	struct static_verdict_map verdicts;
	/* The object being read: its node, address, allocation, type. */
	uint32_t node;
	uint64_t obj;
	const struct pm_alloc *alloc;
	const struct reader_type *type;
	/* Its first bytes: in the pool below, in a core's mapping, or copied
	 * into window_buf. Valid until the next object's. */
	const uint8_t *window;
	size_t window_len;
	uint8_t window_buf[OBJECT_WINDOW];
	/* The pymalloc pool currently held (objects are read in address
	 * order, so consecutive ones mostly share a pool). */
	uint64_t pool_addr;
	const uint8_t *pool_bytes;  /* its bytes: a core's mapping, or pool_buf */
	uint8_t *pool_buf;
	uint32_t pool_size;
	bool pool_valid;
	uint64_t warned;            /* warnings given, to cap them */
	/* Reading words that may be stale (a running frame's value stack
	 * past its unknown depth): one that is no object is no news. */
	bool stale_words;
	/* Where the last reference into each of a few pages was found, by
	 * page number: a container's items alternate between the pools of
	 * their size classes (an instance, a tuple, an instance...), and the
	 * next one in each pool is a few allocations after the last. */
	struct pm_node_hints alloc_hints;
	/* Reading one object again for its edges' labels (the graph keeps
	 * none: pm_graph_edge_label): nothing is added to the graph;
	 * builder_edge records every reference the readers find, in order. */
	bool replay;
	struct replayed_ref_vector replayed;
};

/* graph.c */
/* Adds an edge from the object being read to the object at ptr (when
 * there is one): kind | PM_EDGE_TRAVERSED, label. */
struct pm_error *builder_edge(struct builder *b, uint64_t ptr, uint8_t kind,
			      uint32_t label);
/* n words at addr (false when unreadable). */
bool builder_read(struct builder *b, uint64_t addr, void *buf, size_t len);
bool builder_word(struct builder *b, uint64_t addr, uint64_t *ret);
/* The heap node whose object starts at addr, PM_NODE_NONE if none. */
uint32_t builder_heap_node(struct builder *b, uint64_t addr);
/* A warning about the object being read, at most a few hundred in all. */
void builder_warn(struct builder *b, uint64_t addr, const char *what);

/* graph_types.c */
/* The reader of the type at tp (valid false when tp is no type). */
struct pm_error *reader_type_get(struct builder *b, uint64_t tp,
				 const struct reader_type **ret);
void reader_types_init(struct builder *b);
void reader_types_deinit(struct builder *b);
/* Fields of a type beyond its table entry (a function's last ones, a code
 * object's): n of them. */
const struct field_def *graph_extra_fields(int minor, const char *name,
					   size_t *n);

/* graph_referents.c */
/* Emits every reference of the object being read. */
struct pm_error *referents_read(struct builder *b);
/* 3.8-3.10, after every object: which dicts' keys tp_traverse visits. */
struct pm_error *dict_lookups_fix(struct builder *b);

/* graph_roots.c */
/* Finds the references from outside the heap into g->roots; scan lists the
 * allocations to search for them (roots_scanned_categories'). */
struct pm_error *roots_find(struct pm_graph *g, const struct u32_vector *scan);
/* By category: are its allocations searched for references when no object
 * owns them (the runtime's structures, C libraries' memory, unknown
 * memory)? A new array, NULL when out of memory. */
bool *roots_scanned_categories(const struct pm_cpython_heap *heap);

#endif
