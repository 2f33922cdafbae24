/* Unit tests of the glibc walker on hand-built memory images (a fake libc
 * with its banner and data segment holding main_arena and mp_, and a [heap]
 * whose chunks, bins, fastbin and tcache are laid out by hand), read
 * through a callback target: the clean image, an unsupported version, an
 * uninitialised arena with jemalloc mapped, targeted corruptions, and random
 * byte flips (no crash, no hang, problems counted); and a thread arena of two
 * heaps (headers and fencepost in use) beside an mmapped chunk whose mapping
 * is split in three regions. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "glibc.h"
#include "pymortem.h"
#include "target.h"

#define LIBC_TEXT 0x7f0000000000ull
#define LIBC_DATA 0x7f0000001000ull
#define JEMALLOC  0x7f0000100000ull
#define HEAP      0x10000000ull
#define HEAP_LEN  0x21000ull
#define MP        (LIBC_DATA + 0x0)
#define ARENA     (LIBC_DATA + 0x100)
#define SYSMEM    0x21000ull

/* chunk addresses in the heap */
#define C_TCACHE  (HEAP + 0x000)
#define C_A       (HEAP + 0x290)
#define C_B       (HEAP + 0x2c0)    /* unsorted bin */
#define C_C       (HEAP + 0x3c0)
#define C_D       (HEAP + 0x400)    /* fastbin 0 */
#define C_F       (HEAP + 0x420)    /* tcache bin 0 */
#define C_E       (HEAP + 0x440)
#define C_TOP     (HEAP + 0x490)

/* A thread arena: its first heap H1 (heap_info, malloc_state, two chunks,
 * the fencepost), then its newer heap H2 (heap_info, top); an mmapped
 * chunk at MM whose mapping is three regions (rw, PROT_NONE, rw). */
#define H1        0x7e0000000000ull
#define H1_LEN    0x2000ull
#define ARENA2    (H1 + 0x30)           /* right after heap_info (2.35+) */
#define H1_FIRST  (H1 + 0x8d0)          /* 0x30 + 0x898, 16-aligned user data */
#define H1_FENCE  (H1 + H1_LEN - 0x20)
#define H2        0x7e0004000000ull     /* the next 64 MiB-aligned heap */
#define H2_LEN    0x1000ull
#define MM        0x7d0000000000ull
#define MM_LEN    0x5000ull

struct image {
	uint8_t text[0x1000], data[0x2000], jemalloc[0x1000], heap[HEAP_LEN];
	uint8_t h1[H1_LEN], h2[H2_LEN], mm[MM_LEN];
	bool with_jemalloc, with_thread_arena;
};


static uint8_t *image_at(struct image *im, uint64_t addr, size_t len)
{
	struct { uint64_t start; uint8_t *buf; size_t size; } parts[] = {
		{LIBC_TEXT, im->text, sizeof(im->text)},
		{LIBC_DATA, im->data, sizeof(im->data)},
		{JEMALLOC, im->jemalloc, sizeof(im->jemalloc)},
		{HEAP, im->heap, sizeof(im->heap)},
		{H1, im->h1, sizeof(im->h1)},
		{H2, im->h2, sizeof(im->h2)},
		{MM, im->mm, sizeof(im->mm)},
	};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (parts[i].buf == im->jemalloc && !im->with_jemalloc)
			continue;
		if ((parts[i].buf == im->h1 || parts[i].buf == im->h2 ||
		     parts[i].buf == im->mm) && !im->with_thread_arena)
			continue;
		if (addr >= parts[i].start && len <= parts[i].size &&
		    addr - parts[i].start <= parts[i].size - len)
			return parts[i].buf + (addr - parts[i].start);
	}
	return NULL;
}

static int image_read(void *arg, uint64_t addr, void *buf, size_t len)
{
	uint8_t *p = image_at(arg, addr, len);
	if (!p)
		return -1;
	memcpy(buf, p, len);
	return 0;
}

static void put64(struct image *im, uint64_t addr, uint64_t v)
{
	uint8_t *p = image_at(im, addr, 8);
	if (p)
		memcpy(p, &v, 8);
}

