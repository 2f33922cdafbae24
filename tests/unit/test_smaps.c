/* Unit test of pm_smaps_parse (lib/smaps.c) on smaps text as the kernel
 * writes it: each mapping's Rss, Swap and "gu" flag, a path far longer
 * than any fixed line buffer whose middle looks like a mapping's range (it
 * must not start a mapping), and flags that merely contain "gu". */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "smaps.h"

struct seen {
	struct pm_smaps_mapping m[8];
	size_t n;
};

static bool collect(void *ctx, const struct pm_smaps_mapping *m)
{
	struct seen *s = ctx;
	if (s->n < 8)
		s->m[s->n++] = *m;
	return true;
}

static bool stop_after_one(void *ctx, const struct pm_smaps_mapping *m)
{
	collect(ctx, m);
	return false;
}

int main(void)
{
	char path[2200];
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = 0;
	/* 600 characters in: what a 512-byte line buffer's second piece of the
	 * line would start with. */
	memcpy(path + 600, "/7f0000001000-7f0000002000 rw-p", 31);
	char *text = NULL;
	size_t len = 0;
	FILE *w = open_memstream(&text, &len);
	fprintf(w,
		"7f0000000000-7f0000010000 rw-p 00000000 00:00 0 \n"
		"Size:                 64 kB\n"
		"Rss:                  12 kB\n"
		"SwapPss:               9 kB\n"
		"Swap:                  4 kB\n"
		"VmFlags: rd wr mr mw me ac gu \n"
		"7f0000010000-7f0000020000 r--p 00000000 08:01 1234 /tmp/%s\n"
		"Rss:                   8 kB\n"
		"Swap:                  0 kB\n"
		"VmFlags: rd mr mw me sd guX \n"
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n"
		"Rss:                   0 kB\n"
		"VmFlags: gu\n", path);
	fclose(w);

	FILE *f = fmemopen(text, len, "r");
	struct seen s = {0};
	CHECK(pm_smaps_parse(f, collect, &s), "smaps text parsed");
	fclose(f);
	CHECK(s.n == 3, "3 mappings, the long path's range not one (%zu)", s.n);
	CHECK(s.m[0].start == 0x7f0000000000 && s.m[0].end == 0x7f0000010000 &&
	      s.m[0].rss == 12 * 1024 && s.m[0].swap == 4 * 1024 && s.m[0].guard_regions,
	      "first mapping: its range, Rss, Swap (not SwapPss) and gu");
	CHECK(s.n > 1 && s.m[1].start == 0x7f0000010000 && s.m[1].rss == 8 * 1024 &&
	      !s.m[1].guard_regions, "second: its Rss; \"guX\" is no gu flag");
	CHECK(s.n > 2 && s.m[2].start == 0xffffffffff600000 && s.m[2].guard_regions,
	      "last: gu as the line's last flag, without a space after it");

	f = fmemopen(text, len, "r");
	struct seen one = {0};
	pm_smaps_parse(f, stop_after_one, &one);
	fclose(f);
	CHECK(one.n == 1, "the callback stops the parse");
	free(text);
	return check_exit_status();
}
