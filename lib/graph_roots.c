/* References into the heap from outside it, each named where it can be:
 * the interpreter's modules dict (sys.modules), sys's and builtins' dicts,
 * each thread's frames (3.8-3.10 the frame objects, 3.11+ the locals of
 * the interpreter frames in the threads' data stacks), and conservatively
 * every word pointing at an object's start in the writable data of the
 * mapped ELF modules (static types' fields by name), in the threads' C
 * stacks above their saved stack pointers, and in the allocations that are
 * no object and belong to none (interpreter and thread states, C
 * libraries' memory). A word named once is not counted again. */
#include "graph_build.h"

#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "elffile.h"

enum {
	INTERPRETERS_MAX = 256,
	THREADS_MAX = 1 << 16,
	FRAMES_MAX = 1 << 16,       /* frames of one thread */
	LOCALS_MAX = 1 << 20,
	SCAN_ALLOC_MAX = 4u << 20,  /* bytes of one allocation scanned */
	FRAME_OWNED_BY_THREAD = 0,
};
#define SCAN_TOTAL_MAX (UINT64_C(1) << 30)  /* bytes of allocations scanned */

static const struct roots_layout roots_layouts[] = {
	{ .minor = 8, .interp_modules = 56, .interp_sysdict = 72,
	  .interp_builtins = 80, .tstate_frame = 24, .tstate_thread_id = 176 },
	{ .minor = 9, .interp_modules = 856, .interp_sysdict = 872,
	  .interp_builtins = 880, .tstate_frame = 24, .tstate_thread_id = 176 },
	{ .minor = 10, .interp_modules = 856, .interp_sysdict = 872,
	  .interp_builtins = 880, .tstate_frame = 24, .tstate_thread_id = 176 },
	{ .minor = 11, .interp_modules = 888, .interp_sysdict = 904,
	  .interp_builtins = 912, .tstate_cframe = 56, .cframe_current = 8,
	  .tstate_thread_id = 152, .tstate_native_id = 160,
	  .co_nlocalsplus = 76, .co_stacksize = 68,
	  .if_previous = 48, .if_owner = 69, .if_code = 32, .if_stacktop = 64,
	  .if_localsplus = 72, .if_locals = 24, .if_func = 0, .if_frame_obj = 40 },
	{ .minor = 12, .interp_modules = 944, .interp_sysdict = 352,
	  .interp_builtins = 360, .tstate_cframe = 56, .cframe_current = 0,
	  .tstate_thread_id = 136, .tstate_native_id = 144,
	  .co_nlocalsplus = 72, .co_stacksize = 64,
	  .if_previous = 8, .if_owner = 70, .if_code = 0, .if_stacktop = 64,
	  .if_localsplus = 72, .if_locals = 40, .if_func = 16, .if_frame_obj = 48 },
	{ .minor = 13, .interp_modules = 7656, .interp_sysdict = 7640,
	  .interp_builtins = 7648, .tstate_current = 72, .tstate_thread_id = 152,
	  .tstate_native_id = 160, .co_nlocalsplus = 72, .co_stacksize = 64,
	  .if_previous = 8, .if_owner = 70, .if_code = 0, .if_stacktop = 64,
	  .if_localsplus = 72, .if_locals = 40, .if_func = 16, .if_frame_obj = 48 },
	{ .minor = 14, .interp_modules = 7688, .interp_sysdict = 7672,
	  .interp_builtins = 7680, .tstate_current = 72, .tstate_thread_id = 152,
	  .tstate_native_id = 160, .co_nlocalsplus = 72, .co_stacksize = 64,
	  .if_previous = 8, .if_owner = 74, .if_code = 0, .if_stacktop = 64,
	  .if_localsplus = 80, .if_locals = 40, .if_func = 16, .if_frame_obj = 48,
	  .stackrefs = true },
	{ .minor = 15, .interp_modules = 7592, .interp_sysdict = 7576,
	  .interp_builtins = 7584, .tstate_current = 72, .tstate_thread_id = 176,
	  .tstate_native_id = 184, .co_nlocalsplus = 72, .co_stacksize = 64,
	  .if_previous = 8, .if_owner = 74, .if_code = 0, .if_stacktop = 64,
	  .if_localsplus = 80, .if_locals = 40, .if_func = 16, .if_frame_obj = 48,
	  .stackrefs = true },
};

const struct roots_layout *roots_layout_for(int minor)
{
	for (size_t i = 0; i < sizeof(roots_layouts) / sizeof(roots_layouts[0]); i++)
		if (roots_layouts[i].minor == minor)
			return &roots_layouts[i];
	return NULL;
}

PM_DEFINE_HASH_MAP(word_set, uint64_t, uint8_t, pm_hash_u64_key, pm_u64_key_eq)

