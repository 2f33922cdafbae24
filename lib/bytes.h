/* Unaligned little-endian loads from byte buffers of target memory (views,
 * core file contents): memcpy, because target data has no alignment we can
 * trust and the compiler turns it into a plain load. */
#ifndef PM_BYTES_H
#define PM_BYTES_H

#include <stdint.h>
#include <string.h>

static inline uint64_t pm_load_u64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t pm_load_u32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

#endif
