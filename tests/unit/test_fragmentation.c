/* The rss and fragmentation analyses (residency.c, fragmentation.c, rss.c)
 * on the synthetic heap of synth_heap.c opened as a core: free memory by
 * bin class as the generator placed it, the parts of every writable region
 * adding up to it, a core's residency being its saved bytes; then the
 * same image with generated words corrupted, one at a time: the reports
 * end with text or one error, never a crash (ASan/UBSan builds check the
 * rest). The malloc_trim simulation itself is checked against glibc in
 * tests/e2e/test_rss.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fragmentation.h"
#include "pymortem.h"
#include "residency.h"
#include "target.h"
#include "rss.h"
#include "synth_heap.h"

static size_t chunks_in_state(const struct pm_glibc_heap *g, enum pm_chunk_state s,
			      uint64_t *bytes)
{
	size_t n = 0;
	*bytes = 0;
	for (size_t i = 0; i < g->nchunks; i++)
		if (g->chunks[i].state == s) {
			n++;
			*bytes += g->chunks[i].size;
		}
	return n;
}

static void test_glibc_classes(struct pm_target *t, struct pm_residency *res,
			       const struct synth_heap *h,
			       struct pm_glibc_fragmentation **ret)
{
	struct pm_glibc_fragmentation *f = NULL;
	struct pm_error *err = pm_glibc_fragmentation_create(t, res, &f);
	CHECK(!err && f, "glibc fragmentation (%s)", err ? err->message : "ok");
	pm_error_destroy(err);
	*ret = f;
	if (!f)
		return;
	const struct pm_glibc_heap *g = f->heap;
	CHECK(f->arenas.size == h->expect.arenas_glibc, "%zu arenas (expected %zu)",
	      f->arenas.size, h->expect.arenas_glibc);
	uint64_t trim_threshold = 1, top_pad = 1;
	pm_error_destroy(pm_target_read_u64(t, h->mp, &trim_threshold));
	pm_error_destroy(pm_target_read_u64(t, h->mp + 8, &top_pad));
	CHECK(f->mp_known && f->trim_threshold == trim_threshold && f->top_pad == top_pad,
	      "mp_ tunables read: trim_threshold %llu, top_pad %llu",
	      (unsigned long long)f->trim_threshold, (unsigned long long)f->top_pad);
	uint64_t fast = 0, tcache = 0, bins = 0, top = 0, b;
	for (size_t i = 0; i < f->arenas.size; i++) {
		const struct pm_trim_arena *a = &f->arenas.data[i];
		fast += a->free_by_class[PM_FREE_FASTBIN].bytes;
		tcache += a->free_by_class[PM_FREE_TCACHE].bytes;
		bins += a->free_by_class[PM_FREE_UNSORTED].bytes +
			a->free_by_class[PM_FREE_SMALL].bytes +
			a->free_by_class[PM_FREE_LARGE].bytes;
		top += a->free_by_class[PM_FREE_TOP].bytes;
		/* a core saved every byte here: resident = bytes */
		CHECK(a->free_by_class[PM_FREE_TOP].resident == a->free_by_class[PM_FREE_TOP].bytes,
		      "arena %zu: a core's bytes count as resident", i);
	}
	size_t n = chunks_in_state(g, PM_CHUNK_FREE_FASTBIN, &b);
	CHECK(n == h->expect.fastbin_chunks && fast == b && fast > 0,
	      "fastbin bytes %llu = the walk's", (unsigned long long)fast);
	chunks_in_state(g, PM_CHUNK_FREE_TCACHE, &b);
	CHECK(tcache == b && tcache > 0, "tcache bytes %llu", (unsigned long long)tcache);
	chunks_in_state(g, PM_CHUNK_FREE_BIN, &b);
	CHECK(bins == b && bins > 0, "bin bytes %llu", (unsigned long long)bins);
	uint64_t unsorted = 0;
	for (size_t i = 0; i < f->arenas.size; i++)
		unsorted += f->arenas.data[i].free_by_class[PM_FREE_UNSORTED].bytes;
	CHECK(unsorted > 0, "the unsorted bin's chunk is told from the sorted bins");
	chunks_in_state(g, PM_CHUNK_TOP, &b);
	CHECK(top == b, "top bytes");
	CHECK(f->mmapped_chunks == h->expect.mmapped_chunks &&
	      f->mmapped.bytes == h->expect.mmapped_size, "mmapped chunks");
	uint64_t sum = 0;
	for (size_t i = 0; i < f->arenas.size; i++)
		sum += f->arenas.data[i].madvise.resident + f->arenas.data[i].systrim.resident;
	CHECK(sum == f->trim_returns, "per-arena predictions add up");
}

