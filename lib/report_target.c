/* Reports on the target itself: its regions, what was detected, and region
 * digests (which the tests compare between a live process and its cores). */
#include <stdio.h>
#include <string.h>

#include "cpython.h"
#include "elffile.h"
#include "glibc.h"
#include "pymalloc.h"
#include "python_version.h"
#include "report.h"

static void perms_text(uint32_t perms, char buf[5])
{
	buf[0] = perms & PM_PERM_R ? 'r' : '-';
	buf[1] = perms & PM_PERM_W ? 'w' : '-';
	buf[2] = perms & PM_PERM_X ? 'x' : '-';
	buf[3] = perms & PM_PERM_SHARED ? 's' : 'p';
	buf[4] = '\0';
}


/* The mmap.mmap objects whose mappings the region holds (part of): each
 * object, its type, its mapping and the bytes of it in the region. */
static void mmap_owners_json(const struct pm_cpython_heap *heap,
			     const struct pm_region *r, struct pm_strbuf *out)
{
	size_t first = pm_cpython_mmap_first_after(heap, r->start);
	for (size_t i = first; i < heap->nmmaps && heap->mmaps[i].data < r->end; i++) {
		const struct pm_cpython_mmap *m = &heap->mmaps[i];
		uint64_t lo = m->data > r->start ? m->data : r->start;
		uint64_t hi = m->data + m->mapped < r->end ? m->data + m->mapped : r->end;
		pm_strbuf_printf(out, "%s{\"owner\": %llu, \"type\": ", i > first ? ", " : "",
				 (unsigned long long)m->object);
		pm_strbuf_json_string(out, m->type);
		pm_strbuf_printf(out, ", \"start\": %llu, \"size\": %llu, \"bytes\": %llu}",
				 (unsigned long long)m->data, (unsigned long long)m->size,
				 (unsigned long long)(hi - lo));
	}
}

struct pm_error *pm_report_regions(struct pm_target *t,
				   const struct pm_report_args *args,
				   struct pm_strbuf *out)
{
	/* The allocator walks label the heaps, arenas and mmapped chunks they
	 * find; a failed walk (not Python, another allocator) just leaves those
	 * regions unlabelled, and its reason is in the other reports. */
	const struct pm_glibc_heap *heap;
	pm_error_destroy(pm_glibc_walk(t, &heap));
	const struct pm_pymalloc *pymalloc;
	pm_error_destroy(pm_pymalloc_walk(t, &pymalloc));
	/* The mappings mmap.mmap objects made are labelled by the CPython
	 * analysis, which must find the objects first: run (once, cached)
	 * only where the mmap module is there, so that regions stays quick
	 * in the processes that cannot have any. */
	const struct pm_cpython_heap *objects = NULL;
	if (pm_cpython_mmap_possible(t)) {
		struct pm_error *err = pm_cpython_analyse(t, &objects);
		if (err)
			objects = NULL;
		pm_error_destroy(err);
	}
	size_t n = pm_target_region_count(t);
	if (args->format == PM_FORMAT_JSON) {
		pm_strbuf_append(out, "\"regions\": [");
		for (size_t i = 0; i < n; i++) {
			const struct pm_region *r = pm_target_region(t, i);
			char perms[5], label[128];
			perms_text(r->perms, perms);
			pm_region_label_text(r, label, sizeof(label));
			pm_strbuf_printf(out,
				"%s\n  {\"start\": %llu, \"end\": %llu, \"size\": %llu, \"perms\": \"%s\", \"offset\": %llu, \"path\": ",
				i ? "," : "", (unsigned long long)r->start,
				(unsigned long long)r->end,
				(unsigned long long)(r->end - r->start), perms,
				(unsigned long long)r->offset);
			if (r->path)
				pm_strbuf_json_string(out, r->path);
			else
				pm_strbuf_append(out, "null");
			pm_strbuf_append(out, ", \"label\": ");
			pm_strbuf_json_string(out, label);
			pm_strbuf_append(out, ", \"areas\": [");
			for (size_t k = 0; k < r->nareas; k++)
				pm_strbuf_printf(out, "%s{\"label\": \"%s\", \"count\": %u, \"bytes\": %llu}",
						 k ? ", " : "",
						 pm_region_label_name(r->areas[k].label),
						 (unsigned)r->areas[k].count,
						 (unsigned long long)r->areas[k].bytes);
			pm_strbuf_append(out, "], \"owners\": [");
			if (objects)
				mmap_owners_json(objects, r, out);
			pm_strbuf_append(out, "]}");
		}
		pm_strbuf_append(out, n ? "\n]" : "]");
		return NULL;
	}
	static const char *const headers[] = {"start", "end", "size", "perms",
					      "offset", "label", "path"};
	static const bool right[] = {false, false, true, false, true, false, false};
	struct pm_table *table = pm_table_create(7, headers, right);
	if (!table)
		return &pm_error_no_memory;
	for (size_t i = 0; i < n; i++) {
		const struct pm_region *r = pm_target_region(t, i);
		char start[24], end[24], size[32], perms[5], offset[24], label[128];
		snprintf(start, sizeof(start), "0x%llx", (unsigned long long)r->start);
		snprintf(end, sizeof(end), "0x%llx", (unsigned long long)r->end);
		pm_format_grouped(r->end - r->start, size);
		perms_text(r->perms, perms);
		snprintf(offset, sizeof(offset), "0x%llx", (unsigned long long)r->offset);
		pm_region_label_text(r, label, sizeof(label));
		const char *cells[] = {start, end, size, perms, offset, label,
				       r->path ? r->path : ""};
		pm_table_add_row(table, cells);
	}
	pm_table_render(table, out);
	pm_table_destroy(table);
	pm_strbuf_printf(out, "%zu regions\n", n);
	return NULL;
}

