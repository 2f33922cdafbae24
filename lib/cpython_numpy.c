/* numpy's arrays, so that their memory is attributed rather than left
 * unknown: an ndarray (numpy.ndarray or a subclass: numpy.memmap,
 * numpy.matrix, ...) is known by its type's tp_name and by a basicsize that
 * is sizeof(PyArrayObject_fields); its fields (numpy/ndarraytypes.h, the
 * same leading fields in numpy 1.x and 2.x) say which buffers it owns:
 *   - its data while NPY_ARRAY_OWNDATA is set: elsize * prod(dims) bytes
 *     (at least elsize, at least 1: numpy allocates something for an empty
 *     array) from numpy's data allocator (PyDataMem: malloc or calloc, small
 *     sizes through numpy's cache of exact sizes), starting at the
 *     allocation's start: "numpy data";
 *   - its dims/strides block while nd > 0: one PyMem_RawMalloc of 2 * nd
 *     npy_intp (npy_alloc_cache_dim), strides == dimensions + nd:
 *     "numpy dims/strides".
 *   - numpy 2's variable-width strings (StringDType, kind 'T'): each
 *     element is a 16-byte packed string in the data; a string of more
 *     than 15 bytes lives in its descr's arena (one buffer numpy grows
 *     with PyMem_RawRealloc) or, once an element is replaced by a longer
 *     one, in a PyMem_RawMalloc of its own; with the descr's allocator
 *     struct they are "numpy strings", owned by the array that owns the
 *     data (numpy gives an array a descr, and so an allocator, of its own).
 * A view (OWNDATA clear) owns no data: its base, an object pointer of the
 * array, leads to what does (the graph has it as an edge). The descr is a
 * dtype object; its elsize is read where the numpy version puts it, told
 * apart by the alignment next to it. Every word comes from the target and
 * is checked before it is used. */
#include "bytes.h"
#include "cpython_analysis.h"

#include <string.h>

enum {
	ARR_DATA = 16, ARR_ND = 24, ARR_DIMENSIONS = 32, ARR_STRIDES = 40,
	ARR_DESCR = 56, ARR_FLAGS = 64,
	ARR_FIELDS_END = 72,
	NPY_OWNDATA = 0x4,          /* NPY_ARRAY_OWNDATA */
	NPY_MAXDIMS_ANY = 64,       /* 32 in numpy 1.x, 64 in 2.x */
	DESCR_READ = 56,            /* PyArray_Descr bytes read */
	/* numpy 2's StringDType (ndarraytypes.h: PyArray_StringDTypeObject;
	 * stringdtype/static_string.c: npy_string_allocator, the packed
	 * string's flags in its last byte, little-endian). */
	NPY_VSTRING = 2056,         /* its type_num */
	SDESCR_SIZE = 144,          /* sizeof(PyArray_StringDTypeObject) */
	SDESCR_ALLOCATOR = 136,
	SALLOC_SIZE = 56,           /* sizeof(npy_string_allocator) */
	SALLOC_ARENA_SIZE = 32, SALLOC_ARENA_BUFFER = 40,
	SSTR_SIZE = 16,             /* npy_packed_static_string */
	SSTR_MISSING = 0x80, SSTR_INITIALIZED = 0x40,
	SSTR_OUTSIDE_ARENA = 0x20, SSTR_LONG = 0x10, SSTR_FLAGS = 0xf0,
	SSTR_BATCH = 256,           /* packed strings read at a time */
};

/* Packed strings of one array walked for heap strings, at most (a longer
 * array's heap strings beyond are left unknown, never misread). */
#define NUMPY_STRINGS_MAX (UINT64_C(1) << 24)

/* Largest array size taken as plausible (bytes; a product past this is a
 * misreading). */
#define NUMPY_NBYTES_MAX (UINT64_C(1) << 46)

/* sizeof(PyArrayObject_fields): 80 before numpy 1.20, 88 with _buffer_info
 * (1.20, 1.21), 96 with mem_handler (1.22 on, 2.x). */
bool numpy_array_size(uint64_t basicsize)
{
	return basicsize == 80 || basicsize == 88 || basicsize == 96;
}

bool numpy_array_type(const char *name, uint64_t basicsize)
{
	return numpy_array_size(basicsize) && !strcmp(name, "numpy.ndarray");
}

