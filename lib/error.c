/* Construction and destruction of struct pm_error. */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pm_error pm_error_no_memory = {
	.code = PM_ERR_NO_MEMORY,
	.message = "out of memory",
};

static struct pm_error *error_vformat(enum pm_error_code code, bool has_address,
				      uint64_t address, const char *fmt,
				      va_list ap)
{
	struct pm_error *err = malloc(sizeof(*err));
	if (!err)
		return &pm_error_no_memory;
	if (vasprintf(&err->message, fmt, ap) < 0) {
		free(err);
		return &pm_error_no_memory;
	}
	err->code = code;
	err->has_address = has_address;
	err->address = address;
	return err;
}

struct pm_error *pm_error_format(enum pm_error_code code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct pm_error *err = error_vformat(code, false, 0, fmt, ap);
	va_end(ap);
	return err;
}

struct pm_error *pm_error_at(enum pm_error_code code, uint64_t address,
			     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct pm_error *err = error_vformat(code, true, address, fmt, ap);
	va_end(ap);
	return err;
}

struct pm_error *pm_error_errno(int errnum, const char *fmt, ...)
{
	enum pm_error_code code = PM_ERR_OS;
	if (errnum == EPERM || errnum == EACCES)
		code = PM_ERR_PERMISSION;
	else if (errnum == ENOENT || errnum == ESRCH)
		code = PM_ERR_NOT_FOUND;
	else if (errnum == ENOMEM)
		code = PM_ERR_NO_MEMORY;

	char *what;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&what, fmt, ap);
	va_end(ap);
	if (n < 0)
		return &pm_error_no_memory;
	struct pm_error *err = pm_error_format(code, "%s: %s", what,
					       strerror(errnum));
	free(what);
	return err;
}

struct pm_error *pm_error_wrap(struct pm_error *err, const char *fmt, ...)
{
	if (!err || err == &pm_error_no_memory)
		return err;
	char *prefix;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&prefix, fmt, ap);
	va_end(ap);
	if (n < 0)
		return err;
	char *joined;
	if (asprintf(&joined, "%s: %s", prefix, err->message) >= 0) {
		free(err->message);
		err->message = joined;
	}
	free(prefix);
	return err;
}

void pm_error_destroy(struct pm_error *err)
{
	if (!err || err == &pm_error_no_memory)
		return;
	free(err->message);
	free(err);
}
