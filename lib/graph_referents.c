/* The references of one object, read from the target the way its type's
 * tp_traverse visits them (Objects/<kind>object.c): container items (tuple, list,
 * dict in every 3.8-3.13 layout, set, deque, OrderedDict), an instance's
 * class, __slots__, __dict__ or values array, a heap type's dict, MRO and
 * bases, frame and generator locals and stacks, the fields of the other
 * built-in kinds; every other type's words that point at an object's start
 * (conservative). An edge is marked traversed when CPython's collector
 * visits it; weak references are edges of their own kind, never strong. */
#include "graph_build.h"

#include <stdlib.h>
#include <string.h>

#include "bytes.h"

enum {
	OB_SIZE = 16,
	LIST_ITEMS = 24, LIST_ALLOCATED = 32,
	DICT_USED = 16, DICT_KEYS = 32, DICT_VALUES = 40,
	SET_MASK = 32, SET_TABLE = 40, SET_ENTRY = 16,
	DEQUE_LEFTBLOCK = 24, DEQUE_LEFTINDEX = 40, DEQUE_RIGHTINDEX = 48,
	DEQUE_BLOCK_ITEMS = 8, DEQUE_BLOCK_RIGHTLINK = 520, DEQUE_BLOCKLEN = 64,
	ODICT_FIRST = 48, ODICT_INST_DICT = 96, ODICT_NODE_NEXT = 16,
	DEFAULTDICT_FACTORY = 48,
	MODULE_DICT = 16,
	WEAKREF_OBJECT = 16, WEAKREF_CALLBACK = 24,
	TP_BASE = 256, TP_DICT = 264, TP_BASES = 336, TP_MRO = 344,
	TP_CACHE = 352, TP_SUBCLASSES = 360,
	TPFLAG_MANAGED_DICT = 1 << 4, TPFLAG_INLINE_VALUES = 1 << 2,
	CHUNK_WORDS = 512,          /* words of an array read at once */
	ITEMS_MAX = 1 << 28,        /* container sizes taken as plausible */
	CONSERVATIVE_MAX = 1 << 16, /* bytes of an object scanned */
	FRAME_OWNED_BY_FRAME_OBJECT = 2,
	F_STATE_310 = 108, FRAME_EXECUTING_310 = 0, /* PyFrameObject.f_state */
	CO_STACKSIZE_38 = 32,       /* PyCodeObject.co_stacksize, 3.8-3.10 */
	FRAME_CLEARED = 4,
};

/* 3.14 and 3.15 (ptype /o on Debian's 3.14.10 and 3.15.2; their pydebug
 * builds differ only in a bit field after the frame's owner): exceptions,
 * frame objects, interpreter frames (8 bytes larger: stackpointer,
 * visited) and generators */
#define REFERENTS_FROM_314 .exc_notes = 32, .exc_traceback = 40, .exc_context = 48, \
	.exc_cause = 56, .exc_size = 72, \
	.f11_back = 16, .f11_frame = 24, .f11_trace = 32, .f11_data = 72, \
	.f11_extra_locals = 48, .f11_locals_cache = 56, .f11_overwritten = 64, \
	.if_func = 16, .if_code = 0, .if_locals = 40, .if_frame_obj = 48, \
	.if_stacktop = 64, .if_owner = 74, .if_localsplus = 80, \
	.gi_name = 24, .gi_qualname = 32, .gi_exc_value = 40, \
	.gi_frame_state = 67, .gi_iframe = 72, .gi_origin = 56, \
	.dict_keys_311 = true, .dict_values_313 = true, .stackrefs = true

