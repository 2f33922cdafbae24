/* _pymortem: the CPython binding of libpymortem's public API (pymortem.h) for
 * the GDB plugin. It uses only the stable ABI (Py_LIMITED_API 3.8), so one
 * build imports into any GDB whose embedded Python is 3.8 or newer.
 *
 * Python view:
 *   open_pid(pid, **opts) / open_core(path, **opts) /
 *   open_callback(read, maps_text, pid=0, executable=None, **opts) -> Target
 *   Target.report(name, format="text", by=..., ...) -> str
 *   Target.report_html(source=None, before=None, before_source=None) -> str
 *     (the HTML page; before: a snapshot file, for the Growth section)
 *   Target.close()
 *   reports() -> [(name, summary), ...]
 *   Error(Exception) with .code (str) and .address (int or None)
 *
 * Ctrl-C: the library polls pm_options.interrupted; we answer it with
 * PyErr_CheckSignals(), which sees the SIGINT that GDB forwards to Python
 * while Python code runs. The KeyboardInterrupt is parked until the library
 * returns, then re-raised, so GDB prints "Quit" and stays usable. */
#define Py_LIMITED_API 0x03080000
#include <Python.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pymortem.h"

/* Python names of enum pm_error_code, indexed by code. */
static const char *const error_code_names[] = {
	[0] = "unknown",
	[PM_ERR_NO_MEMORY] = "no-memory",
	[PM_ERR_OS] = "os",
	[PM_ERR_INVALID] = "invalid",
	[PM_ERR_NOT_FOUND] = "not-found",
	[PM_ERR_PERMISSION] = "permission",
	[PM_ERR_FORMAT] = "format",
	[PM_ERR_UNSUPPORTED] = "unsupported",
	[PM_ERR_UNMAPPED] = "unmapped",
	[PM_ERR_NOT_SAVED] = "not-saved",
	[PM_ERR_FILE_MISSING] = "file-missing",
	[PM_ERR_CORRUPT] = "corrupt",
	[PM_ERR_INTERRUPTED] = "interrupted",
	[PM_ERR_EXITED] = "exited",
};

struct module_state {
	PyObject *error_class;
	PyObject *target_type;
};

typedef struct {
	PyObject_HEAD
	struct pm_target *target;
	PyObject *error_class;
	/* Owned copies of everything the library may keep pointers to. */
	struct pm_options options;
	struct pm_callback_source source;
	PyObject *read_fn;          /* callback targets only */
	PyObject *lookup_fn;        /* lookup_symbol(module_prefix, name) */
	PyObject *keep_alive;       /* list of bytes objects behind the strings */
	/* A KeyboardInterrupt caught while the library was running. */
	PyObject *pending_type, *pending_value, *pending_tb;
	/* progress(seconds) of the running report, called about once a second
	 * from the interrupt poll once the report has taken a second. */
	PyObject *progress_fn;
	double progress_start, progress_next;
	/* Set while the library runs: callbacks must not re-enter it. */
	bool busy;
} TargetObject;

static struct module_state *module_state_of(PyObject *module)
{
	return PyModule_GetState(module);
}

static const char *error_code_name(enum pm_error_code code)
{
	size_t n = sizeof(error_code_names) / sizeof(error_code_names[0]);
	if ((size_t)code < n && error_code_names[code])
		return error_code_names[code];
	return "unknown";
}

/* Raises error_class(text) with .code and .address (a new reference or
 * NULL for None) set; consumes text and address. Returns NULL. */
static PyObject *raise_error(PyObject *error_class, enum pm_error_code code,
			     PyObject *text, PyObject *address)
{
	PyObject *code_name = PyUnicode_FromString(error_code_name(code));
	if (!address) {
		Py_INCREF(Py_None);
		address = Py_None;
	}
	PyObject *exc = NULL;
	if (text && code_name)
		exc = PyObject_CallFunctionObjArgs(error_class, text, NULL);
	if (exc && PyObject_SetAttrString(exc, "code", code_name) == 0 &&
	    PyObject_SetAttrString(exc, "address", address) == 0)
		PyErr_SetObject(error_class, exc);
	Py_XDECREF(exc);
	Py_XDECREF(text);
	Py_XDECREF(code_name);
	Py_DECREF(address);
	return NULL;
}

