/* Interpreter and loader structures that no object points at, found once
 * recognition is done among the allocations still unknown: AST arenas and
 * their blocks, _Py_hashtable tables (and the interned-string table's
 * entries), interpreter and thread states, the dynamic loader's link maps.
 * Each is found by its own shape and checked against what it points at
 * (exact allocation starts, a chain that ends where its owner says, a
 * count that matches) before anything is attributed. */
#include "bytes.h"
#include "cpython_analysis.h"

#include <stdlib.h>
#include <string.h>

struct pm_error *structures_str_entry_push(struct analysis *a, size_t alloc,
					   uint64_t key)
{
	return str_entry_vector_append(&a->str_entries, &(struct str_entry){ alloc, key }) ?
		NULL : &pm_error_no_memory;
}

/* Hashtable entries whose key is a str (exact type): recognised in the
 * heap, or a static string in the interpreter's data. */
struct pm_error *structures_resolve_str_entries(struct analysis *a)
{
	const struct type_info *str;
	struct pm_error *err = type_get(a, a->kind_types[TK_STR], &str);
	if (err || !str)
		return err;
	for (size_t i = 0; i < a->str_entries.size; i++) {
		const struct str_entry *se = &a->str_entries.data[i];
		const struct pm_alloc *key = pm_cpython_find_alloc(a->heap,
								   se->key);
		struct pm_alloc *entry = &a->heap->allocs[se->alloc];
		uint64_t tp = 0;
		bool is_str = key ? key->addr == se->key &&
				    key->category == str->cat_live :
			/* static (statically allocated) strings */
			analysis_read_word(a, se->key + 8, &tp) &&
			tp == a->kind_types[TK_STR];
		if (is_str && entry->category == PM_CATEGORY_NONE) {
			entry->category = a->cat_owned[OWN_STR_TABLE_ENTRY];
			a->heap->attributed++;
		}
	}
	return NULL;
}

enum {
	ARENA_BLOCKS_MAX = 1 << 16,         /* blocks of one AST arena */
	HASHTABLE_BUCKETS_MIN = 8,
	HASHTABLE_BUCKETS_MAX = 1 << 26,
	HASHTABLE_ENTRIES_MAX = 1 << 22,
	HASHTABLE_SLACK = ALLOC_SLACK,
	INTERPRETERS_MAX = 256,
	THREAD_STATES_MAX = 1 << 16,
};


/* Gives alloc the category `what`; its data (after a debug-hook header)
 * starts at start, which is where `objects` lists it. */
static void attribute(struct analysis *a, struct pm_alloc *alloc, enum owned what,
		      uint64_t start)
{
	alloc->category = a->cat_owned[what];
	alloc->object_offset = (uint8_t)(start - alloc->addr);
	a->heap->attributed++;
}

/* A PyArena {a_head, a_cur, a_objects}: a_objects a recognised list, a_head
 * the first of a chain of blocks {ab_size, ab_offset, ab_next, ab_mem} with
 * ab_mem right after the header, that ends (ab_next 0) at a_cur. The arena
 * and its blocks are attributed only when the whole chain checks out. */
static void ast_arena_attribute(struct analysis *a, struct pm_alloc *alloc,
				struct alloc_data d, uint32_t list_cat)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t arena[3], block[4];
	if (d.usable < l->arena_size ||
	    !analysis_read_words(a, d.start + l->arena_head, 1, &arena[0]) ||
	    !analysis_read_words(a, d.start + l->arena_cur, 1, &arena[1]) ||
	    !analysis_read_words(a, d.start + l->arena_objects, 1, &arena[2]))
		return;
	const struct pm_alloc *objects = pm_cpython_find_alloc(a->heap, arena[2]);
	if (!objects || objects->category != list_cat ||
	    objects->addr + objects->object_offset != arena[2])
		return;
	for (int pass = 0; pass < 2; pass++) {
		uint64_t b = arena[0], last = 0;
		size_t n = 0;
		for (; b && n < ARENA_BLOCKS_MAX; n++) {
			struct alloc_data bd;
			struct pm_alloc *ba = alloc_unknown_at(a, b, &bd);
			if (!ba || bd.usable < l->block_header ||
			    !analysis_read_words(a, b + l->block_size, 1, &block[0]) ||
			    !analysis_read_words(a, b + l->block_offset, 1, &block[1]) ||
			    !analysis_read_words(a, b + l->block_next, 1, &block[2]) ||
			    !analysis_read_words(a, b + l->block_mem, 1, &block[3]) ||
			    block[3] != b + l->block_header || block[1] > block[0] ||
			    block[0] > bd.usable - l->block_header)
				return;
			if (pass)
				attribute(a, ba, OWN_AST_ARENA_BLOCK, b);
			last = b;
			b = block[2];
		}
		if (b || last != arena[1])
			return;
	}
	attribute(a, alloc, OWN_AST_ARENA, d.start);
}

