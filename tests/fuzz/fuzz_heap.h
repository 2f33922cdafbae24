/* Structure-aware fuzzing of the heap analyses over the synthetic heap
 * image (tests/unit/synth_heap.h). An input is a list of 12-byte patches
 * applied to the image's memory before it is opened as a core:
 *
 *   byte 0      what: bits 0-1 where, bits 2-4 how (below)
 *   bytes 1-3   index (little-endian, 24 bits)
 *   bytes 4-11  value (little-endian, 64 bits)
 *
 * where: 0-1  a word the generator wrote (fields[index % nfields])
 *        2    a word near a structure (pointers[index % npointers] +
 *             8 * (index >> 8 & 63))
 *        3    any word of a region (loads[index % nloads], word
 *             (index >> 3) modulo its size)
 * how:   0 write value   1 add the signed low 16 bits of value
 *        2 flip bit value % 64   3 write a structure's address (+ small)
 *        4 write the low 32 bits   5 write the low byte
 *        6 write 0   7 write ~0 >> (value % 64)
 *
 * A trailing part shorter than a patch is ignored, so any input is valid.
 * The image is built once; each run patches a memfd holding it and puts
 * the bytes back afterwards. */
#ifndef PM_FUZZ_HEAP_H
#define PM_FUZZ_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "pymortem.h"
#include "synth_heap.h"

#define FUZZ_HEAP_PATCH_SIZE 12
#define FUZZ_HEAP_PATCHES_MAX 256

/* The image every run starts from (built on first use). */
const struct synth_heap *fuzz_heap_image(void);

/* Applies the patches of data, opens the patched core, calls analyse on
 * the target (when it opens), destroys it and undoes the patches. */
void fuzz_heap_run(const uint8_t *data, size_t size,
		   void (*analyse)(struct pm_target *t));

/* Runs report `name` on t in format (PM_FORMAT_TEXT/JSON), discarding its output: a report
 * must end with a text or a clean error whatever the heap holds. */
void fuzz_heap_report(struct pm_target *t, const char *name,
		      enum pm_output_format format);

#endif