/* Raises error_class for err (and destroys err). The message gets the
 * address appended unless it already names it. */
static PyObject *raise_pm_error(PyObject *error_class, struct pm_error *err)
{
	char hex[32];
	PyObject *text, *address = NULL;
	/* Messages may quote target data (paths from a damaged core): decode
	 * with replacement so a bad byte never turns into a UnicodeError. */
	text = PyUnicode_DecodeUTF8(err->message, strlen(err->message),
				    "replace");
	if (err->has_address) {
		snprintf(hex, sizeof(hex), "0x%" PRIx64, err->address);
		if (text && !strstr(err->message, hex)) {
			PyObject *with_address = PyUnicode_FromFormat(
				"%U (at %s)", text, hex);
			Py_DECREF(text);
			text = with_address;
		}
		address = PyLong_FromUnsignedLongLong(err->address);
	}
	enum pm_error_code code = err->code;
	pm_error_destroy(err);
	return raise_error(error_class, code, text, address);
}

/* Converts an optional str argument to a C string kept alive by the target. */
static int keep_string(TargetObject *self, PyObject *obj, const char **ret)
{
	*ret = NULL;
	if (!obj || obj == Py_None)
		return 0;
	PyObject *bytes = PyUnicode_Check(obj) ?
		PyUnicode_EncodeFSDefault(obj) : PyBytes_FromObject(obj);
	if (!bytes)
		return -1;
	int rc = PyList_Append(self->keep_alive, bytes);
	Py_DECREF(bytes);
	if (rc < 0)
		return -1;
	*ret = PyBytes_AsString(bytes);
	return *ret ? 0 : -1;
}

static void park_interrupt(TargetObject *self)
{
	if (self->pending_type) {
		PyErr_Clear();
		return;
	}
	PyErr_Fetch(&self->pending_type, &self->pending_value,
		    &self->pending_tb);
}

static double monotonic_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Calls the progress callback when it is due; its errors other than
 * KeyboardInterrupt are ignored (progress is cosmetic). */
static void target_progress(TargetObject *self)
{
	double now = monotonic_seconds();
	if (!self->progress_fn || now < self->progress_next)
		return;
	self->progress_next = now + 1.0;
	PyObject *result = PyObject_CallFunction(self->progress_fn, "d",
						 now - self->progress_start);
	if (result) {
		Py_DECREF(result);
	} else if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
		park_interrupt(self);
	} else {
		PyErr_Clear();
	}
}

static bool target_interrupted(void *arg)
{
	TargetObject *self = arg;
	if (self->pending_type)
		return true;
	if (PyErr_CheckSignals() < 0) {
		park_interrupt(self);
		return true;
	}
	target_progress(self);
	return self->pending_type != NULL;
}

/* pm_options.lookup_symbol: asks lookup_fn(module_prefix, name) for
 * (address, size) or None. Its errors mean "not known" (the library then
 * looks itself), except KeyboardInterrupt. */
static bool target_lookup_symbol(void *arg, const char *module_prefix,
				 const char *name, uint64_t *address,
				 uint64_t *size)
{
	TargetObject *self = arg;
	if (self->pending_type || !self->lookup_fn)
		return false;
	PyObject *result = PyObject_CallFunction(self->lookup_fn, "zs",
						 module_prefix, name);
	unsigned long long a = 0, n = 0;
	bool found = false;
	if (result && result != Py_None)
		found = PyArg_ParseTuple(result, "KK;lookup_symbol returns "
					 "(address, size) or None", &a, &n);
	Py_XDECREF(result);
	if (PyErr_Occurred()) {
		if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
			park_interrupt(self);
		else
			PyErr_Clear();
		return false;
	}
	*address = a;
	*size = n;
	return found;
}

static int target_read(void *arg, uint64_t addr, void *buf, size_t len)
{
	TargetObject *self = arg;
	/* Slow sources (remote targets) show progress even where the library
	 * does not poll. */
	target_progress(self);
	if (self->pending_type)
		return -1;
	PyObject *result = PyObject_CallFunction(self->read_fn, "Kn",
						 (unsigned long long)addr,
						 (Py_ssize_t)len);
	PyObject *bytes = NULL;
	if (result)
		bytes = PyBytes_Check(result) ?
			(Py_INCREF(result), result) : PyBytes_FromObject(result);
	Py_XDECREF(result);
	if (!bytes) {
		if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
			park_interrupt(self);
		else
			PyErr_Clear();  /* unreadable memory */
		return -1;
	}
	char *data;
	Py_ssize_t size;
	int rc = -1;
	if (PyBytes_AsStringAndSize(bytes, &data, &size) == 0 &&
	    (size_t)size == len) {
		memcpy(buf, data, len);
		rc = 0;
	}
	PyErr_Clear();
	Py_DECREF(bytes);
	return rc;
}

