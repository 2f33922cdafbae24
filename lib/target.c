/* The target: regions, modules, threads and memory of one process image, over
 * any memory source. Also owns the block cache that gives the walkers cheap
 * zero-copy views of target memory when the source cannot map it directly. */
#include "target.h"

#include <elf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elffile.h"
#include "source.h"
#include "vector.h"

#define WARNINGS_STORED_MAX 1000
#define AUXV_MAX 64

/* Block cache: direct-mapped, BLOCK_COUNT blocks of BLOCK_SIZE bytes. */
#define BLOCK_SHIFT 18
#define BLOCK_SIZE ((uint64_t)1 << BLOCK_SHIFT)
#define BLOCK_COUNT 32

/* Line cache for small reads (pm_target_read) from sources without direct
 * access (a live process's /proc/PID/mem, a debugger's callback): each
 * read there is a system call, and the walkers read objects a few words at
 * a time, mostly in address order, so one LINE_SIZE read serves the many
 * small ones that follow it. Direct-mapped by line number, allocated on
 * first use. */
#define LINE_SHIFT 15
#define LINE_SIZE ((uint64_t)1 << LINE_SHIFT)
#define LINE_COUNT 512

struct line_cache {
	uint64_t *base;         /* LINE_COUNT line addresses; UINT64_MAX: empty */
	uint8_t *data;          /* LINE_COUNT * LINE_SIZE bytes */
};

struct cache_block {
	uint64_t base;          /* BLOCK_SIZE-aligned; valid if valid_end > valid_start */
	uint64_t valid_start, valid_end;
	uint8_t *data;          /* BLOCK_SIZE bytes, data[0] = base */
};

PM_DEFINE_VECTOR(partial_vector, struct pm_partial)
PM_DEFINE_VECTOR(module_vector, struct pm_module)

struct cache_slot_entry {
	void *value;
	void (*destroy)(void *);
};

struct pm_target {
	struct pm_source *source;
	struct pm_options options;
	char *debug_dir;
	char *executable;
	char *sysroot;              /* NULL: files at their own paths */
	pid_t pid;

	struct pm_region *regions;
	size_t nregions, regions_cap;
	struct pm_thread *threads;
	size_t nthreads, threads_cap;
	struct module_vector modules;
	uint64_t auxv[AUXV_MAX][2];
	size_t nauxv;

	struct pm_diag *warnings;
	size_t nwarnings_stored;
	size_t nwarnings_by_stage[PM_STAGES];
	/* Analyses under way (cache_get found nothing, no cache_set yet),
	 * innermost last, each with the slots it has used so far. */
	struct { uint8_t slot; uint32_t uses; } open_stages[PM_CACHE_SLOTS];
	size_t nopen_stages;
	uint32_t stage_uses[PM_CACHE_SLOTS];  /* what each cached one used */
	uint32_t report_uses;   /* stages the current (or last) report used */
	bool reported;          /* before any report, every warning is shown */
	int report_depth;
	/* Set once the live process has exited mid-analysis (PM_ERR_EXITED
	 * from the source): every later read fails at once with it, long
	 * loops stop as if interrupted, and no report is given. */
	struct pm_error *exited;
	struct partial_vector partials;

	struct cache_block blocks[BLOCK_COUNT];
	struct line_cache lines;
	uint8_t *scratch;       /* PM_VIEW_MAX bytes for views that span blocks */

	struct cache_slot_entry cache[PM_CACHE_SLOTS];
};

struct pm_error *pm_target_create(struct pm_source *source,
				  const struct pm_options *options, pid_t pid,
				  struct pm_target **ret)
{
	struct pm_target *t = calloc(1, sizeof(*t));
	if (!t)
		return &pm_error_no_memory;
	t->source = source;
	t->pid = pid;
	if (options)
		t->options = *options;
	t->debug_dir = strdup(t->options.debug_dir ? t->options.debug_dir
						   : "/usr/lib/debug");
	t->executable = t->options.executable ? strdup(t->options.executable)
					      : NULL;
	/* "/" and "" mean the files are where they say. */
	const char *root = t->options.sysroot;
	if (root && (!*root || !strcmp(root, "/")))
		root = NULL;
	t->sysroot = root ? strdup(root) : NULL;
	if (!t->debug_dir || (t->options.executable && !t->executable) ||
	    (root && !t->sysroot)) {
		free(t->debug_dir);
		free(t->executable);
		free(t->sysroot);
		free(t);
		return &pm_error_no_memory;
	}
	/* Strings in options belong to the caller: point at our copies. */
	t->options.debug_dir = t->debug_dir;
	t->options.executable = t->executable;
	t->options.sysroot = t->sysroot;
	*ret = t;
	return NULL;
}

static void partial_deinit(struct pm_partial *p)
{
	free(p->message);
	free(p->figure);
	free(p->ranges);
}

static void module_deinit(struct pm_module *m)
{
	free(m->path);
	free(m->debug_path);
	if (m->file)
		pm_elf_close(m->file);
	if (m->debug_file)
		pm_elf_close(m->debug_file);
}

void pm_target_destroy(struct pm_target *t)
{
	if (!t)
		return;
	for (int i = 0; i < PM_CACHE_SLOTS; i++)
		if (t->cache[i].value && t->cache[i].destroy)
			t->cache[i].destroy(t->cache[i].value);
	if (t->source)
		t->source->ops->destroy(t->source);
	for (size_t i = 0; i < t->nregions; i++)
		free(t->regions[i].path);
	free(t->regions);
	free(t->threads);
	for (size_t i = 0; i < t->modules.size; i++)
		module_deinit(&t->modules.data[i]);
	module_vector_deinit(&t->modules);
	for (size_t i = 0; i < t->nwarnings_stored; i++)
		free(t->warnings[i].message);
	free(t->warnings);
	for (int i = 0; i < BLOCK_COUNT; i++)
		free(t->blocks[i].data);
	free(t->scratch);
	free(t->lines.base);
	free(t->lines.data);
	pm_error_destroy(t->exited);
	for (size_t i = 0; i < t->partials.size; i++)
		partial_deinit(&t->partials.data[i]);
	partial_vector_deinit(&t->partials);
	free(t->debug_dir);
	free(t->executable);
	free(t->sysroot);
	free(t);
}