static const struct referent_layout referent_layouts[] = {
	{ .minor = 8, .ht_size = 880, .ht_name = 848, .ht_slots = 856, .ht_qualname = 864,
	  .ht_cached_keys = 872,
	  .exc_traceback = 32, .exc_context = 40, .exc_cause = 48, .exc_size = 64,
	  .f_back = 24, .f_code = 32, .f_builtins = 40, .f_globals = 48,
	  .f_locals = 56, .f_valuestack = 64, .f_stacktop = 72, .f_trace = 80,
	  .f_localsplus = 360, .co_nlocals = 28, .co_cellvars = 88,
	  .co_freevars = 80,
	  .gi_frame = 16, .gi_code = 32, .gi_name = 48, .gi_qualname = 56,
	  .gi_exc_type = 64, .gi_exc_value = 72, .gi_exc_traceback = 80,
	  .gi_origin = 96 },
	{ .minor = 9, .ht_size = 880, .ht_name = 840, .ht_slots = 848, .ht_qualname = 856,
	  .ht_cached_keys = 864, .ht_module = 872,
	  .exc_traceback = 32, .exc_context = 40, .exc_cause = 48, .exc_size = 64,
	  .f_back = 24, .f_code = 32, .f_builtins = 40, .f_globals = 48,
	  .f_locals = 56, .f_valuestack = 64, .f_stacktop = 72, .f_trace = 80,
	  .f_localsplus = 360, .co_nlocals = 28, .co_cellvars = 88,
	  .co_freevars = 80,
	  .gi_frame = 16, .gi_code = 32, .gi_name = 48, .gi_qualname = 56,
	  .gi_exc_type = 64, .gi_exc_value = 72, .gi_exc_traceback = 80,
	  .gi_origin = 96 },
	{ .minor = 10, .ht_size = 888, .ht_name = 848, .ht_slots = 856, .ht_qualname = 864,
	  .ht_cached_keys = 872, .ht_module = 880,
	  .exc_traceback = 32, .exc_context = 40, .exc_cause = 48, .exc_size = 64,
	  .f_back = 24, .f_code = 32, .f_builtins = 40, .f_globals = 48,
	  .f_locals = 56, .f_valuestack = 64, .f_stackdepth = 80, .f_trace = 72,
	  .f_localsplus = 352, .co_nlocals = 28, .co_cellvars = 88,
	  .co_freevars = 80,
	  .gi_frame = 16, .gi_code = 24, .gi_name = 40, .gi_qualname = 48,
	  .gi_exc_type = 56, .gi_exc_value = 64, .gi_exc_traceback = 72,
	  .gi_origin = 88 },
	{ .minor = 11, .ht_size = 904, .ht_name = 848, .ht_slots = 856, .ht_qualname = 864,
	  .ht_cached_keys = 872, .ht_module = 880,
	  .exc_notes = 32, .exc_traceback = 40, .exc_context = 48,
	  .exc_cause = 56, .exc_size = 72,
	  .f11_back = 16, .f11_frame = 24, .f11_trace = 32, .f11_data = 48,
	  .if_func = 0, .if_code = 32, .if_locals = 24, .if_frame_obj = 40,
	  .if_stacktop = 64, .if_owner = 69, .if_localsplus = 72,
	  .gi_code = 16, .gi_name = 32, .gi_qualname = 40, .gi_exc_value = 48,
	  .gi_frame_state = 75, .gi_iframe = 80, .gi_origin = 64,
	  .dict_keys_311 = true },
	{ .minor = 12, .ht_size = 920, .ht_name = 856, .ht_slots = 864, .ht_qualname = 872,
	  .ht_cached_keys = 880, .ht_module = 888,
	  .exc_notes = 32, .exc_traceback = 40, .exc_context = 48,
	  .exc_cause = 56, .exc_size = 72,
	  .f11_back = 16, .f11_frame = 24, .f11_trace = 32, .f11_data = 48,
	  .if_func = 16, .if_code = 0, .if_locals = 40, .if_frame_obj = 48,
	  .if_stacktop = 64, .if_owner = 70, .if_localsplus = 72,
	  .gi_name = 24, .gi_qualname = 32, .gi_exc_value = 40,
	  .gi_frame_state = 67, .gi_iframe = 72, .gi_origin = 56,
	  .dict_keys_311 = true },
	{ .minor = 13, .ht_size = 928, .ht_name = 856, .ht_slots = 864, .ht_qualname = 872,
	  .ht_cached_keys = 880, .ht_module = 888,
	  .exc_notes = 32, .exc_traceback = 40, .exc_context = 48,
	  .exc_cause = 56, .exc_size = 72,
	  .f11_back = 16, .f11_frame = 24, .f11_trace = 32, .f11_data = 64,
	  .f11_extra_locals = 48, .f11_locals_cache = 56,
	  .if_func = 16, .if_code = 0, .if_locals = 40, .if_frame_obj = 48,
	  .if_stacktop = 64, .if_owner = 70, .if_localsplus = 72,
	  .gi_name = 24, .gi_qualname = 32, .gi_exc_value = 40,
	  .gi_frame_state = 67, .gi_iframe = 72, .gi_origin = 56,
	  .dict_keys_311 = true, .dict_values_313 = true },
	{ .minor = 14, .ht_size = 936, .ht_name = 856, .ht_slots = 864, .ht_qualname = 872,
	  .ht_cached_keys = 880, .ht_module = 888, REFERENTS_FROM_314 },
	/* 3.15: heap types 8 bytes larger before ht_name */
	{ .minor = 15, .ht_size = 944, .ht_name = 864, .ht_slots = 872, .ht_qualname = 880,
	  .ht_cached_keys = 888, .ht_module = 896, REFERENTS_FROM_314 },
};

const struct referent_layout *referent_layout_for(int minor)
{
	for (size_t i = 0; i < sizeof(referent_layouts) / sizeof(referent_layouts[0]); i++)
		if (referent_layouts[i].minor == minor)
			return &referent_layouts[i];
	return NULL;
}

/* ---- helpers ---------------------------------------------------------- */

/* Bytes of the object's allocation from the object on (an in-use chunk's
 * data runs into the next chunk's prev_size word). */
static uint64_t object_room(const struct builder *b)
{
	return pm_alloc_data_end(b->alloc) - b->obj;
}

/* The word at obj + off: from the window, else read. */
static bool field_word(struct builder *b, uint64_t off, uint64_t *ret)
{
	if (off + 8 <= b->window_len) {
		*ret = pm_load_u64(b->window + off);
		return true;
	}
	return off + 8 <= object_room(b) && builder_word(b, b->obj + off, ret);
}

/* Bytes of the object itself, as CPython sizes it (basicsize, plus
 * itemsize per item of a variable-size one), at most its allocation: the
 * rest of the allocation is allocator rounding whose stale words point
 * anywhere, at garbage too (PYTHONMALLOC=malloc's chunks have such tails). */
static uint64_t object_size(struct builder *b)
{
	uint64_t room = object_room(b), size = b->type->basicsize, n;
	if (size < 16)
		return room;
	if (b->type->itemsize && field_word(b, OB_SIZE, &n)) {
		n = (int64_t)n < 0 ? -n : n;
		if (n > room / b->type->itemsize)
			return room;
		size += n * b->type->itemsize;
	}
	size = (size + 7) & ~(uint64_t)7;
	return size < room ? size : room;
}

static uint8_t edge_kind(const struct builder *b, enum pm_edge_kind kind,
			 bool traversed)
{
	return (uint8_t)(kind | (traversed && b->type->gc ? PM_EDGE_TRAVERSED : 0));
}

static struct pm_error *emit(struct builder *b, uint64_t ptr,
			     enum pm_edge_kind kind, uint32_t label, bool traversed)
{
	return builder_edge(b, ptr, edge_kind(b, kind, traversed), label);
}

static struct pm_error *emit_field(struct builder *b, uint64_t off,
				   enum pm_field field, bool traversed)
{
	uint64_t ptr;
	if (!field_word(b, off, &ptr))
		return NULL;
	if (field == PM_FIELD_DICT)
		return emit(b, ptr, PM_EDGE_DICT, 0, traversed);
	return emit(b, ptr, PM_EDGE_FIELD, field, traversed);
}

