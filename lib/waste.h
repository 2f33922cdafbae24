/* Memory the program wastes, found in passes over the reference graph's
 * objects (waste.c; classes in waste_slots.c): equal values held in
 * different objects (str, bytes, int, float; tuples and frozensets of
 * equal items: what deduplication, sys.intern for strs, would save), the
 * slack of over-allocated containers (list items arrays, dict entry
 * tables, set tables, bytearray buffers) and who holds them, empty
 * containers, tiny dicts, __slots__ candidates, big lists of numbers an
 * array would hold, the interpreter's free lists. Values are compared by
 * their bytes (a str's kind and characters, a bytes' contents, an int's
 * sign and digits, a float's 8 bytes), hashed and kept once per distinct
 * value; every read from the target is checked against the object's
 * allocation and every size is bounded. The report is report_waste.c. */
#ifndef PM_WASTE_H
#define PM_WASTE_H

/* A tuple's or frozenset's key bytes are its items, 8 bytes each:
 * PM_DUP_ITEM_VALUE | the id of a compared value, or the item's address
 * (frozensets: sorted). */
#define PM_DUP_ITEM_VALUE (UINT64_C(1) << 63)

#include <stdbool.h>
#include <stdint.h>

#include "graph.h"

/* Tuples and frozensets are compared by their items: an item that is one
 * of the values compared here by its value, any other by identity. */
enum pm_dup_type { PM_DUP_STR = 0, PM_DUP_BYTES, PM_DUP_INT, PM_DUP_FLOAT,
		   PM_DUP_TUPLE, PM_DUP_FROZENSET, PM_DUP_TYPES };
const char *pm_dup_type_name(enum pm_dup_type type);

enum { PM_WASTE_EXAMPLES = 3 };

/* A value held by two objects or more. */
struct pm_dup_value {
	const uint8_t *bytes;       /* its key bytes (see above), len of them */
	uint32_t len;
	uint8_t type;               /* enum pm_dup_type */
	uint64_t copies;            /* objects holding it */
	uint64_t bytes_total;       /* their allocations' sizes */
	uint64_t saving;            /* bytes_total less the one copy kept */
	uint64_t interned;          /* strs: copies with an interned state */
	uint32_t examples[PM_WASTE_EXAMPLES];   /* nodes; the kept copy first */
	uint32_t nexamples;
};

struct pm_dup_stats {
	uint64_t objects;           /* exact instances compared */
	uint64_t bytes;             /* their allocations */
	uint64_t distinct;          /* distinct values among them */
	uint64_t dup_values;        /* values held more than once */
	uint64_t copies;            /* objects holding those values */
	uint64_t saving;            /* what keeping one of each would save */
	uint64_t interned;          /* strs in the interned state */
	uint64_t skipped;           /* unreadable, inconsistent or too large */
};

/* Containers: the over-allocated ones and the empty ones. */
enum pm_container { PM_CONT_LIST = 0, PM_CONT_DICT, PM_CONT_SET,
		    PM_CONT_BYTEARRAY, PM_CONT_KINDS };
const char *pm_container_name(enum pm_container kind);

/* One container, as an example of a finding. */
struct pm_waste_example {
	uint32_t node;
	uint64_t figure;            /* its bytes in the finding */
	uint64_t used, capacity;    /* items held, slots allocated */
};

/* Who holds over-allocated containers: the class and attribute (or the
 * container, root or module global) their path from a root ends with. */
struct pm_waste_owner {
	char *name;                 /* "Record.items", "list[i]", ... */
	uint64_t count;
	uint64_t bytes;             /* unused bytes (over-allocation), or the
				     * containers' bytes (empty ones) */
};
enum { PM_WASTE_OWNERS = 8 };

/* The holders with the most bytes, largest first. */
struct pm_waste_owners {
	struct pm_waste_owner top[PM_WASTE_OWNERS];
	uint32_t n;
	uint64_t seen;              /* containers attributed (capped) */
};

struct pm_over_stats {
	uint64_t containers;        /* read */
	uint64_t over;              /* with slack */
	uint64_t buffer_bytes;      /* their items buffers' allocations */
	uint64_t unused;            /* bytes in slots holding nothing */
	uint64_t deleted;           /* dicts, sets: of which deleted entries */
	uint64_t saving;            /* what rebuilding each at its size saves */
	struct pm_waste_example worst[16];      /* by unused bytes, largest first */
	uint32_t nworst;
	struct pm_waste_owners owners;                   /* by unused */
};