bool pm_target_set_sysroot(struct pm_target *t, const char *root)
{
	char *copy = strdup(root);
	if (!copy)
		return false;
	free(t->sysroot);
	t->sysroot = copy;
	t->options.sysroot = copy;
	return true;
}

const char *pm_target_sysroot(const struct pm_target *t)
{
	return t->sysroot;
}

char *pm_target_file_path(const struct pm_target *t, const char *path)
{
	char *joined;
	if (!t->sysroot || path[0] != '/')
		return strdup(path);
	if (asprintf(&joined, "%s%s", t->sysroot, path) < 0)
		return NULL;
	return joined;
}

/* Opens a file the target names: under the sysroot, else at its own path
 * (a chroot's process has host paths in its maps as we read them; a
 * container's, paths of its own mount namespace). The build-id check
 * after decides whether it is the mapped file. A missing one's message
 * names the target's path and where it was looked for. */
static struct pm_error *target_elf_open(struct pm_target *t, const char *path,
					struct pm_elf **ret)
{
	char *where = pm_target_file_path(t, path);
	if (!where)
		return &pm_error_no_memory;
	struct pm_error *err = pm_elf_open(where, ret);
	if (err && t->sysroot && err->code == PM_ERR_NOT_FOUND) {
		pm_error_destroy(err);
		err = pm_elf_open(path, ret);
		if (err && err->code == PM_ERR_NOT_FOUND) {
			pm_error_destroy(err);
			err = pm_error_format(PM_ERR_NOT_FOUND, "%s (a path of the target) is "
					      "missing, at it and under the sysroot (%s)",
					      path, where);
		}
	}
	free(where);
	return err;
}

/* ---- building ---------------------------------------------------------- */

struct pm_error *pm_target_add_region(struct pm_target *t,
				      const struct pm_region *region)
{
	if (region->end <= region->start)
		return pm_error_at(PM_ERR_INVALID, region->start,
				   "empty or inverted region 0x%llx-0x%llx",
				   (unsigned long long)region->start,
				   (unsigned long long)region->end);
	if (t->nregions == t->regions_cap) {
		size_t cap = t->regions_cap ? t->regions_cap * 2 : 64;
		struct pm_region *grown = realloc(t->regions, cap * sizeof(*grown));
		if (!grown)
			return &pm_error_no_memory;
		t->regions = grown;
		t->regions_cap = cap;
	}
	struct pm_region *r = &t->regions[t->nregions];
	*r = *region;
	r->path = NULL;
	if (region->path && !(r->path = strdup(region->path)))
		return &pm_error_no_memory;
	t->nregions++;
	return NULL;
}

struct pm_error *pm_target_add_thread(struct pm_target *t,
				      const struct pm_thread *thread)
{
	if (t->nthreads == t->threads_cap) {
		size_t cap = t->threads_cap ? t->threads_cap * 2 : 16;
		struct pm_thread *grown = realloc(t->threads, cap * sizeof(*grown));
		if (!grown)
			return &pm_error_no_memory;
		t->threads = grown;
		t->threads_cap = cap;
	}
	t->threads[t->nthreads++] = *thread;
	return NULL;
}

struct pm_error *pm_target_set_auxv(struct pm_target *t, const uint64_t *pairs,
				    size_t npairs)
{
	t->nauxv = 0;
	for (size_t i = 0; i < npairs && t->nauxv < AUXV_MAX; i++) {
		if (pairs[2 * i] == AT_NULL)
			break;
		t->auxv[t->nauxv][0] = pairs[2 * i];
		t->auxv[t->nauxv][1] = pairs[2 * i + 1];
		t->nauxv++;
	}
	return NULL;
}

static int region_compare(const void *a, const void *b)
{
	const struct pm_region *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static bool is_pseudo_path(const char *path)
{
	return path && path[0] == '[';
}

/* Reads the GNU build-id of an ELF image mapped at base from target memory
 * (its headers are in the first page, which kernel cores keep). */
static void module_read_build_id(struct pm_target *t, struct pm_module *m)
{
	Elf64_Ehdr eh;
	struct pm_error *err = pm_target_read(t, m->start, &eh, sizeof(eh));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64)
		return;
	Elf64_Phdr ph[64];
	err = pm_target_read(t, m->start + eh.e_phoff, ph,
					      eh.e_phnum * sizeof(Elf64_Phdr));
	if (err) {
		pm_error_destroy(err);
		return;
	}
	uint64_t first_load = UINT64_MAX;
	for (int i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < first_load)
			first_load = ph[i].p_vaddr & ~(uint64_t)0xfff;
	if (first_load == UINT64_MAX)
		return;
	uint64_t bias = m->start - first_load;
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_NOTE || ph[i].p_memsz > 4096)
			continue;
		uint8_t notes[4096];
		err = pm_target_read(t, bias + ph[i].p_vaddr, notes, ph[i].p_memsz);
		if (err) {
			pm_error_destroy(err);
			continue;
		}
		const uint8_t *id;
		size_t len = pm_elf_notes_build_id(notes, ph[i].p_memsz, &id);
		if (len && len <= sizeof(m->build_id)) {
			memcpy(m->build_id, id, len);
			m->build_id_len = len;
			return;
		}
	}
}

static bool target_memory_is_elf(struct pm_target *t, uint64_t addr)
{
	char magic[SELFMAG];
	struct pm_error *err = pm_target_read(t, addr, magic, sizeof(magic));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return memcmp(magic, ELFMAG, SELFMAG) == 0;
}

/* One module per file-backed path whose offset-0 mapping holds an ELF image
 * (in memory, or on disk when the core lacks the page). */