/* Where PyArray_Descr keeps elsize and alignment: numpy 1.x has int
 * type_num, int elsize, int alignment from 28; numpy 2.x has int type_num,
 * npy_uint64 flags, npy_intp elsize, npy_intp alignment. The alignment is
 * a power of two up to 64 only in the right reading: in 1.x the 2.x
 * alignment word is the fields pointer (NULL or an object), in 2.x the 1.x
 * one is the upper half of flags (0). */
static bool descr_elsize(struct analysis *a, uint64_t descr, uint64_t *ret)
{
	uint8_t d[DESCR_READ];
	const struct type_info *ti;
	if (!descr || descr & 7)
		return false;
	struct pm_error *err = pm_target_read(a->t, descr, d, sizeof(d));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	/* Its class (numpy.dtype[float64], ...) is a type numpy copies into a
	 * PyMem_Malloc'd block, where no GC head precedes it: not one that
	 * type_get takes. Its scalar type (typeobj: numpy.float64, ...) is a
	 * static type, and its kind one of numpy's. */
	if (!memchr("biufcmMOSUVT", d[24], 12) || !d[24])
		return false;
	err = type_get(a, pm_load_u64(d + 16), &ti);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	if (!ti)
		return false;
	uint64_t align1 = pm_load_u32(d + 36), elsize1 = pm_load_u32(d + 32);
	uint64_t align2 = pm_load_u64(d + 48), elsize2 = pm_load_u64(d + 40);
	bool v1 = align1 && align1 <= 64 && !(align1 & (align1 - 1)) &&
		elsize1 < (1u << 31);
	bool v2 = align2 && align2 <= 64 && !(align2 & (align2 - 1)) &&
		elsize2 < (1u << 31);
	if (v1 == v2)
		return false;
	*ret = v1 ? elsize1 : elsize2;
	return true;
}

/* elsize * prod(dims) of an array of nd dimensions, false when it is not
 * plausible. */
static bool array_nbytes(struct analysis *a, uint64_t dims, uint32_t nd,
			 uint64_t elsize, uint64_t *ret)
{
	uint64_t d[NPY_MAXDIMS_ANY], n = 1;
	if (nd && !analysis_read_words(a, dims, nd, d))
		return false;
	for (uint32_t i = 0; i < nd; i++) {
		/* Both below 2^46 and their product checked by division:
		 * nothing wraps. */
		if (d[i] >= NUMPY_NBYTES_MAX ||
		    (n && d[i] > (NUMPY_NBYTES_MAX - 1) / n))
			return false;
		n *= d[i];
	}
	if (elsize && n > NUMPY_NBYTES_MAX / elsize)
		return false;
	*ret = n * elsize;
	return true;
}

/* Whether the descr at addr is a StringDType instance: kind 'T', type_num
 * NPY_VSTRING, and its class numpy.dtypes.StringDType of the size whose
 * allocator field is read (the class is a copy of a static type, read
 * here as plain words: type_get does not take it). */
static bool string_descr(struct analysis *a, uint64_t descr)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t word, tp, size, name_ptr;
	if (!analysis_read_word(a, descr + 24, &word) || (word & 0xff) != 'T' ||
	    (word >> 32) != NPY_VSTRING ||
	    !analysis_read_word(a, descr + 8, &tp) || !tp || tp & 7 ||
	    !analysis_read_word(a, tp + l->tp_basicsize, &size) ||
	    size != SDESCR_SIZE ||
	    !analysis_read_word(a, tp + l->tp_name, &name_ptr))
		return false;
	char name[TYPE_NAME_MAX];
	struct pm_error *err = pm_target_read_cstr(a->t, name_ptr, name, sizeof(name));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return !strcmp(name, "numpy.dtypes.StringDType");
}

/* A StringDType array's string storage: its descr's allocator struct, the
 * arena buffer (arena.size bytes, as numpy last reallocated it), and every
 * element's heap string (flags INITIALIZED | OUTSIDE_ARENA | LONG: a
 * PyMem_RawMalloc of exactly its size, its address in the first word). A
 * missing (NA) element keeps its old allocation's flags but has freed a
 * heap one: skipped. */
