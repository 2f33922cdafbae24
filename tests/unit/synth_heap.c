/* The synthetic heap image (see synth_heap.h). Layouts: glibc 2.36
 * (malloc_state, malloc_par, tcache_perthread_struct, as test_glibc.c) and
 * CPython 3.11 (lib/cpython_layout.c, lib/pymalloc.c, lib/graph_roots.c). */
#include "synth_heap.h"

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "synth_core.h"

/* Regions, in address order (the order of the core's loads). */
#define HEAP       0x10000000ull
#define HEAP_LEN   0x21000ull
#define H1         0x7c0000000000ull    /* a thread arena's first heap */
#define H1_LEN     0x2000ull
#define H2         0x7c0004000000ull    /* its next heap (64 MiB aligned) */
#define H2_LEN     0x1000ull
#define MM         0x7d0000000000ull
#define MM_LEN     0x5000ull
#define PYARENA    0x7e0000000000ull
/* A real arena maps 1 MiB; only its carved pools (below pool_address) are
 * ever read, so the image maps 64 KiB: a 1 MiB region made each fuzz run
 * (page scans of anonymous memory) ten times slower under ASan. */
#define PYARENA_LEN 0x10000ull
#define LIBC_TEXT  0x7f0000000000ull
#define LIBC_DATA  0x7f0000001000ull
#define PY_TEXT    0x7f0000100000ull
#define PY_DATA    0x7f0000101000ull
#define STACK      0x7ffffffde000ull

#define LIBC_PATH  "/nonexistent/pymortem-synth/libc.so.6"
#define PY_PATH    "/nonexistent/pymortem-synth/libpython3.11.so.1.0"

/* glibc: mp_ and main_arena in libc's data; chunks of the main heap. */
#define MP         (LIBC_DATA + 0x0)
#define ARENA      (LIBC_DATA + 0x100)
#define SYSMEM     HEAP_LEN
#define C_TCACHE   (HEAP + 0x000)   /* tcache_perthread_struct, 0x290 */
#define C_AVEC     (HEAP + 0x290)   /* pymalloc's arena vector, 0x310 */
#define C_TYPE     (HEAP + 0x5a0)   /* heap type Customer, 0x3c0 */
#define C_B        (HEAP + 0x960)   /* unsorted bin, 0x100 */
#define C_C        (HEAP + 0xa60)   /* used, 0x100 (PREV_INUSE clear) */
#define C_D        (HEAP + 0xb60)   /* fastbin 0, 0x20 */
#define C_F        (HEAP + 0xb80)   /* tcache bin 0, 0x20 */
#define C_E        (HEAP + 0xba0)   /* used, 0x50: the list's items */
#define C_TOP      (HEAP + 0xbf0)

/* The thread arena (2.35+): heap_info, then its malloc_state, the first
 * chunk at 16-aligned user data after it; the fencepost pair ends H1. */
#define ARENA2     (H1 + 0x30)
#define H1_FIRST   (H1 + 0x8d0)
#define H1_FENCE   (H1 + H1_LEN - 0x20)

/* libpython's data: _PyRuntime (its main interpreter inside, 3.11), the GC
 * list head, static types, Py_Version and obmalloc's static variables. */
#define RUNTIME    (PY_DATA + 0x0)
#define INTERP     (PY_DATA + 0x100)
#define GC_HEAD    (PY_DATA + 0x800)
#define TYPES      (PY_DATA + 0x1000)   /* one per 0x200 */
#define PY_VERSION (PY_DATA + 0x3000)
#define OBM_ARENAS (PY_DATA + 0x3010)
#define OBM_MAXARENAS (PY_DATA + 0x3018)
#define OBM_NARENAS (PY_DATA + 0x3020)
#define OBM_NTIMES (PY_DATA + 0x3028)
#define OBM_HIGHWATER (PY_DATA + 0x3030)

/* pymalloc (3.11): 16 KiB pools, 48-byte pool headers. */
#define POOL_SIZE  0x4000ull
#define POOL(i)    (PYARENA + (uint64_t)(i) * POOL_SIZE)
#define BLOCK(pool, size, k) (POOL(pool) + 48 + (uint64_t)(k) * (size))

