/* A main() for the heap fuzz targets (fuzz_glibc.c, fuzz_pymalloc.c,
 * fuzz_objects.c) when libFuzzer is not used (gcc builds, the unit suite):
 *
 *   TARGET_smoke FILE...          replays inputs (crashes, regressions)
 *   TARGET_smoke --smoke [FILE...] replays the files, then the clean image
 *                                 and --runs N (default 1500) deterministic
 *                                 inputs of 1-8 random patches (and the
 *                                 slowest one; --save-slowest FILE keeps it)
 *   --max-ms N                    fails an input that takes over N ms
 *   TARGET_smoke --write-seeds DIR  writes a seed corpus for libFuzzer: the
 *                                 clean image (an empty input) and 16 of
 *                                 the deterministic inputs */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_heap.h"

#include "fuzz_rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An input of 1-8 patches; values are often small or all-ones, where
 * counts, sizes and flags break. Returns its length. */
static size_t random_input(uint8_t *buf)
{
	size_t n = 1 + rng() % 8;
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = buf + i * FUZZ_HEAP_PATCH_SIZE;
		uint64_t head = rng(), value;
		switch (rng() % 4) {
		case 0: value = rng() % 64; break;
		case 1: value = ~UINT64_C(0) - rng() % 4; break;
		default: value = rng(); break;
		}
		for (int k = 0; k < 4; k++)
			p[k] = (uint8_t)(head >> (8 * k));
		for (int k = 0; k < 8; k++)
			p[4 + k] = (uint8_t)(value >> (8 * k));
	}
	return n * FUZZ_HEAP_PATCH_SIZE;
}

static long max_ms;     /* --max-ms: an input slower than this fails */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs one input; false when it took longer than --max-ms (a loop that is
 * bounded but far too long, e.g. a walk probing unmapped memory). */
static bool run_timed(const uint8_t *buf, size_t len, const char *what,
		      double *seconds)
{
	double t0 = now();
	LLVMFuzzerTestOneInput(buf, len);
	*seconds = now() - t0;
	if (max_ms && *seconds * 1000 > (double)max_ms) {
		printf("FAIL  %s took %.3f s (over --max-ms %ld)\n", what,
		       *seconds, max_ms);
		return false;
	}
	return true;
}

static int replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	uint8_t buf[FUZZ_HEAP_PATCH_SIZE * FUZZ_HEAP_PATCHES_MAX];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	double seconds;
	return run_timed(buf, len, path, &seconds) ? 0 : 1;
}

static void save_input(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(buf, 1, len, f);
		fclose(f);
	}
}

static int write_seeds(const char *dir)
{
	uint8_t buf[8 * FUZZ_HEAP_PATCH_SIZE];
	for (int i = 0; i <= 16; i++) {
		size_t len = i ? random_input(buf) : 0;
		char path[4096];
		snprintf(path, sizeof(path), "%s/seed-%02d", dir, i);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(buf, 1, len, f) != len) {
			perror(path);
			if (f)
				fclose(f);
			return 1;
		}
		fclose(f);
	}
	printf("wrote 17 seeds to %s\n", dir);
	return 0;
}

int main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	bool smoke = false;
	const char *save_slowest = NULL;    /* --save-slowest FILE */
	long runs = 1500;
	int rc = 0, replayed = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--write-seeds") && i + 1 < argc)
			return write_seeds(argv[i + 1]);
		if (!strcmp(argv[i], "--smoke"))
			smoke = true;
		else if (!strcmp(argv[i], "--save-slowest") && i + 1 < argc)
			save_slowest = argv[++i];
		else if (!strcmp(argv[i], "--max-ms") && i + 1 < argc)
			max_ms = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			runs = strtol(argv[++i], NULL, 10);
		else {
			rc |= replay(argv[i]);
			replayed++;
		}
	}
	if (replayed)
		printf("ok    %s: replayed %d input(s)\n", name, replayed);
	if (!smoke)
		return rc;
	LLVMFuzzerTestOneInput(NULL, 0);
	uint8_t buf[8 * FUZZ_HEAP_PATCH_SIZE];
	double slowest = 0;
	long slowest_run = -1;
	for (long i = 0; i < runs; i++) {
		size_t len = random_input(buf);
		char what[32];
		double s;
		snprintf(what, sizeof(what), "run %ld", i);
		if (!run_timed(buf, len, what, &s)) {
			rc = 1;
			if (save_slowest)
				save_input(save_slowest, buf, len);
		}
		if (s > slowest) {
			slowest = s;
			slowest_run = i;
			if (save_slowest)
				save_input(save_slowest, buf, len);
		}
	}
	printf("%s  %s: the clean heap image and %ld patched ones analysed without a crash"
	       " (slowest: run %ld, %.3f s)\n", rc ? "FAIL" : "ok  ", name, runs,
	       slowest_run, slowest);
	return rc;
}