static const char *file_status_name(const struct pm_module *m)
{
	switch (m->file_status) {
	case PM_FILE_OK: return "ok";
	case PM_FILE_MISSING: return "missing";
	case PM_FILE_MISMATCH: return "build-id mismatch";
	case PM_FILE_NOT_ELF: return "not ELF";
	case PM_FILE_UNREADABLE: return "unreadable";
	default: return "unchecked";
	}
}

static void hex_text(const uint8_t *bytes, size_t len, char *buf)
{
	for (size_t i = 0; i < len; i++)
		sprintf(buf + 2 * i, "%02x", bytes[i]);
	buf[2 * len] = '\0';
}

struct module_facts {
	const char *status;
	char build_id[129];
	bool has_symtab;
	const char *debug_path;     /* NULL when none */
};

static void module_facts(struct pm_target *t, struct pm_module *m,
			 struct module_facts *ret)
{
	struct pm_elf *file = pm_target_module_file(t, m);
	struct pm_elf *debug = file ? pm_target_module_debug_file(t, m) : NULL;
	ret->status = file_status_name(m);
	hex_text(m->build_id, m->build_id_len, ret->build_id);
	ret->has_symtab = file && pm_elf_has_symtab(file) &&
		!pm_target_options(t)->no_debuginfo;
	ret->debug_path = debug ? m->debug_path : NULL;
}

/* Symbols the walkers look for, shown by `info` so a user can see at once
 * what the symbol-based paths will find (module prefix NULL = any module). */
static const struct {
	const char *module_prefix, *name;
} info_symbols[] = {
	{"libc.so", "main_arena"},
	{"libc.so", "mp_"},
	{"libc.so", "mallinfo2"},
	{NULL, "_PyRuntime"},
	{NULL, "PyType_Type"},
	{NULL, "Py_Version"},
	{NULL, "_Py_GetAllocatedBlocks"},
	{NULL, "arenas"},
	{NULL, "usedpools"},
};

#define NINFO_SYMBOLS (sizeof(info_symbols) / sizeof(info_symbols[0]))

