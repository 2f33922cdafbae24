/* The reference graph of the Python heap, read from raw memory: one node per
 * live recognised object (and per object outside the heap that one refers
 * to: None, static types, 3.12+ static strings and small ints), one edge per
 * reference, each edge saying how it was found (a dict key, an attribute, a
 * list index, a slot, a conservative word) so that a path can be named
 * without a second pass. On top of it, CPython's collector's own view
 * (Python/gc.c): every GC-tracked object's refcount minus the references
 * that other tracked objects' tp_traverse would visit; the objects that no
 * externally held object reaches are what gc.collect() would free now.
 *
 * Compact arrays (CSR): per node its allocation, first edge, refcount and
 * flags (13 bytes); per edge its target, label and kind (9 bytes). Built
 * once per target (cached), bounded and tolerant of corrupted input. */
#ifndef PM_GRAPH_H
#define PM_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpython.h"
#include "hash_table.h"
#include "strbuf.h"
#include "target.h"
#include "vector.h"

#define PM_NODE_NONE UINT32_MAX

/* How an edge was found; its label means what the kind says. */
enum pm_edge_kind {
	PM_EDGE_ITEM = 0,       /* list, tuple or deque item: label = index */
	PM_EDGE_DICT_KEY,       /* label = entry index in the keys table */
	PM_EDGE_DICT_VALUE,     /* label = entry index */
	PM_EDGE_SET_ITEM,       /* label = table slot */
	PM_EDGE_ATTR,           /* instance attribute kept in a values array:
				 * label = index in its type's shared keys */
	PM_EDGE_DICT,           /* an object's __dict__ */
	PM_EDGE_SLOT,           /* a __slots__ member: label = byte offset */
	PM_EDGE_FIELD,          /* a named field: label = enum pm_field */
	PM_EDGE_TYPE,           /* an instance of a heap type -> its class */
	PM_EDGE_LOCAL,          /* frame local: label = localsplus index */
	PM_EDGE_STACK,          /* frame value stack: label = depth */
	PM_EDGE_CONSERVATIVE,   /* a word of the object that points at an
				 * object's start: label = byte offset */
	PM_EDGE_WEAK,           /* a weak reference's referent: not strong */
	PM_EDGE_KINDS
};
/* Or'ed into the kind: CPython's tp_traverse visits this reference, so the
 * collector subtracts it (a dict's str keys, for one, are not visited). */
#define PM_EDGE_TRAVERSED 0x80
#define PM_EDGE_KIND(k) ((enum pm_edge_kind)((k) & 0x7f))

/* Field names of PM_EDGE_FIELD labels (graph_fields.c). */
enum pm_field {
	PM_FIELD_CLASS, PM_FIELD_MRO, PM_FIELD_BASES, PM_FIELD_BASE,
	PM_FIELD_CACHE, PM_FIELD_SUBCLASSES, PM_FIELD_MODULE, PM_FIELD_NAME,
	PM_FIELD_QUALNAME, PM_FIELD_SLOTS, PM_FIELD_CODE, PM_FIELD_GLOBALS,
	PM_FIELD_BUILTINS, PM_FIELD_DEFAULTS, PM_FIELD_KWDEFAULTS,
	PM_FIELD_DOC, PM_FIELD_CLOSURE, PM_FIELD_ANNOTATIONS,
	PM_FIELD_TYPE_PARAMS, PM_FIELD_CELL_CONTENTS, PM_FIELD_FUNC,
	PM_FIELD_SELF, PM_FIELD_START, PM_FIELD_STOP, PM_FIELD_STEP,
	PM_FIELD_FGET, PM_FIELD_FSET, PM_FIELD_FDEL, PM_FIELD_PROP_NAME,
	PM_FIELD_WRAPPED, PM_FIELD_ARGS, PM_FIELD_KEYWORDS, PM_FIELD_TRACEBACK,
	PM_FIELD_CONTEXT, PM_FIELD_CAUSE, PM_FIELD_NOTES, PM_FIELD_TB_NEXT,
	PM_FIELD_TB_FRAME, PM_FIELD_DEFAULT_FACTORY, PM_FIELD_ITERATED,
	PM_FIELD_RESULT, PM_FIELD_INDEX, PM_FIELD_MAPPING, PM_FIELD_OBJCLASS,
	PM_FIELD_CALLBACK, PM_FIELD_THISCLASS, PM_FIELD_OBJ, PM_FIELD_OBJTYPE,
	PM_FIELD_BACK, PM_FIELD_LOCALS, PM_FIELD_TRACE, PM_FIELD_FRAME,
	PM_FIELD_EXCEPTION, PM_FIELD_CONSTS, PM_FIELD_NAMES, PM_FIELD_VARNAMES,
	PM_FIELD_FREEVARS, PM_FIELD_CELLVARS, PM_FIELD_FILENAME,
	PM_FIELD_LOCALSPLUSNAMES, PM_FIELD_BYTECODE, PM_FIELD_LINETABLE,
	PM_FIELD_EXCEPTIONTABLE, PM_FIELD_ORIGIN, PM_FIELD_DICT_KEYS_OWNER,
	PM_FIELD_INST_DICT, PM_FIELD_ODICT_KEY, PM_FIELD_MODULE_DICT,
	PM_FIELD_LENGTH, PM_FIELD_ANNOTATE, PM_FIELD_BYTES_OBJECT,
	PM_FIELD_DICT,          /* emitted as PM_EDGE_DICT */
	PM_FIELD_KINDS
};
const char *pm_field_name(enum pm_field field);

