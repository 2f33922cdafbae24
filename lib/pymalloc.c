/* pymalloc walker. Locating the allocator state differs per version (static
 * variables in 3.8-3.11, per-interpreter _obmalloc_state in 3.12+); walking
 * it is the same everywhere: arena vector -> carved pools -> blocks, where a
 * block is free when it is on the pool's freeblock chain or in the pool's
 * never-used tail. Every number read from the target is range-checked. */
#include "bits.h"
#include "bytes.h"
#include "pymalloc.h"
#include "debug_hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "python_version.h"

enum {
	ARENA_OBJECT_SIZE = 48,
	AO_ADDRESS = 0, AO_POOL_ADDRESS = 8, AO_NFREEPOOLS = 16,
	AO_NTOTALPOOLS = 20,
	POOL_COUNT = 0, POOL_FREEBLOCK = 8, POOL_SZIDX = 36,
	POOL_NEXTOFFSET = 40, POOL_MAXNEXTOFFSET = 44,
	/* struct _obmalloc_state, identical in 3.12 and 3.13 */
	OBS_ARENAS = 512, OBS_MAXARENAS = 520,
	OBS_NARENAS_CURRENT = 1064, OBS_NTIMES_ALLOCATED = 1072,
	OBS_HIGHWATER = 1080, OBS_ARENA_MAP_ROOT = 1096,

	MAXARENAS_CAP = 1u << 24,   /* 16 TiB of 1 MiB arenas */
	MAX_INTERPRETERS = 256,
	GETBLOCKS_CODE_BYTES = 64,
	USE_MAIN_OBMALLOC = 0x20,   /* interp->feature_flags bit */
	INTERP_SCAN_MAX = 32u << 10, /* bytes of PyInterpreterState scanned */
};

/* Where a version keeps its allocator state. */
struct pymalloc_layout {
	int minor;
	uint32_t arena_size, pool_size;
	bool per_interpreter;       /* 3.12+: _obmalloc_state per interpreter */
	/* 3.10+: entries of a radix tree interior node (arena_map_root and
	 * mid nodes): 3.10 ignores the top 16 address bits (10 bits a level),
	 * 3.11+ none (15 bits a level); 0 = no radix tree. */
	uint32_t radix_interior_length;
	uint32_t radix_bottom_length;   /* arena_coverage_t entries of a bottom node */
	bool state_is_pointer;      /* 3.13: interp->obmalloc is a pointer */
	uint64_t interp_obmalloc;   /* offset of obmalloc in PyInterpreterState */
	uint64_t main_interp;       /* offset of _main_interpreter in _PyRuntime */
	uint64_t interpreters_head; /* _PyRuntime.interpreters.head */
	uint64_t interp_next;       /* PyInterpreterState.next */
	uint64_t interp_feature_flags;
};

/* 3.13's row but for the two interpreter-state offsets its pydebug build
 * moves. */
#define PYMALLOC_313 .minor = 13, .arena_size = 1u << 20, .pool_size = 16u << 10, \
	.radix_interior_length = 1u << 15, .radix_bottom_length = 1u << 14, \
	.per_interpreter = true, .state_is_pointer = true, .main_interp = 0x15920, \
	.interpreters_head = 632, .interp_next = 7264
/* 3.14 and 3.15: the same state, the interpreter's fields elsewhere */
#define PYMALLOC_314 .minor = 14, .arena_size = 1u << 20, .pool_size = 16u << 10, \
	.radix_interior_length = 1u << 15, .radix_bottom_length = 1u << 14, \
	.per_interpreter = true, .state_is_pointer = true, \
	.interpreters_head = 808, .interp_next = 7272
#define PYMALLOC_315 .minor = 15, .arena_size = 1u << 20, .pool_size = 16u << 10, \
	.radix_interior_length = 1u << 15, .radix_bottom_length = 1u << 14, \
	.per_interpreter = true, .state_is_pointer = true, \
	.interpreters_head = 936, .interp_next = 7264

/* Offsets verified on 3.12.1 and 3.13.0 (ptype /o); other patch releases are
 * validated at run time. */
static const struct pymalloc_layout pymalloc_layouts[] = {
	{ .minor = 8, .arena_size = 256u << 10, .pool_size = 4u << 10 },
	{ .minor = 9, .arena_size = 256u << 10, .pool_size = 4u << 10 },
	{ .minor = 10, .arena_size = 1u << 20, .pool_size = 16u << 10,
	  .radix_interior_length = 1u << 10, .radix_bottom_length = 1u << 8 },
	{ .minor = 11, .arena_size = 1u << 20, .pool_size = 16u << 10,
	  .radix_interior_length = 1u << 15, .radix_bottom_length = 1u << 14 },
	{ .minor = 12, .arena_size = 1u << 20, .pool_size = 16u << 10,
	  .radix_interior_length = 1u << 15, .radix_bottom_length = 1u << 14,
	  .per_interpreter = true, .state_is_pointer = false,
	  .interp_obmalloc = 3960, .main_interp = 0x12a68,
	  .interpreters_head = 40, .interp_next = 0,
	  .interp_feature_flags = 1712 },
	{ PYMALLOC_313, .interp_obmalloc = 10800, .interp_feature_flags = 8440 },
	{ PYMALLOC_314, .main_interp = 90752, .interp_obmalloc = 10904,
	  .interp_feature_flags = 8488 },
	{ PYMALLOC_315, .main_interp = 120328, .interp_obmalloc = 10880,
	  .interp_feature_flags = 8440 },
};