enum { T_TYPE, T_OBJECT, T_LIST, T_DICT, T_SET, T_STR, T_BYTEARRAY, NTYPES };
static const char *const type_names[NTYPES] = {
	"type", "object", "list", "dict", "set", "str", "bytearray",
};
static const char *const type_symbols[NTYPES] = {
	"PyType_Type", "PyBaseObject_Type", "PyList_Type", "PyDict_Type",
	"PySet_Type", "PyUnicode_Type", "PyByteArray_Type",
};
#define TYPE_ADDR(i) (TYPES + (uint64_t)(i) * 0x200)

/* tp_flags bits (CPython 3.11 object.h) */
enum {
	F_MANAGED_DICT = 1 << 4, F_HEAPTYPE = 1 << 9, F_BASETYPE = 1 << 10,
	F_READY = 1 << 12, F_HAVE_GC = 1 << 14, F_LIST_SUBCLASS = 1 << 25,
	F_UNICODE_SUBCLASS = 1 << 28, F_DICT_SUBCLASS = 1 << 29,
};
#define F_TYPE_SUBCLASS (1ull << 31)

/* PyTypeObject (3.11) */
enum { TP_NAME = 24, TP_BASICSIZE = 32, TP_ITEMSIZE = 40, TP_FLAGS = 168,
       TP_BASE = 256, HEAP_TYPE_SIZE = 880 };

/* Python objects in the pools: pool 0 holds 64-byte blocks, pool 1 48-byte
 * ones, pool 2 128-byte ones, pool 3 is carved and empty. */
#define STR_HELLO  BLOCK(0, 64, 0)
#define STR_NAME   BLOCK(0, 64, 1)
#define LIST_GC    BLOCK(0, 64, 2)
#define MODS_GC    BLOCK(0, 64, 3)
#define FREE_BLOCK BLOCK(0, 64, 4)
#define IDICT_GC   BLOCK(0, 64, 5)
#define STR_MAIN   BLOCK(0, 64, 6)
#define INST_BLOCK BLOCK(1, 48, 0)      /* pre-header, GC head, object */
#define INST_GC    (INST_BLOCK + 16)
#define INST       (INST_BLOCK + 32)
#define KEYS_MODS  BLOCK(2, 128, 0)
#define KEYS_IDICT BLOCK(2, 128, 1)
#define TYPE_GC    (C_TYPE + 16)
#define TYPE_OBJ   (C_TYPE + 32)
#define BIG_STR    (MM + 16)
#define BIG_STR_LEN 0x4000ull

struct region {
	uint64_t vaddr, size;
	uint32_t flags;
	const char *path;           /* NT_FILE name, NULL: anonymous */
	uint64_t pgoff;
	uint8_t *bytes;
};

struct builder {
	struct synth_heap *h;
	struct region regions[SYNTH_HEAP_MAX_LOADS];
	size_t nregions;
};

static uint8_t *at(struct builder *b, uint64_t addr, size_t len)
{
	for (size_t i = 0; i < b->nregions; i++) {
		struct region *r = &b->regions[i];
		if (addr >= r->vaddr && len <= r->size && addr - r->vaddr <= r->size - len)
			return r->bytes + (addr - r->vaddr);
	}
	fprintf(stderr, "synth_heap: 0x%llx is outside the image\n",
		(unsigned long long)addr);
	abort();
}

static void field(struct builder *b, uint64_t addr)
{
	if (b->h->nfields < SYNTH_HEAP_MAX_FIELDS)
		b->h->fields[b->h->nfields++] = addr;
}

static void pointer(struct builder *b, uint64_t addr)
{
	if (b->h->npointers < SYNTH_HEAP_MAX_POINTERS)
		b->h->pointers[b->h->npointers++] = addr;
}

static void put64(struct builder *b, uint64_t addr, uint64_t v)
{
	memcpy(at(b, addr, 8), &v, 8);
	field(b, addr);
}

static void put32(struct builder *b, uint64_t addr, uint32_t v)
{
	memcpy(at(b, addr, 4), &v, 4);
	field(b, addr & ~7ull);
}

static void put_bytes(struct builder *b, uint64_t addr, const void *p, size_t n)
{
	memcpy(at(b, addr, n), p, n);
}

static void add_region(struct builder *b, uint64_t vaddr, uint64_t size,
		       uint32_t flags, const char *path, uint64_t pgoff)
{
	struct region *r = &b->regions[b->nregions++];
	*r = (struct region){ vaddr, size, flags, path, pgoff, calloc(1, size) };
	if (!r->bytes)
		abort();
}