static void put32(struct image *im, uint64_t addr, uint32_t v)
{
	uint8_t *p = image_at(im, addr, 4);
	if (p)
		memcpy(p, &v, 4);
}

static uint64_t protect(uint64_t field, uint64_t ptr)
{
	return (field >> 12) ^ ptr;
}

/* glibc 2.36 layout (offsets from shared/reference and gdb). */
static void image_build(struct image *im, const char *version)
{
	memset(im, 0, sizeof(*im));
	memcpy(im->text, "\x7f" "ELF", 4);
	snprintf((char *)im->text + 0x200, 0x100,
		 "GNU C Library (fake) stable release version %s.\n", version);
	memcpy(im->jemalloc, "\x7f" "ELF", 4);
	/* mp_ */
	put64(im, MP + 0x10, 0x20000);          /* mmap_threshold */
	put32(im, MP + 0x40, 65536);            /* n_mmaps_max */
	put64(im, MP + 0x60, HEAP);             /* sbrk_base */
	put64(im, MP + 0x68, 64);               /* tcache_bins */
	/* main_arena: empty bins, then the unsorted bin holds B */
	for (int i = 1; i < 128; i++) {
		uint64_t bin = ARENA + 0x70 + (uint64_t)(i - 1) * 16;
		put64(im, bin, bin - 16);
		put64(im, bin + 8, bin - 16);
	}
	uint64_t unsorted = ARENA + 0x70 - 16;
	put64(im, ARENA + 0x70, C_B);
	put64(im, ARENA + 0x78, C_B);
	put64(im, ARENA + 0x10, C_D);           /* fastbinsY[0] */
	put64(im, ARENA + 0x60, C_TOP);
	put64(im, ARENA + 0x870, ARENA);        /* next */
	put64(im, ARENA + 0x880, 1);            /* attached_threads */
	put64(im, ARENA + 0x888, SYSMEM);
	put64(im, ARENA + 0x890, SYSMEM);
	/* chunks */
	put64(im, C_TCACHE + 8, 0x290 | 1);
	put64(im, C_TCACHE + 16, 1);            /* counts[0] = 1 (uint16) */
	put64(im, C_TCACHE + 16 + 0x80, C_F + 16);  /* entries[0] */
	put64(im, C_A + 8, 0x30 | 1);
	put64(im, C_B + 8, 0x100 | 1);
	put64(im, C_B + 16, unsorted);
	put64(im, C_B + 24, unsorted);
	put64(im, C_C, 0x100);
	put64(im, C_C + 8, 0x40);               /* PREV_INUSE clear: B free */
	put64(im, C_D + 8, 0x20 | 1);
	put64(im, C_D + 16, protect(C_D + 16, 0));
	put64(im, C_F + 8, 0x20 | 1);
	put64(im, C_F + 16, protect(C_F + 16, 0));
	put64(im, C_E + 8, 0x50 | 1);
	put64(im, C_TOP + 8, (SYSMEM - 0x490) | 1);
}

/* Adds the thread arena and the split mmapped chunk to a built image. */
static void image_add_thread_arena(struct image *im)
{
	im->with_thread_arena = true;
	put64(im, ARENA + 0x870, ARENA2);       /* main_arena.next */
	put32(im, MP + 0x3c, 1);                /* n_mmaps (int) */
	put32(im, MP + 0x44, 1);                /* max_n_mmaps */
	put64(im, MP + 0x50, MM_LEN);           /* mmapped_mem */
	/* H1: heap_info {ar_ptr, prev, size, mprotect_size, pagesize} */
	put64(im, H1, ARENA2);
	put64(im, H1 + 0x10, H1_LEN);
	put64(im, H1 + 0x18, H1_LEN);
	put64(im, H1 + 0x20, 0x1000);
	for (int i = 1; i < 128; i++) {
		uint64_t bin = ARENA2 + 0x70 + (uint64_t)(i - 1) * 16;
		put64(im, bin, bin - 16);
		put64(im, bin + 8, bin - 16);
	}
	put32(im, ARENA2 + 4, 2);               /* flags: NONCONTIGUOUS */
	put64(im, ARENA2 + 0x60, H2 + 0x30);    /* top, in H2 */
	put64(im, ARENA2 + 0x870, ARENA);       /* next */
	put64(im, ARENA2 + 0x880, 1);
	put64(im, ARENA2 + 0x888, H1_LEN + H2_LEN);
	put64(im, ARENA2 + 0x890, H1_LEN + H2_LEN);
	put64(im, H1_FIRST + 8, 0x100 | 5);     /* used; NON_MAIN_ARENA */
	put64(im, H1_FIRST + 0x108, (H1_FENCE - H1_FIRST - 0x100) | 5);
	put64(im, H1_FENCE + 8, 0x10 | 1);      /* the fencepost pair */
	put64(im, H1_FENCE + 0x18, 0 | 1);
	/* H2: heap_info, then top */
	put64(im, H2, ARENA2);
	put64(im, H2 + 8, H1);
	put64(im, H2 + 0x10, H2_LEN);
	put64(im, H2 + 0x18, H2_LEN);
	put64(im, H2 + 0x20, 0x1000);
	put64(im, H2 + 0x38, (H2_LEN - 0x30) | 1);
	/* the mmapped chunk */
	put64(im, MM + 8, MM_LEN | 2);
}

