/* The memory of _lzma's LZMACompressor and LZMADecompressor objects, which
 * liblzma allocates through CPython's PyLzma_Malloc (PyMem_RawMalloc) and
 * which no Python object points at: attributed to the object whose
 * lzma_stream leads to it.
 *   - the stream's lzma_internal at lzma_stream.internal, liblzma's own
 *     104 bytes (5.4 to 5.8; 96 in 5.2, the same chunk): "lzma stream
 *     state";
 *   - a decompressor's copy of input that liblzma has not consumed yet
 *     (_lzmamodule.c's input_buffer, PyMem_Malloc'd, input_buffer_size
 *     bytes, left when decompress stopped at max_length): "lzma input
 *     buffer";
 *   - the object's PyThread_type_lock (3.8-3.14; 3.15's is an inline
 *     PyMutex): "thread lock".
 * What the state leads to (the coders of the filter chain, the match
 * finder's dictionary and hash tables, the index) is in liblzma's private
 * structs, which differ between its releases and filters: the inference
 * (cpython_inferred.c) follows it from the state, each allocation that
 * the state's tree alone points at, as "held by _lzma.LZMACompressor
 * (inferred)".
 * The objects keep a lzma_allocator right after their header and the
 * lzma_stream after it, in every CPython 3.8-3.15 (checked in a live
 * process of each); the stream's allocator field points back at the
 * object's own lzma_allocator, which is what the state is taken on, and
 * the state's fields must agree with liblzma's (common.h's
 * lzma_internal: a code function in an executable mapping, a sequence in
 * range, booleans that are 0 or 1). */
#include "bytes.h"
#include "cpython_analysis.h"

enum {
	ALLOCATOR_OFFSET = 16,      /* lzma_allocator alloc, after the header */
	LZS_OFFSET = 40,            /* lzma_stream lzs, after the allocator */
	/* lzma_stream: next_in, avail_in, total_in, next_out, avail_out,
	 * total_out, allocator, internal. */
	LZS_NEXT_IN = 0, LZS_AVAIL_IN = 8, LZS_ALLOCATOR = 48, LZS_INTERNAL = 56,
	/* lzma_internal: next (a lzma_next_coder: coder, id, init, code,
	 * end, ...; 10 words since 5.4), sequence, avail_in,
	 * supported_actions[5], allow_buf_error. */
	INTERNAL_SIZE = 104,
	IN_CODER = 0, IN_CODE = 24, IN_SEQUENCE = 80, IN_ACTIONS = 96,
	IN_ACTIONS_N = 6,           /* and allow_buf_error */
	ISEQ_MAX = 6,               /* ISEQ_RUN ... ISEQ_ERROR */
	/* After the stream: the compressor's flushed and lock; the
	 * decompressor's check, eof, unused_data, needs_input,
	 * input_buffer, input_buffer_size, lock. */
	COMPRESSOR_LOCK = 184, DECOMPRESSOR_LOCK = 216,
	INPUT_BUFFER = 200, INPUT_BUFFER_SIZE = 208,
	LOCK_MINOR_MAX = 14,        /* a PyThread_type_lock until 3.14 */
	LOCK_SIZE = 32,             /* PyThread_allocate_lock: a sem_t */
	INPUT_SIZE_MAX = 1 << 30,   /* an input_buffer_size taken as plausible */
};

/* The stream's lzma_internal at internal, when its fields are liblzma's. */
static struct pm_error *lzma_state_owned(struct analysis *a, uint64_t internal)
{
	uint64_t w[INTERNAL_SIZE / 8];
	if (!internal || internal & 7 ||
	    !analysis_read_words(a, internal, sizeof(w) / 8, w))
		return NULL;
	const uint8_t *s = (const uint8_t *)w;
	uint64_t coder = pm_load_u64(s + IN_CODER);
	if (!coder || coder & 7 || !analysis_executable(a, pm_load_u64(s + IN_CODE)) ||
	    pm_load_u32(s + IN_SEQUENCE) > ISEQ_MAX)
		return NULL;
	for (int i = 0; i < IN_ACTIONS_N; i++)
		if (s[IN_ACTIONS + i] > 1)
			return NULL;
	/* LZMA_RUN is supported by every coder. */
	if (!s[IN_ACTIONS])
		return NULL;
	return owned_pend_library(a, internal, INTERNAL_SIZE, OWN_LZMA_STATE);
}

/* The decompressor's copy of unused input: lzs.avail_in bytes of it still
 * to be read, at lzs.next_in (the buffer is kept for reuse once they are,
 * lzs.next_in then NULL). */
static struct pm_error *lzma_input_owned(struct analysis *a, const uint8_t *b,
					 size_t avail)
{
	if (INPUT_BUFFER_SIZE + 8 > avail)
		return NULL;
	uint64_t buf = pm_load_u64(b + INPUT_BUFFER);
	uint64_t size = pm_load_u64(b + INPUT_BUFFER_SIZE);
	uint64_t next_in = pm_load_u64(b + LZS_OFFSET + LZS_NEXT_IN);
	uint64_t left = pm_load_u64(b + LZS_OFFSET + LZS_AVAIL_IN);
	if (!buf || !size || size > INPUT_SIZE_MAX || left > size)
		return NULL;
	/* Unread input is in the buffer, or (passed by the caller during a
	 * call, never in a stopped process's object) elsewhere. */
	if (left && next_in >= buf && (next_in - buf > size - left))
		return NULL;
	return owned_pend_sized(a, buf, size, OWN_LZMA_INPUT);
}

struct pm_error *lzma_owned(struct analysis *a, uint64_t obj, const uint8_t *b,
			    size_t avail, bool decompressor)
{
	/* Set with the lock and the stream by the object's __init__ (3.8,
	 * 3.9) or __new__: before, the object owns nothing. */
	if (LZS_OFFSET + LZS_INTERNAL + 8 > avail ||
	    pm_load_u64(b + LZS_OFFSET + LZS_ALLOCATOR) != obj + ALLOCATOR_OFFSET)
		return NULL;
	uint32_t lock = decompressor ? DECOMPRESSOR_LOCK : COMPRESSOR_LOCK;
	struct pm_error *err = NULL;
	if (a->l->minor <= LOCK_MINOR_MAX && lock + 8 <= avail)
		err = owned_pend_sized(a, pm_load_u64(b + lock), LOCK_SIZE,
				       OWN_THREAD_LOCK);
	if (!err && decompressor)
		err = lzma_input_owned(a, b, avail);
	return err ? err : lzma_state_owned(a, pm_load_u64(b + LZS_OFFSET + LZS_INTERNAL));
}