static void test_rss_adds_up(struct pm_target *t, struct pm_residency *res,
			     const struct pm_glibc_fragmentation *f)
{
	struct pm_rss *rss = NULL;
	struct pm_error *err = pm_rss_create(t, res, f, &rss);
	CHECK(!err && rss, "rss (%s)", err ? err->message : "ok");
	pm_error_destroy(err);
	if (!rss)
		return;
	CHECK(rss->source == PM_RESIDENCY_CORE && rss->per_page, "residency from the core");
	bool regions_ok = true;
	for (size_t k = 0; k < rss->regions.size; k++) {
		const struct pm_rss_region *rr = &rss->regions.data[k];
		struct pm_resident_bytes sum = {0};
		for (size_t p = 0; p < PM_RSS_PARTS; p++) {
			sum.bytes += rr->parts[p].bytes;
			sum.resident += rr->parts[p].resident;
			if (rr->parts[p].resident > rr->parts[p].bytes)
				regions_ok = false;
		}
		if (sum.bytes != rr->total.bytes || sum.resident != rr->total.resident)
			regions_ok = false;
	}
	CHECK(regions_ok && rss->regions.size > 0,
	      "every writable region's parts add up to it (%zu regions)", rss->regions.size);
	uint64_t glibc_free = 0;
	for (size_t c = PM_FREE_FASTBIN; c < PM_FREE_CLASSES; c++)
		glibc_free += rss->parts[PM_RSS_GLIBC_FREE + c].bytes;
	CHECK(glibc_free == f->heap->total.fordblks,
	      "glibc free parts %llu = fordblks %llu", (unsigned long long)glibc_free,
	      (unsigned long long)f->heap->total.fordblks);
	CHECK(rss->parts[PM_RSS_PYTHON].bytes > 0 && rss->parts[PM_RSS_POOL_HEADERS].bytes > 0,
	      "python objects and pool headers found");
	pm_rss_destroy(rss);
}

static void test_pymalloc(struct pm_target *t, struct pm_residency *res,
			  const struct synth_heap *h)
{
	struct pm_pymalloc_fragmentation *p = NULL;
	struct pm_error *err = pm_pymalloc_fragmentation_create(t, res, &p);
	CHECK(!err && p, "pymalloc fragmentation (%s)", err ? err->message : "ok");
	pm_error_destroy(err);
	if (!p)
		return;
	CHECK(p->arenas.size == h->expect.arenas, "%zu pymalloc arenas", p->arenas.size);
	uint64_t used = 0, empty = 0;
	for (size_t i = 0; i < p->arenas.size; i++) {
		used += p->arenas.data[i].used_pools;
		empty += p->arenas.data[i].empty_pools;
	}
	CHECK(used == h->expect.pools && empty == h->expect.empty_pools,
	      "pools: %llu used, %llu empty", (unsigned long long)used,
	      (unsigned long long)empty);
	uint64_t blocks_in_pinned = 0;
	for (size_t i = 0; i < p->arenas.size; i++)
		if (p->arenas.data[i].pinned)
			blocks_in_pinned += p->arenas.data[i].used_blocks;
	CHECK(blocks_in_pinned == p->blocks.size && p->pinned_blocks == p->blocks.size,
	      "every block of a pinned arena is listed (%zu)", p->blocks.size);
	pm_pymalloc_fragmentation_destroy(p);
}

static void run_reports(struct pm_target *t, const char *what)
{
	static const char *const names[] = {"rss", "fragmentation"};
	for (size_t i = 0; i < 2; i++)
		for (int json = 0; json < 2; json++) {
			struct pm_report_args args = {.format = json ? PM_FORMAT_JSON : PM_FORMAT_TEXT};
			char *out = NULL;
			struct pm_error *err = pm_report_run(t, names[i], &args, &out);
			CHECK((!err && out) || (err && err->message[0]),
			      "%s: %s%s ends with text or one error", what, names[i],
			      json ? " --json" : "");
			pm_error_destroy(err);
			free(out);
		}
}

static struct pm_target *open_image(const uint8_t *bytes, size_t len, int *fd)
{
	*fd = synth_heap_memfd(bytes, len);
	struct pm_target *t = NULL;
	struct pm_error *err = *fd >= 0 ? synth_heap_open_fd(*fd, &t) : NULL;
	pm_error_destroy(err);
	return t;
}

int main(void)
{
	struct synth_heap *h = synth_heap_create();
	int fd;
	struct pm_target *t = open_image(h->core, h->len, &fd);
	CHECK(t != NULL, "synthetic heap core opens");
	if (t) {
		struct pm_residency *res = NULL;
		struct pm_error *err = pm_residency_create(t, &res);
		CHECK(!err && res && pm_residency_source(res) == PM_RESIDENCY_CORE,
		      "a core's residency");
		pm_error_destroy(err);
		if (res) {
			struct pm_glibc_fragmentation *f = NULL;
			test_glibc_classes(t, res, h, &f);
			if (f)
				test_rss_adds_up(t, res, f);
			test_pymalloc(t, res, h);
			pm_glibc_fragmentation_destroy(f);
			pm_residency_destroy(res);
		}
		run_reports(t, "intact image");
		pm_target_destroy(t);
	}
	if (fd >= 0)
		close(fd);
	/* Every generated header word in turn set to garbage: the reports
	 * still end (the walkers warn), nothing crashes. */
	uint8_t *copy = malloc(h->len);
	for (size_t i = 0; copy && i < h->nfields; i += 7) {
		memcpy(copy, h->core, h->len);
		int64_t off = synth_heap_offset(h, h->fields[i], 8);
		if (off < 0)
			continue;
		memset(copy + off, 0xa5, 8);
		struct pm_target *bad = open_image(copy, h->len, &fd);
		if (bad) {
			char what[48];
			snprintf(what, sizeof(what), "field %zu corrupted", i);
			run_reports(bad, what);
			pm_target_destroy(bad);
		}
		if (fd >= 0)
			close(fd);
	}
	free(copy);
	synth_heap_destroy(h);
	return check_exit_status();
}
