/* ELF files on disk through libelf over a read-only mmap: the build-id, the
 * file bytes behind link-time addresses, and symbol lookup in .dynsym/.symtab
 * with a lazily built name index (the walkers look up a few dozen names). */
#include "elffile.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds on what we accept from a file we did not write. */
#define PM_ELF_MAX_SYMBOLS (1u << 24)
#define PM_ELF_MAX_NOTES 4096

struct pm_elf_sym {
	const char *name;
	size_t key_len;             /* length of the name before its clone suffix */
	uint64_t value, size;
};

/* One symbol table and its index, sorted by (key, name). */
struct pm_elf_symtab {
	bool present;
	bool indexed;
	size_t count;
	struct pm_elf_sym *syms;
	Elf_Scn *scn;
	size_t strndx;
};

struct pm_elf {
	char *path;
	int fd;
	const uint8_t *map;
	size_t map_size;
	Elf *elf;
	GElf_Ehdr ehdr;
	size_t phnum;
	uint8_t build_id[64];
	size_t build_id_len;
	struct pm_elf_symtab dynsym, symtab;
};

static struct pm_error *elf_libelf_error(const char *path, const char *what)
{
	return pm_error_format(PM_ERR_FORMAT, "%s: %s: %s", path, what,
			       elf_errmsg(-1));
}

size_t pm_elf_notes_build_id(const void *notes, size_t size,
			     const uint8_t **ret)
{
	const uint8_t *data = notes;
	size_t off = 0;
	for (unsigned n = 0; n < PM_ELF_MAX_NOTES && size >= 12 &&
			     off <= size - 12; n++) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, data + off, 4);
		memcpy(&descsz, data + off + 4, 4);
		memcpy(&type, data + off + 8, 4);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
		uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ull);
		if (desc_off + descsz > size)
			return 0;
		if (type == NT_GNU_BUILD_ID && namesz == 4 &&
		    memcmp(data + name_off, "GNU", 4) == 0 && descsz > 0 &&
		    descsz <= 64) {
			*ret = data + desc_off;
			return descsz;
		}
		off = next;
	}
	return 0;
}

/* Copies the build-id note's bytes into e (the map outlives nothing). */
static void elf_scan_notes(struct pm_elf *e, const uint8_t *data, size_t size)
{
	const uint8_t *id;
	size_t len = pm_elf_notes_build_id(data, size, &id);
	if (len) {
		memcpy(e->build_id, id, len);
		e->build_id_len = len;
	}
}

/* Reads the GNU build-id from SHT_NOTE sections (or PT_NOTE segments when a
 * file has no section headers). */
static void elf_find_build_id(struct pm_elf *e)
{
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e->elf, scn)) != NULL) {
		GElf_Shdr shdr;
		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_NOTE)
			continue;
		const void *bytes = pm_elf_file_bytes(e, shdr.sh_offset,
						      shdr.sh_size);
		if (bytes)
			elf_scan_notes(e, bytes, shdr.sh_size);
		if (e->build_id_len)
			return;
	}
	for (size_t i = 0; i < e->phnum; i++) {
		GElf_Phdr phdr;
		if (!gelf_getphdr(e->elf, (int)i, &phdr) ||
		    phdr.p_type != PT_NOTE)
			continue;
		const void *bytes = pm_elf_file_bytes(e, phdr.p_offset,
						      phdr.p_filesz);
		if (bytes)
			elf_scan_notes(e, bytes, phdr.p_filesz);
		if (e->build_id_len)
			return;
	}
}

static void elf_find_symtabs(struct pm_elf *e)
{
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e->elf, scn)) != NULL) {
		GElf_Shdr shdr;
		if (!gelf_getshdr(scn, &shdr))
			continue;
		struct pm_elf_symtab *tab;
		if (shdr.sh_type == SHT_DYNSYM)
			tab = &e->dynsym;
		else if (shdr.sh_type == SHT_SYMTAB)
			tab = &e->symtab;
		else
			continue;
		if (tab->present || shdr.sh_entsize != sizeof(Elf64_Sym) ||
		    !pm_elf_file_bytes(e, shdr.sh_offset, shdr.sh_size))
			continue;
		tab->present = true;
		tab->scn = scn;
		tab->strndx = shdr.sh_link;
		tab->count = shdr.sh_size / sizeof(Elf64_Sym);
		if (tab->count > PM_ELF_MAX_SYMBOLS)
			tab->count = PM_ELF_MAX_SYMBOLS;
	}
}

