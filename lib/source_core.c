/* The core-file memory source: an x86-64 ELF core (from the kernel or gdb's
 * gcore) mmap'd read-only. Regions come from PT_LOAD and NT_FILE, threads from
 * NT_PRSTATUS; bytes the core lacks are read from the mapped files on disk
 * after a build-id check, so "not saved" and "file missing" stay distinct. */
/*
 * What the two kinds of core hold (checked on Linux 6.x, gdb 13):
 * - kernel: one PT_LOAD per mapping, in address order, PROT_NONE ones too
 *   (p_flags 0, p_filesz 0), with [vvar], [vvar_vclock] and [vsyscall];
 *   read-only file mappings are saved only for an ELF file's header page
 *   (p_filesz 0x1000 < p_memsz) or not at all; notes come first.
 * - gcore: leaves out read-only file mappings it does not dump (program
 *   text, r--s files) and [vvar]; writes PROT_NONE mappings as PF_R with
 *   zero bytes and [vsyscall] as r-x; notes come last, so a truncated gcore
 *   loses them first (then names come from ld.so's link_map).
 * Neither records shared-ness ('s'), inode or pseudo paths: [heap],
 * [stack], [vdso], [vvar] and [vsyscall] are inferred (core_label_pseudo).
 */
#include "bytes.h"
#include "pymortem.h"
#include "source.h"
#include "elffile.h"
#include "strbuf.h"
#include "vector.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Caps on counts read from the core: beyond them the core is nonsense. */
#define CORE_MAX_NOTES 100000
#define CORE_MAX_FILE_ENTRIES 1000000
#define CORE_MAX_THREADS 100000
#define CORE_MAX_AUXV 512
#define CORE_MAX_HEADER_NOTES 4096
#define CORE_MAX_EXE_PHDRS 64
#define CORE_MAX_DYNAMIC 4096
#define CORE_MAX_LINK_MAPS 4096

/* x86-64 struct elf_prstatus / elf_prpsinfo and user_regs_struct layout. */
enum {
	PRSTATUS_PID = 32,
	PRSTATUS_REG = 112,
	PRSTATUS_MIN_SIZE = PRSTATUS_REG + 27 * 8,
	REG_RIP = 16,
	REG_RSP = 19,
	REG_FS_BASE = 21,
	PRPSINFO_PID = 24,
	PRPSINFO_FNAME = 40,
	PRPSINFO_MIN_SIZE = PRPSINFO_FNAME + 16,
};

#define VSYSCALL_START 0xffffffffff600000ull
/* x86-64 page size: mappings end on page boundaries. */
#define CORE_PAGE 4096u
/* x86-64 brk randomisation: the heap starts within 32 MiB (Linux < 6.9)
 * or 1 GiB (6.9+, 64-bit tasks) after the end of the executable's bss. */
#define BRK_RANDOM_RANGE 0x40000000ull

/* A file named by NT_FILE, opened on the first read the core cannot serve. */
struct core_file {
	char *path;
	enum { FILE_UNCHECKED, FILE_OK, FILE_MISSING, FILE_MISMATCH } state;
	bool is_executable;
	bool has_header;
	uint64_t header_addr;       /* where its offset 0 is mapped */
	const char *why;            /* for FILE_MISSING/MISMATCH messages */
	char why_buf[160];          /* a why with the system's reason in it */
	const char *open_path;      /* path actually opened (may be options' exe) */
	char *sysroot_path;         /* its path under the sysroot, when there is one */
	int fd;
	const uint8_t *map;
	size_t size;
};

/* One piece of the address space (= one region), sorted by start. */
struct core_segment {
	uint64_t start, end;
	uint64_t core_offset;       /* core file offset of start's byte */
	uint64_t saved;             /* bytes from start present in the core file */
	uint64_t declared;          /* bytes from start p_filesz claims (truncation) */
	uint32_t perms;
	int32_t file;               /* index in files, or -1 if anonymous */
	uint64_t file_offset;
	const char *pseudo;         /* "[heap]", "[stack]", ... or NULL */
	bool gap;                   /* only in NT_FILE: perms unknown to the core */
	enum pm_region_label label;
};

struct core_source {
	struct pm_source base;
	struct pm_target *target;   /* for warnings; set once created */
	char *executable;           /* options->executable, copied */
	int fd;
	const uint8_t *map;
	size_t size;
	struct core_segment *segs;
	size_t nsegs, segs_cap;
	struct core_file *files;
	size_t nfiles;
};

/* What the notes said, pointing into the mapped core. */
struct core_thread_note {
	int32_t tid;
	const uint8_t *regs;
};

struct core_notes {
	bool has_prpsinfo;
	int32_t pid;
	char fname[17];
	struct core_thread_note *threads;
	size_t nthreads, threads_cap;
	const uint8_t *auxv;
	size_t auxv_size;
	const uint8_t *nt_file;
	size_t nt_file_size;
};

/* An NT_FILE entry. */
struct core_file_entry {
	uint64_t start, end, offset;
	const char *name;
	int32_t file;               /* index in core_source.files */
};

/* ---- Header checks ---- */

static const char *core_machine_name(unsigned machine)
{
	switch (machine) {
	case EM_386: return "i386";
	case EM_AARCH64: return "aarch64";
	case EM_ARM: return "arm";
	case EM_PPC64: return "ppc64";
	case EM_PPC: return "ppc";
	case EM_S390: return "s390";
	case EM_RISCV: return "riscv";
	case EM_MIPS: return "mips";
	case EM_SPARCV9: return "sparcv9";
	case EM_LOONGARCH: return "loongarch";
	default: return NULL;
	}
}

static struct pm_error *core_check_ehdr(const char *path, const uint8_t *map,
					size_t size, Elf64_Ehdr *ret)
{
	if (size == 0)
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: not an ELF file (empty file)", path);
	if (size < EI_NIDENT || memcmp(map, ELFMAG, SELFMAG) != 0)
		return pm_error_format(PM_ERR_FORMAT, "%s: not an ELF file",
				       path);
	if (map[EI_DATA] != ELFDATA2LSB)
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "%s: big-endian ELF files are not supported",
				       path);
	/* e_type and e_machine sit at the same offsets in both classes. */
	if (size < 20)
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: ELF header truncated (%zu bytes)",
				       path, size);
	uint16_t type, machine;
	memcpy(&type, map + 16, 2);
	memcpy(&machine, map + 18, 2);
	if (type != ET_CORE) {
		const char *kind = type == ET_DYN ? "ET_DYN, a shared library or PIE" :
				   type == ET_EXEC ? "ET_EXEC, an executable" :
				   type == ET_REL ? "ET_REL, an object file" :
				   "unknown e_type";
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: is an ELF file but not a core dump (%s)",
				       path, kind);
	}
	if (map[EI_CLASS] == ELFCLASS32)
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "%s: core of a 32-bit process is not supported",
				       path);
	if (map[EI_CLASS] != ELFCLASS64)
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: bad ELF class %u", path, map[EI_CLASS]);
	if (machine != EM_X86_64) {
		const char *name = core_machine_name(machine);
		if (name)
			return pm_error_format(PM_ERR_UNSUPPORTED,
					       "%s: core of a foreign architecture (%s); only x86-64 is supported",
					       path, name);
		return pm_error_format(PM_ERR_UNSUPPORTED,
				       "%s: core of a foreign architecture (e_machine %u); only x86-64 is supported",
				       path, machine);
	}
	if (size < sizeof(Elf64_Ehdr))
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: ELF header truncated (%zu bytes)",
				       path, size);
	memcpy(ret, map, sizeof(*ret));
	return NULL;
}

/* The program header count, honouring PN_XNUM (more than 65534 mappings:
 * the real count is in section header 0's sh_info). */