static struct pm_error *target_build_modules(struct pm_target *t)
{
	uint64_t at_phdr = 0;
	pm_target_auxv(t, AT_PHDR, &at_phdr);
	for (size_t i = 0; i < t->nregions; i++) {
		struct pm_region *r = &t->regions[i];
		if (!r->path || is_pseudo_path(r->path) || r->offset != 0)
			continue;
		bool elf = target_memory_is_elf(t, r->start);
		struct pm_elf *file = NULL;
		if (!elf) {
			struct pm_error *err = target_elf_open(t, r->path, &file);
			if (err) {
				/* Not ELF, or missing (the core source said so):
				 * not a module. Any other failure (ENOMEM mapping
				 * it) loses its symbols: say why. */
				if (err->code != PM_ERR_FORMAT &&
				    err->code != PM_ERR_NOT_FOUND)
					pm_target_warn(t, false, 0,
						       "%s: not used as a module: %s",
						       r->path, err->message);
				pm_error_destroy(err);
				continue;
			}
		}
		struct pm_module *m = module_vector_append_zeroed(&t->modules, 1);
		if (!m || !(m->path = strdup(r->path))) {
			if (m)
				t->modules.size--;
			pm_elf_close(file);
			return &pm_error_no_memory;
		}
		m->start = r->start;
		m->end = r->end;
		/* A library's segments follow each other; stop at another path. */
		for (size_t j = i + 1; j < t->nregions; j++) {
			const struct pm_region *n = &t->regions[j];
			if (n->path && strcmp(n->path, r->path) == 0)
				m->end = n->end;
			else if (n->path || n->start != m->end)
				break;
		}
		m->file = file;
		if (file)
			m->file_status = PM_FILE_OK;
		module_read_build_id(t, m);
		if (at_phdr >= m->start && at_phdr < m->end)
			m->is_executable = true;
	}
	return NULL;
}

static const struct pm_thread *thread_with_stack_in(const struct pm_target *t,
						    const struct pm_region *r)
{
	for (size_t i = 0; i < t->nthreads; i++)
		if (t->threads[i].sp >= r->start && t->threads[i].sp < r->end &&
		    (t->threads[i].has_regs))
			return &t->threads[i];
	return NULL;
}

static void target_label_regions(struct pm_target *t)
{
	for (size_t i = 0; i < t->nregions; i++) {
		struct pm_region *r = &t->regions[i];
		const char *p = r->path;
		if (p && strcmp(p, "[heap]") == 0)
			r->label = PM_LABEL_HEAP;
		else if (p && strcmp(p, "[stack]") == 0)
			r->label = PM_LABEL_MAIN_STACK;
		else if (p && strcmp(p, "[vdso]") == 0)
			r->label = PM_LABEL_VDSO;
		else if (p && strncmp(p, "[vvar", 5) == 0)   /* also [vvar_vclock] */
			r->label = PM_LABEL_VVAR;
		else if (p && strcmp(p, "[vsyscall]") == 0)
			r->label = PM_LABEL_VSYSCALL;
		else if (p && !is_pseudo_path(p))
			r->label = PM_LABEL_FILE;
		else if (r->perms == 0 || r->perms == PM_PERM_SHARED)
			r->label = PM_LABEL_RESERVED;
		else
			r->label = PM_LABEL_ANON;
		const struct pm_thread *th = thread_with_stack_in(t, r);
		if (th && (r->label == PM_LABEL_ANON ||
			   r->label == PM_LABEL_MAIN_STACK)) {
			if (r->label == PM_LABEL_ANON)
				r->label = PM_LABEL_THREAD_STACK;
			r->label_tid = th->tid;
			/* glibc puts a PROT_NONE guard right below each thread
			 * stack it allocates. */
			if (i > 0 && r->label == PM_LABEL_THREAD_STACK) {
				struct pm_region *g = &t->regions[i - 1];
				if (g->end == r->start && !g->path &&
				    (g->perms & 7) == 0) {
					g->label = PM_LABEL_GUARD;
					g->label_tid = th->tid;
				}
			}
		}
	}
	for (size_t i = 0; i < t->modules.size; i++)
		for (size_t j = 0; j < t->nregions; j++) {
			struct pm_region *r = &t->regions[j];
			if (r->start >= t->modules.data[i].start &&
			    r->end <= t->modules.data[i].end && r->path &&
			    strcmp(r->path, t->modules.data[i].path) == 0)
				r->label = PM_LABEL_MODULE;
		}
}

/* A core whose thread stack holds only zeros where the thread's stack
 * pointer is was written by a tool that could not read that stack: GDB 13's
 * gcore fails on the whole mapping when glibc 2.43 installs the stack's
 * guard page inside it (MADV_GUARD_INSTALL) and writes zeros for all of
 * it. A running thread's frames at its stack pointer are never 512 zero
 * bytes; what that C stack holds (references it roots) is then missing,
 * and every report says so first. */
static struct pm_error *target_check_thread_stacks(struct pm_target *t)
{
	if (strcmp(pm_target_kind(t), "live") == 0)
		return NULL;
	struct pm_partial_range *zeroed = NULL;
	size_t count = 0;
	uint64_t bytes_missing = 0;
	for (size_t i = 0; i < t->nregions; i++) {
		const struct pm_region *r = &t->regions[i];
		const struct pm_thread *th = r->label == PM_LABEL_THREAD_STACK ?
			thread_with_stack_in(t, r) : NULL;
		if (!th)
			continue;
		uint8_t bytes[512];
		size_t len = r->end - th->sp < sizeof(bytes) ? (size_t)(r->end - th->sp) :
							      sizeof(bytes);
		struct pm_error *err = pm_target_read(t, th->sp, bytes, len);
		if (err) {
			pm_error_destroy(err);
			continue;
		}
		size_t k = 0;
		while (k < len && !bytes[k])
			k++;
		if (k < len)
			continue;
		if (!zeroed && !(zeroed = calloc(t->nregions, sizeof(*zeroed))))
			return &pm_error_no_memory;
		zeroed[count++] = (struct pm_partial_range){ r->start, r->end, r->end - r->start };
		bytes_missing += r->end - r->start;
	}
	if (!count)
		return NULL;
	char message[400], figure[96];
	snprintf(message, sizeof(message),
		 "%zu thread stack%s in this core hold%s only zeros at the thread's stack "
		 "pointer: the core's writer could not read %s (GDB 13's gcore, when glibc "
		 "2.43 puts the guard page inside the stack; GDB 18's gcore and the kernel's "
		 "cores keep them), so the references on %s C stack%s are missing",
		 count, count == 1 ? "" : "s", count == 1 ? "s" : "",
		 count == 1 ? "it" : "them", count == 1 ? "that" : "those",
		 count == 1 ? "" : "s");
	snprintf(figure, sizeof(figure), "%zu thread stack%s not in the core",
		 count, count == 1 ? "" : "s");
	struct pm_partial partial = {
		.reason = "stack-zeroed",
		.message = message,
		.figure = figure,
		.missing_bytes = bytes_missing,
		.ranges = zeroed,
		.nranges = count,
	};
	struct pm_error *err = pm_target_add_partial(t, &partial);
	free(zeroed);
	return err;
}

