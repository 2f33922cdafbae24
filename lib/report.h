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

/* Marks a total as partial, for the reports that give one: appends
 * "  partial: <figures>" to the last line of out (the total's), or in JSON
 * writes the figures as a string (null when complete). */
void pm_report_mark_total_partial(struct pm_target *t, struct pm_strbuf *out);
void pm_report_partial_figure_json(struct pm_target *t, struct pm_strbuf *out);
/* When another allocator holds memory no walker reads: says first how much
 * of the process's writable memory this report does not account for
 * (writable regions' total minus `attributed`, the report's total). */
struct pm_error *pm_report_note_unaccounted(struct pm_target *t,
					    uint64_t attributed);

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
/* report_rss.c */
pm_report_fn pm_report_rss;
pm_report_fn pm_report_fragmentation;
/* report_waste.c */
pm_report_fn pm_report_waste;

#endif
