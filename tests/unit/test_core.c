/* Unit tests of the core-file source (lib/source_core.c) on synthetic cores
 * built by synth_core.c: well-formed ones (regions, threads, pseudo paths,
 * file fallback with build-id check) and broken ones (truncated, absurd
 * headers, bad notes, overlaps), which must give a clear error or a working
 * target with warnings. The truth is what the test put into the core, and
 * for file-backed bytes the file itself read with stdio. */
#include "check.h"
#include "pymortem.h"
#include "target.h"
#include "elffile.h"
#include "synth_core.h"
#include "strbuf.h"

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"

#define EXE_BASE 0x400000ull
#define HEAP_BASE 0x1200000ull
#define ANON_BASE 0x7f0000000000ull
#define LIBC_BASE 0x7f1000000000ull
#define DATA_BASE 0x7f2000000000ull
#define VVAR_BASE 0x7ffff7fc0000ull
#define VDSO_BASE 0x7ffff7fc4000ull
#define STACK_BASE 0x7ffffffde000ull
#define VSYSCALL 0xffffffffff600000ull

static const char *err_msg(const struct pm_error *err)
{
	return err ? err->message : "(no error)";
}

static bool has_warning(const struct pm_target *t, const char *needle)
{
	for (size_t i = 0; i < pm_target_warnings_stored(t); i++)
		if (strstr(pm_target_warning(t, i)->message, needle))
			return true;
	return false;
}

static void print_warnings(const struct pm_target *t)
{
	for (size_t i = 0; i < pm_target_warnings_stored(t); i++)
		printf("      warning: %s\n", pm_target_warning(t, i)->message);
}

/* Opens a core from bytes; returns the error (target in *ret if none). */
static struct pm_error *open_bytes(const uint8_t *bytes, size_t len,
				   struct pm_target **ret)
{
	char *path = synth_write_temp(bytes, len);
	if (!path)
		return pm_error_format(PM_ERR_OS, "cannot write temp core");
	struct pm_options opts = {0};
	struct pm_error *err = pm_target_open_core(path, &opts, ret);
	unlink(path);   /* the mapping stays valid */
	free(path);
	return err;
}

static struct pm_error *open_bytes_opts(const uint8_t *bytes, size_t len,
					const struct pm_options *opts,
					struct pm_target **ret)
{
	char *path = synth_write_temp(bytes, len);
	if (!path)
		return pm_error_format(PM_ERR_OS, "cannot write temp core");
	struct pm_error *err = pm_target_open_core(path, opts, ret);
	unlink(path);
	free(path);
	return err;
}

static struct pm_error *open_synth(const struct synth_core *sc,
				   struct pm_target **ret)
{
	size_t len;
	uint8_t *bytes = synth_core_build(sc, &len);
	struct pm_error *err = open_bytes(bytes, len, ret);
	free(bytes);
	return err;
}

static bool read_file(const char *path, uint64_t off, void *buf, size_t len)
{
	FILE *f = fopen(path, "rb");
	bool ok = f && fseek(f, (long)off, SEEK_SET) == 0 &&
		  fread(buf, 1, len, f) == len;
	if (f)
		fclose(f);
	return ok;
}

static bool pattern_ok(const uint8_t *buf, uint64_t addr, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != synth_pattern(addr + i))
			return false;
	return true;
}

/* An executable image: ELF header + PT_PHDR + PT_LOAD, whose bss ends at
 * EXE_BASE + 0x3800 (so the heap heuristic has something to work on). */
static void exe_image(uint8_t *page)
{
	memset(page, 0, 0x1000);
	Elf64_Ehdr eh = { .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3,
				       ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
			  .e_type = ET_EXEC, .e_machine = EM_X86_64,
			  .e_phoff = 64, .e_phentsize = 56, .e_phnum = 2 };
	Elf64_Phdr ph[2] = {
		{ .p_type = PT_PHDR, .p_vaddr = EXE_BASE + 64,
		  .p_filesz = 112, .p_memsz = 112 },
		{ .p_type = PT_LOAD, .p_vaddr = EXE_BASE, .p_filesz = 0x2800,
		  .p_memsz = 0x3800, .p_flags = PF_R | PF_W },
	};
	memcpy(page, &eh, sizeof(eh));
	memcpy(page + 64, ph, sizeof(ph));
}