/* n words at addr, each an edge of kind with label first + i. */
static struct pm_error *emit_array(struct builder *b, uint64_t addr, uint64_t n,
				   enum pm_edge_kind kind, uint32_t first,
				   bool traversed)
{
	uint64_t words[CHUNK_WORDS];
	for (uint64_t i = 0; i < n;) {
		size_t k = n - i < CHUNK_WORDS ? (size_t)(n - i) : CHUNK_WORDS;
		if (!builder_read(b, addr + 8 * i, words, 8 * k)) {
			builder_warn(b, addr + 8 * i, "items unreadable");
			return NULL;
		}
		for (size_t j = 0; j < k; j++) {
			uint64_t word = b->stackref_words ? pm_stackref_object(words[j]) : words[j];
			struct pm_error *err = emit(b, word, kind,
						    first + (uint32_t)(i + j), traversed);
			if (err)
				return err;
		}
		i += k;
	}
	return NULL;
}

/* ---- containers ------------------------------------------------------- */

static struct pm_error *read_tuple(struct builder *b)
{
	uint64_t n;
	if (!field_word(b, OB_SIZE, &n))
		return NULL;
	uint32_t items = pm_tuple_items(b->minor);
	if (n > ITEMS_MAX || items + 8 * n > object_room(b)) {
		builder_warn(b, b->obj, "tuple size beyond its allocation");
		return NULL;
	}
	return emit_array(b, b->obj + items, n, PM_EDGE_ITEM, 0, true);
}

static struct pm_error *read_list(struct builder *b)
{
	uint64_t n, items, allocated;
	if (!field_word(b, OB_SIZE, &n) || !field_word(b, LIST_ITEMS, &items) ||
	    !field_word(b, LIST_ALLOCATED, &allocated))
		return NULL;
	if (n > allocated || n > ITEMS_MAX || (n && !items)) {
		builder_warn(b, b->obj, "list size beyond its allocated items");
		return NULL;
	}
	return emit_array(b, items, n, PM_EDGE_ITEM, 0, true);
}

static bool dict_keys_read(struct builder *b, uint64_t keys, struct dict_keys *k)
{
	uint8_t h[DICT_KEYS_HEAD];
	return keys && !(keys & 7) && builder_read(b, keys, h, sizeof(h)) &&
	       dict_keys_geometry(h, keys, b->rl->dict_keys_311, k);
}

bool dict_keys_geometry(const uint8_t *h, uint64_t keys, bool v311,
			struct dict_keys *k)
{
	if (v311) {
		uint8_t log2_size = h[8], log2_index_bytes = h[9], kind = h[10];
		if (log2_size > 30 || log2_index_bytes > 33 || kind > 2)
			return false;
		k->nentries = pm_load_u64(h + 24);
		k->entries = keys + 32 + (UINT64_C(1) << log2_index_bytes);
		k->entry_size = kind ? 16 : 24;
		k->key_off = kind ? 0 : 8;
		k->value_off = kind ? 8 : 16;
		k->keys_traversed = kind == 0;
		k->lookup = 0;
		return k->nentries <= (UINT64_C(1) << log2_size);
	}
	uint64_t size = pm_load_u64(h + 8);
	/* The shared empty table has one slot. */
	if (!size || size > ((uint64_t)1 << 30) || size & (size - 1))
		return false;
	unsigned width = size <= 0xff ? 1 : size <= 0xffff ? 2 :
			 size <= 0xffffffffu ? 4 : 8;
	k->nentries = pm_load_u64(h + 32);
	k->entries = keys + 40 + size * width;
	k->entry_size = 24;
	k->key_off = 8;
	k->value_off = 16;
	k->lookup = pm_load_u64(h + 16);
	k->keys_traversed = true;   /* settled at the end (dict_lookups_fix) */
	return k->nentries <= size;
}

/* Is the node a str (exactly)? The key of a dict whose lookup is general. */
static bool node_is_str(const struct builder *b, uint32_t node)
{
	if (node < b->g->nheap) {
		const struct pm_alloc *a = &b->heap->allocs[b->node_alloc.data[node]];
		return a->category < b->ncategories && b->str_category[a->category];
	}
	size_t i = node - b->g->nheap;
	return i < b->static_type.size &&
	       b->static_type.data[i] == b->heap->kind_types[TK_STR];
}

static struct pm_error *read_dict_at(struct builder *b, uint64_t dict)
{
	uint64_t keys, values;
	if (!builder_word(b, dict + DICT_KEYS, &keys) ||
	    !builder_word(b, dict + DICT_VALUES, &values))
		return NULL;
	struct dict_keys k;
	if (!dict_keys_read(b, keys, &k)) {
		builder_warn(b, keys, "dict keys table unreadable or inconsistent");
		return NULL;
	}
	if (values) {
		/* Split: the values only; the keys belong to the class. */
		uint64_t first = values;
		if (b->rl->dict_values_313)
			first += 8;
		return emit_array(b, first, k.nentries, PM_EDGE_DICT_VALUE, 0, true);
	}
	size_t first_edge = b->targets.size;
	bool general = false;
	uint8_t buf[CHUNK_WORDS * 8];
	size_t per = sizeof(buf) / k.entry_size;
	for (uint64_t i = 0; i < k.nentries;) {
		size_t n = k.nentries - i < per ? (size_t)(k.nentries - i) : per;
		if (!builder_read(b, k.entries + i * k.entry_size, buf, n * k.entry_size)) {
			builder_warn(b, k.entries, "dict entries unreadable");
			return NULL;
		}
		for (size_t j = 0; j < n; j++) {
			const uint8_t *e = buf + j * k.entry_size;
			uint64_t key = pm_load_u64(e + k.key_off);
			uint64_t value = pm_load_u64(e + k.value_off);
			if (!value)
				continue;       /* empty or deleted */
			uint32_t label = (uint32_t)(i + j);
			size_t before = b->targets.size;
			struct pm_error *err = emit(b, key, PM_EDGE_DICT_KEY, label,
						    k.keys_traversed);
			if (!err && b->targets.size > before &&
			    !node_is_str(b, b->targets.data[before]))
				general = true;
			if (!err)
				err = emit(b, value, PM_EDGE_DICT_VALUE, label, true);
			if (err)
				return err;
		}
		i += n;
	}
	if (k.lookup) {
		struct dict_lookup rec = { (uint32_t)first_edge,
					   (uint32_t)b->targets.size, k.lookup,
					   general };
		if (!dict_lookup_vector_append(&b->dict_lookups, &rec))
			return &pm_error_no_memory;
	}
	return NULL;
}

