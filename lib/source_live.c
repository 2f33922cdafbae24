/* A live process as a memory source: regions from /proc/PID/maps, memory by
 * pread on /proc/PID/mem, threads from /proc/PID/task. The process should be
 * stopped (pm_process_freeze, or a debugger) while it is analysed; if it
 * dies anyway (SIGKILL), reads fail with PM_ERR_EXITED, which stops the
 * analysis instead of turning every read into a warning.
 *
 * Guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13; glibc 2.43 puts a
 * thread stack's guard page inside the stack's own mapping this way): their
 * pages answer EIO on /proc/PID/mem although the mapping is readable. They
 * hold nothing (the process itself faults on them), so a read across one
 * gets zeros for those pages, as the kernel's core dump gives them; a
 * mapping has such pages only where smaps lists the "gu" flag for it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "proc_state.h"
#include "smaps.h"
#include "source.h"
#include "vector.h"

#define LIVE_THREADS_MAX 100000
#define GUARDED_MAPPINGS_MAX 100000
#define PAGE 4096

struct address_range {
	uint64_t start, end;
};
PM_DEFINE_VECTOR(address_range_vector, struct address_range)

/* The mappings that have guard regions (smaps VmFlags "gu"), in address
 * order, read on the first EIO. */
struct guarded_mappings {
	bool loaded;
	struct address_range_vector ranges;
};

struct live_source {
	struct pm_source base;
	pid_t pid;
	int mem_fd;
	int proc_fd;        /* /proc/PID: stays with this process, not the pid */
	struct guarded_mappings guarded;
};

static bool guarded_add(void *ctx, const struct pm_smaps_mapping *m)
{
	struct guarded_mappings *g = ctx;
	struct address_range r = { m->start, m->end };
	if (!m->guard_regions || m->end <= m->start)
		return true;
	/* Out of memory or past the cap: the rest read as unreadable. */
	return address_range_vector_append(&g->ranges, &r) &&
	       g->ranges.size < GUARDED_MAPPINGS_MAX;
}

static void guarded_load(struct live_source *live)
{
	struct guarded_mappings *g = &live->guarded;
	g->loaded = true;
	int fd = openat(live->proc_fd, "smaps", O_RDONLY | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return;
	}
	pm_smaps_parse(f, guarded_add, g);
	fclose(f);
}

/* Whether addr is in a mapping with guard regions. */
static bool guarded_at(struct live_source *live, uint64_t addr)
{
	if (!live->guarded.loaded)
		guarded_load(live);
	const struct address_range *r = live->guarded.ranges.data;
	size_t lo = 0, hi = live->guarded.ranges.size;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (addr < r[mid].start)
			hi = mid;
		else if (addr >= r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* A read that failed: EOF from /proc/PID/mem means the process's memory
 * is gone (an unmapped address gives EIO instead), even before /proc shows
 * the process as a zombie; ESRCH, confirmed by /proc, that it is. */
static bool live_process_exited(struct live_source *live, ssize_t n, int errnum)
{
	if (n == 0)
		return true;
	return errnum == ESRCH &&
	       pm_proc_life_at(live->proc_fd, NULL) != PM_PROC_ALIVE;
}

/* Whether the process's memory is gone, asked without a known address:
 * page 0 is never mapped, so a live process answers EIO, a dead one EOF. */
static bool live_memory_gone(struct live_source *live)
{
	char byte;
	return pread(live->mem_fd, &byte, 1, 0) == 0 ||
	       pm_proc_life_at(live->proc_fd, NULL) != PM_PROC_ALIVE;
}

static struct pm_error *live_read(struct pm_source *source, uint64_t addr,
				  void *buf, size_t len)
{
	struct live_source *live = (struct live_source *)source;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(live->mem_fd, (char *)buf + done, len - done,
				  (off_t)(addr + done));
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		uint64_t at = addr + done;
		int errnum = n < 0 ? errno : 0;
		if (live_process_exited(live, n, errnum))
			return pm_proc_exited_error(live->pid, PM_PROC_GONE, 0, true);
		if (errnum == EIO && guarded_at(live, at)) {
			/* A guard page: zeros, to the end of the page. */
			size_t zeros = PAGE - (size_t)(at % PAGE);
			if (zeros > len - done)
				zeros = len - done;
			memset((char *)buf + done, 0, zeros);
			done += zeros;
			continue;
		}
		errno = errnum;
		if (n == 0 || errno == EIO || errno == EFAULT)
			return pm_error_at(PM_ERR_UNMAPPED, at,
					   "cannot read 0x%llx in process %d (not mapped or not readable)",
					   (unsigned long long)at, (int)live->pid);
		return pm_error_errno(errno, "reading 0x%llx in process %d",
				      (unsigned long long)at, (int)live->pid);
	}
	return NULL;
}

static void live_destroy(struct pm_source *source)
{
	struct live_source *live = (struct live_source *)source;
	if (live->mem_fd >= 0)
		close(live->mem_fd);
	if (live->proc_fd >= 0)
		close(live->proc_fd);
	address_range_vector_deinit(&live->guarded.ranges);
	free(live);
}

static const struct pm_source_ops live_ops = {
	.kind = "live",
	.read = live_read,
	.destroy = live_destroy,
};

/* Reads a whole small /proc file into a malloc'd string. */
static struct pm_error *read_proc_file(const char *path, char **ret)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pm_error_errno(errno, "%s", path);
	size_t cap = 65536, len = 0;
	char *text = malloc(cap);
	while (text) {
		if (len + 1 == cap) {
			char *grown = realloc(text, cap * 2);
			if (!grown)
				break;
			text = grown;
			cap *= 2;
		}
		ssize_t n = read(fd, text + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(text);
			close(fd);
			return pm_error_errno(e, "%s", path);
		}
		if (n == 0) {
			text[len] = '\0';
			close(fd);
			*ret = text;
			return NULL;
		}
		len += (size_t)n;
	}
	free(text);
	close(fd);
	return &pm_error_no_memory;
}

