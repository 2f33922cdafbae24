/* Test target for the glibc walker: several threads (so non-main arenas
 * exist) leave chunks in every kind of place glibc keeps them: tcache,
 * fastbins, unsorted, small and large bins, mmapped chunks (also from
 * memalign/posix_memalign with large alignments), optionally a second heap
 * in one arena. Then it captures malloc_info() (per-arena XML, to a FILE
 * opened at the start with a static buffer, so writing it allocates
 * nothing) and mallinfo2() - with nothing allocating in between - writes
 * the oracle JSON to $PM_ORACLE_FILE (atomically) and stops itself with
 * SIGSTOP, forever.
 *
 * usage: glibc_workload [--threads N] [--multi-heap] [--scale N]
 *                       [--small-chunks N]   (N more 32-byte chunks, kept:
 *                                             for the benchmark)
 *                       [--exited-threads N] (N threads that allocate, free
 *                                             and exit first: their arenas
 *                                             stay, their tcaches are gone)
 *                       [--split-mmapped N]  (N mmapped blocks whose mapping
 *                                             madvise(MADV_HUGEPAGE) splits)
 *                       [--guard-mmapped N]  (N mmapped blocks with guard
 *                                             pages made by mprotect)
 *                       [--mmapped-below-heap N] (a thread's arena heap,
 *                                             then N mmapped blocks, which
 *                                             the kernel maps right below
 *                                             it and merges with it) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_THREADS 64

static pthread_barrier_t ready;
static int scale = 1;
static int multi_heap;

/* Kept allocations: never freed, so they stay in use. */
static void *keep[1 << 16];
static size_t nkeep;
static pthread_mutex_t keep_lock = PTHREAD_MUTEX_INITIALIZER;

static void *kept(size_t n)
{
	void *p = malloc(n);
	memset(p, 0xab, n);
	pthread_mutex_lock(&keep_lock);
	if (nkeep < sizeof(keep) / sizeof(keep[0]))
		keep[nkeep++] = p;
	pthread_mutex_unlock(&keep_lock);
	return p;
}

/* Chunks to free later, each followed by a kept guard so nothing
 * coalesces. All allocation happens before any of the frees below: a later
 * malloc would take chunks back out of the bins. */
struct batch {
	void *ps[64];
	int count;
};

static void batch_alloc(struct batch *b, size_t n, int count)
{
	b->count = count > 64 ? 64 : count;
	for (int i = 0; i < b->count; i++) {
		b->ps[i] = malloc(n);
		memset(b->ps[i], i, n);
		kept(24);
	}
}

static void batch_free(struct batch *b)
{
	for (int i = 0; i < b->count; i++)
		free(b->ps[i]);
}

static void fill_heap(unsigned seed)
{
	enum { NFAST = 7, NSMALL = 8, NLARGE = 3, NUNSORTED = 1 };
	struct batch fast[NFAST], small[NSMALL], large[NLARGE],
		unsorted[NUNSORTED];
	/* used chunks of many sizes */
	for (int i = 0; i < 2000 * scale; i++)
		kept(16 + (size_t)((seed * 7919u + (unsigned)i * 104729u) % 900));
	/* a calloc'd and a realloc'd chunk */
	void *c = calloc(100, 33);
	void *r = realloc(kept(100), 5000);
	(void)c;
	(void)r;
	if (seed == 1 && multi_heap) {
		/* more than HEAP_MAX_SIZE (64 MiB) below the mmap threshold:
		 * the arena grows a second heap */
		for (int i = 0; i < 800; i++)
			kept(100000);
	}
	/* tcache (7 per size) then fastbins: chunk sizes <= 0x80 */
	for (int i = 0; i < NFAST; i++)
		batch_alloc(&fast[i], 24 + 16 * (size_t)i, 7 + 4 + (int)(seed % 4));
	/* tcache full, the rest to unsorted -> small bins */
	for (int i = 0; i < NSMALL; i++)
		batch_alloc(&small[i], 200 + 100 * (size_t)i, 7 + 3);
	/* beyond tcache -> unsorted -> large bins */
	batch_alloc(&large[0], 2000, 4);
	batch_alloc(&large[1], 5000, 3);
	batch_alloc(&large[2], 20000, 2);
	batch_alloc(&unsorted[0], 3000, 2);
	void *sorter = malloc(60000);

	for (int i = 0; i < NSMALL; i++)
		batch_free(&small[i]);
	for (int i = 0; i < NLARGE; i++)
		batch_free(&large[i]);
	/* a large request sorts the unsorted bin into small/large bins */
	free(sorter);
	kept(70000);
	/* no malloc from here on */
	for (int i = 0; i < NFAST; i++)
		batch_free(&fast[i]);
	batch_free(&unsorted[0]);
}

