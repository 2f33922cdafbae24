/* What retained sizes add to other reports (report_retained.c). */
#ifndef PM_REPORT_RETAINED_H
#define PM_REPORT_RETAINED_H

#include <stdbool.h>
#include <stdint.h>

#include "target.h"

/* Takes one summary row; false when memory ran out. */
typedef bool pm_row_sink(void *arg, const char *domain, const char *kind,
			 const char *detail, uint64_t count, uint64_t bytes);

/* summary --by retainer: every allocation in one row, under the object
 * that retains it (the first below the interpreter's namespaces), named by
 * its path; allocations of no object in their categories' rows. */
struct pm_error *pm_retainer_rows(struct pm_target *t, pm_row_sink *sink, void *arg);

/* summary's leak suspects (over the default share) after its table: text
 * lines, or JSON `, "suspects": [...]`; without a graph, a line (member)
 * that says why. */
struct pm_error *pm_summary_suspects(struct pm_target *t, bool json, struct pm_strbuf *out);

#endif
