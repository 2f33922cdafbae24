/* What the reference graph adds to other reports (report_graph.c). */
#ifndef PM_REPORT_GRAPH_H
#define PM_REPORT_GRAPH_H

#include "pymortem.h"
#include "strbuf.h"
#include "target.h"

/* describe's last part for an address in an object or its buffers: how
 * many references to it were found, and the path that holds it; JSON a
 * "graph" member (null when the address is no object's). */
struct pm_error *pm_graph_describe(struct pm_target *t, uint64_t addr,
				   enum pm_output_format format, struct pm_strbuf *out);

#endif