/* The well-formed core most tests start from. */
static struct synth_core *base_core(uint8_t *libc_page, bool with_nt_file)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prpsinfo(sc, 100, "python3");
	synth_add_prstatus(sc, 101, 0x401234, ANON_BASE + 0x800, 0x7f00000aa000);
	synth_add_prstatus(sc, 100, 0x401000, STACK_BASE + 0x1f000, 0x7f00000bb000);
	uint64_t auxv[] = { AT_SYSINFO_EHDR, VDSO_BASE, AT_PHDR, EXE_BASE + 64,
			    AT_PHNUM, 2, AT_ENTRY, EXE_BASE + 0x100 };
	synth_add_auxv(sc, auxv, 4);
	if (with_nt_file) {
		struct synth_file_entry files[] = {
			{ EXE_BASE, EXE_BASE + 0x3000, 0, "/nonexistent/exe" },
			{ LIBC_BASE, LIBC_BASE + 0x26000, 0, LIBC },
			{ LIBC_BASE + 0x26000, LIBC_BASE + 0x28000, 0x26, LIBC },
			{ DATA_BASE, DATA_BASE + 0x2000, 1, "/etc/services" },
		};
		synth_add_nt_file(sc, 4096, files, 4);
	}
	uint8_t exe[0x1000];
	exe_image(exe);
	synth_add_load(sc, EXE_BASE, 0x1000, 0x1000, PF_R, exe);      /* 0 */
	synth_add_load(sc, EXE_BASE + 0x1000, 0x2000, 0x2000, PF_R | PF_W, NULL);
	synth_add_load(sc, EXE_BASE + 0x3000, 0x1000, 0x1000, PF_R | PF_W, NULL); /* bss tail */
	synth_add_load(sc, HEAP_BASE, 0x21000, 0x21000, PF_R | PF_W, NULL); /* 3 */
	synth_add_load(sc, ANON_BASE, 0x4000, 0x2000, PF_R | PF_W, NULL);   /* 4 */
	/* libc: only the header page is in the core; one PT_LOAD spanning two
	 * NT_FILE entries (must be split). */
	synth_add_load(sc, LIBC_BASE, 0x28000, 0x1000, PF_R, libc_page);   /* 5 */
	synth_add_load(sc, DATA_BASE, 0x2000, 0, PF_R, NULL);               /* 6 */
	synth_add_load(sc, VVAR_BASE, 0x4000, 0x4000, PF_R, NULL);
	synth_add_load(sc, VDSO_BASE, 0x2000, 0x2000, PF_R | PF_X, NULL);
	synth_add_load(sc, STACK_BASE, 0x21000, 0x21000, PF_R | PF_W, NULL);
	synth_add_load(sc, VSYSCALL, 0x1000, 0x1000, PF_X, NULL);
	return sc;
}

static struct pm_region *region_at(struct pm_target *t, uint64_t addr)
{
	return pm_target_find_region(t, addr);
}

static const char *region_path(struct pm_target *t, uint64_t addr)
{
	struct pm_region *r = region_at(t, addr);
	return r && r->path ? r->path : "";
}