/* 3.8-3.10: tp_traverse visits a dict's keys only when its lookup function
 * is the general one (lookdict), which every dict with a non-str key has:
 * the key edges of the others stop being traversed. */
struct pm_error *dict_lookups_fix(struct builder *b)
{
	uint64_t general = 0;
	bool ambiguous = false;
	for (size_t i = 0; i < b->dict_lookups.size; i++) {
		const struct dict_lookup *d = &b->dict_lookups.data[i];
		if (!d->general)
			continue;
		if (general && general != d->lookup)
			ambiguous = true;
		general = d->lookup;
	}
	if (ambiguous)
		pm_target_warn(b->t, false, 0, "reference graph: dicts with non-str "
			       "keys have different lookup functions; their keys "
			       "are taken as traversed");
	for (size_t i = 0; i < b->dict_lookups.size; i++) {
		const struct dict_lookup *d = &b->dict_lookups.data[i];
		if (d->general || (ambiguous || d->lookup == general))
			continue;
		for (uint32_t e = d->first_edge; e < d->end_edge; e++)
			if (PM_EDGE_KIND(b->kinds.data[e]) == PM_EDGE_DICT_KEY)
				b->kinds.data[e] &= (uint8_t)~PM_EDGE_TRAVERSED;
	}
	return NULL;
}

static bool set_dummy(struct builder *b, uint64_t key)
{
	if (b->set_dummy)
		return key == b->set_dummy;
	if (builder_heap_node(b, key) != PM_NODE_NONE)
		return false;
	uint64_t tp;
	const struct reader_type *rt;
	if (!builder_word(b, key + 8, &tp))
		return false;
	struct pm_error *err = reader_type_get(b, tp, &rt);
	pm_error_destroy(err);
	if (err || !rt->valid || strcmp(rt->name, "<dummy key> type"))
		return false;
	b->set_dummy = key;
	return true;
}

static struct pm_error *read_set(struct builder *b)
{
	uint64_t mask, table;
	if (!field_word(b, SET_MASK, &mask) || !field_word(b, SET_TABLE, &table))
		return NULL;
	if (mask >= ITEMS_MAX || (mask & (mask + 1))) {
		builder_warn(b, b->obj, "set mask inconsistent");
		return NULL;
	}
	uint8_t buf[CHUNK_WORDS * 8];
	size_t per = sizeof(buf) / SET_ENTRY;
	for (uint64_t i = 0; i <= mask;) {
		size_t n = mask + 1 - i < per ? (size_t)(mask + 1 - i) : per;
		if (!builder_read(b, table + i * SET_ENTRY, buf, n * SET_ENTRY)) {
			builder_warn(b, table, "set table unreadable");
			return NULL;
		}
		for (size_t j = 0; j < n; j++) {
			uint64_t key = pm_load_u64(buf + j * SET_ENTRY);
			if (!key || set_dummy(b, key))
				continue;
			struct pm_error *err = emit(b, key, PM_EDGE_SET_ITEM,
						    (uint32_t)(i + j), true);
			if (err)
				return err;
		}
		i += n;
	}
	return NULL;
}

static struct pm_error *read_deque(struct builder *b)
{
	uint64_t len, block, left, right;
	if (!field_word(b, OB_SIZE, &len) || !field_word(b, DEQUE_LEFTBLOCK, &block) ||
	    !field_word(b, DEQUE_LEFTINDEX, &left) ||
	    !field_word(b, DEQUE_RIGHTINDEX, &right))
		return NULL;
	if (len > ITEMS_MAX || left >= DEQUE_BLOCKLEN || right >= DEQUE_BLOCKLEN) {
		builder_warn(b, b->obj, "deque indexes inconsistent");
		return NULL;
	}
	uint64_t index = 0, start = left;
	while (index < len) {
		uint64_t n = DEQUE_BLOCKLEN - start;
		if (n > len - index)
			n = len - index;
		struct pm_error *err = emit_array(b, block + DEQUE_BLOCK_ITEMS + 8 * start,
						  n, PM_EDGE_ITEM, (uint32_t)index, true);
		if (err)
			return err;
		index += n;
		start = 0;
		if (index < len && !builder_word(b, block + DEQUE_BLOCK_RIGHTLINK, &block)) {
			builder_warn(b, block, "deque block unreadable");
			return NULL;
		}
	}
	return NULL;
}

static struct pm_error *read_odict(struct builder *b)
{
	struct pm_error *err = read_dict_at(b, b->obj);
	if (!err)
		err = emit_field(b, ODICT_INST_DICT, PM_FIELD_INST_DICT, true);
	uint64_t node, used;
	if (err || !field_word(b, ODICT_FIRST, &node) || !field_word(b, DICT_USED, &used))
		return err;
	/* The nodes hold references to the keys too (odict_traverse): one
	 * per key of the dict, so a damaged list that loops ends there. */
	uint64_t i = 0;
	for (; node && i < used && i < ITEMS_MAX && !err; i++) {
		uint64_t key;
		if (!builder_word(b, node, &key) ||
		    !builder_word(b, node + ODICT_NODE_NEXT, &node)) {
			builder_warn(b, node, "OrderedDict node unreadable");
			break;
		}
		err = emit(b, key, PM_EDGE_FIELD, PM_FIELD_ODICT_KEY, true);
	}
	if (!err && node && i >= used)
		builder_warn(b, b->obj, "OrderedDict node list longer than its dict (a loop?); cut");
	return err;
}

