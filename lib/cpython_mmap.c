/* Python's mmap.mmap objects (Modules/mmapmodule.c), so that `regions` says
 * which object holds which mapping: an open mmap.mmap made its mapping
 * itself with mmap(2), anonymous or of a file, `size` bytes from `data`
 * (where the kernel put it: a page boundary); a closed one has data NULL
 * and holds nothing. A resize moves it (mremap), and data and size follow.
 * The mapping is no allocator's memory, so no summary row counts it (and
 * none must): the object only labels the regions that hold its pages,
 * "mmap.mmap (object 0x...)", with the object in regions' JSON.
 *
 * mmap_object, read with ptype /o against each interpreter's mmap extension
 * (the pyenv 3.8-3.13.0 builds; Debian's 3.13, 3.14 and 3.15 and their
 * pydebug builds): data at 16, size at 24 and offset (off_t, the file
 * offset mapped) at 40 in every one; the struct is 72 bytes in 3.8 (an int
 * exports), 80 in 3.9-3.12, 80 or 88 in 3.13 and 3.14 (3.13's later
 * releases and 3.14 add an int flags), 80 in 3.15 (trackfd moved last).
 * Every word is the target's: a pointer that is not page-aligned, a size
 * no mapping holds, a file offset that is not the mapping's, or a page two
 * objects claim leaves the object out. */
#include "bytes.h"
#include "cpython_analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	MMAP_DATA = 16, MMAP_SIZE = 24, MMAP_OFFSET = 40,
	MMAP_FIELDS_END = 48,
	PAGE = 4096,                /* x86-64's: mmap(2) returns page starts */
};

/* No user-space mapping of x86-64 reaches further (47-bit addresses). */
#define ADDRESS_LIMIT (UINT64_C(1) << 47)

PM_DEFINE_VECTOR(mmap_vector, struct pm_cpython_mmap)
PM_DEFINE_VECTOR(category_ids, uint32_t)

bool mmap_object_size(int minor, uint64_t basicsize)
{
	if (minor == 8)
		return basicsize == 72;
	if (minor >= 9 && minor <= 12)
		return basicsize == 80;
	if (minor >= 13 && minor <= 15)
		return basicsize == 80 || basicsize == 88;
	return false;
}

bool pm_cpython_mmap_possible(struct pm_target *t)
{
	/* lib-dynload/mmap.cpython-3XY-x86_64-linux-gnu.so, as every build
	 * here has it; some builds link it into the interpreter. */
	if (pm_target_find_module(t, "mmap."))
		return true;
	const struct pm_python_info *py;
	struct pm_error *err = pm_python_detect(t, &py);
	if (err || !py->is_python || !py->module) {
		pm_error_destroy(err);
		return false;
	}
	const char *name = strrchr(py->module->path, '/');
	name = name ? name + 1 : py->module->path;
	struct pm_symbol sym;
	err = pm_target_symbol(t, name, "PyInit_mmap", &sym);
	pm_error_destroy(err);
	return !err;
}