static void test_well_formed(const uint8_t *libc_page)
{
	struct synth_core *sc = base_core((uint8_t *)libc_page, true);
	struct pm_target *t = NULL;
	struct pm_error *err = open_synth(sc, &t);
	CHECK(!err, "well-formed core opens (%s)", err_msg(err));
	synth_core_destroy(sc);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	print_warnings(t);
	CHECK(strcmp(pm_target_kind(t), "core") == 0, "kind is core");
	CHECK(pm_target_pid(t) == 100, "pid from NT_PRPSINFO: %d",
	      (int)pm_target_pid(t));

	/* Threads: as written, and the main thread named from prpsinfo. */
	CHECK(pm_target_thread_count(t) == 2, "2 threads");
	bool saw_main = false;
	for (size_t i = 0; i < pm_target_thread_count(t); i++) {
		const struct pm_thread *th = pm_target_thread(t, i);
		if (th->tid == 100) {
			saw_main = th->pc == 0x401000 &&
				   th->sp == STACK_BASE + 0x1f000 &&
				   th->fs_base == 0x7f00000bb000 &&
				   strcmp(th->name, "python3") == 0;
		}
	}
	CHECK(saw_main, "main thread tid 100: pc, sp, fs_base and name as written");
	uint64_t v = 0;
	CHECK(pm_target_auxv(t, AT_SYSINFO_EHDR, &v) && v == VDSO_BASE,
	      "auxv AT_SYSINFO_EHDR");

	/* Regions: the libc PT_LOAD is split at the NT_FILE boundary. */
	struct pm_region *r1 = region_at(t, LIBC_BASE);
	struct pm_region *r2 = region_at(t, LIBC_BASE + 0x26000);
	CHECK(r1 && r2 && r1 != r2 && r1->end == LIBC_BASE + 0x26000 &&
	      r2->start == LIBC_BASE + 0x26000 && r2->offset == 0x26000 &&
	      r1->saved == 0x1000 && r2->saved == 0,
	      "PT_LOAD spanning two NT_FILE entries split, offsets 0 and 0x26000");
	CHECK(strcmp(region_path(t, LIBC_BASE), LIBC) == 0, "libc path from NT_FILE");
	CHECK(strcmp(region_path(t, VDSO_BASE), "[vdso]") == 0, "[vdso] from AT_SYSINFO_EHDR");
	CHECK(strcmp(region_path(t, VVAR_BASE), "[vvar]") == 0, "[vvar] below the vdso");
	CHECK(strcmp(region_path(t, VSYSCALL), "[vsyscall]") == 0, "[vsyscall]");
	CHECK(strcmp(region_path(t, STACK_BASE), "[stack]") == 0,
	      "[stack] holds the main thread's sp, not thread 101's");
	CHECK(strcmp(region_path(t, ANON_BASE), "") == 0,
	      "other thread's stack region is not [stack]");
	CHECK(strcmp(region_path(t, HEAP_BASE), "[heap]") == 0,
	      "[heap]: first anonymous rw region after the bss");
	CHECK(strcmp(region_path(t, EXE_BASE + 0x3000), "") == 0,
	      "the bss tail adjacent to the executable is not [heap]");
	struct pm_region *r = region_at(t, ANON_BASE);
	CHECK(r && r->perms == (PM_PERM_R | PM_PERM_W) && r->saved == 0x2000,
	      "anon region perms rw, saved = p_filesz");

	/* Bytes in the core, across a segment boundary, and via a view. */
	uint8_t buf[0x2000];
	err = pm_target_read(t, EXE_BASE + 0x2ff0, buf, 0x20);
	CHECK(!err && pattern_ok(buf, EXE_BASE + 0x2ff0, 0x20),
	      "read across two adjacent PT_LOADs (%s)", err_msg(err));
	pm_error_destroy(err);
	const void *view = NULL;
	err = pm_target_view(t, HEAP_BASE + 0x100, 0x1000, &view);
	CHECK(!err && view && pattern_ok(view, HEAP_BASE + 0x100, 0x1000),
	      "zero-copy view of heap bytes");
	pm_error_destroy(err);

	/* Not saved, not mapped. */
	err = pm_target_read(t, ANON_BASE + 0x2000, buf, 8);
	CHECK(err && err->code == PM_ERR_NOT_SAVED &&
	      strstr(err->message, "mapped but not saved"),
	      "anon byte beyond p_filesz: NOT_SAVED (%s)", err_msg(err));
	pm_error_destroy(err);
	err = pm_target_read(t, ANON_BASE + 0x1ff8, buf, 16);
	CHECK(err && err->code == PM_ERR_NOT_SAVED,
	      "read straddling saved/unsaved fails whole");
	pm_error_destroy(err);
	err = pm_target_read(t, 0x10000, buf, 8);
	CHECK(err && err->code == PM_ERR_UNMAPPED, "unmapped: UNMAPPED (%s)",
	      err_msg(err));
	pm_error_destroy(err);
	err = pm_target_read(t, EXE_BASE + 0x3ffc, buf, 8);
	CHECK(err && err->code == PM_ERR_UNMAPPED,
	      "read running off the end of a region: UNMAPPED");
	pm_error_destroy(err);

	/* File-backed bytes missing from the core come from the file, after
	 * the build-id check (the header page in the core is libc's own). */
	uint8_t truth[0x100];
	err = pm_target_read(t, LIBC_BASE + 0x5000, buf, sizeof(truth));
	CHECK(!err && read_file(LIBC, 0x5000, truth, sizeof(truth)) &&
	      memcmp(buf, truth, sizeof(truth)) == 0,
	      "libc byte not in core read from %s (%s)", LIBC, err_msg(err));
	pm_error_destroy(err);
	err = pm_target_read(t, LIBC_BASE + 0x26010, buf, sizeof(truth));
	CHECK(!err && read_file(LIBC, 0x26010, truth, sizeof(truth)) &&
	      memcmp(buf, truth, sizeof(truth)) == 0,
	      "second NT_FILE entry reads file offset 0x26010 (%s)", err_msg(err));
	pm_error_destroy(err);
	err = pm_target_read(t, LIBC_BASE + 0xff0, buf, 0x20);
	CHECK(!err && read_file(LIBC, 0xff0, truth, 0x20) &&
	      memcmp(buf, truth, 0x20) == 0,
	      "read straddling core bytes and file bytes");
	pm_error_destroy(err);
	/* A non-ELF data file (offset = pgoff 1 page). */
	err = pm_target_read(t, DATA_BASE + 0x10, buf, 64);
	CHECK(!err && read_file("/etc/services", 0x1010, truth, 64) &&
	      memcmp(buf, truth, 64) == 0,
	      "non-ELF file-backed bytes from /etc/services at pgoff*page (%s)",
	      err_msg(err));
	pm_error_destroy(err);
	/* The executable's file is missing: its unsaved bytes cannot be read. */
	pm_target_destroy(t);
}

