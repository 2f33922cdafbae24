/* Object recognition: the CPython object at the start of each in-use
 * allocation, by the validation rules 5-9 of
 * shared/reference/cpython-memory.md (a valid type, a sane refcount, the
 * offset its flags imply, a GC head whose list neighbours point back). An
 * accepted live object then pends the buffers it owns (cpython_owned.c). */
#include "bytes.h"
#include "cpython_analysis.h"

#include <stdlib.h>
#include <string.h>

#define REFCNT_MAX (UINT64_C(1) << 40)

bool analysis_read_word(struct analysis *a, uint64_t addr, uint64_t *ret)
{
	if (a->pool && addr >= a->pool->address &&
	    addr - a->pool->address <= a->pm->pool_size - 8) {
		*ret = pm_load_u64(a->pool_buf + (addr - a->pool->address));
		return true;
	}
	struct pm_error *err = pm_target_read_u64(a->t, addr, ret);
	pm_error_destroy(err);
	return !err;
}

bool analysis_executable(const struct analysis *a, uint64_t addr)
{
	const struct pm_region *r = pm_target_find_region(a->t, addr);
	return r && (r->perms & PM_PERM_X);
}

/* A word of current memory at hand (the pool buffer), without a read. */
static bool local_word(const struct analysis *a, uint64_t addr, uint64_t *ret)
{
	if (a->pool && addr >= a->pool->address &&
	    addr - a->pool->address <= a->pm->pool_size - 8) {
		*ret = pm_load_u64(a->pool_buf + (addr - a->pool->address));
		return true;
	}
	return false;
}

enum gc_verdict { GC_BAD, GC_OK, GC_UNKNOWN };

/* Rule 8 with what is at hand: an untracked GC head, or one whose list
 * neighbours point back. GC_UNKNOWN when a neighbour is elsewhere (then
 * the check is deferred, see gc_verify_deferred: reading it now would cost a
 * system call per object on a live process). */
static enum gc_verdict gc_head_check(struct analysis *a, uint64_t gc,
				     uint64_t next, uint64_t prev)
{
	if (next == 0)
		return (prev & ~UINT64_C(3)) == 0 ? GC_OK : GC_BAD;
	uint64_t p = prev & ~UINT64_C(3), n = next & ~UINT64_C(3), v;
	enum gc_verdict verdict = GC_OK;
	if (local_word(a, p, &v)) {
		if ((v & ~UINT64_C(1)) != gc)
			return GC_BAD;
	} else {
		verdict = GC_UNKNOWN;
	}
	if (local_word(a, n + 8, &v)) {
		if ((v & ~UINT64_C(3)) != gc)
			return GC_BAD;
	} else {
		verdict = GC_UNKNOWN;
	}
	if (verdict == GC_UNKNOWN && a->no_defer)
		return analysis_read_word(a, p, &v) && (v & ~UINT64_C(1)) == gc &&
		       analysis_read_word(a, n + 8, &v) && (v & ~UINT64_C(3)) == gc ?
			GC_OK : GC_BAD;
	return verdict;
}

static struct pm_error *gc_link_push(struct analysis *a, uint64_t gc,
				     uint64_t next, uint64_t prev)
{
	if (a->no_defer)
		return NULL;    /* out of address order; neighbours are checked */
	return gc_link_vector_append(&a->links, &(struct gc_link){ gc, next, prev }) ?
		NULL : &pm_error_no_memory;
}

static struct pm_error *gc_defer(struct analysis *a, const struct gc_deferred *d)
{
	return gc_deferred_vector_append(&a->deferred, d) ? NULL : &pm_error_no_memory;
}