struct pm_empty_stats {
	uint64_t count;
	uint64_t bytes;             /* object and its buffers */
	struct pm_waste_example examples[16];   /* the largest */
	uint32_t nexamples;
};

/* Lists of PM_NUMERIC_LIST_MIN items or more, all floats (or all ints):
 * an array.array('d') (or 'q', when the ints fit in 64 bits) holds 8
 * bytes an item instead of the item pointer and the object. The saving
 * counts only objects the list alone holds (refcount 1): the list's
 * items buffer and those objects, less 8 bytes an item. */
#define PM_NUMERIC_LIST_MIN 1000
struct pm_numeric_stats {
	uint64_t lists, items, bytes, saving;
	struct pm_waste_example examples[16];   /* by saving; used = items */
	uint32_t nexamples;
};

/* Objects on the interpreter's free lists (refcount 0, kept for reuse),
 * by type. */
enum { PM_FREE_LIST_TYPES = 16 };
struct pm_free_list_row {
	const char *type;           /* the heap's category name */
	uint64_t count, bytes;
};

struct pm_waste {
	const struct pm_graph *g;
	struct pm_dup_stats dup[PM_DUP_TYPES];
	/* Values held more than once, by saving, largest first. */
	struct pm_dup_value *values;
	size_t nvalues;
	struct pm_over_stats over[PM_CONT_KINDS];
	struct pm_empty_stats empty[PM_CONT_KINDS];
	struct pm_waste_owners empty_owners;    /* of every kind, by bytes */
	/* Dicts of 1 to PM_TINY_DICT_MAX items: their bytes (object and
	 * keys table) and what tuples of the same items would take. */
	uint64_t tiny_dicts, tiny_dict_bytes, tiny_dict_as_tuples;
	struct pm_numeric_stats numeric[2];     /* 0: floats, 1: ints */
	struct pm_free_list_row free_lists[PM_FREE_LIST_TYPES];
	uint32_t nfree_lists;
	uint64_t free_list_count, free_list_bytes;
	struct pm_waste_example tiny_examples[16];
	uint32_t ntiny_examples;
	/* Classes whose instances carry a __dict__ (waste_slots.c), by
	 * saving, largest first. */
	struct pm_slots_class *classes;
	size_t nclasses;
	/* By value id (pm_dup_item values): the distinct values' keys. */
	struct pm_dup_value *by_id;
	uint32_t nids;
	/* Content storage of the distinct values (chunks). */
	uint8_t **chunks;
	size_t nchunks;
	bool content_full;          /* the content cap was reached */
};
#define PM_TINY_DICT_MAX 3

/* A __slots__ candidate: a class (its nearest static base is object)
 * whose instances have a __dict__, a materialized dict or inline values. */
enum { PM_SLOTS_NAMES_MAX = 64 };
struct pm_slots_class {
	uint64_t type;
	const char *name;           /* tp_name (the heap's type table's) */
	uint64_t instances;
	uint64_t with_dict;         /* of which with a dict object */
	uint32_t names;             /* distinct attribute names (union) */
	char *name_list;            /* them, "a, b, c" (sampled instances) */
	bool names_capped;          /* more than PM_SLOTS_NAMES_MAX */
	uint64_t name_sets;         /* distinct attribute-name sets */
	uint64_t top_set_share;     /* instances with the commonest set */
	uint64_t bytes_now;         /* instances, their dicts and values */
	uint64_t bytes_slotted;     /* the same instances with __slots__ */
	uint64_t saving;
	uint32_t examples[PM_WASTE_EXAMPLES];
	uint32_t nexamples;
};

/* Fills w->classes: the classes of the instances in g (waste_slots.c). */
struct pm_error *pm_waste_slots(struct pm_target *t, const struct pm_graph *g,
				struct pm_waste *w);

/* Runs the analysis; pm_waste_deinit frees it. */
struct pm_graph_paths;
/* p: the graph's paths, for the owners of over-allocated containers
 * (NULL: none). */
struct pm_error *pm_waste_analyse(struct pm_target *t, const struct pm_graph *g,
				  const struct pm_graph_paths *p, struct pm_waste *ret);
void pm_waste_deinit(struct pm_waste *w);

/* A value's text as Python's repr would start it (cut after max chars). */
void pm_dup_value_text(const struct pm_waste *w, const struct pm_dup_value *v,
		       size_t max, struct pm_strbuf *out);

#endif