static void test_file_checks(const uint8_t *libc_page)
{
	struct pm_elf *libc;
	if (pm_elf_open(LIBC, &libc))
		return;
	size_t idlen;
	const uint8_t *id = pm_elf_build_id(libc, &idlen);
	uint8_t page[0x1000];
	memcpy(page, libc_page, sizeof(page));
	uint8_t *at = id ? memmem(page, sizeof(page), id, idlen) : NULL;
	CHECK(at != NULL, "libc's build-id is in its first page");
	pm_elf_close(libc);
	if (!at)
		return;
	at[0] ^= 0xff;      /* the process had another libc build */
	struct synth_core *sc = synth_core_create();
	struct synth_file_entry files[] = {
		{ LIBC_BASE, LIBC_BASE + 0x26000, 0, LIBC },
		{ DATA_BASE, DATA_BASE + 0x2000, 0, "/nonexistent/libgone.so" },
	};
	synth_add_nt_file(sc, 4096, files, 2);
	synth_add_load(sc, LIBC_BASE, 0x26000, 0x1000, PF_R, page);
	synth_add_load(sc, DATA_BASE, 0x2000, 0, PF_R, NULL);
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "core with a mismatched and a missing file opens");
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint8_t buf[16];
	err = pm_target_read(t, LIBC_BASE + 0x2000, buf, 16);
	CHECK(err && err->code == PM_ERR_FILE_MISSING &&
	      strstr(err->message, "build-id differs") &&
	      strstr(err->message, LIBC),
	      "mismatched build-id: FILE_MISSING (%s)", err_msg(err));
	pm_error_destroy(err);
	err = pm_target_read(t, LIBC_BASE + 0x10, buf, 16);
	CHECK(!err && memcmp(buf, page + 0x10, 16) == 0,
	      "bytes saved in the core still read");
	pm_error_destroy(err);
	err = pm_target_read(t, DATA_BASE, buf, 16);
	CHECK(err && err->code == PM_ERR_FILE_MISSING &&
	      strstr(err->message, "/nonexistent/libgone.so is missing"),
	      "missing file: FILE_MISSING (%s)", err_msg(err));
	pm_error_destroy(err);
	size_t before = pm_target_warning_count(t);
	err = pm_target_read(t, DATA_BASE + 8, buf, 16);
	pm_error_destroy(err);
	CHECK(pm_target_warning_count(t) == before &&
	      has_warning(t, "/nonexistent/libgone.so"),
	      "a missing file is warned about once");
	print_warnings(t);
	pm_target_destroy(t);
}

/* What test_truncated's cut removes, as the partial fact every report
 * starts with: load 1 loses 0x2800 of its 0x4000 bytes, load 3 all 0x1000;
 * load 2 promises none (p_filesz 0) and is not counted. */
static void check_truncation_partial(struct pm_target *t, uint64_t cut,
				     size_t len)
{
	const struct pm_partial *p = pm_target_partial(t, 0);
	CHECK(pm_target_partial_count(t) == 1 && p &&
	      !strcmp(p->reason, "core-truncated"), "one partial fact: truncated");
	if (!p)
		return;
	CHECK(p->missing_bytes == 0x3800 && p->nranges == 2 &&
	      p->ranges[0].start == 0x20000 && p->ranges[0].end == 0x24000 &&
	      p->ranges[0].missing == 0x2800 && p->ranges[1].start == 0x30000 &&
	      p->ranges[1].end == 0x31000 && p->ranges[1].missing == 0x1000,
	      "missing: 0x2800 of load 1, all of load 3 (%llu bytes, %zu ranges)",
	      (unsigned long long)p->missing_bytes, p->nranges);
	char have[32], want[32], expect[256];
	snprintf(expect, sizeof(expect),
		 "core file truncated: %s of %s bytes; 2 of 3 memory segments (14.0 KiB, 14,336 bytes) are missing from the core",
		 pm_format_grouped(cut, have), pm_format_grouped(len, want));
	CHECK(!strcmp(p->message, expect), "says \"%s\" (%s)", expect, p->message);
	CHECK(p->figure && !strcmp(p->figure, "2 segments (14.0 KiB) missing from the core"),
	      "figure for totals (%s)", p->figure ? p->figure : "none");
	/* First in every report, before anything else. */
	char *text = NULL, *json = NULL;
	struct pm_report_args args = {0};
	struct pm_error *err = pm_report_run(t, "regions", &args, &text);
	pm_error_destroy(err);
	char line[300];
	snprintf(line, sizeof(line), "partial: %s\n", expect);
	CHECK(text && !strncmp(text, line, strlen(line)),
	      "regions text starts with the partial line");
	args.format = PM_FORMAT_JSON;
	err = pm_report_run(t, "regions", &args, &json);
	pm_error_destroy(err);
	CHECK(json && !strncmp(json, "{\n\"partial_reasons\": [\n  {\"reason\": \"core-truncated\"", 50),
	      "regions JSON starts with partial_reasons");
	free(text);
	free(json);
}

static void test_truncated(void)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prstatus(sc, 7, 0, 0x1000, 0);
	synth_add_load(sc, 0x10000, 0x1000, 0x1000, PF_R | PF_W, NULL);
	synth_add_load(sc, 0x20000, 0x4000, 0x4000, PF_R | PF_W, NULL);
	synth_add_load(sc, 0x28000, 0x2000, 0, PF_R, NULL);  /* no bytes promised */
	synth_add_load(sc, 0x30000, 0x1000, 0x1000, PF_R | PF_W, NULL);
	size_t len;
	uint8_t *bytes = synth_core_build(sc, &len);
	uint64_t cut = synth_load_offset(sc, 1) + 0x1800;
	synth_core_destroy(sc);
	struct pm_target *t;
	struct pm_error *err = open_bytes(bytes, cut, &t);
	free(bytes);
	CHECK(!err, "truncated core still opens (%s)", err_msg(err));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	char expect[128];
	snprintf(expect, sizeof(expect), "core file truncated: %llu of %zu bytes",
		 (unsigned long long)cut, len);
	CHECK(has_warning(t, expect), "warns \"%s\"", expect);
	uint8_t buf[16];
	err = pm_target_read(t, 0x217f8, buf, 16);
	CHECK(err && err->code == PM_ERR_NOT_SAVED && strstr(err->message, "truncated"),
	      "bytes cut off: NOT_SAVED, says truncated (%s)", err_msg(err));
	pm_error_destroy(err);
	err = pm_target_read(t, 0x217e0, buf, 16);
	CHECK(!err && pattern_ok(buf, 0x217e0, 16), "bytes before the cut read");
	pm_error_destroy(err);
	CHECK(pm_target_thread_count(t) == 1, "thread from the intact notes");
	check_truncation_partial(t, cut, len);
	pm_target_destroy(t);
}