static struct pm_error *core_phdrs(const char *path, const uint8_t *map,
				   size_t size, const Elf64_Ehdr *ehdr,
				   size_t *ret)
{
	uint64_t phnum = ehdr->e_phnum;
	if (phnum == PN_XNUM) {
		if (ehdr->e_shoff == 0 || ehdr->e_shoff > size ||
		    size - ehdr->e_shoff < sizeof(Elf64_Shdr))
			return pm_error_format(PM_ERR_FORMAT,
					       "%s: e_phnum is PN_XNUM but section header 0 at 0x%llx is beyond the file",
					       path, (unsigned long long)ehdr->e_shoff);
		Elf64_Shdr sh0;
		memcpy(&sh0, map + ehdr->e_shoff, sizeof(sh0));
		phnum = sh0.sh_info;
	}
	if (phnum == 0)
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: core has no program headers", path);
	if (ehdr->e_phentsize != sizeof(Elf64_Phdr))
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: bad program header size %u (expected %zu)",
				       path, ehdr->e_phentsize, sizeof(Elf64_Phdr));
	if (ehdr->e_phoff > size ||
	    phnum > (size - ehdr->e_phoff) / sizeof(Elf64_Phdr))
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: %llu program headers at offset 0x%llx run beyond the end of the file (%zu bytes): truncated or corrupt core",
				       path, (unsigned long long)phnum,
				       (unsigned long long)ehdr->e_phoff, size);
	*ret = phnum;
	return NULL;
}

static Elf64_Phdr core_phdr(const uint8_t *map, const Elf64_Ehdr *ehdr,
			    size_t i)
{
	Elf64_Phdr ph;
	memcpy(&ph, map + ehdr->e_phoff + i * sizeof(ph), sizeof(ph));
	return ph;
}

/* ---- Notes ---- */

static struct pm_error *core_note_add_thread(struct core_notes *notes,
					     const uint8_t *desc)
{
	if (notes->nthreads >= CORE_MAX_THREADS)
		return NULL;
	if (notes->nthreads == notes->threads_cap) {
		size_t cap = notes->threads_cap ? 2 * notes->threads_cap : 16;
		void *p = realloc(notes->threads, cap * sizeof(*notes->threads));
		if (!p)
			return &pm_error_no_memory;
		notes->threads = p;
		notes->threads_cap = cap;
	}
	notes->threads[notes->nthreads++] = (struct core_thread_note){
		.tid = (int32_t)pm_load_u32(desc + PRSTATUS_PID),
		.regs = desc + PRSTATUS_REG,
	};
	return NULL;
}

static struct pm_error *core_note_one(const char *path, struct core_notes *notes,
				      const char *name, uint32_t type,
				      const uint8_t *desc, uint32_t descsz,
				      uint64_t offset)
{
	if (strcmp(name, "CORE") != 0)
		return NULL;
	switch (type) {
	case NT_PRSTATUS:
		if (descsz < PRSTATUS_MIN_SIZE)
			return pm_error_format(PM_ERR_FORMAT,
					       "%s: NT_PRSTATUS note at offset 0x%llx has %u bytes, expected at least %d",
					       path, (unsigned long long)offset,
					       descsz, PRSTATUS_MIN_SIZE);
		return core_note_add_thread(notes, desc);
	case NT_PRPSINFO:
		if (descsz < PRPSINFO_MIN_SIZE)
			return pm_error_format(PM_ERR_FORMAT,
					       "%s: NT_PRPSINFO note at offset 0x%llx has %u bytes, expected at least %d",
					       path, (unsigned long long)offset,
					       descsz, PRPSINFO_MIN_SIZE);
		notes->has_prpsinfo = true;
		notes->pid = (int32_t)pm_load_u32(desc + PRPSINFO_PID);
		memcpy(notes->fname, desc + PRPSINFO_FNAME, 16);
		notes->fname[16] = '\0';
		return NULL;
	case NT_AUXV:
		notes->auxv = desc;
		notes->auxv_size = descsz;
		return NULL;
	case NT_FILE:
		notes->nt_file = desc;
		notes->nt_file_size = descsz;
		return NULL;
	default:
		return NULL;
	}
}

/* Walks the notes in [data, data+size) (a PT_NOTE segment's bytes). */
static struct pm_error *core_parse_notes(const char *path, const uint8_t *data,
					 size_t size, uint64_t file_offset,
					 struct core_notes *notes)
{
	size_t off = 0;
	for (unsigned n = 0; n < CORE_MAX_NOTES && size - off >= 12; n++) {
		uint32_t namesz = pm_load_u32(data + off);
		uint32_t descsz = pm_load_u32(data + off + 4);
		uint32_t type = pm_load_u32(data + off + 8);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
		uint64_t end = desc_off + (((uint64_t)descsz + 3) & ~3ull);
		if (desc_off > size || descsz > size - desc_off)
			return pm_error_format(PM_ERR_FORMAT,
					       "%s: bad note at offset 0x%llx: name size %u and data size %u run past the end of its PT_NOTE segment",
					       path,
					       (unsigned long long)(file_offset + off),
					       namesz, descsz);
		char name[8] = "";
		if (namesz > 0 && namesz <= sizeof(name) &&
		    data[name_off + namesz - 1] == '\0')
			memcpy(name, data + name_off, namesz);
		struct pm_error *err = core_note_one(path, notes, name, type,
						     data + desc_off, descsz,
						     file_offset + off);
		if (err)
			return err;
		if (end >= size)
			break;
		off = end;
	}
	return NULL;
}

/* ---- Segments ---- */

static struct pm_error *core_push_segment(struct core_source *src,
					  const struct core_segment *seg)
{
	if (src->nsegs == src->segs_cap) {
		size_t cap = src->segs_cap ? 2 * src->segs_cap : 64;
		void *p = realloc(src->segs, cap * sizeof(*src->segs));
		if (!p)
			return &pm_error_no_memory;
		src->segs = p;
		src->segs_cap = cap;
	}
	src->segs[src->nsegs++] = *seg;
	return NULL;
}

static int core_segment_compare(const void *a, const void *b)
{
	const struct core_segment *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	/* Equal starts: keep file order (core_offset grows with it). */
	return x->core_offset < y->core_offset ? -1 :
	       x->core_offset > y->core_offset;
}

static void core_sort_segments(struct core_source *src)
{
	if (src->nsegs > 1)
		qsort(src->segs, src->nsegs, sizeof(*src->segs),
		      core_segment_compare);
}

static uint32_t core_perms(uint32_t p_flags)
{
	return ((p_flags & PF_R) ? PM_PERM_R : 0) |
	       ((p_flags & PF_W) ? PM_PERM_W : 0) |
	       ((p_flags & PF_X) ? PM_PERM_X : 0);
}

/* Segments from the PT_LOADs; returns the byte count the headers claim the
 * file has (to report truncation). */
static struct pm_error *core_load_segments(struct core_source *src,
					   const Elf64_Ehdr *ehdr, size_t phnum,
					   uint64_t *claimed)
{
	*claimed = 0;
	for (size_t i = 0; i < phnum; i++) {
		Elf64_Phdr ph = core_phdr(src->map, ehdr, i);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (ph.p_vaddr + ph.p_memsz < ph.p_vaddr) {
			pm_target_warn(src->target, true, ph.p_vaddr,
				       "PT_LOAD %zu wraps around the address space; ignored",
				       i);
			continue;
		}
		uint64_t declared = ph.p_filesz < ph.p_memsz ? ph.p_filesz :
							       ph.p_memsz;
		uint64_t saved = 0;
		if (ph.p_offset < src->size)
			saved = src->size - ph.p_offset;
		if (saved > declared)
			saved = declared;
		if (ph.p_offset + ph.p_filesz > *claimed &&
		    ph.p_offset + ph.p_filesz >= ph.p_offset)
			*claimed = ph.p_offset + ph.p_filesz;
		struct core_segment seg = {
			.start = ph.p_vaddr,
			.end = ph.p_vaddr + ph.p_memsz,
			.core_offset = ph.p_offset,
			.saved = saved,
			.declared = declared,
			.perms = core_perms(ph.p_flags),
			.file = -1,
		};
		struct pm_error *err = core_push_segment(src, &seg);
		if (err)
			return err;
	}
	return NULL;
}

/* Removes a segment's first n bytes (used when trimming and splitting). */
static void core_segment_skip(struct core_segment *seg, uint64_t n)
{
	seg->start += n;
	seg->core_offset += n;
	seg->saved = seg->saved > n ? seg->saved - n : 0;
	seg->declared = seg->declared > n ? seg->declared - n : 0;
}

/* Sorts the segments; where two overlap, the first keeps the bytes and the
 * later one loses its overlapping part (or all of it). */
