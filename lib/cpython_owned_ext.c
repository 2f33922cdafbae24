/* Buffers of standard-library extension objects whose storage is an
 * allocation apart from the object, so that it is attributed to its owner
 * rather than left unknown (the types are known by tp_name and basicsize,
 * cpython_types.c; offsets per version in cpython_layout.c):
 *   - a ctypes instance (Structure, Union, Array, ...) bigger than its
 *     inline b_value: PyCData_MallocBuffer's PyMem_Malloc/PyMem_Calloc of
 *     b_size bytes at b_ptr, b_needsfree set ("ctypes buffer"); one that
 *     shares another's memory (b_base, from_buffer, from_address) has
 *     b_needsfree 0 and owns nothing;
 *   - an _io.BytesIO's bytes object buf while only the BytesIO holds it
 *     (refcount 1: bytesio.c's SHARED_BUF is refcount > 1, and its
 *     __sizeof__ counts a private buf as the BytesIO's): the whole bytes
 *     object, PyBytesObject_SIZE + ob_size bytes ("bytesio buffer");
 *   - a decimal.Decimal's coefficient once it outgrew the inline data:
 *     libmpdec's mpd_alloc (PyMem_Malloc, set by _decimal's init) of alloc
 *     words, MPD_STATIC_DATA clear ("decimal digits").
 * Every word is the target's: the owner's fields are checked against each
 * other here, and owned_resolve takes a buffer only when an allocation
 * starts exactly at the pointer and holds the size (allocator rounding
 * aside). */
#include "bytes.h"
#include "cpython_analysis.h"

#include <string.h>

/* Sizes taken as plausible: a ctypes buffer's b_size, a bytes object's
 * ob_size, a coefficient's words (beyond these a field is misread). */
#define CDATA_SIZE_MAX (UINT64_C(1) << 40)
#define BYTES_SIZE_MAX (UINT64_C(1) << 40)
#define DECIMAL_WORDS_MAX (UINT64_C(1) << 36)

enum {
	/* libmpdec's mpd_t.flags (mpdecimal.h): the mpd_t lives in its
	 * object (MPD_STATIC); where the coefficient is (MPD_STATIC_DATA:
	 * inline; MPD_SHARED_DATA, MPD_CONST_DATA: someone else's). */
	MPD_STATIC = 16, MPD_STATIC_DATA = 32, MPD_SHARED_DATA = 64,
	MPD_CONST_DATA = 128,
	MPD_RDIGITS = 19,           /* decimal digits per 64-bit word */
};

/* The word at off of an object whose avail bytes are in b, false when the
 * field is not inside them. */
static bool word_at(const uint8_t *b, size_t avail, uint32_t off, uint64_t *ret)
{
	if ((uint64_t)off + 8 > avail)
		return false;
	*ret = pm_load_u64(b + off);
	return true;
}

struct pm_error *ext_cdata_owned(struct analysis *a, uint64_t obj,
				 const uint8_t *b, size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t ptr, size;
	if ((uint64_t)l->cdata_needsfree + 4 > avail ||
	    !word_at(b, avail, l->cdata_ptr, &ptr) ||
	    !word_at(b, avail, l->cdata_bsize, &size))
		return NULL;
	/* b_needsfree is 1 only where PyCData_MallocBuffer (or resize) gave
	 * the object memory of its own; b_size is a Py_ssize_t. */
	if (pm_load_u32(b + l->cdata_needsfree) != 1 || !ptr ||
	    ptr == obj + l->cdata_value || size <= l->cdata_value_size ||
	    size > CDATA_SIZE_MAX)
		return NULL;
	return owned_pend_sized(a, ptr, size, OWN_CTYPES_BUFFER);
}

struct pm_error *ext_bytesio_owned(struct analysis *a, const uint8_t *b,
				   size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t buf, head[3];      /* PyVarObject: ob_refcnt, ob_type, ob_size */
	const struct type_info *ti;
	/* NULL once closed; the empty bytes singleton is static (no
	 * allocation, so nothing would be found there). */
	if (!word_at(b, avail, l->bytesio_buf, &buf) || !buf || buf & 7 ||
	    !analysis_read_words(a, buf, 3, head) ||
	    !pm_refcnt_high_bits_ok(l, head[0]) || pm_refcnt_of(l, head[0]) != 1 ||
	    head[2] > BYTES_SIZE_MAX)
		return NULL;
	struct pm_error *err = type_get(a, head[1], &ti);
	if (err || !ti || strcmp(ti->name, "bytes") ||
	    ti->basicsize != l->bytes_basicsize)
		return err;
	return owned_pend_object_buffer(a, buf, l->bytes_basicsize + head[2],
					OWN_BYTESIO_BUFFER);
}

struct pm_error *ext_decimal_owned(struct analysis *a, uint64_t obj,
				   const uint8_t *b, size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	uint64_t digits, len, alloc, data;
	if (l->decimal_flags >= avail ||
	    !word_at(b, avail, l->decimal_digits, &digits) ||
	    !word_at(b, avail, l->decimal_len, &len) ||
	    !word_at(b, avail, l->decimal_alloc, &alloc) ||
	    !word_at(b, avail, l->decimal_data, &data))
		return NULL;
	uint8_t flags = b[l->decimal_flags];
	/* In its object, its coefficient its own and not inline. */
	if ((flags & (MPD_STATIC | MPD_STATIC_DATA | MPD_SHARED_DATA |
		      MPD_CONST_DATA)) != MPD_STATIC ||
	    !data || data & 7 || data == obj + l->decimal_inline)
		return NULL;
	/* mpd_qresize never goes below MPD_MINALLOC (the inline words);
	 * len words are in use, and digits fills them but for the top
	 * word's (len 0, digits 0: a NaN or infinity without payload). */
	if (alloc < l->decimal_inline_words || alloc > DECIMAL_WORDS_MAX ||
	    len > alloc || digits > len * MPD_RDIGITS ||
	    (len && digits <= (len - 1) * MPD_RDIGITS) || (!len && digits))
		return NULL;
	return owned_pend_sized(a, data, alloc * 8, OWN_DECIMAL_DIGITS);
}