/* Walks a _Py_hashtable_t's bucket lists (singly linked entries, next
 * first); counts them, attributing unknown ones on the second pass. False
 * when a list is broken or the count is not nentries. */
static bool hashtable_entries(struct analysis *a, const uint64_t *buckets,
			      uint64_t nbuckets, uint64_t nentries, bool mark)
{
	uint64_t seen = 0;
	for (uint64_t i = 0; i < nbuckets; i++) {
		uint64_t next;
		for (uint64_t e = buckets[i]; e; e = next, seen++) {
			if (seen >= nentries)
				return false;
			struct pm_alloc *ea = (struct pm_alloc *)pm_cpython_find_alloc(a->heap, e);
			if (!ea || alloc_data_of(a, ea).start != e ||
			    !analysis_read_words(a, e, 1, &next))
				return false;
			if (mark && ea->category == PM_CATEGORY_NONE)
				attribute(a, ea, OWN_HASHTABLE_ENTRY, e);
		}
	}
	return seen == nentries;
}

/* A _Py_hashtable_t: a power-of-two bucket count, a bucket array that is an
 * unknown allocation of that size, hash and compare functions in code, and
 * exactly nentries entries on its lists. */
static struct pm_error *hashtable_attribute(struct analysis *a,
					    struct pm_alloc *alloc,
					    struct alloc_data d)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t nentries, nbuckets, buckets, hash, compare;
	if (d.usable < l->hashtable_size ||
	    !analysis_read_words(a, d.start + l->hashtable_nbuckets, 1, &nbuckets) ||
	    nbuckets < HASHTABLE_BUCKETS_MIN || nbuckets > HASHTABLE_BUCKETS_MAX ||
	    (nbuckets & (nbuckets - 1)) ||
	    !analysis_read_words(a, d.start + l->hashtable_nentries, 1, &nentries) ||
	    nentries > HASHTABLE_ENTRIES_MAX ||
	    !analysis_read_words(a, d.start + l->hashtable_buckets, 1, &buckets) ||
	    !analysis_read_words(a, d.start + l->hashtable_hash_func, 1, &hash) ||
	    !analysis_read_words(a, d.start + l->hashtable_compare_func, 1, &compare) ||
	    !analysis_executable(a, hash) || !analysis_executable(a, compare))
		return NULL;
	struct alloc_data bd;
	struct pm_alloc *ba = alloc_unknown_at(a, buckets, &bd);
	uint64_t slack = ba && ba->kind == PM_ALLOC_MMAPPED ? MMAP_SLACK : HASHTABLE_SLACK;
	if (!ba || bd.usable < nbuckets * 8 || bd.usable > nbuckets * 8 + slack)
		return NULL;
	uint64_t *words = malloc(nbuckets * 8);
	if (!words)
		return &pm_error_no_memory;
	if (analysis_read_words(a, buckets, nbuckets, words) &&
	    hashtable_entries(a, words, nbuckets, nentries, false)) {
		hashtable_entries(a, words, nbuckets, nentries, true);
		attribute(a, alloc, OWN_HASHTABLE, d.start);
		attribute(a, ba, OWN_HASHTABLE_BUCKETS, buckets);
	}
	free(words);
	return NULL;
}

/* The thread states of interp: a list from its head whose every entry
 * points back at interp and at the previous one. Each is a malloc'd
 * structure, except one inside interp (3.11+: the main thread's, with the
 * static main interpreter). Attributed on the second pass, when the whole
 * list checked out. */
static bool thread_states_attribute(struct analysis *a, uint64_t interp,
				    bool mark)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t ts, prev = 0;
	if (!analysis_read_words(a, interp + l->interp_threads_head, 1, &ts))
		return false;
	for (size_t n = 0; ts; n++) {
		uint64_t back, owner, next;
		if (n == THREAD_STATES_MAX ||
		    !analysis_read_words(a, ts + l->tstate_prev, 1, &back) ||
		    !analysis_read_words(a, ts + l->tstate_interp, 1, &owner) ||
		    !analysis_read_words(a, ts + l->tstate_next, 1, &next) ||
		    back != prev || owner != interp)
			return false;
		struct pm_alloc *alloc = alloc_unknown_sized(a, ts, l->tstate_size);
		bool embedded = l->interp_initial_thread &&
				ts == interp + l->interp_initial_thread;
		if (!alloc && !embedded)
			return false;
		if (mark && alloc)
			attribute(a, alloc, OWN_THREAD_STATE, ts);
		prev = ts;
		ts = next;
	}
	return true;
}

