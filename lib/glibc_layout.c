/* Per-version layouts of glibc malloc's structures (x86-64), one row per
 * range of versions whose layouts agree. Facts from malloc.c/arena.c at the
 * release tags, checked with gdb on 2.36 (see shared/reference). */
#include "glibc_internal.h"

#include <stddef.h>

static const struct pm_glibc_layout layouts[] = {
	{	/* tcache counts are chars; no safe-linking */
		.min_minor = 27, .max_minor = 29,
		.ms_flags = 4, .ms_fastbins = 0x10, .ms_top = 0x60,
		.ms_bins = 0x70, .ms_next = 0x870, .ms_system_mem = 0x888,
		.ms_size = 0x898,
		.mp_mmap_threshold = 0x10, .mp_n_mmaps = 0x28,
		.mp_n_mmaps_max = 0x2c, .mp_max_n_mmaps = 0x30,
		.mp_mmapped_mem = 0x38, .mp_sbrk_base = 0x48,
		.mp_tcache_bins = 0x50, .mp_hp_pagesize = 0, .mp_size = 0x70,
		.hi_ar_ptr = 0, .hi_prev = 8, .hi_size = 0x10, .hi_sizeof = 0x20,
		.tc_bins = 64, .tc_count_width = 1, .tc_entries = 0x40,
		.tc_chunk_size = 0x250, .tc_counts_down = false,
		.safe_linking = false,
	},
	{	/* uint16_t tcache counts */
		.min_minor = 30, .max_minor = 31,
		.ms_flags = 4, .ms_fastbins = 0x10, .ms_top = 0x60,
		.ms_bins = 0x70, .ms_next = 0x870, .ms_system_mem = 0x888,
		.ms_size = 0x898,
		.mp_mmap_threshold = 0x10, .mp_n_mmaps = 0x28,
		.mp_n_mmaps_max = 0x2c, .mp_max_n_mmaps = 0x30,
		.mp_mmapped_mem = 0x38, .mp_sbrk_base = 0x48,
		.mp_tcache_bins = 0x50, .mp_hp_pagesize = 0, .mp_size = 0x70,
		.hi_ar_ptr = 0, .hi_prev = 8, .hi_size = 0x10, .hi_sizeof = 0x20,
		.tc_bins = 64, .tc_count_width = 2, .tc_entries = 0x80,
		.tc_chunk_size = 0x290, .tc_counts_down = false,
		.safe_linking = false,
	},
	{	/* safe-linking */
		.min_minor = 32, .max_minor = 34,
		.ms_flags = 4, .ms_fastbins = 0x10, .ms_top = 0x60,
		.ms_bins = 0x70, .ms_next = 0x870, .ms_system_mem = 0x888,
		.ms_size = 0x898,
		.mp_mmap_threshold = 0x10, .mp_n_mmaps = 0x28,
		.mp_n_mmaps_max = 0x2c, .mp_max_n_mmaps = 0x30,
		.mp_mmapped_mem = 0x38, .mp_sbrk_base = 0x48,
		.mp_tcache_bins = 0x50, .mp_hp_pagesize = 0, .mp_size = 0x70,
		.hi_ar_ptr = 0, .hi_prev = 8, .hi_size = 0x10, .hi_sizeof = 0x20,
		.tc_bins = 64, .tc_count_width = 2, .tc_entries = 0x80,
		.tc_chunk_size = 0x290, .tc_counts_down = false,
		.safe_linking = true,
	},
	{	/* huge page fields in mp_ and heap_info */
		.min_minor = 35, .max_minor = 41,
		.ms_flags = 4, .ms_fastbins = 0x10, .ms_top = 0x60,
		.ms_bins = 0x70, .ms_next = 0x870, .ms_system_mem = 0x888,
		.ms_size = 0x898,
		.mp_mmap_threshold = 0x10, .mp_n_mmaps = 0x3c,
		.mp_n_mmaps_max = 0x40, .mp_max_n_mmaps = 0x44,
		.mp_mmapped_mem = 0x50, .mp_sbrk_base = 0x60,
		.mp_tcache_bins = 0x68, .mp_hp_pagesize = 0x30, .mp_size = 0x88,
		.hi_ar_ptr = 0, .hi_prev = 8, .hi_size = 0x10, .hi_sizeof = 0x30,
		.tc_bins = 64, .tc_count_width = 2, .tc_entries = 0x80,
		.tc_chunk_size = 0x290, .tc_counts_down = false,
		.safe_linking = true,
	},
	{	/* tcache num_slots[76], counting down */
		.min_minor = 42, .max_minor = 42,
		.ms_flags = 4, .ms_fastbins = 0x10, .ms_top = 0x60,
		.ms_bins = 0x70, .ms_next = 0x870, .ms_system_mem = 0x888,
		.ms_size = 0x898,
		.mp_mmap_threshold = 0x10, .mp_n_mmaps = 0x3c,
		.mp_n_mmaps_max = 0x40, .mp_max_n_mmaps = 0x44,
		.mp_mmapped_mem = 0x50, .mp_sbrk_base = 0x60,
		.mp_tcache_bins = 0x68, .mp_hp_pagesize = 0x30, .mp_size = 0x88,
		.hi_ar_ptr = 0, .hi_prev = 8, .hi_size = 0x10, .hi_sizeof = 0x30,
		.tc_bins = 76, .tc_count_width = 2, .tc_entries = 0x98,
		.tc_chunk_size = 0x300, .tc_counts_down = true,
		.safe_linking = true,
	},
	{	/* no fastbins (malloc_state starts its top at 8); mp_ gains
		 * thp_mode. Checked with gdb on Debian's 2.43-7 and libc6-dbg. */
		.min_minor = 43, .max_minor = 43,
		.ms_flags = 4, .ms_fastbins = 0, .ms_top = 0x08,
		.ms_bins = 0x18, .ms_next = 0x818, .ms_system_mem = 0x830,
		.ms_size = 0x840,
		.mp_mmap_threshold = 0x10, .mp_n_mmaps = 0x44,
		.mp_n_mmaps_max = 0x48, .mp_max_n_mmaps = 0x4c,
		.mp_mmapped_mem = 0x58, .mp_sbrk_base = 0x68,
		.mp_tcache_bins = 0x70, .mp_hp_pagesize = 0x38, .mp_size = 0x90,
		.hi_ar_ptr = 0, .hi_prev = 8, .hi_size = 0x10, .hi_sizeof = 0x30,
		.tc_bins = 76, .tc_count_width = 2, .tc_entries = 0x98,
		.tc_chunk_size = 0x300, .tc_counts_down = true,
		.safe_linking = true, .mmap_tail = 16,
	},
};

const struct pm_glibc_layout *pm_glibc_layout_find(int major, int minor)
{
	if (major != 2)
		return NULL;
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
		if (minor >= layouts[i].min_minor &&
		    minor <= layouts[i].max_minor)
			return &layouts[i];
	}
	return NULL;
}

const char *pm_glibc_supported_range(void)
{
	return "2.27 to 2.43";
}
