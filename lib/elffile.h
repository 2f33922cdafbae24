/* ELF files on disk (executables, shared libraries, separate debug files),
 * opened with libelf over a read-only mmap: build-id, symbols, and the bytes
 * of loadable segments (cores lack read-only file-backed pages).
 * (Not named elf.h: libelf.h includes <elf.h>, which lib/ on the include path
 * would shadow.) */
#ifndef PM_ELF_H
#define PM_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct pm_elf;

/* Opens path; PM_ERR_NOT_FOUND if missing, PM_ERR_FORMAT if not a 64-bit
 * little-endian x86-64 ELF file. */
struct pm_error *pm_elf_open(const char *path, struct pm_elf **ret);
void pm_elf_close(struct pm_elf *elf);

const char *pm_elf_path(const struct pm_elf *elf);
/* ET_EXEC, ET_DYN, ET_CORE, ... */
unsigned pm_elf_type(const struct pm_elf *elf);
/* The GNU build-id note, or NULL (len 0). */
const uint8_t *pm_elf_build_id(const struct pm_elf *elf, size_t *len);
/* Link-time address of the first PT_LOAD, rounded down to its alignment
 * page: runtime base - this = load bias. */
uint64_t pm_elf_load_base(const struct pm_elf *elf);
/* The file bytes backing [vaddr, vaddr+len) (link-time addresses) from a
 * PT_LOAD's file part; false when any byte is outside one (e.g. .bss). */
bool pm_elf_read_vaddr(const struct pm_elf *elf, uint64_t vaddr, void *buf,
		       size_t len);
/* The file's bytes at [offset, offset+len), or NULL if beyond the file. */
const void *pm_elf_file_bytes(const struct pm_elf *elf, uint64_t offset,
			      size_t len);
/* A section by name: link-time address, size and contents (NULL contents for
 * NOBITS). False if absent. */
bool pm_elf_section(const struct pm_elf *elf, const char *name, uint64_t *addr,
		    uint64_t *size, const void **data);

enum pm_symtab_kind { PM_SYMTAB_DYNSYM = 1, PM_SYMTAB_SYMTAB = 2 };
/* Looks name up in the given tables (PM_SYMTAB_* bits); matches exactly, or
 * `name.lto_priv.N` / `name.constprop.N` style suffixes. Defined symbols only.
 * value is the link-time address. */
bool pm_elf_find_symbol(const struct pm_elf *elf, const char *name,
			unsigned tables, uint64_t *value, uint64_t *size,
			enum pm_symtab_kind *found_in);
bool pm_elf_has_symtab(const struct pm_elf *elf);

/* The GNU build-id in a block of ELF notes (a PT_NOTE segment or SHT_NOTE
 * section, e.g. read from target memory); returns its length, 0 if none.
 * *ret points into notes. */
size_t pm_elf_notes_build_id(const void *notes, size_t size,
			     const uint8_t **ret);

/* "<debug_dir>/.build-id/ab/cdef...debug" for a build-id (malloc'd). */
char *pm_elf_debug_path(const char *debug_dir, const uint8_t *build_id,
			size_t len);

#endif