static struct pm_error *image_open(struct image *im, struct pm_target **t)
{
	char maps[2048];
	int n = snprintf(maps, sizeof(maps),
		"%llx-%llx rw-p 00000000 00:00 0 [heap]\n"
		"%llx-%llx r--p 00000000 08:01 1 /fake/libc.so.6\n"
		"%llx-%llx rw-p 00001000 08:01 1 /fake/libc.so.6\n",
		HEAP, HEAP + HEAP_LEN, LIBC_TEXT, LIBC_TEXT + 0x1000,
		LIBC_DATA, LIBC_DATA + 0x2000);
	if (im->with_jemalloc)
		n += snprintf(maps + n, sizeof(maps) - (size_t)n,
			      "%llx-%llx r--p 00000000 08:01 2 /fake/libjemalloc.so.2\n",
			      JEMALLOC, JEMALLOC + 0x1000);
	if (im->with_thread_arena)
		snprintf(maps + n, sizeof(maps) - (size_t)n,
			 "%llx-%llx rw-p 00000000 00:00 0\n"
			 "%llx-%llx ---p 00000000 00:00 0\n"
			 "%llx-%llx rw-p 00000000 00:00 0\n"
			 "%llx-%llx rw-p 00000000 00:00 0\n"
			 "%llx-%llx ---p 00000000 00:00 0\n"
			 "%llx-%llx rw-p 00000000 00:00 0\n",
			 MM, MM + 0x1000, MM + 0x1000, MM + 0x2000,
			 MM + 0x2000, MM + MM_LEN, H1, H1 + H1_LEN,
			 H1 + H1_LEN, H2, H2, H2 + H2_LEN);
	struct pm_callback_source src = {
		.read = image_read, .arg = im, .maps_text = maps,
	};
	struct pm_options opts = {.no_debuginfo = true};
	return pm_target_open_callback(&src, &opts, t);
}

/* Walks an image; returns the heap (owned by *t) or NULL with *err. */
static const struct pm_glibc_heap *walk(struct image *im, struct pm_target **t,
					struct pm_error **err)
{
	*t = NULL;
	const struct pm_glibc_heap *h = NULL;
	*err = image_open(im, t);
	if (!*err)
		*err = pm_glibc_walk(*t, &h);
	return *err ? NULL : h;
}

static const struct pm_chunk *chunk_at(const struct pm_glibc_heap *h,
				       uint64_t addr)
{
	const struct pm_chunk *c = pm_glibc_chunk_containing(h, addr);
	return c && c->addr == addr ? c : NULL;
}

static bool state_is(const struct pm_glibc_heap *h, uint64_t addr,
		     enum pm_chunk_state state)
{
	const struct pm_chunk *c = chunk_at(h, addr);
	return c && c->state == state;
}

