/* libFuzzer target for the pymalloc walker: the synthetic heap image with
 * the input's patches (fuzz_heap.h; the arena vector, pool headers, free
 * block chains and obmalloc's variables are among the patched words) is
 * walked, every used block is looked up again, and pymalloc-stats and
 * sizes run. A crash, sanitizer report, leak or hang is a bug. */
#include "fuzz_heap.h"
#include "pymalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void analyse(struct pm_target *t)
{
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_pymalloc_walk(t, &pm);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	for (size_t i = 0; i < pm->npools; i++) {
		const struct pm_pymalloc_pool *pool = &pm->pools[i];
		uint32_t size = pm_pymalloc_block_size(pool->szidx), used = 0;
		for (uint32_t k = 0; k < pool->nblocks; k++) {
			if (!pm_pymalloc_block_used(pm, pool, k))
				continue;
			used++;
			uint64_t block = pool->address + PM_PYMALLOC_POOL_OVERHEAD +
					 (uint64_t)k * size;
			if (pm_pymalloc_find_pool(pm, block) == NULL)
				__builtin_trap();   /* a walked pool must be found */
		}
		if (used != pool->nused)
			__builtin_trap();
	}
	fuzz_heap_report(t, "pymalloc-stats", PM_FORMAT_TEXT);
	fuzz_heap_report(t, "sizes", PM_FORMAT_JSON);
	fuzz_heap_report(t, "fragmentation", PM_FORMAT_JSON);
	fuzz_heap_report(t, "rss", PM_FORMAT_TEXT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_heap_run(data, size, analyse);
	return 0;
}