/* glibc 2.36's safe-linking of a free list pointer stored at field. */
static uint64_t protect(uint64_t field_addr, uint64_t ptr)
{
	return (field_addr >> 12) ^ ptr;
}

static void chunk(struct builder *b, uint64_t addr, uint64_t size_and_flags)
{
	put64(b, addr + 8, size_and_flags);
	pointer(b, addr);
}

static void build_glibc(struct builder *b)
{
	static const char banner[] =
		"GNU C Library (synthetic) stable release version 2.36.\n";
	put_bytes(b, LIBC_TEXT, "\x7f" "ELF", 4);
	put_bytes(b, LIBC_TEXT + 0x200, banner, sizeof(banner));
	/* mp_ */
	put64(b, MP + 0x10, 0x20000);           /* mmap_threshold */
	put32(b, MP + 0x3c, 1);                 /* n_mmaps */
	put32(b, MP + 0x40, 65536);             /* n_mmaps_max */
	put32(b, MP + 0x44, 1);                 /* max_n_mmaps */
	put64(b, MP + 0x50, MM_LEN);            /* mmapped_mem */
	put64(b, MP + 0x60, HEAP);              /* sbrk_base */
	put64(b, MP + 0x68, 64);                /* tcache_bins */
	/* main_arena: empty bins but the unsorted one (C_B) */
	for (int i = 1; i < 128; i++) {
		uint64_t bin = ARENA + 0x70 + (uint64_t)(i - 1) * 16;
		memcpy(at(b, bin, 8), &(uint64_t){ bin - 16 }, 8);
		memcpy(at(b, bin + 8, 8), &(uint64_t){ bin - 16 }, 8);
	}
	uint64_t unsorted = ARENA + 0x70 - 16;
	put64(b, ARENA + 0x70, C_B);
	put64(b, ARENA + 0x78, C_B);
	put64(b, ARENA + 0x10, C_D);            /* fastbinsY[0] */
	put64(b, ARENA + 0x60, C_TOP);
	put64(b, ARENA + 0x870, ARENA);         /* next */
	put64(b, ARENA + 0x880, 1);             /* attached_threads */
	put64(b, ARENA + 0x888, SYSMEM);        /* system_mem */
	put64(b, ARENA + 0x890, SYSMEM);        /* max_system_mem */
	pointer(b, ARENA);
	pointer(b, MP);

	chunk(b, C_TCACHE, 0x290 | 1);
	put64(b, C_TCACHE + 16, 1);             /* counts[0] = 1 (uint16) */
	put64(b, C_TCACHE + 16 + 0x80, C_F + 16);   /* entries[0] */
	chunk(b, C_AVEC, 0x310 | 1);
	chunk(b, C_TYPE, 0x3c0 | 1);
	chunk(b, C_B, 0x100 | 1);
	put64(b, C_B + 16, unsorted);
	put64(b, C_B + 24, unsorted);
	put64(b, C_C, 0x100);                   /* prev_size: C_B is free */
	chunk(b, C_C, 0x100);
	chunk(b, C_D, 0x20 | 1);
	put64(b, C_D + 16, protect(C_D + 16, 0));
	chunk(b, C_F, 0x20 | 1);
	put64(b, C_F + 16, protect(C_F + 16, 0));
	chunk(b, C_E, 0x50 | 1);
	chunk(b, C_TOP, (SYSMEM - (C_TOP - HEAP)) | 1);
	/* The thread arena: main_arena -> ARENA2 -> main_arena. */
	put64(b, ARENA + 0x870, ARENA2);
	put64(b, H1, ARENA2);                   /* heap_info.ar_ptr */
	put64(b, H1 + 0x10, H1_LEN);            /* size */
	put64(b, H1 + 0x18, H1_LEN);            /* mprotect_size */
	put64(b, H1 + 0x20, 0x1000);            /* pagesize */
	for (int i = 1; i < 128; i++) {
		uint64_t bin = ARENA2 + 0x70 + (uint64_t)(i - 1) * 16;
		memcpy(at(b, bin, 8), &(uint64_t){ bin - 16 }, 8);
		memcpy(at(b, bin + 8, 8), &(uint64_t){ bin - 16 }, 8);
	}
	put32(b, ARENA2 + 4, 2);                /* flags: NONCONTIGUOUS */
	put64(b, ARENA2 + 0x60, H2 + 0x30);     /* top, in H2 */
	put64(b, ARENA2 + 0x870, ARENA);        /* next */
	put64(b, ARENA2 + 0x880, 1);
	put64(b, ARENA2 + 0x888, H1_LEN + H2_LEN);
	put64(b, ARENA2 + 0x890, H1_LEN + H2_LEN);
	pointer(b, ARENA2);
	chunk(b, H1_FIRST, 0x100 | 5);          /* used; NON_MAIN_ARENA */
	chunk(b, H1_FIRST + 0x100, (H1_FENCE - H1_FIRST - 0x100) | 5);
	chunk(b, H1_FENCE, 0x10 | 1);           /* the fencepost pair */
	put64(b, H1_FENCE + 0x18, 0 | 1);
	put64(b, H2, ARENA2);
	put64(b, H2 + 8, H1);                   /* prev */
	put64(b, H2 + 0x10, H2_LEN);
	put64(b, H2 + 0x18, H2_LEN);
	put64(b, H2 + 0x20, 0x1000);
	chunk(b, H2 + 0x30, (H2_LEN - 0x30) | 1);   /* its top */

	/* the mmapped chunk (IS_MMAPPED), holding a large str */
	chunk(b, MM, MM_LEN | 2);

	struct synth_heap_expect *e = &b->h->expect;
	e->chunks = 14;
	/* C_AVEC, C_TYPE, C_C, C_E and the thread arena's two */
	e->used_chunks = 6;
	e->arenas_glibc = 2;
	e->top_chunks = 2;
	e->fenceposts = 1;
	e->bin_chunks = 1;
	e->fastbin_chunks = 1;
	e->tcache_chunks = 1;
	e->mmapped_chunks = 1;
	e->sysmem = SYSMEM;
	e->top_size = SYSMEM - (C_TOP - HEAP);
	e->mmapped_size = MM_LEN;
	b->h->main_arena = ARENA;
	b->h->mp = MP;
	b->h->heap_start = HEAP;
	b->h->top_chunk = C_TOP;
	b->h->mmapped_chunk = MM;
}

