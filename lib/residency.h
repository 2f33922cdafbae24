/* Which bytes of the target are in memory: for a live process, each
 * mapping's Rss and Swap from /proc/PID/smaps and, where /proc/PID/pagemap
 * is readable, which pages are present or swapped out; for a core, the
 * bytes the core holds (a core has no swap, and what it saved stands for
 * what was resident). The rss and fragmentation reports ask it how much of
 * a byte range the kernel would give back or counts. */
#ifndef PM_RESIDENCY_H
#define PM_RESIDENCY_H

#include <stdbool.h>
#include <stdint.h>

#include "target.h"

enum pm_residency_source {
	PM_RESIDENCY_PAGEMAP = 0,   /* live: smaps per mapping, pagemap per page */
	PM_RESIDENCY_SMAPS,         /* live: smaps per mapping only */
	PM_RESIDENCY_CORE,          /* a core: the bytes it saved */
	PM_RESIDENCY_NONE,          /* nothing known (a callback target) */
};

struct pm_residency;

/* Reads smaps (live) at once; pagemap is read per region when first asked.
 * A live process whose smaps cannot be read gives PM_RESIDENCY_NONE and a
 * target warning, not an error. */
struct pm_error *pm_residency_create(struct pm_target *t,
				     struct pm_residency **ret);
void pm_residency_destroy(struct pm_residency *res);

enum pm_residency_source pm_residency_source(const struct pm_residency *res);
/* "pagemap", "smaps", "core", "none". */
const char *pm_residency_source_name(enum pm_residency_source source);
/* Per-byte-range answers are exact (pagemap, core); else only per region. */
bool pm_residency_per_page(const struct pm_residency *res);
uint64_t pm_residency_page_size(const struct pm_residency *res);

/* Region i's resident and swapped bytes: smaps' Rss and Swap (live), the
 * bytes saved (core). False when unknown. */
bool pm_residency_region(const struct pm_residency *res, size_t region,
			 uint64_t *resident, uint64_t *swapped);

/* Bytes of [start, end) on resident pages and on swapped pages: a page
 * partly inside counts with the bytes it has inside, so ranges that tile a
 * region add up to it. Without per-page knowledge both are 0 and the
 * function returns false. Ranges over several regions are fine. */
bool pm_residency_range(struct pm_residency *res, uint64_t start, uint64_t end,
			uint64_t *resident, uint64_t *swapped);

#endif
