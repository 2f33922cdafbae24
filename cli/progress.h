/* The progress line of the standalone command (cli/progress.c). */
#ifndef PM_CLI_PROGRESS_H
#define PM_CLI_PROGRESS_H

#include <stdint.h>

/* Starts the clock: a run shorter than the delay prints nothing. */
void progress_begin(void);
/* pm_options.progress: redraws the line when the stage or its percent
 * changed, at most ten times a second. */
void progress_show(void *arg, const char *stage, uint64_t done, uint64_t total);
/* Erases the line, if one is shown: before anything else is printed. */
void progress_clear(void);

#endif