/* ---- instances -------------------------------------------------------- */

/* A heap type's instance attributes kept in a values array (3.11+): as many
 * as its class's shared keys have entries, named by them. */
static struct pm_error *emit_values(struct builder *b, uint64_t values,
				    uint64_t count, bool traversed)
{
	return emit_array(b, values, count, PM_EDGE_ATTR, 0, traversed);
}

static uint64_t shared_keys_entries(struct builder *b)
{
	uint64_t tp, keys, n;
	if (!field_word(b, 8, &tp) || !builder_word(b, tp + b->rl->ht_cached_keys, &keys) ||
	    !keys || !builder_word(b, keys + 24, &n) || n > ITEMS_MAX)
		return 0;
	return n;
}

static struct pm_error *managed_dict(struct builder *b)
{
	int minor = b->minor;
	uint64_t dict = 0, values = 0, word;
	if (b->obj - b->alloc->addr < 32 && minor <= 12)
		return NULL;
	if (minor == 11) {
		builder_word(b, b->obj - 24, &dict);
		builder_word(b, b->obj - 32, &values);
		struct pm_error *err = values ?
			emit_values(b, values, shared_keys_entries(b), true) : NULL;
		return err ? err : emit(b, dict, PM_EDGE_DICT, 0, true);
	}
	if (minor == 12) {
		if (!builder_word(b, b->obj - 24, &word))
			return NULL;
		if (word & 1)
			return emit_values(b, word + 1, shared_keys_entries(b), true);
		return emit(b, word, PM_EDGE_DICT, 0, true);
	}
	/* 3.13: inline values after the object when valid (then the dict is
	 * not visited: PyObject_VisitManagedDict), else the dict. Since
	 * CPython gh-130469 (seen in 3.13.18 and 3.14.10, not in 3.13.0;
	 * the releases between are taken as 3.13.0) a materialized dict is
	 * visited instead, even with the values valid (it shares them). */
	builder_word(b, b->obj - 24, &dict);
	const struct pm_python_info *py = b->heap->py;
	bool dict_first = py->minor >= 15 || (py->micro >= 0 &&
		((py->minor == 14 && py->micro >= 10) || (py->minor == 13 && py->micro >= 18)));
	if (dict && dict_first)
		return emit(b, dict, PM_EDGE_DICT, 0, true);
	if (b->type->flags & TPFLAG_INLINE_VALUES) {
		uint8_t head[8];
		if (b->type->basicsize + 8 <= object_room(b) &&
		    builder_read(b, b->obj + b->type->basicsize, head, sizeof(head)) &&
		    head[3]) {
			uint64_t n = shared_keys_entries(b);
			if (n > head[0])
				n = head[0];
			struct pm_error *err = emit_values(b, b->obj + b->type->basicsize + 8,
							   n, true);
			return err ? err : emit(b, dict, PM_EDGE_DICT, 0, false);
		}
	}
	return emit(b, dict, PM_EDGE_DICT, 0, true);
}

/* Where a var-sized object keeps its __dict__ pointer (negative
 * tp_dictoffset): counted from the end of its items. */
static bool dict_pointer_offset(struct builder *b, uint64_t *ret)
{
	int64_t off = b->type->dictoffset;
	if (off > 0) {
		*ret = (uint64_t)off;
		return true;
	}
	uint64_t size;
	if (!field_word(b, OB_SIZE, &size))
		return false;
	int64_t n = (int64_t)size;
	if (b->minor >= 12 && b->type->itemsize == 4)
		n = (int64_t)(size >> 3);   /* an int's lv_tag */
	if (n < 0)
		n = -n;
	uint64_t end = (b->type->basicsize + (uint64_t)n * b->type->itemsize + 7) & ~UINT64_C(7);
	if ((uint64_t)-off > end)
		return false;
	*ret = end + (uint64_t)off;
	return true;
}

/* What subtype_traverse adds for an instance of a heap type: its class,
 * its __slots__, its __dict__ (where its own type put one). */
static struct pm_error *read_instance(struct builder *b)
{
	uint64_t tp;
	struct pm_error *err = NULL;
	if (field_word(b, 8, &tp))
		err = emit(b, tp, PM_EDGE_TYPE, 0, true);
	for (size_t i = 0; i < b->type->slots.size && !err; i++) {
		uint64_t off = b->type->slots.data[i].offset, ptr;
		if (field_word(b, off, &ptr))
			err = emit(b, ptr, PM_EDGE_SLOT, (uint32_t)off, true);
	}
	if (err)
		return err;
	if (b->minor >= 11 && b->type->flags & TPFLAG_MANAGED_DICT)
		return managed_dict(b);
	uint64_t off, dict;
	if (b->type->dictoffset && b->type->dictoffset != b->type->base_dictoffset &&
	    dict_pointer_offset(b, &off) && field_word(b, off, &dict))
		return emit(b, dict, PM_EDGE_DICT, 0, true);
	return NULL;
}

/* ---- the other kinds -------------------------------------------------- */

static struct pm_error *read_fields(struct builder *b, const struct field_def *f,
				    size_t n)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < n && !err; i++)
		if ((uint64_t)f[i].offset + 8 <= b->type->basicsize)
			err = emit_field(b, f[i].offset, (enum pm_field)f[i].field,
					 f[i].traversed);
	return err;
}

/* A heap type: type_traverse visits its dict, cache, MRO, bases, base and
 * module; its subclasses (weak references), names and slots it does not. */