/* Re-raises a parked KeyboardInterrupt; returns true if there was one. */
static bool restore_interrupt(TargetObject *self)
{
	if (!self->pending_type)
		return false;
	PyErr_Restore(self->pending_type, self->pending_value,
		      self->pending_tb);
	self->pending_type = self->pending_value = self->pending_tb = NULL;
	return true;
}

/* Creates an unopened Target and fills its options from keyword arguments
 * common to all open_* functions. */
static TargetObject *target_new(PyObject *module, int no_debuginfo,
				PyObject *debug_dir, PyObject *executable,
				PyObject *lookup_symbol, PyObject *sysroot,
				int precise)
{
	struct module_state *state = module_state_of(module);
	PyTypeObject *type = (PyTypeObject *)state->target_type;
	TargetObject *self = PyObject_New(TargetObject, type);
	if (!self)
		return NULL;
	/* Zero everything after the object header. */
	memset((char *)self + sizeof(PyObject), 0,
	       sizeof(*self) - sizeof(PyObject));
	self->keep_alive = PyList_New(0);
	Py_INCREF(state->error_class);
	self->error_class = state->error_class;
	if (!self->keep_alive ||
	    keep_string(self, debug_dir, &self->options.debug_dir) < 0 ||
	    keep_string(self, executable, &self->options.executable) < 0 ||
	    keep_string(self, sysroot, &self->options.sysroot) < 0) {
		Py_DECREF(self);
		return NULL;
	}
	self->options.no_debuginfo = no_debuginfo;
	self->options.precise = precise;
	self->options.interrupted = target_interrupted;
	self->options.interrupted_arg = self;
	if (lookup_symbol && lookup_symbol != Py_None) {
		if (!PyCallable_Check(lookup_symbol)) {
			PyErr_SetString(PyExc_TypeError,
					"lookup_symbol must be callable");
			Py_DECREF(self);
			return NULL;
		}
		Py_INCREF(lookup_symbol);
		self->lookup_fn = lookup_symbol;
		self->options.lookup_symbol = target_lookup_symbol;
		self->options.lookup_symbol_arg = self;
	}
	return self;
}

/* Finishes an open_* call: the target on success, else the exception. */
static PyObject *target_opened(TargetObject *self, struct pm_error *err)
{
	if (restore_interrupt(self)) {
		pm_error_destroy(err);
		Py_DECREF(self);
		return NULL;
	}
	if (err) {
		raise_pm_error(self->error_class, err);
		Py_DECREF(self);
		return NULL;
	}
	return (PyObject *)self;
}

#define OPEN_KWLIST "no_debuginfo", "debug_dir", "executable", \
	"lookup_symbol", "sysroot", "precise"

static PyObject *binding_open_pid(PyObject *module, PyObject *args,
				  PyObject *kwargs)
{
	static char *kwlist[] = {"pid", OPEN_KWLIST, NULL};
	int pid, no_debuginfo = 0, precise = 0;
	PyObject *debug_dir = NULL, *executable = NULL, *lookup = NULL;
	PyObject *sysroot = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|$pOOOOp", kwlist, &pid,
					 &no_debuginfo, &debug_dir,
					 &executable, &lookup, &sysroot,
					 &precise))
		return NULL;
	TargetObject *self = target_new(module, no_debuginfo, debug_dir,
					executable, lookup, sysroot, precise);
	if (!self)
		return NULL;
	struct pm_error *err = pm_target_open_pid(pid, &self->options,
						  &self->target);
	return target_opened(self, err);
}

