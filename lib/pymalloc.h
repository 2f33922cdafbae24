/* pymalloc walker: finds each allocator state (the arena table) of a CPython
 * 3.8-3.13 process, walks arenas, pools and blocks, and tells used blocks from
 * free ones. It computes the numbers sys._debugmallocstats() prints.
 * Facts: shared/reference/cpython-memory.md */
#ifndef PM_PYMALLOC_H
#define PM_PYMALLOC_H

#include <stdbool.h>
#include <stdint.h>

#include "target.h"
#include "vector.h"

#define PM_PYMALLOC_NCLASSES 32
#define PM_PYMALLOC_POOL_OVERHEAD 48
#define PM_PYMALLOC_ALIGNMENT 16
#define PM_PYMALLOC_RADIX_NODES_MAX 256

struct pm_pymalloc_class {
	uint64_t pools;             /* pools of this size class in use */
	uint64_t used_blocks;       /* sum of the pools' ref.count */
	uint64_t avail_blocks;      /* blocks per pool * pools - used */
};

/* One allocator state: the global one (3.8-3.11), or one per interpreter
 * that has its own (3.12+). Counters that could not be found are -1. */
struct pm_pymalloc_state {
	uint64_t interp;            /* PyInterpreterState, 0 for the global state */
	uint64_t address;           /* _obmalloc_state (3.12+), else 0 */
	uint64_t arenas;            /* the arena_object vector */
	uint32_t maxarenas;
	int64_t ntimes_arena_allocated;
	int64_t narenas_highwater;
	int64_t narenas_currently_allocated;  /* as the target counts it */
	struct pm_pymalloc_class classes[PM_PYMALLOC_NCLASSES];
	uint64_t narenas;           /* arenas found in the vector */
	uint64_t unused_pools;      /* empty or never carved (nfreepools) */
	uint64_t empty_pools;       /* carved, now empty */
	uint64_t arena_alignment;   /* bytes lost to arena alignment */
	uint64_t allocated_bytes, available_bytes, pool_header_bytes,
		quantization;
	size_t first_pool, npools;  /* its slice of pm_pymalloc.pools */
};

/* A pool holding at least one used block. */
struct pm_pymalloc_pool {
	uint64_t address;
	uint32_t count;             /* ref.count: used blocks per the header */
	uint16_t szidx;             /* block size = (szidx + 1) * 16 */
	uint16_t state;             /* index in pm_pymalloc.states */
	uint32_t nblocks;           /* blocks the pool can hold */
	uint32_t nused;             /* used blocks per our walk (bitmap) */
	size_t bits;                /* index of its first word in used_bits */
};

/* One arena as its arena_object says: [address, address + arena_size),
 * pools carved up to pool_address, nfreepools of ntotalpools free (empty or
 * never carved). */
struct pm_pymalloc_arena {
	uint64_t address, pool_address;
	uint32_t nfreepools, ntotalpools;
	uint16_t state;             /* index in pm_pymalloc.states */
};
PM_DEFINE_VECTOR(pm_pymalloc_arena_vector, struct pm_pymalloc_arena)

struct pm_pymalloc {
	bool found;                 /* an allocator state was located */
	bool in_use;                /* pymalloc has allocated at least one arena */
	const char *how;            /* "symbols", "_Py_GetAllocatedBlocks code", ... */
	uint32_t arena_size, pool_size;
	size_t nstates;
	struct pm_pymalloc_state *states;   /* [0] = main / global */
	size_t npools;
	struct pm_pymalloc_pool *pools;     /* sorted by address */
	uint64_t *used_bits;                /* bit k of a pool: block k used */
	struct pm_pymalloc_arena_vector arena_list; /* every arena walked */
	uint64_t problems;                  /* inconsistencies warned about */
	/* 3.10+: the radix tree's heap nodes (mid and bottom levels, calloc'd
	 * by pymalloc to map addresses to arenas). */
	size_t nradix_nodes;
	uint64_t radix_nodes[PM_PYMALLOC_RADIX_NODES_MAX];
	/* Why nothing was walked, when !found (else empty). */
	char missing[256];
};

/* Walks once per target (cached in PM_CACHE_PYMALLOC); *ret stays owned by
 * the target. A process that is not a supported CPython gives found=false
 * with `missing` saying why, not an error. */
struct pm_error *pm_pymalloc_walk(struct pm_target *t,
				  const struct pm_pymalloc **ret);

static inline uint32_t pm_pymalloc_block_size(uint16_t szidx)
{
	return ((uint32_t)szidx + 1) * PM_PYMALLOC_ALIGNMENT;
}

static inline bool pm_pymalloc_block_used(const struct pm_pymalloc *pm,
					  const struct pm_pymalloc_pool *pool,
					  uint32_t k)
{
	return (pm->used_bits[pool->bits + k / 64] >> (k % 64)) & 1;
}

/* What sys._debugmallocstats() prints as "Total": the sum of its parts. */
static inline uint64_t pm_pymalloc_state_total(const struct pm_pymalloc *pm,
					       const struct pm_pymalloc_state *s)
{
	return s->allocated_bytes + s->available_bytes +
	       s->unused_pools * pm->pool_size + s->pool_header_bytes +
	       s->quantization + s->arena_alignment;
}

/* The pool containing addr, or NULL. */
const struct pm_pymalloc_pool *pm_pymalloc_find_pool(const struct pm_pymalloc *pm,
						     uint64_t addr);

#endif