static struct pm_error *read_type(struct builder *b)
{
	const struct referent_layout *rl = b->rl;
	struct field_def fields[] = {
		{ TP_DICT, PM_FIELD_DICT, true },
		{ TP_CACHE, PM_FIELD_CACHE, true },
		{ TP_MRO, PM_FIELD_MRO, true },
		{ TP_BASES, PM_FIELD_BASES, true },
		{ TP_BASE, PM_FIELD_BASE, true },
		{ TP_SUBCLASSES, PM_FIELD_SUBCLASSES, false },
		{ (uint16_t)rl->ht_name, PM_FIELD_NAME, false },
		{ (uint16_t)rl->ht_qualname, PM_FIELD_QUALNAME, false },
		{ (uint16_t)rl->ht_slots, PM_FIELD_SLOTS, false },
		{ (uint16_t)rl->ht_module, PM_FIELD_MODULE, true },
	};
	uint64_t flags;
	if (!field_word(b, 168, &flags) || !(flags & (1 << 9)))
		return NULL;        /* a static type: no heap type's fields */
	size_t n = sizeof(fields) / sizeof(fields[0]) - (rl->ht_module ? 0 : 1);
	struct pm_error *err = NULL;
	for (size_t i = 0; i < n && !err; i++)
		err = emit_field(b, fields[i].offset, (enum pm_field)fields[i].field,
				 fields[i].traversed);
	/* The shared keys of its instances' dicts hold their names. */
	uint64_t keys;
	struct dict_keys k;
	if (err || !field_word(b, rl->ht_cached_keys, &keys) || !keys ||
	    !dict_keys_read(b, keys, &k))
		return err;
	for (uint64_t i = 0; i < k.nentries && i < ITEMS_MAX && !err; i++) {
		uint64_t key;
		if (!builder_word(b, k.entries + i * k.entry_size + k.key_off, &key))
			break;
		err = emit(b, key, PM_EDGE_DICT_KEY, (uint32_t)i, false);
	}
	return err;
}

/* Words of [from, to) of the object and of the buffers it owns that may
 * hold references, each pointing at an object's start an edge. */
static struct pm_error *read_conservative_range(struct builder *b, uint64_t from,
						uint64_t to)
{
	uint64_t room = object_room(b);
	if (to > room)
		to = room;
	if (to > CONSERVATIVE_MAX)
		to = CONSERVATIVE_MAX;
	struct pm_error *err = NULL;
	for (uint64_t off = from; off + 8 <= to && !err; off += 8) {
		uint64_t word;
		if (off == b->type->weaklistoffset || !field_word(b, off, &word))
			continue;
		if ((int64_t)off == b->type->dictoffset)
			err = emit(b, word, PM_EDGE_DICT, 0, true);
		else
			err = emit(b, word, PM_EDGE_CONSERVATIVE, (uint32_t)off, true);
	}
	return err;
}

static struct pm_error *read_owned_buffers(struct builder *b)
{
	struct pm_error *err = NULL;
	size_t lo = 0, hi = b->owned.size;
	while (lo < hi) {           /* the first pair of this node */
		size_t mid = lo + (hi - lo) / 2;
		if (b->owned.data[mid].node < b->node)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < b->owned.size && b->owned.data[i].node == b->node && !err; i++) {
		const struct pm_alloc *buf = &b->heap->allocs[b->owned.data[i].alloc];
		uint64_t start = buf->addr + buf->object_offset;
		uint64_t len = pm_alloc_data_end(buf) - start;
		if (len > CONSERVATIVE_MAX)
			len = CONSERVATIVE_MAX;
		for (uint64_t off = 0; off + 8 <= len && !err; off += 8) {
			uint64_t word;
			if (builder_word(b, start + off, &word))
				err = emit(b, word, PM_EDGE_CONSERVATIVE, UINT32_MAX, true);
		}
	}
	return err;
}

enum {
	NDARRAY_DATA = 16, NDARRAY_ND = 24, NDARRAY_DIMS = 32,
	NDARRAY_DESCR = 56, NDARRAY_FLAGS = 64, NDARRAY_OWNDATA = 0x4,
	NDARRAY_MAXDIMS = 64, DESCR_KIND = 24,
};

/* A numpy array: its own fields conservatively (base, descr, ...); an
 * object array ('O' dtype) that owns its data also refers to its items:
 * prod(dims) object pointers at data, in the allocation the analysis
 * attributed to it as its "numpy data" (cpython_numpy.c). A view's items
 * are its base's references. */
static struct pm_error *read_ndarray(struct builder *b)
{
	struct pm_error *err = read_conservative_range(b, 16, object_size(b));
	uint64_t data, nd, dims, descr, flags, kind;
	if (err || !field_word(b, NDARRAY_DATA, &data) ||
	    !field_word(b, NDARRAY_ND, &nd) || !field_word(b, NDARRAY_DIMS, &dims) ||
	    !field_word(b, NDARRAY_DESCR, &descr) ||
	    !field_word(b, NDARRAY_FLAGS, &flags) || !(flags & NDARRAY_OWNDATA) ||
	    !descr || descr & 7 || !builder_word(b, descr + DESCR_KIND, &kind) ||
	    (char)kind != 'O' || pm_cpython_owner_of(b->heap, data) != b->obj)
		return err;
	const struct pm_alloc *alloc = pm_cpython_find_alloc(b->heap, data);
	uint64_t room = alloc ? (pm_alloc_data_end(alloc) - data) / 8 : 0, n = 1;
	nd = (uint32_t)nd;
	if (nd > NDARRAY_MAXDIMS)
		return NULL;
	for (uint64_t i = 0; i < nd && n; i++) {
		uint64_t d;
		if (!builder_word(b, dims + 8 * i, &d))
			return NULL;
		if (d && n > room / d) {
			builder_warn(b, b->obj, "object array larger than its data");
			return NULL;
		}
		n *= d;
	}
	return emit_array(b, data, n, PM_EDGE_ITEM, 0, false);
}

static struct pm_error *read_exception(struct builder *b)
{
	const struct referent_layout *rl = b->rl;
	struct field_def fields[] = {
		{ 16, PM_FIELD_DICT, true }, { 24, PM_FIELD_ARGS, true },
		{ (uint16_t)rl->exc_traceback, PM_FIELD_TRACEBACK, true },
		{ (uint16_t)rl->exc_context, PM_FIELD_CONTEXT, true },
		{ (uint16_t)rl->exc_cause, PM_FIELD_CAUSE, true },
		{ (uint16_t)rl->exc_notes, PM_FIELD_NOTES, true },
	};
	size_t n = sizeof(fields) / sizeof(fields[0]) - (rl->exc_notes ? 0 : 1);
	struct pm_error *err = read_fields(b, fields, n);
	/* A C subclass's own fields (OSError's errno, filename, ...). */
	return err ? err : read_conservative_range(b, rl->exc_size,
						   b->type->base_basicsize);
}

