/* __slots__ candidates for the waste report (waste.h): the classes whose
 * instances carry a __dict__ (3.8-3.10: a dict object; 3.11+: a managed
 * dict, values inline or in their own array, or a materialized dict),
 * found from the reference graph's edges: an instance's PM_EDGE_ATTR
 * edges (its values) and its PM_EDGE_DICT edge (its dict's entries). Per
 * class: its instances, the attribute names (how uniform their sets are),
 * the bytes they take now (the instance's allocation, the buffers it owns,
 * its dict and the dict's buffers: a split dict's shared keys are the
 * class's and not counted) and with __slots__ (a GC object of 16 + 16 +
 * 8 per name bytes, rounded as its allocator rounds). Only classes whose
 * bases up to object are all heap types: their layout is the header only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash_table.h"
#include "waste.h"

enum {
	BASE_HOPS_MAX = 64,
	NAMES_SAMPLE = 4096,        /* instances whose names are read, per class */
	NAME_TEXT_MAX = 128,
	TPFLAG_HEAPTYPE = 1 << 9,
	SLOT_HEADER = 16 + 16,      /* GC head, refcount and type */
};

PM_DEFINE_HASH_MAP(class_index, uint64_t, uint32_t, pm_hash_u64_key, pm_u64_key_eq)
PM_DEFINE_HASH_MAP(set_count, uint64_t, uint64_t, pm_hash_u64_key, pm_u64_key_eq)

struct class_acc {
	struct pm_slots_class row;
	bool ok;                    /* a candidate (bases checked) */
	char *names[PM_SLOTS_NAMES_MAX];
	uint32_t nnames;
	uint64_t pymalloc_instances, glibc_instances, sampled;
	/* Of those, the instances behind the debug hooks' header. */
	uint64_t pymalloc_hooked, glibc_hooked;
	struct set_count sets;
};

/* What an allocation of n bytes occupies: a pymalloc block up to 512
 * bytes (16-byte classes) when the instance was in one, else a chunk. */
static uint64_t rounded(uint64_t n, bool pymalloc)
{
	if (pymalloc && n <= 512)
		return (n + 15) & ~UINT64_C(15);
	uint64_t c = (n + 8 + 15) & ~UINT64_C(15);
	return c < 32 ? 32 : c;
}

/* Does the allocation start with the debug hooks' header ({size, api id,
 * 7 x 0xfd})? Some blocks of a process may have it and others not (those
 * made before PYTHONMALLOC took effect), so each instance is looked at. */
static bool behind_debug_hooks(struct pm_target *t, const struct pm_alloc *a)
{
	uint8_t h[PM_DEBUG_HOOK_HEADER];
	if (a->size < PM_DEBUG_HOOK_HEADER + PM_DEBUG_HOOK_TRAILER)
		return false;
	struct pm_error *err = pm_target_read(t, a->addr, h, sizeof(h));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return pm_debug_hook_header(h, a->size - PM_DEBUG_HOOK_HEADER - PM_DEBUG_HOOK_TRAILER,
				    NULL);
}

/* Is every base of the type up to object a heap type? */
static bool plain_class(struct pm_target *t, const struct pm_cpython_heap *heap,
			const struct pm_cpython_layout *l, uint64_t tp)
{
	const struct pm_cpython_type *ct = pm_cpython_find_type(heap, tp);
	if (!ct || !(ct->flags & TPFLAG_HEAPTYPE) || ct->kind != TK_OTHER ||
	    !heap->object_type)
		return false;
	uint64_t cur = tp;
	for (int hop = 0; hop < BASE_HOPS_MAX; hop++) {
		uint64_t base = 0;
		struct pm_error *err = pm_target_read_u64(t, cur + l->tp_base, &base);
		if (err) {
			pm_error_destroy(err);
			return false;
		}
		if (base == heap->object_type)
			return true;
		const struct pm_cpython_type *bt = pm_cpython_find_type(heap, base);
		uint64_t flags = 0;
		if (bt)
			flags = bt->flags;
		else {
			err = pm_target_read_u64(t, base + l->tp_flags, &flags);
			if (err) {
				pm_error_destroy(err);
				return false;
			}
		}
		if (!base || !(flags & TPFLAG_HEAPTYPE))
			return false;
		cur = base;
	}
	return false;
}

/* The attribute name in an edge's text: ".x" or "['x']". */
static bool name_of(const char *text, char *buf, size_t size)
{
	size_t n = strlen(text);
	if (n > 1 && text[0] == '.' && text[1] != '<') {
		snprintf(buf, size, "%s", text + 1);
		return true;
	}
	if (n > 4 && !strncmp(text, "['", 2) && !strcmp(text + n - 2, "']")) {
		snprintf(buf, size, "%.*s", (int)(n - 4), text + 2);
		return true;
	}
	return false;
}