static void test_missing_nt_file_and_overlap(void)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prstatus(sc, 7, 0, 0x1000, 0);
	synth_add_load(sc, 0x10000, 0x2000, 0x2000, PF_R, NULL);
	uint8_t other[0x2000];
	memset(other, 0xee, sizeof(other));
	synth_add_load(sc, 0x11000, 0x2000, 0x2000, PF_R | PF_W, other);
	synth_add_load(sc, 0x10800, 0x100, 0x100, PF_R, other);   /* inside */
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "core without NT_FILE, with overlaps opens (%s)", err_msg(err));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	print_warnings(t);
	CHECK(has_warning(t, "no NT_FILE"), "warns about the missing NT_FILE");
	CHECK(has_warning(t, "overlaps"), "warns about overlapping PT_LOADs");
	uint8_t buf[16];
	err = pm_target_read(t, 0x11800, buf, 16);
	CHECK(!err && pattern_ok(buf, 0x11800, 16), "overlap: first segment's bytes kept");
	pm_error_destroy(err);
	err = pm_target_read(t, 0x12800, buf, 16);
	CHECK(!err && buf[0] == 0xee && buf[15] == 0xee,
	      "overlap: the later one keeps its non-overlapping tail");
	pm_error_destroy(err);
	bool sorted = true;
	for (size_t i = 1; i < pm_target_region_count(t); i++)
		if (pm_target_region(t, i)->start < pm_target_region(t, i - 1)->end)
			sorted = false;
	CHECK(sorted && pm_target_region_count(t) == 2,
	      "regions sorted and disjoint (%zu)", pm_target_region_count(t));
	CHECK(!region_at(t, 0x10000)->path, "regions anonymous without NT_FILE");
	pm_target_destroy(t);
}

/* A gcore-style core: an NT_FILE mapping with no PT_LOAD at all. */
static void test_nt_file_gap(void)
{
	struct synth_core *sc = synth_core_create();
	struct synth_file_entry files[] = {
		{ 0x50000, 0x52000, 2, "/etc/services" },
	};
	synth_add_nt_file(sc, 4096, files, 1);
	synth_add_load(sc, 0x40000, 0x1000, 0x1000, PF_R | PF_W, NULL);
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "gcore-style core opens");
	if (err) {
		pm_error_destroy(err);
		return;
	}
	struct pm_region *r = region_at(t, 0x50000);
	CHECK(r && r->start == 0x50000 && r->end == 0x52000 && r->saved == 0 &&
	      r->offset == 0x2000 && r->path && strcmp(r->path, "/etc/services") == 0,
	      "NT_FILE-only mapping becomes a region, offset 0x2000");
	uint8_t buf[32], truth[32];
	err = pm_target_read(t, 0x51000, buf, 32);
	CHECK(!err && read_file("/etc/services", 0x3000, truth, 32) &&
	      memcmp(buf, truth, 32) == 0, "its bytes come from the file");
	pm_error_destroy(err);
	pm_target_destroy(t);
}

/* A mapping running past the end of its file (the last page partly): the
 * process saw zeros after the end in that page; pages wholly beyond it
 * were never readable. */
static void test_file_end(void)
{
	uint8_t content[5000];
	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i * 13 + 1);
	char *file = synth_write_temp(content, sizeof(content));
	struct synth_core *sc = synth_core_create();
	struct synth_file_entry files[] = { { 0x60000, 0x63000, 0, file } };
	synth_add_nt_file(sc, 4096, files, 1);
	synth_add_load(sc, 0x60000, 0x3000, 0, PF_R, NULL);
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "core mapping a 5000-byte file over 3 pages opens");
	if (!err) {
		uint8_t buf[40], want[40] = {0};
		memcpy(want, content + 4980, 20);
		err = pm_target_read(t, 0x60000 + 4980, buf, sizeof(buf));
		CHECK(!err && memcmp(buf, want, sizeof(buf)) == 0,
		      "bytes after the file's end, in its last page, read as zeros (%s)",
		      err_msg(err));
		pm_error_destroy(err);
		err = pm_target_read(t, 0x62000, buf, 8);
		CHECK(err && err->code == PM_ERR_NOT_SAVED &&
		      strstr(err->message, "beyond the end"),
		      "a page wholly past the file's end: NOT_SAVED (%s)",
		      err_msg(err));
		pm_error_destroy(err);
		pm_target_destroy(t);
	} else {
		pm_error_destroy(err);
	}
	unlink(file);
	free(file);
}

/* More than 65534 mappings: e_phnum is PN_XNUM and section header 0's
 * sh_info has the count (the kernel writes cores this way). */
