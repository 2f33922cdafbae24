/* libFuzzer target for the glibc malloc walker: the synthetic heap image
 * with the input's patches (fuzz_heap.h) is walked (arenas, bins, fastbins,
 * tcache, mmapped chunks), every chunk is looked up again, and the glibc
 * reports run. A crash, sanitizer report, leak or hang is a bug; a walk
 * that gives up on a damaged heap with a warning is not. */
#include "fuzz_heap.h"
#include "glibc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void analyse(struct pm_target *t)
{
	const struct pm_glibc_heap *g;
	struct pm_error *err = pm_glibc_walk(t, &g);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	for (size_t i = 0; i < g->nchunks; i++) {
		const struct pm_chunk *c = g->chunks + i;
		const char *kind, *detail;
		if (pm_glibc_chunk_containing(g, c->addr + c->size / 2) == NULL &&
		    c->size > 1)
			__builtin_trap();   /* a listed chunk must be found */
		(void)pm_chunk_state_name(c->state);
		(void)pm_glibc_own_memory_name(g, c->addr, &kind, &detail);
	}
	for (size_t i = 0; i < g->noverheads; i++)
		(void)pm_glibc_overhead_containing(g, g->overheads[i].addr);
	fuzz_heap_report(t, "malloc-stats", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "chunks", PM_FORMAT_JSON);
	fuzz_heap_report(t, "regions", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "fragmentation", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "rss", PM_FORMAT_JSON);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_heap_run(data, size, analyse);
	return 0;
}
