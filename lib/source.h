/* Memory sources behind a target (core file, live process, callback) and the
 * functions they use to describe the target while it is being opened. */
#ifndef PM_SOURCE_H
#define PM_SOURCE_H

#include "target.h"

struct pm_source;

struct pm_source_ops {
	const char *kind;
	/* Copy exactly len bytes at addr into buf, or fail (nothing partial). */
	struct pm_error *(*read)(struct pm_source *source, uint64_t addr,
				 void *buf, size_t len);
	/* Optional zero-copy: a pointer to len contiguous bytes, valid until
	 * the source is destroyed, or NULL when the source cannot (the target
	 * then reads through its block cache). */
	const void *(*direct)(struct pm_source *source, uint64_t addr,
			      size_t len);
	void (*destroy)(struct pm_source *source);
};

struct pm_source {
	const struct pm_source_ops *ops;
};

/* Building a target (used by the open functions of each source). */
struct pm_error *pm_target_create(struct pm_source *source,
				  const struct pm_options *options, pid_t pid,
				  struct pm_target **ret);
struct pm_error *pm_target_add_region(struct pm_target *t,
				      const struct pm_region *region);
struct pm_error *pm_target_add_thread(struct pm_target *t,
				      const struct pm_thread *thread);
struct pm_error *pm_target_set_auxv(struct pm_target *t, const uint64_t *pairs,
				    size_t npairs);
/* After all regions are added: sort, build modules, label regions. */
struct pm_error *pm_target_finish(struct pm_target *t);

/* Parses one /proc/PID/maps line into region (path strdup'd). */
struct pm_error *pm_parse_maps_line(const char *line, struct pm_region *region);
/* Adds every line of a maps text as a region. */
struct pm_error *pm_target_add_maps_text(struct pm_target *t, const char *text);

#endif
