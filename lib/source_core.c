/* Placeholder until the core-file source lands. */
#include "source.h"

struct pm_error *pm_target_open_core(const char *core_path,
				     const struct pm_options *options,
				     struct pm_target **ret)
{
	(void)options;
	(void)ret;
	return pm_error_format(PM_ERR_UNSUPPORTED, "%s: core files are not supported yet",
			       core_path);
}
