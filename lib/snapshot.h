/* Snapshots for `diff`: what one analysis of a target found, kept in
 * memory or in a file, so that a later state of the same process (or
 * another process) can be compared with it. A snapshot holds the summary's
 * rows by type and by owner, every in-use allocation's address, size and
 * category, and who the process was (its pid and the 16 random bytes the
 * kernel gave it at exec, AT_RANDOM: two snapshots with equal ones are of
 * the same process, so their addresses can be compared). */
#ifndef PM_SNAPSHOT_H
#define PM_SNAPSHOT_H

#include "pymortem.h"
#include "vector.h"

/* The file starts with this (8 bytes), then a version word. */
#define PM_SNAPSHOT_MAGIC "PMSNAP\r\n"
enum { PM_SNAPSHOT_VERSION = 2 };  /* 2: rows by retainer, when taken */

struct pm_snapshot_row {
	char *domain, *kind, *detail;
	uint64_t count, bytes;
};
PM_DEFINE_VECTOR(pm_snapshot_row_vector, struct pm_snapshot_row)

struct pm_snapshot_category {
	char *domain, *kind, *detail;
};
PM_DEFINE_VECTOR(pm_snapshot_category_vector, struct pm_snapshot_category)

struct pm_snapshot {
	char *source;               /* "pid 123", "core FILE", the file it came from */
	char *python;               /* "3.11.2", or "" when no CPython was found */
	int64_t pid;                /* 0: unknown */
	bool has_identity;
	uint8_t identity[16];       /* the bytes at AT_RANDOM */
	struct pm_snapshot_row_vector by_type, by_owner;
	bool has_retainers;         /* by_retainer holds summary --by retainer */
	struct pm_snapshot_row_vector by_retainer;
	struct pm_snapshot_category_vector categories;
	/* In-use allocations sorted by address: user-data address, what the
	 * allocation occupies, its index in categories, and where in it a
	 * recognised object starts (its GC head, pre-header, debug header
	 * come first; 0 for the rest). */
	size_t nallocs;
	uint64_t *addr, *size;
	uint32_t *category;
	uint8_t *object_offset;
};

#endif