struct pm_error *pm_target_finish(struct pm_target *t)
{
	if (t->nregions == 0)
		return pm_error_format(PM_ERR_FORMAT, "the target has no memory regions");
	qsort(t->regions, t->nregions, sizeof(*t->regions), region_compare);
	/* Regions must not overlap: binary search and labels rely on it. */
	size_t kept = 0;
	for (size_t i = 0; i < t->nregions; i++) {
		if (kept > 0 && t->regions[i].start < t->regions[kept - 1].end) {
			pm_target_warn(t, true, t->regions[i].start,
				       "region 0x%llx-0x%llx overlaps the one before it; ignored",
				       (unsigned long long)t->regions[i].start,
				       (unsigned long long)t->regions[i].end);
			free(t->regions[i].path);
			continue;
		}
		t->regions[kept++] = t->regions[i];
	}
	t->nregions = kept;
	struct pm_error *err = target_build_modules(t);
	if (err)
		return err;
	target_label_regions(t);
	return target_check_thread_stacks(t);
}

/* ---- regions, threads, modules ------------------------------------------ */

size_t pm_target_region_count(const struct pm_target *t)
{
	return t->nregions;
}

struct pm_region *pm_target_region(struct pm_target *t, size_t i)
{
	return i < t->nregions ? &t->regions[i] : NULL;
}

struct pm_region *pm_target_find_region(struct pm_target *t, uint64_t addr)
{
	size_t lo = 0, hi = t->nregions;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (addr < t->regions[mid].start)
			hi = mid;
		else if (addr >= t->regions[mid].end)
			lo = mid + 1;
		else
			return &t->regions[mid];
	}
	return NULL;
}

bool pm_target_is_mapped(const struct pm_target *t, uint64_t addr, size_t len)
{
	uint64_t end = addr + len;
	if (end < addr)
		return false;
	while (addr < end) {
		const struct pm_region *r =
			pm_target_find_region((struct pm_target *)t, addr);
		if (!r || !(r->perms & PM_PERM_R))
			return false;
		addr = r->end;
	}
	return true;
}

const char *pm_region_label_name(enum pm_region_label label)
{
	static const char *const names[PM_LABEL_COUNT] = {
		[PM_LABEL_ANON] = "anonymous",
		[PM_LABEL_MODULE] = "module",
		[PM_LABEL_FILE] = "file",
		[PM_LABEL_HEAP] = "heap",
		[PM_LABEL_MAIN_STACK] = "main thread stack",
		[PM_LABEL_THREAD_STACK] = "thread stack",
		[PM_LABEL_GUARD] = "guard page",
		[PM_LABEL_VDSO] = "vdso",
		[PM_LABEL_VVAR] = "vvar",
		[PM_LABEL_VSYSCALL] = "vsyscall",
		[PM_LABEL_RESERVED] = "reserved (no access)",
		[PM_LABEL_GLIBC_MAIN_HEAP] = "glibc main heap",
		[PM_LABEL_GLIBC_ARENA_HEAP] = "glibc thread arena heap",
		[PM_LABEL_GLIBC_ARENA_RESERVED] = "glibc arena reserve",
		[PM_LABEL_GLIBC_MMAPPED] = "glibc mmapped chunk",
		[PM_LABEL_PYMALLOC_ARENA] = "pymalloc arena",
		[PM_LABEL_PYTHON_DATA_STACK] = "python data stack",
		[PM_LABEL_MIMALLOC] = "mimalloc segment",
		[PM_LABEL_PYTHON_MMAP] = "mmap.mmap",
	};
	if ((unsigned)label >= PM_LABEL_COUNT || !names[label])
		return "unknown";
	return names[label];
}

/* The labels the walkers give (the allocators' and the CPython
 * analysis's mmap.mmap): a region they labelled takes more of them. */
static bool label_from_walk(enum pm_region_label label)
{
	return label >= PM_LABEL_GLIBC_MAIN_HEAP;
}

void pm_target_label_area(struct pm_target *t, uint64_t start, uint64_t end,
			  enum pm_region_label label, const char *detail)
{
	struct pm_region *r = pm_target_find_region(t, start);
	if (!r || end <= start)
		return;
	/* A file's mapping is no allocator's, but an mmap.mmap of the file
	 * made it. */
	bool file_mmap = r->label == PM_LABEL_FILE && label == PM_LABEL_PYTHON_MMAP;
	if (r->label != PM_LABEL_ANON && r->label != PM_LABEL_HEAP &&
	    r->label != PM_LABEL_RESERVED && !label_from_walk(r->label) &&
	    !file_mmap)
		return;
	if (end > r->end)
		end = r->end;
	struct pm_region_area *area = NULL;
	for (size_t i = 0; i < r->nareas; i++)
		if (r->areas[i].label == label)
			area = &r->areas[i];
	if (!area) {
		if (r->nareas == PM_REGION_AREAS_MAX)
			return;
		area = &r->areas[r->nareas++];
		*area = (struct pm_region_area){.label = (uint8_t)label};
		if (r->nareas == 1)
			snprintf(r->label_detail, sizeof(r->label_detail), "%s",
				 detail ? detail : "");
	}
	area->count++;
	area->bytes += end - start;
	const struct pm_region_area *most = &r->areas[0];
	for (size_t i = 1; i < r->nareas; i++)
		if (r->areas[i].bytes > most->bytes)
			most = &r->areas[i];
	r->label = most->label;
}