/* 3.11+: an interpreter frame's references, as _PyFrame_Traverse visits
 * them: the frame object, locals dict, function, code and the localsplus
 * entries below stacktop. */
static struct pm_error *read_iframe(struct builder *b, uint64_t frame)
{
	const struct referent_layout *rl = b->rl;
	uint8_t h[80];
	if (!builder_read(b, frame, h, sizeof(h))) {
		builder_warn(b, frame, "interpreter frame unreadable");
		return NULL;
	}
	uint64_t func = pm_load_u64(h + rl->if_func), code = pm_load_u64(h + rl->if_code);
	if (rl->stackrefs) {
		func = pm_stackref_object(func);
		code = pm_stackref_object(code);
	}
	struct pm_error *err = emit(b, pm_load_u64(h + rl->if_frame_obj), PM_EDGE_FIELD,
				    PM_FIELD_FRAME, true);
	if (!err)
		err = emit(b, pm_load_u64(h + rl->if_locals), PM_EDGE_FIELD,
			   PM_FIELD_LOCALS, true);
	if (!err)
		err = emit(b, func, PM_EDGE_FIELD, PM_FIELD_FUNC, true);
	if (!err)
		err = emit(b, code, PM_EDGE_FIELD, PM_FIELD_CODE, true);
	int64_t stacktop;
	if (rl->stackrefs) {
		/* the saved stackpointer: one past the top entry */
		uint64_t sp = pm_load_u64(h + rl->if_stacktop), base = frame + rl->if_localsplus;
		stacktop = sp >= base && (sp - base) % 8 == 0 && (sp - base) / 8 <= ITEMS_MAX ?
			(int64_t)((sp - base) / 8) : (sp ? INT64_MAX : 0);
	} else {
		stacktop = (int32_t)pm_load_u32(h + rl->if_stacktop);
	}
	if (err || stacktop <= 0)
		return err;
	if ((uint64_t)stacktop > ITEMS_MAX) {
		builder_warn(b, frame, "interpreter frame stacktop implausible");
		return NULL;
	}
	b->stackref_words = rl->stackrefs;
	err = emit_array(b, frame + rl->if_localsplus, (uint64_t)stacktop,
			 PM_EDGE_LOCAL, 0, true);
	b->stackref_words = false;
	return err;
}

static struct pm_error *read_frame(struct builder *b)
{
	const struct referent_layout *rl = b->rl;
	if (b->minor >= 11) {
		/* frame_traverse: f_back, f_trace, then the dicts and list
		 * behind the frame's f_locals proxy (what Python code sees as
		 * frame.f_locals beyond the code's own names), then the
		 * frame data when the frame object owns it. */
		struct field_def fields[] = {
			{ (uint16_t)rl->f11_back, PM_FIELD_BACK, true },
			{ (uint16_t)rl->f11_trace, PM_FIELD_TRACE, true },
			{ (uint16_t)rl->f11_extra_locals, PM_FIELD_LOCALS, true },
			{ (uint16_t)rl->f11_locals_cache, PM_FIELD_LOCALS, true },
			{ (uint16_t)rl->f11_overwritten, PM_FIELD_LOCALS, true },
		};
		size_t n = 2;
		while (n < sizeof(fields) / sizeof(fields[0]) && fields[n].offset)
			n++;
		struct pm_error *err = read_fields(b, fields, n);
		uint64_t frame;
		uint8_t owner;
		if (err || !field_word(b, rl->f11_frame, &frame) ||
		    frame != b->obj + rl->f11_data ||
		    !builder_read(b, frame + rl->if_owner, &owner, 1) ||
		    owner != FRAME_OWNED_BY_FRAME_OBJECT)
			return err;
		return read_iframe(b, frame);
	}
	struct field_def fields[] = {
		{ (uint16_t)rl->f_back, PM_FIELD_BACK, true },
		{ (uint16_t)rl->f_code, PM_FIELD_CODE, true },
		{ (uint16_t)rl->f_builtins, PM_FIELD_BUILTINS, true },
		{ (uint16_t)rl->f_globals, PM_FIELD_GLOBALS, true },
		{ (uint16_t)rl->f_locals, PM_FIELD_LOCALS, true },
		{ (uint16_t)rl->f_trace, PM_FIELD_TRACE, true },
	};
	struct pm_error *err = read_fields(b, fields, sizeof(fields) / sizeof(fields[0]));
	uint64_t code, cells, frees, ncells = 0, nfrees = 0;
	uint32_t nlocals_word;
	if (err || !field_word(b, rl->f_code, &code) || !code ||
	    !builder_read(b, code + rl->co_nlocals, &nlocals_word, 4))
		return err;
	if (builder_word(b, code + rl->co_cellvars, &cells) && cells)
		builder_word(b, cells + OB_SIZE, &ncells);
	if (builder_word(b, code + rl->co_freevars, &frees) && frees)
		builder_word(b, frees + OB_SIZE, &nfrees);
	uint64_t nlocals = (uint64_t)nlocals_word + ncells + nfrees;
	uint64_t room = object_room(b);
	if (nlocals > ITEMS_MAX || rl->f_localsplus + 8 * nlocals > room) {
		builder_warn(b, b->obj, "frame locals beyond its allocation");
		return NULL;
	}
	err = emit_array(b, b->obj + rl->f_localsplus, nlocals, PM_EDGE_LOCAL, 0, true);
	uint64_t valuestack, depth = 0;
	if (err || !field_word(b, rl->f_valuestack, &valuestack) || !valuestack)
		return err;
	/* A running frame's stack depth is in the eval loop's locals, not in
	 * the frame (3.8/3.9: f_stacktop is NULL; 3.10: f_state is
	 * executing): then every slot up to co_stacksize is read, as
	 * references the collector does not see. */
	bool running = false;
	if (rl->f_stacktop) {
		uint64_t top;
		if (field_word(b, rl->f_stacktop, &top) && top >= valuestack)
			depth = (top - valuestack) / 8;
		else
			running = !top;
	} else {
		uint64_t word;
		int8_t state = -1;
		if (field_word(b, rl->f_stackdepth, &word))
			depth = (uint32_t)word;
		running = builder_read(b, b->obj + F_STATE_310, &state, 1) &&
			  state == FRAME_EXECUTING_310;
	}
	uint32_t stacksize;
	if (running && builder_read(b, code + CO_STACKSIZE_38, &stacksize, 4))
		depth = stacksize;
	if (valuestack < b->obj || depth > ITEMS_MAX ||
	    valuestack - b->obj + 8 * depth > room)
		return NULL;
	b->stale_words = running;
	err = emit_array(b, valuestack, depth, PM_EDGE_STACK, 0, !running);
	b->stale_words = false;
	return err;
}

