/* The unit tests' one assertion: CHECK(condition, "what, with %d", args)
 * prints "ok" or "FAIL" with the description and counts failures;
 * check_exit_status() ends a test program with its verdict. */
#ifndef PM_TEST_CHECK_H
#define PM_TEST_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (cond) {                                                   \
			printf("ok    ");                                     \
		} else {                                                      \
			printf("FAIL  ");                                     \
			check_failures++;                                     \
		}                                                             \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
	} while (0)

static inline int check_exit_status(void)
{
	printf("%d failure(s)\n", check_failures);
	return check_failures ? 1 : 0;
}

#endif
