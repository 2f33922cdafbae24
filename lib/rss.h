/* Where the process's resident memory is: every writable mapping split
 * into Python objects, other allocations (by domain), memory free inside
 * the allocators (glibc by bin class, pymalloc free blocks, empty pools,
 * never-used pool space), allocator overhead (chunk and pool headers,
 * alignment, arena headers) and memory no allocator owns (stacks,
 * libraries' data, other maps). Each part has its bytes of address space
 * and, of them, the bytes on resident and swapped pages; the parts of a
 * region add up to the region. rss.c computes; report_rss.c formats. */
#ifndef PM_RSS_H
#define PM_RSS_H

#include "fragmentation.h"
#include "residency.h"
#include "vector.h"

enum pm_rss_part {
	PM_RSS_PYTHON = 0,          /* Python objects and the buffers they own */
	PM_RSS_OTHER,               /* other allocations (see domains) */
	PM_RSS_GLIBC_FREE,          /* + pm_glibc_free_class: 6 parts */
	PM_RSS_PYMALLOC_FREE_BLOCKS = PM_RSS_GLIBC_FREE + PM_FREE_CLASSES,
	PM_RSS_PYMALLOC_EMPTY_POOLS,
	PM_RSS_PYMALLOC_NEVER_USED,
	PM_RSS_CHUNK_HEADERS,       /* glibc chunk headers of used chunks */
	PM_RSS_POOL_HEADERS,        /* pymalloc pool headers */
	PM_RSS_ALIGNMENT,           /* pool tails, arena alignment */
	PM_RSS_ALLOCATOR_STRUCTS,   /* heap/arena headers, tcache structs, fenceposts */
	PM_RSS_STACKS,              /* thread stacks, not in any allocator */
	PM_RSS_FILE_DATA,           /* libraries' and files' writable mappings */
	PM_RSS_ANON_OTHER,          /* other anonymous memory no allocator walked */
	PM_RSS_PARTS
};

/* "python objects", "other allocations", "glibc free: tcache", ... */
const char *pm_rss_part_name(enum pm_rss_part part);
/* "python", "other", "glibc_free_top", ...: the JSON member names. */
const char *pm_rss_part_key(enum pm_rss_part part);
/* "in use", "free", "overhead", "not allocator memory". */
const char *pm_rss_part_group(enum pm_rss_part part);

struct pm_rss_region {
	size_t region;              /* target region index */
	struct pm_resident_bytes parts[PM_RSS_PARTS];
	struct pm_resident_bytes total;   /* the region: size, resident, swapped */
	bool smaps_known;
	uint64_t smaps_rss, smaps_swap;
};
PM_DEFINE_VECTOR(pm_rss_region_vector, struct pm_rss_region)

struct pm_rss_domain {
	const char *domain;         /* the category's (owned by the analysis) */
	struct pm_resident_bytes bytes;
};
PM_DEFINE_VECTOR(pm_rss_domain_vector, struct pm_rss_domain)

struct pm_rss {
	enum pm_residency_source source;
	bool per_page;              /* parts' resident bytes are known */
	struct pm_rss_region_vector regions;    /* the writable ones */
	struct pm_resident_bytes parts[PM_RSS_PARTS];
	struct pm_resident_bytes total;
	bool smaps_known;
	uint64_t smaps_rss, smaps_swap;         /* over the writable regions */
	struct pm_rss_domain_vector domains;    /* PM_RSS_OTHER by domain */
	bool glibc, pymalloc, python;   /* which walks contributed */
};

struct pm_error *pm_rss_create(struct pm_target *t, struct pm_residency *res,
			       const struct pm_glibc_fragmentation *glibc,
			       struct pm_rss **ret);
void pm_rss_destroy(struct pm_rss *rss);

#endif
