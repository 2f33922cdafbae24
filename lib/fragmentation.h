/* Why freed memory stays in the process: per glibc arena, its free memory
 * by bin class and what malloc_trim(0) would give back (glibc 2.36's
 * mtrim: consolidate the fastbins, madvise the whole pages inside each free
 * bin chunk, shrink the main heap's top by sbrk); per pymalloc arena, its
 * used, empty and never-carved pools and the arenas that a few live blocks
 * keep ("pinned"). fragmentation.c computes; report_rss.c formats. */
#ifndef PM_FRAGMENTATION_H
#define PM_FRAGMENTATION_H

#include <stdbool.h>
#include <stdint.h>

#include "glibc.h"
#include "hash_table.h"
#include "pymalloc.h"
#include "residency.h"
#include "vector.h"

/* Where a free glibc chunk is, as the rss report splits free memory. */
enum pm_glibc_free_class {
	PM_FREE_TCACHE = 0, PM_FREE_FASTBIN, PM_FREE_UNSORTED, PM_FREE_SMALL,
	PM_FREE_LARGE, PM_FREE_TOP, PM_FREE_CLASSES
};
/* "tcache", "fastbin", "unsorted", "small", "large", "top". */
const char *pm_glibc_free_class_name(enum pm_glibc_free_class c);

/* Bytes with how much of them is on resident / swapped pages. */
struct pm_resident_bytes {
	uint64_t bytes, resident, swapped;
};

struct pm_trim_arena {
	uint64_t address;
	bool is_main;
	uint64_t mapped;            /* mallinfo2 arena: system memory */
	uint64_t in_use;            /* in use chunks and headers, tcache'd chunks out */
	struct pm_resident_bytes free_by_class[PM_FREE_CLASSES];
	uint64_t top_size;
	/* malloc_trim(0): the page ranges madvised in free chunks after
	 * malloc_consolidate, and the main heap's top given back by sbrk. */
	struct pm_resident_bytes madvise, systrim;
	uint64_t madvise_chunks;    /* free chunks with at least one whole page */
	uint64_t top_after_consolidation;
	const char *systrim_note;   /* why the top is not shrunk, or NULL */
};
PM_DEFINE_VECTOR(pm_trim_arena_vector, struct pm_trim_arena)
PM_DEFINE_HASH_MAP(pm_addr_set, uint64_t, uint8_t, pm_hash_u64_key, pm_u64_key_eq)

struct pm_glibc_fragmentation {
	const struct pm_glibc_heap *heap;
	bool mp_known;              /* mp_ found and read */
	uint64_t trim_threshold, top_pad, mmap_threshold, arena_test,
		arena_max, thp_pagesize;
	uint64_t page;              /* the page size malloc_trim works in */
	struct pm_trim_arena_vector arenas;     /* as h->arenas */
	struct pm_addr_set unsorted;            /* chunks in an unsorted bin */
	/* mmapped chunks: mapped bytes, of them resident */
	uint64_t mmapped_chunks;
	struct pm_resident_bytes mmapped;
	/* the prediction over all arenas: resident bytes given back */
	uint64_t trim_returns, trim_range;
};

/* Needs the glibc walk (an error when glibc malloc is not in use: check
 * h->other_allocator first) and a residency. */
struct pm_error *pm_glibc_fragmentation_create(struct pm_target *t,
					       struct pm_residency *res,
					       struct pm_glibc_fragmentation **ret);
void pm_glibc_fragmentation_destroy(struct pm_glibc_fragmentation *f);
/* The class of a free chunk (bin, fastbin, tcache or top state). */
enum pm_glibc_free_class pm_glibc_chunk_free_class(const struct pm_glibc_fragmentation *f,
						   const struct pm_chunk *c);

/* One pymalloc arena's pools and blocks. */
struct pm_pymalloc_arena_use {
	uint64_t address;
	uint32_t used_pools, empty_pools, never_pools;
	uint64_t used_blocks, used_bytes;
	struct pm_resident_bytes whole;   /* the arena's arena_size bytes */
	bool pinned;                /* few live blocks keep it */
};
PM_DEFINE_VECTOR(pm_pymalloc_arena_use_vector, struct pm_pymalloc_arena_use)

/* A used block in a pinned arena. */
struct pm_pinning_block {
	uint64_t addr;              /* the block */
	uint32_t size;
	uint32_t arena;             /* index in arenas */
};
PM_DEFINE_VECTOR(pm_pinning_block_vector, struct pm_pinning_block)

struct pm_pymalloc_fragmentation {
	const struct pm_pymalloc *pm;
	int minor;                  /* CPython 3.<minor> */
	struct pm_pymalloc_arena_use_vector arenas;
	uint64_t pinned_arenas, pinned_blocks, pinned_bytes;   /* bytes: arenas' */
	struct pm_resident_bytes pinned_whole;
	struct pm_pinning_block_vector blocks;  /* every block of the pinned arenas */
	/* Arenas pymalloc would unmap if every pinning block were freed:
	 * 3.9+ keeps one empty arena when no other is empty. */
	uint64_t arenas_freed_if_released;
	bool keeps_one_empty;
};

/* found=false pymalloc gives an empty analysis, not an error. */
struct pm_error *pm_pymalloc_fragmentation_create(struct pm_target *t,
						  struct pm_residency *res,
						  struct pm_pymalloc_fragmentation **ret);
void pm_pymalloc_fragmentation_destroy(struct pm_pymalloc_fragmentation *f);

/* An arena is pinned when its live blocks fill at most this share of it. */
#define PM_PINNED_SHARE 0.10

#endif
