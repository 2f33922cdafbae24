/* pymortem: the standalone command. `pymortem REPORT [options] <core|pid>`
 * opens the target (freezing a live process for the duration), runs one
 * report from the library's registry and prints it. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "progress.h"
#include "pymortem.h"

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

static volatile sig_atomic_t interrupt_count;

/* First Ctrl-C asks the analysis to stop (the process is then thawed on the
 * normal path); a second one exits at once. The target is frozen with ptrace,
 * so the kernel resumes it even then. */
static void on_signal(int sig)
{
	(void)sig;
	if (++interrupt_count > 1)
		_exit(EXIT_INTERRUPTED);
}

static bool is_interrupted(void *arg)
{
	(void)arg;
	return interrupt_count > 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pymortem REPORT [options] <core-file|pid>\n"
		"       pymortem select [options] QUERY <core-file|pid>\n"
		"       pymortem describe ADDR <core-file|pid>\n"
		"       pymortem referrers|referents|path|retained ADDR <core-file|pid>\n"
		"       pymortem hexdump ADDR [LEN] <core-file|pid>\n"
		"       pymortem snapshot [--retainers] -o FILE <core-file|pid>\n"
		"       pymortem report -o FILE.html [BEFORE] <core-file|pid>   (BEFORE: how it grew)\n"
		"       pymortem diff BEFORE AFTER   (each a core file, a snapshot file or a pid)\n"
		"\n"
		"Post-mortem heap analysis of a CPython process, live or from a core.\n"
		"Why RSS does not drop: `rss` splits the resident memory (smaps and\n"
		"pagemap of a live process, a core's saved bytes) into objects, free\n"
		"memory by allocator class, overhead and the rest; `fragmentation` says\n"
		"what malloc_trim(0) would return and which blocks pin pymalloc arenas.\n"
		"What a change to the program would save: `waste` finds equal str,\n"
		"bytes, int and float values in different objects (sys.intern), the\n"
		"unused slots of lists, dicts, sets and bytearrays, empty containers,\n"
		"tiny dicts, __slots__ candidates and lists an array would hold, each\n"
		"with its saving, examples, paths and advice.\n"
		"Growth: `snapshot -o FILE` keeps what the heap holds now; `diff FILE PID`\n"
		"compares a later state with it: every summary row's count and bytes\n"
		"before, after and the change (--by type, owner, or retainer: the object\n"
		"that holds it, for snapshots taken with --retainers), and for the same\n"
		"process the allocations that are new, by type, with examples.\n"
		"A page to look at: `report -o FILE.html` writes one self-contained HTML\n"
		"file (no network use) with a treemap of the heap, the address space,\n"
		"fragmentation per arena, the top retainers, the waste findings and\n"
		"sortable tables of those reports.\n"
		"\nreports:\n");
	for (const struct pm_report_desc *d = pm_report_list(); d->name; d++)
		fprintf(out, "  %-16s %s\n", d->name, d->summary);
	fprintf(out,
		"\noptions:\n"
		"  --json              print JSON instead of a table\n"
		"  --no-debuginfo      use only .dynsym (ignore .symtab and debug files)\n"
		"  --debug-dir DIR     where separate debug files live (/usr/lib/debug)\n"
		"  --exe PATH          the executable, for a core whose notes lack it\n"
		"  --precise           only precise attributions: no \"held by T (inferred)\"\n"
		"                      rows (an unknown allocation one object alone points\n"
		"                      at stays unknown)\n"
		"  --sysroot DIR       read the target's files under DIR (a core of a process\n"
		"                      in a container or chroot: its root; live processes in\n"
		"                      another root are read through /proc/PID/root)\n"
		"  --by KEY            summary grouping: type, owner, retainer, size, region,\n"
		"                      allocator\n"
		"  --top N             show the N largest rows and what the rest add up to\n"
		"                      (summary: every row without it or with --top 0;\n"
		"                      sizes: 40 rows without it; rss: regions, 15;\n"
		"                      waste: values or examples per finding, 10)\n"
		"  --limit N           list at most N allocations (fragmentation: paths of\n"
		"                      the blocks pinning pymalloc arenas, 25)\n"
		"  --min-size N        only allocations of at least N bytes\n"
		"  --used | --free | --all   which allocations to list; summary: in-use\n"
		"                      memory (default), the allocators' free memory, or both\n"
		"                      (GDB's `heap summary --all` means every row instead)\n"
		"  --type T            only allocations of this kind\n"
		"  --query EXPR        select expression\n"
		"  --address ADDR      address for describe/hexdump\n"
		"  --length N          length for hexdump\n"
		"  --threshold PCT     suspects: the share of the heap one must retain (10)\n"
		"  -o, --output FILE   snapshot, report: the file to write\n"
		"  --retainers         snapshot: keep the rows by retainer too (diff --by\n"
		"                      retainer; the reference graph: about twice the time)\n"
		"  -h, --help          this help;  --version  the version\n"
		"\nWhen stderr is a terminal, a run that takes over half a second shows its\n"
		"stage and percent there, erased before the report (PYMORTEM_PROGRESS_DELAY=S\n"
		"sets the delay in seconds).\n");
}