static void build_static_types(struct builder *b)
{
	static const struct { uint64_t basicsize, itemsize, flags; } t[NTYPES] = {
		[T_TYPE] = { HEAP_TYPE_SIZE, 40, F_READY | F_HAVE_GC |
			     F_BASETYPE | F_TYPE_SUBCLASS },
		[T_OBJECT] = { 16, 0, F_READY | F_BASETYPE },
		[T_LIST] = { 40, 0, F_READY | F_HAVE_GC | F_BASETYPE | F_LIST_SUBCLASS },
		[T_DICT] = { 48, 0, F_READY | F_HAVE_GC | F_BASETYPE | F_DICT_SUBCLASS },
		[T_SET] = { 200, 0, F_READY | F_HAVE_GC | F_BASETYPE },
		[T_STR] = { 80, 0, F_READY | F_BASETYPE | F_UNICODE_SUBCLASS },
		[T_BYTEARRAY] = { 56, 0, F_READY | F_BASETYPE },
	};
	put_bytes(b, PY_TEXT, "\x7f" "ELF", 4);
	for (int i = 0; i < NTYPES; i++) {
		uint64_t tp = TYPE_ADDR(i), name = PY_TEXT + 0x100 + (uint64_t)i * 0x20;
		put_bytes(b, name, type_names[i], strlen(type_names[i]) + 1);
		put64(b, tp, 100);                      /* ob_refcnt */
		put64(b, tp + 8, TYPE_ADDR(T_TYPE));    /* ob_type */
		put64(b, tp + TP_NAME, name);
		put64(b, tp + TP_BASICSIZE, t[i].basicsize);
		put64(b, tp + TP_ITEMSIZE, t[i].itemsize);
		put64(b, tp + TP_FLAGS, t[i].flags);
		if (i != T_OBJECT)
			put64(b, tp + TP_BASE, TYPE_ADDR(T_OBJECT));
		pointer(b, tp);
	}
}

/* A GC head at gc linked between prev and next. */
static void gc_link(struct builder *b, uint64_t gc, uint64_t prev, uint64_t next)
{
	put64(b, gc, next);
	put64(b, gc + 8, prev);
}

