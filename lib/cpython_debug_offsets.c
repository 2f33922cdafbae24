/* _Py_DebugOffsets (3.13+): the offsets CPython publishes for debuggers
 * in the first member of _PyRuntime (cookie "xdebugpy"). pymortem keeps its
 * own tables (cpython_layout.c, pymalloc.c, graph_roots.c,
 * graph_referents.c) because they hold far more than these; this checks
 * every table offset the structure also carries against it, so a patch
 * release that moves a field is refused with the field's name instead of
 * being analysed wrongly. Where each field sits inside _Py_DebugOffsets is
 * itself per minor version (ptype /o struct _Py_DebugOffsets on 3.13.0,
 * 3.13.18, 3.14.10 and 3.15.2). */
#include "cpython_debug_offsets.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "cpython.h"
#include "graph_build.h"

enum {
	FIRST_MINOR = 13, LAST_MINOR = 15,
	DEBUG_OFFSETS_MAX = 1024,   /* bytes read: the 3.15 struct is 888 */
};

/* What a table holds for one field, for the interpreter in hand. */
struct expected {
	const struct pm_cpython_layout *l;
	const struct roots_layout *roots;
	const struct referent_layout *refs;
};

typedef uint64_t expected_fn(const struct expected *e);

struct debug_field {
	const char *name;           /* as in _Py_DebugOffsets */
	/* its position in _Py_DebugOffsets for 3.13, 3.14, 3.15 (0: absent) */
	uint16_t at[LAST_MINOR - FIRST_MINOR + 1];
	expected_fn *expected;
};

#define EXPECT(fn, expr) \
	static uint64_t fn(const struct expected *e) { return (uint64_t)(expr); }
EXPECT(interpreters_head, e->l->runtime_interp_head)
EXPECT(interp_next, e->l->interp_next)
EXPECT(interp_threads_head, e->l->interp_threads_head)
EXPECT(interp_modules, e->roots->interp_modules)
EXPECT(interp_sysdict, e->roots->interp_sysdict)
EXPECT(interp_builtins, e->roots->interp_builtins)
EXPECT(tstate_prev, e->l->tstate_prev)
EXPECT(tstate_next, e->l->tstate_next)
EXPECT(tstate_interp, e->l->tstate_interp)
EXPECT(tstate_current_frame, e->roots->tstate_current)
EXPECT(tstate_thread_id, e->roots->tstate_thread_id)
EXPECT(tstate_native_id, e->roots->tstate_native_id)
EXPECT(frame_previous, e->roots->if_previous)
EXPECT(frame_executable, e->roots->if_code)
EXPECT(frame_localsplus, e->roots->if_localsplus)
EXPECT(frame_owner, e->roots->if_owner)
EXPECT(frame_stackpointer, e->roots->if_stacktop)
EXPECT(tp_name, e->l->tp_name)
EXPECT(tp_flags, e->l->tp_flags)
EXPECT(tp_basicsize, e->l->tp_basicsize)
EXPECT(ht_cached_keys, e->l->ht_cached_keys)
EXPECT(list_items, e->l->list_items)
EXPECT(set_table, e->l->set_table)
EXPECT(dict_keys, e->l->dict_keys)
EXPECT(dict_values, e->l->dict_values)
EXPECT(ascii_size, e->l->str_ascii_size)
EXPECT(gen_name, e->refs->gi_name)
EXPECT(gen_iframe, e->refs->gi_iframe)
EXPECT(gen_frame_state, e->refs->gi_frame_state)
#undef EXPECT