static void fail(const char *what, struct pm_error *err)
{
	progress_clear();
	fprintf(stderr, "pymortem: error: %s%s%s\n", what ? what : "",
		what ? ": " : "", err->message);
	pm_error_destroy(err);
}

static bool parse_number(const char *text, uint64_t *ret)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 0);
	if (errno || end == text || *end || text[0] == '-')
		return false;
	*ret = v;
	return true;
}

static bool parse_pid(const char *text, pid_t *ret)
{
	if (!*text)
		return false;
	for (const char *p = text; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	long v = strtol(text, NULL, 10);
	if (v <= 0 || v > 0x3fffffff)
		return false;
	*ret = (pid_t)v;
	return true;
}

/* The operands between the report's name and the target, as the GDB
 * commands take them: `select QUERY`, `describe ADDR`, `hexdump ADDR
 * [LEN]` (the --query/--address/--length options say the same). */
static bool take_operands(const char *report, char **operands, int count,
			  struct pm_report_args *args)
{
	int max = 0;
	if (strcmp(report, "select") == 0)
		max = 1;
	else if (strcmp(report, "describe") == 0 || strcmp(report, "referents") == 0 ||
		 strcmp(report, "referrers") == 0 || strcmp(report, "path") == 0 ||
		 strcmp(report, "retained") == 0)
		max = 1;
	else if (strcmp(report, "hexdump") == 0)
		max = 2;
	if (count > max) {
		fprintf(stderr, "pymortem: error: %s takes %s before the core file or pid, not '%s'\n",
			report, max == 0 ? "no operand" : max == 1 ?
			(strcmp(report, "select") == 0 ? "one QUERY" : "one ADDR") :
			"ADDR [LEN]", operands[max]);
		return false;
	}
	if (count >= 1 && strcmp(report, "select") == 0) {
		args->query = operands[0];
		return true;
	}
	uint64_t number;
	for (int i = 0; i < count; i++) {
		if (!parse_number(operands[i], &number)) {
			fprintf(stderr, "pymortem: error: %s needs a number for %s, not '%s'\n",
				report, i == 0 ? "ADDR" : "LEN", operands[i]);
			return false;
		}
		if (i == 0) {
			args->address = number;
			args->has_address = true;
		} else {
			args->length = number;
		}
	}
	return true;
}

static bool report_exists(const char *name)
{
	for (const struct pm_report_desc *d = pm_report_list(); d->name; d++)
		if (strcmp(d->name, name) == 0)
			return true;
	return false;
}

static int run_report(struct pm_target *t, const char *report,
		      const struct pm_report_args *args)
{
	char *text;
	struct pm_error *err = pm_report_run(t, report, args, &text);
	if (err) {
		int code = err->code == PM_ERR_INTERRUPTED ? EXIT_INTERRUPTED : 1;
		fail(NULL, err);
		return code;
	}
	progress_clear();
	fputs(text, stdout);
	free(text);
	/* JSON keeps its warnings inside the document; say on stderr that
	 * there are some, so a script's user does not miss them. */
	size_t nwarnings = pm_target_warning_count(t);
	if (args->format == PM_FORMAT_JSON && nwarnings) {
		const char *first = pm_target_warnings_stored(t) ?
			pm_target_warning_message(t, 0) : "";
		fprintf(stderr, "pymortem: warning: %zu problem%s found (\"warnings\" in the JSON), first: %s\n",
			nwarnings, nwarnings == 1 ? "" : "s", first);
	}
	return 0;
}

/* Opens TARGET, a pid (frozen, unless it names a file) or a core file,
 * for every command: on failure says why in one line (expected: what the
 * command takes, for an operand that is neither) and returns false with
 * nothing left open. source gets "pid N" or "core PATH". */
struct opened {
	struct pm_target *t;
	struct pm_frozen_process *frozen;   /* a live pid's, until closed */
	char source[4200];
};

static bool is_live_pid(const char *operand, pid_t *pid)
{
	return parse_pid(operand, pid) && access(operand, F_OK) != 0;
}

static void opened_close(struct opened *o)
{
	if (o->t)
		pm_target_destroy(o->t);
	if (o->frozen)
		pm_process_thaw(o->frozen);
	o->t = NULL;
	o->frozen = NULL;
}

static bool opened_open(const char *operand, const struct pm_options *options,
			const char *expected, struct opened *o)
{
	memset(o, 0, sizeof(*o));
	struct pm_error *err;
	pid_t pid;
	if (is_live_pid(operand, &pid)) {
		err = pm_process_freeze(pid, &o->frozen);
		if (!err)
			err = pm_target_open_pid(pid, options, &o->t);
		snprintf(o->source, sizeof(o->source), "pid %d", (int)pid);
		if (err)
			fail(NULL, err);
	} else {
		struct stat st;
		if (stat(operand, &st) != 0) {
			fprintf(stderr, "pymortem: error: %s: %s (expected %s)\n", operand,
				strerror(errno), expected);
			return false;
		}
		err = pm_target_open_core(operand, options, &o->t);
		snprintf(o->source, sizeof(o->source), "core %s", operand);
		/* Name the file once, whether or not the library did. */
		if (err)
			fail(strstr(err->message, operand) ? NULL : operand, err);
	}
	if (err) {
		opened_close(o);
		return false;
	}
	return true;
}

static int run_on_target(const char *target, const char *report,
			 const struct pm_options *options,
			 const struct pm_report_args *args)
{
	struct opened o;
	if (!opened_open(target, options, "a core file or a pid", &o))
		return 1;
	int status = run_report(o.t, report, args);
	opened_close(&o);
	return status;
}

/* One side of `diff` (or the target of `snapshot`): a snapshot file, a
 * live pid (frozen until side_close) or a core. The target stays open so
 * that the diff can show previews of what is new. */
struct side {
	struct pm_snapshot *snap;
	struct opened target;
};

static void side_close(struct side *s)
{
	pm_snapshot_destroy(s->snap);
	s->snap = NULL;
	opened_close(&s->target);
}

/* retainers: the snapshot of a target also gets the rows by retainer
 * (snapshot --retainers, diff --by retainer). */
static bool side_open(const char *operand, const struct pm_options *options, bool keep,
		      bool retainers, struct side *s)
{
	memset(s, 0, sizeof(*s));
	pid_t pid;
	if (!is_live_pid(operand, &pid) && pm_snapshot_is_file(operand)) {
		struct pm_error *err = pm_snapshot_load(operand, &s->snap);
		if (err) {
			fail(NULL, err);
			return false;
		}
		return true;
	}
	if (!opened_open(operand, options, "a core file, a snapshot file or a pid",
			 &s->target))
		return false;
	char source[4300];
	snprintf(source, sizeof(source), "%s%s", s->target.source,
		 s->target.frozen ? " (live)" : "");
	struct pm_error *err = pm_snapshot_take(s->target.t, source, &s->snap);
	if (!err && retainers)
		err = pm_snapshot_add_retainers(s->snap, s->target.t);
	if (err) {
		fail(NULL, err);
		side_close(s);
		return false;
	}
	if (!keep)
		opened_close(&s->target);
	return true;
}

/* pymortem snapshot -o FILE TARGET */
static int run_snapshot(const char *target, const char *output, bool retainers,
			const struct pm_options *options, const struct pm_report_args *args)
{
	if (!output) {
		fprintf(stderr, "pymortem: error: snapshot needs -o FILE: where to write it\n");
		return EXIT_USAGE;
	}
	struct side s;
	if (!side_open(target, options, false, retainers, &s))
		return 1;
	struct pm_error *err = pm_snapshot_save(s.snap, output);
	if (err) {
		fail(NULL, err);
		side_close(&s);
		return 1;
	}
	progress_clear();
	struct stat st;
	long long bytes = stat(output, &st) == 0 ? (long long)st.st_size : -1;
	if (args->format == PM_FORMAT_JSON) {
		/* The name as a JSON string: quotes, backslashes and control
		 * bytes escaped (others as they are: a UTF-8 name stays one). */
		fputs("{\"file\": \"", stdout);
		for (const unsigned char *c = (const unsigned char *)output; *c; c++) {
			if (*c == '"' || *c == '\\')
				printf("\\%c", *c);
			else if (*c < 0x20)
				printf("\\u%04x", *c);
			else
				putchar(*c);
		}
		printf("\", \"bytes\": %lld}\n", bytes);
	}
	else
		printf("snapshot of %s written to %s (%lld bytes); compare a later state "
		       "with it: pymortem diff %s TARGET\n", target, output, bytes, output);
	side_close(&s);
	return 0;
}

/* pymortem report -o FILE [BEFORE] TARGET: the library's HTML page of the
 * target (with BEFORE, a core, snapshot file or pid of an earlier state,
 * also how it grew since: the page's Growth section),
 * written to a temporary file beside FILE and renamed onto it once whole, so
 * an unwritable place fails before the analysis and a failed analysis leaves
 * no half page (nor an empty file) behind. */
static int run_html_report(const char *before_operand, const char *operand,
			   const char *output, const struct pm_options *options)
{
	if (!output) {
		fprintf(stderr, "pymortem: error: report needs -o FILE: where to write the HTML page\n");
		return EXIT_USAGE;
	}
	struct stat st;
	if (stat(output, &st) == 0 && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "pymortem: error: cannot write %s: it is a directory\n", output);
		return 1;
	}
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", output) >= sizeof(tmp)) {
		fprintf(stderr, "pymortem: error: cannot write %s: name too long\n", output);
		return 1;
	}
	int fd = mkstemp(tmp);
	if (fd < 0) {
		fprintf(stderr, "pymortem: error: cannot write %s: %s\n", output, strerror(errno));
		return 1;
	}
	int status = 1;
	struct side before = {0};
	struct opened o = {0};
	if (before_operand) {
		pid_t pid;
		if (!side_open(before_operand, options, !is_live_pid(before_operand, &pid),
			       false, &before)) {
			close(fd);
			unlink(tmp);
			return 1;
		}
	}
	if (!opened_open(operand, options, "a core file or a pid", &o))
		goto out;
	char *page = NULL;
	struct pm_error *err = before_operand ?
		pm_report_html_diff(o.t, o.source, before.snap, before.target.t, &page) :
		pm_report_html(o.t, o.source, &page);
	side_close(&before);
	opened_close(&o);
	progress_clear();
	if (err) {
		status = err->code == PM_ERR_INTERRUPTED ? EXIT_INTERRUPTED : 1;
		fail(NULL, err);
		goto out;
	}
	size_t len = strlen(page), done = 0;
	while (done < len) {
		ssize_t n = write(fd, page + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	free(page);
	/* mkstemp's file is 0600; the page gets what a new file would. */
	mode_t mask = umask(0);
	umask(mask);
	int write_errno = done < len ? (errno ? errno : ENOSPC) : 0;
	if (!write_errno && fchmod(fd, 0666 & ~mask) != 0)
		write_errno = errno;
	if (close(fd) != 0 && !write_errno)
		write_errno = errno;        /* NFS and quotas report here */
	fd = -1;
	if (write_errno) {
		fprintf(stderr, "pymortem: error: cannot write %s: %s\n", output,
			strerror(write_errno));
		goto out;
	}
	if (rename(tmp, output) != 0) {
		fprintf(stderr, "pymortem: error: cannot write %s: %s\n", output, strerror(errno));
		goto out;
	}
	printf("report of %s written to %s (%zu bytes)\n", o.source, output, len);
	return 0;
out:
	side_close(&before);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return status;
}

/* pymortem diff BEFORE AFTER */
static int run_diff(const char *before_operand, const char *after_operand,
		    const struct pm_options *options, const struct pm_report_args *args)
{
	struct side before, after;
	/* A core before stays open for the previews of what is gone; a live
	 * process has changed since, if it is the same one. */
	pid_t pid;
	bool before_live = is_live_pid(before_operand, &pid);
	bool retainers = args->by && !strcmp(args->by, "retainer");
	if (!side_open(before_operand, options, !before_live, retainers, &before))
		return 1;
	if (!side_open(after_operand, options, true, retainers, &after)) {
		side_close(&before);
		return 1;
	}
	char *text;
	struct pm_error *err = pm_diff_run(before.snap, after.snap, before.target.t, after.target.t, args,
					   &text);
	int status = 0;
	if (err) {
		status = err->code == PM_ERR_INTERRUPTED ? EXIT_INTERRUPTED : 1;
		fail(NULL, err);
	} else {
		progress_clear();
		fputs(text, stdout);
		free(text);
	}
	side_close(&after);
	side_close(&before);
	return status;
}

int main(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_NO_DEBUGINFO, OPT_DEBUG_DIR, OPT_EXE, OPT_BY,
	       OPT_TOP, OPT_LIMIT, OPT_MIN_SIZE, OPT_USED, OPT_FREE, OPT_ALL,
	       OPT_TYPE, OPT_QUERY, OPT_ADDRESS, OPT_LENGTH, OPT_THRESHOLD,
	       OPT_VERSION, OPT_SYSROOT, OPT_OUTPUT, OPT_RETAINERS, OPT_PRECISE };
	static const struct option long_options[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"no-debuginfo", no_argument, NULL, OPT_NO_DEBUGINFO},
		{"debug-dir", required_argument, NULL, OPT_DEBUG_DIR},
		{"exe", required_argument, NULL, OPT_EXE},
		{"sysroot", required_argument, NULL, OPT_SYSROOT},
		{"by", required_argument, NULL, OPT_BY},
		{"top", required_argument, NULL, OPT_TOP},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{"min-size", required_argument, NULL, OPT_MIN_SIZE},
		{"used", no_argument, NULL, OPT_USED},
		{"free", no_argument, NULL, OPT_FREE},
		{"all", no_argument, NULL, OPT_ALL},
		{"type", required_argument, NULL, OPT_TYPE},
		{"query", required_argument, NULL, OPT_QUERY},
		{"address", required_argument, NULL, OPT_ADDRESS},
		{"length", required_argument, NULL, OPT_LENGTH},
		{"threshold", required_argument, NULL, OPT_THRESHOLD},
		{"output", required_argument, NULL, OPT_OUTPUT},
		{"retainers", no_argument, NULL, OPT_RETAINERS},
		{"precise", no_argument, NULL, OPT_PRECISE},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	struct pm_options options = {.interrupted = is_interrupted};
	struct pm_report_args args = {0};
	int opt;
	uint64_t number;
	const char *output = NULL;
	bool retainers = false;
	while ((opt = getopt_long(argc, argv, "ho:", long_options, NULL)) != -1) {
		switch (opt) {
		case 'o': case OPT_OUTPUT: output = optarg; break;
		case OPT_RETAINERS: retainers = true; break;
		case OPT_JSON: args.format = PM_FORMAT_JSON; break;
		case OPT_NO_DEBUGINFO: options.no_debuginfo = true; break;
		case OPT_PRECISE: options.precise = true; break;
		case OPT_DEBUG_DIR: options.debug_dir = optarg; break;
		case OPT_EXE: options.executable = optarg; break;
		case OPT_SYSROOT: options.sysroot = optarg; break;
		case OPT_BY: args.by = optarg; break;
		case OPT_USED: args.state = "used"; break;
		case OPT_FREE: args.state = "free"; break;
		case OPT_ALL: args.state = "all"; break;
		case OPT_TYPE: args.type = optarg; break;
		case OPT_QUERY: args.query = optarg; break;
		case OPT_TOP: case OPT_LIMIT: case OPT_MIN_SIZE:
		case OPT_ADDRESS: case OPT_LENGTH:
			if (!parse_number(optarg, &number)) {
				fprintf(stderr, "pymortem: error: %s needs a number, not '%s'\n",
					argv[optind - 1], optarg);
				return EXIT_USAGE;
			}
			if (opt == OPT_TOP) args.top = (long)number;
			if (opt == OPT_LIMIT) args.limit = (long)number;
			if (opt == OPT_MIN_SIZE) args.min_size = number;
			if (opt == OPT_ADDRESS) {
				args.address = number;
				args.has_address = true;
			}
			if (opt == OPT_LENGTH) args.length = number;
			break;
		case OPT_THRESHOLD: {
			char *end;
			args.threshold = strtod(optarg, &end);
			if (end == optarg || *end || !(args.threshold > 0) ||
			    args.threshold > 100) {
				fprintf(stderr, "pymortem: error: --threshold needs a share of "
					"the heap in percent (0 to 100), not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case OPT_VERSION: printf("pymortem %s\n", PM_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc && strcmp(argv[optind], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc - optind < 2) {
		fprintf(stderr, "pymortem: error: %s\n%s",
			argc == optind ? "which report? and on which core file or pid?" :
			"on which core file or pid?",
			"usage: pymortem REPORT [options] <core-file|pid>  (pymortem --help lists the reports)\n");
		return EXIT_USAGE;
	}
	const char *report = argv[optind], *target = argv[argc - 1];
	bool special = !strcmp(report, "snapshot") || !strcmp(report, "diff") ||
		!strcmp(report, "report");
	if (special) {
		int operands = argc - optind - 1;
		int want = !strcmp(report, "diff") ? 2 : 1;
		if (!strcmp(report, "report") && operands == 2)
			want = 2;   /* BEFORE TARGET: with the Growth section */
		if (operands != want) {
			fprintf(stderr, "pymortem: error: %s takes %s, not %d operands\n", report,
				want == 2 ? "BEFORE and AFTER (each a core file, a snapshot file "
				"or a pid)" : "one core file or pid", operands);
			return EXIT_USAGE;
		}
	}
	if (retainers && strcmp(report, "snapshot")) {
		fprintf(stderr, "pymortem: error: --retainers is for snapshot (diff takes "
			"--by retainer)\n");
		return EXIT_USAGE;
	}
	if (!special && !report_exists(report)) {
		fprintf(stderr, "pymortem: error: unknown report '%s' (see pymortem --help)\n",
			report);
		return EXIT_USAGE;
	}
	if (!special && !take_operands(report, argv + optind + 1, argc - optind - 2, &args))
		return EXIT_USAGE;
	/* A progress line on stderr when it is a terminal (a person
	 * waiting), never into a file or pipe. */
	if (isatty(STDERR_FILENO)) {
		options.progress = progress_show;
		progress_begin();
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (!strcmp(report, "snapshot"))
		return run_snapshot(target, output, retainers, &options, &args);
	if (!strcmp(report, "report"))
		return run_html_report(argc - optind - 1 == 2 ? argv[optind + 1] : NULL, target,
				       output, &options);
	if (!strcmp(report, "diff"))
		return run_diff(argv[optind + 1], target, &options, &args);
	return run_on_target(target, report, &options, &args);
}
