/* Which bytes of the target are in memory (residency.h): smaps and pagemap
 * of a live process, the saved bytes of a core. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "residency.h"
#include "smaps.h"

#include "bits.h"

#define AT_PAGESZ_TYPE 6
#define PAGEMAP_PRESENT (UINT64_C(1) << 63)
#define PAGEMAP_SWAPPED (UINT64_C(1) << 62)
#define PAGEMAP_PFN_MASK ((UINT64_C(1) << 55) - 1)
#define PAGEMAP_FILE_OR_SHARED (UINT64_C(1) << 61)
#define PAGEMAP_EXCLUSIVE (UINT64_C(1) << 56)
#define HUGE_ZERO_PAGES 512         /* a 2 MiB huge zero page in 4 KiB pages */
/* Pages read from pagemap per pread: 4 MiB of address space a call. */
#define PAGEMAP_BATCH 1024
/* A region's bitmaps are allocated only up to this many pages (64 GiB):
 * a larger writable mapping is reserved space, and its pages are read in
 * batches without being kept. */
#define PAGES_KEPT_MAX (UINT64_C(1) << 24)

struct region_pages {
	bool loaded, failed;
	uint64_t *present, *swapped;    /* bit per page of the region */
};

struct pm_residency {
	struct pm_target *t;
	enum pm_residency_source source;
	uint64_t page;
	size_t nregions;
	uint64_t *rss, *swap;           /* per region (smaps) */
	bool *known;                    /* per region: smaps had it */
	struct region_pages *pages;     /* per region (pagemap) */
	int pagemap_fd;
	/* The kernel's shared zero pages: a read of never-written anonymous
	 * memory (ours included: reading the target faults pages in) maps
	 * them, pagemap calls them present, but Rss does not count them and
	 * MADV_DONTNEED frees nothing. Known by PFN when pagemap shows PFNs
	 * (CAP_SYS_ADMIN). Without PFNs a zero page looks like a page shared
	 * after a fork: in a region where smaps' Rss leaves out exactly the
	 * pages mapped more than once, they are zero pages (load_pages);
	 * elsewhere they count as resident (a warning says so). */
	bool pfns_visible;
	uint64_t zero_pfn, huge_zero_pfn;   /* 0: not found */
};

const char *pm_residency_source_name(enum pm_residency_source source)
{
	switch (source) {
	case PM_RESIDENCY_PAGEMAP: return "pagemap";
	case PM_RESIDENCY_SMAPS: return "smaps";
	case PM_RESIDENCY_CORE: return "core";
	default: return "none";
	}
}

enum pm_residency_source pm_residency_source(const struct pm_residency *res)
{
	return res->source;
}

bool pm_residency_per_page(const struct pm_residency *res)
{
	return res->source == PM_RESIDENCY_PAGEMAP || res->source == PM_RESIDENCY_CORE;
}

uint64_t pm_residency_page_size(const struct pm_residency *res)
{
	return res->page;
}

/* The region starting exactly at start, or nregions. */
static size_t region_starting(struct pm_target *t, size_t n, uint64_t start)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t s = pm_target_region(t, mid)->start;
		if (s == start)
			return mid;
		if (s < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n;
}

static bool smaps_mapping(void *ctx, const struct pm_smaps_mapping *m)
{
	struct pm_residency *res = ctx;
	size_t i = region_starting(res->t, res->nregions, m->start);
	if (i < res->nregions) {
		res->known[i] = true;
		res->rss[i] = m->rss;
		res->swap[i] = m->swap;
	}
	return true;
}

/* Rss and Swap of every mapping. The process is frozen, so smaps lists
 * the same mappings the target read from maps. */
static bool read_smaps(struct pm_residency *res)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pm_target_pid(res->t));
	FILE *f = fopen(path, "re");
	if (!f) {
		pm_target_warn(res->t, false, 0, "%s: %s: resident bytes unknown",
			       path, strerror(errno));
		return false;
	}
	bool ok = pm_smaps_parse(f, smaps_mapping, res);
	fclose(f);
	if (!ok)
		pm_target_warn(res->t, false, 0, "%s: not read to its end: resident bytes unknown",
			       path);
	return ok;
}