/* The interpreters listed in _PyRuntime (3.8-3.10 malloc'd, each exactly
 * a PyInterpreterState) and their thread states. */
static void interpreters_attribute(struct analysis *a)
{
	const struct pm_cpython_layout *l = a->l;
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(a->t, NULL, "_PyRuntime", &sym);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint64_t interp;
	if (!analysis_read_words(a, sym.address + l->runtime_interp_head, 1, &interp))
		return;
	for (int n = 0; interp && n < INTERPRETERS_MAX; n++) {
		struct pm_alloc *alloc = l->interp_size ?
			alloc_unknown_sized(a, interp, l->interp_size) : NULL;
		if ((alloc || !l->interp_size) &&
		    thread_states_attribute(a, interp, false)) {
			thread_states_attribute(a, interp, true);
			if (alloc)
				attribute(a, alloc, OWN_INTERP_STATE, interp);
		}
		if (!analysis_read_words(a, interp + l->interp_next, 1, &interp))
			return;
	}
}

/* The dynamic loader's list of loaded objects (_r_debug.r_map, linked by
 * l_next with l_prev back-links). Objects loaded at start-up live in
 * ld.so's own early memory; those dlopen'ed later (extension modules and
 * what they need) are glibc allocations: a struct link_map (plus audit
 * space and the name it was asked for) and its l_name copy. Attributed
 * only when the whole list checked out. */
enum {
	LINK_MAPS_MAX = 1 << 16,
	LINK_MAP_MIN = 512,                 /* struct link_map is ~1.1 KiB */
	LINK_MAP_MAX = 1 << 16,
	LINK_MAP_NAME_MAX = 4096,           /* PATH_MAX */
	/* struct link_map's public head */
	LM_NAME = 8, LM_NEXT = 24, LM_PREV = 32,
	R_DEBUG_MAP = 8,                    /* struct r_debug's r_map */
};

static bool link_maps_walk(struct analysis *a, uint64_t map, bool mark)
{
	uint64_t prev = 0;
	for (size_t n = 0; map; n++) {
		uint64_t head[5];
		if (n == LINK_MAPS_MAX || !analysis_read_words(a, map, 5, head) ||
		    head[LM_PREV / 8] != prev)
			return false;
		struct alloc_data d;
		struct pm_alloc *alloc = alloc_unknown_at(a, map, &d);
		if (mark && alloc && d.usable >= LINK_MAP_MIN &&
		    d.usable <= LINK_MAP_MAX) {
			attribute(a, alloc, OWN_LINK_MAP, map);
			char name[LINK_MAP_NAME_MAX];
			struct pm_error *err = pm_target_read_cstr(
				a->t, head[LM_NAME / 8], name, sizeof(name));
			struct pm_alloc *name_alloc = err ? NULL :
				alloc_unknown_sized(a, head[LM_NAME / 8], strlen(name) + 1);
			pm_error_destroy(err);
			if (name_alloc)
				attribute(a, name_alloc, OWN_LINK_MAP_NAME,
					  head[LM_NAME / 8]);
		}
		prev = map;
		map = head[LM_NEXT / 8];
	}
	return true;
}

static void link_maps_attribute(struct analysis *a)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(a->t, NULL, "_r_debug", &sym);
	uint64_t first;
	if (err) {
		pm_error_destroy(err);
		return;
	}
	if (analysis_read_words(a, sym.address + R_DEBUG_MAP, 1, &first) &&
	    link_maps_walk(a, first, false))
		link_maps_walk(a, first, true);
}


struct pm_error *structures_attribute(struct analysis *a)
{
	interpreters_attribute(a);
	link_maps_attribute(a);
	const struct type_info *list;
	struct pm_error *err = type_get(a, a->kind_types[TK_LIST], &list);
	for (size_t i = 0; i < a->heap->nallocs && !err; i++) {
		struct pm_alloc *alloc = &a->heap->allocs[i];
		struct alloc_data d;
		if (alloc->category != PM_CATEGORY_NONE)
			continue;
		d = alloc_data_of(a, alloc);
		if (!alloc_unknown_at(a, d.start, &d))
			continue;
		if (list)
			ast_arena_attribute(a, alloc, d, list->cat_live);
		if (alloc->category == PM_CATEGORY_NONE)
			err = hashtable_attribute(a, alloc, d);
	}
	return err;
}