static PyObject *binding_open_core(PyObject *module, PyObject *args,
				   PyObject *kwargs)
{
	static char *kwlist[] = {"path", OPEN_KWLIST, NULL};
	PyObject *path = NULL, *debug_dir = NULL, *executable = NULL;
	PyObject *lookup = NULL, *sysroot = NULL;
	int no_debuginfo = 0, precise = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$pOOOOp", kwlist, &path,
					 &no_debuginfo, &debug_dir,
					 &executable, &lookup, &sysroot,
					 &precise))
		return NULL;
	TargetObject *self = target_new(module, no_debuginfo, debug_dir,
					executable, lookup, sysroot, precise);
	if (!self)
		return NULL;
	const char *core_path;
	if (keep_string(self, path, &core_path) < 0 || !core_path) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_TypeError, "path must be a str");
		Py_DECREF(self);
		return NULL;
	}
	struct pm_error *err = pm_target_open_core(core_path, &self->options,
						   &self->target);
	return target_opened(self, err);
}

/* auxv: an iterable of (type, value) pairs -> malloc'd flat array. */
static int parse_auxv(PyObject *obj, uint64_t **ret, size_t *npairs)
{
	*ret = NULL;
	*npairs = 0;
	if (!obj || obj == Py_None)
		return 0;
	PyObject *seq = PySequence_Fast(obj, "auxv must be a sequence of pairs");
	if (!seq)
		return -1;
	Py_ssize_t n = PySequence_Size(seq);
	uint64_t *pairs = n > 0 ? PyMem_Calloc((size_t)n, 2 * sizeof(*pairs))
				: NULL;
	if (n > 0 && !pairs) {
		Py_DECREF(seq);
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		unsigned long long type, value;
		PyObject *item = PySequence_GetItem(seq, i);
		int ok = item && PyArg_ParseTuple(item, "KK;auxv items are "
						  "(type, value)", &type, &value);
		Py_XDECREF(item);
		if (!ok) {
			PyMem_Free(pairs);
			Py_DECREF(seq);
			return -1;
		}
		pairs[2 * i] = type;
		pairs[2 * i + 1] = value;
	}
	Py_DECREF(seq);
	*ret = pairs;
	*npairs = (size_t)n;
	return 0;
}

/* threads: an iterable of (tid, name, pc, sp, fs_base), registers None when
 * unknown -> PyMem array; names stay alive in self->keep_alive. */
static int parse_threads(TargetObject *self, PyObject *obj,
			 struct pm_callback_thread **ret, size_t *nthreads)
{
	*ret = NULL;
	*nthreads = 0;
	if (!obj || obj == Py_None)
		return 0;
	PyObject *seq = PySequence_Fast(obj, "threads must be a sequence");
	if (!seq)
		return -1;
	Py_ssize_t n = PySequence_Size(seq);
	struct pm_callback_thread *threads =
		n > 0 ? PyMem_Calloc((size_t)n, sizeof(*threads)) : NULL;
	if (n > 0 && !threads) {
		Py_DECREF(seq);
		PyErr_NoMemory();
		return -1;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		struct pm_callback_thread *t = &threads[i];
		PyObject *item = PySequence_GetItem(seq, i);
		PyObject *name, *pc, *sp, *fs_base;
		int ok = item && PyArg_ParseTuple(item, "iOOOO;threads are (tid, "
						  "name, pc, sp, fs_base)",
						  &t->tid, &name, &pc, &sp,
						  &fs_base);
		if (ok)
			ok = keep_string(self, name, &t->name) == 0;
		if (ok && pc != Py_None && sp != Py_None) {
			t->pc = PyLong_AsUnsignedLongLong(pc);
			t->sp = PyLong_AsUnsignedLongLong(sp);
			t->has_regs = true;
		}
		if (ok && fs_base != Py_None)
			t->fs_base = PyLong_AsUnsignedLongLong(fs_base);
		Py_XDECREF(item);
		if (!ok || PyErr_Occurred()) {
			PyMem_Free(threads);
			Py_DECREF(seq);
			return -1;
		}
	}
	Py_DECREF(seq);
	*ret = threads;
	*nthreads = (size_t)n;
	return 0;
}