static void test_clean(struct image *im)
{
	image_build(im, "2.36");
	struct pm_target *t;
	struct pm_error *err;
	const struct pm_glibc_heap *h = walk(im, &t, &err);
	CHECK(h != NULL, "clean image walks (%s)", err ? err->message : "");
	if (h) {
		uint64_t top = SYSMEM - 0x490;
		const struct pm_mallinfo *m = &h->total;
		CHECK(h->main_arena == ARENA && h->mp == MP,
		      "signature scan finds main_arena and mp_");
		CHECK(m->arena == SYSMEM && m->ordblks == 2 && m->smblks == 1 &&
		      m->fsmblks == 0x20 && m->fordblks == top + 0x100 + 0x20 &&
		      m->uordblks == SYSMEM - (top + 0x120) &&
		      m->keepcost == top && m->hblks == 0,
		      "mallinfo of the hand-built heap");
		CHECK(h->nchunks == 8, "8 chunks (got %zu)", h->nchunks);
		CHECK(state_is(h, C_TCACHE, PM_CHUNK_TCACHE_STRUCT) &&
		      state_is(h, C_A, PM_CHUNK_USED) &&
		      state_is(h, C_B, PM_CHUNK_FREE_BIN) &&
		      state_is(h, C_C, PM_CHUNK_USED) &&
		      state_is(h, C_D, PM_CHUNK_FREE_FASTBIN) &&
		      state_is(h, C_F, PM_CHUNK_FREE_TCACHE) &&
		      state_is(h, C_E, PM_CHUNK_USED) &&
		      state_is(h, C_TOP, PM_CHUNK_TOP), "chunk states");
		CHECK(!h->partial && h->problems == 0, "no problems");
	}
	pm_error_destroy(err);
	pm_target_destroy(t);
}

static void test_unsupported_version(struct image *im)
{
	image_build(im, "2.25");
	struct pm_target *t;
	struct pm_error *err;
	walk(im, &t, &err);
	CHECK(err && err->code == PM_ERR_UNSUPPORTED &&
	      strstr(err->message, "2.25") && strstr(err->message, "2.27"),
	      "glibc 2.25 is refused clearly (%s)", err ? err->message : "no error");
	pm_error_destroy(err);
	pm_target_destroy(t);
}

/* No banner and an unversioned file name: the layout is inferred. */
static void test_inferred_version(struct image *im)
{
	image_build(im, "2.36");
	memset(im->text + 0x200, 0, 0x100);
	struct pm_target *t;
	struct pm_error *err;
	const struct pm_glibc_heap *h = walk(im, &t, &err);
	CHECK(h && h->version_minor >= 35 && h->version_minor <= 41 &&
	      strstr(h->version_source, "inferred") && h->mp == MP &&
	      h->total.ordblks == 2 && !h->partial,
	      "version inferred from structure (%s)",
	      h ? h->version_source : err ? err->message : "?");
	pm_error_destroy(err);
	pm_target_destroy(t);
}

static void test_other_allocator(struct image *im)
{
	image_build(im, "2.36");
	memset(im->data, 0, sizeof(im->data));  /* malloc never ran */
	im->with_jemalloc = true;
	struct pm_target *t;
	struct pm_error *err;
	const struct pm_glibc_heap *h = walk(im, &t, &err);
	CHECK(h && h->other_allocator && strstr(h->other_allocator, "jemalloc") &&
	      h->nchunks == 0, "jemalloc named (%s)",
	      h && h->other_allocator ? h->other_allocator :
	      err ? err->message : "nothing");
	pm_error_destroy(err);
	pm_target_destroy(t);
	im->with_jemalloc = false;
}

/* Applies a corruption, walks, and expects a partial result with problems
 * and the top chunk still found. */
static void expect_partial(struct image *im, const char *what,
			   void (*corrupt)(struct image *))
{
	image_build(im, "2.36");
	corrupt(im);
	struct pm_target *t;
	struct pm_error *err;
	const struct pm_glibc_heap *h = walk(im, &t, &err);
	CHECK(h && h->partial && h->problems > 0 &&
	      pm_target_warning_count(t) >= h->problems,
	      "%s: partial, %zu problems%s%s", what, h ? h->problems : 0,
	      err ? ": " : "", err ? err->message : "");
	if (h && pm_target_warnings_stored(t))
		printf("    first: %s\n", pm_target_warning(t, 0)->message);
	pm_error_destroy(err);
	pm_target_destroy(t);
}