/* Node flags. */
enum {
	PM_NODE_GC = 1,             /* its type has Py_TPFLAGS_HAVE_GC */
	PM_NODE_TRACKED = 2,        /* ... and it is on a GC list */
	PM_NODE_STATIC = 4,         /* outside the heap (no allocation) */
	PM_NODE_IMMORTAL = 8,       /* 3.12+: its refcount means nothing */
	PM_NODE_REACHABLE = 16,     /* the collector reaches it (tracked only) */
	PM_NODE_CONSERVATIVE = 32,  /* its type has no precise reader */
};

/* A reference from outside the heap, named where it could be. */
enum pm_root_kind {
	PM_ROOT_SYS_MODULES = 0,    /* the interpreter's modules dict */
	PM_ROOT_SYSDICT,            /* sys.__dict__ */
	PM_ROOT_BUILTINS,           /* builtins.__dict__ */
	PM_ROOT_FRAME,              /* a thread's frame (3.8-3.10: the frame object) */
	PM_ROOT_FRAME_LOCAL,        /* 3.11+: a local of a thread's frame */
	PM_ROOT_THREAD_STATE,       /* a word of a thread or interpreter state */
	PM_ROOT_STATIC_TYPE,        /* a field of a static type object */
	PM_ROOT_STATIC_DATA,        /* a word of a module's writable data */
	PM_ROOT_C_STACK,            /* a word of a thread's C stack */
	PM_ROOT_UNKNOWN_ALLOC,      /* a word of an allocation that is no object */
	PM_ROOT_KINDS
};

struct pm_graph_root {
	uint32_t node;
	uint8_t kind;               /* enum pm_root_kind */
	uint32_t label;             /* frame local: localsplus index */
	int32_t tid;                /* the thread, for frames and stacks */
	uint64_t where;             /* the word's address (frame: the frame) */
	uint64_t code;              /* frames: the code object */
};
PM_DEFINE_VECTOR(pm_graph_root_vector, struct pm_graph_root)
PM_DEFINE_HASH_MAP(pm_static_node_map, uint64_t, uint32_t, pm_hash_u64_key,
		   pm_u64_key_eq)

struct pm_graph_namer;
PM_DEFINE_HASH_MAP(pm_refcnt_map, uint64_t, uint32_t, pm_hash_u64_key, pm_u64_key_eq)
#define PM_REFCNT_WIDE UINT8_MAX

struct pm_graph {
	struct pm_target *t;
	const struct pm_cpython_heap *heap;
	const struct pm_cpython_layout *l;
	uint32_t nnodes;            /* heap nodes, then static ones */
	uint32_t nheap;
	uint32_t *node_alloc;       /* heap node -> index in heap->allocs */
	uint64_t *static_addr;      /* node nheap + i -> its address */
	uint64_t *static_type;      /* ... and its type */
	struct pm_static_node_map static_nodes;   /* address -> node */
	/* heap->allocs index -> heap node: rank over a bitmap of the live
	 * objects' allocations (a bit per allocation, a count per 64). */
	uint64_t *live_bits;
	uint32_t *live_rank;
	uint32_t *edge_start;       /* nnodes + 1 */
	uint32_t *edge_target;
	/* No labels: pm_graph_edge_label reads them again, with this. */
	struct pm_graph_namer *namer;
	uint8_t *edge_kind;
	uint64_t nedges;
	/* Heap nodes' ob_refcnt (pm_graph_refcnt): below 255 here (all but a
	 * few thousand objects in a big heap), else PM_REFCNT_WIDE here and the
	 * value, clamped to UINT32_MAX, in the map: 3 bytes per object saved. */
	uint8_t *refcnt_low;
	struct pm_refcnt_map refcnt_wide;
	uint8_t *flags;             /* PM_NODE_* */
	struct pm_graph_root_vector roots;
	bool collected;             /* PM_NODE_REACHABLE computed */
	/* What could not be read (each also a target warning). */
	uint64_t bad_objects, dangling;
};