/* A compact ASCII str (PyASCIIObject, 3.11: wstr at 40, data at 48). */
static void str_object(struct builder *b, uint64_t obj, const char *s, uint64_t len)
{
	put64(b, obj, 1);
	put64(b, obj + 8, TYPE_ADDR(T_STR));
	put64(b, obj + 16, len);
	put64(b, obj + 24, UINT64_MAX);         /* hash not computed */
	/* state: kind 1 (bits 2-4), compact, ascii, ready */
	put32(b, obj + 32, (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7));
	if (s)
		put_bytes(b, obj + 48, s, len + 1);
	else
		memset(at(b, obj + 48, len), 'x', len);
	pointer(b, obj);
}

/* A dict (3.11 PyDictObject) over a unicode keys table of 8 slots. */
static void dict_object(struct builder *b, uint64_t gc, uint64_t keys,
			const uint64_t (*items)[2], size_t n)
{
	uint64_t obj = gc + 16;
	put64(b, obj, 1);
	put64(b, obj + 8, TYPE_ADDR(T_DICT));
	put64(b, obj + 16, n);                  /* ma_used */
	put64(b, obj + 32, keys);               /* ma_keys */
	pointer(b, obj);
	/* PyDictKeysObject: refcnt, log2_size 3, log2_index_bytes 3, kind
	 * unicode; usable, nentries; 8 one-byte indices; 16-byte entries. */
	put64(b, keys, 1);
	uint8_t geometry[3] = { 3, 3, 1 };
	put_bytes(b, keys + 8, geometry, 3);
	field(b, keys + 8);
	put64(b, keys + 16, 5 - n);
	put64(b, keys + 24, n);
	uint8_t indices[8];
	memset(indices, 0xff, sizeof(indices));
	for (size_t i = 0; i < n; i++)
		indices[i] = (uint8_t)i;
	put_bytes(b, keys + 32, indices, sizeof(indices));
	for (size_t i = 0; i < n; i++) {
		put64(b, keys + 40 + 16 * i, items[i][0]);
		put64(b, keys + 48 + 16 * i, items[i][1]);
	}
	pointer(b, keys);
}

/* A pool header (3.11 struct pool_header). */
static void pool_header(struct builder *b, int i, uint32_t count, uint32_t szidx,
			uint64_t freeblock, uint32_t nused_tail)
{
	uint32_t size = (szidx + 1) * 16;
	put32(b, POOL(i), count);
	put64(b, POOL(i) + 8, freeblock);
	put32(b, POOL(i) + 32, 0);              /* arenaindex */
	put32(b, POOL(i) + 36, szidx);
	put32(b, POOL(i) + 40, 48 + nused_tail * size);     /* nextoffset */
	put32(b, POOL(i) + 44, (uint32_t)POOL_SIZE - size); /* maxnextoffset */
	pointer(b, POOL(i));
}

