/* The progress line: while a long analysis runs, one line on stderr that
 * says which stage it is in and how far ("pymortem: reading references
 * 42%"), redrawn in place with a carriage return and erased before the
 * report is printed. Only when stderr is a terminal (pymortem.c decides),
 * and only once a run has taken longer than PROGRESS_DELAY_S: a quick
 * report prints nothing more than before. The delay can be changed with
 * PYMORTEM_PROGRESS_DELAY (seconds; the tests use 0). No escape sequences:
 * a shorter line is padded with spaces over the longer one before it. */
#include "progress.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_DELAY_S 0.5
#define REDRAW_INTERVAL_S 0.1

static struct {
	struct timespec start, drawn_at;
	double delay;
	char stage[64];
	int percent;
	int width;                  /* of the line shown; 0: none */
} line;

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void progress_begin(void)
{
	clock_gettime(CLOCK_MONOTONIC, &line.start);
	line.delay = PROGRESS_DELAY_S;
	const char *env = getenv("PYMORTEM_PROGRESS_DELAY");
	if (env && *env) {
		char *end;
		double d = strtod(env, &end);
		if (!*end && d >= 0)
			line.delay = d;
	}
	line.percent = -1;
}

void progress_show(void *arg, const char *stage, uint64_t done, uint64_t total)
{
	(void)arg;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (seconds_between(&line.start, &now) < line.delay)
		return;
	int percent = total ? (int)(done >= total ? 100 : done * 100 / total) : 0;
	bool same_stage = !strncmp(line.stage, stage, sizeof(line.stage) - 1);
	if (same_stage && (percent == line.percent ||
			   seconds_between(&line.drawn_at, &now) < REDRAW_INTERVAL_S))
		return;
	snprintf(line.stage, sizeof(line.stage), "%s", stage);
	line.percent = percent;
	line.drawn_at = now;
	int width = fprintf(stderr, "\rpymortem: %s %3d%%", line.stage, percent) - 1;
	if (width < line.width)
		fprintf(stderr, "%*s", line.width - width, "");
	if (width > line.width)
		line.width = width;
	fflush(stderr);
}

void progress_clear(void)
{
	if (!line.width)
		return;
	fprintf(stderr, "\r%*s\r", line.width, "");
	fflush(stderr);
	line.width = 0;
	line.stage[0] = '\0';
	line.percent = -1;
}
