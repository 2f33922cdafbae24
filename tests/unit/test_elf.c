/* Unit tests of lib/elf.c against real files on this machine, with truths
 * taken from binutils (readelf -n, nm, readelf -S) parsed here, never from
 * our own output. A file that is not installed is reported as SKIP, by name. */
#include "check.h"
#include "elffile.h"

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"
#define DEBIAN_PYTHON "/usr/bin/python3.11"
#define LIBPYTHON "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"

/* Output of a shell command (malloc'd), or NULL. */
static char *run(const char *fmt, const char *arg)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), fmt, arg);
	FILE *p = popen(cmd, "r");
	if (!p)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	size_t n;
	while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 2) {
			cap *= 2;
			out = realloc(out, cap);
		}
	}
	pclose(p);
	if (out)
		out[len] = '\0';
	return out;
}

static bool exists(const char *path)
{
	if (access(path, R_OK) == 0)
		return true;
	printf("SKIP  %s is not installed\n", path);
	return false;
}

static void hex(const uint8_t *id, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", id[i]);
	out[2 * len] = '\0';
}

/* Value of symbol name in `nm` output lines "<hex> <type> <name>[@ver]". */
static bool nm_value(const char *nm_out, const char *name, uint64_t *ret)
{
	const char *line = nm_out;
	size_t len = strlen(name);
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		unsigned long long v;
		char type;
		int off = 0;
		if (sscanf(line, "%llx %c %n", &v, &type, &off) == 2 && off > 0) {
			const char *s = line + off;
			if (strncmp(s, name, len) == 0 &&
			    (s[len] == '\n' || s[len] == '@' || s[len] == '\0') &&
			    type != 'U' && type != 'w' && type != 'v') {
				*ret = v;
				return true;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	return false;
}

static void test_libc(void)
{
	if (!exists(LIBC))
		return;
	struct pm_elf *e;
	struct pm_error *err = pm_elf_open(LIBC, &e);
	CHECK(!err, "open %s", LIBC);
	if (err)
		return;
	CHECK(pm_elf_type(e) == ET_DYN, "libc is ET_DYN");

	size_t len;
	const uint8_t *id = pm_elf_build_id(e, &len);
	char ours[129] = "";
	if (id)
		hex(id, len, ours);
	char *notes = run("readelf -n %s", LIBC);
	const char *bid = notes ? strstr(notes, "Build ID: ") : NULL;
	char theirs[129] = "";
	if (bid)
		sscanf(bid + 10, "%128[0-9a-f]", theirs);
	CHECK(id && theirs[0] && strcmp(ours, theirs) == 0,
	      "libc build-id %s equals readelf -n's %s", ours, theirs);
	free(notes);

	char *nm = run("nm -D %s", LIBC);
	uint64_t truth = 0, value = 0, size = 0;
	enum pm_symtab_kind kind = 0;
	bool found = pm_elf_find_symbol(e, "malloc", PM_SYMTAB_DYNSYM, &value,
					&size, &kind);
	CHECK(nm && nm_value(nm, "malloc", &truth) && found && value == truth &&
	      kind == PM_SYMTAB_DYNSYM,
	      "malloc = 0x%llx in .dynsym, nm -D says 0x%llx",
	      (unsigned long long)value, (unsigned long long)truth);
	CHECK(!pm_elf_find_symbol(e, "malloc_no_such_symbol_xyz",
				  PM_SYMTAB_DYNSYM | PM_SYMTAB_SYMTAB, &value,
				  &size, &kind),
	      "an absent symbol is not found");
	/* A prefix of a real name must not match ("mallo" vs "malloc"). */
	CHECK(!pm_elf_find_symbol(e, "mallo", PM_SYMTAB_DYNSYM, &value, &size,
				  &kind), "a name prefix does not match");
	free(nm);

	/* Link-time base: the first PT_LOAD's vaddr, per readelf -l. */
	char *phdrs = run("readelf -lW %s | awk '$1==\"LOAD\"{print $3; exit}'",
			  LIBC);
	unsigned long long first = ~0ull;
	if (phdrs)
		sscanf(phdrs, "%llx", &first);
	CHECK(pm_elf_load_base(e) == (first & ~0xfffull),
	      "load base 0x%llx from readelf -l's first LOAD 0x%llx",
	      (unsigned long long)pm_elf_load_base(e), first);
	free(phdrs);

	/* .rodata bytes through pm_elf_read_vaddr equal the file's bytes at
	 * the offset readelf -S gives. */
	char *sect = run("readelf -SW %s | awk '$2==\".rodata\"{print $4, $5}'",
			 LIBC);
	unsigned long long addr = 0, off = 0;
	if (sect && sscanf(sect, "%llx %llx", &addr, &off) == 2) {
		uint8_t a[64], b[64];
		FILE *f = fopen(LIBC, "rb");
		bool read_ok = f && fseek(f, (long)off + 256, SEEK_SET) == 0 &&
			       fread(b, 1, sizeof(b), f) == sizeof(b);
		if (f)
			fclose(f);
		CHECK(read_ok && pm_elf_read_vaddr(e, addr + 256, a, sizeof(a)) &&
		      memcmp(a, b, sizeof(a)) == 0,
		      ".rodata+256 via read_vaddr equals file offset 0x%llx",
		      off + 256);
		uint64_t saddr, ssize;
		const void *data;
		CHECK(pm_elf_section(e, ".rodata", &saddr, &ssize, &data) &&
		      saddr == addr && data &&
		      memcmp((const uint8_t *)data + 256, b, 64) == 0,
		      "pm_elf_section(.rodata) agrees with readelf -S");
	} else {
		CHECK(false, "readelf -S lists .rodata");
	}
	free(sect);
	char *bss = run("readelf -SW %s | awk '$2==\".bss\"{print $4}'", LIBC);
	unsigned long long bss_addr = 0;
	uint8_t byte;
	CHECK(bss && sscanf(bss, "%llx", &bss_addr) == 1 &&
	      !pm_elf_read_vaddr(e, bss_addr + 16, &byte, 1),
	      ".bss (0x%llx) has no file bytes", bss_addr);
	free(bss);

	/* The separate debug file named by the build-id has main_arena in
	 * .symtab, where nm finds it. */
	char *dpath = pm_elf_debug_path(NULL, id, len);
	if (dpath && exists(dpath)) {
		struct pm_elf *d;
		err = pm_elf_open(dpath, &d);
		CHECK(!err, "open debug file %s", dpath);
		if (!err) {
			char *dnm = run("nm %s", dpath);
			CHECK(pm_elf_has_symtab(d), "debug file has .symtab");
			found = pm_elf_find_symbol(d, "main_arena",
						   PM_SYMTAB_DYNSYM | PM_SYMTAB_SYMTAB,
						   &value, &size, &kind);
			CHECK(dnm && nm_value(dnm, "main_arena", &truth) && found &&
			      value == truth && kind == PM_SYMTAB_SYMTAB &&
			      size > 0x800,
			      "main_arena = 0x%llx (size %llu) in .symtab; nm says 0x%llx",
			      (unsigned long long)value,
			      (unsigned long long)size,
			      (unsigned long long)truth);
			CHECK(!pm_elf_find_symbol(d, "main_arena", PM_SYMTAB_DYNSYM,
						  &value, &size, &kind),
			      "main_arena is not looked up in .symtab when only .dynsym is asked");
			/* In a debug file .text is NOBITS: its PT_LOAD
			 * bytes are not code and must not be returned. */
			uint64_t malloc_addr = 0;
			pm_elf_find_symbol(d, "malloc", PM_SYMTAB_SYMTAB,
					   &malloc_addr, NULL, NULL);
			CHECK(malloc_addr &&
			      !pm_elf_read_vaddr(d, malloc_addr, &byte, 1),
			      "debug file: no bytes for .text (NOBITS)");
			size_t dlen;
			const uint8_t *did = pm_elf_build_id(d, &dlen);
			CHECK(did && dlen == len && memcmp(did, id, len) == 0,
			      "debug file's build-id equals libc's");
			free(dnm);
			pm_elf_close(d);
		}
	}
	free(dpath);
	pm_elf_close(e);
}

static void test_debian_python(void)
{
	if (!exists(DEBIAN_PYTHON))
		return;
	struct pm_elf *e;
	struct pm_error *err = pm_elf_open(DEBIAN_PYTHON, &e);
	CHECK(!err, "open %s", DEBIAN_PYTHON);
	if (err)
		return;
	char *sections = run("readelf -SW %s", DEBIAN_PYTHON);
	bool truth_symtab = sections && strstr(sections, " .symtab ");
	CHECK(pm_elf_type(e) == ET_EXEC, "Debian python is ET_EXEC");
	CHECK(pm_elf_has_symtab(e) == truth_symtab,
	      "has_symtab %d agrees with readelf -S (%d)",
	      pm_elf_has_symtab(e), truth_symtab);
	free(sections);
	char *nm = run("nm -D %s", DEBIAN_PYTHON);
	uint64_t truth = 0, value = 0;
	bool found = pm_elf_find_symbol(e, "PyList_New",
					PM_SYMTAB_DYNSYM | PM_SYMTAB_SYMTAB,
					&value, NULL, NULL);
	CHECK(nm && nm_value(nm, "PyList_New", &truth) && found &&
	      value == truth, "PyList_New = 0x%llx, nm -D says 0x%llx",
	      (unsigned long long)value, (unsigned long long)truth);
	free(nm);
	pm_elf_close(e);
}

/* A symbol that exists only as a GCC clone ("name.isra.0" and the like)
 * is found under its base name, with the clone's value. */
static void test_clone_suffix(void)
{
	if (!exists(LIBPYTHON))
		return;
	char *nm = run("nm %s | awk '{print $1, $2, $3}'", LIBPYTHON);
	struct pm_elf *e;
	struct pm_error *err = pm_elf_open(LIBPYTHON, &e);
	CHECK(!err && nm, "open %s", LIBPYTHON);
	if (err || !nm) {
		pm_error_destroy(err);
		free(nm);
		return;
	}
	CHECK(pm_elf_has_symtab(e), "libpython has .symtab");
	/* Find a clone whose base name has no other symbol in nm's list. */
	char base[256] = "";
	unsigned long long clone_value = 0;
	for (const char *line = nm; *line;) {
		const char *nl = strchr(line, '\n');
		unsigned long long v;
		char type, name[256];
		if (sscanf(line, "%llx %c %255s", &v, &type, name) == 3 &&
		    !strstr(name, ".cold")) {
			char *dot = strstr(name, ".isra.");
			if (!dot)
				dot = strstr(name, ".constprop.");
			if (dot && dot != name) {
				char b[256];
				snprintf(b, sizeof(b), "%.*s", (int)(dot - name), name);
				/* count symbols named b or b.<...> */
				char pat[300];
				int count = 0;
				snprintf(pat, sizeof(pat), " %s", b);
				for (const char *p = nm; (p = strstr(p, pat)); p++) {
					char c = p[strlen(pat)];
					if (c == '\n' || c == '.' || c == '\0')
						count++;
				}
				if (count == 1) {
					strcpy(base, b);
					clone_value = v;
					break;
				}
			}
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	uint64_t value = 0;
	enum pm_symtab_kind kind = 0;
	bool found = base[0] && pm_elf_find_symbol(e, base, PM_SYMTAB_SYMTAB,
						  &value, NULL, &kind);
	CHECK(found && value == clone_value,
	      "clone of %s found at 0x%llx, nm says 0x%llx", base,
	      (unsigned long long)value, clone_value);
	/* An exact name wins over its clones: _PyRuntime is a plain symbol. */
	uint64_t truth = 0;
	CHECK(nm_value(nm, "_PyRuntime", &truth) &&
	      pm_elf_find_symbol(e, "_PyRuntime", PM_SYMTAB_SYMTAB, &value,
				 NULL, NULL) && value == truth,
	      "_PyRuntime = 0x%llx, nm says 0x%llx",
	      (unsigned long long)value, (unsigned long long)truth);
	free(nm);
	pm_elf_close(e);
}

/* An LTO build renames file-local statics to name.lto_priv.N; build one
 * with the compiler and check the base name finds it. */
static void test_lto_priv(void)
{
	char dir[] = "/tmp/pm_elf_ltoXXXXXX";
	if (!mkdtemp(dir))
		return;
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && printf 'static int counter[4];\\nint *a(void){return counter;}\\n' > a.c && "
		 "printf 'static int counter[8];\\nint *b(void){return counter;}\\nint *a(void);\\nint main(void){return a()==b();}\\n' > b.c && "
		 "cc -O2 -flto -flto-partition=one -fno-inline a.c b.c -o prog 2>/dev/null && nm prog | grep ' counter'",
		 dir);
	char *nm = run("%s", cmd);
	if (!nm || !strstr(nm, "lto_priv")) {
		printf("SKIP  the compiler made no lto_priv symbols (%s)\n",
		       nm ? nm : "no output");
		free(nm);
		return;
	}
	char path[600];
	snprintf(path, sizeof(path), "%s/prog", dir);
	struct pm_elf *e;
	struct pm_error *err = pm_elf_open(path, &e);
	CHECK(!err, "open LTO test program");
	if (!err) {
		uint64_t value = 0, size = 0;
		bool found = pm_elf_find_symbol(e, "counter", PM_SYMTAB_SYMTAB,
						&value, &size, NULL);
		/* Whichever clone is found, it is one nm lists. */
		char needle[64];
		snprintf(needle, sizeof(needle), "%016llx",
			 (unsigned long long)value);
		CHECK(found && strstr(nm, needle) && (size == 16 || size == 32),
		      "counter.lto_priv.N found at 0x%llx (size %llu) in: %s",
		      (unsigned long long)value, (unsigned long long)size, nm);
		pm_elf_close(e);
	}
	free(nm);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	free(run("%s", cmd));
}

static void test_bad_files(void)
{
	struct pm_elf *e = NULL;
	struct pm_error *err = pm_elf_open("/nonexistent/file.so", &e);
	CHECK(err && err->code == PM_ERR_NOT_FOUND, "missing file: NOT_FOUND (%s)",
	      err ? err->message : "no error");
	pm_error_destroy(err);
	err = pm_elf_open("/etc/passwd", &e);
	CHECK(err && err->code == PM_ERR_FORMAT, "text file: FORMAT (%s)",
	      err ? err->message : "no error");
	pm_error_destroy(err);

	char path[] = "/tmp/pm_elf_badXXXXXX";
	int fd = mkstemp(path);
	Elf32_Ehdr eh32 = { .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3,
					 ELFCLASS32, ELFDATA2LSB, EV_CURRENT },
			    .e_type = ET_DYN, .e_machine = EM_386,
			    .e_ehsize = sizeof(Elf32_Ehdr) };
	uint8_t pad[128] = {0};
	memcpy(pad, &eh32, sizeof(eh32));
	CHECK(fd >= 0 && write(fd, pad, sizeof(pad)) == sizeof(pad),
	      "write a 32-bit ELF header");
	close(fd);
	err = pm_elf_open(path, &e);
	CHECK(err && err->code == PM_ERR_FORMAT, "32-bit ELF: FORMAT (%s)",
	      err ? err->message : "no error");
	pm_error_destroy(err);
	unlink(path);

	uint8_t id[3] = { 0xab, 0xcd, 0xef };
	char *p = pm_elf_debug_path("/dbg", id, sizeof(id));
	CHECK(p && strcmp(p, "/dbg/.build-id/ab/cdef.debug") == 0,
	      "debug path layout: %s", p ? p : "(null)");
	free(p);
}

/* The statics the pymalloc walker looks up, in every pyenv libpython:
 * found (and where) exactly when nm lists them. */
static void test_libpython_statics(void)
{
	static const char *const names[] = { "arenas", "usedpools", "maxarenas",
		"narenas_currently_allocated", "_PyRuntime", "_PyObject_Arena" };
	char *list = run("ls %s 2>/dev/null",
			 "/root/.pyenv/versions/3.*/lib/libpython3.*.so.1.0");
	int files = 0;
	for (char *line = list ? strtok(list, "\n") : NULL; line;
	     line = strtok(NULL, "\n")) {
		struct pm_elf *e;
		struct pm_error *err = pm_elf_open(line, &e);
		char *nm = run("nm %s", line);
		if (err || !nm) {
			CHECK(false, "open %s (%s)", line, err ? err->message : "nm");
			pm_error_destroy(err);
			free(nm);
			continue;
		}
		files++;
		int agree = 0, present = 0;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			uint64_t truth = 0, value = 0;
			bool in_nm = nm_value(nm, names[i], &truth);
			bool found = pm_elf_find_symbol(e, names[i],
							PM_SYMTAB_DYNSYM | PM_SYMTAB_SYMTAB,
							&value, NULL, NULL);
			present += in_nm;
			if (found == in_nm && (!found || value == truth))
				agree++;
			else
				printf("      %s: %s found=%d (0x%llx), nm=%d (0x%llx)\n",
				       line, names[i], found,
				       (unsigned long long)value, in_nm,
				       (unsigned long long)truth);
		}
		CHECK(agree == (int)(sizeof(names) / sizeof(names[0])),
		      "%s: %d statics, lookups agree with nm", line, present);
		free(nm);
		pm_elf_close(e);
	}
	if (!files)
		printf("SKIP  no pyenv libpython found\n");
	free(list);
}

int main(void)
{
	test_libc();
	test_debian_python();
	test_clone_suffix();
	test_libpython_statics();
	test_lto_priv();
	test_bad_files();
	return check_exit_status();
}