static PyObject *binding_open_callback(PyObject *module, PyObject *args,
				       PyObject *kwargs)
{
	static char *kwlist[] = {"read", "maps_text", "pid", OPEN_KWLIST,
				 "auxv", "threads", NULL};
	PyObject *read_fn, *maps_text, *debug_dir = NULL, *executable = NULL;
	PyObject *auxv = NULL, *threads = NULL, *lookup = NULL, *sysroot = NULL;
	int pid = 0, no_debuginfo = 0, precise = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OU|i$pOOOOpOO", kwlist,
					 &read_fn, &maps_text, &pid,
					 &no_debuginfo, &debug_dir,
					 &executable, &lookup, &sysroot,
					 &precise, &auxv, &threads))
		return NULL;
	if (!PyCallable_Check(read_fn)) {
		PyErr_SetString(PyExc_TypeError, "read must be callable");
		return NULL;
	}
	TargetObject *self = target_new(module, no_debuginfo, debug_dir,
					executable, lookup, sysroot, precise);
	if (!self)
		return NULL;
	Py_INCREF(read_fn);
	self->read_fn = read_fn;
	uint64_t *auxv_pairs = NULL;
	struct pm_callback_thread *thread_array = NULL;
	if (keep_string(self, maps_text, &self->source.maps_text) < 0 ||
	    parse_auxv(auxv, &auxv_pairs, &self->source.auxv_pairs) < 0 ||
	    parse_threads(self, threads, &thread_array,
			  &self->source.nthreads) < 0) {
		PyMem_Free(auxv_pairs);
		Py_DECREF(self);
		return NULL;
	}
	self->source.read = target_read;
	self->source.arg = self;
	self->source.pid = pid;
	self->source.executable = self->options.executable;
	self->source.auxv = auxv_pairs;
	self->source.threads = thread_array;
	/* The library copies threads and auxv while opening. */
	struct pm_error *err = pm_target_open_callback(&self->source,
						       &self->options,
						       &self->target);
	self->source.auxv = NULL;
	self->source.threads = NULL;
	PyMem_Free(auxv_pairs);
	PyMem_Free(thread_array);
	return target_opened(self, err);
}

static int parse_format(const char *format, enum pm_output_format *ret)
{
	if (!format || strcmp(format, "text") == 0)
		*ret = PM_FORMAT_TEXT;
	else if (strcmp(format, "json") == 0)
		*ret = PM_FORMAT_JSON;
	else
		return -1;
	return 0;
}

static PyObject *target_report(PyObject *obj, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"name", "format", "by", "top", "limit",
				 "min_size", "state", "type", "query",
				 "address", "length", "progress", "width",
				 "all_rows_option", "threshold", NULL};
	TargetObject *self = (TargetObject *)obj;
	const char *name, *format = NULL;
	struct pm_report_args ra = {0};
	long top = 0, limit = 0, width = 0;
	unsigned long long min_size = 0, length = 0;
	PyObject *address = Py_None, *progress = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$zzllKzzzOKOlzd", kwlist,
					 &name, &format, &ra.by, &top, &limit,
					 &min_size, &ra.state, &ra.type,
					 &ra.query, &address, &length,
					 &progress, &width,
					 &ra.all_rows_option, &ra.threshold))
		return NULL;
	if (!self->target) {
		return raise_error(self->error_class, PM_ERR_INVALID,
				   PyUnicode_FromString("target is closed"),
				   NULL);
	}
	if (parse_format(format, &ra.format) < 0) {
		PyErr_Format(PyExc_ValueError,
			     "format must be \"text\" or \"json\", not \"%s\"",
			     format);
		return NULL;
	}
	if (top < 0 || limit < 0 || width < 0) {
		PyErr_SetString(PyExc_ValueError,
				"top, limit and width must not be negative");
		return NULL;
	}
	ra.top = top;
	ra.width = width;
	ra.limit = limit;
	ra.min_size = min_size;
	ra.length = length;
	if (address != Py_None) {
		ra.address = PyLong_AsUnsignedLongLong(address);
		if (PyErr_Occurred())
			return NULL;
		ra.has_address = true;
	}
	if (self->busy) {
		return raise_error(self->error_class, PM_ERR_INVALID,
				   PyUnicode_FromString("a report is already "
							"running"), NULL);
	}
	if (progress != Py_None) {
		Py_INCREF(progress);
		self->progress_fn = progress;
		self->progress_start = monotonic_seconds();
		self->progress_next = self->progress_start + 1.0;
	}
	char *text = NULL;
	self->busy = true;
	struct pm_error *err = pm_report_run(self->target, name, &ra, &text);
	self->busy = false;
	Py_CLEAR(self->progress_fn);
	if (restore_interrupt(self)) {
		pm_error_destroy(err);
		free(text);
		return NULL;
	}
	if (err) {
		free(text);
		return raise_pm_error(self->error_class, err);
	}
	PyObject *result = PyUnicode_DecodeUTF8(text, strlen(text), "replace");
	free(text);
	return result;
}