void pm_region_label_text(const struct pm_region *r, char *buf, size_t size)
{
	const char *name = pm_region_label_name(r->label);
	if (r->nareas == 1 && r->areas[0].count > 1) {
		snprintf(buf, size, "%s x%u", name, (unsigned)r->areas[0].count);
	} else if (r->nareas > 1) {
		size_t used = 0;
		buf[0] = '\0';
		for (size_t i = 0; i < r->nareas && used < size; i++) {
			int n = snprintf(buf + used, size - used, "%s%s x%u",
					 i ? " + " : "",
					 pm_region_label_name(r->areas[i].label),
					 (unsigned)r->areas[i].count);
			if (n < 0)
				break;
			used += (size_t)n;
		}
	} else if (r->label_detail[0]) {
		snprintf(buf, size, "%s (%s)", name, r->label_detail);
	} else if (r->label_tid) {
		snprintf(buf, size, "%s (LWP %d)", name, (int)r->label_tid);
	} else {
		snprintf(buf, size, "%s", name);
	}
}

size_t pm_target_thread_count(const struct pm_target *t)
{
	return t->nthreads;
}

const struct pm_thread *pm_target_thread(const struct pm_target *t, size_t i)
{
	return i < t->nthreads ? &t->threads[i] : NULL;
}

size_t pm_target_module_count(const struct pm_target *t)
{
	return t->modules.size;
}

struct pm_module *pm_target_module(struct pm_target *t, size_t i)
{
	return i < t->modules.size ? &t->modules.data[i] : NULL;
}