static void core_resolve_overlaps(struct core_source *src)
{
	core_sort_segments(src);
	size_t out = 0;
	for (size_t i = 0; i < src->nsegs; i++) {
		struct core_segment seg = src->segs[i];
		if (out > 0 && seg.start < src->segs[out - 1].end) {
			const struct core_segment *prev = &src->segs[out - 1];
			pm_target_warn(src->target, true, seg.start,
				       "PT_LOAD 0x%llx-0x%llx overlaps 0x%llx-0x%llx; keeping the first",
				       (unsigned long long)seg.start,
				       (unsigned long long)seg.end,
				       (unsigned long long)prev->start,
				       (unsigned long long)prev->end);
			if (seg.end <= prev->end)
				continue;
			core_segment_skip(&seg, prev->end - seg.start);
		}
		src->segs[out++] = seg;
	}
	src->nsegs = out;
}

/* ---- NT_FILE ---- */

static int core_entry_compare(const void *a, const void *b)
{
	const struct core_file_entry *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int core_entry_name_compare(const void *a, const void *b)
{
	const struct core_file_entry *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* One core_file per distinct name, found by sorting (not by searching the
 * list per entry: a hostile NT_FILE may have a million names). */
static struct pm_error *core_assign_files(struct core_source *src,
					  struct core_file_entry *entries,
					  size_t n)
{
	if (n == 0)
		return NULL;
	struct core_file_entry **by_name = malloc(n * sizeof(*by_name));
	src->files = calloc(n, sizeof(*src->files));
	if (!by_name || !src->files) {
		free(by_name);
		return &pm_error_no_memory;
	}
	for (size_t i = 0; i < n; i++)
		by_name[i] = &entries[i];
	qsort(by_name, n, sizeof(*by_name), core_entry_name_compare);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || strcmp(by_name[i]->name, by_name[i - 1]->name)) {
			struct core_file *f = &src->files[src->nfiles];
			*f = (struct core_file){ .fd = -1,
						 .path = strdup(by_name[i]->name) };
			if (!f->path) {
				free(by_name);
				return &pm_error_no_memory;
			}
			src->nfiles++;
		}
		by_name[i]->file = (int32_t)(src->nfiles - 1);
	}
	free(by_name);
	return NULL;
}

/* Sorts file entries by address and drops any that overlap an earlier one
 * (keeping the first); returns the count kept. */
static size_t core_entries_normalize(struct core_source *src,
				     struct core_file_entry *entries, size_t n)
{
	if (n > 1)
		qsort(entries, n, sizeof(*entries), core_entry_compare);
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		if (out > 0 && entries[i].start < entries[out - 1].end) {
			pm_target_warn(src->target, true, entries[i].start,
				       "file mapping of %s overlaps another; ignored",
				       entries[i].name);
			continue;
		}
		entries[out++] = entries[i];
	}
	return out;
}

/* Parses NT_FILE: count, page size, count (start, end, pgoff) triples, then
 * count NUL-terminated names. Bad entries are warned about and dropped. */
static struct pm_error *core_parse_nt_file(struct core_source *src,
					   const uint8_t *desc, size_t size,
					   struct core_file_entry **ret,
					   size_t *count_ret)
{
	*ret = NULL;
	*count_ret = 0;
	if (size < 16) {
		pm_target_warn(src->target, false, 0,
			       "NT_FILE note too short (%zu bytes); mappings are anonymous",
			       size);
		return NULL;
	}
	uint64_t count = pm_load_u64(desc), page_size = pm_load_u64(desc + 8);
	if (count > CORE_MAX_FILE_ENTRIES || count > (size - 16) / 24 ||
	    page_size == 0 || page_size > (1ull << 30)) {
		pm_target_warn(src->target, false, 0,
			       "NT_FILE note is inconsistent (%llu entries, page size %llu, %zu bytes); mappings are anonymous",
			       (unsigned long long)count,
			       (unsigned long long)page_size, size);
		return NULL;
	}
	struct core_file_entry *entries = calloc(count ? count : 1,
						 sizeof(*entries));
	if (!entries)
		return &pm_error_no_memory;
	const char *names = (const char *)desc + 16 + count * 24;
	size_t names_left = size - 16 - count * 24;
	size_t n = 0;
	for (uint64_t i = 0; i < count; i++) {
		const uint8_t *t = desc + 16 + i * 24;
		const char *nul = memchr(names, '\0', names_left);
		if (!nul) {
			pm_target_warn(src->target, false, 0,
				       "NT_FILE names end early (%llu of %llu)",
				       (unsigned long long)i,
				       (unsigned long long)count);
			break;
		}
		struct core_file_entry e = {
			.start = pm_load_u64(t),
			.end = pm_load_u64(t + 8),
			.offset = pm_load_u64(t + 16) * page_size,
			.name = names,
		};
		names_left -= (size_t)(nul + 1 - names);
		names = nul + 1;
		if (e.start >= e.end || pm_load_u64(t + 16) > UINT64_MAX / page_size) {
			pm_target_warn(src->target, true, e.start,
				       "NT_FILE entry %llu (%s) has a bad range; ignored",
				       (unsigned long long)i, e.name);
			continue;
		}
		entries[n++] = e;
	}
	*ret = entries;
	*count_ret = core_entries_normalize(src, entries, n);
	return NULL;
}

/* The first entry (sorted, non-overlapping) that ends after addr. */
static size_t core_entry_after(const struct core_file_entry *entries, size_t n,
			       uint64_t addr)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (entries[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Splits segments at every NT_FILE entry boundary inside them, so each
 * segment lies inside one entry or outside all. A split-off tail is
 * appended and examined again when the loop reaches it. */
static struct pm_error *core_split_at_entries(struct core_source *src,
					      const struct core_file_entry *entries,
					      size_t nentries)
{
	for (size_t i = 0; i < src->nsegs; i++) {
		struct core_segment *seg = &src->segs[i];
		size_t j = core_entry_after(entries, nentries, seg->start);
		if (j == nentries)
			continue;
		uint64_t cut = entries[j].start > seg->start ? entries[j].start :
							       entries[j].end;
		if (cut >= seg->end)
			continue;
		struct core_segment tail = *seg;
		uint64_t head = cut - seg->start;
		core_segment_skip(&tail, head);
		seg->end = cut;
		if (seg->saved > head)
			seg->saved = head;
		if (seg->declared > head)
			seg->declared = head;
		struct pm_error *err = core_push_segment(src, &tail);
		if (err)
			return err;
	}
	return NULL;
}

/* Adds saved=0 segments for the parts of NT_FILE entries no PT_LOAD covers
 * (gcore leaves out read-only file-backed mappings entirely). */
static struct pm_error *core_fill_entry_gaps(struct core_source *src,
					     const struct core_file_entry *entries,
					     size_t nentries)
{
	core_sort_segments(src);
	size_t nsegs = src->nsegs, k = 0;
	for (size_t j = 0; j < nentries; j++) {
		uint64_t pos = entries[j].start;
		while (k < nsegs && src->segs[k].end <= pos)
			k++;
		for (size_t m = k; m < nsegs && pos < entries[j].end; m++) {
			const struct core_segment *seg = &src->segs[m];
			if (seg->start >= entries[j].end)
				break;
			if (seg->start > pos) {
				struct core_segment gap = {
					.start = pos, .end = seg->start,
					.perms = PM_PERM_R, .file = -1,
					.gap = true,
				};
				struct pm_error *err = core_push_segment(src, &gap);
				if (err)
					return err;
				seg = &src->segs[m];
			}
			pos = seg->end;
		}
		if (pos < entries[j].end) {
			struct core_segment gap = {
				.start = pos, .end = entries[j].end,
				.perms = PM_PERM_R, .file = -1,
				.gap = true,
			};
			struct pm_error *err = core_push_segment(src, &gap);
			if (err)
				return err;
		}
	}
	core_sort_segments(src);
	return NULL;
}

static const struct core_file_entry *core_find_entry(
	const struct core_file_entry *entries, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (entries[mid].end <= addr)
			lo = mid + 1;
		else if (entries[mid].start > addr)
			hi = mid;
		else
			return &entries[mid];
	}
	return NULL;
}

/* Gives segments their file and offset from file entries (NT_FILE's, or
 * those recovered from the link_map), splitting and filling as needed. */
static struct pm_error *core_apply_entries(struct core_source *src,
					   struct core_file_entry *entries,
					   size_t n)
{
	struct pm_error *err = core_assign_files(src, entries, n);
	if (!err)
		err = core_split_at_entries(src, entries, n);
	if (!err)
		err = core_fill_entry_gaps(src, entries, n);
	for (size_t i = 0; !err && i < src->nsegs; i++) {
		struct core_segment *seg = &src->segs[i];
		const struct core_file_entry *e = core_find_entry(entries, n,
								  seg->start);
		if (!e)
			continue;
		seg->file = e->file;
		seg->file_offset = e->offset + (seg->start - e->start);
	}
	return err;
}

static struct pm_error *core_recover_files(struct core_source *src,
					   const struct core_notes *notes);

static struct pm_error *core_apply_nt_file(struct core_source *src,
					   const struct core_notes *notes)
{
	if (!notes->nt_file)
		return core_recover_files(src, notes);
	struct core_file_entry *entries;
	size_t n;
	struct pm_error *err = core_parse_nt_file(src, notes->nt_file,
						  notes->nt_file_size,
						  &entries, &n);
	if (!err)
		err = core_apply_entries(src, entries, n);
	free(entries);
	return err;
}

/* ---- Reading ---- */

static struct core_segment *core_find_segment(struct core_source *src,
					      uint64_t addr)
{
	size_t lo = 0, hi = src->nsegs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (src->segs[mid].end <= addr)
			lo = mid + 1;
		else if (src->segs[mid].start > addr)
			hi = mid;
		else
			return &src->segs[mid];
	}
	return NULL;
}

