/* A memory source whose bytes come from the caller, e.g. GDB reading a remote
 * (gdbserver) inferior; regions come as maps text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"

struct callback_source {
	struct pm_source base;
	struct pm_callback_source cb;
};

static struct pm_error *callback_read(struct pm_source *source, uint64_t addr,
				      void *buf, size_t len)
{
	struct callback_source *s = (struct callback_source *)source;
	if (s->cb.read(s->cb.arg, addr, buf, len) != 0)
		return pm_error_at(PM_ERR_UNMAPPED, addr,
				   "cannot read %zu bytes at 0x%llx from the debugger",
				   len, (unsigned long long)addr);
	return NULL;
}

static void callback_destroy(struct pm_source *source)
{
	free(source);
}

static const struct pm_source_ops callback_ops = {
	.kind = "callback",
	.read = callback_read,
	.destroy = callback_destroy,
};

static struct pm_error *callback_add_threads(struct pm_target *t,
					    const struct pm_callback_source *source)
{
	for (size_t i = 0; source->threads && i < source->nthreads; i++) {
		const struct pm_callback_thread *c = &source->threads[i];
		struct pm_thread thread = {
			.tid = c->tid,
			.has_regs = c->has_regs,
			.pc = c->pc,
			.sp = c->sp,
			.fs_base = c->fs_base,
		};
		if (c->name)
			snprintf(thread.name, sizeof(thread.name), "%s", c->name);
		struct pm_error *err = pm_target_add_thread(t, &thread);
		if (err)
			return err;
	}
	return NULL;
}

struct pm_error *pm_target_open_callback(const struct pm_callback_source *source,
					 const struct pm_options *options,
					 struct pm_target **ret)
{
	if (!source || !source->read || !source->maps_text)
		return pm_error_format(PM_ERR_INVALID,
				       "a callback target needs a read function and a memory map");
	struct callback_source *s = calloc(1, sizeof(*s));
	if (!s)
		return &pm_error_no_memory;
	s->base.ops = &callback_ops;
	s->cb = *source;
	s->cb.maps_text = NULL;     /* only used while opening */
	struct pm_options opts = options ? *options : (struct pm_options){0};
	if (!opts.executable)
		opts.executable = source->executable;
	struct pm_target *t;
	struct pm_error *err = pm_target_create(&s->base, &opts, source->pid, &t);
	if (err) {
		free(s);
		return err;
	}
	err = pm_target_add_maps_text(t, source->maps_text);
	if (!err)
		err = callback_add_threads(t, source);
	if (!err && source->auxv)
		err = pm_target_set_auxv(t, source->auxv, source->auxv_pairs);
	if (!err)
		err = pm_target_finish(t);
	if (err) {
		pm_target_destroy(t);
		return err;
	}
	*ret = t;
	return NULL;
}