static const char *path_basename(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

struct pm_module *pm_target_find_module(struct pm_target *t, const char *prefix)
{
	for (size_t i = 0; i < t->modules.size; i++)
		if (strncmp(path_basename(t->modules.data[i].path), prefix,
			    strlen(prefix)) == 0)
			return &t->modules.data[i];
	return NULL;
}

struct pm_module *pm_target_executable(struct pm_target *t)
{
	for (size_t i = 0; i < t->modules.size; i++)
		if (t->modules.data[i].is_executable)
			return &t->modules.data[i];
	return NULL;
}

/* ---- symbols ------------------------------------------------------------ */

/* Opens the module's file on disk (once) and checks it against the build-id
 * seen in memory: a library upgraded after the process started must not
 * lend us its symbols. */
struct pm_elf *pm_target_module_file(struct pm_target *t, struct pm_module *m)
{
	if (m->file_status == PM_FILE_UNCHECKED) {
		struct pm_error *err = target_elf_open(t, m->path, &m->file);
		if (err) {
			m->file_status = err->code == PM_ERR_FORMAT ?
				PM_FILE_NOT_ELF : err->code == PM_ERR_NOT_FOUND ?
				PM_FILE_MISSING : PM_FILE_UNREADABLE;
			pm_target_warn(t, false, 0, "%s", err->message);
			pm_error_destroy(err);
			m->file = NULL;
		} else {
			m->file_status = PM_FILE_OK;
		}
	}
	if (m->file_status == PM_FILE_OK && m->file && m->build_id_len) {
		size_t len;
		const uint8_t *id = pm_elf_build_id(m->file, &len);
		if (id && (len != m->build_id_len ||
			   memcmp(id, m->build_id, len) != 0)) {
			m->file_status = PM_FILE_MISMATCH;
			pm_target_warn(t, false, 0,
				       "%s on disk is not the file the process mapped (build-id differs); not using it",
				       m->path);
		}
	}
	if (m->file_status != PM_FILE_OK)
		return NULL;
	if (!m->build_id_len) {
		size_t len;
		const uint8_t *id = pm_elf_build_id(m->file, &len);
		if (id && len <= sizeof(m->build_id)) {
			memcpy(m->build_id, id, len);
			m->build_id_len = len;
		}
	}
	return m->file;
}

struct pm_elf *pm_target_module_debug_file(struct pm_target *t,
					   struct pm_module *m)
{
	if (t->options.no_debuginfo)
		return NULL;
	if (m->debug_file || m->debug_path || !m->build_id_len)
		return m->debug_file;
	struct pm_error *err = NULL;
	if (t->sysroot && !strcmp(t->debug_dir, "/usr/lib/debug")) {
		/* The target's own debug files first (a container's packages). */
		char *dir = pm_target_file_path(t, t->debug_dir);
		m->debug_path = dir ? pm_elf_debug_path(dir, m->build_id, m->build_id_len) : NULL;
		free(dir);
		if (m->debug_path) {
			err = pm_elf_open(m->debug_path, &m->debug_file);
			if (!err)
				return m->debug_file;
			pm_error_destroy(err);
			free(m->debug_path);
		}
	}
	m->debug_path = pm_elf_debug_path(t->debug_dir, m->build_id,
					  m->build_id_len);
	if (!m->debug_path)
		return NULL;
	err = pm_elf_open(m->debug_path, &m->debug_file);
	if (err) {
		if (err->code != PM_ERR_NOT_FOUND)
			pm_target_warn(t, false, 0,
				       "debug file of %s not used: %s", m->path,
				       err->message);
		pm_error_destroy(err);
		m->debug_file = NULL;
		free(m->debug_path);
		m->debug_path = strdup("");     /* remember: looked, none */
	}
	return m->debug_file;
}

static bool module_lookup(struct pm_target *t, struct pm_module *m,
			  const char *name, struct pm_symbol *ret)
{
	struct pm_elf *file = pm_target_module_file(t, m);
	if (!file)
		return false;
	uint64_t bias = m->start - pm_elf_load_base(file);
	uint64_t value, size;
	enum pm_symtab_kind kind;
	unsigned tables = t->options.no_debuginfo ? PM_SYMTAB_DYNSYM
		: PM_SYMTAB_DYNSYM | PM_SYMTAB_SYMTAB;
	if (pm_elf_find_symbol(file, name, tables, &value, &size, &kind)) {
		*ret = (struct pm_symbol){
			.address = value + bias, .size = size, .module = m,
			.source = kind == PM_SYMTAB_DYNSYM ? ".dynsym" : ".symtab",
		};
		return true;
	}
	if (t->options.no_debuginfo)
		return false;
	struct pm_elf *debug = pm_target_module_debug_file(t, m);
	if (debug && pm_elf_find_symbol(debug, name, PM_SYMTAB_SYMTAB, &value,
					&size, &kind)) {
		*ret = (struct pm_symbol){
			.address = value + bias, .size = size, .module = m,
			.source = "debug file",
		};
		return true;
	}
	return false;
}

/* The front end's lookup (pm_options.lookup_symbol), accepted only when the
 * address lies in a module that matches module_prefix. */
static bool frontend_lookup(struct pm_target *t, const char *module_prefix,
			    const char *name, struct pm_symbol *ret)
{
	uint64_t address = 0, size = 0;
	if (!t->options.lookup_symbol || t->options.no_debuginfo ||
	    !t->options.lookup_symbol(t->options.lookup_symbol_arg,
				      module_prefix, name, &address, &size))
		return false;
	for (size_t i = 0; i < t->modules.size; i++) {
		struct pm_module *m = &t->modules.data[i];
		if (module_prefix && strncmp(path_basename(m->path), module_prefix,
					     strlen(module_prefix)) != 0)
			continue;
		if (address >= m->start && address < m->end) {
			ret->address = address;
			ret->size = size;
			ret->module = m;
			ret->source = "debugger";
			return true;
		}
	}
	return false;
}

struct pm_error *pm_target_symbol(struct pm_target *t, const char *module_prefix,
				  const char *name, struct pm_symbol *ret)
{
	if (frontend_lookup(t, module_prefix, name, ret))
		return NULL;
	for (size_t i = 0; i < t->modules.size; i++) {
		struct pm_module *m = &t->modules.data[i];
		if (module_prefix && strncmp(path_basename(m->path), module_prefix,
					     strlen(module_prefix)) != 0)
			continue;
		if (module_lookup(t, m, name, ret))
			return NULL;
	}
	return pm_error_format(PM_ERR_NOT_FOUND, "symbol %s not found%s%s%s",
			       name, module_prefix ? " in " : "",
			       module_prefix ? module_prefix : "",
			       t->options.no_debuginfo ? " (debug info disabled)" : "");
}

/* ---- memory ------------------------------------------------------------- */

/* A copy of the sticky exited error, for each caller to own. */
static struct pm_error *exited_error(const struct pm_target *t)
{
	return pm_error_format(t->exited->code, "%s", t->exited->message);
}

/* Every read of the source goes through here, to notice that the live
 * process has exited (and remember it). */
static struct pm_error *source_read(struct pm_target *t, uint64_t addr,
				    void *buf, size_t len)
{
	if (t->exited)
		return exited_error(t);
	struct pm_error *err = t->source->ops->read(t->source, addr, buf, len);
	if (err && err->code == PM_ERR_EXITED && !t->exited) {
		t->exited = err;
		return exited_error(t);
	}
	return err;
}

struct pm_error *pm_target_exited(const struct pm_target *t)
{
	return t->exited ? exited_error(t) : NULL;
}

/* The cached line holding addr, filled if needed; NULL when the line is
 * not wholly inside one readable region (then the caller reads exactly
 * what it wants, so that an error names its address), or on no memory. */
static const uint8_t *line_get(struct pm_target *t, uint64_t addr)
{
	struct line_cache *c = &t->lines;
	if (!c->base) {
		c->base = malloc(LINE_COUNT * sizeof(*c->base));
		c->data = malloc(LINE_COUNT * LINE_SIZE);
		if (!c->base || !c->data) {
			free(c->base);
			free(c->data);
			c->base = NULL;
			c->data = NULL;
			return NULL;
		}
		for (size_t i = 0; i < LINE_COUNT; i++)
			c->base[i] = UINT64_MAX;
	}
	uint64_t base = addr & ~(LINE_SIZE - 1);
	size_t slot = (size_t)((addr >> LINE_SHIFT) % LINE_COUNT);
	uint8_t *data = c->data + slot * LINE_SIZE;
	if (c->base[slot] == base)
		return data;
	const struct pm_region *r = pm_target_find_region(t, base);
	if (!r || r->end - base < LINE_SIZE)
		return NULL;
	c->base[slot] = UINT64_MAX;
	struct pm_error *err = source_read(t, base, data, LINE_SIZE);
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	c->base[slot] = base;
	return data;
}

struct pm_error *pm_target_read(struct pm_target *t, uint64_t addr, void *buf,
				size_t len)
{
	if (len == 0)
		return NULL;
	if (addr + len < addr)
		return pm_error_at(PM_ERR_UNMAPPED, addr,
				   "read of %zu bytes at 0x%llx wraps around",
				   len, (unsigned long long)addr);
	if (t->source->ops->direct) {
		const void *p = t->source->ops->direct(t->source, addr, len);
		if (p) {
			memcpy(buf, p, len);
			return NULL;
		}
	}
	/* Small reads within one line come from the line cache. */
	if (len <= LINE_SIZE / 4 && (addr & (LINE_SIZE - 1)) + len <= LINE_SIZE &&
	    !t->exited) {
		const uint8_t *line = line_get(t, addr);
		if (line) {
			memcpy(buf, line + (addr & (LINE_SIZE - 1)), len);
			return NULL;
		}
	}
	return source_read(t, addr, buf, len);
}

struct pm_error *pm_target_read_u64(struct pm_target *t, uint64_t addr,
				    uint64_t *ret)
{
	return pm_target_read(t, addr, ret, sizeof(*ret));
}

struct pm_error *pm_target_read_u32(struct pm_target *t, uint64_t addr,
				    uint32_t *ret)
{
	return pm_target_read(t, addr, ret, sizeof(*ret));
}

struct pm_error *pm_target_read_cstr(struct pm_target *t, uint64_t addr,
				     char *buf, size_t size)
{
	if (size == 0)
		return pm_error_format(PM_ERR_INVALID, "empty string buffer");
	/* Read in small steps: a string may end just before an unmapped page. */
	size_t got = 0;
	while (got < size - 1) {
		size_t step = 64 - ((addr + got) & 63);
		if (step > size - 1 - got)
			step = size - 1 - got;
		struct pm_error *err = pm_target_read(t, addr + got, buf + got, step);
		if (err)
			return err;
		void *nul = memchr(buf + got, '\0', step);
		if (nul)
			return NULL;
		got += step;
	}
	buf[size - 1] = '\0';
	return pm_error_at(PM_ERR_CORRUPT, addr,
			   "string at 0x%llx is longer than %zu bytes",
			   (unsigned long long)addr, size - 1);
}

static struct pm_error *block_fill(struct pm_target *t, struct cache_block *b,
				   uint64_t base, uint64_t addr)
{
	const struct pm_region *r = pm_target_find_region(t, addr);
	if (!r)
		return pm_error_at(PM_ERR_UNMAPPED, addr,
				   "0x%llx is not mapped in the target",
				   (unsigned long long)addr);
	if (!b->data && !(b->data = malloc(BLOCK_SIZE)))
		return &pm_error_no_memory;
	uint64_t start = r->start > base ? r->start : base;
	uint64_t end = r->end < base + BLOCK_SIZE ? r->end : base + BLOCK_SIZE;
	b->base = base;
	b->valid_start = b->valid_end = 0;
	struct pm_error *err = source_read(t, start, b->data + (start - base),
					   end - start);
	if (err && err->code == PM_ERR_EXITED)
		return err;
	if (err) {
		/* A region can be partly unreadable (truncated core): fall back
		 * to exactly what was asked for, so the error names addr. */
		pm_error_destroy(err);
		return NULL;
	}
	b->valid_start = start;
	b->valid_end = end;
	return NULL;
}

struct pm_error *pm_target_view(struct pm_target *t, uint64_t addr, size_t len,
				const void **ret)
{
	if (len > PM_VIEW_MAX)
		return pm_error_format(PM_ERR_INVALID, "view of %zu bytes is too large", len);
	if (addr + len < addr)
		return pm_error_at(PM_ERR_UNMAPPED, addr, "view at 0x%llx wraps around",
				   (unsigned long long)addr);
	if (t->source->ops->direct) {
		const void *p = t->source->ops->direct(t->source, addr, len);
		if (p) {
			*ret = p;
			return NULL;
		}
	}
	uint64_t base = addr & ~(BLOCK_SIZE - 1);
	struct cache_block *b = &t->blocks[(addr >> BLOCK_SHIFT) % BLOCK_COUNT];
	if (b->base != base || addr < b->valid_start || addr >= b->valid_end) {
		struct pm_error *err = block_fill(t, b, base, addr);
		if (err)
			return err;
	}
	if (b->base == base && addr >= b->valid_start && addr + len <= b->valid_end) {
		*ret = b->data + (addr - base);
		return NULL;
	}
	if (!t->scratch && !(t->scratch = malloc(PM_VIEW_MAX)))
		return &pm_error_no_memory;
	struct pm_error *err = source_read(t, addr, t->scratch, len);
	if (err)
		return err;
	*ret = t->scratch;
	return NULL;
}

const void *pm_target_stable_view(struct pm_target *t, uint64_t addr, size_t len)
{
	if (!len || addr + len < addr || !t->source->ops->direct)
		return NULL;
	return t->source->ops->direct(t->source, addr, len);
}

/* ---- misc --------------------------------------------------------------- */

bool pm_target_auxv(const struct pm_target *t, uint64_t type, uint64_t *ret)
{
	for (size_t i = 0; i < t->nauxv; i++)
		if (t->auxv[i][0] == type) {
			*ret = t->auxv[i][1];
			return true;
		}
	return false;
}

bool pm_target_interrupted(const struct pm_target *t)
{
	return t->exited || (t->options.interrupted &&
			     t->options.interrupted(t->options.interrupted_arg));
}

void pm_target_progress(const struct pm_target *t, const char *stage, uint64_t done,
			uint64_t total)
{
	if (t->options.progress)
		t->options.progress(t->options.progress_arg, stage, done, total);
}

struct pm_error *pm_error_interrupted(void)
{
	return pm_error_format(PM_ERR_INTERRUPTED, "interrupted");
}

const struct pm_options *pm_target_options(const struct pm_target *t)
{
	return &t->options;
}

const char *pm_target_kind(const struct pm_target *t)
{
	return t->source->ops->kind;
}

pid_t pm_target_pid(const struct pm_target *t)
{
	return t->pid;
}

static uint32_t stage_bit(unsigned stage)
{
	return 1u << stage;
}

static bool stage_shown(const struct pm_target *t, unsigned stage)
{
	return !t->reported || (t->report_uses & stage_bit(stage));
}

/* The running report, and the innermost analysis under way, use these. */
static void note_uses(struct pm_target *t, uint32_t uses)
{
	t->report_uses |= uses;
	if (t->nopen_stages)
		t->open_stages[t->nopen_stages - 1].uses |= uses;
}

static unsigned current_stage(const struct pm_target *t)
{
	if (t->nopen_stages)
		return t->open_stages[t->nopen_stages - 1].slot;
	return t->report_depth ? PM_STAGE_REPORT : PM_STAGE_OPEN;
}

void pm_target_warn(struct pm_target *t, bool has_address, uint64_t address,
		    const char *fmt, ...)
{
	unsigned stage = current_stage(t);
	t->nwarnings_by_stage[stage]++;
	if (t->nwarnings_stored >= WARNINGS_STORED_MAX)
		return;
	if (!t->warnings) {
		t->warnings = calloc(WARNINGS_STORED_MAX, sizeof(*t->warnings));
		if (!t->warnings)
			return;
	}
	struct pm_diag *d = &t->warnings[t->nwarnings_stored];
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&d->message, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	d->has_address = has_address;
	d->address = address;
	d->stage = (uint8_t)stage;
	t->nwarnings_stored++;
}

size_t pm_target_warning_count(const struct pm_target *t)
{
	size_t n = 0;
	for (unsigned stage = 0; stage < PM_STAGES; stage++)
		if (stage_shown(t, stage))
			n += t->nwarnings_by_stage[stage];
	return n;
}

size_t pm_target_warnings_stored(const struct pm_target *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->nwarnings_stored; i++)
		n += stage_shown(t, t->warnings[i].stage);
	return n;
}