/* The pydebug builds (Debian's python3.X-dbg: 3.13.18, 3.14.10, 3.15.2):
 * obmalloc and the feature flags 8 bytes further in the interpreter
 * state, and a larger runtime before the main interpreter. */
static const struct pymalloc_layout pymalloc_pydebug_layouts[] = {
	{ PYMALLOC_313, .interp_obmalloc = 10808, .interp_feature_flags = 8448 },
	{ PYMALLOC_314, .main_interp = 106752, .interp_obmalloc = 10912,
	  .interp_feature_flags = 8496 },
	{ PYMALLOC_315, .main_interp = 136336, .interp_obmalloc = 10888,
	  .interp_feature_flags = 8448 },
};

static const struct pymalloc_layout *pymalloc_layout_of(const struct pm_python_info *py)
{
	const struct pymalloc_layout *rows = py->pydebug ? pymalloc_pydebug_layouts :
							   pymalloc_layouts;
	size_t n = py->pydebug ? sizeof(pymalloc_pydebug_layouts) / sizeof(rows[0]) :
				 sizeof(pymalloc_layouts) / sizeof(rows[0]);
	for (size_t i = 0; i < n; i++)
		if (rows[i].minor == py->minor)
			return &rows[i];
	return NULL;
}

/* Walk in progress: the result being built and its growable arrays. */
struct walk {
	struct pm_target *t;
	const struct pymalloc_layout *layout;
	struct pm_pymalloc *pm;
	size_t pools_cap, bits_len, bits_cap, states_cap;
	uint64_t interp_obmalloc;   /* the layout's, or found by scan */
	/* The first arenas walked: what a radix tree found by scan must map. */
	uint64_t arenas_seen[2];
	size_t narenas_seen;
};

static bool maxarenas_plausible(uint32_t n)
{
	if (n == 0)
		return true;
	if (n % 16 || n > MAXARENAS_CAP)
		return false;
	return ((n / 16) & (n / 16 - 1)) == 0;
}

/* Reads the arena_object vector (maxarenas entries) into a host buffer. */
static struct pm_error *read_arena_vector(struct pm_target *t, uint64_t arenas,
					  uint32_t maxarenas, uint8_t **ret)
{
	size_t len = (size_t)maxarenas * ARENA_OBJECT_SIZE;
	if (len && !pm_target_is_mapped(t, arenas, len))
		return pm_error_at(PM_ERR_UNMAPPED, arenas,
				   "arena vector of %u entries is not mapped", maxarenas);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return &pm_error_no_memory;
	struct pm_error *err = len ? pm_target_read(t, arenas, buf, len) : NULL;
	if (err) {
		free(buf);
		return pm_error_wrap(err, "arena vector");
	}
	*ret = buf;
	return NULL;
}

static bool arena_entry_plausible(const uint8_t *e, const struct pymalloc_layout *l)
{
	uint64_t address = pm_load_u64(e + AO_ADDRESS);
	uint64_t pool_address = pm_load_u64(e + AO_POOL_ADDRESS);
	uint32_t nfree = pm_load_u32(e + AO_NFREEPOOLS);
	uint32_t ntotal = pm_load_u32(e + AO_NTOTALPOOLS);
	if (address == 0)
		return true;
	return (address & 0xfff) == 0 && pool_address >= address &&
	       pool_address <= address + l->arena_size &&
	       ntotal <= l->arena_size / l->pool_size && nfree <= ntotal;
}

/* True if (arenas, maxarenas) look like a real arena vector; *narenas gets
 * the number of allocated arenas in it. */
static bool arena_vector_valid(struct pm_target *t, const struct pymalloc_layout *l,
			       uint64_t arenas, uint32_t maxarenas,
			       uint64_t *narenas)
{
	if (!maxarenas_plausible(maxarenas) || (maxarenas && !arenas))
		return false;
	uint8_t *buf;
	struct pm_error *err = read_arena_vector(t, arenas, maxarenas, &buf);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	bool ok = true;
	uint64_t n = 0;
	for (uint32_t i = 0; i < maxarenas && ok; i++) {
		const uint8_t *e = buf + (size_t)i * ARENA_OBJECT_SIZE;
		ok = arena_entry_plausible(e, l);
		n += pm_load_u64(e + AO_ADDRESS) != 0;
	}
	free(buf);
	*narenas = n;
	return ok;
}

static struct pm_error *walk_add_state(struct walk *w,
				       struct pm_pymalloc_state **ret)
{
	struct pm_pymalloc *pm = w->pm;
	if (pm->nstates == w->states_cap) {
		size_t cap = w->states_cap ? 2 * w->states_cap : 4;
		void *p = realloc(pm->states, cap * sizeof(*pm->states));
		if (!p)
			return &pm_error_no_memory;
		pm->states = p;
		w->states_cap = cap;
	}
	struct pm_pymalloc_state *s = &pm->states[pm->nstates++];
	memset(s, 0, sizeof(*s));
	s->ntimes_arena_allocated = -1;
	s->narenas_highwater = -1;
	s->narenas_currently_allocated = -1;
	*ret = s;
	return NULL;
}