/* Reads only bytes saved in the core itself (no file fallback). */
static bool core_read_saved(struct core_source *src, uint64_t addr, void *buf,
			    size_t len)
{
	struct core_segment *seg = core_find_segment(src, addr);
	if (!seg || addr - seg->start > seg->saved ||
	    len > seg->saved - (addr - seg->start))
		return false;
	memcpy(buf, src->map + seg->core_offset + (addr - seg->start), len);
	return true;
}

/* The build-id in target memory of the ELF file mapped at header_addr
 * (the mapping of its file offset 0): its program headers, then PT_NOTE. */
static size_t core_memory_build_id(struct core_source *src,
				   uint64_t header_addr, uint8_t *ret)
{
	Elf64_Ehdr eh;
	if (!core_read_saved(src, header_addr, &eh, sizeof(eh)) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
		return 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (!core_read_saved(src, header_addr + eh.e_phoff +
					  i * sizeof(ph), &ph, sizeof(ph)))
			return 0;
		if (ph.p_type != PT_NOTE || ph.p_filesz > CORE_MAX_HEADER_NOTES)
			continue;
		uint8_t notes[CORE_MAX_HEADER_NOTES];
		/* Offset 0 is mapped at header_addr, so file offset x is
		 * at header_addr + x for the rest of that mapping. */
		if (!core_read_saved(src, header_addr + ph.p_offset, notes,
				     ph.p_filesz))
			continue;
		const uint8_t *id;
		size_t len = pm_elf_notes_build_id(notes, ph.p_filesz, &id);
		if (len) {
			memcpy(ret, id, len);
			return len;
		}
	}
	return 0;
}

/* Where each file's offset 0 is mapped (its ELF header, whose notes hold
 * the build-id the process had): the lowest such segment. */
static void core_find_file_headers(struct core_source *src)
{
	for (size_t i = src->nsegs; i-- > 0;) {
		const struct core_segment *seg = &src->segs[i];
		if (seg->file >= 0 && seg->file_offset == 0) {
			src->files[seg->file].has_header = true;
			src->files[seg->file].header_addr = seg->start;
		}
	}
}

/* Why a file cannot be used, with the system's reason (ENOMEM is not a
 * missing file): "cannot be mapped (Cannot allocate memory)". */
static const char *core_file_why_errno(struct core_file *f, const char *what,
				       int errnum)
{
	snprintf(f->why_buf, sizeof(f->why_buf), "%s (%s)", what,
		 strerror(errnum));
	return f->why_buf;
}

/* Maps a file named by the core; returns NULL or why it cannot ("is
 * missing", ...). O_NONBLOCK: a hostile core may name a FIFO. */
static const char *core_file_map(struct core_file *f, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? "is missing" :
		       core_file_why_errno(f, "cannot be opened", errno);
	struct stat st;
	const char *why = NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		why = "is not a regular file";
	else if (st.st_size == 0)
		why = "is empty";
	void *map = why ? MAP_FAILED :
		    mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		int errnum = errno;
		close(fd);
		return why ? why : core_file_why_errno(f, "cannot be mapped",
						       errnum);
	}
	f->fd = fd;
	f->map = map;
	f->size = (size_t)st.st_size;
	f->open_path = path;
	return NULL;
}

static void core_file_unmap(struct core_file *f)
{
	if (f->map)
		munmap((void *)f->map, f->size);
	if (f->fd >= 0)
		close(f->fd);
	f->map = NULL;
	f->fd = -1;
}

/* Checks one candidate path for file index idx: mapped, and (for ELF files)
 * with the build-id target memory has. */
static void core_file_try(struct core_source *src, int32_t idx,
			  const char *path)
{
	struct core_file *f = &src->files[idx];
	const char *why = core_file_map(f, path);
	if (why) {
		f->state = FILE_MISSING;
		f->why = why;
		return;
	}
	if (f->size < SELFMAG || memcmp(f->map, ELFMAG, SELFMAG) != 0) {
		f->state = FILE_OK;     /* data file, e.g. locale-archive */
		return;
	}
	struct pm_elf *elf;
	struct pm_error *err = pm_elf_open(path, &elf);
	if (err) {
		/* Only a format error means the file is not usable ELF; the
		 * rest (ENOMEM mapping it) say their own reason. */
		bool format = err->code == PM_ERR_FORMAT;
		if (format) {
			f->why = "is not a usable ELF file";
		} else {
			size_t len = strlen(path);
			const char *reason = err->message;
			if (!strncmp(reason, path, len) && reason[len] == ':')
				reason += len + 1 + (reason[len + 1] == ' ');
			snprintf(f->why_buf, sizeof(f->why_buf),
				 "cannot be opened as an ELF file: %s", reason);
			f->why = f->why_buf;
		}
		pm_error_destroy(err);
		core_file_unmap(f);
		f->state = format ? FILE_MISMATCH : FILE_MISSING;
		return;
	}
	size_t file_len;
	const uint8_t *file_id = pm_elf_build_id(elf, &file_len);
	uint8_t mem_id[64];
	size_t mem_len = 0;
	if (f->has_header)
		mem_len = core_memory_build_id(src, f->header_addr, mem_id);
	if (mem_len && (mem_len != file_len || memcmp(mem_id, file_id, mem_len))) {
		core_file_unmap(f);
		f->state = FILE_MISMATCH;
		f->why = "differs from the mapped file (build-id differs)";
	} else {
		f->state = FILE_OK;
		if (!mem_len)
			pm_target_warn(src->target, false, 0,
				       "%s: build-id not found in the core; reading its bytes unverified",
				       path);
	}
	pm_elf_close(elf);
}

static void core_file_check(struct core_source *src, int32_t idx)
{
	struct core_file *f = &src->files[idx];
	const char *root = pm_target_sysroot(src->target);
	char *where = pm_target_file_path(src->target, f->path);
	if (!where) {
		f->state = FILE_MISSING;
		f->why = "cannot be looked for (out of memory)";
		return;
	}
	core_file_try(src, idx, where);
	if (f->state == FILE_MISSING && root)
		core_file_try(src, idx, f->path);   /* as target_elf_open */
	if (f->state != FILE_OK && f->is_executable && src->executable) {
		core_file_try(src, idx, src->executable);
		if (f->state != FILE_OK)
			f->why = "is missing or differs, and so does the executable given";
	}
	if (f->state != FILE_OK && root)
		pm_target_warn(src->target, false, 0,
			       "bytes missing from the core cannot be read: %s (looked for there "
			       "and at %s, under the sysroot) %s", f->path, where, f->why);
	else if (f->state != FILE_OK)
		pm_target_warn(src->target, false, 0,
			       "bytes missing from the core cannot be read: %s %s%s",
			       f->path, f->why,
			       f->state == FILE_MISSING || f->state == FILE_MISMATCH ?
			       " (a core of a process in another root: give its files with --sysroot)"
			       : "");
	/* core_file_map keeps the path it opened: ours lives as long. */
	free(f->sysroot_path);
	f->sysroot_path = where;
}

