/* The target: one process image (live or from a core) seen through a memory
 * source, with its regions (mappings), modules (mapped ELF files) and threads.
 * Every layer above reads target memory only through these functions, and
 * every read is bounds-checked against the source. */
#ifndef PM_TARGET_H
#define PM_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "pymortem.h"

enum {
	PM_PERM_R = 1,
	PM_PERM_W = 2,
	PM_PERM_X = 4,
	PM_PERM_SHARED = 8,     /* 's' in maps; cores do not record it (then 'p') */
};

/* What a region is. Set first by the target (from maps/notes/threads), then
 * refined by the allocator walkers (glibc, pymalloc) when they run. */
enum pm_region_label {
	PM_LABEL_ANON = 0,          /* anonymous, nothing known yet */
	PM_LABEL_MODULE,            /* file-backed, an ELF module (exe or .so) */
	PM_LABEL_FILE,              /* file-backed, not an ELF module */
	PM_LABEL_HEAP,              /* [heap], the brk area */
	PM_LABEL_MAIN_STACK,        /* [stack] */
	PM_LABEL_THREAD_STACK,      /* stack of a thread other than the main one */
	PM_LABEL_GUARD,             /* PROT_NONE page(s) guarding a thread stack */
	PM_LABEL_VDSO,
	PM_LABEL_VVAR,
	PM_LABEL_VSYSCALL,
	PM_LABEL_RESERVED,          /* PROT_NONE, not a known guard */
	/* allocator labels (set by the walkers) */
	PM_LABEL_GLIBC_MAIN_HEAP,
	PM_LABEL_GLIBC_ARENA_HEAP,      /* used part of a non-main arena heap */
	PM_LABEL_GLIBC_ARENA_RESERVED,  /* reserved, unused part of an arena heap */
	PM_LABEL_GLIBC_MMAPPED,         /* mmapped chunk(s) */
	PM_LABEL_PYMALLOC_ARENA,
	PM_LABEL_PYTHON_DATA_STACK,     /* 3.11+ frame data stack chunks */
	PM_LABEL_MIMALLOC,
	/* set by the CPython analysis: a mapping an mmap.mmap object made
	 * (cpython_mmap.c), anonymous or of a file */
	PM_LABEL_PYTHON_MMAP,
	PM_LABEL_COUNT
};

/* What an allocator keeps in part of a region (see pm_target_label_area). */
struct pm_region_area {
	uint8_t label;              /* enum pm_region_label */
	uint32_t count;             /* arenas, heaps or chunks of that kind */
	uint64_t bytes;
};
#define PM_REGION_AREAS_MAX 4

struct pm_region {
	uint64_t start, end;        /* [start, end) */
	uint64_t offset;            /* file offset, as the maps offset column */
	uint32_t perms;             /* PM_PERM_* */
	char *path;                 /* NULL when anonymous; pseudo names "[heap]" etc. */
	uint64_t inode;             /* 0 when unknown (cores) */
	enum pm_region_label label;
	int32_t label_tid;          /* thread for stack/guard labels, else 0 */
	char label_detail[48];      /* walker's detail, e.g. arena address */
	/* Allocator areas found inside, by label: the kernel merges adjacent
	 * anonymous mmaps, so one region can hold pymalloc arenas and glibc
	 * mmapped chunks side by side. */
	uint8_t nareas;
	struct pm_region_area areas[PM_REGION_AREAS_MAX];
	/* Core sources: bytes of [start, start+saved) are in the core file. */
	uint64_t saved;
};

struct pm_thread {
	int32_t tid;
	bool has_regs;
	uint64_t pc, sp, fs_base;
	char name[17];
};

struct pm_elf;  /* an opened ELF file on disk (elf.h) */

struct pm_module {
	char *path;                 /* as mapped (maps path or NT_FILE name) */
	uint64_t start, end;        /* lowest..highest address of its mappings */
	uint64_t bias;              /* load bias: runtime address - link address */
	bool is_executable;         /* the main program (AT_PHDR/AT_ENTRY inside) */
	/* Build-id as read from target memory (if its first page is readable). */
	uint8_t build_id[64];
	size_t build_id_len;
	/* The file on disk, opened lazily; file_status says what happened. */
	struct pm_elf *file;
	struct pm_elf *debug_file;  /* separate debug file by build-id, if any */
	char *debug_path;
	enum {
		PM_FILE_UNCHECKED = 0,
		PM_FILE_OK,
		PM_FILE_MISSING,
		PM_FILE_MISMATCH,       /* build-id differs from the one in memory */
		PM_FILE_NOT_ELF,
		PM_FILE_UNREADABLE,     /* there, but opening failed (e.g. ENOMEM) */
	} file_status;
};

