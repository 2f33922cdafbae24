/* Every allocation of the target, used and free, in one address-sorted list
 * with its state and category: what the allocation-level reports (heap
 * used/free/all, select, describe) list and filter. Used allocations come
 * from the CPython analysis (cpython.h); free ones from the allocators'
 * own free sets (glibc bins, fastbins, tcache, top; pymalloc free blocks). */
#ifndef PM_ALLOCS_H
#define PM_ALLOCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpython.h"
#include "strbuf.h"
#include "target.h"

enum pm_alloc_state { PM_ALLOC_STATE_USED = 0, PM_ALLOC_STATE_FREE };

/* "used" or "free". */
const char *pm_alloc_state_name(enum pm_alloc_state state);

/* One allocation. addr is where user data starts (glibc: chunk + 16, the
 * same convention as struct pm_alloc), size what it occupies in its
 * allocator, header included: [addr - header, addr - header + size) is its
 * chunk or block, and [addr, that end) its data. The strings belong to the
 * list (or are static). */
struct pm_alloc_entry {
	uint64_t addr, size;
	uint8_t header;             /* 16 for a glibc chunk, 0 for a pymalloc block
				     * or glibc overhead outside chunks (heap_info ...) */
	const char *domain, *kind, *detail;
	uint8_t state;              /* enum pm_alloc_state */
	uint8_t object_offset;      /* the recognised object is at addr + this */
	bool has_object;            /* a recognised Python object (live or on a free list) */
	bool pymalloc;              /* a pymalloc block (else a glibc chunk) */
};

struct pm_alloc_list {
	const struct pm_cpython_heap *heap;
	size_t n;
	struct pm_alloc_entry *entries;     /* sorted by addr */
};

/* Built once per target (cached in PM_CACHE_ALLOCS); *ret stays owned by
 * the target. */
static inline uint64_t pm_alloc_entry_end(const struct pm_alloc_entry *e)
{
	return e->addr - e->header + e->size;
}

struct pm_error *pm_alloc_list_get(struct pm_target *t,
				   const struct pm_alloc_list **ret);

/* The entry whose data [addr, end of its chunk or block) holds addr, or
 * NULL. */
const struct pm_alloc_entry *pm_alloc_list_find(const struct pm_alloc_list *list,
						uint64_t addr);

/* A short printable rendering of an allocation's content: a str or bytes
 * object's text (quoted, truncated), an int's or float's value, else the
 * first 16 bytes as escaped ASCII. Every read is bounded by the
 * allocation; unreadable memory gives "<unreadable>". */
void pm_alloc_preview(struct pm_target *t, const struct pm_alloc_list *list,
		      const struct pm_alloc_entry *e, struct pm_strbuf *out);

#endif
