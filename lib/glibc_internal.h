/* Internals shared by the glibc walker's files (glibc_layout.c,
 * glibc_discover.c, glibc.c): per-version layouts and discovery results.
 * Not part of the library's interface. */
#ifndef PM_GLIBC_INTERNAL_H
#define PM_GLIBC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include "glibc.h"
#include "target.h"
#include "vector.h"

#define PM_GLIBC_NBINS 128          /* bins 1..127 are used */
#define PM_GLIBC_NFASTBINS 10
#define PM_GLIBC_MINSIZE 0x20
#define PM_GLIBC_PREV_INUSE 1
#define PM_GLIBC_IS_MMAPPED 2
#define PM_GLIBC_NON_MAIN_ARENA 4
#define PM_GLIBC_FLAGS 7
#define PM_GLIBC_NONCONTIGUOUS 2    /* malloc_state.flags bit */
#define PM_GLIBC_HEAP_MAX_SIZE (64ull << 20)
/* The fencepost pair ending an older heap: a 16-byte chunk (size 0x10|P)
 * and a size-0 header (0|P) filling the heap's last 16 bytes. */
#define PM_GLIBC_FENCEPOST_SIZE 0x20

/* Offsets of the fields the walker reads, for one range of glibc versions. */
struct pm_glibc_layout {
	int min_minor, max_minor;   /* 2.<min_minor> .. 2.<max_minor> */
	/* struct malloc_state */
	uint32_t ms_flags, ms_fastbins, ms_top, ms_bins, ms_next,
		ms_system_mem, ms_size;     /* ms_fastbins 0: none (2.43+) */
	/* struct malloc_par (mp_) */
	uint32_t mp_mmap_threshold, mp_n_mmaps, mp_n_mmaps_max,
		mp_max_n_mmaps, mp_mmapped_mem, mp_sbrk_base, mp_tcache_bins,
		mp_hp_pagesize;     /* 0: no hp_pagesize field */
	uint32_t mp_size;
	/* heap_info */
	uint32_t hi_ar_ptr, hi_prev, hi_size, hi_sizeof;
	/* tcache_perthread_struct */
	uint32_t tc_bins;           /* entries[] length */
	uint32_t tc_count_width;    /* 1 (char) or 2 (uint16_t) */
	uint32_t tc_entries;        /* offset of entries[] */
	uint32_t tc_chunk_size;     /* size of the chunk holding it */
	bool tc_counts_down;        /* 2.42: num_slots, not counts */
	bool safe_linking;          /* 2.32+ */
	/* mmapped chunks: bytes of the mapping past the chunk's size (2.43:
	 * a chunk header's worth, CHUNK_HDR_SZ, so the size is the mapping's
	 * less 16 and prev_size may carry MMAP_HP, bit 0) */
	uint32_t mmap_tail;
};

/* The layout for glibc 2.<minor>, or NULL if unsupported. */
const struct pm_glibc_layout *pm_glibc_layout_find(int major, int minor);
/* "2.27 to 2.43" */
const char *pm_glibc_supported_range(void);

/* Where the walker starts from. */
struct pm_glibc_roots {
	const struct pm_glibc_layout *layout;
	int major, minor;
	const char *version_source;
	uint64_t main_arena;
	const char *main_arena_source;
	uint64_t mp;                /* 0 if not found */
	const char *mp_source;
	const char *other_allocator;    /* set when glibc malloc is unused */
	char other_allocator_buf[160];
	char version_buf[64];
};

/* Finds the version, main_arena and mp_. On success *ret is filled; when
 * another allocator is in use, ret->other_allocator says so and main_arena
 * may be 0. */
struct pm_error *pm_glibc_find_roots(struct pm_target *t,
				     struct pm_glibc_roots *ret);

/* Finds mp_ by signature once the main heap's start is known. */
uint64_t pm_glibc_scan_mp(struct pm_target *t,
			  const struct pm_glibc_layout *layout,
			  uint64_t main_arena, uint64_t sbrk_base);

/* ---- the walk's state, shared by glibc.c, glibc_lists.c,
 * glibc_mmapped.c and glibc_tcache.c ---- */

