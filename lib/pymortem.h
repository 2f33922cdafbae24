/* libpymortem public API: open a target (core file, live pid, or memory
 * callback) and run reports on it. The front ends (cli/, gdbplugin/) use only
 * this header. */
#ifndef PYMORTEM_H
#define PYMORTEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define PM_VERSION "0.1.0"

struct pm_target;

struct pm_options {
	/* Use only .dynsym: no .symtab, no separate debug files. Lets the
	 * symbol-free paths be tested on a machine that has debug files. */
	bool no_debuginfo;
	/* Where separate debug files live (default /usr/lib/debug). */
	const char *debug_dir;
	/* For cores: the executable, if NT_FILE does not name a usable one. */
	const char *executable;
	/* Polled during long analyses; returning true stops them with
	 * PM_ERR_INTERRUPTED. May be NULL. */
	bool (*interrupted)(void *arg);
	void *interrupted_arg;
	/* Told how far the long stages of an analysis are: the stage's name
	 * ("recognising objects", ...) and done of total in its own units
	 * (allocations, bytes, nodes), called every few thousand steps and
	 * once with done == total at a stage's end. For a progress line; may
	 * be NULL. */
	void (*progress)(void *arg, const char *stage, uint64_t done, uint64_t total);
	void *progress_arg;
	/* Optional symbol lookup by the front end (e.g. GDB's symbol tables,
	 * which may hold debug info the library cannot find), tried before the
	 * library's own unless no_debuginfo. Returns true and fills the runtime
	 * address and size when it knows `name` in a module whose basename
	 * starts with module_prefix (any module when NULL). An address outside
	 * such a module is ignored. May be NULL. */
	bool (*lookup_symbol)(void *arg, const char *module_prefix,
			      const char *name, uint64_t *address,
			      uint64_t *size);
	void *lookup_symbol_arg;
	/* Where the target's files are: the paths its maps or its core's
	 * NT_FILE name are read under this directory (a container's root;
	 * GDB's `set sysroot`). NULL: as they are; a live process in another
	 * root (a container, a chroot) has its files read through
	 * /proc/PID/root. Separate debug files are looked for under it first
	 * (unless debug_dir is given), then in debug_dir. */
	const char *sysroot;
	/* Only the precise attributions: no "held by T (inferred)" rows (an
	 * unknown allocation that one object alone points at stays unknown). */
	bool precise;
};

struct pm_error *pm_target_open_core(const char *core_path,
				     const struct pm_options *options,
				     struct pm_target **ret);
/* The process must already be stopped (see pm_process_freeze) or the reads
 * see a moving image. */
struct pm_error *pm_target_open_pid(pid_t pid, const struct pm_options *options,
				    struct pm_target **ret);

/* A thread of a callback target, as the debugger sees it. */
struct pm_callback_thread {
	int32_t tid;
	bool has_regs;
	uint64_t pc, sp, fs_base;
	const char *name;           /* may be NULL */
};

/* A target whose memory comes from the caller (e.g. GDB on a remote target).
 * regions_text is in /proc/PID/maps format (from `info proc mappings` or
 * the remote's maps file). */
struct pm_callback_source {
	/* Read len bytes at addr into buf; return 0 on success, -1 if any byte is
	 * unreadable. */
	int (*read)(void *arg, uint64_t addr, void *buf, size_t len);
	void *arg;
	const char *maps_text;
	pid_t pid;                  /* 0 if unknown */
	const char *executable;     /* path, may be NULL */
	/* Optional, what the debugger knows (else the target has no threads
	 * and no auxv): the auxiliary vector as (type, value) pairs, which
	 * tells the executable (AT_PHDR), and the threads, which label stacks. */
	const uint64_t *auxv;
	size_t auxv_pairs;
	const struct pm_callback_thread *threads;
	size_t nthreads;
};
struct pm_error *pm_target_open_callback(const struct pm_callback_source *source,
					 const struct pm_options *options,
					 struct pm_target **ret);

void pm_target_destroy(struct pm_target *t);

/* Problems found so far that did not stop the analysis (also in every
 * report's output): how many, and the text of stored ones (i < stored). */
size_t pm_target_warning_count(const struct pm_target *t);
size_t pm_target_warnings_stored(const struct pm_target *t);
const char *pm_target_warning_message(const struct pm_target *t, size_t i);

/* Freezing a live process for the duration of an analysis (the CLI does this;
 * inside GDB the process is already stopped). pm_process_thaw always resumes
 * what pm_process_freeze stopped. */
