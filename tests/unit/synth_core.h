/* A builder of synthetic x86-64 ELF core files for unit and fuzz tests:
 * PT_LOAD segments with chosen contents and sizes, and the notes the core
 * source reads (NT_PRSTATUS, NT_PRPSINFO, NT_AUXV, NT_FILE, or raw ones).
 * Tests then corrupt the built bytes to make broken cores. */
#ifndef PM_SYNTH_CORE_H
#define PM_SYNTH_CORE_H

#include <stddef.h>
#include <stdint.h>

struct synth_core;

struct synth_file_entry {
	uint64_t start, end, pgoff;  /* pgoff in pages, as NT_FILE has it */
	const char *path;
};

struct synth_core *synth_core_create(void);
void synth_core_destroy(struct synth_core *sc);

/* A PT_LOAD at vaddr of memsz bytes; the first filesz are data (copied; if
 * data is NULL they are a pattern: byte i = (vaddr + i) * 7 >> 3). p_flags
 * are PF_R/W/X. Returns its index. */
size_t synth_add_load(struct synth_core *sc, uint64_t vaddr, uint64_t memsz,
		      uint64_t filesz, uint32_t flags, const void *data);
/* A raw note (name "CORE", "LINUX", ...). */
void synth_add_note(struct synth_core *sc, const char *name, uint32_t type,
		    const void *desc, size_t descsz);
void synth_add_prstatus(struct synth_core *sc, int32_t tid, uint64_t pc,
			uint64_t sp, uint64_t fs_base);
void synth_add_prpsinfo(struct synth_core *sc, int32_t pid, const char *fname);
/* pairs: n (type, value) pairs; AT_NULL is appended. */
void synth_add_auxv(struct synth_core *sc, const uint64_t *pairs, size_t n);
void synth_add_nt_file(struct synth_core *sc, uint64_t page_size,
		       const struct synth_file_entry *entries, size_t n);

/* The core's bytes (malloc'd). Layout: ELF header, program headers (the
 * PT_NOTE first, then the loads in order), the notes, then each load's
 * data at a 16-aligned offset. */
uint8_t *synth_core_build(const struct synth_core *sc, size_t *len);
/* Core-file offset of load i's data in the built image. */
uint64_t synth_load_offset(const struct synth_core *sc, size_t i);
/* The pattern byte synth_add_load uses at address addr. */
uint8_t synth_pattern(uint64_t addr);

/* Writes bytes to a new temporary file; returns its malloc'd path. */
char *synth_write_temp(const void *bytes, size_t len);

#endif
