/* A main() for fuzz_core.c when libFuzzer is not used (gcc builds, the unit
 * suite): replays the files given as arguments, or with no arguments runs a
 * deterministic smoke fuzz: thousands of mutations (byte flips, 64-bit
 * field overwrites, truncations) of two synthetic cores, with and without
 * NT_FILE (then names come from a link_map). `--write-seed FILE` and
 * `--write-seed-no-nt-file FILE` write those seeds (a libFuzzer corpus). */
#include "synth_core.h"

#include <elf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An executable image whose dynamic section leads, through r_debug, to a
 * link_map naming libc (for cores without NT_FILE). */
static void seed_exe(uint8_t *exe)
{
	memset(exe, 0, 0x2000);
	Elf64_Ehdr eh = { .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3,
				       ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
			  .e_type = ET_EXEC, .e_machine = EM_X86_64,
			  .e_phoff = 64, .e_phentsize = 56, .e_phnum = 4 };
	Elf64_Phdr ph[4] = {
		{ .p_type = PT_PHDR, .p_vaddr = 0x400040, .p_filesz = 224 },
		{ .p_type = PT_LOAD, .p_vaddr = 0x400000, .p_filesz = 0x2000,
		  .p_memsz = 0x2800, .p_flags = PF_R | PF_W },
		{ .p_type = PT_INTERP, .p_vaddr = 0x400200, .p_filesz = 28 },
		{ .p_type = PT_DYNAMIC, .p_vaddr = 0x401000, .p_memsz = 0x40 },
	};
	memcpy(exe, &eh, sizeof(eh));
	memcpy(exe + 64, ph, sizeof(ph));
	uint64_t dyn[4] = { DT_DEBUG, 0x401800, DT_NULL, 0 };
	memcpy(exe + 0x1000, dyn, sizeof(dyn));
	uint64_t r_debug[2] = { 1, 0x401900 };
	memcpy(exe + 0x1800, r_debug, sizeof(r_debug));
	uint64_t maps[2][5] = { { 0, 0x401a00, 0, 0x401928, 0 },
				{ 0x500000, 0x401a10, 0, 0, 0x401900 } };
	memcpy(exe + 0x1900, maps, sizeof(maps));
	strcpy((char *)exe + 0x1a10, "/lib/x86_64-linux-gnu/libc.so.6");
}

static uint8_t *seed_core(bool with_nt_file, size_t *len)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prpsinfo(sc, 100, "seed");
	synth_add_prstatus(sc, 100, 0x401000, 0x7ffffffde100, 0);
	synth_add_prstatus(sc, 101, 0x401000, 0x10100, 0);
	uint64_t auxv[] = { AT_SYSINFO_EHDR, 0x7ffff7fc4000, AT_PHDR, 0x400040,
			    AT_PHNUM, 4, AT_ENTRY, 0x400100 };
	synth_add_auxv(sc, auxv, 4);
	if (with_nt_file) {
		struct synth_file_entry files[] = {
			{ 0x400000, 0x402000, 0, "/etc/services" },
			{ 0x500000, 0x503000, 1, "/lib/x86_64-linux-gnu/libc.so.6" },
		};
		synth_add_nt_file(sc, 4096, files, 2);
	}
	uint8_t exe[0x2000], libc[0x1000] = {0};
	seed_exe(exe);
	FILE *f = fopen("/lib/x86_64-linux-gnu/libc.so.6", "rb");
	if (f) {
		if (fread(libc, 1, sizeof(libc), f) != sizeof(libc))
			memset(libc, 0, sizeof(libc));
		fclose(f);
	}
	synth_add_load(sc, 0x10000, 0x2000, 0x1000, PF_R | PF_W, NULL);
	synth_add_load(sc, 0x400000, 0x2000, 0x2000, PF_R | PF_W, exe);
	synth_add_load(sc, 0x500000, 0x3000, 0x1000, PF_R, libc);
	synth_add_load(sc, 0x600000, 0x21000, 0x1000, PF_R | PF_W, NULL);
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

static int write_seed(const char *path, bool with_nt_file)
{
	size_t len;
	uint8_t *seed = seed_core(with_nt_file, &len);
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
		return write_seed(argv[2], true);
	if (argc == 3 && strcmp(argv[1], "--write-seed-no-nt-file") == 0)
		return write_seed(argv[2], false);
	if (argc > 1) {
		int rc = 0;
		for (int i = 1; i < argc; i++)
			rc |= replay(argv[i]);
		printf("replayed %d input(s)\n", argc - 1);
		return rc;
	}
	int runs = 3000;
	for (int with_nt_file = 1; with_nt_file >= 0; with_nt_file--) {
		size_t len;
		uint8_t *seed = seed_core(with_nt_file, &len);
		uint8_t *work = malloc(len);
		LLVMFuzzerTestOneInput(seed, len);
		for (int i = 0; i < runs; i++) {
			memcpy(work, seed, len);
			size_t used;
			mutate(work, len, &used);
			LLVMFuzzerTestOneInput(work, used);
		}
		printf("ok    %d mutations of a synthetic core %s opened and read without a crash\n",
		       runs, with_nt_file ? "with NT_FILE" :
		       "without NT_FILE (names from its link_map)");
		free(work);
		free(seed);
	}
	return 0;
}