struct pm_frozen_process;
struct pm_error *pm_process_freeze(pid_t pid, struct pm_frozen_process **ret);
void pm_process_thaw(struct pm_frozen_process *frozen);

/* Reports: every front end prints what these return, nothing else. */
enum pm_output_format { PM_FORMAT_TEXT = 0, PM_FORMAT_JSON };

struct pm_report_args {
	enum pm_output_format format;
	const char *by;             /* summary grouping: type|size|region|allocator */
	long top;                   /* row limit, 0 = all */
	long limit;                 /* listing limit, 0 = default */
	uint64_t min_size;
	const char *state;          /* used|free|all */
	const char *type;           /* filter on category kind */
	const char *query;          /* select expression */
	uint64_t address;           /* describe/hexdump */
	uint64_t length;            /* hexdump */
	bool has_address;
	long width;                 /* text: cut longer lines to this (0 = no limit) */
	/* summary text: the front end's way to ask for every row, named in the
	 * "N more rows" line (GDB: "--all"); NULL: "--top 0". */
	const char *all_rows_option;
	double threshold;           /* suspects: share of the heap, percent */
};

struct pm_report_desc {
	const char *name;           /* "regions", "info", ... */
	const char *summary;        /* one line for help */
};
/* The reports this build provides, terminated by a {NULL, NULL} entry. */
const struct pm_report_desc *pm_report_list(void);

/* Runs report `name`; *ret is a malloc'd, NUL-terminated text (or JSON
 * document) to print as is. Problems that did not stop the report are part of
 * the text (a "warnings" section / "warnings" JSON array). */
struct pm_error *pm_report_run(struct pm_target *t, const char *name,
			       const struct pm_report_args *args, char **ret);

/* Snapshots, for diff: what an analysis of a target found (summary rows
 * by type and owner, every in-use allocation's address, size and
 * category, and the process's identity). source names the target in the
 * diff's text ("pid 123", "core FILE"). */
struct pm_snapshot;
struct pm_error *pm_snapshot_take(struct pm_target *t, const char *source,
				  struct pm_snapshot **ret);
struct pm_error *pm_snapshot_save(const struct pm_snapshot *s, const char *path);
struct pm_error *pm_snapshot_load(const char *path, struct pm_snapshot **ret);
/* Adds the rows of `summary --by retainer` (each allocation under the
 * object that dominates it: the reference graph and its dominator tree,
 * so about twice a snapshot's time), which `diff --by retainer` needs on
 * both sides; t is the target s was taken of, still in that state. */
struct pm_error *pm_snapshot_add_retainers(struct pm_snapshot *s, struct pm_target *t);
/* Names the snapshot in diff's text from now on (a loaded one is "snapshot
 * FILE of ..."; GDB names its kept ones). */
struct pm_error *pm_snapshot_set_source(struct pm_snapshot *s, const char *source);
/* Does the file start as a snapshot does (else: a core)? */
bool pm_snapshot_is_file(const char *path);
void pm_snapshot_destroy(struct pm_snapshot *s);

/* How after differs from before: args->by (type, owner, or retainer when
 * both have those rows), ->top (rows),
 * ->limit (examples of new and gone allocations per row), ->format.
 * before_target and after_target, each NULL or the target its snapshot was
 * taken from (still in that state): the allocations gone and new are shown
 * with previews. *ret as pm_report_run's. */
struct pm_error *pm_diff_run(const struct pm_snapshot *before,
			     const struct pm_snapshot *after,
			     struct pm_target *before_target,
			     struct pm_target *after_target,
			     const struct pm_report_args *args, char **ret);

/* The HTML report: one self-contained page (inline CSS and script, no
 * request possible) drawing the main reports' JSON, which it embeds as the
 * library gives them (summary by type and by owner, regions, rss,
 * fragmentation, retained, suspects, waste, info). source names the target
 * on the page ("pid 123", "core FILE"; may be NULL). *ret is the malloc'd
 * page. A report that cannot run on this target is an error on its part of
 * the page; only an exited process, an interrupt or no memory fail. */
struct pm_error *pm_report_html(struct pm_target *t, const char *source,
				char **ret);
/* The same page with a "Growth" section: how t differs from the earlier
 * snapshot before (diff's JSON: every row's change by type, and for the
 * same process the new and gone allocations with examples); before_target
 * as pm_diff_run's. */
struct pm_error *pm_report_html_diff(struct pm_target *t, const char *source,
				     const struct pm_snapshot *before,
				     struct pm_target *before_target, char **ret);

#endif
