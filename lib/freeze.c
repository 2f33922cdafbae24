/* Freezing a live process while it is analysed: PTRACE_SEIZE + INTERRUPT on
 * every thread. ptrace rather than SIGSTOP because the kernel resumes the
 * threads by itself if we die, so a crashed or killed analysis can never
 * leave the target stopped. A process that is already stopped (by a
 * debugger, or by SIGSTOP) is left exactly as it is. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include "proc_state.h"
#include "pymortem.h"
#include "vector.h"

#define FREEZE_ROUNDS_MAX 100
#define FREEZE_THREADS_MAX 100000

PM_DEFINE_VECTOR(tid_vector, pid_t)

struct pm_frozen_process {
	pid_t pid;
	struct tid_vector tids;     /* threads we seized */
};

static char thread_state(pid_t pid, pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return '?';
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The state follows the last ')' (comm may contain parentheses). */
	char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' ? paren[2] : '?';
}

static bool frozen_has(const struct pm_frozen_process *f, pid_t tid)
{
	for (size_t i = 0; i < f->tids.size; i++)
		if (f->tids.data[i] == tid)
			return true;
	return false;
}

/* Seizes every thread not seized yet; *added counts new ones. */
static struct pm_error *seize_new_threads(struct pm_frozen_process *f,
					  size_t *added)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)f->pid);
	DIR *dir = opendir(path);
	if (!dir)
		return pm_error_errno(errno, "process %d", (int)f->pid);
	struct dirent *entry;
	*added = 0;
	struct pm_error *err = NULL;
	while (!err && (entry = readdir(dir))) {
		char *end;
		long tid = strtol(entry->d_name, &end, 10);
		if (*end || tid <= 0 || frozen_has(f, (pid_t)tid))
			continue;
		if (f->tids.size == FREEZE_THREADS_MAX) {
			err = pm_error_format(PM_ERR_UNSUPPORTED,
					      "process %d has too many threads to freeze",
					      (int)f->pid);
			break;
		}
		/* Room first: a seized thread must be remembered to be let go. */
		if (!tid_vector_reserve(&f->tids, f->tids.size + 1)) {
			err = &pm_error_no_memory;
			break;
		}
		if (ptrace(PTRACE_SEIZE, (pid_t)tid, NULL, NULL) != 0) {
			if (errno == ESRCH)     /* thread exited meanwhile */
				continue;
			err = pm_error_errno(errno, "cannot freeze process %d (ptrace)",
					     (int)f->pid);
			break;
		}
		pid_t seized = (pid_t)tid;
		(void)tid_vector_append(&f->tids, &seized);
		ptrace(PTRACE_INTERRUPT, (pid_t)tid, NULL, NULL);
		int status;
		while (waitpid((pid_t)tid, &status, __WALL) < 0 && errno == EINTR)
			;
		(*added)++;
	}
	closedir(dir);
	return err;
}

static bool process_already_stopped(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return false;
	bool all_stopped = true;
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		char *end;
		long tid = strtol(entry->d_name, &end, 10);
		if (*end || tid <= 0)
			continue;
		char state = thread_state(pid, (pid_t)tid);
		if (state != 'T' && state != 't') {
			all_stopped = false;
			break;
		}
	}
	closedir(dir);
	return all_stopped;
}

struct pm_error *pm_process_freeze(pid_t pid, struct pm_frozen_process **ret)
{
	struct pm_frozen_process *f = calloc(1, sizeof(*f));
	if (!f)
		return &pm_error_no_memory;
	f->pid = pid;
	/* ptrace refuses a zombie with EPERM, which would read as "permission
	 * denied" even to root: say what it is instead. */
	pid_t parent = 0;
	enum pm_proc_life life = pm_proc_life(pid, &parent);
	if (life != PM_PROC_ALIVE) {
		free(f);
		return pm_proc_exited_error(pid, life, parent, false);
	}
	if (process_already_stopped(pid)) {
		*ret = f;       /* nothing seized: thaw does nothing */
		return NULL;
	}
	/* Threads can be created while we seize: repeat until a round finds
	 * none new. */
	for (int round = 0; round < FREEZE_ROUNDS_MAX; round++) {
		size_t added = 0;
		struct pm_error *err = seize_new_threads(f, &added);
		if (err) {
			pm_process_thaw(f);
			/* It may have exited while we seized it. */
			life = pm_proc_life(pid, &parent);
			if (life != PM_PROC_ALIVE) {
				pm_error_destroy(err);
				return pm_proc_exited_error(pid, life, parent, false);
			}
			if (err->code == PM_ERR_PERMISSION)
				err = pm_error_wrap(err,
					"permission denied (run as the process owner or root; is a debugger already attached?)");
			return err;
		}
		if (added == 0) {
			*ret = f;
			return NULL;
		}
	}
	pm_process_thaw(f);
	return pm_error_format(PM_ERR_UNSUPPORTED,
			       "process %d keeps creating threads; cannot freeze it",
			       (int)pid);
}

void pm_process_thaw(struct pm_frozen_process *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->tids.size; i++)
		ptrace(PTRACE_DETACH, f->tids.data[i], NULL, NULL);
	tid_vector_deinit(&f->tids);
	free(f);
}