static struct pm_error *strings_owned(struct analysis *a, uint64_t descr,
				      uint64_t data, uint64_t n)
{
	uint64_t allocator, arena[2];
	if (!analysis_read_word(a, descr + SDESCR_ALLOCATOR, &allocator) ||
	    !allocator || allocator & 7)
		return NULL;
	struct pm_error *err = owned_pend_sized(a, allocator, SALLOC_SIZE,
						OWN_NUMPY_STRINGS);
	if (err || !analysis_read_words(a, allocator + SALLOC_ARENA_SIZE, 2, arena))
		return err;
	if (arena[1] && arena[0] && arena[0] < NUMPY_NBYTES_MAX &&
	    (err = owned_pend_sized(a, arena[1], arena[0], OWN_NUMPY_STRINGS)))
		return err;
	/* The packed strings are read only inside the array's own data
	 * allocation (a misread count never walks past it). */
	const struct pm_alloc *alloc = pm_cpython_find_alloc(a->heap, data);
	if (!alloc)
		return NULL;
	struct alloc_data d = alloc_data_of(a, alloc);
	if (d.start != data || d.usable / SSTR_SIZE < n)
		return NULL;
	if (n > NUMPY_STRINGS_MAX)
		n = NUMPY_STRINGS_MAX;
	uint64_t w[2 * SSTR_BATCH];
	for (uint64_t i = 0; i < n; i += SSTR_BATCH) {
		uint64_t k = n - i < SSTR_BATCH ? n - i : SSTR_BATCH;
		if (!analysis_read_words(a, data + SSTR_SIZE * i, 2 * k, w))
			return NULL;
		for (uint64_t j = 0; j < k; j++) {
			uint64_t size = w[2 * j + 1] & ~(UINT64_C(0xff) << 56);
			unsigned flags = (unsigned)(w[2 * j + 1] >> 56) & SSTR_FLAGS;
			if (flags != (SSTR_INITIALIZED | SSTR_OUTSIDE_ARENA | SSTR_LONG) ||
			    !size || size >= NUMPY_NBYTES_MAX)
				continue;
			if ((err = owned_pend_sized(a, w[2 * j], size, OWN_NUMPY_STRINGS)))
				return err;
		}
	}
	return NULL;
}

struct pm_error *numpy_array_owned(struct analysis *a, const uint8_t *b,
				   size_t avail)
{
	if (avail < ARR_FIELDS_END)
		return NULL;
	uint64_t data = pm_load_u64(b + ARR_DATA);
	int32_t nd = (int32_t)pm_load_u32(b + ARR_ND);
	uint64_t dims = pm_load_u64(b + ARR_DIMENSIONS);
	uint64_t strides = pm_load_u64(b + ARR_STRIDES);
	uint32_t flags = pm_load_u32(b + ARR_FLAGS);
	if (nd < 0 || nd > NPY_MAXDIMS_ANY)
		return NULL;
	if (nd && (!dims || dims & 7 || strides != dims + 8 * (uint64_t)nd))
		return NULL;
	struct pm_error *err = NULL;
	if (nd)
		err = owned_pend_sized(a, dims, 16 * (uint64_t)nd, OWN_NUMPY_DIMS);
	uint64_t elsize, nbytes;
	if (err || !(flags & NPY_OWNDATA) || !data ||
	    !descr_elsize(a, pm_load_u64(b + ARR_DESCR), &elsize) ||
	    !array_nbytes(a, dims, (uint32_t)nd, elsize, &nbytes))
		return err;
	uint64_t n = elsize ? nbytes / elsize : 0;
	if (!nbytes)
		nbytes = elsize ? elsize : 1;
	err = owned_pend_sized(a, data, nbytes, OWN_NUMPY_DATA);
	uint64_t descr = pm_load_u64(b + ARR_DESCR);
	if (!err && elsize == SSTR_SIZE && string_descr(a, descr))
		err = strings_owned(a, descr, data, n);
	return err;
}

/* numpy's dtype classes (numpy.dtype[float64], ...: PyArray_DTypeMeta)
 * are static types that numpy copies into PyMem_Malloc'd blocks: at the
 * start of an allocation, with no GC head. Such a candidate is taken
 * when its own type, a static one (outside every allocation, so this
 * never recurses), is numpy._DTypeMeta; the recogniser then takes it as an
 * object there, at offset 0 although its metatype has Py_TPFLAGS_HAVE_GC
 * (numpy never tracks it). */
bool numpy_dtype_class_possible(struct analysis *a, uint64_t tp)
{
	uint64_t meta;
	const struct type_info *ti;
	if (!analysis_read_word(a, tp + 8, &meta) ||
	    !meta || meta & 7 || pm_cpython_find_alloc(a->heap, meta))
		return false;
	struct pm_error *err = type_get(a, meta, &ti);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	return ti && numpy_dtype_class_type(ti);
}

bool numpy_dtype_class_type(const struct type_info *ti)
{
	return !strcmp(ti->name, "numpy._DTypeMeta");
}