static struct pm_error *core_read_file(struct core_source *src,
				       const struct core_segment *seg,
				       uint64_t addr, uint8_t *buf, size_t len)
{
	struct core_file *f = &src->files[seg->file];
	if (f->state == FILE_UNCHECKED)
		core_file_check(src, seg->file);
	if (f->state != FILE_OK)
		return pm_error_at(PM_ERR_FILE_MISSING, addr,
				   "0x%llx is not in the core, and %s %s",
				   (unsigned long long)addr, f->path, f->why);
	uint64_t off = seg->file_offset + (addr - seg->start);
	/* The page holding the file's end reads as zeros past it (as the
	 * process saw it); pages wholly beyond the end were SIGBUS. */
	uint64_t page_end = (f->size + CORE_PAGE - 1) & ~(uint64_t)(CORE_PAGE - 1);
	if (off < seg->file_offset || off > page_end || len > page_end - off)
		return pm_error_at(PM_ERR_NOT_SAVED, addr,
				   "0x%llx is not in the core, and lies beyond the end of %s",
				   (unsigned long long)addr, f->open_path);
	size_t in_file = off >= f->size ? 0 :
			 f->size - off < len ? (size_t)(f->size - off) : len;
	memcpy(buf, f->map + off, in_file);
	memset(buf + in_file, 0, len - in_file);
	return NULL;
}

/* Reads [addr, addr+len) from one segment: its saved part from the core,
 * the rest from its file. */
static struct pm_error *core_read_segment(struct core_source *src,
					  const struct core_segment *seg,
					  uint64_t addr, uint8_t *buf, size_t len)
{
	uint64_t off = addr - seg->start;
	if (off < seg->saved) {
		size_t n = seg->saved - off < len ? (size_t)(seg->saved - off) : len;
		memcpy(buf, src->map + seg->core_offset + off, n);
		addr += n;
		buf += n;
		len -= n;
		off += n;
	}
	if (len == 0)
		return NULL;
	if (off < seg->declared)
		return pm_error_at(PM_ERR_NOT_SAVED, addr,
				   "0x%llx is not in the core: the core file is truncated",
				   (unsigned long long)addr);
	if (seg->file >= 0)
		return core_read_file(src, seg, addr, buf, len);
	return pm_error_at(PM_ERR_NOT_SAVED, addr,
			   "0x%llx is mapped but not saved in the core",
			   (unsigned long long)addr);
}

static struct pm_error *core_read(struct pm_source *source, uint64_t addr,
				  void *buf, size_t len)
{
	struct core_source *src = (struct core_source *)source;
	uint8_t *out = buf;
	while (len > 0) {
		struct core_segment *seg = core_find_segment(src, addr);
		if (!seg)
			return pm_error_at(PM_ERR_UNMAPPED, addr,
					   "0x%llx is not mapped",
					   (unsigned long long)addr);
		size_t n = seg->end - addr < len ? (size_t)(seg->end - addr) : len;
		struct pm_error *err = core_read_segment(src, seg, addr, out, n);
		if (err)
			return err;
		addr += n;
		out += n;
		len -= n;
	}
	return NULL;
}

static const void *core_direct(struct pm_source *source, uint64_t addr,
			       size_t len)
{
	struct core_source *src = (struct core_source *)source;
	struct core_segment *seg = core_find_segment(src, addr);
	if (!seg || len > seg->saved || addr - seg->start > seg->saved - len)
		return NULL;
	return src->map + seg->core_offset + (addr - seg->start);
}

static void core_destroy(struct pm_source *source)
{
	struct core_source *src = (struct core_source *)source;
	for (size_t i = 0; i < src->nfiles; i++) {
		core_file_unmap(&src->files[i]);
		free(src->files[i].path);
		free(src->files[i].sysroot_path);
	}
	free(src->files);
	free(src->segs);
	free(src->executable);
	if (src->map)
		munmap((void *)src->map, src->size);
	if (src->fd >= 0)
		close(src->fd);
	free(src);
}

static const struct pm_source_ops core_ops = {
	.kind = "core",
	.read = core_read,
	.direct = core_direct,
	.destroy = core_destroy,
};

/* ---- Threads, auxv, pseudo paths ---- */

static size_t core_main_thread(const struct core_notes *notes)
{
	size_t best = 0;
	for (size_t i = 0; i < notes->nthreads; i++) {
		if (notes->has_prpsinfo && notes->threads[i].tid == notes->pid)
			return i;
		/* Without NT_PRPSINFO: the main thread has the lowest tid. */
		if (notes->threads[i].tid < notes->threads[best].tid)
			best = i;
	}
	return best;
}

static struct pm_error *core_add_threads(struct pm_target *t,
					 const struct core_notes *notes,
					 uint64_t *main_sp)
{
	size_t main = core_main_thread(notes);
	for (size_t i = 0; i < notes->nthreads; i++) {
		const uint8_t *regs = notes->threads[i].regs;
		struct pm_thread th = {
			.tid = notes->threads[i].tid,
			.has_regs = true,
			.pc = pm_load_u64(regs + 8 * REG_RIP),
			.sp = pm_load_u64(regs + 8 * REG_RSP),
			.fs_base = pm_load_u64(regs + 8 * REG_FS_BASE),
		};
		if (i == main) {
			*main_sp = th.sp;
			memcpy(th.name, notes->fname, sizeof(th.name));
		}
		struct pm_error *err = pm_target_add_thread(t, &th);
		if (err)
			return err;
	}
	return NULL;
}

static struct pm_error *core_set_auxv(struct pm_target *t,
				      const struct core_notes *notes)
{
	if (!notes->auxv) {
		pm_target_warn(t, false, 0, "core has no NT_AUXV note");
		return NULL;
	}
	size_t n = notes->auxv_size / 16;
	if (n > CORE_MAX_AUXV)
		n = CORE_MAX_AUXV;
	uint64_t pairs[2 * CORE_MAX_AUXV];
	size_t used = 0;
	for (size_t i = 0; i < n; i++) {
		pairs[2 * used] = pm_load_u64(notes->auxv + 16 * i);
		pairs[2 * used + 1] = pm_load_u64(notes->auxv + 16 * i + 8);
		if (pairs[2 * used] == AT_NULL)
			break;
		used++;
	}
	return pm_target_set_auxv(t, pairs, used);
}

static bool core_auxv_value(const struct core_notes *notes, uint64_t type,
			    uint64_t *ret)
{
	for (size_t i = 0; i + 1 <= notes->auxv_size / 16 && i < CORE_MAX_AUXV; i++) {
		if (pm_load_u64(notes->auxv + 16 * i) == type) {
			*ret = pm_load_u64(notes->auxv + 16 * i + 8);
			return true;
		}
	}
	return false;
}

static void core_set_pseudo(struct core_segment *seg, const char *name,
			    enum pm_region_label label)
{
	if (seg && seg->file < 0 && !seg->pseudo) {
		seg->pseudo = name;
		seg->label = label;
	}
}

/* [vdso] from AT_SYSINFO_EHDR; [vvar] (and, on kernels that have it,
 * [vvar_vclock]) are the anonymous read-only regions right below it. */
static void core_label_vdso(struct core_source *src,
			    const struct core_notes *notes)
{
	uint64_t vdso;
	if (!core_auxv_value(notes, AT_SYSINFO_EHDR, &vdso))
		return;
	struct core_segment *seg = core_find_segment(src, vdso);
	if (!seg || seg->file >= 0)
		return;
	core_set_pseudo(seg, "[vdso]", PM_LABEL_VDSO);
	size_t i = (size_t)(seg - src->segs);
	size_t below = 0;
	while (below < 2 && i > below) {
		const struct core_segment *s = &src->segs[i - below - 1];
		const struct core_segment *up = &src->segs[i - below];
		if (s->end != up->start || s->file >= 0 ||
		    (s->perms & (PM_PERM_W | PM_PERM_X)))
			break;
		below++;
	}
	if (below == 1)
		core_set_pseudo(&src->segs[i - 1], "[vvar]", PM_LABEL_VVAR);
	if (below == 2) {
		core_set_pseudo(&src->segs[i - 2], "[vvar]", PM_LABEL_VVAR);
		core_set_pseudo(&src->segs[i - 1], "[vvar_vclock]",
				PM_LABEL_VVAR);
	}
}

