/* Unit tests of the glibc walker on hand-built memory images (a fake libc
 * with its banner and data segment holding main_arena and mp_, and a [heap]
 * whose chunks, bins, fastbin and tcache are laid out by hand), read
 * through a callback target: the clean image, an unsupported version, an
 * uninitialised arena with jemalloc mapped, targeted corruptions, and random
 * byte flips (no crash, no hang, problems counted). */
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

struct image {
	uint8_t text[0x1000], data[0x2000], jemalloc[0x1000], heap[HEAP_LEN];
	bool with_jemalloc;
};


static uint8_t *image_at(struct image *im, uint64_t addr, size_t len)
{
	struct { uint64_t start; uint8_t *buf; size_t size; } parts[] = {
		{LIBC_TEXT, im->text, sizeof(im->text)},
		{LIBC_DATA, im->data, sizeof(im->data)},
		{JEMALLOC, im->jemalloc, sizeof(im->jemalloc)},
		{HEAP, im->heap, sizeof(im->heap)},
	};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (parts[i].buf == im->jemalloc && !im->with_jemalloc)
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

static struct pm_error *image_open(struct image *im, struct pm_target **t)
{
	char maps[1024];
	int n = snprintf(maps, sizeof(maps),
		"%llx-%llx rw-p 00000000 00:00 0 [heap]\n"
		"%llx-%llx r--p 00000000 08:01 1 /fake/libc.so.6\n"
		"%llx-%llx rw-p 00001000 08:01 1 /fake/libc.so.6\n",
		HEAP, HEAP + HEAP_LEN, LIBC_TEXT, LIBC_TEXT + 0x1000,
		LIBC_DATA, LIBC_DATA + 0x2000);
	if (im->with_jemalloc)
		snprintf(maps + n, sizeof(maps) - (size_t)n,
			 "%llx-%llx r--p 00000000 08:01 2 /fake/libjemalloc.so.2\n",
			 JEMALLOC, JEMALLOC + 0x1000);
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

/* Random byte flips in the heap and arena: must never crash or hang. */
static void test_flips(struct image *im)
{
	unsigned seed = 12345;
	size_t walked = 0, problems = 0;
	for (int iter = 0; iter < 300; iter++) {
		image_build(im, "2.36");
		for (int k = 0; k < 1 + iter % 8; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t off = (seed >> 8) % 0x500;
			bool arena = seed & 1;
			uint8_t *p = arena ? im->data + 0x100 + (off % 0x898)
					   : im->heap + off;
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
	test_flips(im);
	free(im);
	return check_exit_status();
}
