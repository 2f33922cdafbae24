/* libFuzzer target for the core-file reader: the input is a core file. It
 * is opened, every region is read at its start, middle and end (core bytes,
 * file fallback and error paths), and the target is destroyed. Anything
 * but a clean error or a working target is a bug (ASan/UBSan report it).
 * How to run: see tests/fuzz/README.md. */
#include "pymortem.h"
#include "target.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_read_regions(struct pm_target *t)
{
	uint8_t buf[256];
	for (size_t i = 0; i < pm_target_region_count(t); i++) {
		const struct pm_region *r = pm_target_region(t, i);
		uint64_t len = r->end - r->start;
		uint64_t at[3] = { r->start, r->start + len / 2,
				   len >= sizeof(buf) ? r->end - sizeof(buf) : r->start };
		for (int k = 0; k < 3; k++) {
			size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
			pm_error_destroy(pm_target_read(t, at[k], buf, n));
			const void *view;
			pm_error_destroy(pm_target_view(t, at[k], n, &view));
		}
	}
	for (size_t i = 0; i < pm_target_thread_count(t); i++)
		(void)pm_target_thread(t, i)->sp;
	for (size_t i = 0; i < pm_target_warnings_stored(t); i++)
		(void)pm_target_warning(t, i)->message[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-core", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct pm_options opts = { .no_debuginfo = true };
	struct pm_target *t = NULL;
	struct pm_error *err = pm_target_open_core(path, &opts, &t);
	if (!err) {
		fuzz_read_regions(t);
		pm_target_destroy(t);
	}
	pm_error_destroy(err);
	close(fd);
	return 0;
}