/* The PFN of this process's page at addr, 0 when hidden or absent. */
static uint64_t own_pfn(int fd, uint64_t addr, uint64_t page)
{
	uint64_t entry = 0;
	if (pread(fd, &entry, 8, (off_t)(addr / page * 8)) != 8 ||
	    !(entry & PAGEMAP_PRESENT))
		return 0;
	return entry & PAGEMAP_PFN_MASK;
}

/* Finds the zero pages' PFNs by reading fresh anonymous memory of our own. */
static void find_zero_pfns(struct pm_residency *res)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size_t huge = (size_t)HUGE_ZERO_PAGES * res->page;
	uint8_t *map = mmap(NULL, 2 * huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		close(fd);
		return;
	}
	volatile const uint8_t *small = map;
	(void)*small;
	res->zero_pfn = own_pfn(fd, (uint64_t)(uintptr_t)small, res->page);
	uint64_t aligned = ((uint64_t)(uintptr_t)map + huge - 1) & ~(uint64_t)(huge - 1);
	if (aligned != (uint64_t)(uintptr_t)map) {
		madvise((void *)(uintptr_t)aligned, huge, MADV_HUGEPAGE);
		(void)*(volatile const uint8_t *)(uintptr_t)aligned;
		uint64_t pfn = own_pfn(fd, aligned, res->page);
		if (pfn && pfn != res->zero_pfn &&
		    own_pfn(fd, aligned + res->page, res->page) == pfn + 1)
			res->huge_zero_pfn = pfn;
	}
	res->pfns_visible = res->zero_pfn != 0;
	munmap(map, 2 * huge);
	close(fd);
}

static bool is_zero_page(const struct pm_residency *res, uint64_t entry)
{
	if (!res->pfns_visible)
		return false;
	uint64_t pfn = entry & PAGEMAP_PFN_MASK;
	return pfn == res->zero_pfn ||
	       (res->huge_zero_pfn && pfn >= res->huge_zero_pfn &&
		pfn < res->huge_zero_pfn + HUGE_ZERO_PAGES);
}

static bool bit(const uint64_t *bits, uint64_t k)
{
	return (bits[k / 64] >> (k % 64)) & 1;
}

/* Reads region i's page flags from pagemap into its bitmaps. */
static bool load_pages(struct pm_residency *res, size_t i)
{
	struct region_pages *rp = &res->pages[i];
	if (rp->loaded || rp->failed)
		return rp->loaded;
	const struct pm_region *r = pm_target_region(res->t, i);
	uint64_t first = r->start / res->page;
	uint64_t npages = (r->end - r->start + res->page - 1) / res->page;
	if (npages > PAGES_KEPT_MAX) {
		rp->failed = true;
		pm_target_warn(res->t, true, r->start,
			       "mapping of %" PRIu64 " pages: too large for per-page residency",
			       npages);
		return false;
	}
	size_t words = (size_t)(npages + 63) / 64;
	rp->present = calloc(words ? words : 1, sizeof(uint64_t));
	rp->swapped = calloc(words ? words : 1, sizeof(uint64_t));
	if (!rp->present || !rp->swapped) {
		rp->failed = true;
		return false;
	}
	/* Without PFNs: the present anonymous pages mapped more than once
	 * (zero pages, or pages shared after a fork), to drop if smaps says
	 * that is exactly what it does not count. */
	uint64_t *shared = res->pfns_visible ? NULL : calloc(words ? words : 1,
							     sizeof(uint64_t));
	uint64_t present = 0, nshared = 0;
	uint64_t buf[PAGEMAP_BATCH];
	for (uint64_t k = 0; k < npages;) {
		uint64_t want = npages - k < PAGEMAP_BATCH ? npages - k : PAGEMAP_BATCH;
		ssize_t got = pread(res->pagemap_fd, buf, want * 8,
				    (off_t)((first + k) * 8));
		if (got <= 0 || got % 8) {
			free(shared);
			rp->failed = true;
			pm_target_warn(res->t, true, r->start,
				       "pagemap unreadable: %s", got < 0 ?
				       strerror(errno) : "short read");
			return false;
		}
		for (uint64_t j = 0; j < (uint64_t)got / 8; j++, k++) {
			if ((buf[j] & PAGEMAP_PRESENT) && is_zero_page(res, buf[j]))
				continue;
			if (buf[j] & PAGEMAP_PRESENT) {
				rp->present[k / 64] |= UINT64_C(1) << (k % 64);
				present++;
				if (shared && !(buf[j] & (PAGEMAP_EXCLUSIVE |
							   PAGEMAP_FILE_OR_SHARED))) {
					shared[k / 64] |= UINT64_C(1) << (k % 64);
					nshared++;
				}
			} else if (buf[j] & PAGEMAP_SWAPPED) {
				rp->swapped[k / 64] |= UINT64_C(1) << (k % 64);
			}
		}
	}
	/* Non-present entries pagemap marks as swap but smaps does not count
	 * (migration entries, pte markers) are not in swap: with smaps' Swap
	 * at 0 no page of the region is. */
	if (res->known[i] && res->swap[i] == 0)
		memset(rp->swapped, 0, words * sizeof(uint64_t));
	/* smaps' Rss leaves out exactly the shared ones: they are zero pages. */
	if (shared && nshared && res->known[i] &&
	    (present - nshared) * res->page == res->rss[i])
		for (size_t w = 0; w < words; w++)
			rp->present[w] &= ~shared[w];
	free(shared);
	rp->loaded = true;
	return true;
}