static struct pm_error *elf_check_header(struct pm_elf *e)
{
	if (elf_kind(e->elf) != ELF_K_ELF)
		return pm_error_format(PM_ERR_FORMAT, "%s: not an ELF file",
				       e->path);
	if (!gelf_getehdr(e->elf, &e->ehdr))
		return elf_libelf_error(e->path, "bad ELF header");
	if (e->ehdr.e_ident[EI_CLASS] != ELFCLASS64 ||
	    e->ehdr.e_ident[EI_DATA] != ELFDATA2LSB ||
	    e->ehdr.e_machine != EM_X86_64)
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: not a 64-bit little-endian x86-64 ELF file",
				       e->path);
	if (elf_getphdrnum(e->elf, &e->phnum) != 0)
		e->phnum = 0;
	return NULL;
}

struct pm_error *pm_elf_open(const char *path, struct pm_elf **ret)
{
	elf_version(EV_CURRENT);
	struct pm_elf *e = calloc(1, sizeof(*e));
	if (!e)
		return &pm_error_no_memory;
	e->fd = -1;
	struct pm_error *err = NULL;
	e->path = strdup(path);
	if (!e->path) {
		err = &pm_error_no_memory;
		goto fail;
	}
	e->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (e->fd < 0) {
		err = pm_error_errno(errno, "%s", path);
		goto fail;
	}
	struct stat st;
	if (fstat(e->fd, &st) < 0) {
		err = pm_error_errno(errno, "%s", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
		err = pm_error_format(PM_ERR_FORMAT, "%s: not an ELF file",
				      path);
		goto fail;
	}
	e->map_size = (size_t)st.st_size;
	void *map = mmap(NULL, e->map_size, PROT_READ, MAP_PRIVATE, e->fd, 0);
	if (map == MAP_FAILED) {
		err = pm_error_errno(errno, "%s: mmap", path);
		goto fail;
	}
	e->map = map;
	e->elf = elf_memory((char *)map, e->map_size);
	if (!e->elf) {
		err = elf_libelf_error(path, "cannot read");
		goto fail;
	}
	err = elf_check_header(e);
	if (err)
		goto fail;
	elf_find_build_id(e);
	elf_find_symtabs(e);
	*ret = e;
	return NULL;
fail:
	pm_elf_close(e);
	return err;
}

void pm_elf_close(struct pm_elf *e)
{
	if (!e)
		return;
	free(e->dynsym.syms);
	free(e->symtab.syms);
	if (e->elf)
		elf_end(e->elf);
	if (e->map)
		munmap((void *)e->map, e->map_size);
	if (e->fd >= 0)
		close(e->fd);
	free(e->path);
	free(e);
}

const char *pm_elf_path(const struct pm_elf *e)
{
	return e->path;
}

unsigned pm_elf_type(const struct pm_elf *e)
{
	return e->ehdr.e_type;
}

const uint8_t *pm_elf_build_id(const struct pm_elf *e, size_t *len)
{
	*len = e->build_id_len;
	return e->build_id_len ? e->build_id : NULL;
}

uint64_t pm_elf_load_base(const struct pm_elf *e)
{
	for (size_t i = 0; i < e->phnum; i++) {
		GElf_Phdr phdr;
		if (!gelf_getphdr(e->elf, (int)i, &phdr) ||
		    phdr.p_type != PT_LOAD)
			continue;
		uint64_t align = phdr.p_align;
		/* An alignment that is not a power of two is nonsense: fall
		 * back to pages, the granularity the kernel maps with. */
		if (align < 4096 || (align & (align - 1)))
			align = 4096;
		return phdr.p_vaddr & ~(align - 1);
	}
	return 0;
}

const void *pm_elf_file_bytes(const struct pm_elf *e, uint64_t offset,
			      size_t len)
{
	if (offset > e->map_size || len > e->map_size - offset)
		return NULL;
	return e->map + offset;
}

/* True if an allocated NOBITS section (other than TLS, whose addresses
 * overlap the image) covers part of [vaddr, vaddr+len): in a separate debug
 * file .text & co are NOBITS, and their PT_LOAD file bytes are not code. */
static bool elf_range_is_nobits(const struct pm_elf *e, uint64_t vaddr,
				size_t len)
{
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e->elf, scn)) != NULL) {
		GElf_Shdr shdr;
		if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_NOBITS ||
		    !(shdr.sh_flags & SHF_ALLOC) || (shdr.sh_flags & SHF_TLS))
			continue;
		if (vaddr < shdr.sh_addr + shdr.sh_size &&
		    shdr.sh_addr < vaddr + len)
			return true;
	}
	return false;
}