static struct pm_error *read_generator(struct builder *b)
{
	const struct referent_layout *rl = b->rl;
	struct field_def fields[] = {
		{ (uint16_t)rl->gi_name, PM_FIELD_NAME, true },
		{ (uint16_t)rl->gi_qualname, PM_FIELD_QUALNAME, true },
		{ (uint16_t)rl->gi_exc_value, PM_FIELD_EXCEPTION, true },
		{ (uint16_t)rl->gi_code, PM_FIELD_CODE, true },
		{ (uint16_t)rl->gi_frame, PM_FIELD_FRAME, true },
		{ (uint16_t)rl->gi_exc_type, PM_FIELD_EXCEPTION, true },
		{ (uint16_t)rl->gi_exc_traceback, PM_FIELD_TRACEBACK, true },
	};
	size_t n = 3;
	while (n < sizeof(fields) / sizeof(fields[0]) && fields[n].offset)
		n++;
	struct pm_error *err = read_fields(b, fields, n);
	/* A coroutine's origin is not traversed (tuples of strs and ints);
	 * an async generator's finalizer is. */
	bool async_gen = !strcmp(b->type->name, "async_generator");
	if (!err && strcmp(b->type->name, "generator") &&
	    rl->gi_origin + 8 <= b->type->basicsize)
		err = emit_field(b, rl->gi_origin, PM_FIELD_ORIGIN, async_gen);
	if (err || b->minor < 11)
		return err;
	int8_t state;
	if (!builder_read(b, b->obj + rl->gi_frame_state, &state, 1) ||
	    state >= FRAME_CLEARED)
		return NULL;
	return read_iframe(b, b->obj + rl->gi_iframe);
}

static struct pm_error *read_weakref(struct builder *b)
{
	uint64_t referent;
	struct pm_error *err = NULL;
	if (field_word(b, WEAKREF_OBJECT, &referent))
		err = emit(b, referent, PM_EDGE_WEAK, 0, false);
	return err ? err : emit_field(b, WEAKREF_CALLBACK, PM_FIELD_CALLBACK, true);
}

static struct pm_error *read_by_kind(struct builder *b);

struct pm_error *referents_read(struct builder *b)
{
	struct pm_error *err = NULL;
	if (b->type->heap_type)
		err = read_instance(b);
	if (!err)
		err = read_by_kind(b);
	if (!err && b->type->extra_from)
		err = read_conservative_range(b, b->type->extra_from,
					      b->type->base_basicsize);
	return err;
}

static struct pm_error *read_by_kind(struct builder *b)
{
	struct pm_error *err = NULL;
	switch (b->type->reader) {
	case READER_NONE:
		return NULL;
	case READER_TUPLE:
		return read_tuple(b);
	case READER_LIST:
		return read_list(b);
	case READER_DICT:
		return read_dict_at(b, b->obj);
	case READER_DEFAULTDICT:
		err = read_dict_at(b, b->obj);
		return err ? err : emit_field(b, DEFAULTDICT_FACTORY,
					      PM_FIELD_DEFAULT_FACTORY, true);
	case READER_SET:
		return read_set(b);
	case READER_DEQUE:
		return read_deque(b);
	case READER_ODICT:
		return read_odict(b);
	case READER_TYPE:
		return read_type(b);
	case READER_MODULE:
		/* md_name (kept for messages after md_dict is cleared) is a
		 * reference module_traverse does not visit; where it is
		 * depends on the version (3.15 dropped md_def before it). */
		err = emit_field(b, MODULE_DICT, PM_FIELD_DICT, true);
		if (!err && b->l->module_name)
			err = emit_field(b, b->l->module_name, PM_FIELD_NAME, false);
		return err ? err : read_owned_buffers(b);
	case READER_FIELDS: {
		size_t nextra;
		const struct field_def *extra = graph_extra_fields(b->minor, b->type->name,
								   &nextra);
		err = read_fields(b, b->type->fields, b->type->nfields);
		return err ? err : read_fields(b, extra, nextra);
	}
	case READER_CODE: {
		size_t n;
		const struct field_def *fields = graph_extra_fields(b->minor, "code", &n);
		return read_fields(b, fields, n);
	}
	case READER_EXCEPTION:
		return read_exception(b);
	case READER_FRAME:
		return read_frame(b);
	case READER_GENERATOR:
		return read_generator(b);
	case READER_WEAKREF:
		return read_weakref(b);
	case READER_NDARRAY:
		return read_ndarray(b);
	case READER_CONSERVATIVE:
	default:
		/* A heap type's instance: the C base's part (its slots and
		 * dict are read above). */
		err = read_conservative_range(b, 16, b->type->heap_type ?
					      b->type->base_basicsize : object_size(b));
		return err ? err : read_owned_buffers(b);
	}
}