/* Without PFNs, a writable region whose pagemap and smaps still disagree
 * holds both zero pages and pages shared after a fork: there its zero
 * pages count as resident. Said once. */
static void warn_zero_pages(struct pm_residency *res)
{
	uint64_t differing = 0;
	for (size_t i = 0; i < res->nregions; i++) {
		const struct pm_region *r = pm_target_region(res->t, i);
		const struct region_pages *rp = &res->pages[i];
		if (!(r->perms & PM_PERM_W) || !rp->loaded || !res->known[i])
			continue;
		uint64_t present = 0;
		size_t words = (size_t)((r->end - r->start) / res->page + 63) / 64;
		for (size_t w = 0; w < words; w++)
			present += pm_popcount64(rp->present[w]);
		if (present * res->page != res->rss[i])
			differing++;
	}
	if (differing)
		pm_target_warn(res->t, false, 0,
			       "pagemap shows no page frame numbers (not root) and %" PRIu64 " writable mappings hold both pages shared after a fork and the kernel's zero pages: there, zero pages count as resident (smaps does not count them)",
			       differing);
}

struct pm_error *pm_residency_create(struct pm_target *t,
				     struct pm_residency **ret)
{
	struct pm_residency *res = calloc(1, sizeof(*res));
	if (!res)
		return &pm_error_no_memory;
	res->t = t;
	res->pagemap_fd = -1;
	res->nregions = pm_target_region_count(t);
	uint64_t page = 0;
	res->page = pm_target_auxv(t, AT_PAGESZ_TYPE, &page) && page >= 4096 &&
		    !(page & (page - 1)) ? page : 4096;
	size_t n = res->nregions ? res->nregions : 1;
	res->rss = calloc(n, sizeof(*res->rss));
	res->swap = calloc(n, sizeof(*res->swap));
	res->known = calloc(n, sizeof(*res->known));
	res->pages = calloc(n, sizeof(*res->pages));
	if (!res->rss || !res->swap || !res->known || !res->pages) {
		pm_residency_destroy(res);
		return &pm_error_no_memory;
	}
	const char *kind = pm_target_kind(t);
	if (!strcmp(kind, "core")) {
		res->source = PM_RESIDENCY_CORE;
		for (size_t i = 0; i < res->nregions; i++) {
			const struct pm_region *r = pm_target_region(t, i);
			uint64_t size = r->end - r->start;
			res->rss[i] = r->saved < size ? r->saved : size;
			res->known[i] = true;
		}
	} else if (!strcmp(kind, "live") && read_smaps(res)) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pm_target_pid(t));
		res->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
		res->source = res->pagemap_fd >= 0 ? PM_RESIDENCY_PAGEMAP :
			      PM_RESIDENCY_SMAPS;
		if (res->pagemap_fd >= 0)
			find_zero_pfns(res);
		if (res->pagemap_fd < 0)
			pm_target_warn(t, false, 0, "%s: %s: which free pages are resident is unknown",
				       path, strerror(errno));
		/* All or nothing for the writable regions, so that no answer
		 * given is per page and a later one not. */
		for (size_t i = 0; res->pagemap_fd >= 0 && i < res->nregions; i++)
			if ((pm_target_region(t, i)->perms & PM_PERM_W) &&
			    !load_pages(res, i))
				res->source = PM_RESIDENCY_SMAPS;
		if (res->source == PM_RESIDENCY_PAGEMAP && !res->pfns_visible)
			warn_zero_pages(res);
	} else {
		res->source = PM_RESIDENCY_NONE;
	}
	*ret = res;
	return NULL;
}

