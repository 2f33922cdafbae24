/* What /proc says about a live process's life (see proc_state.c). */
#ifndef PM_PROC_STATE_H
#define PM_PROC_STATE_H

#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

enum pm_proc_life {
	PM_PROC_ALIVE = 0,
	PM_PROC_ZOMBIE,     /* exited, not yet reaped: no memory, no threads */
	PM_PROC_GONE,       /* no such process (reaped, or never was) */
};

/* The life of process pid; for a zombie, *parent (if not NULL) is the
 * parent that has to reap it. */
enum pm_proc_life pm_proc_life(pid_t pid, pid_t *parent);
/* The same through an open /proc/PID directory: that descriptor stays
 * with the process it was opened for, so a recycled pid cannot fool it. */
enum pm_proc_life pm_proc_life_at(int proc_dir_fd, pid_t *parent);

/* The error for a process that is not alive: PM_ERR_EXITED "process N
 * exited during the analysis" (during_analysis), or "process N has exited
 * and is waiting to be reaped by its parent (pid P)" for a zombie, or
 * PM_ERR_NOT_FOUND "no process with pid N". */
struct pm_error *pm_proc_exited_error(pid_t pid, enum pm_proc_life life,
				      pid_t parent, bool during_analysis);

#endif