struct roots {
	struct pm_graph *g;
	const struct roots_layout *rl;
	struct word_set named;      /* addresses of words already roots */
	uint64_t scanned;           /* bytes of allocations scanned */
	bool capped;
};

static bool read_word(struct roots *r, uint64_t addr, uint64_t *ret)
{
	struct pm_error *err = addr & 7 ? NULL : pm_target_read_u64(r->g->t, addr, ret);
	bool ok = !(addr & 7) && !err;
	pm_error_destroy(err);
	return ok;
}

static bool read_u32(struct roots *r, uint64_t addr, uint64_t *ret)
{
	uint32_t v;
	struct pm_error *err = pm_target_read_u32(r->g->t, addr, &v);
	pm_error_destroy(err);
	*ret = v;
	return !err;
}

/* A root at the word `where` pointing at ptr, when ptr is an object. */
static struct pm_error *root_add(struct roots *r, uint64_t ptr, enum pm_root_kind kind,
				 uint64_t where, int32_t tid, uint32_t label,
				 uint64_t code)
{
	uint32_t node = pm_graph_node_at(r->g, ptr);
	if (node == PM_NODE_NONE)
		return NULL;
	if (where) {
		bool fresh;
		if (!word_set_insert(&r->named, &where, &fresh))
			return &pm_error_no_memory;
		if (!fresh)
			return NULL;
	}
	struct pm_graph_root root = { .node = node, .kind = (uint8_t)kind,
				      .label = label, .tid = tid, .where = where,
				      .code = code };
	return pm_graph_root_vector_append(&r->g->roots, &root) ? NULL : &pm_error_no_memory;
}

/* The LWP of a thread state: 3.11+ keeps it (native_thread_id); its
 * thread id is pthread_self(), glibc's struct pthread, which is the thread
 * pointer (fs_base, known from cores) and holds the LWP at PTHREAD_TID
 * (glibc 2.26 and later, x86-64). Only LWPs of the target's threads. */
enum { PTHREAD_TID = 0x2d0 };

static bool is_thread(struct pm_target *t, int32_t tid)
{
	for (size_t i = 0; i < pm_target_thread_count(t); i++)
		if (pm_target_thread(t, i)->tid == tid)
			return true;
	return false;
}

static int32_t thread_lwp(struct roots *r, uint64_t tstate)
{
	struct pm_target *t = r->g->t;
	uint64_t word, pthread = 0;
	if (r->rl->tstate_native_id && read_word(r, tstate + r->rl->tstate_native_id, &word) &&
	    is_thread(t, (int32_t)word))
		return (int32_t)word;
	read_word(r, tstate + r->rl->tstate_thread_id, &pthread);
	for (size_t i = 0; i < pm_target_thread_count(t); i++) {
		const struct pm_thread *th = pm_target_thread(t, i);
		if (pthread && th->fs_base == pthread)
			return th->tid;
	}
	if (pthread && read_word(r, (pthread + PTHREAD_TID) & ~UINT64_C(7), &word)) {
		int32_t tid = (int32_t)(PTHREAD_TID % 8 ? word >> 32 : word);
		if (is_thread(t, tid))
			return tid;
	}
	return 0;
}

/* A reference field of an interpreter frame: 3.14+ code and function are
 * _PyStackRefs, the others plain pointers. */
static uint64_t frame_word(const struct roots_layout *rl, const uint8_t *h,
			   uint32_t offset)
{
	uint64_t word = pm_load_u64(h + offset);
	bool tagged = rl->stackrefs && (offset == rl->if_code || offset == rl->if_func);
	return tagged ? pm_stackref_object(word) : word;
}

/* The saved stack depth, counted from localsplus (3.14+: from the saved
 * stackpointer; -1 when it is not inside the frame). */
static int32_t frame_stack_top(const struct roots_layout *rl, uint64_t frame,
			       const uint8_t *h)
{
	if (!rl->stackrefs)
		return (int32_t)pm_load_u32(h + rl->if_stacktop);
	uint64_t sp = pm_load_u64(h + rl->if_stacktop), base = frame + rl->if_localsplus;
	if (sp < base || (sp - base) % 8 || (sp - base) / 8 > LOCALS_MAX)
		return -1;
	return (int32_t)((sp - base) / 8);
}

/* 3.11+: the locals of a thread's interpreter frames (those the thread
 * owns: generators' and frame objects' frames are their objects'). */
