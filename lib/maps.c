/* /proc/PID/maps text: the region list of live and callback targets. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"

struct pm_error *pm_parse_maps_line(const char *line, struct pm_region *region)
{
	unsigned long long start, end, offset, inode;
	char perms[5];
	unsigned dev_major, dev_minor;
	int path_at = 0;
	memset(region, 0, sizeof(*region));
	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms,
		   &offset, &dev_major, &dev_minor, &inode, &path_at) < 7 ||
	    strlen(perms) != 4 || end <= start)
		return pm_error_format(PM_ERR_FORMAT, "malformed maps line: %.80s", line);
	region->start = start;
	region->end = end;
	region->offset = offset;
	region->inode = inode;
	region->perms = (perms[0] == 'r' ? PM_PERM_R : 0) |
			(perms[1] == 'w' ? PM_PERM_W : 0) |
			(perms[2] == 'x' ? PM_PERM_X : 0) |
			(perms[3] == 's' ? PM_PERM_SHARED : 0);
	const char *path = path_at ? line + path_at : "";
	size_t len = strcspn(path, "\n");
	/* Deleted files keep their name with " (deleted)": keep it as the
	 * kernel shows it; module lookup will then fail with a clear message. */
	if (len > 0) {
		region->path = strndup(path, len);
		if (!region->path)
			return &pm_error_no_memory;
	}
	region->saved = end - start;
	return NULL;
}

struct pm_error *pm_target_add_maps_text(struct pm_target *t, const char *text)
{
	const char *line = text;
	size_t count = 0;
	while (*line) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		if (len > 0) {
			char *copy = strndup(line, len);
			if (!copy)
				return &pm_error_no_memory;
			struct pm_region region;
			struct pm_error *err = pm_parse_maps_line(copy, &region);
			free(copy);
			if (err)
				return err;
			err = pm_target_add_region(t, &region);
			free(region.path);
			if (err)
				return err;
			count++;
		}
		line += len + (eol ? 1 : 0);
	}
	if (count == 0)
		return pm_error_format(PM_ERR_FORMAT, "the memory map is empty");
	return NULL;
}