struct pm_symbol {
	uint64_t address;           /* runtime address */
	uint64_t size;
	const struct pm_module *module;
	const char *source;         /* ".dynsym", ".symtab", "debug file" */
};

/* Memory. Reads fail with PM_ERR_UNMAPPED (no mapping), PM_ERR_NOT_SAVED (in
 * a core, not dumped and not backed by a file), PM_ERR_FILE_MISSING. */
struct pm_error *pm_target_read(struct pm_target *t, uint64_t addr, void *buf,
				size_t len);
struct pm_error *pm_target_read_u64(struct pm_target *t, uint64_t addr,
				    uint64_t *ret);
struct pm_error *pm_target_read_u32(struct pm_target *t, uint64_t addr,
				    uint32_t *ret);
/* Reads a NUL-terminated string of at most size-1 bytes into buf. */
struct pm_error *pm_target_read_cstr(struct pm_target *t, uint64_t addr,
				     char *buf, size_t size);
/* Zero-copy where possible: *ret points at len bytes of target memory, valid
 * until the next memory call on t. len <= PM_VIEW_MAX. */
#define PM_VIEW_MAX (1u << 20)
struct pm_error *pm_target_view(struct pm_target *t, uint64_t addr, size_t len,
				const void **ret);
/* A pointer to len bytes of target memory that stays valid as long as t
 * (a core's mapping), or NULL when the source has none there (a live
 * process, a part the core did not save): then read instead. Reads
 * nothing. */
const void *pm_target_stable_view(struct pm_target *t, uint64_t addr, size_t len);
/* True if [addr, addr+len) lies inside readable regions (no read done). */
bool pm_target_is_mapped(const struct pm_target *t, uint64_t addr, size_t len);

/* Regions, sorted by start, non-overlapping. */
size_t pm_target_region_count(const struct pm_target *t);
struct pm_region *pm_target_region(struct pm_target *t, size_t i);
/* The region containing addr, or NULL. */
struct pm_region *pm_target_find_region(struct pm_target *t, uint64_t addr);
const char *pm_region_label_name(enum pm_region_label label);
/* The walkers' way to label memory: [start, end) is one arena, heap or
 * mmapped chunk of kind `label` (detail, e.g. "arena 0x...", may be NULL).
 * The region containing start counts it; its label becomes the kind holding
 * the most bytes. Stacks, modules and guards keep their labels; a file's
 * mapping takes only PM_LABEL_PYTHON_MMAP (an mmap.mmap of the file). */
void pm_target_label_area(struct pm_target *t, uint64_t start, uint64_t end,
			  enum pm_region_label label, const char *detail);
/* "glibc main heap (main arena 0x...)", "pymalloc arena x9 + glibc mmapped
 * chunk x1", "thread stack (LWP 12)": the label as reports print it. */
void pm_region_label_text(const struct pm_region *r, char *buf, size_t size);

size_t pm_target_thread_count(const struct pm_target *t);
const struct pm_thread *pm_target_thread(const struct pm_target *t, size_t i);

size_t pm_target_module_count(const struct pm_target *t);
struct pm_module *pm_target_module(struct pm_target *t, size_t i);
/* The module whose path's basename starts with prefix, e.g. "libc.so". */
struct pm_module *pm_target_find_module(struct pm_target *t, const char *prefix);
struct pm_module *pm_target_executable(struct pm_target *t);

/* Symbol lookup in modules whose basename starts with module_prefix (all when
 * NULL): .dynsym, then (unless no_debuginfo) .symtab and the separate debug
 * file. Matches `name` and LTO-renamed locals `name.lto_priv.N`. */
/* The module's file on disk, opened once and checked against the build-id
 * in memory; NULL if missing or mismatched (a warning says which). */
struct pm_elf *pm_target_module_file(struct pm_target *t, struct pm_module *m);

/* The sysroot the target's files are read under (NULL: none), and a path
 * of the target's there (malloc'd; NULL when out of memory). */
const char *pm_target_sysroot(const struct pm_target *t);
bool pm_target_set_sysroot(struct pm_target *t, const char *root);
char *pm_target_file_path(const struct pm_target *t, const char *path);

/* The separate debug file found by build-id, or NULL (also under no_debuginfo). */
struct pm_elf *pm_target_module_debug_file(struct pm_target *t,
					   struct pm_module *m);

struct pm_error *pm_target_symbol(struct pm_target *t, const char *module_prefix,
				  const char *name, struct pm_symbol *ret);

/* Has the front end asked to stop (Ctrl-C), or has the live process exited?
 * Long loops call this every few thousand steps and then return
 * pm_error_interrupted(); pm_report_run turns that into the right error. */
bool pm_target_interrupted(const struct pm_target *t);
/* Tells the front end's progress callback (pm_options.progress), if any,
 * that `stage` has done `done` of `total`; the loops that poll
 * pm_target_interrupted call it at the same steps. */
