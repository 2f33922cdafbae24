/* A pymalloc arena allocator for the end-to-end tests
 * (PyObject_SetArenaAllocator through ctypes): the first arena asked for
 * after adjacent_arena_place(addr) is mapped exactly at addr, so a test can
 * put a pymalloc arena right after a glibc mmapped chunk and check that no
 * report lets the chunk run into the arena. Other arenas are mapped
 * anywhere, as pymalloc's own allocator does. */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static uintptr_t wanted;        /* where the next arena goes, 0: anywhere */
static uintptr_t placed;        /* where it went, 0: not yet */

void adjacent_arena_place(uintptr_t addr)
{
	wanted = addr;
	placed = 0;
}

uintptr_t adjacent_arena_placed(void)
{
	return placed;
}

void *adjacent_arena_alloc(void *ctx, size_t size)
{
	(void)ctx;
	void *at = (void *)wanted, *p = MAP_FAILED;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	if (wanted)
		p = mmap(at, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE,
			 -1, 0);
	if (p != MAP_FAILED && p == at)
		placed = wanted;
	else    /* taken (or an old kernel placed it elsewhere): anywhere */
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
	wanted = 0;
	return p == MAP_FAILED ? NULL : p;
}

void adjacent_arena_free(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	munmap(ptr, size);
}
