/* Errors of libpymortem: every fallible function returns a struct pm_error *,
 * NULL on success. The library never prints or exits; a front end decides. */
#ifndef PM_ERROR_H
#define PM_ERROR_H

#include <stdbool.h>
#include <stdint.h>

enum pm_error_code {
	PM_ERR_NO_MEMORY = 1,   /* host allocation failed */
	PM_ERR_OS,              /* a system call failed (errno in the message) */
	PM_ERR_INVALID,         /* bad argument from the caller */
	PM_ERR_NOT_FOUND,       /* no such pid, file, symbol, ... */
	PM_ERR_PERMISSION,      /* EPERM/EACCES on the target */
	PM_ERR_FORMAT,          /* input is not what it claims (not an ELF core, bad note) */
	PM_ERR_UNSUPPORTED,     /* valid input we do not handle (32-bit core, foreign arch) */
	PM_ERR_UNMAPPED,        /* address is in no mapping of the target */
	PM_ERR_NOT_SAVED,       /* address is mapped but its bytes are not in the core */
	PM_ERR_FILE_MISSING,    /* bytes must come from a mapped file that is missing/mismatched */
	PM_ERR_CORRUPT,         /* target data structures are inconsistent */
	PM_ERR_INTERRUPTED,     /* the caller asked us to stop */
	PM_ERR_EXITED,          /* the live process exited (a zombie, or died mid-analysis) */
};

struct pm_error {
	enum pm_error_code code;
	bool has_address;
	uint64_t address;   /* target address the error is about, if has_address */
	char *message;
};

/* printf-style constructors; on allocation failure they return a static
 * PM_ERR_NO_MEMORY error, so callers can always return their result. */
struct pm_error *pm_error_format(enum pm_error_code code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
struct pm_error *pm_error_at(enum pm_error_code code, uint64_t address,
			     const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* An OS error: message is "<what>: strerror(errnum)"; EPERM/EACCES map to
 * PM_ERR_PERMISSION and ENOENT/ESRCH to PM_ERR_NOT_FOUND. */
struct pm_error *pm_error_errno(int errnum, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prefix an error's message with more context: "<prefix>: <old message>".
 * Takes ownership of err and returns it (or a replacement). */
struct pm_error *pm_error_wrap(struct pm_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

extern struct pm_error pm_error_no_memory;

void pm_error_destroy(struct pm_error *err);

#endif
