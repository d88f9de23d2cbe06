/* Python binding of the marker functions (taskscope_marker.begin/end). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "taskscope_marker.h"

#define TRACEPARENT_LEN 55

static PyObject *begin(PyObject *self, PyObject *arg)
{
	/* The agent reads exactly 55 bytes: hand it a buffer that has them. */
	char text[TRACEPARENT_LEN + 1] = {0};
	Py_ssize_t n;
	const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
	if (!s)
		return NULL;
	memcpy(text, s, n < TRACEPARENT_LEN ? n : TRACEPARENT_LEN);
	taskscope_task_begin(text);
	Py_RETURN_NONE;
}

static PyObject *end(PyObject *self, PyObject *unused)
{
	taskscope_task_end();
	Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
	{"begin", begin, METH_O, "begin(traceparent): this thread now works for that trace."},
	{"end", end, METH_NOARGS, "end(): this thread's work for the trace is done."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT, "taskscope_marker._native", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
	return PyModule_Create(&module);
}