void pm_target_progress(const struct pm_target *t, const char *stage, uint64_t done,
			uint64_t total);
struct pm_error *pm_error_interrupted(void);
/* PM_ERR_EXITED "process N exited during the analysis" (a new error) once a
 * read found the live process gone, else NULL. What was analysed after that
 * moment is not the process: reports give this error instead. */
struct pm_error *pm_target_exited(const struct pm_target *t);

/* Auxiliary vector entry, or false if absent. */
bool pm_target_auxv(const struct pm_target *t, uint64_t type, uint64_t *ret);
const struct pm_options *pm_target_options(const struct pm_target *t);
/* "core", "live" or "callback". */
const char *pm_target_kind(const struct pm_target *t);
pid_t pm_target_pid(const struct pm_target *t);

/* Problems found along the way that do not stop the analysis (a missing file,
 * a corrupted chunk). Stored up to a cap; all are counted. Each belongs to
 * the analysis (cache slot) that raised it, and a report shows those of the
 * analyses it used, so the same report says the same on a fresh target (the
 * CLI's) and on one that earlier reports have used (GDB's session). The
 * count and the stored list below are of the current (or last) report's. */
struct pm_diag {
	bool has_address;
	uint64_t address;
	char *message;
	uint8_t stage;          /* a pm_cache_slot, or one of the two below */
};
void pm_target_warn(struct pm_target *t, bool has_address, uint64_t address,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
size_t pm_target_warning_count(const struct pm_target *t);
size_t pm_target_warnings_stored(const struct pm_target *t);
const struct pm_diag *pm_target_warning(const struct pm_target *t, size_t i);

/* Why the figures of a report are partial: the input lacks part of the
 * process (a truncated core) or the process holds memory no walker reads
 * (another allocator). Every report says these FIRST, before any table
 * ("partial: <message>" lines; JSON "partial_reasons"), and marks its totals
 * with each `figure`. */
struct pm_partial_range {
	uint64_t start, end;        /* the region [start, end) */
	uint64_t missing;           /* bytes of it that are missing */
};

struct pm_partial {
	const char *reason;         /* "core-truncated", "other-allocator", ... */
	char *message;              /* what is missing and what it means */
	char *figure;               /* short, for a total: "3 segments (1.2 MiB) missing from the core" */
	uint64_t missing_bytes;     /* bytes the figures lack, 0 if not known */
	struct pm_partial_range *ranges;    /* where, when known (may be NULL) */
	size_t nranges;
	bool this_report;           /* about the running report only */
	uint8_t stage;              /* set by the target, as a warning's */
};

/* Adds a partial fact (strings and ranges copied; reason must be static).
 * A fact with the same reason and message is kept once. this_report facts
 * (a report's own figures, e.g. the share of memory it does not account
 * for) are dropped when the running report ends. Like warnings, a report
 * lists the facts of the analyses it used. */
struct pm_error *pm_target_add_partial(struct pm_target *t,
				       const struct pm_partial *partial);
size_t pm_target_partial_count(const struct pm_target *t);
const struct pm_partial *pm_target_partial(const struct pm_target *t, size_t i);
/* Drops the this_report facts (pm_report_run, around each report). */
void pm_target_drop_report_partials(struct pm_target *t);
/* The total size of the regions that are writable: the memory a process's
 * allocators can hand out, and what a full account would attribute. */
uint64_t pm_target_writable_bytes(const struct pm_target *t);

/* Per-target cache slots for the layers above (glibc, pymalloc, cpython), so
 * each analysis runs once per target; destroy callbacks run at target destroy. */
enum pm_cache_slot { PM_CACHE_DETECT, PM_CACHE_GLIBC, PM_CACHE_PYMALLOC,
		     PM_CACHE_CPYTHON, PM_CACHE_ALLOCS, PM_CACHE_GRAPH,
		     PM_CACHE_PATHS, PM_CACHE_DOMINATORS, PM_CACHE_SLOTS };
/* Warnings' stages besides the slots: raised opening the target (every
 * report shows them) and raised by the running report itself. */
enum { PM_STAGE_OPEN = PM_CACHE_SLOTS, PM_STAGE_REPORT, PM_STAGES };
/* A cache_get that finds nothing opens that slot's analysis, until its
 * cache_set; what it gets meanwhile are its dependencies, and a report that
 * later gets it uses them too. */
void *pm_target_cache_get(struct pm_target *t, enum pm_cache_slot slot);
void pm_target_cache_set(struct pm_target *t, enum pm_cache_slot slot,
			 void *value, void (*destroy)(void *));
/* Around each report (they nest: the HTML page runs others); begin returns
 * what end takes back. */
uint32_t pm_target_report_begin(struct pm_target *t);
void pm_target_report_end(struct pm_target *t, uint32_t outer);

#endif