static const struct gc_link *gc_link_find(const struct analysis *a, uint64_t gc)
{
	const struct gc_link *links = a->links.data;
	size_t lo = 0, hi = a->links.size;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (links[mid].gc == gc)
			return &links[mid];
		if (links[mid].gc < gc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The _gc_next (word 0) or _gc_prev (word 1) of the GC head at addr: from
 * the accepted objects, else (list heads in the interpreter state, static
 * objects) read from the target. */
static bool gc_neighbour_word(struct analysis *a, uint64_t addr, int word,
			      uint64_t *ret)
{
	const struct gc_link *l = gc_link_find(a, addr);
	if (l) {
		*ret = word ? l->prev : l->next;
		return true;
	}
	return analysis_read_word(a, addr + 8 * (uint64_t)word, ret);
}

/* 3.12+ (64-bit) only ever change the low 32 bits of ob_refcnt (Py_INCREF
 * stops at UINT32_MAX, immortal objects have (int32)refcnt < 0): a high
 * half that is not 0 is a pointer, not a reference count. */
static bool refcnt_ok(const struct analysis *a, uint64_t rc)
{
	if (a->l->immortal)
		return pm_refcnt_high_bits_ok(a->l, rc);
	return rc < REFCNT_MAX;
}

/* Recognises the object at the start of an allocation (rules 5-9): bytes
 * holds len bytes from alloc->addr; usable is what the allocation can hold.
 * Offsets before first_offset are not tried (a deferred check failed). */
static struct pm_error *recognise(struct analysis *a, struct pm_alloc *alloc,
				  const uint8_t *bytes, size_t len, size_t usable,
				  size_t first_offset)
{
	static const size_t offsets[] = { 0, 16, 32 };
	/* Debug hooks put {size, api id, 7 x 0xfd} before the data; large
	 * object allocations go obj -> raw, each wrapped: up to two headers. */
	size_t base = 0;
	for (int nested = 0; nested < 2; nested++) {
		const uint8_t *h = bytes + base;
		if (base + 16 > len || usable < DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER ||
		    !pm_debug_hook_header(h, usable - DEBUG_HOOK_HEADER - DEBUG_HOOK_TRAILER, NULL))
			break;
		base += DEBUG_HOOK_HEADER;
		usable -= DEBUG_HOOK_HEADER + DEBUG_HOOK_TRAILER;
		a->heap->debug_hooks = true;
	}
	for (size_t i = first_offset; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		size_t off = offsets[i], at = base + off;
		if (at + 16 > len)
			break;
		const uint8_t *b = bytes + at;
		uint64_t rc_word = pm_load_u64(b), rc = pm_refcnt_of(a->l, rc_word);
		const struct type_info *ti;
		struct pm_error *err = type_get(a, pm_load_u64(b + 8), &ti);
		if (err)
			return err;
		if (!ti)
			continue;
		size_t expect = (ti->flags & TPFLAG_HAVE_GC ? 16 : 0) +
				(ti->flags & a->l->preheader_flags ? 16 : 0);
		/* numpy's dtype classes: GC types without a GC head. */
		bool headless = off == 0 && numpy_dtype_class_type(ti);
		if (headless)
			expect = 0;
		uint64_t need = ti->kind == TK_STR ? a->l->str_ascii_size : ti->basicsize;
		/* A naive time or datetime is allocated without its tzinfo
		 * field (hastzinfo is 0); hastzinfo is a flag, 0 or 1. */
		if (ti->short_size && at + DATETIME_HASTZINFO < len) {
			if (b[DATETIME_HASTZINFO] > 1)
				continue;
			if (b[DATETIME_HASTZINFO] == 0)
				need = ti->short_size;
		}
		if (expect != off || off + need > usable || !refcnt_ok(a, rc_word))
			continue;
		uint64_t obj = alloc->addr + at;
		struct gc_deferred d = { .alloc = (size_t)(alloc - a->heap->allocs),
					 .gc = obj - 16, .offset_index = (uint8_t)i,
					 .free_list = rc == 0 };
		enum gc_verdict verdict = GC_OK;
		if (ti->flags & TPFLAG_HAVE_GC && !headless) {
			d.next = pm_load_u64(b - 16);
			d.prev = pm_load_u64(b - 8);
			verdict = gc_head_check(a, d.gc, d.next, d.prev);
			if (verdict == GC_BAD)
				continue;
			if ((err = gc_link_push(a, d.gc, d.next, d.prev)))
				return err;
		}
		alloc->object_offset = (uint8_t)at;
		if (rc == 0) {
			alloc->category = ti->cat_free;
			a->heap->free_list_objects++;
		} else {
			alloc->category = ti->cat_live;
			a->heap->objects++;
			d.pending_start = a->pending.size;
			err = owned_pend_object(a, ti, obj, b, len - at, at);
			a->owner_now = 0;
			a->owner_gc_now = false;
			d.pending_end = a->pending.size;
		}
		if (!err && verdict == GC_UNKNOWN)
			err = gc_defer(a, &d);
		return err;
	}
	return NULL;
}

/* Brings the pool holding addr into pool_buf (one view per pool). */
static bool load_pool(struct analysis *a, uint64_t addr)
{
	if (a->pool && addr >= a->pool->address &&
	    addr < a->pool->address + a->pm->pool_size)
		return true;
	a->pool = pm_pymalloc_find_pool(a->pm, addr);
	if (!a->pool)
		return false;
	struct pm_error *err = pm_target_read(a->t, a->pool->address, a->pool_buf,
					      a->pm->pool_size);
	if (err) {
		pm_target_warn(a->t, true, a->pool->address, "pool unreadable: %s",
			       err->message);
		pm_error_destroy(err);
		a->pool = NULL;
		return false;
	}
	return true;
}


static struct pm_error *recognise_alloc(struct analysis *a, struct pm_alloc *alloc,
				       size_t first_offset)
{
	if (alloc->kind == PM_ALLOC_PYMALLOC) {
		if (!load_pool(a, alloc->addr))
			return NULL;
		const uint8_t *b = a->pool_buf + (alloc->addr - a->pool->address);
		return recognise(a, alloc, b, alloc->size, alloc->size, first_offset);
	}
	if (alloc->kind != PM_ALLOC_GLIBC && alloc->kind != PM_ALLOC_MMAPPED)
		return NULL;
	uint64_t usable = alloc_usable(alloc);
	size_t len = usable < WINDOW ? (size_t)usable : WINDOW;
	struct pm_error *err = pm_target_read(a->t, alloc->addr, a->window, len);
	if (err) {
		pm_error_destroy(err);
		return NULL;
	}
	a->pool = NULL;
	err = recognise(a, alloc, a->window, len, usable, first_offset);
	if (err || alloc->category != PM_CATEGORY_NONE || len < 32 ||
	    a->no_defer_pass)
		return err;
	/* _Py_hashtable entries {next, hash, key, value} with key == value:
	 * the 3.12+ runtime table of interned strings (malloc'd, 48 B). Kept
	 * if the key turns out to be a str. */
	uint64_t key = pm_load_u64(a->window + 16);
	if (key && !(key & 7) && key == pm_load_u64(a->window + 24))
		return structures_str_entry_push(a, (size_t)(alloc - a->heap->allocs), key);
	return NULL;
}

/* Rule 8 for the objects accepted with a neighbour out of reach: the
 * neighbours are now known (accepted objects, or a read). An object that
 * fails is undone (category, count, the buffers it claimed) and its
 * allocation recognised again from the next offset, checking at once. */
static struct pm_error *gc_verify_deferred(struct analysis *a)
{
	struct pm_error *err = NULL;
	for (size_t i = 0; i < a->deferred.size && !err; i++) {
		const struct gc_deferred *d = &a->deferred.data[i];
		uint64_t v;
		bool ok = gc_neighbour_word(a, d->prev & ~UINT64_C(3), 0, &v) &&
			  (v & ~UINT64_C(1)) == d->gc &&
			  gc_neighbour_word(a, d->next & ~UINT64_C(3), 1, &v) &&
			  (v & ~UINT64_C(3)) == d->gc;
		if (ok)
			continue;
		struct pm_alloc *alloc = &a->heap->allocs[d->alloc];
		alloc->category = PM_CATEGORY_NONE;
		if (d->free_list)
			a->heap->free_list_objects--;
		else
			a->heap->objects--;
		for (size_t k = d->pending_start; k < d->pending_end; k++)
			a->pending.data[k].category = PM_CATEGORY_NONE;
		a->no_defer = true;
		a->pool = NULL;
		err = recognise_alloc(a, alloc, d->offset_index + 1u);
		a->no_defer = false;
	}
	return err;
}

bool analysis_read_words(struct analysis *a, uint64_t addr, size_t n,
			 uint64_t *words)
{
	struct pm_error *err = pm_target_read(a->t, addr, words, n * 8);
	pm_error_destroy(err);
	return !err;
}

struct pm_error *recognise_objects(struct analysis *a)
{
	struct pm_error *err = NULL;
	/* A core is mapped: a neighbour's word costs a memory access there,
	 * less than the deferred lookup; a live process pays a system call. */
	a->no_defer = !strcmp(pm_target_kind(a->t), "core");
	for (size_t i = 0; i < a->heap->nallocs && !err; i++) {
		if ((i & 0xffff) == 0xffff) {
			pm_target_progress(a->t, "recognising objects", i, a->heap->nallocs);
			if (pm_target_interrupted(a->t)) {
				err = pm_error_interrupted();
				break;
			}
		}
		err = recognise_alloc(a, &a->heap->allocs[i], 0);
	}
	pm_target_progress(a->t, "recognising objects", a->heap->nallocs, a->heap->nallocs);
	a->no_defer = false;
	a->no_defer_pass = true;
	if (!err)
		err = gc_verify_deferred(a);
	a->no_defer_pass = false;
	return err;
}
