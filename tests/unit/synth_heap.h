/* A synthetic heap image in a synthetic core (synth_core.h), for the unit
 * test of the walkers and for the structure-aware fuzz targets: a fake
 * libc (glibc 2.36 banner, mp_ and main_arena) with an sbrk heap of chunks
 * (used ones, one in the unsorted bin, a fastbin and a tcache'd one), a
 * thread arena of two heaps (the older one ended by its fencepost) and an
 * mmapped chunk; a fake libpython3.11 with _PyRuntime, its interpreter,
 * static types and the obmalloc variables; one pymalloc arena of pools; and
 * CPython 3.11 objects in it (str, list, dict, an instance of a heap type
 * "Customer" with a managed dict, a large str in the mmapped chunk), linked
 * on one GC list. Symbols come from synth_heap_lookup_symbol (the modules'
 * files do not exist on disk), as a debugger front end would give them. */
#ifndef PM_SYNTH_HEAP_H
#define PM_SYNTH_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pymortem.h"

#define SYNTH_HEAP_MAX_LOADS 12
#define SYNTH_HEAP_MAX_FIELDS 512
#define SYNTH_HEAP_MAX_POINTERS 64

/* What the generator placed: the walkers must find exactly this. */
struct synth_heap_expect {
	/* glibc: chunks of the main heap by state, plus the mmapped one */
	size_t chunks;              /* all chunks the walk lists */
	size_t used_chunks;         /* PM_CHUNK_USED */
	size_t arenas_glibc;        /* main + thread arenas */
	size_t top_chunks, fenceposts;
	size_t bin_chunks, fastbin_chunks, tcache_chunks, mmapped_chunks;
	uint64_t sysmem, top_size, mmapped_size;
	/* pymalloc */
	size_t arenas, pools, empty_pools;
	uint64_t used_blocks;
	/* CPython: recognised live objects, and how many of each type */
	uint64_t objects, strs, lists, dicts, customers, types;
};

struct synth_heap_load {
	uint64_t vaddr, size, offset;   /* offset: in the core's bytes */
};

struct synth_heap {
	uint8_t *core;
	size_t len;
	size_t nloads;
	struct synth_heap_load loads[SYNTH_HEAP_MAX_LOADS];
	/* Addresses of the words the generator wrote (headers, links, counts,
	 * object fields): where mutations hurt most. */
	size_t nfields;
	uint64_t fields[SYNTH_HEAP_MAX_FIELDS];
	/* Addresses of structures (chunks, pools, objects, types): values a
	 * mutated pointer may take, and starts of fields to hit. */
	size_t npointers;
	uint64_t pointers[SYNTH_HEAP_MAX_POINTERS];
	struct synth_heap_expect expect;
	/* Some addresses the tests name. */
	uint64_t main_arena, mp, heap_start, top_chunk, mmapped_chunk, pymalloc_arena;
	uint64_t list_object, customer_type, customer_type_chunk, modules_dict;
};

struct synth_heap *synth_heap_create(void);
void synth_heap_destroy(struct synth_heap *h);

/* The core-file offset of [addr, addr + len) in h->core, or -1 when it is
 * not all inside one load. */
int64_t synth_heap_offset(const struct synth_heap *h, uint64_t addr, size_t len);

/* pm_options.lookup_symbol over the image's symbols (arg unused). */
bool synth_heap_lookup_symbol(void *arg, const char *module_prefix,
			      const char *name, uint64_t *address, uint64_t *size);
/* Options to open the image with: symbols from synth_heap_lookup_symbol,
 * no debug directory. */
struct pm_options synth_heap_options(void);

/* Opens core bytes (h->core or a mutated copy) written to fd (a memfd the
 * caller owns, see synth_heap_memfd) as a core target. */
struct pm_error *synth_heap_open_fd(int fd, struct pm_target **ret);
/* A memfd holding bytes, or -1. */
int synth_heap_memfd(const uint8_t *bytes, size_t len);

#endif
