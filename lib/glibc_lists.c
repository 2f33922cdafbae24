/* glibc's free lists: the free set (chunk address -> list), each arena's
 * bins and fastbins walked with loop and consistency checks, and each
 * arena's mallinfo share computed from them as int_mallinfo does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glibc_internal.h"
#include "target.h"

#define ARENA_MAX 1024              /* arena ring cap */

static uint64_t hash_addr(uint64_t a)
{
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	return a;
}

static bool freeset_grow(struct pm_glibc_freeset *fs)
{
	size_t ncap = fs->cap ? fs->cap * 2 : 1024;
	uint64_t *keys = calloc(ncap, sizeof(*keys));
	uint8_t *states = calloc(ncap, 1);
	if (!keys || !states) {
		free(keys);
		free(states);
		return false;
	}
	for (size_t i = 0; i < fs->cap; i++) {
		if (!fs->keys[i])
			continue;
		size_t j = hash_addr(fs->keys[i]) & (ncap - 1);
		while (keys[j])
			j = (j + 1) & (ncap - 1);
		keys[j] = fs->keys[i];
		states[j] = fs->states[i];
	}
	free(fs->keys);
	free(fs->states);
	fs->keys = keys;
	fs->states = states;
	fs->cap = ncap;
	return true;
}

/* 0 when absent, else the state + 1. */
int pm_glibc_freeset_get(const struct pm_glibc_freeset *fs, uint64_t addr)
{
	if (!fs->cap)
		return 0;
	size_t j = hash_addr(addr) & (fs->cap - 1);
	while (fs->keys[j]) {
		if (fs->keys[j] == addr)
			return fs->states[j] + 1;
		j = (j + 1) & (fs->cap - 1);
	}
	return 0;
}

/* Adds addr; false if it was already there (a loop or a chunk in two
 * lists) or on allocation failure (w->fatal set). */
static bool freeset_add(struct pm_glibc_walk *w, uint64_t addr, uint8_t state)
{
	struct pm_glibc_freeset *fs = &w->fs;
	if ((fs->count + 1) * 2 > fs->cap && !freeset_grow(fs)) {
		w->fatal = &pm_error_no_memory;
		return false;
	}
	size_t j = hash_addr(addr) & (fs->cap - 1);
	while (fs->keys[j]) {
		if (fs->keys[j] == addr)
			return false;
		j = (j + 1) & (fs->cap - 1);
	}
	fs->keys[j] = addr;
	fs->states[j] = state;
	fs->count++;
	return true;
}

void pm_glibc_freeset_deinit(struct pm_glibc_freeset *fs)
{
	free(fs->keys);
	free(fs->states);
}

/* ---- free lists ---- */

static const char *list_state_name(uint8_t state)
{
	switch (state) {
	case PM_CHUNK_FREE_BIN: return "bin";
	case PM_CHUNK_FREE_FASTBIN: return "fastbin";
	case PM_CHUNK_FREE_TCACHE: return "tcache";
	default: return "list";
	}
}

static void list_duplicate(struct pm_glibc_walk *w, uint64_t chunk, uint8_t state,
			   const char *list)
{
	int old = pm_glibc_freeset_get(&w->fs, chunk);
	pm_glibc_problem(w, chunk, "chunk 0x%llx of %s is already in a %s list (loop or double free); list cut here",
		(unsigned long long)chunk, list,
		old ? list_state_name((uint8_t)(old - 1)) : "free");
	(void)state;
}

