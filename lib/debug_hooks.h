/* CPython's debug allocator hooks (-X dev, PYTHONMALLOC=debug, debug
 * builds): the header and trailer they put around the data they give the
 * program, and how to tell such a header from data that resembles one. */
#ifndef PYMORTEM_DEBUG_HOOKS_H
#define PYMORTEM_DEBUG_HOOKS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The debug allocator hooks' header (the size asked and the API id) before
 * the data they give the program, and their trailer of forbidden bytes. */
enum { PM_DEBUG_HOOK_HEADER = 16, PM_DEBUG_HOOK_TRAILER = 8 };

/* Whether the 16 bytes at h are such a header: {size asked (big-endian),
 * API id 'r', 'm' or 'o', 7 x 0xfd}, for data of at most room bytes (the
 * allocation's, less header and trailer; UINT64_MAX when not known). The
 * id and the size matter: a short string's NUL and its own trailer's 0xfd
 * bytes read as a second header otherwise ("Continue\0" + 0xfd x 8). */
static inline bool pm_debug_hook_header(const uint8_t *h, uint64_t room,
					uint64_t *asked)
{
	static const uint8_t forbidden[7] = {0xfd, 0xfd, 0xfd, 0xfd, 0xfd, 0xfd, 0xfd};
	if (memcmp(h + 9, forbidden, sizeof(forbidden)) != 0 ||
	    (h[8] != 'r' && h[8] != 'm' && h[8] != 'o'))
		return false;
	uint64_t size = 0;
	for (int i = 0; i < 8; i++)
		size = size << 8 | h[i];
	if (size > room)
		return false;
	if (asked)
		*asked = size;
	return true;
}

#endif
