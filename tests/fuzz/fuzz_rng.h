/* The deterministic drivers' random numbers: xorshift64*, so that every
 * machine feeds the same inputs (a failure replays anywhere). */
#ifndef PYMORTEM_FUZZ_RNG_H
#define PYMORTEM_FUZZ_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

#endif