/* Bin i (1..127) of arena: fd chain back to the bin's own fake chunk. */
static void walk_bin(struct pm_glibc_walk *w, struct pm_glibc_arena *ar, int i,
		     const uint8_t *ms)
{
	const struct pm_glibc_layout *l = w->l;
	uint64_t head = ar->address + l->ms_bins + (uint64_t)(i - 1) * 16 - 16;
	uint64_t fd;
	memcpy(&fd, ms + l->ms_bins + (size_t)(i - 1) * 16, 8);
	uint64_t prev = head;
	char list[48];
	snprintf(list, sizeof(list), "bin %d of arena 0x%llx", i,
		 (unsigned long long)ar->address);
	for (size_t n = 0; fd != head; n++) {
		if (n >= PM_GLIBC_LIST_MAX || (fd & 15) ||
		    !pm_target_is_mapped(w->t, fd, 32)) {
			pm_glibc_problem(w, prev, "%s: bad forward pointer 0x%llx after 0x%llx",
				list, (unsigned long long)fd,
				(unsigned long long)prev);
			return;
		}
		uint64_t hdr[4];
		if (!pm_glibc_read(w, fd, hdr, sizeof(hdr))) {
			pm_glibc_problem(w, fd, "%s: chunk 0x%llx unreadable", list,
				(unsigned long long)fd);
			return;
		}
		if (hdr[3] != prev)
			pm_glibc_problem(w, fd, "%s: chunk 0x%llx has bk 0x%llx, expected 0x%llx",
				list, (unsigned long long)fd,
				(unsigned long long)hdr[3],
				(unsigned long long)prev);
		uint64_t size = hdr[1] & ~(uint64_t)PM_GLIBC_FLAGS;
		if (size < PM_GLIBC_MINSIZE || (size & 15)) {
			pm_glibc_problem(w, fd, "%s: chunk 0x%llx has bad size 0x%llx",
				list, (unsigned long long)fd,
				(unsigned long long)hdr[1]);
			return;
		}
		if (!freeset_add(w, fd, PM_CHUNK_FREE_BIN)) {
			if (!w->fatal)
				list_duplicate(w, fd, PM_CHUNK_FREE_BIN, list);
			return;
		}
		ar->info.ordblks++;
		ar->info.fordblks += size;
		prev = fd;
		fd = hdr[2];
	}
}

static void walk_fastbin(struct pm_glibc_walk *w, struct pm_glibc_arena *ar, int i,
			 const uint8_t *ms)
{
	const struct pm_glibc_layout *l = w->l;
	uint64_t p;
	memcpy(&p, ms + l->ms_fastbins + (size_t)i * 8, 8);
	uint64_t want = (uint64_t)(i + 2) * 16;
	char list[48];
	snprintf(list, sizeof(list), "fastbin %d of arena 0x%llx", i,
		 (unsigned long long)ar->address);
	for (size_t n = 0; p; n++) {
		if (n >= PM_GLIBC_LIST_MAX || (p & 15) ||
		    !pm_target_is_mapped(w->t, p, 32)) {
			pm_glibc_problem(w, p, "%s: bad pointer 0x%llx", list,
				(unsigned long long)p);
			return;
		}
		uint64_t hdr[3];
		if (!pm_glibc_read(w, p, hdr, sizeof(hdr))) {
			pm_glibc_problem(w, p, "%s: chunk unreadable", list);
			return;
		}
		uint64_t size = hdr[1] & ~(uint64_t)PM_GLIBC_FLAGS;
		if (size != want) {
			pm_glibc_problem(w, p, "%s: chunk 0x%llx has size 0x%llx, expected 0x%llx",
				list, (unsigned long long)p,
				(unsigned long long)hdr[1],
				(unsigned long long)want);
			return;
		}
		if (!freeset_add(w, p, PM_CHUNK_FREE_FASTBIN)) {
			if (!w->fatal)
				list_duplicate(w, p, PM_CHUNK_FREE_FASTBIN, list);
			return;
		}
		ar->info.smblks++;
		ar->info.fsmblks += size;
		ar->info.fordblks += size;
		p = pm_glibc_reveal(l, p + 16, hdr[2]);
	}
}

/* Reads one arena's malloc_state, walks its bins and fastbins and fills
 * its mallinfo share the way int_mallinfo does. */