/* Checks that the target is open and idle, raising otherwise. */
static bool target_usable(TargetObject *self)
{
	if (!self->target) {
		raise_error(self->error_class, PM_ERR_INVALID,
			    PyUnicode_FromString("target is closed"), NULL);
		return false;
	}
	if (self->busy) {
		raise_error(self->error_class, PM_ERR_INVALID,
			    PyUnicode_FromString("a report is already running"), NULL);
		return false;
	}
	return true;
}

static PyObject *target_snapshot(PyObject *obj, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"path", "source", "retainers", NULL};
	TargetObject *self = (TargetObject *)obj;
	const char *path, *source = NULL;
	int retainers = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$zp", kwlist, &path, &source,
					 &retainers))
		return NULL;
	if (!target_usable(self))
		return NULL;
	struct pm_snapshot *snap = NULL;
	self->busy = true;
	struct pm_error *err = pm_snapshot_take(self->target, source, &snap);
	if (!err && retainers)
		err = pm_snapshot_add_retainers(snap, self->target);
	if (!err)
		err = pm_snapshot_save(snap, path);
	self->busy = false;
	pm_snapshot_destroy(snap);
	if (restore_interrupt(self)) {
		pm_error_destroy(err);
		return NULL;
	}
	if (err)
		return raise_pm_error(self->error_class, err);
	Py_RETURN_NONE;
}

static PyObject *target_diff(PyObject *obj, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"before", "source", "before_source", "format", "by", "top",
				 "limit", NULL};
	TargetObject *self = (TargetObject *)obj;
	const char *before_path, *source = NULL, *before_source = NULL, *format = NULL;
	struct pm_report_args ra = {0};
	long top = 0, limit = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$zzzzll", kwlist, &before_path,
					 &source, &before_source, &format, &ra.by, &top,
					 &limit))
		return NULL;
	if (parse_format(format, &ra.format) < 0) {
		PyErr_Format(PyExc_ValueError, "format must be \"text\" or \"json\", not \"%s\"",
			     format);
		return NULL;
	}
	if (top < 0 || limit < 0) {
		PyErr_SetString(PyExc_ValueError, "top and limit must not be negative");
		return NULL;
	}
	ra.top = top;
	ra.limit = limit;
	if (!target_usable(self))
		return NULL;
	struct pm_snapshot *before = NULL, *after = NULL;
	char *text = NULL;
	self->busy = true;
	struct pm_error *err = pm_snapshot_load(before_path, &before);
	if (!err && before_source)
		err = pm_snapshot_set_source(before, before_source);
	if (!err)
		err = pm_snapshot_take(self->target, source, &after);
	if (!err && ra.by && !strcmp(ra.by, "retainer"))
		err = pm_snapshot_add_retainers(after, self->target);
	if (!err)
		err = pm_diff_run(before, after, NULL, self->target, &ra, &text);
	self->busy = false;
	pm_snapshot_destroy(before);
	pm_snapshot_destroy(after);
	if (restore_interrupt(self)) {
		pm_error_destroy(err);
		free(text);
		return NULL;
	}
	if (err)
		return raise_pm_error(self->error_class, err);
	PyObject *result = PyUnicode_DecodeUTF8(text, strlen(text), "replace");
	free(text);
	return result;
}

static PyObject *target_report_html(PyObject *obj, PyObject *args, PyObject *kwargs)
{
	static char *kwlist[] = {"source", "progress", "before", "before_source", NULL};
	TargetObject *self = (TargetObject *)obj;
	const char *source = NULL, *before_path = NULL, *before_source = NULL;
	PyObject *progress = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$zOzz", kwlist, &source, &progress,
					 &before_path, &before_source))
		return NULL;
	if (!target_usable(self))
		return NULL;
	if (progress != Py_None) {
		Py_INCREF(progress);
		self->progress_fn = progress;
		self->progress_start = monotonic_seconds();
		self->progress_next = self->progress_start + 1.0;
	}
	char *page = NULL;
	struct pm_snapshot *before = NULL;
	self->busy = true;
	struct pm_error *err = NULL;
	if (before_path) {
		err = pm_snapshot_load(before_path, &before);
		if (!err && before_source)
			err = pm_snapshot_set_source(before, before_source);
		if (!err)
			err = pm_report_html_diff(self->target, source, before, NULL, &page);
	} else {
		err = pm_report_html(self->target, source, &page);
	}
	self->busy = false;
	pm_snapshot_destroy(before);
	Py_CLEAR(self->progress_fn);
	if (restore_interrupt(self)) {
		pm_error_destroy(err);
		free(page);
		return NULL;
	}
	if (err)
		return raise_pm_error(self->error_class, err);
	PyObject *result = PyUnicode_DecodeUTF8(page, strlen(page), "replace");
	free(page);
	return result;
}