size_t pm_cpython_mmap_first_after(const struct pm_cpython_heap *heap,
				   uint64_t addr)
{
	size_t lo = 0, hi = heap->nmmaps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_cpython_mmap *m = &heap->mmaps[mid];
		if (m->data + m->mapped <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether regions hold every page of [data, data + mapped) without a gap,
 * and a file's mapping at data is the file offset the object says. */
static bool mapping_plausible(struct pm_target *t, uint64_t data,
			      uint64_t mapped, uint64_t offset)
{
	const struct pm_region *first = pm_target_find_region(t, data);
	if (!first)
		return false;
	if (first->path && first->path[0] != '[' &&
	    first->offset + (data - first->start) != offset)
		return false;
	for (uint64_t at = data; at < data + mapped;) {
		const struct pm_region *r = pm_target_find_region(t, at);
		if (!r)
			return false;
		at = r->end;
	}
	return true;
}

/* The object's fields, when they describe a mapping the target has. */
static bool mmap_read(struct pm_target *t, const struct pm_cpython_heap *heap,
		      uint64_t obj, struct pm_cpython_mmap *ret)
{
	uint8_t b[MMAP_FIELDS_END];
	struct pm_error *err = pm_target_read(t, obj, b, sizeof(b));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	const struct pm_cpython_type *type = pm_cpython_find_type(heap, pm_load_u64(b + 8));
	if (!type || type->kind != TK_MMAP)
		return false;
	uint64_t data = pm_load_u64(b + MMAP_DATA), size = pm_load_u64(b + MMAP_SIZE);
	uint64_t offset = pm_load_u64(b + MMAP_OFFSET);
	/* Closed (NULL), or not what mmap(2) returned; size is a Py_ssize_t
	 * (an empty mapping cannot be made) and offset a multiple of the
	 * allocation granularity. */
	if (!data || data % PAGE || !size || size >= ADDRESS_LIMIT ||
	    data >= ADDRESS_LIMIT - size || offset % PAGE || offset >= INT64_MAX)
		return false;
	uint64_t mapped = (size + PAGE - 1) / PAGE * PAGE;
	if (!mapping_plausible(t, data, mapped, offset))
		return false;
	*ret = (struct pm_cpython_mmap){ .object = obj, .type = type->name,
					 .data = data, .size = size,
					 .mapped = mapped };
	return true;
}

static int mmap_compare(const void *x, const void *y)
{
	const struct pm_cpython_mmap *p = x, *q = y;
	if (p->data != q->data)
		return p->data < q->data ? -1 : 1;
	return p->object < q->object ? -1 : p->object > q->object;
}

/* Sorts them and leaves out every pair that overlaps: two live objects
 * never share a mapping, so one of them is misread, and which is not
 * known. */
static struct pm_error *drop_overlapping(struct mmap_vector *v)
{
	if (v->size < 2)
		return NULL;
	qsort(v->data, v->size, sizeof(*v->data), mmap_compare);
	bool *bad = calloc(v->size, sizeof(*bad));
	if (!bad)
		return &pm_error_no_memory;
	/* In start order, one overlaps an earlier one when it starts before
	 * the furthest end so far, and a later one when it ends after the
	 * next one's start. */
	uint64_t reach = 0;
	for (size_t i = 0; i < v->size; i++) {
		const struct pm_cpython_mmap *m = &v->data[i];
		uint64_t end = m->data + m->mapped;
		if (i && m->data < reach)
			bad[i] = true;
		if (i + 1 < v->size && end > v->data[i + 1].data)
			bad[i] = true;
		if (end > reach)
			reach = end;
	}
	size_t kept = 0;
	for (size_t i = 0; i < v->size; i++)
		if (!bad[i])
			v->data[kept++] = v->data[i];
	v->size = kept;
	free(bad);
	return NULL;
}

/* Each region holding part of the mapping counts that part. */
static void label_mapping(struct pm_target *t, const struct pm_cpython_mmap *m)
{
	char detail[48];
	snprintf(detail, sizeof(detail), "object 0x%llx", (unsigned long long)m->object);
	for (uint64_t at = m->data; at < m->data + m->mapped;) {
		const struct pm_region *r = pm_target_find_region(t, at);
		if (!r)
			return;
		uint64_t end = r->end < m->data + m->mapped ? r->end : m->data + m->mapped;
		pm_target_label_area(t, at, end, PM_LABEL_PYTHON_MMAP, detail);
		at = end;
	}
}

struct pm_error *mmap_objects_find(struct pm_target *t, struct pm_cpython_heap *heap)
{
	/* The categories of the mmap.mmap types' live instances (a
	 * subclass's are its own): usually none, and then nothing is read. */
	struct category_ids cats = PM_VECTOR_INIT;
	for (size_t i = 0; i < heap->ntype_table; i++)
		if (heap->type_table[i].kind == TK_MMAP &&
		    !category_ids_append(&cats, &heap->type_table[i].category)) {
			category_ids_deinit(&cats);
			return &pm_error_no_memory;
		}
	if (!cats.size || !pm_cpython_mmap_possible(t)) {
		category_ids_deinit(&cats);
		return NULL;
	}
	struct mmap_vector found = PM_VECTOR_INIT;
	struct pm_error *err = NULL;
	for (size_t i = 0; i < heap->nallocs && !err; i++) {
		if ((i & 0xffff) == 0xffff && pm_target_interrupted(t)) {
			err = pm_error_interrupted();
			break;
		}
		const struct pm_alloc *alloc = &heap->allocs[i];
		bool candidate = false;
		for (size_t k = 0; k < cats.size && !candidate; k++)
			candidate = alloc->category == cats.data[k];
		struct pm_cpython_mmap m;
		if (candidate && mmap_read(t, heap, alloc->addr + alloc->object_offset, &m) &&
		    !mmap_vector_append(&found, &m))
			err = &pm_error_no_memory;
	}
	category_ids_deinit(&cats);
	if (!err)
		err = drop_overlapping(&found);
	if (err) {
		mmap_vector_deinit(&found);
		return err;
	}
	/* Labelled last, once nothing can fail: a region's count must not
	 * take an object twice if the analysis is run again. */
	for (size_t i = 0; i < found.size; i++)
		label_mapping(t, &found.data[i]);
	heap->mmaps = found.data;
	heap->nmmaps = found.size;
	return NULL;
}
