/* The memory of zlib's compression and decompression objects (zlib.Compress,
 * zlib.Decompress, 3.12+'s zlib._ZlibDecompressor), which zlib allocates
 * through CPython's PyZlib_Malloc (PyMem_RawMalloc) and which no Python
 * object points at: attributed to the object whose z_stream leads to it,
 * rather than inferred.
 *   - the stream state at z_stream.state, zlib's deflate_state (5,952
 *     bytes in zlib 1.2.x, 5,968 in 1.3.2) or inflate_state (7,160):
 *     "zlib stream state";
 *   - a compressor's window (2 x w_size bytes), a decompressor's once it
 *     has needed one (1 << wbits): "zlib window";
 *   - a compressor's hash chains, prev (2 x w_size) and head
 *     (2 x hash_size): "zlib hash chains";
 *   - a compressor's pending buffer (4 x lit_bufsize, pending_buf_size):
 *     "zlib pending buffer";
 *   - a _ZlibDecompressor's copy of input it has not read yet (after
 *     max_length stopped it, as bz2's): "zlib input buffer";
 *   - the object's PyThread_type_lock (3.8-3.14; 3.15's is an inline
 *     PyMutex): "thread lock".
 * The offsets are zlib's (deflate.h, inflate.h of 1.2.9 to 1.3.2; every
 * field read lies before the one 1.3.2 grew), checked in live processes of
 * zlib 1.2.13 and 1.3.2: the state's first word points back at the
 * z_stream, which every CPython keeps right after the object's header.
 * The state is taken only when that back-pointer is this object's and its
 * fields agree with each other; each allocation only where one starts
 * exactly at the pointer and holds the size zlib asked for
 * (owned_resolve). */
#include "bytes.h"
#include "cpython_analysis.h"

enum {
	ZST_OFFSET = 16,            /* z_stream zst, after PyObject_HEAD */
	ZST_STATE = 56,             /* z_stream.state */
	/* deflate_state: strm, int status, pending_buf, pending_buf_size,
	 * ..., w_size, w_bits, w_mask, window, window_size, prev, head,
	 * ins_h, hash_size, hash_bits, hash_mask, ..., lit_bufsize. */
	DS_SIZE_MIN = 5952,         /* sizeof, 1.2.x (1.3.2: 5,968) */
	DS_STATUS = 8, DS_PENDING_BUF = 16, DS_PENDING_BUF_SIZE = 24,
	DS_W_SIZE = 80, DS_W_BITS = 84, DS_W_MASK = 88, DS_WINDOW = 96,
	DS_WINDOW_SIZE = 104, DS_PREV = 112, DS_HEAD = 120,
	DS_HASH_SIZE = 132, DS_HASH_BITS = 136, DS_HASH_MASK = 140,
	DS_LIT_BUFSIZE = 5896,
	/* inflate_state: strm, mode, ..., wbits, wsize, whave, wnext,
	 * window. */
	IS_SIZE = 7160, IS_MODE = 8, IS_WBITS = 56, IS_WSIZE = 60,
	IS_WINDOW = 72,
	INFLATE_HEAD = 16180, INFLATE_SYNC = 16211,   /* the modes' range */
	/* The objects after the z_stream: Compress and Decompress have
	 * unused_data, unconsumed_tail, eof, is_initialised, zdict, lock;
	 * _ZlibDecompressor zdict, lock, unused_data, input_buffer,
	 * input_buffer_size, avail_in_real. */
	LOCK_OFFSET = 160, DECOMPRESSOR_LOCK_OFFSET = 136,
	INPUT_BUFFER = 152, INPUT_BUFFER_SIZE = 160, AVAIL_IN_REAL = 168,
	LOCK_MINOR_MAX = 14,        /* a PyThread_type_lock until 3.14 */
	LOCK_SIZE = 32,             /* PyThread_allocate_lock: a sem_t */
	INPUT_SIZE_MAX = 1 << 30,   /* an input_buffer_size taken as plausible */
};

/* deflate_state.status values (1.2.12+; GZIP_STATE is older's too). */
static bool deflate_status(uint32_t s)
{
	return s == 42 || s == 57 || s == 69 || s == 73 || s == 91 ||
	       s == 103 || s == 113 || s == 666;
}

static bool power_of_two_bits(uint32_t size, uint32_t bits, uint32_t lo,
			      uint32_t hi)
{
	return bits >= lo && bits <= hi && size == UINT32_C(1) << bits;
}