static PyObject *target_close(PyObject *obj, PyObject *unused)
{
	(void)unused;
	TargetObject *self = (TargetObject *)obj;
	if (self->busy) {
		return raise_error(self->error_class, PM_ERR_INVALID,
				   PyUnicode_FromString("a report is running"),
				   NULL);
	}
	pm_target_destroy(self->target);
	self->target = NULL;
	Py_RETURN_NONE;
}

static PyObject *target_closed(PyObject *obj, void *unused)
{
	(void)unused;
	return PyBool_FromLong(((TargetObject *)obj)->target == NULL);
}

static void target_dealloc(PyObject *obj)
{
	TargetObject *self = (TargetObject *)obj;
	PyTypeObject *type = Py_TYPE(obj);
	pm_target_destroy(self->target);
	Py_XDECREF(self->error_class);
	Py_XDECREF(self->read_fn);
	Py_XDECREF(self->lookup_fn);
	Py_XDECREF(self->keep_alive);
	Py_XDECREF(self->pending_type);
	Py_XDECREF(self->pending_value);
	Py_XDECREF(self->pending_tb);
	Py_XDECREF(self->progress_fn);
	PyObject_Free(obj);
	Py_DECREF(type);
}

static PyMethodDef target_methods[] = {
	{"report", (PyCFunction)(void (*)(void))target_report,
	 METH_VARARGS | METH_KEYWORDS,
	 "report(name, *, format='text', by=None, top=0, limit=0, min_size=0,\n"
	 "       state=None, type=None, query=None, address=None, length=0,\n"
	 "       progress=None, width=0, all_rows_option=None)\n"
	 "Runs library report `name` and returns its text (or JSON text).\n"
	 "progress(seconds) is called about once a second after the first."},
	{"snapshot", (PyCFunction)(void (*)(void))target_snapshot,
	 METH_VARARGS | METH_KEYWORDS,
	 "snapshot(path, *, source=None, retainers=False)\n"
	 "Writes a snapshot of the target to path (pymortem snapshot's format);\n"
	 "source names the target in a later diff's text."},
	{"diff", (PyCFunction)(void (*)(void))target_diff,
	 METH_VARARGS | METH_KEYWORDS,
	 "diff(before, *, source=None, before_source=None, format='text', by=None,\n"
	 "     top=0, limit=0)\n"
	 "How the target differs from the snapshot file `before` (pymortem diff);\n"
	 "before_source names that snapshot in the text."},
	{"report_html", (PyCFunction)(void (*)(void))target_report_html,
	 METH_VARARGS | METH_KEYWORDS,
	 "report_html(*, source=None, progress=None) -> str\n"
	 "The HTML report of the target (pymortem report): one self-contained\n"
	 "page; source names the target on it. progress as report()'s."},
	{"close", target_close, METH_NOARGS,
	 "Releases the target (files, caches). Further reports fail."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef target_getset[] = {
	{"closed", target_closed, NULL, "True once close() was called.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

/* CPython's slot tables hold functions as void *, which ISO C does not
 * sanction but every extension relies on; allowed here and nowhere else. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
static PyType_Slot target_slots[] = {
	{Py_tp_dealloc, target_dealloc},
	{Py_tp_methods, target_methods},
	{Py_tp_getset, target_getset},
	{Py_tp_doc, "A process image opened by libpymortem (open_pid, "
		    "open_core or open_callback)."},
	{0, NULL},
};
#pragma GCC diagnostic pop

static PyType_Spec target_spec = {
	.name = "_pymortem.Target",
	.basicsize = sizeof(TargetObject),
	.flags = Py_TPFLAGS_DEFAULT,
	.slots = target_slots,
};

static PyObject *binding_reports(PyObject *module, PyObject *unused)
{
	(void)module;
	(void)unused;
	PyObject *list = PyList_New(0);
	if (!list)
		return NULL;
	for (const struct pm_report_desc *d = pm_report_list(); d && d->name;
	     d++) {
		PyObject *item = Py_BuildValue("(ss)", d->name,
					       d->summary ? d->summary : "");
		if (!item || PyList_Append(list, item) < 0) {
			Py_XDECREF(item);
			Py_DECREF(list);
			return NULL;
		}
		Py_DECREF(item);
	}
	return list;
}

static PyMethodDef module_methods[] = {
	{"open_pid", (PyCFunction)(void (*)(void))binding_open_pid,
	 METH_VARARGS | METH_KEYWORDS,
	 "open_pid(pid, *, no_debuginfo=False, debug_dir=None, executable=None,\n"
	 "         lookup_symbol=None, sysroot=None)\n"
	 "Opens a stopped live process through /proc. lookup_symbol(prefix,\n"
	 "name) -> (address, size) or None is asked before the library's own\n"
	 "symbol lookup (all open functions take it)."},
	{"open_core", (PyCFunction)(void (*)(void))binding_open_core,
	 METH_VARARGS | METH_KEYWORDS,
	 "open_core(path, *, no_debuginfo=False, debug_dir=None, executable=None,\n"
	 "          lookup_symbol=None, sysroot=None)\n"
	 "Opens an ELF core file; sysroot: where the files it names are (the\n"
	 "root of the container or chroot it came from)."},
	{"open_callback", (PyCFunction)(void (*)(void))binding_open_callback,
	 METH_VARARGS | METH_KEYWORDS,
	 "open_callback(read, maps_text, pid=0, *, no_debuginfo=False,\n"
	 "              debug_dir=None, executable=None, lookup_symbol=None,\n"
	 "              sysroot=None, auxv=None, threads=None)\n"
	 "Opens a target whose memory comes from read(addr, length) -> bytes\n"
	 "(raise to say unreadable) and whose mappings are maps_text in\n"
	 "/proc/PID/maps format. auxv: [(type, value)]; threads:\n"
	 "[(tid, name, pc, sp, fs_base)], registers None when unknown."},
	{"reports", binding_reports, METH_NOARGS,
	 "reports() -> [(name, summary)]: the reports this build provides."},
	{NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module)
{
	struct module_state *state = module_state_of(module);
	state->error_class = PyErr_NewExceptionWithDoc(
		"_pymortem.Error",
		"A libpymortem error; .code names its kind (e.g. 'not-found'),\n"
		".address is the target address it is about, or None.",
		NULL, NULL);
	if (!state->error_class)
		return -1;
	state->target_type = PyType_FromSpec(&target_spec);
	if (!state->target_type)
		return -1;
	Py_INCREF(state->error_class);
	if (PyModule_AddObject(module, "Error", state->error_class) < 0) {
		Py_DECREF(state->error_class);
		return -1;
	}
	Py_INCREF(state->target_type);
	if (PyModule_AddObject(module, "Target", state->target_type) < 0) {
		Py_DECREF(state->target_type);
		return -1;
	}
	return PyModule_AddStringConstant(module, "version", PM_VERSION);
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
	struct module_state *state = module_state_of(module);
	Py_VISIT(state->error_class);
	Py_VISIT(state->target_type);
	return 0;
}

static int module_clear(PyObject *module)
{
	struct module_state *state = module_state_of(module);
	Py_CLEAR(state->error_class);
	Py_CLEAR(state->target_type);
	return 0;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
static PyModuleDef_Slot module_slots[] = {
	{Py_mod_exec, module_exec},
	{0, NULL},
};
#pragma GCC diagnostic pop

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_pymortem",
	.m_doc = "Binding of libpymortem (post-mortem CPython heap analysis).",
	.m_size = sizeof(struct module_state),
	.m_methods = module_methods,
	.m_slots = module_slots,
	.m_traverse = module_traverse,
	.m_clear = module_clear,
};

PyMODINIT_FUNC PyInit__pymortem(void)
{
	return PyModuleDef_Init(&module_def);
}