static void test_pn_xnum(void)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prstatus(sc, 7, 0, 0x1000, 0);
	synth_add_load(sc, 0x10000, 0x1000, 0x1000, PF_R, NULL);
	synth_add_load(sc, 0x20000, 0x1000, 0x1000, PF_R, NULL);
	size_t len;
	uint8_t *b = synth_core_build(sc, &len);
	synth_core_destroy(sc);
	uint8_t *x = calloc(1, len + sizeof(Elf64_Shdr));
	memcpy(x, b, len);
	free(b);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)x;
	Elf64_Shdr sh0 = { .sh_info = eh->e_phnum };
	memcpy(x + len, &sh0, sizeof(sh0));
	eh->e_phnum = PN_XNUM;
	eh->e_shoff = len;
	eh->e_shnum = 1;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	struct pm_target *t;
	struct pm_error *err = open_bytes(x, len + sizeof(sh0), &t);
	free(x);
	CHECK(!err, "PN_XNUM core opens (%s)", err_msg(err));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint8_t buf[8];
	err = pm_target_read(t, 0x20010, buf, 8);
	CHECK(!err && pattern_ok(buf, 0x20010, 8) &&
	      pm_target_region_count(t) == 2,
	      "PN_XNUM: both segments found through sh_info");
	pm_error_destroy(err);
	pm_target_destroy(t);
}

/* options->executable stands in for an executable NT_FILE names but that
 * is gone (e.g. the core was copied to another machine). */
static void test_executable_option(void)
{
	uint8_t content[0x2000];
	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i * 5 + 3);
	char *exe = synth_write_temp(content, sizeof(content));
	struct synth_core *sc = synth_core_create();
	uint64_t auxv[] = { AT_ENTRY, 0x400100 };
	synth_add_auxv(sc, auxv, 1);
	struct synth_file_entry files[] = {
		{ 0x400000, 0x402000, 0, "/nonexistent/bin/app" },
	};
	synth_add_nt_file(sc, 4096, files, 1);
	synth_add_load(sc, 0x400000, 0x2000, 0, PF_R | PF_X, NULL);
	size_t len;
	uint8_t *b = synth_core_build(sc, &len);
	synth_core_destroy(sc);
	struct pm_options none = {0}, with = { .executable = exe };
	struct pm_target *t;
	uint8_t buf[16];
	struct pm_error *err = open_bytes_opts(b, len, &none, &t);
	if (!err) {
		struct pm_error *rerr = pm_target_read(t, 0x401000, buf, 16);
		CHECK(rerr && rerr->code == PM_ERR_FILE_MISSING,
		      "without --exe the executable's bytes are missing (%s)",
		      err_msg(rerr));
		pm_error_destroy(rerr);
		pm_target_destroy(t);
	}
	pm_error_destroy(err);
	err = open_bytes_opts(b, len, &with, &t);
	CHECK(!err, "core opens with options.executable");
	if (!err) {
		struct pm_error *rerr = pm_target_read(t, 0x401000, buf, 16);
		CHECK(!rerr && memcmp(buf, content + 0x1000, 16) == 0,
		      "with options.executable its bytes come from %s (%s)", exe,
		      err_msg(rerr));
		pm_error_destroy(rerr);
		pm_target_destroy(t);
	}
	pm_error_destroy(err);
	free(b);
	unlink(exe);
	free(exe);
}

/* A core naming a FIFO must not block the reader (open without
 * O_NONBLOCK would wait for a writer forever). */
static void test_fifo(void)
{
	char dir[] = "/tmp/pm_fifoXXXXXX";
	if (!mkdtemp(dir))
		return;
	char fifo[64];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	if (mkfifo(fifo, 0600) != 0) {
		printf("SKIP  cannot make a FIFO\n");
		rmdir(dir);
		return;
	}
	struct synth_core *sc = synth_core_create();
	struct synth_file_entry files[] = { { 0x70000, 0x71000, 0, fifo } };
	synth_add_nt_file(sc, 4096, files, 1);
	synth_add_load(sc, 0x70000, 0x1000, 0, PF_R, NULL);
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	if (!err) {
		uint8_t buf[8];
		struct pm_error *rerr = pm_target_read(t, 0x70000, buf, 8);
		CHECK(rerr && rerr->code == PM_ERR_FILE_MISSING &&
		      strstr(rerr->message, "not a regular file"),
		      "a FIFO named by NT_FILE: FILE_MISSING, no hang (%s)",
		      err_msg(rerr));
		pm_error_destroy(rerr);
		pm_target_destroy(t);
	} else {
		CHECK(false, "core naming a FIFO opens (%s)", err_msg(err));
		pm_error_destroy(err);
	}
	unlink(fifo);
	rmdir(dir);
}

/* No NT_FILE and no auxv: the executable is found by its PT_INTERP, and
 * shared objects by walking DT_DEBUG -> r_debug -> link_map (here a list
 * that loops back on itself, which must end the walk). */
