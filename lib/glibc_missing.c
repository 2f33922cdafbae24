/* Stand-in for the glibc walker while lib/glibc.c is not in the tree (the
 * build uses it only then): every caller gets a clear "not available". */
#include "glibc.h"

struct pm_error *pm_glibc_walk(struct pm_target *t,
			       const struct pm_glibc_heap **ret)
{
	(void)t;
	(void)ret;
	return pm_error_format(PM_ERR_UNSUPPORTED,
			       "the glibc walker is not part of this build");
}
