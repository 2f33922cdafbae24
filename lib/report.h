/* The report registry: each report is a function that appends text or JSON
 * for a target to a strbuf. Reports live in report_*.c next to their layer's
 * data; report.c maps names to functions and adds the warnings section. */
#ifndef PM_REPORT_H
#define PM_REPORT_H

#include "pymortem.h"
#include "strbuf.h"
#include "target.h"

typedef struct pm_error *pm_report_fn(struct pm_target *t,
				      const struct pm_report_args *args,
				      struct pm_strbuf *out);

/* report_target.c */
pm_report_fn pm_report_regions;
pm_report_fn pm_report_info;
pm_report_fn pm_report_digest;

/* report_glibc.c */
pm_report_fn pm_report_malloc_stats;
pm_report_fn pm_report_chunks;
pm_report_fn pm_report_sizes;
/* report_python.c */
pm_report_fn pm_report_pymalloc_stats;
pm_report_fn pm_report_summary;
pm_report_fn pm_report_objects;
/* report_allocs.c */
pm_report_fn pm_report_allocations;
pm_report_fn pm_report_select;
pm_report_fn pm_report_describe;
pm_report_fn pm_report_hexdump;
/* report_graph.c */
pm_report_fn pm_report_referents;
pm_report_fn pm_report_referrers;
pm_report_fn pm_report_path;
pm_report_fn pm_report_unreachable;
pm_report_fn pm_report_outside;
pm_report_fn pm_report_graph;
/* report_retained.c */
pm_report_fn pm_report_retained;
pm_report_fn pm_report_suspects;

#endif