static void build_python(struct builder *b)
{
	/* Runtime, interpreter, version, GC list head. */
	put64(b, RUNTIME + 40, INTERP);         /* interpreters.head */
	put64(b, INTERP + 888, MODS_GC + 16);   /* interp->modules */
	put64(b, PY_VERSION, 0x030b04f0);       /* 3.11.4 final */
	pointer(b, RUNTIME);
	pointer(b, INTERP);
	build_static_types(b);

	/* The GC list: head, heap type, list, modules dict, instance dict,
	 * instance. */
	const uint64_t ring[] = { GC_HEAD, TYPE_GC, LIST_GC, MODS_GC, IDICT_GC, INST_GC };
	size_t nring = sizeof(ring) / sizeof(ring[0]);
	for (size_t i = 0; i < nring; i++)
		gc_link(b, ring[i], ring[(i + nring - 1) % nring], ring[(i + 1) % nring]);

	/* Heap type Customer in a glibc chunk: GC head, then the type; its
	 * name after the struct. */
	uint64_t name = TYPE_OBJ + HEAP_TYPE_SIZE + 8;
	put_bytes(b, name, "Customer", 9);
	put64(b, TYPE_OBJ, 3);
	put64(b, TYPE_OBJ + 8, TYPE_ADDR(T_TYPE));
	put64(b, TYPE_OBJ + TP_NAME, name);
	put64(b, TYPE_OBJ + TP_BASICSIZE, 16);
	put64(b, TYPE_OBJ + TP_FLAGS, F_READY | F_HEAPTYPE | F_HAVE_GC |
	      F_BASETYPE | F_MANAGED_DICT);
	put64(b, TYPE_OBJ + TP_BASE, TYPE_ADDR(T_OBJECT));
	pointer(b, TYPE_OBJ);

	/* Strings; a large one in the mmapped chunk. */
	str_object(b, STR_HELLO, "hello", 5);
	str_object(b, STR_NAME, "name", 4);
	str_object(b, STR_MAIN, "main", 4);
	str_object(b, BIG_STR, NULL, BIG_STR_LEN);

	/* list [ "hello", Customer(), big str ], items in chunk C_E */
	uint64_t list = LIST_GC + 16;
	put64(b, list, 2);
	put64(b, list + 8, TYPE_ADDR(T_LIST));
	put64(b, list + 16, 3);                 /* ob_size */
	put64(b, list + 24, C_E + 16);          /* ob_item */
	put64(b, list + 32, 3);                 /* allocated */
	put64(b, C_E + 16, STR_HELLO);
	put64(b, C_E + 24, INST);
	put64(b, C_E + 32, BIG_STR);
	pointer(b, list);

	/* modules = { "main": list, "hello": Customer() } */
	const uint64_t mods[2][2] = { { STR_MAIN, list }, { STR_HELLO, INST } };
	dict_object(b, MODS_GC, KEYS_MODS, mods, 2);
	/* the instance's __dict__ = { "name": "hello" } */
	const uint64_t attrs[1][2] = { { STR_NAME, STR_HELLO } };
	dict_object(b, IDICT_GC, KEYS_IDICT, attrs, 1);

	/* Customer(): pre-header (values NULL, dict), GC head, object. */
	put64(b, INST_BLOCK + 8, IDICT_GC + 16);
	put64(b, INST, 2);
	put64(b, INST + 8, TYPE_OBJ);
	pointer(b, INST);

	/* pymalloc: the arena vector (16 entries, one arena) in C_AVEC, the
	 * static variables pointing at it, four carved pools. */
	uint64_t vec = C_AVEC + 16;
	put64(b, vec + 0, PYARENA);             /* address */
	put64(b, vec + 8, POOL(4));             /* pool_address */
	put32(b, vec + 16, 61);                 /* nfreepools: 60 + the empty one */
	put32(b, vec + 20, 64);                 /* ntotalpools */
	pointer(b, vec);
	put64(b, OBM_ARENAS, vec);
	put32(b, OBM_MAXARENAS, 16);
	put64(b, OBM_NARENAS, 1);
	put64(b, OBM_NTIMES, 1);
	put64(b, OBM_HIGHWATER, 1);
	/* pool 0: 64-byte blocks 0-6, block 4 free, 7.. never used */
	pool_header(b, 0, 6, 3, FREE_BLOCK, 7);
	put64(b, FREE_BLOCK, 0);
	pool_header(b, 1, 1, 2, 0, 1);
	pool_header(b, 2, 2, 7, 0, 2);
	pool_header(b, 3, 0, 0, 0, 0);

	/* A thread whose stack holds the list (a conservative root). */
	put64(b, STACK + 0x900, list);

	struct synth_heap_expect *e = &b->h->expect;
	e->arenas = 1;
	e->pools = 3;
	e->empty_pools = 1;
	e->used_blocks = 9;
	e->strs = 4;
	e->lists = 1;
	e->dicts = 2;
	e->customers = 1;
	e->types = 1;
	e->objects = e->strs + e->lists + e->dicts + e->customers + e->types;
	b->h->pymalloc_arena = PYARENA;
	b->h->list_object = list;
	b->h->customer_type = TYPE_OBJ;
	b->h->customer_type_chunk = C_TYPE;
	b->h->modules_dict = MODS_GC + 16;
}