static struct pm_error *deflate_state_owned(struct analysis *a, uint64_t st)
{
	/* The fields up to hash_mask in one read; lit_bufsize far below. */
	uint64_t words[DS_HASH_MASK / 8 + 1], lit_word;
	if (!analysis_read_words(a, st, sizeof(words) / 8, words) ||
	    !analysis_read_word(a, st + DS_LIT_BUFSIZE, &lit_word))
		return NULL;
	const uint8_t *h = (const uint8_t *)words;
	uint32_t status = pm_load_u32(h + DS_STATUS);
	uint32_t w_size = pm_load_u32(h + DS_W_SIZE);
	uint32_t w_bits = pm_load_u32(h + DS_W_BITS);
	uint32_t w_mask = pm_load_u32(h + DS_W_MASK);
	uint32_t hash_size = pm_load_u32(h + DS_HASH_SIZE);
	uint32_t hash_bits = pm_load_u32(h + DS_HASH_BITS);
	uint32_t hash_mask = pm_load_u32(h + DS_HASH_MASK);
	uint32_t lit_bufsize = (uint32_t)lit_word;
	uint64_t pending_buf = pm_load_u64(h + DS_PENDING_BUF);
	uint64_t pending_size = pm_load_u64(h + DS_PENDING_BUF_SIZE);
	uint64_t window = pm_load_u64(h + DS_WINDOW);
	uint64_t window_size = pm_load_u64(h + DS_WINDOW_SIZE);
	uint64_t prev = pm_load_u64(h + DS_PREV), head = pm_load_u64(h + DS_HEAD);
	/* lit_bufsize is 1 << (memLevel + 6), memLevel 1-9. */
	if (!deflate_status(status) ||
	    !power_of_two_bits(w_size, w_bits, 8, 16) || w_mask != w_size - 1 ||
	    window_size != 2 * (uint64_t)w_size ||
	    !power_of_two_bits(hash_size, hash_bits, 8, 16) ||
	    hash_mask != hash_size - 1 || lit_bufsize < 128 ||
	    lit_bufsize > 32768 || (lit_bufsize & (lit_bufsize - 1)) ||
	    pending_size != 4 * (uint64_t)lit_bufsize)
		return NULL;
	struct pm_error *err = owned_pend_library(a, st, DS_SIZE_MIN, OWN_ZLIB_STATE);
	if (!err)
		err = owned_pend_library(a, window, window_size, OWN_ZLIB_WINDOW);
	if (!err)
		err = owned_pend_library(a, prev, 2 * (uint64_t)w_size, OWN_ZLIB_HASH);
	if (!err)
		err = owned_pend_library(a, head, 2 * (uint64_t)hash_size, OWN_ZLIB_HASH);
	return err ? err : owned_pend_library(a, pending_buf, pending_size,
					      OWN_ZLIB_PENDING);
}

static struct pm_error *inflate_state_owned(struct analysis *a, uint64_t st)
{
	uint64_t words[IS_WINDOW / 8 + 1];
	if (!analysis_read_words(a, st, sizeof(words) / 8, words))
		return NULL;
	const uint8_t *h = (const uint8_t *)words;
	uint32_t mode = pm_load_u32(h + IS_MODE);
	uint32_t wbits = pm_load_u32(h + IS_WBITS);
	uint32_t wsize = pm_load_u32(h + IS_WSIZE);
	uint64_t window = pm_load_u64(h + IS_WINDOW);
	/* wbits is 0 until a zlib header says it (auto-detection), else
	 * 8-15; the window is made with wsize = 1 << wbits. */
	if (mode < INFLATE_HEAD || mode > INFLATE_SYNC || wbits > 15 ||
	    (window && wsize != UINT32_C(1) << wbits))
		return NULL;
	struct pm_error *err = owned_pend_library(a, st, IS_SIZE, OWN_ZLIB_STATE);
	if (!err && window)
		err = owned_pend_library(a, window, wsize, OWN_ZLIB_WINDOW);
	return err;
}

/* What the object holds beside the stream: its lock and, for a
 * _ZlibDecompressor, the input it has not read yet. */
static struct pm_error *zlib_object_owned(struct analysis *a, const uint8_t *b,
					  size_t avail, uint8_t kind)
{
	bool decompressor = kind == TK_ZLIB_DECOMPRESSOR;
	uint32_t lock = decompressor ? DECOMPRESSOR_LOCK_OFFSET : LOCK_OFFSET;
	struct pm_error *err = NULL;
	if (a->l->minor <= LOCK_MINOR_MAX && lock + 8 <= avail)
		err = owned_pend_sized(a, pm_load_u64(b + lock), LOCK_SIZE,
				       OWN_THREAD_LOCK);
	if (err || !decompressor || AVAIL_IN_REAL + 8 > avail)
		return err;
	uint64_t buf = pm_load_u64(b + INPUT_BUFFER);
	uint64_t size = pm_load_u64(b + INPUT_BUFFER_SIZE);
	uint64_t left = pm_load_u64(b + AVAIL_IN_REAL);
	if (!buf || !size || size > INPUT_SIZE_MAX || left > size)
		return NULL;
	return owned_pend_sized(a, buf, size, OWN_ZLIB_INPUT);
}

struct pm_error *zlib_owned(struct analysis *a, uint64_t obj, const uint8_t *b,
			    size_t avail, uint8_t kind)
{
	struct pm_error *err = zlib_object_owned(a, b, avail, kind);
	if (err || ZST_OFFSET + ZST_STATE + 8 > avail)
		return err;
	uint64_t state = pm_load_u64(b + ZST_OFFSET + ZST_STATE), strm;
	/* NULL before init and after end; the state's first word points
	 * back at the z_stream that owns it. */
	if (!state || state & 7 || !analysis_read_word(a, state, &strm) ||
	    strm != obj + ZST_OFFSET)
		return NULL;
	return kind == TK_ZLIB_COMPRESS ? deflate_state_owned(a, state) :
		inflate_state_owned(a, state);
}
