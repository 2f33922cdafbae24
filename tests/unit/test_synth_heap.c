/* The synthetic heap image of synth_heap.c, opened as a core: the glibc
 * walker, the pymalloc walker, the object recogniser and the reference
 * graph must find exactly what the generator placed (so the fuzz targets
 * built on it start from an image the walkers understand). With -v, the
 * reports' text is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cpython.h"
#include "glibc.h"
#include "graph.h"
#include "pymalloc.h"
#include "pymortem.h"
#include "synth_heap.h"

static size_t chunks_in_state(const struct pm_glibc_heap *g, enum pm_chunk_state s)
{
	size_t n = 0;
	for (size_t i = 0; i < g->nchunks; i++)
		n += g->chunks[i].state == s;
	return n;
}

static void test_glibc(struct pm_target *t, const struct synth_heap *h)
{
	const struct pm_glibc_heap *g;
	struct pm_error *err = pm_glibc_walk(t, &g);
	CHECK(!err, "glibc walk (%s)", err ? err->message : "ok");
	if (err) {
		pm_error_destroy(err);
		return;
	}
	const struct synth_heap_expect *e = &h->expect;
	CHECK(g->main_arena == h->main_arena && g->mp == h->mp &&
	      g->version_major == 2 && g->version_minor == 36,
	      "main_arena, mp_ and glibc 2.36 found (%s, %s)",
	      g->main_arena_source ? g->main_arena_source : "-",
	      g->version_source ? g->version_source : "-");
	CHECK(g->nchunks == e->chunks, "%zu chunks (expected %zu)", g->nchunks,
	      e->chunks);
	CHECK(chunks_in_state(g, PM_CHUNK_USED) == e->used_chunks &&
	      chunks_in_state(g, PM_CHUNK_FREE_BIN) == e->bin_chunks &&
	      chunks_in_state(g, PM_CHUNK_FREE_FASTBIN) == e->fastbin_chunks &&
	      chunks_in_state(g, PM_CHUNK_FREE_TCACHE) == e->tcache_chunks &&
	      chunks_in_state(g, PM_CHUNK_MMAPPED) == e->mmapped_chunks &&
	      chunks_in_state(g, PM_CHUNK_TOP) == e->top_chunks &&
	      chunks_in_state(g, PM_CHUNK_FENCEPOST) == e->fenceposts &&
	      chunks_in_state(g, PM_CHUNK_TCACHE_STRUCT) == 1,
	      "chunk states: used %zu, bin %zu, fastbin %zu, tcache %zu, mmapped %zu",
	      chunks_in_state(g, PM_CHUNK_USED), chunks_in_state(g, PM_CHUNK_FREE_BIN),
	      chunks_in_state(g, PM_CHUNK_FREE_FASTBIN),
	      chunks_in_state(g, PM_CHUNK_FREE_TCACHE),
	      chunks_in_state(g, PM_CHUNK_MMAPPED));
	const struct pm_chunk *mm = pm_glibc_chunk_containing(g, h->mmapped_chunk);
	CHECK(mm && mm->addr == h->mmapped_chunk && mm->size == e->mmapped_size,
	      "the mmapped chunk and its size");
	CHECK(g->narenas == e->arenas_glibc && g->arenas[0].is_main &&
	      g->arenas[0].system_mem == e->sysmem &&
	      g->arenas[0].top_size == e->top_size,
	      "%zu arenas, the main one's system_mem and top size", g->narenas);
	CHECK(g->narenas == 2 && g->arenas[1].nheaps == 2 &&
	      g->noverheads == 2, "the thread arena: 2 heaps, 2 header overheads "
	      "(%zu heaps, %zu overheads)", g->narenas == 2 ? g->arenas[1].nheaps : 0,
	      g->noverheads);
	CHECK(!g->partial && g->problems == 0, "no problems (%zu)", g->problems);
}

static void test_pymalloc(struct pm_target *t, const struct synth_heap *h)
{
	const struct pm_pymalloc *pm;
	struct pm_error *err = pm_pymalloc_walk(t, &pm);
	CHECK(!err && pm->found, "pymalloc state found (%s)",
	      err ? err->message : pm->found ? pm->how : pm->missing);
	if (err || !pm->found) {
		pm_error_destroy(err);
		return;
	}
	const struct synth_heap_expect *e = &h->expect;
	const struct pm_pymalloc_state *s = &pm->states[0];
	uint64_t used = 0;
	for (size_t i = 0; i < pm->npools; i++)
		used += pm->pools[i].nused;
	CHECK(pm->nstates == 1 && s->narenas == e->arenas, "%llu arena(s)",
	      (unsigned long long)s->narenas);
	CHECK(pm->npools == e->pools && s->empty_pools == e->empty_pools,
	      "%zu pools in use, %llu empty", pm->npools,
	      (unsigned long long)s->empty_pools);
	CHECK(used == e->used_blocks, "%llu used blocks (expected %llu)",
	      (unsigned long long)used, (unsigned long long)e->used_blocks);
	CHECK(pm->problems == 0, "no problems (%llu)",
	      (unsigned long long)pm->problems);
}

static uint64_t objects_of(const struct pm_cpython_heap *heap, const char *kind)
{
	for (size_t i = 0; i < heap->ncategories; i++)
		if (!strcmp(heap->categories[i].domain, "python") &&
		    !strcmp(heap->categories[i].kind, kind) &&
		    !strcmp(heap->categories[i].detail, "-"))
			return heap->categories[i].count;
	return 0;
}

static void test_objects(struct pm_target *t, const struct synth_heap *h)
{
	const struct pm_cpython_heap *heap;
	struct pm_error *err = pm_cpython_analyse(t, &heap);
	CHECK(!err && heap->python, "objects recognised (%s)",
	      err ? err->message : heap->nnotes ? heap->notes[0] : "ok");
	if (err || !heap->python) {
		pm_error_destroy(err);
		return;
	}
	const struct synth_heap_expect *e = &h->expect;
	CHECK(heap->objects == e->objects, "%llu objects (expected %llu)",
	      (unsigned long long)heap->objects, (unsigned long long)e->objects);
	CHECK(objects_of(heap, "str") == e->strs && objects_of(heap, "list") == e->lists &&
	      objects_of(heap, "dict") == e->dicts &&
	      objects_of(heap, "Customer") == e->customers &&
	      objects_of(heap, "type") == e->types,
	      "by type: str %llu, list %llu, dict %llu, Customer %llu, type %llu",
	      (unsigned long long)objects_of(heap, "str"),
	      (unsigned long long)objects_of(heap, "list"),
	      (unsigned long long)objects_of(heap, "dict"),
	      (unsigned long long)objects_of(heap, "Customer"),
	      (unsigned long long)objects_of(heap, "type"));

	const struct pm_graph *g;
	err = pm_graph_get(t, &g);
	CHECK(!err, "reference graph (%s)", err ? err->message : "ok");
	if (err) {
		pm_error_destroy(err);
		return;
	}
	CHECK(g->nheap == e->objects && g->bad_objects == 0 && g->dangling == 0,
	      "graph: %u heap nodes, %llu edges, %zu roots, %llu bad, %llu dangling",
	      g->nheap, (unsigned long long)g->nedges, g->roots.size,
	      (unsigned long long)g->bad_objects, (unsigned long long)g->dangling);
	uint32_t list = pm_graph_node_at(g, h->list_object);
	CHECK(list < g->nnodes && g->edge_start[list + 1] - g->edge_start[list] >= 3,
	      "the list refers to its 3 items");
}

static void test_reports(struct pm_target *t, bool verbose)
{
	static const char *const names[] = { "malloc-stats", "pymalloc-stats",
					      "summary", "graph", "retained" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct pm_report_args args = { .format = PM_FORMAT_TEXT };
		char *out = NULL;
		struct pm_error *err = pm_report_run(t, names[i], &args, &out);
		CHECK(!err && out, "report %s runs (%s)", names[i],
		      err ? err->message : "ok");
		if (verbose && out)
			printf("%s\n", out);
		free(out);
		pm_error_destroy(err);
	}
}

/* ---- corruptions the fuzz targets found (regression tests) ---------- */