static void bad_size(struct image *im) { put64(im, C_A + 8, 0x7777777); }
static void bin_loop(struct image *im) { put64(im, C_B + 16, C_B); }
static void bin_wild(struct image *im) { put64(im, C_B + 16, 0xdead0000); }
static void tcache_loop(struct image *im)
{
	put64(im, C_F + 16, protect(C_F + 16, C_F + 16));
}
static void fastbin_wild(struct image *im)
{
	put64(im, C_D + 16, protect(C_D + 16, 0x4141414140));
}
static void top_wild(struct image *im) { put64(im, ARENA + 0x60, 0x4000); }
static void ring_broken(struct image *im) { put64(im, ARENA + 0x870, 0x1238); }
static void count_wrong(struct image *im) { put64(im, C_TCACHE + 16, 3); }

static const struct pm_glibc_overhead *overhead_at(const struct pm_glibc_heap *h,
						    uint64_t addr)
{
	const struct pm_glibc_overhead *o = pm_glibc_overhead_containing(h, addr);
	return o && o->addr == addr ? o : NULL;
}

/* glibc counts a thread arena's heap headers and the fencepost of its
 * older heap in use (system_mem minus the free chunks): the walk finds
 * them where the image put them, and the chunk whose mapping is three
 * regions. */
static void test_thread_arena(struct image *im)
{
	image_build(im, "2.36");
	image_add_thread_arena(im);
	struct pm_target *t;
	struct pm_error *err;
	const struct pm_glibc_heap *h = walk(im, &t, &err);
	CHECK(h && !h->partial && h->problems == 0 && h->narenas == 2 &&
	      h->mp == MP && h->mp_n_mmaps == 1 && h->mp_mmapped_mem == MM_LEN,
	      "thread arena of two heaps walks cleanly (%s)",
	      err ? err->message : h && pm_target_warnings_stored(t) ?
	      pm_target_warning(t, pm_target_warnings_stored(t) - 1)->message : "");
	if (h && h->narenas == 2) {
		const struct pm_glibc_overhead *o1 = overhead_at(h, H1),
					       *o2 = overhead_at(h, H2);
		CHECK(o1 && o1->kind == PM_OVERHEAD_ARENA_HEADER &&
		      o1->size == H1_FIRST - H1 && o1->size == 2256,
		      "first heap: heap_info + malloc_state, 2256 bytes");
		CHECK(o2 && o2->kind == PM_OVERHEAD_HEAP_HEADER && o2->size == 0x30,
		      "later heap: its heap_info, 48 bytes");
		CHECK(state_is(h, H1_FENCE, PM_CHUNK_FENCEPOST) &&
		      chunk_at(h, H1_FENCE)->size == 0x20 &&
		      state_is(h, H1_FIRST, PM_CHUNK_USED) &&
		      state_is(h, H2 + 0x30, PM_CHUNK_TOP),
		      "fencepost pair of 32 bytes ends the older heap");
		/* what mallinfo2 counts in use: all but top */
		uint64_t used = 0;
		for (size_t i = 0; i < h->nchunks; i++)
			if (h->chunks[i].arena == 1 &&
			    h->chunks[i].state != PM_CHUNK_TOP)
				used += h->chunks[i].size;
		CHECK(h->arenas[1].info.uordblks == H1_LEN + H2_LEN - (H2_LEN - 0x30) &&
		      used + o1->size + o2->size == h->arenas[1].info.uordblks,
		      "chunks + headers == the arena's uordblks");
		const char *kind = NULL, *detail = NULL;
		CHECK(pm_glibc_own_memory_name(h, H1, &kind, &detail) &&
		      !strcmp(kind, "arena header") &&
		      !strcmp(detail, "heap_info + malloc_state") &&
		      pm_glibc_own_memory_name(h, H1_FENCE, &kind, &detail) &&
		      !strcmp(kind, "heap fencepost"), "names for reports");
		CHECK(h->total.hblks == 1 && h->total.hblkhd == MM_LEN &&
		      state_is(h, MM, PM_CHUNK_MMAPPED),
		      "the mmapped chunk over three regions is found");
		size_t labelled = 0;
		for (size_t i = 0; i < pm_target_region_count(t); i++) {
			const struct pm_region *r = pm_target_region(t, i);
			labelled += r->start >= MM && r->end <= MM + MM_LEN &&
				    r->label == PM_LABEL_GLIBC_MMAPPED;
		}
		CHECK(labelled == 3, "each of its 3 regions labelled (%zu)", labelled);
	}
	pm_error_destroy(err);
	pm_target_destroy(t);
}

