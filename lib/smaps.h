/* /proc/PID/smaps, read once for the facts several parts need per mapping:
 * its resident and swapped bytes (residency.c) and whether it holds guard
 * regions (source_live.c). */
#ifndef PYMORTEM_SMAPS_H
#define PYMORTEM_SMAPS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct pm_smaps_mapping {
	uint64_t start, end;
	uint64_t rss, swap;             /* bytes */
	bool guard_regions;             /* VmFlags "gu" (MADV_GUARD_INSTALL) */
};

/* Calls fn for each mapping of the smaps text in f, once all its fields
 * are read, in the file's (address) order; stops early when fn returns
 * false. Lines are read whole, however long a mapping's path. False when
 * reading failed (out of memory, a read error). */
bool pm_smaps_parse(FILE *f,
		    bool (*fn)(void *ctx, const struct pm_smaps_mapping *m),
		    void *ctx);

#endif