/* The executable's program headers as mapped, and its load bias. */
struct core_exe {
	uint64_t bias;
	Elf64_Phdr ph[CORE_MAX_EXE_PHDRS];
	unsigned phnum;
};

/* Through AT_PHDR/AT_PHNUM and PT_PHDR, when the auxv note is there. */
static bool core_exe_from_auxv(struct core_source *src,
			       const struct core_notes *notes,
			       struct core_exe *exe)
{
	uint64_t phdr_addr, phnum;
	if (!core_auxv_value(notes, AT_PHDR, &phdr_addr) ||
	    !core_auxv_value(notes, AT_PHNUM, &phnum) ||
	    phnum == 0 || phnum > CORE_MAX_EXE_PHDRS ||
	    !core_read_saved(src, phdr_addr, exe->ph, phnum * sizeof(exe->ph[0])))
		return false;
	exe->phnum = (unsigned)phnum;
	for (unsigned i = 0; i < exe->phnum; i++) {
		if (exe->ph[i].p_type == PT_PHDR) {
			exe->bias = phdr_addr - exe->ph[i].p_vaddr;
			return true;
		}
	}
	return false;
}

/* An ELF image whose header is saved at addr: its program headers, and
 * its bias assuming the header is its first PT_LOAD's first page. */
static bool core_image_at(struct core_source *src, uint64_t addr,
			  Elf64_Ehdr *eh, struct core_exe *img)
{
	if (!core_read_saved(src, addr, eh, sizeof(*eh)) ||
	    memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    (eh->e_type != ET_EXEC && eh->e_type != ET_DYN) ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    eh->e_phnum > CORE_MAX_EXE_PHDRS ||
	    !core_read_saved(src, addr + eh->e_phoff, img->ph,
			     eh->e_phnum * sizeof(img->ph[0])))
		return false;
	img->phnum = eh->e_phnum;
	for (unsigned i = 0; i < img->phnum; i++) {
		if (img->ph[i].p_type == PT_LOAD) {
			img->bias = addr - (img->ph[i].p_vaddr & ~(uint64_t)(CORE_PAGE - 1));
			return true;
		}
	}
	return false;
}

/* Without auxv (e.g. a gcore cut before its notes): the lowest saved ELF
 * header of a program with an interpreter (PT_INTERP) is the executable. */
static bool core_exe_from_scan(struct core_source *src, struct core_exe *exe)
{
	for (size_t i = 0; i < src->nsegs; i++) {
		Elf64_Ehdr eh;
		if (src->segs[i].saved < sizeof(eh) ||
		    !core_image_at(src, src->segs[i].start, &eh, exe))
			continue;
		for (unsigned j = 0; j < exe->phnum; j++)
			if (exe->ph[j].p_type == PT_INTERP)
				return true;
	}
	return false;
}

static bool core_find_executable(struct core_source *src,
				 const struct core_notes *notes,
				 struct core_exe *exe)
{
	return core_exe_from_auxv(src, notes, exe) ||
	       core_exe_from_scan(src, exe);
}

/* The end of the executable's image (its bss), or 0 if unknown. */
static uint64_t core_executable_end(struct core_source *src,
				    const struct core_notes *notes)
{
	struct core_exe exe;
	if (!core_find_executable(src, notes, &exe))
		return 0;
	uint64_t end = 0;
	for (unsigned i = 0; i < exe.phnum; i++)
		if (exe.ph[i].p_type == PT_LOAD &&
		    exe.bias + exe.ph[i].p_vaddr + exe.ph[i].p_memsz > end)
			end = exe.bias + exe.ph[i].p_vaddr + exe.ph[i].p_memsz;
	return end;
}

/* ---- Recovering file names from the dynamic linker (no NT_FILE) ---- */

/* A NUL-terminated string from saved core bytes, at most size-1 long. */
static bool core_read_saved_cstr(struct core_source *src, uint64_t addr,
				 char *buf, size_t size)
{
	for (size_t i = 0; i + 1 < size; i++) {
		if (!core_read_saved(src, addr + i, &buf[i], 1))
			return false;
		if (buf[i] == '\0')
			return true;
	}
	return false;
}

/* r_debug, from the executable's DT_DEBUG (set by ld.so at start-up). */
static uint64_t core_r_debug(struct core_source *src, const struct core_exe *exe)
{
	for (unsigned i = 0; i < exe->phnum; i++) {
		if (exe->ph[i].p_type != PT_DYNAMIC)
			continue;
		uint64_t addr = exe->bias + exe->ph[i].p_vaddr;
		uint64_t count = exe->ph[i].p_memsz / sizeof(Elf64_Dyn);
		for (uint64_t k = 0; k < count && k < CORE_MAX_DYNAMIC; k++) {
			Elf64_Dyn dyn;
			if (!core_read_saved(src, addr + k * sizeof(dyn), &dyn,
					     sizeof(dyn)) || dyn.d_tag == DT_NULL)
				return 0;
			if (dyn.d_tag == DT_DEBUG)
				return dyn.d_un.d_ptr;
		}
	}
	return 0;
}

struct core_entry_list {
	struct core_file_entry *entries;
	size_t n, cap;
	char **names;
	size_t nnames;
};

static struct pm_error *core_list_add(struct core_entry_list *list,
				      const struct core_file_entry *e)
{
	if (list->n == list->cap) {
		size_t cap = list->cap ? 2 * list->cap : 32;
		void *p = realloc(list->entries, cap * sizeof(*list->entries));
		if (!p)
			return &pm_error_no_memory;
		list->entries = p;
		list->cap = cap;
	}
	list->entries[list->n++] = *e;
	return NULL;
}

/* File entries for one loaded object: each PT_LOAD maps its file pages
 * [vaddr, vaddr + filesz) rounded out to pages, as ld.so and the kernel map
 * them (the rest of memsz is anonymous bss). */
static struct pm_error *core_list_add_image(struct core_entry_list *list,
					    const struct core_exe *img,
					    const char *name)
{
	const uint64_t mask = CORE_PAGE - 1;
	for (unsigned i = 0; i < img->phnum; i++) {
		const Elf64_Phdr *ph = &img->ph[i];
		if (ph->p_type != PT_LOAD || ph->p_filesz == 0)
			continue;
		uint64_t start = img->bias + (ph->p_vaddr & ~mask);
		uint64_t end = img->bias + ((ph->p_vaddr + ph->p_filesz + mask) & ~mask);
		if (end <= start)
			continue;
		struct core_file_entry e = { .start = start, .end = end,
					     .offset = ph->p_offset & ~mask,
					     .name = name };
		struct pm_error *err = core_list_add(list, &e);
		if (err)
			return err;
	}
	return NULL;
}

static char *core_list_keep_name(struct core_entry_list *list, const char *name)
{
	void *p = realloc(list->names, (list->nnames + 1) * sizeof(*list->names));
	if (!p)
		return NULL;
	list->names = p;
	char *copy = strdup(name);
	if (copy)
		list->names[list->nnames++] = copy;
	return copy;
}

/* path with its symlinks resolved in the process's root (root: the
 * sysroot, itself resolved, when one is given; else NULL for /), as the
 * process's root names it; NULL when it cannot be resolved there
 * (malloc'd). */
static char *path_in_root(const char *root, const char *path)
{
	if (!root)
		return realpath(path, NULL);
	size_t n = strlen(root);
	char *joined = malloc(n + strlen(path) + 1);
	char *real = NULL;
	if (joined) {
		memcpy(joined, root, n);
		strcpy(joined + n, path);
		real = realpath(joined, NULL);
	}
	/* An absolute symlink leads out of the sysroot: not resolved. */
	if (real && (strncmp(real, root, n) || real[n] != '/')) {
		free(real);
		real = NULL;
	}
	if (real)
		memmove(real, real + n, strlen(real + n) + 1);
	free(joined);
	return real;
}