bool pm_glibc_arena_load(struct pm_glibc_walk *w, struct pm_glibc_arena *ar)
{
	const struct pm_glibc_layout *l = w->l;
	uint8_t ms[0x900];
	if (l->ms_size > sizeof(ms) || !pm_glibc_read(w, ar->address, ms, l->ms_size)) {
		pm_glibc_problem(w, ar->address, "arena 0x%llx unreadable",
			(unsigned long long)ar->address);
		return false;
	}
	memcpy(&ar->top, ms + l->ms_top, 8);
	memcpy(&ar->system_mem, ms + l->ms_system_mem, 8);
	uint32_t flags;
	memcpy(&flags, ms + l->ms_flags, 4);
	ar->noncontiguous = flags & PM_GLIBC_NONCONTIGUOUS;
	uint64_t top_hdr = 0;
	if ((ar->top & 15) || !pm_glibc_read_u64(w, ar->top + 8, &top_hdr)) {
		pm_glibc_problem(w, ar->top, "arena 0x%llx: top chunk 0x%llx unreadable",
			(unsigned long long)ar->address,
			(unsigned long long)ar->top);
		top_hdr = 0;
	}
	ar->top_size = top_hdr & ~(uint64_t)PM_GLIBC_FLAGS;
	if (ar->top_size > ar->system_mem) {
		pm_glibc_problem(w, ar->top, "arena 0x%llx: top size 0x%llx exceeds system_mem 0x%llx",
			(unsigned long long)ar->address,
			(unsigned long long)ar->top_size,
			(unsigned long long)ar->system_mem);
	}
	/* A damaged size must not make the top chunk reach past its mapping:
	 * it would overlap other arenas' chunks (and lookups among them).
	 * Cut it where the mapped memory ends. */
	uint64_t top_end = ar->top;
	while (top_end - ar->top < ar->top_size) {
		struct pm_region *r = pm_target_find_region(w->t, top_end);
		if (!r || !(r->perms & PM_PERM_R))
			break;
		top_end = r->end;
	}
	if (top_end - ar->top < ar->top_size) {
		pm_glibc_problem(w, ar->top, "arena 0x%llx: top chunk 0x%llx of size 0x%llx runs past mapped memory; cut to 0x%llx",
			(unsigned long long)ar->address,
			(unsigned long long)ar->top,
			(unsigned long long)ar->top_size,
			(unsigned long long)((top_end - ar->top) & ~15ull));
		ar->top_size = (top_end - ar->top) & ~15ull;
	}
	ar->info.arena = ar->system_mem;
	ar->info.ordblks = 1;
	ar->info.fordblks = ar->top_size;
	for (int i = 0; l->ms_fastbins && i < PM_GLIBC_NFASTBINS && !w->fatal; i++)
		walk_fastbin(w, ar, i, ms);
	for (int i = 1; i < PM_GLIBC_NBINS && !w->fatal; i++)
		walk_bin(w, ar, i, ms);
	ar->info.uordblks = ar->system_mem - ar->info.fordblks;
	if (ar->is_main)
		ar->info.keepcost = ar->top_size;
	return true;
}

struct pm_error *pm_glibc_arenas_collect(struct pm_glibc_walk *w)
{
	struct pm_glibc_heap *h = w->heap;
	uint64_t a = h->main_arena;
	size_t cap = 8;
	h->arenas = calloc(cap, sizeof(*h->arenas));
	if (!h->arenas)
		return &pm_error_no_memory;
	for (size_t i = 0; i < ARENA_MAX; i++) {
		if (h->narenas == cap) {
			void *n = realloc(h->arenas, 2 * cap * sizeof(*h->arenas));
			if (!n)
				return &pm_error_no_memory;
			h->arenas = n;
			memset(h->arenas + cap, 0, cap * sizeof(*h->arenas));
			cap *= 2;
		}
		h->arenas[h->narenas].address = a;
		h->arenas[h->narenas].is_main = i == 0;
		h->narenas++;
		uint64_t next;
		if (!pm_glibc_read_u64(w, a + w->l->ms_next, &next)) {
			pm_glibc_problem(w, a, "arena 0x%llx: next unreadable",
				(unsigned long long)a);
			return NULL;
		}
		if (next == h->main_arena)
			return NULL;
		if (!next || (next & 7)) {
			pm_glibc_problem(w, a, "arena 0x%llx: bad next 0x%llx",
				(unsigned long long)a, (unsigned long long)next);
			return NULL;
		}
		for (size_t j = 0; j < h->narenas; j++) {
			if (h->arenas[j].address == next) {
				pm_glibc_problem(w, a, "arena ring loops at 0x%llx",
					(unsigned long long)next);
				return NULL;
			}
		}
		a = next;
	}
	pm_glibc_problem(w, a, "more than %d arenas; ring cut", ARENA_MAX);
	return NULL;
}
