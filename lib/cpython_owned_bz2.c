/* The memory of _bz2's BZ2Compressor and BZ2Decompressor objects, which
 * libbz2 allocates through CPython's BZ2_Malloc (PyMem_RawMalloc) and
 * which no Python object points at: attributed to the object whose
 * bz_stream leads to it, rather than left unknown or inferred.
 *   - the stream state, libbz2's EState (compressor) or DState
 *     (decompressor), at bz_stream.state: "bz2 stream state";
 *   - its block arrays: a compressor's arr1, arr2 and ftab, made with the
 *     state; a decompressor's tt (or ll16 and ll4, never asked for by
 *     CPython), made once the stream's header has said the block size:
 *     "bz2 block arrays";
 *   - a decompressor's copy of input that libbz2 has not consumed yet
 *     (_bz2module.c's input_buffer, PyMem_Malloc'd, input_buffer_size
 *     bytes, left when decompress stopped at max_length): "bz2 input
 *     buffer";
 *   - the object's PyThread_type_lock (3.8-3.14): "thread lock".
 * libbz2 1.0.6 and 1.0.8 (bzlib_private.h, bzlib.c, decompress.c) lay the
 * states out alike; the offsets below are theirs, checked in a live
 * process of every interpreter covered (the arrays' pointers and sizes
 * found where said). The state is taken only when its strm back-pointer
 * is the bz_stream inside this object and its fields agree with each
 * other; each allocation only where one starts exactly at the pointer and
 * holds the size libbz2 asked for (owned_resolve). */
#include "bytes.h"
#include "cpython_analysis.h"

enum {
	BLOCK_UNIT = 100000,        /* bytes per blockSize100k */
	BZ_N_OVERSHOOT = 34,        /* arr2's extra words for the sort */
	FTAB_WORDS = 65537,
	LOCK_SIZE = 32,             /* PyThread_allocate_lock: a sem_t */
	INPUT_SIZE_MAX = 1 << 30,   /* an input_buffer_size taken as plausible */
	/* EState: strm, int mode, int state, ..., arr1, arr2, ftab, ...,
	 * ptr, block, mtfv (aliases of arr1, arr2 and arr1), ...,
	 * nblockMAX, ..., blockSize100k; sizeof(EState). */
	ES_SIZE = 55768, ES_MODE = 8, ES_STATE = 12, ES_ARR1 = 24,
	ES_ARR2 = 32, ES_FTAB = 40, ES_BLOCK = 64, ES_MTFV = 72,
	ES_NBLOCKMAX = 112, ES_BLOCKSIZE = 664,
	BZ_M_IDLE = 1, BZ_M_FINISHING = 4, BZ_S_OUTPUT = 1, BZ_S_INPUT = 2,
	/* DState: strm, int state, ..., blockSize100k, Bool smallDecompress,
	 * ..., tt, ll16, ll4; sizeof(DState). */
	DS_SIZE = 64144, DS_STATE = 8, DS_BLOCKSIZE = 40, DS_SMALL = 44,
	DS_TT = 3152, DS_LL16 = 3160, DS_LL4 = 3168,
	BZ_X_IDLE = 1, BZ_X_CCRC_4 = 50,  /* the states' range */
};

static uint32_t u32_at(const uint64_t *words, uint32_t off)
{
	return (uint32_t)(words[off / 8] >> (8 * (off % 8)));
}

/* A compressor's EState at state: arr1 holds one word per byte of a block,
 * arr2 as many and the overshoot, ftab the radix table. */
static struct pm_error *bz2_compressor_state(struct analysis *a, uint64_t state)
{
	uint64_t w[ES_NBLOCKMAX / 8 + 1], bs_word;
	if (!analysis_read_words(a, state, sizeof(w) / 8, w) ||
	    !analysis_read_word(a, state + ES_BLOCKSIZE, &bs_word))
		return NULL;
	uint32_t mode = u32_at(w, ES_MODE), st = u32_at(w, ES_STATE);
	uint32_t bs = (uint32_t)bs_word;
	uint64_t arr1 = w[ES_ARR1 / 8], arr2 = w[ES_ARR2 / 8];
	uint64_t ftab = w[ES_FTAB / 8];
	if (mode < BZ_M_IDLE || mode > BZ_M_FINISHING ||
	    (st != BZ_S_OUTPUT && st != BZ_S_INPUT) || bs < 1 || bs > 9 ||
	    u32_at(w, ES_NBLOCKMAX) != bs * BLOCK_UNIT - 19 ||
	    !arr1 || !arr2 || !ftab || w[ES_BLOCK / 8] != arr2 ||
	    w[ES_MTFV / 8] != arr1)
		return NULL;
	uint64_t n = (uint64_t)bs * BLOCK_UNIT;
	struct pm_error *err = owned_pend_library(a, state, ES_SIZE, OWN_BZ2_STATE);
	if (!err)
		err = owned_pend_library(a, arr1, n * 4, OWN_BZ2_ARRAYS);
	if (!err)
		err = owned_pend_library(a, arr2, (n + BZ_N_OVERSHOOT) * 4,
				       OWN_BZ2_ARRAYS);
	return err ? err : owned_pend_library(a, ftab, FTAB_WORDS * 4, OWN_BZ2_ARRAYS);
}