/* Built once per target (cached in PM_CACHE_GRAPH); *ret stays owned by
 * the target. Needs a supported CPython (else PM_ERR_UNSUPPORTED). */
struct pm_error *pm_graph_get(struct pm_target *t, const struct pm_graph **ret);

/* The heap node of the object at addr (PM_NODE_NONE if none), searching
 * from *hint (pm_cpython_find_alloc_near): for lookups in address order. */
uint32_t pm_graph_heap_node_near(const struct pm_graph *g, uint64_t addr, size_t *hint);
/* Hints for pm_graph_heap_node_near kept per page of the address looked
 * up: lookups that alternate between a few pools (a container's items of
 * two size classes, owners of consecutive buffers) each start near their
 * last answer. Zero-initialise. */
struct pm_node_hints {
	size_t by_page[256];
};
static inline uint32_t pm_graph_heap_node_hinted(const struct pm_graph *g, uint64_t addr,
						 struct pm_node_hints *h)
{
	return pm_graph_heap_node_near(g, addr, &h->by_page[(addr >> 12) % 256]);
}
/* Its ob_refcnt, clamped to UINT32_MAX; UINT32_MAX for a static node. */
static inline uint32_t pm_graph_refcnt(const struct pm_graph *g, uint32_t node)
{
	if (node >= g->nheap)
		return UINT32_MAX;
	uint8_t low = g->refcnt_low[node];
	if (low != PM_REFCNT_WIDE)
		return low;
	uint64_t key = node;
	const uint32_t *wide = pm_refcnt_map_search((struct pm_refcnt_map *)&g->refcnt_wide, &key);
	return wide ? *wide : UINT32_MAX;
}

/* The node of the object at exactly addr, or PM_NODE_NONE. */
uint32_t pm_graph_node_at(const struct pm_graph *g, uint64_t addr);
/* The node an address stands for: an object (or any byte of its
 * allocation), or the object that owns the buffer holding addr (a list's
 * item array leads to its list). PM_NODE_NONE when none. */
uint32_t pm_graph_node_for(const struct pm_graph *g, uint64_t addr);
uint64_t pm_graph_node_addr(const struct pm_graph *g, uint32_t node);
/* Its type's tp_name ("?" when unknown). */
const char *pm_graph_node_type(const struct pm_graph *g, uint32_t node);
/* Bytes its allocation occupies (0 for a static node). */
uint64_t pm_graph_node_size(const struct pm_graph *g, uint32_t node);

/* Runs the collector's reachability once (PM_NODE_REACHABLE). */
struct pm_error *pm_graph_collect(struct pm_graph *g);
/* A tracked object gc.collect() would free now. */
bool pm_graph_unreachable(const struct pm_graph *g, uint32_t node);

/* Bytes the graph's arrays and maps take: per node, per reference. */
uint64_t pm_graph_node_bytes(const struct pm_graph *g);
uint64_t pm_graph_edge_bytes(const struct pm_graph *g);

/* The label of an edge from node `from` (a list item's index, a dict
 * entry's, a slot's offset, a field: enum pm_field, ...), read again from
 * the referrer: false when that read does not find the edge again. */
bool pm_graph_edge_label(const struct pm_graph *g, uint32_t from, uint64_t edge,
			 uint32_t *label);

/* "['receipt_cache']", ".__dict__", "[3]", ".x", ... for an edge from
 * node `from`; reads the key or name from the target. */
void pm_graph_edge_text(const struct pm_graph *g, uint32_t from, uint64_t edge,
			struct pm_strbuf *out);
/* "sys.modules", "thread 123 frame f() local 'x'", ... */
void pm_graph_root_text(const struct pm_graph *g, const struct pm_graph_root *r,
			struct pm_strbuf *out);
/* A short rendering of an object: a str's or int's value, else its type. */
void pm_graph_object_text(const struct pm_graph *g, uint32_t node,
			  struct pm_strbuf *out);

#endif