static struct pm_error *thread_iframes(struct roots *r, uint64_t frame, int32_t tid)
{
	const struct roots_layout *rl = r->rl;
	struct pm_error *err = NULL;
	for (int depth = 0; frame && depth < FRAMES_MAX && !err; depth++) {
		uint8_t h[80];
		struct pm_error *rerr = pm_target_read(r->g->t, frame, h, sizeof(h));
		if (rerr) {
			pm_target_warn(r->g->t, true, frame, "reference graph: "
				       "interpreter frame unreadable: %s", rerr->message);
			pm_error_destroy(rerr);
			return NULL;
		}
		uint64_t previous = pm_load_u64(h + rl->if_previous);
		uint64_t code = frame_word(rl, h, rl->if_code);
		if (h[rl->if_owner] == FRAME_OWNED_BY_THREAD) {
			static const uint8_t fields[] = { 0, 1, 2, 3 };
			uint32_t offsets[] = { rl->if_locals, rl->if_func, rl->if_code,
					       rl->if_frame_obj };
			for (size_t i = 0; i < sizeof(fields) && !err; i++)
				err = root_add(r, frame_word(rl, h, offsets[i]),
					       PM_ROOT_FRAME, frame + offsets[i], tid,
					       UINT32_MAX, code);
			/* The running frames' stacktop is only saved now and
			 * then: their locals are always there. */
			int32_t top = frame_stack_top(rl, frame, h);
			uint64_t nlocals = 0, stacksize = 0;
			if (read_u32(r, code + rl->co_nlocalsplus, &nlocals) &&
			    read_u32(r, code + rl->co_stacksize, &stacksize)) {
				if (top < (int64_t)nlocals || top > (int64_t)(nlocals + stacksize))
					top = (int32_t)(nlocals + stacksize < LOCALS_MAX ?
							nlocals + stacksize : 0);
			}
			for (int32_t i = 0; i < top && i < LOCALS_MAX && !err; i++) {
				uint64_t where = frame + rl->if_localsplus + 8 * (uint64_t)i, v;
				if (read_word(r, where, &v))
					err = root_add(r, rl->stackrefs ? pm_stackref_object(v) : v,
						       PM_ROOT_FRAME_LOCAL, where, tid,
						       (uint32_t)i, code);
			}
		}
		frame = previous;
	}
	return err;
}

static struct pm_error *thread_roots(struct roots *r, uint64_t tstate)
{
	const struct roots_layout *rl = r->rl;
	uint64_t frame = 0, cframe;
	int32_t tid = thread_lwp(r, tstate);
	if (rl->tstate_frame) {
		/* 3.8-3.10: the frame objects are heap objects; the thread's
		 * top frame is the root, the rest hang off f_back. */
		if (!read_word(r, tstate + rl->tstate_frame, &frame))
			return NULL;
		return root_add(r, frame, PM_ROOT_FRAME, tstate + rl->tstate_frame, tid,
				UINT32_MAX, 0);
	}
	if (rl->tstate_current) {
		if (!read_word(r, tstate + rl->tstate_current, &frame))
			return NULL;
	} else if (!read_word(r, tstate + rl->tstate_cframe, &cframe) || !cframe ||
		   !read_word(r, cframe + rl->cframe_current, &frame)) {
		return NULL;
	}
	return thread_iframes(r, frame, tid);
}

/* The named roots of every interpreter: its modules, sys and builtins
 * dicts, and its threads' frames. */
static struct pm_error *interpreter_roots(struct roots *r)
{
	const struct pm_graph *g = r->g;
	const struct pm_cpython_layout *l = g->l;
	uint64_t interp;
	if (!g->heap->py->runtime ||
	    !read_word(r, g->heap->py->runtime + l->runtime_interp_head, &interp))
		return NULL;
	struct pm_error *err = NULL;
	for (int n = 0; interp && n < INTERPRETERS_MAX && !err; n++) {
		static const enum pm_root_kind kinds[] = {
			PM_ROOT_SYS_MODULES, PM_ROOT_SYSDICT, PM_ROOT_BUILTINS };
		uint32_t offsets[] = { r->rl->interp_modules, r->rl->interp_sysdict,
				       r->rl->interp_builtins };
		for (size_t i = 0; i < 3 && !err; i++) {
			uint64_t ptr;
			if (read_word(r, interp + offsets[i], &ptr))
				err = root_add(r, ptr, kinds[i], interp + offsets[i], 0,
					       (uint32_t)n, 0);
		}
		uint64_t ts;
		if (!err && read_word(r, interp + l->interp_threads_head, &ts)) {
			for (int k = 0; ts && k < THREADS_MAX && !err; k++) {
				err = thread_roots(r, ts);
				if (!read_word(r, ts + l->tstate_next, &ts))
					break;
			}
		}
		if (!read_word(r, interp + l->interp_next, &interp))
			break;
	}
	return err;
}