static struct pm_error *walk_add_pool(struct walk *w, uint64_t address,
				      uint32_t nblocks,
				      struct pm_pymalloc_pool **ret)
{
	struct pm_pymalloc *pm = w->pm;
	if (pm->npools == w->pools_cap) {
		size_t cap = w->pools_cap ? 2 * w->pools_cap : 256;
		void *p = realloc(pm->pools, cap * sizeof(*pm->pools));
		if (!p)
			return &pm_error_no_memory;
		pm->pools = p;
		w->pools_cap = cap;
	}
	size_t words = (nblocks + 63) / 64;
	if (w->bits_len + words > w->bits_cap) {
		size_t cap = w->bits_cap ? 2 * w->bits_cap : 4096;
		while (cap < w->bits_len + words)
			cap *= 2;
		void *p = realloc(pm->used_bits, cap * sizeof(uint64_t));
		if (!p)
			return &pm_error_no_memory;
		pm->used_bits = p;
		w->bits_cap = cap;
	}
	struct pm_pymalloc_pool *pool = &pm->pools[pm->npools++];
	memset(pool, 0, sizeof(*pool));
	pool->address = address;
	pool->nblocks = nblocks;
	pool->bits = w->bits_len;
	w->bits_len += words;
	*ret = pool;
	return NULL;
}

static void bit_clear(uint64_t *bits, uint32_t k)
{
	bits[k / 64] &= ~(UINT64_C(1) << (k % 64));
}

static bool bit_get(const uint64_t *bits, uint32_t k)
{
	return (bits[k / 64] >> (k % 64)) & 1;
}

static void walk_problem(struct walk *w, uint64_t address, const char *what)
{
	w->pm->problems++;
	pm_target_warn(w->t, true, address, "pymalloc pool: %s", what);
}

/* Marks the never-used tail [nextoffset, maxnextoffset] and the freeblock
 * chain as free in the pool's bitmap. bytes is the whole pool. */
static void pool_mark_free(struct walk *w, struct pm_pymalloc_pool *pool,
			   const uint8_t *bytes, uint32_t size)
{
	uint64_t *bits = w->pm->used_bits + pool->bits;
	uint32_t next = pm_load_u32(bytes + POOL_NEXTOFFSET);
	uint32_t maxnext = pm_load_u32(bytes + POOL_MAXNEXTOFFSET);
	uint32_t pool_size = w->layout->pool_size;
	if (maxnext != pool_size - size || next < PM_PYMALLOC_POOL_OVERHEAD ||
	    next > maxnext + size || (next - PM_PYMALLOC_POOL_OVERHEAD) % size)
		walk_problem(w, pool->address, "bad nextoffset/maxnextoffset");
	else
		for (uint32_t off = next; off <= maxnext; off += size)
			bit_clear(bits, (off - PM_PYMALLOC_POOL_OVERHEAD) / size);

	uint64_t b = pm_load_u64(bytes + POOL_FREEBLOCK);
	for (uint32_t steps = 0; b && steps <= pool->nblocks; steps++) {
		uint64_t off = b - pool->address;
		if (b < pool->address + PM_PYMALLOC_POOL_OVERHEAD ||
		    off > pool_size - size ||
		    (off - PM_PYMALLOC_POOL_OVERHEAD) % size) {
			walk_problem(w, b, "free block pointer outside its pool");
			return;
		}
		uint32_t k = (uint32_t)((off - PM_PYMALLOC_POOL_OVERHEAD) / size);
		if (!bit_get(bits, k)) {
			walk_problem(w, b, "free list revisits a free block");
			return;
		}
		bit_clear(bits, k);
		b = pm_load_u64(bytes + off);
	}
}

static uint32_t pool_count_used(const struct pm_pymalloc *pm,
				const struct pm_pymalloc_pool *pool)
{
	uint32_t n = 0;
	size_t words = (pool->nblocks + 63) / 64;
	for (size_t i = 0; i < words; i++)
		n += pm_popcount64(pm->used_bits[pool->bits + i]);
	return n;
}

static struct pm_error *walk_pool(struct walk *w, struct pm_pymalloc_state *s,
				  uint64_t address, const uint8_t *bytes)
{
	uint32_t count = pm_load_u32(bytes + POOL_COUNT);
	uint32_t szidx = pm_load_u32(bytes + POOL_SZIDX);
	if (count == 0) {
		s->empty_pools++;
		return NULL;
	}
	if (szidx >= PM_PYMALLOC_NCLASSES) {
		walk_problem(w, address, "size class index out of range");
		return NULL;
	}
	uint32_t size = pm_pymalloc_block_size((uint16_t)szidx);
	uint32_t nblocks = (w->layout->pool_size - PM_PYMALLOC_POOL_OVERHEAD) / size;
	struct pm_pymalloc_class *c = &s->classes[szidx];
	c->pools++;
	c->used_blocks += count;
	c->avail_blocks += nblocks - (count < nblocks ? count : nblocks);

	struct pm_pymalloc_pool *pool;
	struct pm_error *err = walk_add_pool(w, address, nblocks, &pool);
	if (err)
		return err;
	pool->count = count;
	pool->szidx = (uint16_t)szidx;
	pool->state = (uint16_t)(s - w->pm->states);
	uint64_t *bits = w->pm->used_bits + pool->bits;
	memset(bits, 0xff, (nblocks + 63) / 64 * sizeof(uint64_t));
	if (nblocks % 64)
		bits[nblocks / 64] = (UINT64_C(1) << (nblocks % 64)) - 1;
	pool_mark_free(w, pool, bytes, size);
	pool->nused = pool_count_used(w->pm, pool);
	if (pool->nused != count)
		walk_problem(w, address, "ref.count disagrees with the free lists");
	return NULL;
}

/* Arenas are anonymous mmaps, often merged by the kernel with neighbours
 * (other arenas, glibc mmapped chunks): count each one in its region. */