struct synth_heap *synth_heap_create(void)
{
	struct synth_heap *h = calloc(1, sizeof(*h));
	struct builder b = { .h = h };
	if (!h)
		return NULL;
	add_region(&b, HEAP, HEAP_LEN, PF_R | PF_W, NULL, 0);
	add_region(&b, H1, H1_LEN, PF_R | PF_W, NULL, 0);
	add_region(&b, H2, H2_LEN, PF_R | PF_W, NULL, 0);
	add_region(&b, MM, MM_LEN, PF_R | PF_W, NULL, 0);
	add_region(&b, PYARENA, PYARENA_LEN, PF_R | PF_W, NULL, 0);
	add_region(&b, LIBC_TEXT, 0x1000, PF_R | PF_X, LIBC_PATH, 0);
	add_region(&b, LIBC_DATA, 0x2000, PF_R | PF_W, LIBC_PATH, 1);
	add_region(&b, PY_TEXT, 0x1000, PF_R | PF_X, PY_PATH, 0);
	add_region(&b, PY_DATA, 0x4000, PF_R | PF_W, PY_PATH, 1);
	add_region(&b, STACK, 0x1000, PF_R | PF_W, NULL, 0);
	build_glibc(&b);
	build_python(&b);

	struct synth_core *sc = synth_core_create();
	synth_add_prpsinfo(sc, 100, "python3");
	synth_add_prstatus(sc, 100, PY_TEXT + 0x10, STACK + 0x800, 0);
	const uint64_t auxv[] = { AT_PAGESZ, 4096 };
	synth_add_auxv(sc, auxv, 1);
	struct synth_file_entry files[4];
	size_t nfiles = 0;
	for (size_t i = 0; i < b.nregions; i++) {
		struct region *r = &b.regions[i];
		synth_add_load(sc, r->vaddr, r->size, r->size, r->flags, r->bytes);
		if (r->path)
			files[nfiles++] = (struct synth_file_entry){
				r->vaddr, r->vaddr + r->size, r->pgoff, r->path };
	}
	synth_add_nt_file(sc, 4096, files, nfiles);
	h->core = synth_core_build(sc, &h->len);
	for (size_t i = 0; i < b.nregions; i++) {
		h->loads[i] = (struct synth_heap_load){
			b.regions[i].vaddr, b.regions[i].size, synth_load_offset(sc, i) };
		free(b.regions[i].bytes);
	}
	h->nloads = b.nregions;
	synth_core_destroy(sc);
	return h;
}

void synth_heap_destroy(struct synth_heap *h)
{
	if (!h)
		return;
	free(h->core);
	free(h);
}

int64_t synth_heap_offset(const struct synth_heap *h, uint64_t addr, size_t len)
{
	for (size_t i = 0; i < h->nloads; i++) {
		const struct synth_heap_load *l = &h->loads[i];
		if (addr >= l->vaddr && len <= l->size && addr - l->vaddr <= l->size - len)
			return (int64_t)(l->offset + (addr - l->vaddr));
	}
	return -1;
}

bool synth_heap_lookup_symbol(void *arg, const char *module_prefix,
			      const char *name, uint64_t *address, uint64_t *size)
{
	static const struct { const char *name; uint64_t address, size; } symbols[] = {
		{ "main_arena", ARENA, 0x898 }, { "mp_", MP, 0x80 },
		{ "_PyRuntime", RUNTIME, 0x100 }, { "Py_Version", PY_VERSION, 8 },
		{ "arenas", OBM_ARENAS, 8 }, { "maxarenas", OBM_MAXARENAS, 4 },
		{ "narenas_currently_allocated", OBM_NARENAS, 8 },
		{ "ntimes_arena_allocated", OBM_NTIMES, 8 },
		{ "narenas_highwater", OBM_HIGHWATER, 8 },
	};
	(void)arg;
	(void)module_prefix;    /* the library checks the module */
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		if (!strcmp(name, symbols[i].name)) {
			*address = symbols[i].address;
			*size = symbols[i].size;
			return true;
		}
	}
	for (int i = 0; i < NTYPES; i++) {
		if (!strcmp(name, type_symbols[i])) {
			*address = TYPE_ADDR(i);
			*size = 0x1a0;
			return true;
		}
	}
	return false;
}

struct pm_options synth_heap_options(void)
{
	return (struct pm_options){
		.debug_dir = "/nonexistent/pymortem-synth/debug",
		.lookup_symbol = synth_heap_lookup_symbol,
	};
}

int synth_heap_memfd(const uint8_t *bytes, size_t len)
{
	int fd = memfd_create("synth-heap", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, bytes + done, len - done);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	return fd;
}

struct pm_error *synth_heap_open_fd(int fd, struct pm_target **ret)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct pm_options opts = synth_heap_options();
	return pm_target_open_core(path, &opts, ret);
}