#define PM_GLIBC_LIST_MAX (1u << 24)        /* any one free list */
#define PM_GLIBC_PAGE 4096ull

/* Free-list membership: open-addressing hash of chunk address -> state. */
struct pm_glibc_freeset {
	uint64_t *keys;
	uint8_t *states;
	size_t cap, count;
};

/* A read-only window of target memory for sequential heap walks; every
 * other read of target memory invalidates it (pm_target_view's rule). */
struct pm_glibc_window {
	uint64_t start, end;
	const uint8_t *data;
};

PM_DEFINE_VECTOR(pm_glibc_overhead_vector, struct pm_glibc_overhead)
PM_DEFINE_VECTOR(pm_glibc_u64_vector, uint64_t)

struct pm_glibc_walk {
	struct pm_target *t;
	const struct pm_glibc_layout *l;
	struct pm_glibc_heap *heap;
	struct pm_glibc_freeset fs;
	uint64_t *known;            /* sorted free-list chunk addresses */
	size_t nknown;
	size_t chunks_cap;
	struct pm_glibc_window win;
	uint64_t heap_max;          /* HEAP_MAX_SIZE in effect */
	uint64_t main_start;        /* first chunk of the main heap */
	uint64_t *first_chunks;     /* first chunk of each arena's first heap */
	size_t nfirst;
	struct pm_glibc_overhead_vector overheads;      /* in walk order */
	/* Each heap walk and mmapped scan appends an address-sorted run of
	 * chunks; runs are merged by their first address instead of a sort. */
	size_t *runs;
	size_t nruns, runs_cap;
	uint64_t resync_steps;      /* spent so far, capped */
	struct pm_error *fatal;     /* host allocation failure */
};

/* Records a problem at addr: a target warning, and the walk is partial. */
void pm_glibc_problem(struct pm_glibc_walk *w, uint64_t addr, const char *fmt,
		      ...) __attribute__((format(printf, 3, 4)));
/* Reads through the target's block cache; false if unreadable. */
bool pm_glibc_read(struct pm_glibc_walk *w, uint64_t addr, void *buf,
		   size_t len);
bool pm_glibc_read_u64(struct pm_glibc_walk *w, uint64_t addr, uint64_t *v);
/* Sequential reads through a window of up to PM_VIEW_MAX bytes. */
bool pm_glibc_window_u64(struct pm_glibc_walk *w, uint64_t addr, uint64_t *v);
bool pm_glibc_chunk_push(struct pm_glibc_walk *w, uint64_t addr, uint64_t size,
			 uint8_t state, uint8_t arena);
/* Starts a new address-sorted run of chunks (see chunks_sort). */
void pm_glibc_run_begin(struct pm_glibc_walk *w);

/* glibc_lists.c */
/* 0 when addr is in no free list, else its state + 1. */
int pm_glibc_freeset_get(const struct pm_glibc_freeset *fs, uint64_t addr);
void pm_glibc_freeset_deinit(struct pm_glibc_freeset *fs);
/* The arenas of main_arena's ring into w->heap->arenas. */
struct pm_error *pm_glibc_arenas_collect(struct pm_glibc_walk *w);
/* Reads an arena, walks its bins and fastbins, fills its mallinfo share. */
bool pm_glibc_arena_load(struct pm_glibc_walk *w, struct pm_glibc_arena *ar);

/* Records [addr, addr + size) as glibc's overhead of that kind. */
void pm_glibc_overhead_push(struct pm_glibc_walk *w, uint64_t addr,
			    uint64_t size, uint8_t kind, uint8_t arena);

/* glibc_mmapped.c */
void pm_glibc_scan_mmapped(struct pm_glibc_walk *w);

/* glibc_tcache.c */
void pm_glibc_find_tcaches(struct pm_glibc_walk *w);

/* Decodes a safe-linked pointer stored at field_addr (2.32+). */
static inline uint64_t pm_glibc_reveal(const struct pm_glibc_layout *l,
				       uint64_t field_addr, uint64_t stored)
{
	return l->safe_linking ? (field_addr >> 12) ^ stored : stored;
}

#endif