/* User pointers of the live mmapped chunks, for the oracle. */
static void *mmapped[8];
static int nmmapped;

static void make_mmapped(void)
{
	void *p;
	mmapped[nmmapped++] = kept(200000);
	mmapped[nmmapped++] = kept(1 << 20);
	mmapped[nmmapped++] = kept(3 << 20);
	p = memalign(1 << 16, 300000);
	memset(p, 1, 300000);
	mmapped[nmmapped++] = p;
	if (posix_memalign(&p, 1 << 20, 600000) == 0) {
		memset(p, 2, 600000);
		mmapped[nmmapped++] = p;
	}
	p = aligned_alloc(4096, 1 << 18);
	memset(p, 3, 1 << 18);
	mmapped[nmmapped++] = p;
	/* one made and freed: must not be counted */
	free(malloc(5 << 20));
}

/* Mmapped blocks whose chunk's mapping the kernel splits into several
 * regions, with what malloc_usable_size says of each (an mmapped chunk's
 * size is that + 16), for the oracle. */
#define SPLIT_MAX 16
static struct {
	char *user;
	size_t usable;
	int guards;
} split[SPLIT_MAX];
static int nsplit;

/* n blocks of 5 MiB and some. With guards == 0, as numpy does for its big
 * arrays: madvise(MADV_HUGEPAGE) from the first page boundary after the
 * user pointer to the block's end (a VMA flag: the kernel splits the
 * mapping there). With guards: a PROT_NONE page 1 MiB in and two
 * PROT_READ pages 2 MiB in (mprotect splits it in five). Every page is
 * written first, so a kernel core dumps them all. */
static void make_split_mmapped(int n, int guards)
{
	for (int i = 0; i < n && nsplit < SPLIT_MAX; i++) {
		size_t len = (5u << 20) + (size_t)nsplit * 12345;
		char *p = malloc(len);
		if (!p)
			exit(5);
		memset(p, 0x5a, len);
		char *first = (char *)(((uintptr_t)p + 4095) & ~(uintptr_t)4095);
		int rc = guards ?
			mprotect(first + (1 << 20), 4096, PROT_NONE) |
			mprotect(first + (2 << 20), 8192, PROT_READ) :
			madvise(first, (size_t)(p + len - first), MADV_HUGEPAGE);
		if (rc != 0)
			exit(6);
		split[nsplit].user = p;
		split[nsplit].usable = malloc_usable_size(p);
		split[nsplit++].guards = guards;
	}
}

/* Per thread (seed - 1), the arena its chunks came from, found by
 * glibc's own rule (arena_for_chunk): a chunk with NON_MAIN_ARENA set lies
 * in a heap aligned to HEAP_MAX_SIZE (64 MiB on x86-64) whose heap_info
 * starts with the arena's address. */
#define HEAP_MAX (64ul << 20)
static struct {
	uintptr_t heap, arena;
} thread_arenas[MAX_THREADS];

