/* Patching the synthetic heap image for the heap fuzz targets (see
 * fuzz_heap.h). */
#include "fuzz_heap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct synth_heap *image;
static int image_fd = -1;

const struct synth_heap *fuzz_heap_image(void)
{
	if (!image) {
		image = synth_heap_create();
		if (!image)
			abort();
		image_fd = synth_heap_memfd(image->core, image->len);
		if (image_fd < 0)
			abort();
	}
	return image;
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The address a patch writes to (8-aligned, inside the image). */
static uint64_t patch_address(const struct synth_heap *h, unsigned where,
			      uint32_t index)
{
	switch (where) {
	case 0:
	case 1:
		return h->fields[index % h->nfields];
	case 2:
		return h->pointers[index % h->npointers] +
		       8 * (uint64_t)((index >> 8) & 63);
	default: {
		const struct synth_heap_load *l = &h->loads[index % h->nloads];
		return l->vaddr + 8 * ((uint64_t)(index >> 3) % (l->size / 8));
	}
	}
}

struct applied {
	int64_t offset;
	size_t len;
};

static bool write_at(int64_t offset, const void *p, size_t len)
{
	return pwrite(image_fd, p, len, (off_t)offset) == (ssize_t)len;
}

void fuzz_heap_run(const uint8_t *data, size_t size,
		   void (*analyse)(struct pm_target *t))
{
	const struct synth_heap *h = fuzz_heap_image();
	struct applied applied[FUZZ_HEAP_PATCHES_MAX];
	size_t napplied = 0;
	for (size_t at = 0; at + FUZZ_HEAP_PATCH_SIZE <= size &&
	     napplied < FUZZ_HEAP_PATCHES_MAX; at += FUZZ_HEAP_PATCH_SIZE) {
		const uint8_t *p = data + at;
		unsigned where = p[0] & 3, how = (p[0] >> 2) & 7;
		uint32_t index = (uint32_t)load_le(p + 1, 3);
		uint64_t value = load_le(p + 4, 8);
		uint64_t addr = patch_address(h, where, index);
		int64_t offset = synth_heap_offset(h, addr, 8);
		if (offset < 0)
			continue;
		/* The current bytes: the image's, or an earlier patch's. */
		uint64_t word;
		if (pread(image_fd, &word, 8, (off_t)offset) != 8)
			continue;
		size_t len = 8;
		switch (how) {
		case 0: word = value; break;
		case 1: word += (uint64_t)(int64_t)(int16_t)value; break;
		case 2: word ^= UINT64_C(1) << (value % 64); break;
		case 3: word = h->pointers[value % h->npointers] +
			       8 * ((value >> 32) % 8); break;
		case 4: word = (word & ~UINT64_C(0xffffffff)) | (uint32_t)value; break;
		case 5: word = (word & ~UINT64_C(0xff)) | (uint8_t)value; break;
		case 6: word = 0; break;
		default: word = ~UINT64_C(0) >> (value % 64); break;
		}
		if (getenv("FUZZ_HEAP_VERBOSE"))
			printf("patch 0x%llx := 0x%llx\n", (unsigned long long)addr,
			       (unsigned long long)word);
		if (!write_at(offset, &word, len))
			continue;
		applied[napplied++] = (struct applied){ offset, len };
	}

	struct pm_target *t = NULL;
	struct pm_error *err = synth_heap_open_fd(image_fd, &t);
	if (!err)
		analyse(t);
	pm_target_destroy(t);
	pm_error_destroy(err);

	for (size_t i = 0; i < napplied; i++)
		if (!write_at(applied[i].offset, image->core + applied[i].offset,
			      applied[i].len))
			abort();    /* later runs would start from a wrong image */
}

void fuzz_heap_report(struct pm_target *t, const char *name,
		      enum pm_output_format format)
{
	struct pm_report_args args = { .format = format };
	char *out = NULL;
	struct pm_error *err = pm_report_run(t, name, &args, &out);
	/* FUZZ_HEAP_VERBOSE=1: print what a replayed input makes of the heap. */
	if (getenv("FUZZ_HEAP_VERBOSE"))
		printf("=== %s: %s\n%s\n", name, err ? err->message : "ok",
		       out ? out : "");
	free(out);
	pm_error_destroy(err);
}
