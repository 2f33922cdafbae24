/* Thread caches: each thread's tcache_perthread_struct is found among the
 * chunks of its size (counts match the safe-linked chains), and the chunks
 * of its chains are marked free-tcache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc_internal.h"
#include "target.h"

static struct pm_chunk *chunk_lookup(struct pm_glibc_heap *h, uint64_t addr)
{
	size_t lo = 0, hi = h->nchunks;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (h->chunks[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < h->nchunks && h->chunks[lo].addr == addr ? &h->chunks[lo]
							      : NULL;
}

/* Length of a tcache chain from entry (a user pointer), or -1 if it is
 * broken, loops or leaves the mappings. */
static long tcache_chain_len(struct pm_glibc_walk *w, uint64_t e, long cap)
{
	long n = 0;
	uint64_t first = e;
	while (e) {
		if (n >= cap || (e & 15) || !pm_target_is_mapped(w->t, e - 16, 32))
			return -1;
		if (n > 0 && e == first)
			return -1;
		uint64_t stored;
		if (!pm_glibc_read_u64(w, e, &stored))
			return -1;
		e = pm_glibc_reveal(w->l, e, stored);
		n++;
	}
	return n;
}

static unsigned tcache_count(const struct pm_glibc_layout *l,
			     const uint8_t *tc, uint32_t i)
{
	if (l->tc_count_width == 1)
		return tc[i];
	uint16_t c;
	memcpy(&c, tc + 2 * i, 2);
	return c;
}

static bool is_first_chunk(const struct pm_glibc_walk *w, uint64_t addr)
{
	if (addr == w->main_start)
		return true;
	for (size_t i = 0; i < w->nfirst; i++) {
		if (w->first_chunks[i] == addr)
			return true;
	}
	return false;
}

/* A chunk of the tcache struct's size is one when every entries[] chain
 * is well formed and (before 2.42) as long as its count says. */
static bool tcache_validate(struct pm_glibc_walk *w, uint64_t user, uint8_t *tc,
			    size_t tc_len, bool *empty)
{
	const struct pm_glibc_layout *l = w->l;
	if (!pm_glibc_read(w, user, tc, tc_len))
		return false;
	*empty = true;
	for (uint32_t i = 0; i < l->tc_bins; i++) {
		uint64_t e;
		memcpy(&e, tc + l->tc_entries + 8 * i, 8);
		unsigned count = tcache_count(l, tc, i);
		if (!e) {
			if (count && !l->tc_counts_down)
				return false;
			continue;
		}
		*empty = false;
		long len = tcache_chain_len(w, e, 65536);
		if (len < 0 || (!l->tc_counts_down && (unsigned long)len != count))
			return false;
	}
	return true;
}

/* Marks the chunks of one tcache bin; reports (and stops at) a pointer
 * outside the heaps, a loop, or a chunk that is also in another list. */
static void tcache_mark_chain(struct pm_glibc_walk *w, uint64_t tc_chunk, uint32_t bin,
			      uint64_t e, unsigned count)
{
	uint64_t want = 0x20 + 0x10 * (uint64_t)bin;
	long n = 0;
	for (; e && n < 65536; n++) {
		struct pm_chunk *c = (e & 15) ? NULL : chunk_lookup(w->heap, e - 16);
		if (!c) {
			pm_glibc_problem(w, e, "tcache 0x%llx bin %u: entry 0x%llx is not a heap chunk",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)e);
			return;
		}
		if (c->state == PM_CHUNK_FREE_TCACHE) {
			pm_glibc_problem(w, e, "tcache 0x%llx bin %u: loop at entry 0x%llx",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)e);
			return;
		}
		if (c->state != PM_CHUNK_USED) {
			pm_glibc_problem(w, e, "tcache 0x%llx bin %u: entry 0x%llx is %s",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)e,
				pm_chunk_state_name(c->state));
			return;
		}
		if (bin < 64 && c->size != want)
			pm_glibc_problem(w, c->addr, "tcache 0x%llx bin %u: chunk 0x%llx has size 0x%llx",
				(unsigned long long)tc_chunk, bin,
				(unsigned long long)c->addr,
				(unsigned long long)c->size);
		c->state = PM_CHUNK_FREE_TCACHE;
		uint64_t stored;
		if (!pm_glibc_read_u64(w, e, &stored)) {
			pm_glibc_problem(w, e, "tcache entry 0x%llx unreadable",
				(unsigned long long)e);
			return;
		}
		e = pm_glibc_reveal(w->l, e, stored);
	}
	if (!w->l->tc_counts_down && (unsigned long)n != count)
		pm_glibc_problem(w, tc_chunk, "tcache 0x%llx bin %u: %ld entries, count says %u",
			(unsigned long long)tc_chunk, bin, n, count);
}

/* Each thread's tcache_perthread_struct: a chunk of its size whose chains
 * all match their counts; the first chunk of an arena is taken even when
 * damaged (that is where glibc puts it), and its damage reported. */
void pm_glibc_find_tcaches(struct pm_glibc_walk *w)
{
	const struct pm_glibc_layout *l = w->l;
	size_t tc_len = l->tc_entries + 8 * (size_t)l->tc_bins;
	uint8_t *tc = malloc(tc_len);
	if (!tc) {
		w->fatal = &pm_error_no_memory;
		return;
	}
	struct pm_glibc_heap *h = w->heap;
	for (size_t i = 0; i < h->nchunks; i++) {
		struct pm_chunk *c = &h->chunks[i];
		if (c->state != PM_CHUNK_USED || c->size != l->tc_chunk_size)
			continue;
		bool empty = true, first = is_first_chunk(w, c->addr);
		bool ok = tcache_validate(w, c->addr + 16, tc, tc_len, &empty);
		if (!(ok && (!empty || first)) && !(first && !ok &&
		    pm_glibc_read(w, c->addr + 16, tc, tc_len)))
			continue;
		c->state = PM_CHUNK_TCACHE_STRUCT;
		h->ntcaches++;
		for (uint32_t b = 0; b < l->tc_bins; b++) {
			uint64_t e;
			memcpy(&e, tc + l->tc_entries + 8 * b, 8);
			tcache_mark_chain(w, c->addr, b, e, tcache_count(l, tc, b));
		}
	}
	free(tc);
}
