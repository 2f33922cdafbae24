/* glibc ptmalloc2 walker: finds main_arena and mp_ (symbols or signature scan),
 * walks every arena, heap and mmapped chunk, and classifies each chunk using
 * the free lists (bins, fastbins, tcache). Facts: shared/reference/glibc-ptmalloc.md */
#ifndef PM_GLIBC_H
#define PM_GLIBC_H

#include "target.h"

enum pm_chunk_state {
	PM_CHUNK_USED = 0,          /* in use by the program */
	PM_CHUNK_FREE_BIN,          /* unsorted, small or large bin */
	PM_CHUNK_FREE_FASTBIN,
	PM_CHUNK_FREE_TCACHE,       /* free, but mallinfo2 counts it as in use */
	PM_CHUNK_TOP,
	PM_CHUNK_TCACHE_STRUCT,     /* a thread's tcache_perthread_struct */
	PM_CHUNK_MMAPPED,           /* in use, mmapped (IS_MMAPPED) */
	/* The fencepost pair (a 16-byte chunk, then a size-0 header) that ends
	 * each heap of a non-main arena but its newest: glibc's, in use. */
	PM_CHUNK_FENCEPOST,
};

/* prev_size and size: the user data of a chunk starts this far in. */
#define PM_GLIBC_CHUNK_HEADER 16

struct pm_chunk {
	uint64_t addr;              /* chunk header address; user data at +16 */
	uint64_t size;              /* chunk size without flag bits */
	uint8_t state;              /* enum pm_chunk_state */
	uint8_t arena;              /* index into the arenas array; 0xff for mmapped */
};

/* mallinfo2's fields, computed from the walk. */
struct pm_mallinfo {
	uint64_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks,
		uordblks, fordblks, keepcost;
};

/* glibc's own in-use bytes outside any chunk, which mallinfo2 counts in
 * use all the same (uordblks, or hblkhd for a mapping). */
enum pm_glibc_overhead_kind {
	/* The start of a non-main arena's first heap: heap_info, the arena's
	 * malloc_state, padding up to the first chunk (2,256 bytes on 2.35+,
	 * 2,240 before). */
	PM_OVERHEAD_ARENA_HEADER = 0,
	/* The heap_info starting each later heap of a non-main arena. */
	PM_OVERHEAD_HEAP_HEADER,
	/* The start of a memalign'd mmapped chunk's mapping, before the chunk
	 * (its prev_size says how long; hblkhd counts the whole mapping). */
	PM_OVERHEAD_MMAP_LEAD,
};

struct pm_glibc_overhead {
	uint64_t addr, size;        /* [addr, addr + size) */
	uint8_t kind;               /* enum pm_glibc_overhead_kind */
	uint8_t arena;              /* index into the arenas array; 0xff for mmapped */
};

struct pm_glibc_arena {
	uint64_t address;           /* struct malloc_state */
	bool is_main;
	uint64_t top, top_size, system_mem;
	bool noncontiguous;         /* malloc_state.flags NONCONTIGUOUS */
	size_t nheaps;
	uint64_t *heaps;            /* heap_info addresses (non-main) */
	uint64_t heap_sizes_total;  /* sum of heap_info.size (non-main) */
	struct pm_mallinfo info;    /* this arena's share (hblks/hblkhd 0) */
};

struct pm_glibc_heap {
	int version_major, version_minor;   /* detected glibc version */
	const char *version_source;         /* how it was found */
	const char *main_arena_source;      /* "symbol", "signature scan", ... */
	uint64_t main_arena, mp;            /* mp is 0 when not found */
	const char *mp_source;              /* "symbol", "signature scan" */
	uint64_t mp_n_mmaps, mp_mmapped_mem;    /* mp_'s own counts */
	size_t ntcaches;                    /* tcache structs identified */
	size_t narenas;
	struct pm_glibc_arena *arenas;
	size_t nchunks;
	struct pm_chunk *chunks;            /* sorted by address */
	size_t noverheads;
	struct pm_glibc_overhead *overheads;    /* sorted by address */
	struct pm_mallinfo total;
	bool partial;                       /* corruption made totals partial */
	size_t problems;                    /* problems found (see target warnings) */
	/* Set when glibc malloc is not the allocator in use (jemalloc, ...):
	 * then there are no chunks and this names what was found. */
	const char *other_allocator;
	char other_allocator_buf[160];
	char version_source_buf[64];
};

/* Walks once per target (cached); *ret stays owned by the target. */
struct pm_error *pm_glibc_walk(struct pm_target *t,
			       const struct pm_glibc_heap **ret);

/* "used", "free-bin", "free-fastbin", "free-tcache", "top",
 * "tcache-struct", "mmapped", "fencepost". */
const char *pm_chunk_state_name(enum pm_chunk_state state);
/* True for the program's live allocations: PM_CHUNK_USED and
 * PM_CHUNK_MMAPPED (not tcache'd chunks, not glibc's tcache struct). */
bool pm_chunk_state_is_used(enum pm_chunk_state state);
/* The chunk whose [addr, addr+size) holds addr, or NULL (binary search). */
const struct pm_chunk *pm_glibc_chunk_containing(const struct pm_glibc_heap *h,
						 uint64_t addr);

/* The overhead whose [addr, addr+size) holds addr, or NULL. */
const struct pm_glibc_overhead *pm_glibc_overhead_containing(
	const struct pm_glibc_heap *h, uint64_t addr);

/* glibc's own in-use memory that starts at addr (a chunk's or an
 * overhead's start), named for reports: kind "tcache_perthread_struct",
 * "heap fencepost", "arena header" (detail "heap_info + malloc_state" or
 * "heap_info") or "memalign padding" (detail "mmapped chunk"); other
 * details "-". False when addr starts none of them. */
bool pm_glibc_own_memory_name(const struct pm_glibc_heap *h, uint64_t addr,
			      const char **kind, const char **detail);

/* The glibc version of the target, and how it was found. */
struct pm_error *pm_glibc_detect_version(struct pm_target *t, int *major,
					 int *minor, const char **how);

#endif