/* The older heap's last chunk shrunk by 32 bytes and a fencepost after
 * it: the fencepost is not in the heap's last 32 bytes. */
static void fence_moved(struct image *im)
{
	put64(im, H1_FIRST + 0x108, (H1_FENCE - 0x20 - H1_FIRST - 0x100) | 5);
	put64(im, H1_FENCE - 0x20 + 8, 0x10 | 1);
}

static void expect_thread_arena_partial(struct image *im, const char *what,
					void (*corrupt)(struct image *))
{
	image_build(im, "2.36");
	image_add_thread_arena(im);
	corrupt(im);
	struct pm_target *t;
	struct pm_error *err;
	const struct pm_glibc_heap *h = walk(im, &t, &err);
	bool named = false;
	for (size_t i = 0; h && i < pm_target_warnings_stored(t); i++)
		named |= strstr(pm_target_warning(t, i)->message, "fencepost") != NULL;
	CHECK(h && h->partial && h->problems > 0 && named,
	      "%s: partial, %zu problems, the fencepost named", what,
	      h ? h->problems : 0);
	pm_error_destroy(err);
	pm_target_destroy(t);
}

/* Random byte flips in the heap and arena: must never crash or hang. */
static void test_flips(struct image *im)
{
	unsigned seed = 12345;
	size_t walked = 0, problems = 0;
	for (int iter = 0; iter < 300; iter++) {
		image_build(im, "2.36");
		bool threads = iter % 3 == 2;
		if (threads)
			image_add_thread_arena(im);
		for (int k = 0; k < 1 + iter % 8; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t off = (seed >> 8) % 0x500;
			bool arena = seed & 1;
			uint8_t *p = arena ? im->data + 0x100 + (off % 0x898)
					   : im->heap + off;
			if (threads) {  /* thread heaps, mmapped header */
				size_t where = (seed >> 20) % 4;
				p = where == 0 ? im->h1 + (seed >> 8) % H1_LEN :
				    where == 1 ? im->h1 + H1_LEN - 0x40 + off % 0x40 :
				    where == 2 ? im->h2 + off % 0x60 : im->mm + off % 16;
			}
			*p ^= (uint8_t)(1u << ((seed >> 4) & 7));
		}
		struct pm_target *t;
		struct pm_error *err;
		const struct pm_glibc_heap *h = walk(im, &t, &err);
		walked += h != NULL;
		problems += h ? h->problems : 0;
		pm_error_destroy(err);
		pm_target_destroy(t);
	}
	CHECK(walked > 0 && problems > 0,
	      "300 randomly damaged images: %zu walked, %zu problems reported",
	      walked, problems);
}

int main(void)
{
	struct image *im = malloc(sizeof(*im));
	if (!im)
		return 1;
	test_clean(im);
	test_unsupported_version(im);
	test_other_allocator(im);
	test_inferred_version(im);
	expect_partial(im, "bad chunk size", bad_size);
	expect_partial(im, "bin loop", bin_loop);
	expect_partial(im, "bin pointer outside the mappings", bin_wild);
	expect_partial(im, "tcache loop", tcache_loop);
	expect_partial(im, "fastbin pointer outside the mappings", fastbin_wild);
	expect_partial(im, "top outside the mappings", top_wild);
	expect_partial(im, "arena ring broken", ring_broken);
	expect_partial(im, "tcache count differs from its chain", count_wrong);
	test_thread_arena(im);
	expect_thread_arena_partial(im, "fencepost not at its heap's end", fence_moved);
	test_flips(im);
	free(im);
	return check_exit_status();
}