static void add_name(struct class_acc *c, const char *name, uint64_t *sig, uint32_t *count)
{
	*sig += pm_hash_string(PM_HASH_STRING_SEED, name);
	(*count)++;
	for (uint32_t i = 0; i < c->nnames; i++)
		if (!strcmp(c->names[i], name))
			return;
	if (c->nnames == PM_SLOTS_NAMES_MAX) {
		c->row.names_capped = true;
		return;
	}
	char *copy = strdup(name);
	if (copy)
		c->names[c->nnames++] = copy;
}

/* Reads the names of one instance's attributes into its class. */
static void instance_names(const struct pm_graph *g, struct class_acc *c, uint32_t node,
			   uint32_t dict)
{
	uint64_t sig = 0;
	uint32_t count = 0;
	char name[NAME_TEXT_MAX];
	struct pm_strbuf text;
	for (int pass = 0; pass < 2; pass++) {
		uint32_t from = pass ? dict : node;
		if (from == PM_NODE_NONE)
			continue;
		for (uint32_t e = g->edge_start[from]; e < g->edge_start[from + 1]; e++) {
			enum pm_edge_kind k = PM_EDGE_KIND(g->edge_kind[e]);
			if (k != (pass ? PM_EDGE_DICT_VALUE : PM_EDGE_ATTR))
				continue;
			pm_strbuf_init(&text);
			pm_graph_edge_text(g, from, e, &text);
			if (text.data && name_of(text.data, name, sizeof(name)))
				add_name(c, name, &sig, &count);
			pm_strbuf_deinit(&text);
		}
	}
	sig += (uint64_t)count * UINT64_C(0x9e3779b97f4a7c15);
	bool fresh;
	uint64_t *n = set_count_insert(&c->sets, &sig, &fresh);
	if (n)
		(*n)++;
	c->sampled++;
}

static int class_cmp(const void *x, const void *y)
{
	const struct pm_slots_class *a = x, *b = y;
	if (a->saving != b->saving)
		return a->saving < b->saving ? 1 : -1;
	return a->type < b->type ? -1 : a->type > b->type;
}

static struct pm_error *finish(struct class_acc *acc, size_t n, struct pm_waste *w)
{
	size_t rows = 0;
	for (size_t i = 0; i < n; i++)
		rows += acc[i].ok && acc[i].row.instances;
	w->classes = calloc(rows ? rows : 1, sizeof(*w->classes));
	if (!w->classes)
		return &pm_error_no_memory;
	for (size_t i = 0; i < n; i++) {
		struct class_acc *c = &acc[i];
		if (!c->ok || !c->row.instances)
			continue;
		struct pm_slots_class *r = &c->row;
		r->names = c->nnames;
		r->name_sets = c->sets.size;
		for (size_t k = 0; k < c->sets.capacity; k++)
			if (c->sets.ctrl[k] && c->sets.entries[k].value > r->top_set_share)
				r->top_set_share = c->sets.entries[k].value;
		/* Scale the commonest set's share from the sample. */
		if (c->sampled && c->sampled < r->instances)
			r->top_set_share = r->top_set_share * r->instances / c->sampled;
		/* An instance made with the debug hooks on (PYTHONMALLOC=debug,
		 * -X dev, a debug build's default) would be made so slotted
		 * too: their header and trailer in the block. */
		uint64_t body = SLOT_HEADER + 8 * (uint64_t)c->nnames;
		uint64_t hooked = body + PM_DEBUG_HOOK_HEADER + PM_DEBUG_HOOK_TRAILER;
		r->bytes_slotted =
			(c->pymalloc_instances - c->pymalloc_hooked) * rounded(body, true) +
			c->pymalloc_hooked * rounded(hooked, true) +
			(c->glibc_instances - c->glibc_hooked) * rounded(body, false) +
			c->glibc_hooked * rounded(hooked, false);
		r->saving = r->bytes_now > r->bytes_slotted ? r->bytes_now - r->bytes_slotted : 0;
		struct pm_strbuf list;
		pm_strbuf_init(&list);
		for (uint32_t k = 0; k < c->nnames; k++)
			pm_strbuf_printf(&list, "%s%s", k ? ", " : "", c->names[k]);
		r->name_list = pm_strbuf_steal(&list);
		w->classes[w->nclasses++] = *r;
	}
	qsort(w->classes, w->nclasses, sizeof(*w->classes), class_cmp);
	return NULL;
}

