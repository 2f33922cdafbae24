/* libFuzzer target for the CPython object recogniser and the reference
 * graph: the synthetic heap image with the input's patches (fuzz_heap.h;
 * type objects, refcounts, GC links, dict keys tables, list items, the
 * interpreter's modules pointer are among the patched words) is analysed
 * and the reports built on it run: summary (recognition and attribution),
 * objects, graph (references and roots), retained (dominators),
 * unreachable and waste (duplicates, containers, __slots__). A crash, sanitizer report, leak or hang is a bug. */
#include "fuzz_heap.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A report about one object: the list the generator placed, or (when a
 * patch moved things) whatever is there now. */
static void report_at(struct pm_target *t, const char *name, uint64_t addr)
{
	struct pm_report_args args = { .format = PM_FORMAT_TEXT,
				       .address = addr, .has_address = true };
	char *out = NULL;
	pm_error_destroy(pm_report_run(t, name, &args, &out));
	free(out);
}

static void analyse(struct pm_target *t)
{
	uint64_t list = fuzz_heap_image()->list_object;
	fuzz_heap_report(t, "summary", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "objects", PM_FORMAT_JSON);
	fuzz_heap_report(t, "graph", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "retained", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "unreachable", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "fragmentation", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "waste", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "waste", PM_FORMAT_JSON);
	report_at(t, "referents", list);
	report_at(t, "referrers", list);
	report_at(t, "path", list);
	report_at(t, "describe", list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_heap_run(data, size, analyse);
	return 0;
}