void pm_residency_destroy(struct pm_residency *res)
{
	if (!res)
		return;
	for (size_t i = 0; res->pages && i < res->nregions; i++) {
		free(res->pages[i].present);
		free(res->pages[i].swapped);
	}
	if (res->pagemap_fd >= 0)
		close(res->pagemap_fd);
	free(res->pages);
	free(res->known);
	free(res->rss);
	free(res->swap);
	free(res);
}

bool pm_residency_region(const struct pm_residency *res, size_t region,
			 uint64_t *resident, uint64_t *swapped)
{
	*resident = *swapped = 0;
	if (region >= res->nregions || !res->known[region] ||
	    res->source == PM_RESIDENCY_NONE)
		return false;
	*resident = res->rss[region];
	*swapped = res->swap[region];
	return true;
}

/* The index of the region holding addr, or nregions. */
static size_t region_index(struct pm_residency *res, uint64_t addr)
{
	struct pm_region *r = pm_target_find_region(res->t, addr);
	return r ? (size_t)(r - pm_target_region(res->t, 0)) : res->nregions;
}

/* [start, end) inside region i. */
static void range_in_region(struct pm_residency *res, size_t i, uint64_t start,
			    uint64_t end, uint64_t *resident, uint64_t *swapped)
{
	const struct pm_region *r = pm_target_region(res->t, i);
	if (res->source == PM_RESIDENCY_CORE) {
		uint64_t saved_end = r->start + res->rss[i];
		if (saved_end > start)
			*resident += (end < saved_end ? end : saved_end) - start;
		return;
	}
	if (!load_pages(res, i))
		return;
	const struct region_pages *rp = &res->pages[i];
	for (uint64_t a = start; a < end;) {
		uint64_t k = (a - r->start) / res->page;
		uint64_t page_end = r->start + (k + 1) * res->page;
		uint64_t upto = page_end < end ? page_end : end;
		if (bit(rp->present, k))
			*resident += upto - a;
		else if (bit(rp->swapped, k))
			*swapped += upto - a;
		a = upto;
	}
}

bool pm_residency_range(struct pm_residency *res, uint64_t start, uint64_t end,
			uint64_t *resident, uint64_t *swapped)
{
	*resident = *swapped = 0;
	if (!pm_residency_per_page(res))
		return false;
	/* Bounded: each step moves past one region. */
	for (uint64_t a = start; a < end;) {
		size_t i = region_index(res, a);
		if (i >= res->nregions) {
			/* Not mapped: skip to the next region. */
			size_t k = 0;
			while (k < res->nregions && pm_target_region(res->t, k)->end <= a)
				k++;
			if (k >= res->nregions)
				break;
			a = pm_target_region(res->t, k)->start;
			continue;
		}
		uint64_t region_end = pm_target_region(res->t, i)->end;
		uint64_t upto = region_end < end ? region_end : end;
		range_in_region(res, i, a, upto, resident, swapped);
		a = upto;
	}
	return true;
}