static void label_arena_region(struct walk *w, uint64_t address)
{
	pm_target_label_area(w->t, address, address + w->layout->arena_size,
			     PM_LABEL_PYMALLOC_ARENA, NULL);
}

static struct pm_error *walk_arena(struct walk *w, struct pm_pymalloc_state *s,
				   const uint8_t *entry)
{
	const struct pymalloc_layout *l = w->layout;
	uint64_t address = pm_load_u64(entry + AO_ADDRESS);
	uint64_t pool_address = pm_load_u64(entry + AO_POOL_ADDRESS);
	if (!arena_entry_plausible(entry, l)) {
		w->pm->problems++;
		pm_target_warn(w->t, true, address, "pymalloc arena: bad entry");
		return NULL;
	}
	if (address == 0)
		return NULL;
	if (w->narenas_seen < 2)
		w->arenas_seen[w->narenas_seen++] = address;
	s->narenas++;
	label_arena_region(w, address);
	struct pm_pymalloc_arena arena = {
		.address = address, .pool_address = pool_address,
		.nfreepools = pm_load_u32(entry + AO_NFREEPOOLS),
		.ntotalpools = pm_load_u32(entry + AO_NTOTALPOOLS),
		.state = (uint16_t)(s - w->pm->states),
	};
	if (!pm_pymalloc_arena_vector_append(&w->pm->arena_list, &arena))
		return &pm_error_no_memory;
	/* nfreepools counts empty pools and those never carved: CPython
	 * reports both as "unused pools". */
	s->unused_pools += pm_load_u32(entry + AO_NFREEPOOLS);
	uint64_t base = address;
	if (base & (l->pool_size - 1)) {
		s->arena_alignment += l->pool_size;
		base = (base | (l->pool_size - 1)) + 1;
	}
	if (pool_address <= base)
		return NULL;
	const void *view;
	struct pm_error *err = pm_target_view(w->t, base, pool_address - base, &view);
	if (err) {
		w->pm->problems++;
		pm_target_warn(w->t, true, base, "pymalloc arena unreadable: %s",
			       err->message);
		pm_error_destroy(err);
		return NULL;
	}
	/* The view is only valid until the next memory call: copy it. */
	size_t len = pool_address - base;
	uint8_t *bytes = malloc(len);
	if (!bytes)
		return &pm_error_no_memory;
	memcpy(bytes, view, len);
	for (size_t off = 0; off + l->pool_size <= len && !err; off += l->pool_size)
		err = walk_pool(w, s, base + off, bytes + off);
	free(bytes);
	return err;
}

static void state_finish(struct pm_pymalloc_state *s, uint32_t pool_size)
{
	for (uint16_t i = 0; i < PM_PYMALLOC_NCLASSES; i++) {
		const struct pm_pymalloc_class *c = &s->classes[i];
		uint32_t size = pm_pymalloc_block_size(i);
		s->allocated_bytes += c->used_blocks * size;
		s->available_bytes += c->avail_blocks * size;
		s->pool_header_bytes += c->pools * PM_PYMALLOC_POOL_OVERHEAD;
		s->quantization += c->pools *
			((pool_size - PM_PYMALLOC_POOL_OVERHEAD) % size);
	}
}

static struct pm_error *walk_state(struct walk *w, struct pm_pymalloc_state *s)
{
	uint8_t *vec;
	struct pm_error *err = read_arena_vector(w->t, s->arenas, s->maxarenas, &vec);
	if (err)
		return pm_error_wrap(err, "pymalloc state");
	s->first_pool = w->pm->npools;
	for (uint32_t i = 0; i < s->maxarenas && !err; i++) {
		if ((i & 63) == 63) {
			pm_target_progress(w->t, "walking pymalloc's arenas", i, s->maxarenas);
			if (pm_target_interrupted(w->t)) {
				err = pm_error_interrupted();
				break;
			}
		}
		err = walk_arena(w, s, vec + (size_t)i * ARENA_OBJECT_SIZE);
	}
	free(vec);
	s->npools = w->pm->npools - s->first_pool;
	state_finish(s, w->layout->pool_size);
	if (s->narenas)
		w->pm->in_use = true;
	if (s->narenas_currently_allocated >= 0 &&
	    (uint64_t)s->narenas_currently_allocated != s->narenas)
		pm_target_warn(w->t, true, s->arenas,
			       "pymalloc: %llu arenas in the vector, the counter says %lld",
			       (unsigned long long)s->narenas,
			       (long long)s->narenas_currently_allocated);
	return err;
}

static int64_t read_counter(struct pm_target *t, uint64_t addr)
{
	uint64_t v;
	struct pm_error *err = pm_target_read_u64(t, addr, &v);
	if (err) {
		pm_error_destroy(err);
		return -1;
	}
	return v > (UINT64_C(1) << 40) ? -1 : (int64_t)v;
}

static bool module_symbol(struct pm_target *t, const struct pm_python_info *py,
			  const char *name, uint64_t *ret)
{
	const char *base = strrchr(py->module->path, '/');
	base = base ? base + 1 : py->module->path;
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(t, base, name, &sym);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	*ret = sym.address;
	return true;
}