/* A decompressor's DState at state: no arrays until the stream's header
 * was read (their pointers NULL), then tt, one word per byte of a block
 * (or, small, ll16 and ll4: two bytes and half a byte per byte). */
static struct pm_error *bz2_decompressor_state(struct analysis *a, uint64_t state)
{
	uint64_t head[DS_SMALL / 8 + 1], arrays[3];
	if (!analysis_read_words(a, state, sizeof(head) / 8, head) ||
	    !analysis_read_words(a, state + DS_TT, 3, arrays))
		return NULL;
	uint32_t st = u32_at(head, DS_STATE), bs = u32_at(head, DS_BLOCKSIZE);
	uint8_t small = (uint8_t)u32_at(head, DS_SMALL); /* a Bool */
	uint64_t tt = arrays[0], ll16 = arrays[(DS_LL16 - DS_TT) / 8];
	uint64_t ll4 = arrays[(DS_LL4 - DS_TT) / 8];
	if (st < BZ_X_IDLE || st > BZ_X_CCRC_4 || small > 1)
		return NULL;
	/* The block size is set (1-9) before any array is made. */
	bool made = small ? ll16 || ll4 : tt != 0;
	if ((small ? tt : ll16 || ll4) || (made && (bs < 1 || bs > 9)))
		return NULL;
	uint64_t n = (uint64_t)bs * BLOCK_UNIT;
	struct pm_error *err = owned_pend_library(a, state, DS_SIZE, OWN_BZ2_STATE);
	if (err || !made)
		return err;
	if (!small)
		return owned_pend_library(a, tt, n * 4, OWN_BZ2_ARRAYS);
	err = owned_pend_library(a, ll16, n * 2, OWN_BZ2_ARRAYS);
	return err ? err : owned_pend_library(a, ll4, (n + 1) / 2, OWN_BZ2_ARRAYS);
}

/* The decompressor's copy of unused input: bzs_avail_in_real bytes of it
 * still to be read (the buffer is kept for reuse once they are). */
static struct pm_error *bz2_input_owned(struct analysis *a, const uint8_t *b,
					size_t avail)
{
	const struct pm_cpython_layout *l = a->l;
	if ((uint64_t)l->bz2_avail_in_real + 8 > avail ||
	    (uint64_t)l->bz2_input_buffer + 8 > avail ||
	    (uint64_t)l->bz2_input_buffer_size + 8 > avail)
		return NULL;
	uint64_t buf = pm_load_u64(b + l->bz2_input_buffer);
	uint64_t size = pm_load_u64(b + l->bz2_input_buffer_size);
	uint64_t left = pm_load_u64(b + l->bz2_avail_in_real);
	if (!buf || !size || size > INPUT_SIZE_MAX || left > size)
		return NULL;
	return owned_pend_sized(a, buf, size, OWN_BZ2_INPUT);
}

struct pm_error *bz2_owned(struct analysis *a, uint64_t obj, const uint8_t *b,
			   size_t avail, bool decompressor)
{
	const struct pm_cpython_layout *l = a->l;
	uint32_t lock_off = decompressor ? l->bz2_decompressor_lock :
		l->bz2_compressor_lock;
	struct pm_error *err = NULL;
	if (lock_off && (uint64_t)lock_off + 8 <= avail)
		err = owned_pend_sized(a, pm_load_u64(b + lock_off), LOCK_SIZE,
				       OWN_THREAD_LOCK);
	if (!err && decompressor)
		err = bz2_input_owned(a, b, avail);
	if (err || (uint64_t)l->bz2_state + 8 > avail)
		return err;
	uint64_t state = pm_load_u64(b + l->bz2_state), strm;
	/* NULL before init and after a failed one; the state's first word
	 * points back at the bz_stream that owns it. */
	if (!state || state & 7 || !analysis_read_word(a, state, &strm) ||
	    strm != obj + l->bz2_stream)
		return NULL;
	return decompressor ? bz2_decompressor_state(a, state) :
		bz2_compressor_state(a, state);
}