/* Walks r_debug.r_map: each link_map gives a load bias (l_addr) and a path
 * (l_name; empty for the executable, no '/' for the vdso). The object's
 * program headers come from its ELF header in the core. */
static struct pm_error *core_walk_link_map(struct core_source *src,
					   uint64_t r_debug,
					   struct core_entry_list *list,
					   size_t *objects)
{
	uint64_t lm;
	*objects = 0;
	if (!core_read_saved(src, r_debug + 8, &lm, sizeof(lm)))
		return NULL;
	uint64_t *seen = malloc(CORE_MAX_LINK_MAPS * sizeof(*seen));
	if (!seen)
		return &pm_error_no_memory;
	/* The sysroot resolved once; one that does not resolve leaves every
	 * name as ld.so spelled it. */
	const char *sysroot = pm_target_sysroot(src->target);
	bool rooted = sysroot && *sysroot;
	char *root = rooted ? realpath(sysroot, NULL) : NULL;
	if (root && !strcmp(root, "/")) {
		free(root);     /* the host's own root */
		root = NULL;
		rooted = false;
	}
	struct pm_error *err = NULL;
	for (unsigned i = 0; !err && lm && i < CORE_MAX_LINK_MAPS; i++) {
		uint64_t link[4];   /* l_addr, l_name, l_ld, l_next */
		char path[4096];
		bool looped = false;
		for (unsigned k = 0; k < i && !looped; k++)
			looped = seen[k] == lm;
		if (looped) {
			pm_target_warn(src->target, true, lm,
				       "the dynamic linker's link_map list loops at 0x%llx",
				       (unsigned long long)lm);
			break;
		}
		seen[i] = lm;
		if (!core_read_saved(src, lm, link, sizeof(link)))
			break;
		lm = link[3];
		if (!core_read_saved_cstr(src, link[1], path, sizeof(path)) ||
		    path[0] != '/')
			continue;
		struct core_exe img;
		Elf64_Ehdr eh;
		/* Shared objects link at 0: their header is at l_addr. */
		if (!core_image_at(src, link[0], &eh, &img) ||
		    img.bias != link[0])
			continue;
		/* ld.so's spelling (/lib/.../libz.so.1) is a symlink of what
		 * the kernel would name (/usr/lib/.../libz.so.1.2.13). */
		char *real = rooted && !root ? NULL : path_in_root(root, path);
		const char *name = core_list_keep_name(list, real ? real : path);
		free(real);
		err = name ? core_list_add_image(list, &img, name) :
			     &pm_error_no_memory;
		if (!err)
			(*objects)++;
	}
	free(root);
	free(seen);
	return err;
}

/* No NT_FILE (an old kernel, or a gcore cut short: gcore writes its notes
 * last): the file names come from the dynamic linker's link_map, and the
 * executable's from options->executable. */
static struct pm_error *core_recover_files(struct core_source *src,
					   const struct core_notes *notes)
{
	struct core_exe exe;
	struct core_entry_list list = {0};
	size_t objects = 0;
	struct pm_error *err = NULL;
	uint64_t r_debug = 0;
	if (core_find_executable(src, notes, &exe)) {
		if (src->executable)
			err = core_list_add_image(&list, &exe, src->executable);
		r_debug = core_r_debug(src, &exe);
		if (!err && r_debug)
			err = core_walk_link_map(src, r_debug, &list, &objects);
	}
	if (!err && list.n)
		list.n = core_entries_normalize(src, list.entries, list.n);
	if (!err && list.n)
		err = core_apply_entries(src, list.entries, list.n);
	if (!err && objects)
		pm_target_warn(src->target, false, 0,
			       "core has no NT_FILE note: names of %zu shared objects recovered from the dynamic linker's link_map%s",
			       objects, src->executable ? "" :
			       "; the executable's mappings are anonymous (name it with the executable option)");
	else if (!err)
		pm_target_warn(src->target, false, 0,
			       "core has no NT_FILE note: file-backed mappings appear anonymous, and bytes missing from the core cannot be read from files");
	for (size_t i = 0; i < list.nnames; i++)
		free(list.names[i]);
	free(list.names);
	free(list.entries);
	return err;
}

/* [heap] heuristic: the brk area starts at most BRK_RANDOM_RANGE after the
 * end of the executable's bss (page-aligned), so the first anonymous
 * writable region that starts in that window, not adjacent to the bss
 * itself, and the anonymous writable regions contiguous with it, are the
 * heap. The glibc walker confirms or corrects it (mp_.sbrk_base). */
static void core_label_heap(struct core_source *src,
			    const struct core_notes *notes)
{
	uint64_t end = core_executable_end(src, notes);
	if (!end)
		return;
	uint64_t lo = (end + 0xfff) & ~0xfffull;
	for (size_t i = 0; i < src->nsegs; i++) {
		struct core_segment *seg = &src->segs[i];
		if (seg->start < lo || seg->file >= 0 || seg->pseudo ||
		    !(seg->perms & PM_PERM_W))
			continue;
		if (seg->start > lo + BRK_RANDOM_RANGE)
			return;
		/* The bss tail right after the file mapping is not the heap
		 * unless brk randomisation is off (then they touch). */
		if (seg->start < end)
			continue;
		for (size_t j = i; j < src->nsegs; j++) {
			struct core_segment *s = &src->segs[j];
			if (j > i && (s->start != src->segs[j - 1].end ||
				      s->file >= 0 || !(s->perms & PM_PERM_W)))
				break;
			core_set_pseudo(s, "[heap]", PM_LABEL_HEAP);
		}
		return;
	}
}

static void core_label_pseudo(struct core_source *src,
			      const struct core_notes *notes, uint64_t main_sp,
			      bool has_threads)
{
	core_label_vdso(src, notes);
	core_set_pseudo(core_find_segment(src, VSYSCALL_START), "[vsyscall]",
			PM_LABEL_VSYSCALL);
	if (has_threads)
		core_set_pseudo(core_find_segment(src, main_sp), "[stack]",
				PM_LABEL_MAIN_STACK);
	core_label_heap(src, notes);
}

static void core_mark_executable(struct core_source *src,
				 const struct core_notes *notes)
{
	uint64_t entry;
	if (!core_auxv_value(notes, AT_ENTRY, &entry))
		return;
	struct core_segment *seg = core_find_segment(src, entry);
	if (seg && seg->file >= 0)
		src->files[seg->file].is_executable = true;
}

/* Permissions of a mapping the core has no PT_LOAD for (gcore leaves out
 * read-only file mappings): those of the file's PT_LOAD that maps that file
 * offset, when the file is there and matches; else r--. */
static void core_gap_perms(struct core_source *src, struct core_segment *seg)
{
	struct core_file *f = &src->files[seg->file];
	if (f->state == FILE_UNCHECKED)
		core_file_check(src, seg->file);
	Elf64_Ehdr eh;
	if (f->state != FILE_OK || f->size < sizeof(eh))
		return;
	memcpy(&eh, f->map, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > f->size ||
	    eh.e_phnum > (f->size - eh.e_phoff) / sizeof(Elf64_Phdr))
		return;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, f->map + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		uint64_t lo = ph.p_offset & ~0xfffull;
		if (ph.p_type == PT_LOAD && seg->file_offset >= lo &&
		    seg->file_offset < ph.p_offset + ph.p_filesz) {
			seg->perms = core_perms(ph.p_flags);
			return;
		}
	}
}

static struct pm_error *core_add_regions(struct core_source *src)
{
	for (size_t i = 0; i < src->nsegs; i++) {
		const struct core_segment *seg = &src->segs[i];
		struct pm_region r = {
			.start = seg->start,
			.end = seg->end,
			.offset = seg->file >= 0 ? seg->file_offset : 0,
			.perms = seg->perms,
			.path = seg->file >= 0 ? src->files[seg->file].path :
						 (char *)seg->pseudo,
			.label = seg->label,
			.saved = seg->saved,
		};
		struct pm_error *err = pm_target_add_region(src->target, &r);
		if (err)
			return err;
	}
	return NULL;
}

