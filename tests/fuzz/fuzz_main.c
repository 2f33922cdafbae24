/* A main() for fuzz_core.c when libFuzzer is not used (gcc builds, the unit
 * suite): replays the files given as arguments, or with no arguments runs a
 * deterministic smoke fuzz: thousands of mutations (byte flips, 64-bit
 * field overwrites, truncations) of synthetic cores. `--write-seed FILE`
 * writes the synthetic core used as the seed (a libFuzzer corpus start). */
#include "synth_core.h"

#include <elf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: reproducible across runs and machines. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint8_t *seed_core(size_t *len)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prpsinfo(sc, 100, "seed");
	synth_add_prstatus(sc, 100, 0x401000, 0x7ffffffde100, 0);
	synth_add_prstatus(sc, 101, 0x401000, 0x10100, 0);
	uint64_t auxv[] = { AT_SYSINFO_EHDR, 0x7ffff7fc4000, AT_PHDR, 0x400040,
			    AT_PHNUM, 2, AT_ENTRY, 0x400100 };
	synth_add_auxv(sc, auxv, 4);
	struct synth_file_entry files[] = {
		{ 0x400000, 0x402000, 0, "/etc/services" },
		{ 0x500000, 0x503000, 1, "/lib/x86_64-linux-gnu/libc.so.6" },
	};
	synth_add_nt_file(sc, 4096, files, 2);
	synth_add_load(sc, 0x10000, 0x2000, 0x1000, PF_R | PF_W, NULL);
	synth_add_load(sc, 0x400000, 0x2000, 0x800, PF_R, NULL);
	synth_add_load(sc, 0x500000, 0x1000, 0, PF_R | PF_X, NULL);
	synth_add_load(sc, 0x7ffff7fc4000, 0x2000, 0x2000, PF_R | PF_X, NULL);
	synth_add_load(sc, 0x7ffffffde000, 0x1000, 0x1000, PF_R | PF_W, NULL);
	uint8_t *bytes = synth_core_build(sc, len);
	synth_core_destroy(sc);
	return bytes;
}

static void mutate(uint8_t *b, size_t len, size_t *out_len)
{
	*out_len = len;
	int n = 1 + (int)(rng() % 4);
	for (int i = 0; i < n; i++) {
		switch (rng() % 4) {
		case 0:
			b[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
			break;
		case 1: {
			/* Overwrite an 8-byte-aligned field in the headers or
			 * notes, where the counts and sizes live. */
			size_t at = (rng() % (len < 1024 ? len : 1024)) & ~(size_t)7;
			uint64_t v = rng() % 3 == 0 ? ~0ull : rng() % 3 == 0 ? 0 : rng();
			if (at + 8 <= len)
				memcpy(b + at, &v, 8);
			break;
		}
		case 2: {
			size_t at = (rng() % (len < 1024 ? len : 1024)) & ~(size_t)3;
			uint32_t v = (uint32_t)(rng() % 3 == 0 ? 0xffffffffu : rng() % 512);
			if (at + 4 <= len)
				memcpy(b + at, &v, 4);
			break;
		}
		default:
			*out_len = rng() % len;
			break;
		}
	}
}

static int replay(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	size_t cap = 1 << 20, len = 0, n;
	uint8_t *data = malloc(cap);
	while ((n = fread(data + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			data = realloc(data, cap *= 2);
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	return 0;
}

static int write_seed(const char *path)
{
	size_t len;
	uint8_t *seed = seed_core(&len);
	FILE *f = fopen(path, "wb");
	bool ok = f && fwrite(seed, 1, len, f) == len;
	if (f)
		fclose(f);
	free(seed);
	printf("%s %s (%zu bytes)\n", ok ? "wrote" : "cannot write", path, len);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-seed") == 0)
		return write_seed(argv[2]);
	if (argc > 1) {
		int rc = 0;
		for (int i = 1; i < argc; i++)
			rc |= replay(argv[i]);
		printf("replayed %d input(s)\n", argc - 1);
		return rc;
	}
	size_t len;
	uint8_t *seed = seed_core(&len);
	uint8_t *work = malloc(len);
	int runs = 3000;
	LLVMFuzzerTestOneInput(seed, len);
	for (int i = 0; i < runs; i++) {
		memcpy(work, seed, len);
		size_t used;
		mutate(work, len, &used);
		LLVMFuzzerTestOneInput(work, used);
	}
	printf("ok    %d mutated synthetic cores opened and read without a crash\n",
	       runs);
	free(work);
	free(seed);
	return 0;
}
