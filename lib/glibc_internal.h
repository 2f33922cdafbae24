/* Internals shared by the glibc walker's files (glibc_layout.c,
 * glibc_discover.c, glibc.c): per-version layouts and discovery results.
 * Not part of the library's interface. */
#ifndef PM_GLIBC_INTERNAL_H
#define PM_GLIBC_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "glibc.h"

#define PM_GLIBC_NBINS 128          /* bins 1..127 are used */
#define PM_GLIBC_NFASTBINS 10
#define PM_GLIBC_MINSIZE 0x20
#define PM_GLIBC_PREV_INUSE 1
#define PM_GLIBC_IS_MMAPPED 2
#define PM_GLIBC_NON_MAIN_ARENA 4
#define PM_GLIBC_FLAGS 7
#define PM_GLIBC_NONCONTIGUOUS 2    /* malloc_state.flags bit */
#define PM_GLIBC_HEAP_MAX_SIZE (64ull << 20)

/* Offsets of the fields the walker reads, for one range of glibc versions. */
struct pm_glibc_layout {
	int min_minor, max_minor;   /* 2.<min_minor> .. 2.<max_minor> */
	/* struct malloc_state */
	uint32_t ms_flags, ms_fastbins, ms_top, ms_bins, ms_next,
		ms_system_mem, ms_size;
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
};

/* The layout for glibc 2.<minor>, or NULL if unsupported. */
const struct pm_glibc_layout *pm_glibc_layout_find(int major, int minor);
/* "2.27 to 2.42" */
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

#endif