/* Every word of [start, end) that points at an object's start. */
static struct pm_error *scan_words(struct roots *r, uint64_t start, uint64_t end,
				   enum pm_root_kind kind, int32_t tid)
{
	struct pm_error *err = NULL;
	start = (start + 7) & ~UINT64_C(7);
	for (uint64_t a = start; a + 8 <= end && !err; a += PM_VIEW_MAX) {
		size_t len = end - a < PM_VIEW_MAX ? (size_t)(end - a) & ~(size_t)7 :
			PM_VIEW_MAX;
		const void *view;
		struct pm_error *rerr = pm_target_view(r->g->t, a, len, &view);
		if (rerr) {
			pm_error_destroy(rerr);
			continue;   /* not saved in the core, say: the rest */
		}
		/* The view dies at the next read: copy. */
		uint64_t *words = malloc(len);
		if (!words)
			return &pm_error_no_memory;
		memcpy(words, view, len);
		for (size_t k = 0; k < len / 8 && !err; k++)
			if (words[k] && !(words[k] & 7))
				err = root_add(r, words[k], kind, a + 8 * k, tid, 0, 0);
		free(words);
	}
	return err;
}

/* The writable data of every mapped ELF module: its file-backed writable
 * mappings and its .bss (by the file's section headers: the anonymous
 * mapping after a module is not always its own). */
static struct pm_error *static_data_roots(struct roots *r)
{
	struct pm_target *t = r->g->t;
	struct pm_error *err = NULL;
	for (size_t i = 0; i < pm_target_region_count(t) && !err; i++) {
		struct pm_region *reg = pm_target_region(t, i);
		if (reg->label == PM_LABEL_MODULE && reg->perms & PM_PERM_W)
			err = scan_words(r, reg->start, reg->end, PM_ROOT_STATIC_DATA, 0);
	}
	for (size_t i = 0; i < pm_target_module_count(t) && !err; i++) {
		struct pm_module *m = pm_target_module(t, i);
		struct pm_elf *file = pm_target_module_file(t, m);
		uint64_t addr, size;
		const void *data;
		if (!file || !pm_elf_section(file, ".bss", &addr, &size, &data) || !size ||
		    size > (UINT64_C(1) << 32))
			continue;
		uint64_t start = m->start - pm_elf_load_base(file) + addr;
		err = scan_words(r, start, start + size, PM_ROOT_STATIC_DATA, 0);
	}
	return err;
}

static struct pm_error *stack_roots(struct roots *r)
{
	struct pm_target *t = r->g->t;
	struct pm_error *err = NULL;
	for (size_t i = 0; i < pm_target_thread_count(t) && !err; i++) {
		const struct pm_thread *th = pm_target_thread(t, i);
		const struct pm_region *reg = th->has_regs ?
			pm_target_find_region(t, th->sp) : NULL;
		if (reg)
			err = scan_words(r, th->sp, reg->end, PM_ROOT_C_STACK, th->tid);
	}
	return err;
}

bool *roots_scanned_categories(const struct pm_cpython_heap *heap)
{
	bool *scanned = calloc(heap->ncategories ? heap->ncategories : 1, 1);
	for (size_t c = 0; scanned && c < heap->ncategories; c++)
		scanned[c] = pm_category_buffer_domain(heap->categories[c].domain) ||
			     !strcmp(heap->categories[c].kind, "unknown");
	return scanned;
}

/* Allocations that are no object and no object's buffer: the runtime's
 * structures, C libraries' memory (the graph builder lists them in its
 * one pass over the allocations). */
static struct pm_error *allocation_roots(struct roots *r, const struct u32_vector *scan)
{
	const struct pm_cpython_heap *heap = r->g->heap;
	struct pm_error *err = NULL;
	for (size_t k = 0; k < scan->size && !err; k++) {
		size_t i = scan->data[k];
		const struct pm_alloc *alloc = &heap->allocs[i];
		uint64_t len = pm_alloc_data_end(alloc) - alloc->addr;
		if (len > SCAN_ALLOC_MAX || r->scanned + len > SCAN_TOTAL_MAX) {
			r->capped = true;
			continue;
		}
		r->scanned += len;
		if ((k & 0xfff) == 0xfff && pm_target_interrupted(r->g->t))
			err = pm_error_interrupted();
		else
			err = scan_words(r, alloc->addr, alloc->addr + len,
					 PM_ROOT_UNKNOWN_ALLOC, 0);
	}
	if (!err && r->capped)
		pm_target_warn(r->g->t, false, 0, "reference graph: allocations over "
			       "4 MiB, and beyond 1 GiB in all, were not searched for "
			       "references (objects they hold may show as held from "
			       "outside the heap)");
	return err;
}

struct pm_error *roots_find(struct pm_graph *g, const struct u32_vector *scan)
{
	struct roots r = { .g = g };
	r.rl = roots_layout_for(g->heap->py->minor);
	if (!r.rl)
		return NULL;
	struct pm_error *err = interpreter_roots(&r);
	if (!err)
		err = static_data_roots(&r);
	if (!err)
		err = stack_roots(&r);
	if (!err)
		err = allocation_roots(&r, scan);
	word_set_deinit(&r.named);
	return err;
}