struct patch {
	uint64_t addr, value;
};

/* Opens a copy of the image with 8-byte patches applied. */
static struct pm_target *open_patched(const struct synth_heap *h,
				      const struct patch *patches, size_t n,
				      int *fd)
{
	uint8_t *bytes = malloc(h->len);
	memcpy(bytes, h->core, h->len);
	for (size_t i = 0; i < n; i++) {
		int64_t off = synth_heap_offset(h, patches[i].addr, 8);
		if (off >= 0)
			memcpy(bytes + off, &patches[i].value, 8);
	}
	*fd = synth_heap_memfd(bytes, h->len);
	free(bytes);
	struct pm_target *t = NULL;
	struct pm_error *err = *fd >= 0 ? synth_heap_open_fd(*fd, &t) : NULL;
	pm_error_destroy(err);
	return t;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool chunks_disjoint_and_mapped(struct pm_target *t,
				       const struct pm_glibc_heap *g)
{
	for (size_t i = 0; i < g->nchunks; i++) {
		const struct pm_chunk *c = &g->chunks[i];
		if (!pm_target_is_mapped(t, c->addr, c->size) ||
		    (i && g->chunks[i - 1].addr + g->chunks[i - 1].size > c->addr))
			return false;
	}
	return true;
}

/* main_arena.top far past the heap, in unmapped memory: the walk reaches
 * the heap's end, then resyncs towards top; it used to probe the unmapped
 * gap 16 bytes at a time (4M failed reads, 0.4 s, seconds under ASan). */
static void test_top_unmapped(const struct synth_heap *h)
{
	const struct patch p[] = { { h->main_arena + 0x60, 0xc54f4770 } };
	int fd;
	struct pm_target *t = open_patched(h, p, 1, &fd);
	const struct pm_glibc_heap *g = NULL;
	double t0 = now();
	struct pm_error *err = t ? pm_glibc_walk(t, &g) : NULL;
	double took = now() - t0;
	CHECK(t && !err && g->problems > 0 && took < 0.25,
	      "top in unmapped memory: problems reported, walked in %.3f s", took);
	pm_error_destroy(err);
	pm_target_destroy(t);
	close(fd);
}

/* top moved to a mapped address far above the heap, and a used chunk's
 * size reaching it: the chunk runs over unmapped memory and is damage (it
 * used to be a 127 TiB allocation: minutes of building the allocation
 * index and 1 GB). */
static void test_chunk_past_mapping(const struct synth_heap *h)
{
	uint64_t chunk = h->customer_type_chunk, top = h->pymalloc_arena;
	const struct patch p[] = { { h->main_arena + 0x60, top },
				   { chunk + 8, (top - chunk) | 1 } };
	int fd;
	struct pm_target *t = open_patched(h, p, 2, &fd);
	const struct pm_glibc_heap *g = NULL;
	const struct pm_cpython_heap *heap = NULL;
	double t0 = now();
	struct pm_error *err = t ? pm_glibc_walk(t, &g) : NULL;
	if (!err && t)
		err = pm_cpython_analyse(t, &heap);
	double took = now() - t0;
	CHECK(t && !err && g->problems > 0 && chunks_disjoint_and_mapped(t, g) &&
	      took < 1, "a used chunk past mapped memory is damage (%.3f s)", took);
	pm_error_destroy(err);
	pm_target_destroy(t);
	close(fd);
}

/* The top chunk's size far past its heap: cut at the heap's end (it used
 * to overlap the thread arena's chunks and break lookups among them). */
static void test_top_size_past_mapping(const struct synth_heap *h)
{
	const struct patch p[] = { { h->top_chunk + 8, 0x2202020202020201 } };
	int fd;
	struct pm_target *t = open_patched(h, p, 1, &fd);
	const struct pm_glibc_heap *g = NULL;
	struct pm_error *err = t ? pm_glibc_walk(t, &g) : NULL;
	CHECK(t && !err && g->problems > 0 && g->narenas >= 1 &&
	      g->arenas[0].top_size == h->expect.top_size &&
	      chunks_disjoint_and_mapped(t, g),
	      "a top size past mapped memory is cut at the heap's end");
	pm_error_destroy(err);
	pm_target_destroy(t);
	close(fd);
}

static char *run_report(struct pm_target *t, const char *name)
{
	struct pm_report_args args = { .format = PM_FORMAT_JSON };
	char *out = NULL;
	struct pm_error *err = pm_report_run(t, name, &args, &out);
	pm_error_destroy(err);
	return out;
}

static bool same_text(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

/* A report says the same on a target earlier reports have used (GDB's
 * session) as on a fresh one (the CLI's): the glibc walk's warnings are
 * malloc-stats', and not info's, which does not walk glibc. */
static void test_warnings_belong_to_their_analysis(const struct synth_heap *h)
{
	const struct patch p[] = { { h->main_arena + 0x60, 0xc54f4770 } };
	int fd_used, fd_fresh;
	struct pm_target *used = open_patched(h, p, 1, &fd_used);
	struct pm_target *fresh = open_patched(h, p, 1, &fd_fresh);
	if (!used || !fresh) {
		CHECK(false, "patched heap opens");
		return;
	}
	char *stats_first = run_report(used, "malloc-stats");
	char *info_after = run_report(used, "info");
	char *stats_again = run_report(used, "malloc-stats");
	char *info_fresh = run_report(fresh, "info");
	char *stats_fresh = run_report(fresh, "malloc-stats");
	CHECK(stats_first && strstr(stats_first, "\"warning_count\": 0") == NULL,
	      "the damaged heap's malloc-stats warns");
	CHECK(same_text(info_after, info_fresh),
	      "info after malloc-stats equals info on a fresh target");
	CHECK(same_text(stats_first, stats_again) &&
	      same_text(stats_first, stats_fresh),
	      "malloc-stats shows its warnings again from the cache, and on a fresh target");
	free(stats_first);
	free(info_after);
	free(stats_again);
	free(info_fresh);
	free(stats_fresh);
	pm_target_destroy(used);
	pm_target_destroy(fresh);
	close(fd_used);
	close(fd_fresh);
}

/* An analysis that fails (never cached) still shows its warnings in the
 * report that attempted it, and a second attempt's replace the first's
 * (it raises them again) instead of adding to them. */
static void test_failed_analysis_warnings(const struct synth_heap *h)
{
	int fd;
	struct pm_target *t = open_patched(h, NULL, 0, &fd);
	if (!t) {
		CHECK(false, "heap opens");
		return;
	}
	size_t at_open = pm_target_warning_count(t);
	for (int attempt = 1; attempt <= 2; attempt++) {
		uint32_t outer = pm_target_report_begin(t);
		CHECK(!pm_target_cache_get(t, PM_CACHE_PATHS), "nothing cached");
		pm_target_warn(t, false, 0, "attempt %d failed", attempt);
		/* no cache_set: the analysis failed */
		size_t shown = pm_target_warning_count(t);
		const struct pm_diag *last = pm_target_warning(t, shown - 1);
		pm_target_report_end(t, outer);
		char want[32];
		snprintf(want, sizeof(want), "attempt %d failed", attempt);
		CHECK(shown == at_open + 1 && last && !strcmp(last->message, want),
		      "attempt %d: its report shows its one warning (%zu shown)",
		      attempt, shown - at_open);
	}
	pm_target_destroy(t);
	close(fd);
}

int main(int argc, char **argv)
{
	bool verbose = argc > 1 && !strcmp(argv[1], "-v");
	struct synth_heap *h = synth_heap_create();
	int fd = synth_heap_memfd(h->core, h->len);
	struct pm_target *t = NULL;
	struct pm_error *err = fd >= 0 ? synth_heap_open_fd(fd, &t) : NULL;
	CHECK(fd >= 0 && !err, "synthetic heap core opens (%zu bytes; %s)", h->len,
	      err ? err->message : "ok");
	pm_error_destroy(err);
	if (t) {
		test_glibc(t, h);
		test_pymalloc(t, h);
		test_objects(t, h);
		test_reports(t, verbose);
		if (verbose)
			for (size_t i = 0; i < pm_target_warnings_stored(t); i++)
				printf("warning: %s\n", pm_target_warning(t, i)->message);
		pm_target_destroy(t);
	}
	if (fd >= 0)
		close(fd);
	test_top_unmapped(h);
	test_chunk_past_mapping(h);
	test_top_size_past_mapping(h);
	test_warnings_belong_to_their_analysis(h);
	test_failed_analysis_warnings(h);
	synth_heap_destroy(h);
	return check_exit_status();
}