/* ---- Opening ---- */

static struct pm_error *core_map(const char *path, struct core_source *src)
{
	src->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (src->fd < 0)
		return pm_error_errno(errno, "%s", path);
	struct stat st;
	if (fstat(src->fd, &st) < 0)
		return pm_error_errno(errno, "%s", path);
	if (!S_ISREG(st.st_mode))
		return pm_error_format(PM_ERR_FORMAT,
				       "%s: not a regular file", path);
	src->size = (size_t)st.st_size;
	if (src->size == 0)
		return NULL;
	void *map = mmap(NULL, src->size, PROT_READ, MAP_PRIVATE, src->fd, 0);
	if (map == MAP_FAILED)
		return pm_error_errno(errno, "%s: mmap", path);
	src->map = map;
	return NULL;
}

static struct pm_error *core_read_notes(const char *path,
					const struct core_source *src,
					const Elf64_Ehdr *ehdr, size_t phnum,
					struct core_notes *notes)
{
	for (size_t i = 0; i < phnum; i++) {
		Elf64_Phdr ph = core_phdr(src->map, ehdr, i);
		if (ph.p_type != PT_NOTE)
			continue;
		if (ph.p_offset >= src->size)
			continue;       /* truncated away: reported later */
		uint64_t size = ph.p_filesz;
		if (size > src->size - ph.p_offset)
			size = src->size - ph.p_offset;
		struct pm_error *err = core_parse_notes(path,
							src->map + ph.p_offset,
							size, ph.p_offset, notes);
		if (err)
			return err;
	}
	return NULL;
}

PM_DEFINE_VECTOR(range_vector, struct pm_partial_range)

/* "4.8 MiB", "12.0 KiB", "1.2 GiB": one decimal in the largest unit
 * that keeps the number at least 1 (KiB at least). */
static void core_size_text(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double value = (double)bytes / 1024.0;
	size_t unit = 0;
	while (value >= 1024.0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024.0;
		unit++;
	}
	snprintf(buf, size, "%.1f %s", value, units[unit]);
}

/* A truncated core: which PT_LOADs lack how many of the bytes their
 * p_filesz promises, and whether the notes are cut, as the partial fact
 * every report starts with. */
static struct pm_error *core_note_truncation(struct core_source *src,
					     const Elf64_Ehdr *ehdr,
					     size_t phnum, uint64_t claimed)
{
	struct range_vector ranges = PM_VECTOR_INIT;
	uint64_t missing = 0, with_bytes = 0, notes_missing = 0;
	for (size_t i = 0; i < phnum; i++) {
		Elf64_Phdr ph = core_phdr(src->map, ehdr, i);
		uint64_t declared = ph.p_filesz < ph.p_memsz ? ph.p_filesz :
							       ph.p_memsz;
		uint64_t present = ph.p_offset >= src->size ? 0 :
				   src->size - ph.p_offset;
		if (present > ph.p_filesz)
			present = ph.p_filesz;
		if (ph.p_type == PT_NOTE && present < ph.p_filesz)
			notes_missing += ph.p_filesz - present;
		if (ph.p_type != PT_LOAD || declared == 0 ||
		    ph.p_vaddr + ph.p_memsz < ph.p_vaddr)
			continue;
		with_bytes++;
		if (present >= declared)
			continue;
		struct pm_partial_range r = { ph.p_vaddr, ph.p_vaddr + ph.p_memsz,
					      declared - present };
		if (!range_vector_append(&ranges, &r)) {
			range_vector_deinit(&ranges);
			return &pm_error_no_memory;
		}
		missing += r.missing;
	}
	char have[32], want[32], lost[32], amount[32], message[512], figure[128];
	core_size_text(missing, amount, sizeof(amount));
	snprintf(message, sizeof(message),
		 "core file truncated: %s of %s bytes; %zu of %llu memory segments (%s, %s bytes) are missing from the core%s",
		 pm_format_grouped(src->size, have),
		 pm_format_grouped(claimed, want), ranges.size,
		 (unsigned long long)with_bytes, amount,
		 pm_format_grouped(missing, lost),
		 notes_missing ? ", and so are its notes (threads, mapped files, auxv)" : "");
	snprintf(figure, sizeof(figure), "%zu segment%s (%s) missing from the core",
		 ranges.size, ranges.size == 1 ? "" : "s", amount);
	struct pm_partial partial = {
		.reason = "core-truncated",
		.message = message,
		.figure = figure,
		.missing_bytes = missing,
		.ranges = ranges.data,
		.nranges = ranges.size,
	};
	struct pm_error *err = pm_target_add_partial(src->target, &partial);
	range_vector_deinit(&ranges);
	return err;
}

/* Everything after the target exists: warnings can be recorded. */
static struct pm_error *core_describe(struct core_source *src,
				      const Elf64_Ehdr *ehdr, size_t phnum,
				      const struct core_notes *notes)
{
	uint64_t claimed;
	struct pm_error *err = core_load_segments(src, ehdr, phnum, &claimed);
	if (err)
		return err;
	for (size_t i = 0; i < phnum; i++) {
		Elf64_Phdr ph = core_phdr(src->map, ehdr, i);
		if (ph.p_type == PT_NOTE && ph.p_offset + ph.p_filesz > claimed)
			claimed = ph.p_offset + ph.p_filesz;
	}
	if (claimed > src->size) {
		pm_target_warn(src->target, false, 0,
			       "core file truncated: %zu of %llu bytes",
			       src->size, (unsigned long long)claimed);
		err = core_note_truncation(src, ehdr, phnum, claimed);
		if (err)
			return err;
	}
	if (notes->nthreads == 0)
		pm_target_warn(src->target, false, 0,
			       "core has no NT_PRSTATUS note: no threads");
	core_resolve_overlaps(src);
	if (src->nsegs == 0)
		return pm_error_format(PM_ERR_FORMAT,
				       "core has no memory: no usable PT_LOAD segment");
	err = core_apply_nt_file(src, notes);
	if (err)
		return err;
	core_find_file_headers(src);
	core_mark_executable(src, notes);
	for (size_t i = 0; i < src->nsegs; i++)
		if (src->segs[i].gap && src->segs[i].file >= 0)
			core_gap_perms(src, &src->segs[i]);
	uint64_t main_sp = 0;
	err = core_add_threads(src->target, notes, &main_sp);
	if (!err)
		err = core_set_auxv(src->target, notes);
	if (err)
		return err;
	core_label_pseudo(src, notes, main_sp, notes->nthreads > 0);
	err = core_add_regions(src);
	if (!err)
		err = pm_target_finish(src->target);
	return err;
}

struct pm_error *pm_target_open_core(const char *core_path,
				     const struct pm_options *options,
				     struct pm_target **ret)
{
	struct core_source *src = calloc(1, sizeof(*src));
	if (!src)
		return &pm_error_no_memory;
	src->base.ops = &core_ops;
	src->fd = -1;
	struct core_notes notes = {0};
	struct pm_error *err = core_map(core_path, src);
	Elf64_Ehdr ehdr;
	size_t phnum = 0;
	if (!err)
		err = core_check_ehdr(core_path, src->map, src->size, &ehdr);
	if (!err)
		err = core_phdrs(core_path, src->map, src->size, &ehdr, &phnum);
	if (!err)
		err = core_read_notes(core_path, src, &ehdr, phnum, &notes);
	if (!err && options && options->executable) {
		src->executable = strdup(options->executable);
		if (!src->executable)
			err = &pm_error_no_memory;
	}
	if (err) {
		core_destroy(&src->base);
		free(notes.threads);
		return err;
	}
	pid_t pid = notes.has_prpsinfo ? notes.pid :
		    notes.nthreads ? notes.threads[core_main_thread(&notes)].tid : 0;
	struct pm_target *t;
	err = pm_target_create(&src->base, options, pid, &t);
	if (err) {
		core_destroy(&src->base);
		free(notes.threads);
		return err;
	}
	src->target = t;
	err = core_describe(src, &ehdr, phnum, &notes);
	free(notes.threads);
	if (err) {
		pm_target_destroy(t);
		return pm_error_wrap(err, "%s", core_path);
	}
	*ret = t;
	return NULL;
}