bool pm_elf_read_vaddr(const struct pm_elf *e, uint64_t vaddr, void *buf,
		       size_t len)
{
	if (len == 0 || vaddr + len < vaddr)
		return len == 0;
	for (size_t i = 0; i < e->phnum; i++) {
		GElf_Phdr phdr;
		if (!gelf_getphdr(e->elf, (int)i, &phdr) ||
		    phdr.p_type != PT_LOAD)
			continue;
		if (vaddr < phdr.p_vaddr || vaddr - phdr.p_vaddr >= phdr.p_filesz ||
		    len > phdr.p_filesz - (vaddr - phdr.p_vaddr))
			continue;
		const void *src = pm_elf_file_bytes(
			e, phdr.p_offset + (vaddr - phdr.p_vaddr), len);
		if (!src || elf_range_is_nobits(e, vaddr, len))
			return false;
		memcpy(buf, src, len);
		return true;
	}
	return false;
}

bool pm_elf_section(const struct pm_elf *e, const char *name, uint64_t *addr,
		    uint64_t *size, const void **data)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e->elf, &shstrndx) != 0)
		return false;
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e->elf, scn)) != NULL) {
		GElf_Shdr shdr;
		if (!gelf_getshdr(scn, &shdr))
			continue;
		const char *sname = elf_strptr(e->elf, shstrndx, shdr.sh_name);
		if (!sname || strcmp(sname, name) != 0)
			continue;
		if (addr)
			*addr = shdr.sh_addr;
		if (size)
			*size = shdr.sh_size;
		if (data)
			*data = shdr.sh_type == SHT_NOBITS ? NULL :
				pm_elf_file_bytes(e, shdr.sh_offset,
						  shdr.sh_size);
		return true;
	}
	return false;
}

bool pm_elf_has_symtab(const struct pm_elf *e)
{
	return e->symtab.present && e->symtab.count > 1;
}

/* The part of a symbol name that clones share: "arenas.lto_priv.0" and
 * "foo.constprop.3" index under "arenas" and "foo". */
static size_t elf_symbol_key_len(const char *name)
{
	const char *dot = strchr(name + (name[0] != '\0'), '.');
	return dot ? (size_t)(dot - name) : strlen(name);
}

static int elf_sym_compare(const void *a, const void *b)
{
	const struct pm_elf_sym *x = a, *y = b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->name, y->name, n);
	if (c)
		return c;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void elf_symtab_index(const struct pm_elf *e, struct pm_elf_symtab *tab)
{
	tab->indexed = true;
	Elf_Data *data = elf_getdata(tab->scn, NULL);
	if (!data || !tab->count)
		return;
	size_t n = data->d_size / sizeof(Elf64_Sym);
	if (n > tab->count)
		n = tab->count;
	tab->syms = calloc(n, sizeof(*tab->syms));
	if (!tab->syms)
		return;
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		GElf_Sym sym;
		if (!gelf_getsym(data, (int)i, &sym) ||
		    sym.st_shndx == SHN_UNDEF || sym.st_name == 0)
			continue;
		int type = GELF_ST_TYPE(sym.st_info);
		if (type == STT_SECTION || type == STT_FILE)
			continue;
		const char *name = elf_strptr(e->elf, tab->strndx, sym.st_name);
		if (!name || !*name)
			continue;
		tab->syms[used++] = (struct pm_elf_sym){
			.name = name,
			.key_len = elf_symbol_key_len(name),
			.value = sym.st_value,
			.size = sym.st_size,
		};
	}
	tab->count = used;
	if (used)
		qsort(tab->syms, used, sizeof(*tab->syms), elf_sym_compare);
}