/* 3.8-3.11 with symbols: the static variables of obmalloc.c. */
static bool locate_by_symbols(struct walk *w, const struct pm_python_info *py,
			      struct pm_pymalloc_state *s)
{
	uint64_t arenas_sym, maxarenas_sym, a;
	if (!module_symbol(w->t, py, "arenas", &arenas_sym) ||
	    !module_symbol(w->t, py, "maxarenas", &maxarenas_sym))
		return false;
	struct pm_error *err = pm_target_read_u64(w->t, arenas_sym, &s->arenas);
	if (!err)
		err = pm_target_read_u32(w->t, maxarenas_sym, &s->maxarenas);
	if (err) {
		pm_target_warn(w->t, true, arenas_sym, "pymalloc symbols unreadable: %s",
			       err->message);
		pm_error_destroy(err);
		return false;
	}
	if (module_symbol(w->t, py, "ntimes_arena_allocated", &a))
		s->ntimes_arena_allocated = read_counter(w->t, a);
	if (module_symbol(w->t, py, "narenas_highwater", &a))
		s->narenas_highwater = read_counter(w->t, a);
	if (module_symbol(w->t, py, "narenas_currently_allocated", &a))
		s->narenas_currently_allocated = read_counter(w->t, a);
	return true;
}

/* RIP-relative `mov disp32(%rip), reg` loads in code starting at addr:
 * opcode 8b, modrm mod=00 rm=101, optional REX (W = 64-bit load). */
struct rip_load {
	uint64_t target;
	bool wide;
};

static size_t decode_rip_loads(const uint8_t *code, size_t len, uint64_t addr,
			       struct rip_load *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i + 6 <= len && n < max; i++) {
		bool rex = (code[i] & 0xf0) == 0x40;
		size_t op = i + rex;
		if (op + 6 > len || code[op] != 0x8b || (code[op + 1] & 0xc7) != 0x05)
			continue;
		int32_t disp;
		memcpy(&disp, code + op + 2, 4);
		out[n].target = addr + op + 6 + (int64_t)disp;
		out[n].wide = rex && (code[i] & 0x08);
		n++;
		i = op + 5;
	}
	return n;
}

/* 3.9-3.11 without symbols: _Py_GetAllocatedBlocks (exported) loads
 * maxarenas (32-bit) and arenas (64-bit) RIP-relative. */
static bool locate_by_code(struct walk *w, struct pm_pymalloc_state *s)
{
	struct pm_symbol sym;
	struct pm_error *err = pm_target_symbol(w->t, NULL, "_Py_GetAllocatedBlocks",
						&sym);
	uint8_t code[GETBLOCKS_CODE_BYTES];
	if (!err)
		err = pm_target_read(w->t, sym.address, code, sizeof(code));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	struct rip_load loads[16];
	size_t n = decode_rip_loads(code, sizeof(code), sym.address, loads, 16);
	for (size_t i = 0; i < n; i++) {
		if (loads[i].wide)
			continue;
		for (size_t j = 0; j < n; j++) {
			uint32_t maxarenas;
			uint64_t arenas, narenas;
			if (!loads[j].wide)
				continue;
			err = pm_target_read_u32(w->t, loads[i].target, &maxarenas);
			if (!err)
				err = pm_target_read_u64(w->t, loads[j].target, &arenas);
			if (err) {
				pm_error_destroy(err);
				continue;
			}
			if (!arena_vector_valid(w->t, w->layout, arenas, maxarenas,
						&narenas) ||
			    (maxarenas && !narenas))
				continue;
			s->arenas = arenas;
			s->maxarenas = maxarenas;
			return true;
		}
	}
	return false;
}

/* Largest 16 * 2^k not above n (0 if n < 16). */
static uint32_t maxarenas_floor(uint64_t n)
{
	uint32_t m = 16;
	if (n < 16)
		return 0;
	while ((uint64_t)m * 2 <= n && m < MAXARENAS_CAP)
		m *= 2;
	return m;
}

/* Is word w of the module's data the `arenas` pointer? The vector is a
 * glibc chunk (PyMem_RawRealloc'd to maxarenas * 48 bytes), so its chunk
 * header gives maxarenas; the vector must then validate and hold arenas. */
static bool arenas_candidate(struct walk *w, uint64_t v, uint32_t *maxarenas)
{
	uint64_t size_field, narenas;
	if (!v || v & 15 || !pm_target_is_mapped(w->t, v - 8, 8))
		return false;
	struct pm_error *err = pm_target_read_u64(w->t, v - 8, &size_field);
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	uint64_t size = size_field & ~UINT64_C(7), entries;
	/* Under the debug hooks (-X dev) the vector follows a debug header
	 * {requested size (big-endian), api id, 7 x 0xfd}: the size asked
	 * for. */
	uint8_t hook[16];
	err = v >= 16 ? pm_target_read(w->t, v - 16, hook, sizeof(hook)) : NULL;
	uint64_t asked;
	bool hooked = v >= 16 && !err && pm_debug_hook_header(hook, UINT64_MAX, &asked);
	pm_error_destroy(err);
	if (hooked) {
		size = asked;
		entries = size / ARENA_OBJECT_SIZE;
	} else {
		if (size < 16 + 16 * ARENA_OBJECT_SIZE)
			return false;
		entries = (size - 8) / ARENA_OBJECT_SIZE;
	}
	if (entries < 16 || size > ((uint64_t)MAXARENAS_CAP + 1) * ARENA_OBJECT_SIZE)
		return false;
	uint32_t m = maxarenas_floor(entries);
	if (!arena_vector_valid(w->t, w->layout, v, m, &narenas) || !narenas)
		return false;
	*maxarenas = m;
	return true;
}

/* Calls fn(w, ctx, address, word) for every aligned word of the writable
 * data of the interpreter's module (and the .bss mapping right after it),
 * until fn returns false. False when memory ran out. */
