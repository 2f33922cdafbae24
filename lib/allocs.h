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
 * allocator. The strings belong to the list (or are static). */
struct pm_alloc_entry {
	uint64_t addr, size;
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
struct pm_error *pm_alloc_list_get(struct pm_target *t,
				   const struct pm_alloc_list **ret);

/* The entry whose [addr, addr + size) holds addr, or NULL. */
const struct pm_alloc_entry *pm_alloc_list_find(const struct pm_alloc_list *list,
						uint64_t addr);

/* A short printable rendering of an allocation's content: a str or bytes
 * object's text (quoted, truncated), an int's or float's value, else the
 * first 16 bytes as escaped ASCII. Every read is bounded by the
 * allocation; unreadable memory gives "<unreadable>". */
void pm_alloc_preview(struct pm_target *t, const struct pm_alloc_list *list,
		      const struct pm_alloc_entry *e, struct pm_strbuf *out);

#endif