const struct pm_diag *pm_target_warning(const struct pm_target *t, size_t i)
{
	for (size_t k = 0; k < t->nwarnings_stored; k++)
		if (stage_shown(t, t->warnings[k].stage) && i-- == 0)
			return &t->warnings[k];
	return NULL;
}

const char *pm_target_warning_message(const struct pm_target *t, size_t i)
{
	const struct pm_diag *d = pm_target_warning(t, i);
	return d ? d->message : NULL;
}

/* Forgets the warnings and partial facts of one stage: they will be
 * raised again. */
static void drop_stage_warnings(struct pm_target *t, unsigned stage)
{
	size_t kept = 0;
	for (size_t i = 0; i < t->nwarnings_stored; i++) {
		if (t->warnings[i].stage == stage)
			free(t->warnings[i].message);
		else
			t->warnings[kept++] = t->warnings[i];
	}
	t->nwarnings_stored = kept;
	t->nwarnings_by_stage[stage] = 0;
	kept = 0;
	for (size_t i = 0; i < t->partials.size; i++) {
		if (t->partials.data[i].stage == stage && !t->partials.data[i].this_report)
			partial_deinit(&t->partials.data[i]);
		else
			t->partials.data[kept++] = t->partials.data[i];
	}
	t->partials.size = kept;
}