/* How well a symbol name matches the wanted name: 3 exact, 2 an LTO
 * rename, 1 another clone suffix; 0 no match. ".cold" parts are fragments
 * of a function, not the function, so they never match. */
static int elf_match_rank(const char *sym, const char *name, size_t len)
{
	if (strncmp(sym, name, len) != 0)
		return 0;
	if (sym[len] == '\0')
		return 3;
	if (sym[len] != '.' || strstr(sym + len, ".cold"))
		return 0;
	if (strncmp(sym + len, ".lto_priv.", 10) == 0)
		return 2;
	return 1;
}

static bool elf_symtab_lookup(const struct pm_elf *e,
			      struct pm_elf_symtab *tab, const char *name,
			      uint64_t *value, uint64_t *size)
{
	if (!tab->present)
		return false;
	if (!tab->indexed)
		elf_symtab_index(e, tab);
	if (!tab->syms)
		return false;
	size_t len = strlen(name);
	size_t key_len = elf_symbol_key_len(name);
	struct pm_elf_sym probe = { .name = name, .key_len = key_len };
	/* Lower bound on the key alone (strcmp tie-break excluded). */
	size_t lo = 0, hi = tab->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_elf_sym *s = &tab->syms[mid];
		size_t n = s->key_len < key_len ? s->key_len : key_len;
		int c = memcmp(s->name, probe.name, n);
		if (c == 0 && s->key_len != key_len)
			c = s->key_len < key_len ? -1 : 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	int best = 0;
	for (size_t i = lo; i < tab->count; i++) {
		const struct pm_elf_sym *s = &tab->syms[i];
		if (s->key_len != key_len || memcmp(s->name, name, key_len))
			break;
		int rank = elf_match_rank(s->name, name, len);
		if (rank > best) {
			best = rank;
			*value = s->value;
			*size = s->size;
		}
	}
	return best > 0;
}

bool pm_elf_find_symbol(const struct pm_elf *elf, const char *name,
			unsigned tables, uint64_t *value, uint64_t *size,
			enum pm_symtab_kind *found_in)
{
	/* The index is a cache: building it does not change what the
	 * (heap-allocated, never const-defined) object describes. */
	struct pm_elf *e = (struct pm_elf *)elf;
	uint64_t v = 0, s = 0;
	enum pm_symtab_kind kind;
	if ((tables & PM_SYMTAB_DYNSYM) &&
	    elf_symtab_lookup(e, &e->dynsym, name, &v, &s))
		kind = PM_SYMTAB_DYNSYM;
	else if ((tables & PM_SYMTAB_SYMTAB) &&
		 elf_symtab_lookup(e, &e->symtab, name, &v, &s))
		kind = PM_SYMTAB_SYMTAB;
	else
		return false;
	if (value)
		*value = v;
	if (size)
		*size = s;
	if (found_in)
		*found_in = kind;
	return true;
}

char *pm_elf_debug_path(const char *debug_dir, const uint8_t *build_id,
			size_t len)
{
	if (!debug_dir)
		debug_dir = "/usr/lib/debug";
	if (len < 2 || len > 64)
		return NULL;
	char hex[129];
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", build_id[i]);
	char *path;
	if (asprintf(&path, "%s/.build-id/%.2s/%s.debug", debug_dir, hex,
		     hex + 2) < 0)
		return NULL;
	return path;
}
