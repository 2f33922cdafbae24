/* Storage of containers that is a chain of allocations rather than one
 * buffer: a deque's blocks and an OrderedDict's nodes, walked from the
 * recognised owner once every object is known. A chain is claimed link by
 * link (so a cycle meets its own start taken) and attributed only when it
 * ends where its owner's fields say; otherwise it is given back whole. */
#include "bytes.h"
#include "cpython_analysis.h"

enum {
	DEQUE_ITEMS_MAX = 1 << 30,
	CHAIN_BLOCK_MAX = 1024,         /* bytes of a deque block read at once */
};

static struct pm_error *chain_claim(struct analysis *a, struct pm_alloc *alloc,
				    uint64_t start, enum owned what)
{
	if (!chain_vector_append(&a->chain, &(struct chain_link){ alloc, start }))
		return &pm_error_no_memory;
	alloc->category = a->cat_owned[what];
	return NULL;
}

/* Ends a walk: the claimed allocations are attributed if it checked
 * out, else given back. */
static struct pm_error *chain_finish(struct analysis *a, bool ok)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < a->chain.size; i++) {
		struct pm_alloc *alloc = a->chain.data[i].alloc;
		if (!ok || err) {
			alloc->category = PM_CATEGORY_NONE;
			continue;
		}
		alloc->object_offset = (uint8_t)(a->chain.data[i].start - alloc->addr);
		a->heap->attributed++;
		err = owned_record_owner(a, alloc, a->chain_owner);
	}
	a->chain.size = 0;
	return err;
}

/* A deque's blocks, leftblock to rightblock by rightlink, each the exact
 * start of a block-sized allocation whose leftlink is the one before; as
 * many as its length and indexes say: leftindex + len + (BLOCKLEN - 1 -
 * rightindex) is a whole number of blocks. The ends' outer links are
 * stale in CPython, so not checked. */
static struct pm_error *deque_blocks_walk(struct analysis *a, uint64_t obj,
					  bool *ret)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t f[7], span, nblocks, b, prev = 0, per = l->deque_block_len;
	uint8_t block[CHAIN_BLOCK_MAX];
	*ret = false;
	if (l->deque_block_size > sizeof(block) ||
	    !analysis_read_words(a, obj, 7, f))
		return NULL;
	int64_t len = (int64_t)f[2];
	uint64_t left = f[l->deque_leftindex / 8], right = f[l->deque_rightindex / 8];
	if (len < 0 || len > DEQUE_ITEMS_MAX || left >= per || right >= per)
		return NULL;
	span = left + (uint64_t)len + (per - 1 - right);
	if (span % per)
		return NULL;
	nblocks = span / per;
	b = f[l->deque_leftblock / 8];
	for (uint64_t i = 0; i < nblocks; i++) {
		struct pm_alloc *alloc = alloc_unknown_sized(a, b, l->deque_block_size);
		if (!alloc || !analysis_read_words(a, b, l->deque_block_size / 8,
					   (uint64_t *)(void *)block) ||
		    (i && pm_load_u64(block + l->deque_block_leftlink) != prev))
			return NULL;
		struct pm_error *err = chain_claim(a, alloc, b, OWN_DEQUE_BLOCK);
		if (err)
			return err;
		prev = b;
		b = pm_load_u64(block + l->deque_block_rightlink);
	}
	*ret = prev == f[l->deque_rightblock / 8];
	return NULL;
}

/* 3.11+: the blocks a deque keeps for reuse (freeblocks[numfreeblocks]),
 * each on its own. */
static struct pm_error *deque_free_blocks(struct analysis *a, uint64_t obj)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t n, blocks[64];
	if (!l->deque_freeblocks_max ||
	    !analysis_read_words(a, obj + l->deque_numfreeblocks, 1, &n) ||
	    !n || n > l->deque_freeblocks_max || n > 64 ||
	    !analysis_read_words(a, obj + l->deque_freeblocks, n, blocks))
		return NULL;
	for (uint64_t i = 0; i < n; i++) {
		struct pm_alloc *alloc = alloc_unknown_sized(a, blocks[i], l->deque_block_size);
		struct pm_error *err = alloc ?
			chain_claim(a, alloc, blocks[i], OWN_DEQUE_BLOCK) : NULL;
		if (!err)
			err = chain_finish(a, true);
		if (err)
			return err;
	}
	return NULL;
}

/* An OrderedDict's nodes from od_first by next, each the exact start of a
 * node-sized allocation whose prev is the one before; exactly ma_used of
 * them, the last od_last with no next. */
static struct pm_error *odict_nodes_walk(struct analysis *a, uint64_t obj,
					 bool *ret)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t used, node, last, prev = 0, n[4];
	*ret = false;
	if (l->odict_node_size != sizeof(n) ||
	    !analysis_read_words(a, obj + l->odict_used, 1, &used) ||
	    !analysis_read_words(a, obj + l->odict_first, 1, &node) ||
	    !analysis_read_words(a, obj + l->odict_last, 1, &last) ||
	    used > CONTAINER_ITEMS_MAX)
		return NULL;
	for (uint64_t i = 0; i < used; i++) {
		struct pm_alloc *alloc = alloc_unknown_sized(a, node, l->odict_node_size);
		if (!alloc || !analysis_read_words(a, node, 4, n) ||
		    n[l->odict_node_prev / 8] != prev)
			return NULL;
		struct pm_error *err = chain_claim(a, alloc, node, OWN_ODICT_NODE);
		if (err)
			return err;
		prev = node;
		node = n[l->odict_node_next / 8];
	}
	*ret = !node && prev == last;
	return NULL;
}

/* The chains of the recognised deques and OrderedDicts (pend_chain). */
struct pm_error *chains_attribute(struct analysis *a)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < a->pending.size && !err; i++) {
		const struct pending *p = &a->pending.data[i];
		bool ok = false;
		if (!p->chain || p->category == PM_CATEGORY_NONE)
			continue;
		a->chain_owner = p->ptr;
		if (p->chain == TK_DEQUE)
			err = deque_blocks_walk(a, p->ptr, &ok);
		else
			err = odict_nodes_walk(a, p->ptr, &ok);
		struct pm_error *finish_err = chain_finish(a, ok && !err);
		if (!err)
			err = finish_err;
		if (!err && p->chain == TK_DEQUE)
			err = deque_free_blocks(a, p->ptr);
	}
	return err;
}