/* /proc/PID/task/TID/syscall of a stopped thread ends with its sp and pc. */
static void live_thread_regs(pid_t pid, struct pm_thread *thread)
{
	char path[64], *text;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid,
		 (int)thread->tid);
	struct pm_error *err = read_proc_file(path, &text);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	char *last = strrchr(text, ' ');
	if (last && last != text && strncmp(text, "running", 7) != 0) {
		*last = '\0';
		char *prev = strrchr(text, ' ');
		if (prev) {
			thread->sp = strtoull(prev + 1, NULL, 16);
			thread->pc = strtoull(last + 1, NULL, 16);
			thread->has_regs = thread->sp != 0;
		}
	}
	free(text);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid,
		 (int)thread->tid);
	if (!read_proc_file(path, &text)) {
		text[strcspn(text, "\n")] = '\0';
		snprintf(thread->name, sizeof(thread->name), "%s", text);
		free(text);
	}
}

static struct pm_error *live_add_threads(struct pm_target *t, pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return pm_error_errno(errno, "%s", path);
	struct dirent *entry;
	size_t count = 0;
	struct pm_error *err = NULL;
	while (!err && (entry = readdir(dir)) && count < LIVE_THREADS_MAX) {
		char *end;
		long tid = strtol(entry->d_name, &end, 10);
		if (*end || tid <= 0)
			continue;
		struct pm_thread thread = {.tid = (int32_t)tid};
		live_thread_regs(pid, &thread);
		err = pm_target_add_thread(t, &thread);
		count++;
	}
	closedir(dir);
	return err;
}

static struct pm_error *live_add_auxv(struct pm_target *t, pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pm_error_errno(errno, "%s", path);
	uint64_t pairs[2 * 64];
	ssize_t n = read(fd, pairs, sizeof(pairs));
	close(fd);
	if (n < 0)
		return pm_error_errno(errno, "%s", path);
	return pm_target_set_auxv(t, pairs, (size_t)n / 16);
}

struct pm_error *pm_target_open_pid(pid_t pid, const struct pm_options *options,
				    struct pm_target **ret)
{
	if (pid <= 0)
		return pm_error_format(PM_ERR_INVALID, "invalid pid %d", (int)pid);
	pid_t parent = 0;
	enum pm_proc_life life = pm_proc_life(pid, &parent);
	if (life != PM_PROC_ALIVE)
		return pm_proc_exited_error(pid, life, parent, false);
	struct live_source *live = calloc(1, sizeof(*live));
	if (!live)
		return &pm_error_no_memory;
	live->base.ops = &live_ops;
	live->pid = pid;
	live->mem_fd = -1;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	live->proc_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	if (live->proc_fd >= 0)
		live->mem_fd = openat(live->proc_fd, "mem", O_RDONLY | O_CLOEXEC);
	if (live->mem_fd < 0) {
		int e = errno;
		live_destroy(&live->base);
		life = pm_proc_life(pid, &parent);
		if (life != PM_PROC_ALIVE)
			return pm_proc_exited_error(pid, life, parent, false);
		if (e == EACCES || e == EPERM)
			return pm_error_format(PM_ERR_PERMISSION,
					       "permission denied reading the memory of process %d (run as its owner or root; check /proc/sys/kernel/yama/ptrace_scope)",
					       (int)pid);
		return pm_error_errno(e, "opening %s", path);
	}
	struct pm_target *t;
	struct pm_error *err = pm_target_create(&live->base, options, pid, &t);
	if (err) {
		live_destroy(&live->base);
		return err;
	}
	/* A process in another root (a container, a chroot) names files of
	 * its own: they are read through /proc/PID/root. */
	struct stat its_root, our_root;
	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	if (!pm_target_sysroot(t) && stat(path, &its_root) == 0 && stat("/", &our_root) == 0 &&
	    (its_root.st_dev != our_root.st_dev || its_root.st_ino != our_root.st_ino) &&
	    !pm_target_set_sysroot(t, path)) {
		pm_target_destroy(t);
		return &pm_error_no_memory;
	}
	char *maps;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	err = read_proc_file(path, &maps);
	if (!err) {
		err = pm_target_add_maps_text(t, maps);
		free(maps);
	}
	if (!err)
		err = live_add_threads(t, pid);
	if (!err)
		err = live_add_auxv(t, pid);
	if (!err)
		err = pm_target_finish(t);
	if (err) {
		/* A process that dies while it is opened leaves an empty map
		 * and unreadable files: say that, not what broke first. */
		if (live_memory_gone(live)) {
			pm_error_destroy(err);
			err = pm_proc_exited_error(pid, PM_PROC_GONE, 0, true);
		} else if (err->code != PM_ERR_EXITED) {
			err = pm_error_wrap(err, "process %d", (int)pid);
		}
		pm_target_destroy(t);
		return err;
	}
	*ret = t;
	return NULL;
}