uint32_t pm_target_report_begin(struct pm_target *t)
{
	uint32_t outer = t->report_uses;
	/* A new outermost report forgets the last one's own warnings (it
	 * raises its own again) and any analysis a failed report left open. */
	if (t->report_depth == 0) {
		drop_stage_warnings(t, PM_STAGE_REPORT);
		t->nopen_stages = 0;
	}
	t->report_depth++;
	t->reported = true;
	t->report_uses = stage_bit(PM_STAGE_OPEN) | stage_bit(PM_STAGE_REPORT);
	return outer;
}

void pm_target_report_end(struct pm_target *t, uint32_t outer)
{
	if (t->report_depth > 0)
		t->report_depth--;
	/* The outermost report's uses stay, for its caller's count. */
	if (t->report_depth > 0)
		t->report_uses |= outer;
}

void *pm_target_cache_get(struct pm_target *t, enum pm_cache_slot slot)
{
	void *value = t->cache[slot].value;
	if (value) {
		note_uses(t, stage_bit(slot) | t->stage_uses[slot]);
		return value;
	}
	for (size_t i = 0; i < t->nopen_stages; i++)
		if (t->open_stages[i].slot == slot)
			return NULL;   /* already under way, further out */
	/* The report that attempts it shows its warnings, even when it fails
	 * (and so is never cached): those of an earlier failed attempt go,
	 * as this one raises them again. */
	drop_stage_warnings(t, slot);
	note_uses(t, stage_bit(slot));
	if (t->nopen_stages < PM_CACHE_SLOTS) {
		t->open_stages[t->nopen_stages].slot = (uint8_t)slot;
		t->open_stages[t->nopen_stages].uses = 0;
		t->nopen_stages++;
	}
	return NULL;
}

void pm_target_cache_set(struct pm_target *t, enum pm_cache_slot slot,
			 void *value, void (*destroy)(void *))
{
	if (t->cache[slot].value && t->cache[slot].destroy)
		t->cache[slot].destroy(t->cache[slot].value);
	t->cache[slot].value = value;
	t->cache[slot].destroy = destroy;
	uint32_t uses = 0;
	for (size_t i = t->nopen_stages; i-- > 0;) {
		if (t->open_stages[i].slot == slot) {
			uses = t->open_stages[i].uses;
			t->nopen_stages = i;   /* and any left open inside it */
			break;
		}
	}
	t->stage_uses[slot] = uses;
	note_uses(t, stage_bit(slot) | uses);
}

struct pm_error *pm_target_add_partial(struct pm_target *t,
				       const struct pm_partial *partial)
{
	for (size_t i = 0; i < t->partials.size; i++) {
		const struct pm_partial *p = &t->partials.data[i];
		if (!strcmp(p->reason, partial->reason) &&
		    !strcmp(p->message, partial->message))
			return NULL;
	}
	struct pm_partial copy = *partial;
	copy.stage = (uint8_t)current_stage(t);
	copy.message = strdup(partial->message);
	copy.figure = partial->figure ? strdup(partial->figure) : NULL;
	copy.ranges = NULL;
	if (partial->nranges) {
		copy.ranges = malloc(partial->nranges * sizeof(*copy.ranges));
		if (copy.ranges)
			memcpy(copy.ranges, partial->ranges,
			       partial->nranges * sizeof(*copy.ranges));
	}
	if (!copy.message || (partial->figure && !copy.figure) ||
	    (partial->nranges && !copy.ranges) ||
	    !partial_vector_append(&t->partials, &copy)) {
		partial_deinit(&copy);
		return &pm_error_no_memory;
	}
	return NULL;
}

size_t pm_target_partial_count(const struct pm_target *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->partials.size; i++)
		n += stage_shown(t, t->partials.data[i].stage);
	return n;
}

const struct pm_partial *pm_target_partial(const struct pm_target *t, size_t i)
{
	for (size_t k = 0; k < t->partials.size; k++)
		if (stage_shown(t, t->partials.data[k].stage) && i-- == 0)
			return &t->partials.data[k];
	return NULL;
}

void pm_target_drop_report_partials(struct pm_target *t)
{
	size_t kept = 0;
	for (size_t i = 0; i < t->partials.size; i++) {
		if (t->partials.data[i].this_report)
			partial_deinit(&t->partials.data[i]);
		else
			t->partials.data[kept++] = t->partials.data[i];
	}
	t->partials.size = kept;
}

uint64_t pm_target_writable_bytes(const struct pm_target *t)
{
	uint64_t total = 0;
	for (size_t i = 0; i < t->nregions; i++)
		if (t->regions[i].perms & PM_PERM_W)
			total += t->regions[i].end - t->regions[i].start;
	return total;
}