static void *thread_main(void *arg)
{
	unsigned seed = (unsigned)(size_t)arg;
	size_t *first = kept(32);
	if (first[-1] & 4) {
		uintptr_t heap = (uintptr_t)first & ~(HEAP_MAX - 1);
		thread_arenas[seed - 1].heap = heap;
		thread_arenas[seed - 1].arena = *(uintptr_t *)heap;
	}
	fill_heap(seed);
	/* chunks freed by another thread end up in its tcache/arena */
	pthread_barrier_wait(&ready);
	for (;;)
		pause();
	return NULL;
}

/* A thread whose arena's heap is the newest mapping, then n blocks over
 * the mmap threshold: the kernel puts each right below the lowest mapping,
 * the heap, and merges their mappings with the heap's into one region. */
#define BELOW_MAX 16
static uintptr_t below_heap, below_user[BELOW_MAX];
static int nbelow;

/* Fills the unmapped gap right above the heap's 64 MiB reservation with
 * an inaccessible mapping, so that the highest gap left for the next mmap
 * is the one right below the heap (the piece new_heap trimmed off). */
static void fill_gap_above(uintptr_t reserved_end)
{
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	uintptr_t next = 0;
	while (maps && fgets(line, sizeof(line), maps)) {
		unsigned long a, b;
		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a >= reserved_end &&
		    (!next || a < next))
			next = a;
	}
	if (maps)
		fclose(maps);
	if (next > reserved_end &&
	    mmap((void *)reserved_end, next - reserved_end, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED)
		exit(7);
}

static void *below_heap_thread(void *arg)
{
	int n = (int)(size_t)arg;
	size_t *first = kept(32);
	if (first[-1] & 4) {
		below_heap = (uintptr_t)first & ~(HEAP_MAX - 1);
		fill_gap_above(below_heap + HEAP_MAX);
	}
	for (int i = 0; i < n && nbelow < BELOW_MAX; i++)
		below_user[nbelow++] = (uintptr_t)kept(200000);
	return NULL;
}

static char xml_path[4096];

/* Opened before the workload so that its FILE is part of the heap state;
 * fully buffered in static memory. Never closed. */
static FILE *xml_open(void)
{
	static char buf[1 << 20];
	const char *path = getenv("PM_ORACLE_FILE");
	if (!path)
		return NULL;
	snprintf(xml_path, sizeof(xml_path), "%s.malloc_info.xml", path);
	FILE *f = fopen(xml_path, "w");
	if (f)
		setvbuf(f, buf, _IOFBF, sizeof(buf));
	return f;
}

static void *exiting_thread(void *arg)
{
	fill_heap((unsigned)(size_t)arg);
	return NULL;
}

static void write_oracle(const struct mallinfo2 *m, int nthreads)
{
	/* No allocation here: static buffer, raw syscalls. */
	static char json[4096 + 8192], tmp[4096];
	const char *path = getenv("PM_ORACLE_FILE");
	if (!path)
		return;
	int n = snprintf(json, sizeof(json),
			 "{\"pid\": %d, \"threads\": %d, \"malloc_info\": \"%s\", \"mallinfo2\": {"
			 "\"arena\": %zu, \"ordblks\": %zu, \"smblks\": %zu, "
			 "\"hblks\": %zu, \"hblkhd\": %zu, \"usmblks\": %zu, "
			 "\"fsmblks\": %zu, \"uordblks\": %zu, \"fordblks\": %zu, "
			 "\"keepcost\": %zu}, \"mmapped_user\": [",
			 (int)getpid(), nthreads, xml_path, m->arena, m->ordblks, m->smblks,
			 m->hblks, m->hblkhd, m->usmblks, m->fsmblks, m->uordblks,
			 m->fordblks, m->keepcost);
	for (int i = 0; i < nmmapped && n < (int)sizeof(json) - 64; i++)
		n += snprintf(json + n, sizeof(json) - (size_t)n, "%s%lu",
			      i ? ", " : "", (unsigned long)mmapped[i]);
	n += snprintf(json + n, sizeof(json) - (size_t)n, "], \"split_mmapped\": [");
	for (int i = 0; i < nsplit && n < (int)sizeof(json) - 80; i++)
		n += snprintf(json + n, sizeof(json) - (size_t)n,
			      "%s{\"user\": %lu, \"usable\": %zu, \"guards\": %d}",
			      i ? ", " : "", (unsigned long)split[i].user,
			      split[i].usable, split[i].guards);
	n += snprintf(json + n, sizeof(json) - (size_t)n, "], \"thread_arenas\": [");
	for (int i = 0; i < nthreads && n < (int)sizeof(json) - 80; i++)
		n += snprintf(json + n, sizeof(json) - (size_t)n,
			      "%s{\"heap\": %lu, \"arena\": %lu}", i ? ", " : "",
			      (unsigned long)thread_arenas[i].heap,
			      (unsigned long)thread_arenas[i].arena);
	n += snprintf(json + n, sizeof(json) - (size_t)n, "], \"below_heap\": %lu, "
		      "\"below_user\": [", (unsigned long)below_heap);
	for (int i = 0; i < nbelow && n < (int)sizeof(json) - 40; i++)
		n += snprintf(json + n, sizeof(json) - (size_t)n, "%s%lu", i ? ", " : "",
			      (unsigned long)below_user[i]);
	n += snprintf(json + n, sizeof(json) - (size_t)n, "]}\n");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, json, (size_t)n) != n || close(fd) != 0)
		_exit(3);
	if (rename(tmp, path) != 0)
		_exit(4);
}

