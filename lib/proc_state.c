/* What /proc says about a live process's life: running, exited and waiting
 * to be reaped (a zombie), or gone. The freezer and the live memory source
 * ask it to tell "the process has exited" from their own failures (ptrace's
 * EPERM on a zombie, reads returning nothing once its memory is gone). */
#include "proc_state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads a small /proc file relative to dir_fd (or an absolute path when
 * dir_fd is AT_FDCWD) into buf; false if it cannot be opened or read. */
static bool read_small(int dir_fd, const char *path, char *buf, size_t size)
{
	int fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n;
	do
		n = read(fd, buf, size - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* The state letter after the last ')' of a stat line (comm may hold
 * parentheses), or 0. */
static char stat_state(const char *stat)
{
	const char *paren = strrchr(stat, ')');
	return paren && paren[1] == ' ' && paren[2] ? paren[2] : 0;
}

/* A numeric field "Name:\t123" of /proc/PID/status, or -1. */
static long status_field(const char *status, const char *name)
{
	size_t len = strlen(name);
	for (const char *line = status; line && *line;) {
		if (strncmp(line, name, len) == 0 && line[len] == ':')
			return strtol(line + len + 1, NULL, 10);
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -1;
}

static enum pm_proc_life life_from(int dir_fd, pid_t *parent)
{
	char buf[4096];
	if (!read_small(dir_fd, "stat", buf, sizeof(buf)))
		return PM_PROC_GONE;
	char state = stat_state(buf);
	if (state == 'X')
		return PM_PROC_GONE;
	if (state != 'Z')
		return PM_PROC_ALIVE;
	/* A thread-group leader that called pthread_exit is a zombie while
	 * its other threads run on: only a lone zombie thread has exited. */
	if (!read_small(dir_fd, "status", buf, sizeof(buf)))
		return PM_PROC_GONE;
	if (status_field(buf, "Threads") > 1)
		return PM_PROC_ALIVE;
	if (parent)
		*parent = (pid_t)status_field(buf, "PPid");
	return PM_PROC_ZOMBIE;
}

enum pm_proc_life pm_proc_life(pid_t pid, pid_t *parent)
{
	char path[32];
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	int dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return PM_PROC_GONE;
	enum pm_proc_life life = life_from(dir_fd, parent);
	close(dir_fd);
	return life;
}

enum pm_proc_life pm_proc_life_at(int proc_dir_fd, pid_t *parent)
{
	return life_from(proc_dir_fd, parent);
}

struct pm_error *pm_proc_exited_error(pid_t pid, enum pm_proc_life life,
				      pid_t parent, bool during_analysis)
{
	if (during_analysis)
		return pm_error_format(PM_ERR_EXITED,
				       "process %d exited during the analysis: its memory is gone, so there is no report",
				       (int)pid);
	if (life == PM_PROC_ZOMBIE && parent > 0)
		return pm_error_format(PM_ERR_EXITED,
				       "process %d has exited and is waiting to be reaped by its parent (pid %d): a zombie has no memory left to analyse",
				       (int)pid, (int)parent);
	if (life == PM_PROC_ZOMBIE)
		return pm_error_format(PM_ERR_EXITED,
				       "process %d has exited and is waiting to be reaped by its parent: a zombie has no memory left to analyse",
				       (int)pid);
	return pm_error_format(PM_ERR_NOT_FOUND, "no process with pid %d",
			       (int)pid);
}
