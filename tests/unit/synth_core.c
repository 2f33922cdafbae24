/* Synthetic x86-64 ELF core files (see synth_core.h). */
#include "synth_core.h"

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct synth_load {
	uint64_t vaddr, memsz, filesz;
	uint32_t flags;
	uint8_t *data;
};

struct synth_core {
	struct synth_load *loads;
	size_t nloads;
	uint8_t *notes;
	size_t notes_len;
};

struct synth_core *synth_core_create(void)
{
	return calloc(1, sizeof(struct synth_core));
}

void synth_core_destroy(struct synth_core *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->nloads; i++)
		free(sc->loads[i].data);
	free(sc->loads);
	free(sc->notes);
	free(sc);
}

uint8_t synth_pattern(uint64_t addr)
{
	return (uint8_t)((addr * 7) >> 3);
}

size_t synth_add_load(struct synth_core *sc, uint64_t vaddr, uint64_t memsz,
		      uint64_t filesz, uint32_t flags, const void *data)
{
	sc->loads = realloc(sc->loads, (sc->nloads + 1) * sizeof(*sc->loads));
	struct synth_load *l = &sc->loads[sc->nloads];
	*l = (struct synth_load){ vaddr, memsz, filesz, flags,
				  malloc(filesz ? filesz : 1) };
	for (uint64_t i = 0; i < filesz; i++)
		l->data[i] = data ? ((const uint8_t *)data)[i] :
				    synth_pattern(vaddr + i);
	return sc->nloads++;
}

static void notes_append(struct synth_core *sc, const void *p, size_t n)
{
	size_t padded = (n + 3) & ~(size_t)3;
	sc->notes = realloc(sc->notes, sc->notes_len + padded);
	memset(sc->notes + sc->notes_len, 0, padded);
	memcpy(sc->notes + sc->notes_len, p, n);
	sc->notes_len += padded;
}

void synth_add_note(struct synth_core *sc, const char *name, uint32_t type,
		    const void *desc, size_t descsz)
{
	uint32_t hdr[3] = { (uint32_t)strlen(name) + 1, (uint32_t)descsz, type };
	notes_append(sc, hdr, sizeof(hdr));
	notes_append(sc, name, strlen(name) + 1);
	if (descsz)
		notes_append(sc, desc, descsz);
}

void synth_add_prstatus(struct synth_core *sc, int32_t tid, uint64_t pc,
			uint64_t sp, uint64_t fs_base)
{
	uint8_t d[336] = {0};
	memcpy(d + 32, &tid, 4);            /* pr_pid */
	memcpy(d + 112 + 16 * 8, &pc, 8);   /* rip */
	memcpy(d + 112 + 19 * 8, &sp, 8);   /* rsp */
	memcpy(d + 112 + 21 * 8, &fs_base, 8);
	synth_add_note(sc, "CORE", NT_PRSTATUS, d, sizeof(d));
}

void synth_add_prpsinfo(struct synth_core *sc, int32_t pid, const char *fname)
{
	uint8_t d[136] = {0};
	memcpy(d + 24, &pid, 4);
	strncpy((char *)d + 40, fname, 16);
	synth_add_note(sc, "CORE", NT_PRPSINFO, d, sizeof(d));
}

void synth_add_auxv(struct synth_core *sc, const uint64_t *pairs, size_t n)
{
	uint64_t *d = calloc(2 * n + 2, 8);
	memcpy(d, pairs, 16 * n);
	synth_add_note(sc, "CORE", NT_AUXV, d, 16 * n + 16);
	free(d);
}

void synth_add_nt_file(struct synth_core *sc, uint64_t page_size,
		       const struct synth_file_entry *entries, size_t n)
{
	size_t names = 0;
	for (size_t i = 0; i < n; i++)
		names += strlen(entries[i].path) + 1;
	size_t len = 16 + 24 * n + names;
	uint8_t *d = calloc(1, len);
	uint64_t count = n;
	memcpy(d, &count, 8);
	memcpy(d + 8, &page_size, 8);
	char *p = (char *)d + 16 + 24 * n;
	for (size_t i = 0; i < n; i++) {
		memcpy(d + 16 + 24 * i, &entries[i].start, 8);
		memcpy(d + 16 + 24 * i + 8, &entries[i].end, 8);
		memcpy(d + 16 + 24 * i + 16, &entries[i].pgoff, 8);
		strcpy(p, entries[i].path);
		p += strlen(entries[i].path) + 1;
	}
	synth_add_note(sc, "CORE", NT_FILE, d, len);
	free(d);
}

static uint64_t data_start(const struct synth_core *sc)
{
	uint64_t off = sizeof(Elf64_Ehdr) + (sc->nloads + 1) * sizeof(Elf64_Phdr) +
		       sc->notes_len;
	return (off + 15) & ~15ull;
}

uint64_t synth_load_offset(const struct synth_core *sc, size_t i)
{
	uint64_t off = data_start(sc);
	for (size_t j = 0; j < i; j++)
		off = (off + sc->loads[j].filesz + 15) & ~15ull;
	return off;
}

uint8_t *synth_core_build(const struct synth_core *sc, size_t *len)
{
	uint64_t total = synth_load_offset(sc, sc->nloads);
	uint8_t *out = calloc(1, total);
	Elf64_Ehdr eh = {
		.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64,
			     ELFDATA2LSB, EV_CURRENT, ELFOSABI_SYSV },
		.e_type = ET_CORE,
		.e_machine = EM_X86_64,
		.e_version = EV_CURRENT,
		.e_phoff = sizeof(Elf64_Ehdr),
		.e_ehsize = sizeof(Elf64_Ehdr),
		.e_phentsize = sizeof(Elf64_Phdr),
		.e_phnum = (Elf64_Half)(sc->nloads + 1),
	};
	memcpy(out, &eh, sizeof(eh));
	uint64_t note_off = sizeof(eh) + (sc->nloads + 1) * sizeof(Elf64_Phdr);
	Elf64_Phdr note = { .p_type = PT_NOTE, .p_offset = note_off,
			    .p_filesz = sc->notes_len, .p_align = 4 };
	memcpy(out + sizeof(eh), &note, sizeof(note));
	if (sc->notes_len)
		memcpy(out + note_off, sc->notes, sc->notes_len);
	for (size_t i = 0; i < sc->nloads; i++) {
		const struct synth_load *l = &sc->loads[i];
		uint64_t off = synth_load_offset(sc, i);
		Elf64_Phdr ph = { .p_type = PT_LOAD, .p_flags = l->flags,
				  .p_offset = off, .p_vaddr = l->vaddr,
				  .p_filesz = l->filesz, .p_memsz = l->memsz,
				  .p_align = 0x1000 };
		memcpy(out + sizeof(eh) + (i + 1) * sizeof(ph), &ph, sizeof(ph));
		memcpy(out + off, l->data, l->filesz);
	}
	*len = total;
	return out;
}

char *synth_write_temp(const void *bytes, size_t len)
{
	char *path = strdup("/tmp/pm_synth_coreXXXXXX");
	int fd = mkstemp(path);
	if (fd < 0) {
		free(path);
		return NULL;
	}
	if (len && write(fd, bytes, len) != (ssize_t)len) {
		close(fd);
		unlink(path);
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}