static bool scan_module_data(struct walk *w, const struct pm_python_info *py,
			     bool (*fn)(struct walk *w, void *ctx, uint64_t addr,
					uint64_t word),
			     void *ctx)
{
	const struct pm_module *m = py->module;
	for (size_t i = 0; i < pm_target_region_count(w->t); i++) {
		struct pm_region *r = pm_target_region(w->t, i);
		struct pm_region *before = i ? pm_target_region(w->t, i - 1) : NULL;
		bool own = r->start >= m->start && r->start < m->end;
		bool bss = !r->path && before && before->end == r->start &&
			   before->start >= m->start && before->start < m->end;
		if (!(r->perms & PM_PERM_W) || !(own || bss))
			continue;
		for (uint64_t a = r->start; a + 8 <= r->end; a += PM_VIEW_MAX) {
			size_t len = r->end - a < PM_VIEW_MAX ? (size_t)(r->end - a) : PM_VIEW_MAX;
			const void *view;
			struct pm_error *err = pm_target_view(w->t, a, len, &view);
			if (err) {
				pm_error_destroy(err);
				break;
			}
			/* A copy: fn may read memory, which ends the view. */
			uint64_t *words = malloc(len);
			if (!words)
				return false;
			memcpy(words, view, len);
			bool more = true;
			for (size_t k = 0; k < len / 8 && more; k++)
				more = fn(w, ctx, a + 8 * k, words[k]);
			free(words);
			if (!more)
				return true;
		}
	}
	return true;
}

struct arenas_hits {
	struct pm_pymalloc_state *s;
	size_t hits;
};

static bool arenas_word(struct walk *w, void *ctx, uint64_t addr, uint64_t word)
{
	struct arenas_hits *h = ctx;
	uint32_t maxarenas;
	(void)addr;
	if (!arenas_candidate(w, word, &maxarenas))
		return true;
	if (h->hits++ == 0) {
		h->s->arenas = word;
		h->s->maxarenas = maxarenas;
	} else if (word != h->s->arenas) {
		h->hits = 2;    /* two different vectors: ambiguous */
	}
	return true;
}

/* Without symbols or usable code (3.8 --no-debuginfo): scan the writable
 * data of the interpreter's module for the `arenas` pointer. */
static bool locate_by_data_scan(struct walk *w, const struct pm_python_info *py,
				struct pm_pymalloc_state *s)
{
	struct arenas_hits h = { s, 0 };
	return scan_module_data(w, py, arenas_word, &h) && h.hits == 1;
}

/* 3.12+: reads one _obmalloc_state into s. */
static bool read_obmalloc_state(struct walk *w, uint64_t address,
				struct pm_pymalloc_state *s)
{
	uint8_t buf[OBS_HIGHWATER + 8];
	struct pm_error *err = pm_target_read(w->t, address, buf, sizeof(buf));
	if (err) {
		pm_error_destroy(err);
		return false;
	}
	uint64_t narenas;
	s->address = address;
	s->arenas = pm_load_u64(buf + OBS_ARENAS);
	s->maxarenas = pm_load_u32(buf + OBS_MAXARENAS);
	s->narenas_currently_allocated = (int64_t)pm_load_u64(buf + OBS_NARENAS_CURRENT);
	s->ntimes_arena_allocated = (int64_t)pm_load_u64(buf + OBS_NTIMES_ALLOCATED);
	s->narenas_highwater = (int64_t)pm_load_u64(buf + OBS_HIGHWATER);
	return arena_vector_valid(w->t, w->layout, s->arenas, s->maxarenas, &narenas) &&
	       (uint64_t)s->narenas_currently_allocated == narenas;
}

static bool interp_state_address(struct walk *w, uint64_t interp, uint64_t *ret)
{
	const struct pymalloc_layout *l = w->layout;
	if (!l->state_is_pointer) {
		*ret = interp + w->interp_obmalloc;
		return true;
	}
	struct pm_error *err = pm_target_read_u64(w->t, interp + w->interp_obmalloc, ret);
	pm_error_destroy(err);
	return !err && *ret;
}

static bool state_known(const struct pm_pymalloc *pm, uint64_t address)
{
	for (size_t i = 0; i < pm->nstates; i++)
		if (pm->states[i].address == address)
			return true;
	return false;
}

/* Another patch release may move interp->obmalloc: try every offset of
 * the interpreter state for one whose state validates with arenas in use
 * (an all-zero state would validate anywhere). */
static bool scan_interp_obmalloc(struct walk *w, uint64_t interp,
				 struct pm_pymalloc_state *s)
{
	for (uint64_t off = 0; off < INTERP_SCAN_MAX; off += 8) {
		uint64_t address;
		w->interp_obmalloc = off;
		if (interp_state_address(w, interp, &address) &&
		    read_obmalloc_state(w, address, s) && s->maxarenas) {
			pm_target_warn(w->t, true, interp,
				       "interp->obmalloc found at offset %llu, not %llu",
				       (unsigned long long)off,
				       (unsigned long long)w->layout->interp_obmalloc);
			return true;
		}
	}
	return false;
}

/* 3.12+: the main interpreter's state, then every interpreter on
 * _PyRuntime.interpreters that has its own. */