static void test_link_map_recovery(const uint8_t *libc_page)
{
	uint8_t exe[0x2000] = {0};
	Elf64_Ehdr eh = { .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3,
				       ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
			  .e_type = ET_EXEC, .e_machine = EM_X86_64,
			  .e_phoff = 64, .e_phentsize = 56, .e_phnum = 3 };
	Elf64_Phdr ph[3] = {
		{ .p_type = PT_LOAD, .p_vaddr = EXE_BASE, .p_filesz = 0x2000,
		  .p_memsz = 0x2000, .p_flags = PF_R | PF_W },
		{ .p_type = PT_INTERP, .p_vaddr = EXE_BASE + 0x200, .p_filesz = 28 },
		{ .p_type = PT_DYNAMIC, .p_vaddr = EXE_BASE + 0x1000,
		  .p_filesz = 0x40, .p_memsz = 0x40 },
	};
	memcpy(exe, &eh, sizeof(eh));
	memcpy(exe + 64, ph, sizeof(ph));
	uint64_t dyn[4] = { DT_DEBUG, EXE_BASE + 0x1800, DT_NULL, 0 };
	memcpy(exe + 0x1000, dyn, sizeof(dyn));
	uint64_t r_debug[2] = { 1, EXE_BASE + 0x1900 };
	memcpy(exe + 0x1800, r_debug, sizeof(r_debug));
	/* struct link_map prefix: l_addr, l_name, l_ld, l_next, l_prev. */
	uint64_t maps[3][5] = {
		{ 0, EXE_BASE + 0x1a00, 0, EXE_BASE + 0x1928, 0 },
		{ LIBC_BASE, EXE_BASE + 0x1a10, 0, EXE_BASE + 0x1950, 0 },
		{ VDSO_BASE, EXE_BASE + 0x1a50, 0, EXE_BASE + 0x1900, 0 },
	};
	memcpy(exe + 0x1900, maps, sizeof(maps));
	strcpy((char *)exe + 0x1a10, LIBC);
	strcpy((char *)exe + 0x1a50, "linux-vdso.so.1");

	struct synth_core *sc = synth_core_create();
	synth_add_load(sc, EXE_BASE, 0x2000, 0x2000, PF_R | PF_W, exe);
	synth_add_load(sc, LIBC_BASE, 0x26000, 0x1000, PF_R, libc_page);
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "core without notes opens (%s)", err_msg(err));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	print_warnings(t);
	char *real = realpath(LIBC, NULL);
	CHECK(real && strcmp(region_path(t, LIBC_BASE), real) == 0,
	      "libc named from the link_map, canonical path %s",
	      region_path(t, LIBC_BASE));
	CHECK(has_warning(t, "recovered from the dynamic linker's link_map") &&
	      has_warning(t, "link_map list loops"),
	      "warns about the recovery and the looping list");
	uint8_t buf[64], truth[64];
	err = pm_target_read(t, LIBC_BASE + 0x5000, buf, sizeof(buf));
	CHECK(!err && read_file(LIBC, 0x5000, truth, sizeof(truth)) &&
	      memcmp(buf, truth, sizeof(buf)) == 0,
	      "libc bytes not in the core come from the file (%s)", err_msg(err));
	pm_error_destroy(err);
	free(real);
	pm_target_destroy(t);
}

/* Cores that must be refused with a clear error. */
static void expect_error(const uint8_t *bytes, size_t len,
			 enum pm_error_code code, const char *needle,
			 const char *what)
{
	struct pm_target *t = NULL;
	struct pm_error *err = open_bytes(bytes, len, &t);
	CHECK(err && err->code == code && strstr(err->message, needle),
	      "%s: %s", what, err_msg(err));
	if (!err)
		pm_target_destroy(t);
	pm_error_destroy(err);
}

static uint8_t *small_core(size_t *len)
{
	struct synth_core *sc = synth_core_create();
	synth_add_prstatus(sc, 7, 0, 0x1000, 0);
	synth_add_load(sc, 0x10000, 0x1000, 0x1000, PF_R, NULL);
	uint8_t *bytes = synth_core_build(sc, len);
	synth_core_destroy(sc);
	return bytes;
}

