/* Bit counting for the library's bitmaps (live objects, pymalloc's used
 * blocks, resident pages). Without -mpopcnt, GCC's __builtin_popcountll is
 * a call into libgcc per word, which the graph makes once per reference:
 * the inline form below is a handful of instructions instead. */
#ifndef PM_BITS_H
#define PM_BITS_H

#include <stdint.h>

static inline uint32_t pm_popcount64(uint64_t x)
{
#ifdef __POPCNT__
	return (uint32_t)__builtin_popcountll(x);
#else
	x -= (x >> 1) & UINT64_C(0x5555555555555555);
	x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
	x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
	return (uint32_t)((x * UINT64_C(0x0101010101010101)) >> 56);
#endif
}

#endif