static struct pm_error *locate_interpreters(struct walk *w,
					    const struct pm_python_info *py)
{
	const struct pymalloc_layout *l = w->layout;
	/* _PyRuntime.interpreters.main, next to .head in 3.12-3.13 (a patch
	 * release may move _main_interpreter itself: 3.13.18's is 72 bytes
	 * after 3.13.0's); the embedded one's offset when it is unreadable. */
	uint64_t main_interp = 0, address;
	struct pm_error *main_err = pm_target_read_u64(w->t, py->runtime + l->interpreters_head + 8,
						       &main_interp);
	pm_error_destroy(main_err);
	if (main_err || !main_interp || (main_interp & 7))
		main_interp = py->runtime + l->main_interp;
	struct pm_pymalloc_state *s;
	struct pm_error *err = walk_add_state(w, &s);
	if (err)
		return err;
	s->interp = main_interp;
	w->interp_obmalloc = l->interp_obmalloc;
	if (!interp_state_address(w, main_interp, &address) ||
	    !read_obmalloc_state(w, address, s)) {
		if (!scan_interp_obmalloc(w, main_interp, s)) {
			w->pm->nstates = 0;
			return NULL;
		}
		w->pm->how = "_PyRuntime offsets, obmalloc offset by scan";
	}
	uint64_t interp;
	err = pm_target_read_u64(w->t, py->runtime + l->interpreters_head, &interp);
	for (unsigned n = 0; !err && interp && n < MAX_INTERPRETERS; n++) {
		uint64_t flags = 0;
		err = pm_target_read_u64(w->t, interp + l->interp_feature_flags, &flags);
		if (!err && !(flags & USE_MAIN_OBMALLOC) &&
		    interp_state_address(w, interp, &address) &&
		    !state_known(w->pm, address)) {
			err = walk_add_state(w, &s);
			if (err)
				return err;
			s->interp = interp;
			if (!read_obmalloc_state(w, address, s)) {
				pm_target_warn(w->t, true, interp,
					       "sub-interpreter allocator state invalid");
				w->pm->nstates--;
			}
		}
		if (!err)
			err = pm_target_read_u64(w->t, interp + l->interp_next, &interp);
	}
	if (err) {
		pm_target_warn(w->t, true, py->runtime,
			       "interpreter list unreadable: %s", err->message);
		pm_error_destroy(err);
	}
	return NULL;
}

static struct pm_error *locate_states(struct walk *w,
				      const struct pm_python_info *py)
{
	if (w->layout->per_interpreter) {
		w->pm->how = "_PyRuntime offsets";
		return locate_interpreters(w, py);
	}
	struct pm_pymalloc_state *s;
	struct pm_error *err = walk_add_state(w, &s);
	if (err)
		return err;
	if (locate_by_symbols(w, py, s)) {
		w->pm->how = "symbols";
	} else if (locate_by_code(w, s)) {
		w->pm->how = "_Py_GetAllocatedBlocks code";
	} else if (locate_by_data_scan(w, py, s)) {
		w->pm->how = "data scan";
	} else {
		w->pm->nstates = 0;
	}
	return NULL;
}

/* Reads one interior node of the radix tree (radix_interior_length
 * pointers at addr) and records its non-null children as heap nodes. */
static void radix_level(struct walk *w, uint64_t addr, uint64_t *children,
			size_t *nchildren, size_t max)
{
	const void *view;
	uint32_t length = w->layout->radix_interior_length;
	struct pm_error *err = pm_target_view(w->t, addr, (size_t)length * 8, &view);
	if (err) {
		pm_error_destroy(err);
		return;
	}
	const uint8_t *p = view;
	for (size_t i = 0; i < length && *nchildren < max; i++) {
		uint64_t child = pm_load_u64(p + 8 * i);
		if (child && !(child & 7))
			children[(*nchildren)++] = child;
	}
}

enum { ARENA_BITS = 20 };   /* the radix tree's keys: 1 MiB arena slots */

/* Where arena address a is in the radix tree: root index, mid index,
 * bottom index (Objects/obmalloc.c MAP_TOP_INDEX, MAP_MID_INDEX,
 * MAP_BOT_INDEX; 3.10 ignores the top 16 address bits, which these masks
 * do by themselves). */
static void radix_indexes(const struct pymalloc_layout *l, uint64_t a,
			  uint64_t idx[3])
{
	unsigned bot_bits = (unsigned)__builtin_ctz(l->radix_bottom_length);
	unsigned int_bits = (unsigned)__builtin_ctz(l->radix_interior_length);
	idx[2] = (a >> ARENA_BITS) & (l->radix_bottom_length - 1);
	idx[1] = (a >> (ARENA_BITS + bot_bits)) & (l->radix_interior_length - 1);
	idx[0] = (a >> (ARENA_BITS + bot_bits + int_bits)) &
		 (l->radix_interior_length - 1);
}

/* Whether the radix tree at root maps arena a as pymalloc marks it
 * (arena_map_mark_used): the bottom entry of a's slot has tail_hi = a's
 * offset in that slot, or -1 when a is slot-aligned. */
static bool radix_maps_arena(struct walk *w, uint64_t root, uint64_t a)
{
	uint64_t idx[3], mid, bottom;
	uint32_t tail_hi;
	radix_indexes(w->layout, a, idx);
	uint32_t expect = (uint32_t)(a & ((UINT64_C(1) << ARENA_BITS) - 1));
	if (!expect)
		expect = UINT32_MAX;
	struct pm_error *err = pm_target_read_u64(w->t, root + 8 * idx[0], &mid);
	if (!err && (!mid || mid & 7))
		return false;
	if (!err)
		err = pm_target_read_u64(w->t, mid + 8 * idx[1], &bottom);
	if (!err && (!bottom || bottom & 7))
		return false;
	if (!err)
		err = pm_target_read_u32(w->t, bottom + 8 * idx[2], &tail_hi);
	pm_error_destroy(err);
	return !err && tail_hi == expect;
}

struct radix_scan {
	uint64_t root;
	size_t hits;
};