struct pm_error *pm_waste_slots(struct pm_target *t, const struct pm_graph *g,
				struct pm_waste *w)
{
	const struct pm_cpython_heap *heap = g->heap;
	struct pm_error *err = NULL;
	struct class_index index = PM_HASH_MAP_INIT;
	struct class_acc *acc = NULL;
	size_t nacc = 0, capacity = 0;
	uint64_t *owned = calloc(g->nheap ? g->nheap : 1, sizeof(*owned));
	uint8_t *candidate_cat = calloc(heap->ncategories + 1, 1);
	struct pm_node_hints *hints = calloc(1, sizeof(*hints));
	if (!owned || !candidate_cat || !hints) {
		err = &pm_error_no_memory;
		goto out;
	}
	for (size_t i = 0; i < heap->ntype_table; i++) {
		const struct pm_cpython_type *tp = &heap->type_table[i];
		if ((tp->flags & TPFLAG_HEAPTYPE) && tp->kind == TK_OTHER &&
		    tp->category < heap->ncategories)
			candidate_cat[tp->category] = 1;
	}
	/* The buffers each object owns (a 3.11/3.12 values array, a dict's
	 * keys and values). */
	for (size_t a = 0; heap->owners && a < heap->nallocs; a++) {
		if (!heap->owners[a])
			continue;
		uint32_t owner = pm_graph_heap_node_hinted(g, heap->owners[a], hints);
		if (owner < g->nheap)
			owned[owner] += heap->allocs[a].size;
	}
	for (uint32_t node = 0; node < g->nheap; node++) {
		if ((node & 0xffff) == 0) {
			pm_target_progress(t, "sizing __slots__ candidates", node, g->nheap);
			if (pm_target_interrupted(t)) {
				err = pm_error_interrupted();
				goto out;
			}
		}
		const struct pm_alloc *a = &heap->allocs[g->node_alloc[node]];
		if (a->category >= heap->ncategories || !candidate_cat[a->category])
			continue;
		uint32_t dict = PM_NODE_NONE, attrs = 0;
		for (uint32_t e = g->edge_start[node]; e < g->edge_start[node + 1]; e++) {
			enum pm_edge_kind k = PM_EDGE_KIND(g->edge_kind[e]);
			if (k == PM_EDGE_ATTR)
				attrs++;
			else if (k == PM_EDGE_DICT && g->edge_target[e] < g->nheap)
				dict = g->edge_target[e];
		}
		if (!attrs && dict == PM_NODE_NONE)
			continue;
		uint64_t obj = pm_graph_node_addr(g, node), tp;
		struct pm_error *rerr = pm_target_read_u64(t, obj + 8, &tp);
		if (rerr) {
			pm_error_destroy(rerr);
			continue;
		}
		bool fresh;
		uint32_t *slot = class_index_insert(&index, &tp, &fresh);
		if (!slot) {
			err = &pm_error_no_memory;
			goto out;
		}
		if (fresh) {
			if (nacc == capacity) {
				size_t cap = capacity ? capacity * 2 : 64;
				struct class_acc *grown = realloc(acc, cap * sizeof(*acc));
				if (!grown) {
					err = &pm_error_no_memory;
					goto out;
				}
				acc = grown;
				capacity = cap;
			}
			struct class_acc *c = &acc[nacc];
			memset(c, 0, sizeof(*c));
			c->row.type = tp;
			const struct pm_cpython_type *ct = pm_cpython_find_type(heap, tp);
			c->row.name = ct && ct->name ? ct->name : "?";
			c->ok = plain_class(t, heap, g->l, tp);
			*slot = (uint32_t)nacc++;
		}
		struct class_acc *c = &acc[*slot];
		if (!c->ok)
			continue;
		struct pm_slots_class *r = &c->row;
		r->instances++;
		bool hooked = heap->debug_hooks && behind_debug_hooks(t, a);
		if (a->kind == PM_ALLOC_PYMALLOC) {
			c->pymalloc_instances++;
			c->pymalloc_hooked += hooked;
		} else {
			c->glibc_instances++;
			c->glibc_hooked += hooked;
		}
		r->bytes_now += a->size + owned[node];
		if (dict != PM_NODE_NONE) {
			r->with_dict++;
			r->bytes_now += pm_graph_node_size(g, dict) + owned[dict];
		}
		if (r->nexamples < PM_WASTE_EXAMPLES)
			r->examples[r->nexamples++] = node;
		if (c->sampled < NAMES_SAMPLE)
			instance_names(g, c, node, dict);
	}
	err = finish(acc, nacc, w);
out:
	for (size_t i = 0; i < nacc; i++) {
		for (uint32_t k = 0; k < acc[i].nnames; k++)
			free(acc[i].names[k]);
		set_count_deinit(&acc[i].sets);
	}
	free(acc);
	class_index_deinit(&index);
	free(owned);
	free(candidate_cat);
	free(hints);
	return err;
}
