/* A C extension whose objects keep a malloc'd buffer behind a plain field,
 * as many extensions do and no precise attribution of pymortem knows:
 * tests/e2e/test_inferred.py builds it against each interpreter under test
 * and checks the inferred "held by inferred_ext.Holder (inferred)" rows
 * against the addresses it reports. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	PyObject_HEAD
	char *buf;                  /* malloc'd, or another Holder's, or freed */
	Py_ssize_t size;
	int owns;                   /* dealloc frees buf (not a chained one:
				     * the workload keeps them to the end) */
} Holder;

static PyObject *holder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	Py_ssize_t size;
	(void)kwds;
	if (!PyArg_ParseTuple(args, "n", &size))
		return NULL;
	if (size <= 0) {
		PyErr_SetString(PyExc_ValueError, "size must be positive");
		return NULL;
	}
	Holder *self = (Holder *)type->tp_alloc(type, 0);
	if (!self)
		return NULL;
	self->buf = malloc((size_t)size);
	if (!self->buf) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	/* No pointer-like words in the data: only the field points here. */
	memset(self->buf, 0xab, (size_t)size);
	self->size = size;
	self->owns = 1;
	return (PyObject *)self;
}

static void holder_dealloc(Holder *self)
{
	if (self->owns)
		free(self->buf);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The buffer's address as hex text: an int would hold it as a word too
 * (a 30-bit digit of an address under 2**30 reads as the address), a
 * second pointer that stays in memory even once freed and reused. */
static PyObject *holder_address(Holder *self, PyObject *unused)
{
	char text[32];
	(void)unused;
	snprintf(text, sizeof(text), "%llx", (unsigned long long)(uintptr_t)self->buf);
	return PyUnicode_FromString(text);
}

/* Frees the buffer but keeps the pointer: a stale field. */
static PyObject *holder_free_buffer(Holder *self, PyObject *unused)
{
	(void)unused;
	if (self->owns)
		free(self->buf);
	self->owns = 0;
	Py_RETURN_NONE;
}

/* Points at other's buffer too (other keeps owning it): shared. */
static PyObject *holder_share(Holder *self, PyObject *other)
{
	if (Py_TYPE(other) != Py_TYPE(self)) {
		PyErr_SetString(PyExc_TypeError, "share needs a Holder");
		return NULL;
	}
	if (self->owns)
		free(self->buf);
	self->buf = ((Holder *)other)->buf;
	self->size = ((Holder *)other)->size;
	self->owns = 0;
	Py_RETURN_NONE;
}

/* A second buffer that only the first word of the buffer points at (a C
 * library's structure behind its handle): returns its address. */
static PyObject *holder_chain(Holder *self, PyObject *arg)
{
	Py_ssize_t size = PyLong_AsSsize_t(arg);
	if (size == -1 && PyErr_Occurred())
		return NULL;
	if (size <= 0 || !self->owns || self->size < (Py_ssize_t)sizeof(char *)) {
		PyErr_SetString(PyExc_ValueError, "cannot chain here");
		return NULL;
	}
	char *next = malloc((size_t)size);
	if (!next)
		return PyErr_NoMemory();
	memset(next, 0xcd, (size_t)size);
	memcpy(self->buf, &next, sizeof(next));
	char text[32];
	snprintf(text, sizeof(text), "%llx", (unsigned long long)(uintptr_t)next);
	return PyUnicode_FromString(text);
}

static PyMethodDef holder_methods[] = {
	{"chain", (PyCFunction)holder_chain, METH_O, NULL},
	{"address", (PyCFunction)holder_address, METH_NOARGS, NULL},
	{"free_buffer", (PyCFunction)holder_free_buffer, METH_NOARGS, NULL},
	{"share", (PyCFunction)holder_share, METH_O, NULL},
	{NULL, NULL, 0, NULL},
};

static PyTypeObject HolderType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "inferred_ext.Holder",
	.tp_basicsize = sizeof(Holder),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_new = holder_new,
	.tp_dealloc = (destructor)holder_dealloc,
	.tp_methods = holder_methods,
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT, "inferred_ext", NULL, -1, NULL,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_inferred_ext(void)
{
	if (PyType_Ready(&HolderType) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&module_def);
	if (!m)
		return NULL;
	Py_INCREF(&HolderType);
	if (PyModule_AddObject(m, "Holder", (PyObject *)&HolderType) < 0) {
		Py_DECREF(&HolderType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