static const char *path_basename(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static void info_symbols_json(struct pm_target *t, struct pm_strbuf *out)
{
	pm_strbuf_append(out, ",\n\"symbols\": {");
	for (size_t i = 0; i < NINFO_SYMBOLS; i++) {
		struct pm_symbol sym;
		struct pm_error *err = pm_target_symbol(t, info_symbols[i].module_prefix,
							info_symbols[i].name, &sym);
		pm_strbuf_printf(out, "%s\n  \"%s\": ", i ? "," : "",
				 info_symbols[i].name);
		if (err) {
			pm_strbuf_append(out, "null");
			pm_error_destroy(err);
			continue;
		}
		pm_strbuf_printf(out, "{\"address\": %llu, \"size\": %llu, \"module\": ",
				 (unsigned long long)sym.address,
				 (unsigned long long)sym.size);
		pm_strbuf_json_string(out, sym.module->path);
		pm_strbuf_printf(out, ", \"source\": \"%s\"}", sym.source);
	}
	pm_strbuf_append(out, "\n}");
}

static void info_symbols_text(struct pm_target *t, struct pm_strbuf *out)
{
	pm_strbuf_append(out, "symbols:\n");
	for (size_t i = 0; i < NINFO_SYMBOLS; i++) {
		struct pm_symbol sym;
		struct pm_error *err = pm_target_symbol(t, info_symbols[i].module_prefix,
							info_symbols[i].name, &sym);
		if (err) {
			pm_strbuf_printf(out, "  %-24s not found\n", info_symbols[i].name);
			pm_error_destroy(err);
			continue;
		}
		pm_strbuf_printf(out, "  %-24s 0x%llx in %s (%s)\n", info_symbols[i].name,
				 (unsigned long long)sym.address,
				 path_basename(sym.module->path), sym.source);
	}
}

/* What the allocator and interpreter layers detected, for `info`. */
struct detected {
	int glibc_major, glibc_minor;
	const char *glibc_how;
	char glibc_error[200];
	const struct pm_python_info *python;
	char python_error[200];
};

static void detect_all(struct pm_target *t, struct detected *ret)
{
	memset(ret, 0, sizeof(*ret));
	struct pm_error *err = pm_glibc_detect_version(t, &ret->glibc_major,
						       &ret->glibc_minor,
						       &ret->glibc_how);
	if (err) {
		snprintf(ret->glibc_error, sizeof(ret->glibc_error), "%s", err->message);
		pm_error_destroy(err);
	}
	err = pm_python_detect(t, &ret->python);
	if (err) {
		snprintf(ret->python_error, sizeof(ret->python_error), "%s", err->message);
		pm_error_destroy(err);
		ret->python = NULL;
	}
}

static void detected_json(const struct detected *d, struct pm_strbuf *out)
{
	pm_strbuf_append(out, ",\n\"glibc\": ");
	if (d->glibc_error[0]) {
		pm_strbuf_append(out, "{\"error\": ");
		pm_strbuf_json_string(out, d->glibc_error);
		pm_strbuf_append(out, "}");
	} else {
		pm_strbuf_printf(out, "{\"version\": \"%d.%d\", \"source\": ",
				 d->glibc_major, d->glibc_minor);
		pm_strbuf_json_string(out, d->glibc_how ? d->glibc_how : "");
		pm_strbuf_append(out, "}");
	}
	pm_strbuf_append(out, ",\n\"python\": ");
	const struct pm_python_info *py = d->python;
	if (!py || !py->is_python) {
		pm_strbuf_append(out, "{\"is_python\": false");
		if (d->python_error[0]) {
			pm_strbuf_append(out, ", \"error\": ");
			pm_strbuf_json_string(out, d->python_error);
		}
		pm_strbuf_append(out, "}");
		return;
	}
	char version[32];
	if (py->micro >= 0)
		snprintf(version, sizeof(version), "%d.%d.%d", py->major, py->minor, py->micro);
	else
		snprintf(version, sizeof(version), "%d.%d", py->major, py->minor);
	pm_strbuf_printf(out, "{\"is_python\": true, \"version\": \"%s\", \"hexversion\": %u, \"source\": ",
			 version, (unsigned)py->hexversion);
	pm_strbuf_json_string(out, py->version_source ? py->version_source : "");
	pm_strbuf_printf(out, ", \"free_threaded\": %s, \"supported\": %s, \"module\": ",
			 py->free_threaded ? "true" : "false",
			 py->supported ? "true" : "false");
	if (py->module)
		pm_strbuf_json_string(out, py->module->path);
	else
		pm_strbuf_append(out, "null");
	pm_strbuf_printf(out, ", \"runtime\": %llu, \"unsupported\": ",
			 (unsigned long long)py->runtime);
	pm_strbuf_json_string(out, py->unsupported);
	pm_strbuf_append(out, "}");
}

static void detected_text(const struct detected *d, struct pm_strbuf *out)
{
	if (d->glibc_error[0])
		pm_strbuf_printf(out, "glibc:       %s\n", d->glibc_error);
	else
		pm_strbuf_printf(out, "glibc:       %d.%d (from %s)\n", d->glibc_major,
				 d->glibc_minor, d->glibc_how ? d->glibc_how : "?");
	const struct pm_python_info *py = d->python;
	if (!py || !py->is_python) {
		pm_strbuf_printf(out, "python:      not a CPython process%s%s\n",
				 d->python_error[0] ? ": " : "", d->python_error);
		return;
	}
	pm_strbuf_printf(out, "python:      %d.%d", py->major, py->minor);
	if (py->micro >= 0)
		pm_strbuf_printf(out, ".%d", py->micro);
	pm_strbuf_printf(out, "%s (from %s)%s%s\n", py->free_threaded ? " free-threaded" : "",
			 py->version_source ? py->version_source : "?",
			 py->supported ? "" : ", NOT SUPPORTED: ", py->unsupported);
	if (py->module)
		pm_strbuf_printf(out, "runtime:     _PyRuntime at 0x%llx in %s\n",
				 (unsigned long long)py->runtime, py->module->path);
}

static void info_json(struct pm_target *t, struct pm_strbuf *out)
{
	struct pm_module *exe = pm_target_executable(t);
	pm_strbuf_printf(out, "\"target\": {\"kind\": \"%s\", \"pid\": %d, \"executable\": ",
			 pm_target_kind(t), (int)pm_target_pid(t));
	if (exe)
		pm_strbuf_json_string(out, exe->path);
	else
		pm_strbuf_append(out, "null");
	pm_strbuf_printf(out, ", \"debuginfo\": %s},\n\"threads\": [",
			 pm_target_options(t)->no_debuginfo ? "false" : "true");
	for (size_t i = 0; i < pm_target_thread_count(t); i++) {
		const struct pm_thread *th = pm_target_thread(t, i);
		pm_strbuf_printf(out, "%s\n  {\"tid\": %d, \"name\": ", i ? "," : "",
				 (int)th->tid);
		pm_strbuf_json_string(out, th->name);
		pm_strbuf_printf(out, ", \"sp\": %llu, \"pc\": %llu}",
				 (unsigned long long)th->sp, (unsigned long long)th->pc);
	}
	pm_strbuf_append(out, "],\n\"modules\": [");
	for (size_t i = 0; i < pm_target_module_count(t); i++) {
		struct pm_module *m = pm_target_module(t, i);
		struct module_facts facts;
		module_facts(t, m, &facts);
		pm_strbuf_append(out, i ? ",\n  {\"path\": " : "\n  {\"path\": ");
		pm_strbuf_json_string(out, m->path);
		pm_strbuf_printf(out, ", \"start\": %llu, \"end\": %llu, \"executable\": %s, \"build_id\": \"%s\", \"file\": \"%s\", \"symtab\": %s, \"debug_file\": ",
				 (unsigned long long)m->start, (unsigned long long)m->end,
				 m->is_executable ? "true" : "false", facts.build_id,
				 facts.status, facts.has_symtab ? "true" : "false");
		if (facts.debug_path)
			pm_strbuf_json_string(out, facts.debug_path);
		else
			pm_strbuf_append(out, "null");
		pm_strbuf_append(out, "}");
	}
	pm_strbuf_append(out, "]");
	struct detected d;
	detect_all(t, &d);
	detected_json(&d, out);
	info_symbols_json(t, out);
}

static void info_text(struct pm_target *t, struct pm_strbuf *out)
{
	struct pm_module *exe = pm_target_executable(t);
	if (pm_target_pid(t))
		pm_strbuf_printf(out, "target:      %s, pid %d\n", pm_target_kind(t),
				 (int)pm_target_pid(t));
	else
		pm_strbuf_printf(out, "target:      %s\n", pm_target_kind(t));
	pm_strbuf_printf(out, "executable:  %s\n", exe ? exe->path : "(unknown)");
	struct detected d;
	detect_all(t, &d);
	detected_text(&d, out);
	pm_strbuf_printf(out, "debug info:  %s\n",
			 pm_target_options(t)->no_debuginfo ?
			 "off (--no-debuginfo: .dynsym only)" : "on");
	size_t nthreads = pm_target_thread_count(t);
	pm_strbuf_printf(out, "threads:     %zu\n", nthreads);
	for (size_t i = 0; i < nthreads; i++) {
		const struct pm_thread *th = pm_target_thread(t, i);
		pm_strbuf_printf(out, "  LWP %-8d %-16s sp 0x%llx pc 0x%llx\n",
				 (int)th->tid, th->name, (unsigned long long)th->sp,
				 (unsigned long long)th->pc);
	}
	static const char *const headers[] = {"module", "base", "file", "symtab",
					      "debug file", "build-id"};
	struct pm_table *table = pm_table_create(6, headers, NULL);
	for (size_t i = 0; i < pm_target_module_count(t); i++) {
		struct pm_module *m = pm_target_module(t, i);
		struct module_facts facts;
		module_facts(t, m, &facts);
		char base[24];
		snprintf(base, sizeof(base), "0x%llx", (unsigned long long)m->start);
		const char *cells[] = {m->path, base, facts.status,
				       facts.has_symtab ? "yes" : "no",
				       facts.debug_path ? facts.debug_path : "-",
				       facts.build_id};
		pm_table_add_row(table, cells);
	}
	pm_strbuf_printf(out, "modules:     %zu\n", pm_target_module_count(t));
	pm_table_render(table, out);
	pm_table_destroy(table);
	info_symbols_text(t, out);
}

struct pm_error *pm_report_info(struct pm_target *t,
				const struct pm_report_args *args,
				struct pm_strbuf *out)
{
	if (args->format == PM_FORMAT_JSON)
		info_json(t, out);
	else
		info_text(t, out);
	return NULL;
}

/* FNV-1a, 64-bit: simple enough for a test to recompute independently. */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define DIGEST_STEP (1u << 20)

static struct pm_error *region_digest(struct pm_target *t,
				      const struct pm_region *r, uint64_t *ret)
{
	uint64_t h = FNV_OFFSET;
	for (uint64_t addr = r->start; addr < r->end;) {
		size_t len = r->end - addr < DIGEST_STEP ? r->end - addr : DIGEST_STEP;
		const void *p;
		struct pm_error *err = pm_target_view(t, addr, len, &p);
		if (err)
			return err;
		const uint8_t *bytes = p;
		for (size_t i = 0; i < len; i++)
			h = (h ^ bytes[i]) * FNV_PRIME;
		addr += len;
	}
	*ret = h;
	return NULL;
}

struct pm_error *pm_report_digest(struct pm_target *t,
				  const struct pm_report_args *args,
				  struct pm_strbuf *out)
{
	bool json = args->format == PM_FORMAT_JSON;
	if (json)
		pm_strbuf_append(out, "\"regions\": [");
	size_t shown = 0;
	for (size_t i = 0; i < pm_target_region_count(t); i++) {
		const struct pm_region *r = pm_target_region(t, i);
		if (!(r->perms & PM_PERM_R))
			continue;
		uint64_t digest;
		struct pm_error *err = region_digest(t, r, &digest);
		if (json) {
			pm_strbuf_printf(out, "%s\n  {\"start\": %llu, \"end\": %llu, ",
					 shown ? "," : "", (unsigned long long)r->start,
					 (unsigned long long)r->end);
			if (err) {
				pm_strbuf_append(out, "\"error\": ");
				pm_strbuf_json_string(out, err->message);
			} else {
				pm_strbuf_printf(out, "\"digest\": \"0x%016llx\"",
						 (unsigned long long)digest);
			}
			pm_strbuf_append(out, "}");
		} else if (err) {
			pm_strbuf_printf(out, "0x%llx-0x%llx  error: %s\n",
					 (unsigned long long)r->start,
					 (unsigned long long)r->end, err->message);
		} else {
			pm_strbuf_printf(out, "0x%llx-0x%llx  0x%016llx\n",
					 (unsigned long long)r->start,
					 (unsigned long long)r->end,
					 (unsigned long long)digest);
		}
		pm_error_destroy(err);
		shown++;
	}
	if (json)
		pm_strbuf_append(out, shown ? "\n]" : "]");
	return NULL;
}