/* A word of the module's data that may be root[index of the first arena]:
 * a pointer into anonymous memory (the nodes are calloc'd) from which
 * every arena seen is mapped. */
static bool radix_root_word(struct walk *w, void *ctx, uint64_t addr,
			    uint64_t word)
{
	struct radix_scan *scan = ctx;
	uint64_t idx[3];
	if (!word || word & 7)
		return true;
	const struct pm_region *r = pm_target_find_region(w->t, word);
	if (!r || (r->path && strcmp(r->path, "[heap]")))
		return true;
	radix_indexes(w->layout, w->arenas_seen[0], idx);
	uint64_t root = addr - 8 * idx[0];
	for (size_t i = 0; i < w->narenas_seen; i++)
		if (!radix_maps_arena(w, root, w->arenas_seen[i]))
			return true;
	if (scan->hits++ == 0)
		scan->root = root;
	else if (root != scan->root)
		return false;   /* two candidates: ambiguous, give up */
	return true;
}

/* 3.10/3.11 without symbols: arena_map_root is static data of the
 * interpreter's module, known by the arenas it maps. 0 when not found or
 * ambiguous. */
static uint64_t locate_radix_root_by_scan(struct walk *w,
					  const struct pm_python_info *py)
{
	struct radix_scan scan = { 0, 0 };
	if (!w->narenas_seen || !scan_module_data(w, py, radix_root_word, &scan))
		return 0;
	return scan.hits == 1 ? scan.root : 0;
}

/* The radix tree's mid and bottom nodes (heap allocations of pymalloc's
 * own, to be attributed), from each state's root. */
static void find_radix_nodes(struct walk *w, const struct pm_python_info *py)
{
	struct pm_pymalloc *pm = w->pm;
	if (!w->layout->radix_interior_length)
		return;
	for (size_t i = 0; i < pm->nstates; i++) {
		uint64_t root = 0;
		if (pm->states[i].address)
			root = pm->states[i].address + OBS_ARENA_MAP_ROOT;
		else if (!module_symbol(w->t, py, "arena_map_root", &root) &&
			 !(root = locate_radix_root_by_scan(w, py)))
			continue;
		size_t first_mid = pm->nradix_nodes;
		radix_level(w, root, pm->radix_nodes, &pm->nradix_nodes,
			    PM_PYMALLOC_RADIX_NODES_MAX);
		size_t last_mid = pm->nradix_nodes;
		for (size_t m = first_mid; m < last_mid; m++)
			radix_level(w, pm->radix_nodes[m], pm->radix_nodes,
				    &pm->nradix_nodes, PM_PYMALLOC_RADIX_NODES_MAX);
	}
}

static int pool_compare(const void *a, const void *b)
{
	const struct pm_pymalloc_pool *x = a, *y = b;
	return x->address < y->address ? -1 : x->address > y->address;
}

static void pymalloc_destroy(void *p)
{
	struct pm_pymalloc *pm = p;
	if (!pm)
		return;
	free(pm->states);
	free(pm->pools);
	free(pm->used_bits);
	pm_pymalloc_arena_vector_deinit(&pm->arena_list);
	free(pm);
}

static struct pm_error *pymalloc_walk(struct pm_target *t, struct pm_pymalloc *pm)
{
	const struct pm_python_info *py;
	struct pm_error *err = pm_python_detect(t, &py);
	if (err)
		return err;
	if (!py->supported) {
		snprintf(pm->missing, sizeof(pm->missing), "%s", py->unsupported);
		return NULL;
	}
	struct walk w = { .t = t, .pm = pm, .layout = pymalloc_layout_of(py) };
	pm->arena_size = w.layout->arena_size;
	pm->pool_size = w.layout->pool_size;
	err = locate_states(&w, py);
	if (err)
		return err;
	if (!pm->nstates) {
		snprintf(pm->missing, sizeof(pm->missing),
			 "pymalloc state not found (CPython 3.%d%s)", py->minor,
			 pm_target_options(t)->no_debuginfo ? ", no debug info" : "");
		return NULL;
	}
	pm->found = true;
	for (size_t i = 0; i < pm->nstates && !err; i++)
		err = walk_state(&w, &pm->states[i]);
	if (err)
		return err;
	if (pm->npools)     /* qsort's array must not be NULL, even when empty */
		qsort(pm->pools, pm->npools, sizeof(*pm->pools), pool_compare);
	find_radix_nodes(&w, py);
	return NULL;
}

struct pm_error *pm_pymalloc_walk(struct pm_target *t,
				  const struct pm_pymalloc **ret)
{
	struct pm_pymalloc *pm = pm_target_cache_get(t, PM_CACHE_PYMALLOC);
	if (!pm) {
		pm = calloc(1, sizeof(*pm));
		if (!pm)
			return &pm_error_no_memory;
		struct pm_error *err = pymalloc_walk(t, pm);
		if (err) {
			pymalloc_destroy(pm);
			return err;
		}
		pm_target_cache_set(t, PM_CACHE_PYMALLOC, pm, pymalloc_destroy);
	}
	*ret = pm;
	return NULL;
}

const struct pm_pymalloc_pool *pm_pymalloc_find_pool(const struct pm_pymalloc *pm,
						     uint64_t addr)
{
	size_t lo = 0, hi = pm->npools;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_pymalloc_pool *p = &pm->pools[mid];
		if (addr < p->address)
			hi = mid;
		else if (addr >= p->address + pm->pool_size)
			lo = mid + 1;
		else
			return p;
	}
	return NULL;
}