static const struct debug_field fields[] = {
	{ "runtime_state.interpreters_head", { 40, 40, 40 }, interpreters_head },
	{ "interpreter_state.next", { 64, 64, 64 }, interp_next },
	{ "interpreter_state.threads_head", { 72, 72, 72 }, interp_threads_head },
	{ "interpreter_state.imports_modules", { 88, 96, 96 }, interp_modules },
	{ "interpreter_state.sysdict", { 96, 104, 104 }, interp_sysdict },
	{ "interpreter_state.builtins", { 104, 112, 112 }, interp_builtins },
	{ "thread_state.prev", { 160, 184, 184 }, tstate_prev },
	{ "thread_state.next", { 168, 192, 192 }, tstate_next },
	{ "thread_state.interp", { 176, 200, 200 }, tstate_interp },
	{ "thread_state.current_frame", { 184, 208, 208 }, tstate_current_frame },
	{ "thread_state.thread_id", { 192, 216, 240 }, tstate_thread_id },
	{ "thread_state.native_thread_id", { 200, 224, 248 }, tstate_native_id },
	{ "interpreter_frame.previous", { 232, 256, 320 }, frame_previous },
	{ "interpreter_frame.executable", { 240, 264, 328 }, frame_executable },
	{ "interpreter_frame.localsplus", { 256, 280, 344 }, frame_localsplus },
	{ "interpreter_frame.owner", { 264, 288, 352 }, frame_owner },
	{ "interpreter_frame.stackpointer", { 0, 296, 360 }, frame_stackpointer },
	{ "type_object.tp_name", { 376, 424, 488 }, tp_name },
	{ "type_object.tp_flags", { 392, 440, 504 }, tp_flags },
	{ "type_object.tp_basicsize", { 0, 0, 512 }, tp_basicsize },
	{ "heap_type_object.ht_cached_keys", { 0, 0, 536 }, ht_cached_keys },
	{ "list_object.ob_item", { 432, 480, 576 }, list_items },
	{ "set_object.table", { 0, 512, 608 }, set_table },
	{ "dict_object.ma_keys", { 456, 536, 632 }, dict_keys },
	{ "dict_object.ma_values", { 464, 544, 640 }, dict_values },
	{ "unicode_object.asciiobject_size", { 560, 640, 736 }, ascii_size },
	{ "gen_object.gi_name", { 0, 672, 800 }, gen_name },
	{ "gen_object.gi_iframe", { 0, 680, 808 }, gen_iframe },
	{ "gen_object.gi_frame_state", { 0, 688, 816 }, gen_frame_state },
};

static const char cookie[8] = { 'x', 'd', 'e', 'b', 'u', 'g', 'p', 'y' };

static bool check_one(const struct debug_field *f, size_t column, const uint8_t *buf,
		      const struct expected *e, const struct pm_python_info *py,
		      char *why, size_t why_size)
{
	uint16_t at = f->at[column];
	if (!at || at + 8u > DEBUG_OFFSETS_MAX)
		return true;
	uint64_t published = pm_load_u64(buf + at), ours = f->expected(e);
	if (published == ours)
		return true;
	snprintf(why, why_size, "CPython %d.%d.%d is not supported yet: its _Py_DebugOffsets "
		 "give %s = %" PRIu64 " where pymortem's 3.%d table has %" PRIu64
		 " (verified: %s)", py->major, py->minor, py->micro, f->name, published,
		 py->minor, ours, pm_cpython_verified_releases(py->minor));
	return false;
}

bool pm_cpython_check_debug_offsets(struct pm_target *t, const struct pm_python_info *py,
				    char *why, size_t why_size)
{
	if (py->minor < FIRST_MINOR || py->minor > LAST_MINOR || !py->runtime)
		return true;
	struct expected e = { pm_cpython_layout_of(py), roots_layout_for(py->minor),
			      referent_layout_for(py->minor) };
	if (!e.l || !e.roots || !e.refs)
		return true;
	uint8_t buf[DEBUG_OFFSETS_MAX];
	struct pm_error *err = pm_target_read(t, py->runtime, buf, sizeof(buf));
	if (err) {
		pm_error_destroy(err);
		return true;    /* unreadable: the analysis itself says so */
	}
	if (memcmp(buf, cookie, sizeof(cookie)) != 0) {
		pm_target_warn(t, false, py->runtime, "_PyRuntime does not start with "
			       "_Py_DebugOffsets' cookie: its offsets could not be checked");
		return true;
	}
	size_t column = (size_t)(py->minor - FIRST_MINOR);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (!check_one(&fields[i], column, buf, &e, py, why, why_size))
			return false;
	return true;
}

const char *pm_cpython_verified_releases(int minor)
{
	switch (minor) {
	case 13:
		return "3.13.0, 3.13.18 and 3.13.18d";
	case 14:
		return "3.14.10 and 3.14.10d";
	case 15:
		return "3.15.2 and 3.15.2d";
	default:
		return "none";
	}
}