int main(int argc, char **argv)
{
	int nthreads = 3;
	long small_chunks = 0;
	int exited = 0;
	int split_blocks = 0, guard_blocks = 0, below_blocks = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			nthreads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
			scale = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--small-chunks") && i + 1 < argc)
			small_chunks = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exited-threads") && i + 1 < argc)
			exited = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--multi-heap"))
			multi_heap = 1;
		else if (!strcmp(argv[i], "--split-mmapped") && i + 1 < argc)
			split_blocks = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--guard-mmapped") && i + 1 < argc)
			guard_blocks = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--mmapped-below-heap") && i + 1 < argc)
			below_blocks = atoi(argv[++i]);
	}
	if (nthreads > MAX_THREADS)
		nthreads = MAX_THREADS;
	FILE *xml = xml_open();
	for (int i = 0; i < exited && i < MAX_THREADS; i++) {
		pthread_t tid;
		pthread_create(&tid, NULL, exiting_thread, (void *)(size_t)(100 + i));
		pthread_join(tid, NULL);
	}
	if (below_blocks) {
		pthread_t tid;
		pthread_create(&tid, NULL, below_heap_thread, (void *)(size_t)below_blocks);
		pthread_join(tid, NULL);
	}
	pthread_barrier_init(&ready, NULL, (unsigned)nthreads + 1);
	pthread_t tids[MAX_THREADS];
	for (int i = 0; i < nthreads; i++)
		pthread_create(&tids[i], NULL, thread_main, (void *)(size_t)(i + 1));
	/* mmapped first: any malloc would consolidate fastbins and sort the
	 * unsorted bin that fill_heap leaves */
	make_mmapped();
	make_split_mmapped(split_blocks, 0);
	make_split_mmapped(guard_blocks, 1);
	for (long i = 0; i < small_chunks; i++)
		*(volatile char *)malloc(24) = 1;
	fill_heap(0);
	pthread_barrier_wait(&ready);
	/* Free a few of the threads' chunks here: they go to this thread's
	 * tcache although they belong to other arenas. */
	pthread_mutex_lock(&keep_lock);
	for (size_t i = nkeep > 64 ? nkeep - 64 : 0; i < nkeep; i += 9) {
		free(keep[i]);
		keep[i] = NULL;
	}
	pthread_mutex_unlock(&keep_lock);
	if (xml) {
		malloc_info(0, xml);
		fflush(xml);
	}
	struct mallinfo2 m = mallinfo2();
	write_oracle(&m, nthreads);
	for (;;)
		raise(SIGSTOP);
}