static void test_refused(void)
{
	size_t len;
	uint8_t *b = small_core(&len);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;

	expect_error(b, 0, PM_ERR_FORMAT, "not an ELF file", "empty file");
	expect_error((const uint8_t *)"hello, world\n", 13, PM_ERR_FORMAT,
		     "not an ELF file", "text file");
	expect_error(b, 10, PM_ERR_FORMAT, "not an ELF file", "10-byte file");
	expect_error(b, 30, PM_ERR_FORMAT, "ELF header truncated", "30-byte ELF core");

	eh->e_type = ET_DYN;
	expect_error(b, len, PM_ERR_FORMAT, "not a core dump (ET_DYN", "ET_DYN");
	eh->e_type = ET_CORE;
	b[EI_CLASS] = ELFCLASS32;
	expect_error(b, len, PM_ERR_UNSUPPORTED, "core of a 32-bit process is not supported",
		     "32-bit core");
	b[EI_CLASS] = ELFCLASS64;
	eh->e_machine = EM_AARCH64;
	expect_error(b, len, PM_ERR_UNSUPPORTED, "foreign architecture (aarch64)",
		     "aarch64 core");
	eh->e_machine = 0x7777;
	expect_error(b, len, PM_ERR_UNSUPPORTED, "foreign architecture",
		     "unknown machine");
	eh->e_machine = EM_X86_64;
	b[EI_DATA] = ELFDATA2MSB;
	expect_error(b, len, PM_ERR_UNSUPPORTED, "big-endian", "big-endian core");
	b[EI_DATA] = ELFDATA2LSB;

	uint16_t phnum = eh->e_phnum;
	eh->e_phnum = 0xfff0;
	expect_error(b, len, PM_ERR_FORMAT, "beyond the end of the file", "absurd e_phnum");
	eh->e_phnum = PN_XNUM;
	expect_error(b, len, PM_ERR_FORMAT, "PN_XNUM", "PN_XNUM without sections");
	eh->e_phnum = 0;
	expect_error(b, len, PM_ERR_FORMAT, "no program headers", "e_phnum 0");
	eh->e_phnum = phnum;
	uint64_t phoff = eh->e_phoff;
	eh->e_phoff = ~0ull - 8;
	expect_error(b, len, PM_ERR_FORMAT, "beyond the end of the file", "absurd e_phoff");
	eh->e_phoff = phoff;
	eh->e_phentsize = 32;
	expect_error(b, len, PM_ERR_FORMAT, "program header size", "bad e_phentsize");
	eh->e_phentsize = sizeof(Elf64_Phdr);

	/* Notes with bad sizes. */
	Elf64_Phdr note;
	memcpy(&note, b + eh->e_phoff, sizeof(note));
	uint32_t descsz;
	memcpy(&descsz, b + note.p_offset + 4, 4);
	uint32_t huge = 0xfffffff0;
	memcpy(b + note.p_offset + 4, &huge, 4);
	expect_error(b, len, PM_ERR_FORMAT, "bad note", "note descsz past its segment");
	memcpy(b + note.p_offset + 4, &descsz, 4);
	uint32_t namesz = 0xfffffff0;
	memcpy(b + note.p_offset, &namesz, 4);
	expect_error(b, len, PM_ERR_FORMAT, "bad note", "note namesz past its segment");
	free(b);

	struct synth_core *sc = synth_core_create();
	uint8_t shortstatus[40] = {0};
	synth_add_note(sc, "CORE", NT_PRSTATUS, shortstatus, sizeof(shortstatus));
	synth_add_load(sc, 0x10000, 0x1000, 0x1000, PF_R, NULL);
	b = synth_core_build(sc, &len);
	synth_core_destroy(sc);
	expect_error(b, len, PM_ERR_FORMAT, "NT_PRSTATUS", "short NT_PRSTATUS");
	free(b);

	sc = synth_core_create();
	synth_add_prstatus(sc, 7, 0, 0x1000, 0);
	b = synth_core_build(sc, &len);
	synth_core_destroy(sc);
	expect_error(b, len, PM_ERR_FORMAT, "no usable PT_LOAD", "core without PT_LOAD");
	free(b);
}

/* Damaged but usable: NT_FILE with inconsistent counts or names. */
static void test_bad_nt_file(void)
{
	struct synth_core *sc = synth_core_create();
	uint64_t bad[4] = { 1000000, 4096, 0x10000, 0x11000 };
	synth_add_note(sc, "CORE", NT_FILE, bad, sizeof(bad));
	synth_add_load(sc, 0x10000, 0x1000, 0x1000, PF_R, NULL);
	struct pm_target *t;
	struct pm_error *err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "core with an inconsistent NT_FILE opens");
	if (!err) {
		CHECK(has_warning(t, "NT_FILE note is inconsistent"),
		      "warns NT_FILE is inconsistent");
		pm_target_destroy(t);
	}
	pm_error_destroy(err);

	/* Names missing their terminating NUL. */
	sc = synth_core_create();
	uint8_t d[16 + 24 + 4];
	uint64_t hdr[5] = { 1, 4096, 0x10000, 0x11000, 0 };
	memcpy(d, hdr, 40);
	memcpy(d + 40, "abcd", 4);
	synth_add_note(sc, "CORE", NT_FILE, d, sizeof(d));
	synth_add_load(sc, 0x10000, 0x1000, 0x1000, PF_R, NULL);
	err = open_synth(sc, &t);
	synth_core_destroy(sc);
	CHECK(!err, "core with unterminated NT_FILE names opens");
	if (!err) {
		CHECK(has_warning(t, "NT_FILE names end early") &&
		      !region_at(t, 0x10000)->path,
		      "warns, and the mapping stays anonymous");
		pm_target_destroy(t);
	}
	pm_error_destroy(err);
}

int main(void)
{
	uint8_t libc_page[0x1000];
	bool have_libc = read_file(LIBC, 0, libc_page, sizeof(libc_page));
	if (have_libc) {
		test_well_formed(libc_page);
		test_file_checks(libc_page);
		test_link_map_recovery(libc_page);
	} else {
		printf("SKIP  %s not readable: file-backed tests not run\n", LIBC);
	}
	test_truncated();
	test_missing_nt_file_and_overlap();
	test_nt_file_gap();
	test_file_end();
	test_pn_xnum();
	test_executable_option();
	test_fifo();
	test_refused();
	test_bad_nt_file();
	return check_exit_status();
}
