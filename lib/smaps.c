/* /proc/PID/smaps parsed into the per-mapping facts smaps.h lists. */
#include "smaps.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Whether the space-separated two-letter flags hold flag. */
static bool has_flag(const char *flags, const char *flag)
{
	for (const char *p = flags; (p = strstr(p, flag)); p += 2)
		if ((p == flags || p[-1] == ' ') && (p[2] == ' ' || p[2] == '\n' || !p[2]))
			return true;
	return false;
}

/* A mapping's first line: "start-end perms offset dev inode [path]".
 * Field lines start with a name and a colon, never with "hex-hex ". */
static bool mapping_line(const char *line, uint64_t *start, uint64_t *end)
{
	char *rest;
	unsigned long long a = strtoull(line, &rest, 16);
	if (rest == line || *rest != '-')
		return false;
	const char *second = rest + 1;
	unsigned long long b = strtoull(second, &rest, 16);
	if (rest == second || *rest != ' ')
		return false;
	*start = a;
	*end = b;
	return true;
}

bool pm_smaps_parse(FILE *f,
		    bool (*fn)(void *ctx, const struct pm_smaps_mapping *m),
		    void *ctx)
{
	char *line = NULL;
	size_t cap = 0;
	struct pm_smaps_mapping m;
	bool have = false, more = true;
	errno = 0;
	while (more && getline(&line, &cap, f) > 0) {
		uint64_t start, end;
		if (mapping_line(line, &start, &end)) {
			if (have)
				more = fn(ctx, &m);
			m = (struct pm_smaps_mapping){ .start = start, .end = end };
			have = true;
			continue;
		}
		if (!have)
			continue;
		unsigned long long kb;
		if (!strncmp(line, "VmFlags:", 8))
			m.guard_regions = has_flag(line + 8, "gu");
		else if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			m.rss = kb * 1024;
		else if (sscanf(line, "Swap: %llu kB", &kb) == 1)
			m.swap = kb * 1024;
	}
	if (more && have)
		fn(ctx, &m);
	bool ok = !ferror(f) && errno != ENOMEM;
	free(line);
	return ok;
}
