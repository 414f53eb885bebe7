/*
 * _engine.c — isvd._engine: the engine (update/isvd_model.h) in process.
 *
 * One type, Model, owns one struct isvd_model.  It is the thin layer under
 * isvd.StreamingPCA (pca.py), which does the scikit-learn side (validation,
 * batches, fitted attributes); this file only moves rows in and factors
 * out and turns engine errors into exceptions.
 *
 * DESIGN
 * - Rows come in through the buffer protocol as a C-contiguous 2-D float64
 *   buffer (numpy arrays; pca.py converts).  Results go out as bytearrays
 *   that pca.py wraps with numpy.frombuffer, so the extension needs no numpy
 *   headers and the arrays it hands back are writable and copied once.
 * - The GIL is released around every engine call, folds above all, so other
 *   Python threads run while a block is folded.  The engine is not
 *   thread-safe (isvd_model.h: calls on one model must be serialised, const
 *   ones included), so each Model carries a lock taken, without the GIL, for
 *   the duration of each call: two threads sharing a Model take turns.
 *   Waiting for that lock with the GIL held could deadlock against a thread
 *   that holds the lock and wants the GIL back, hence the order
 *   (release GIL, take lock, call, drop lock, take GIL).
 * - Errors: ISVD_ERR_NOMEM is MemoryError; every other code raises
 *   isvd.EngineError (a ValueError) whose .code is the numeric isvd_err and
 *   .name its enum name without the ISVD_ERR_ prefix ("NOT_READY", …).
 * - update/ stays pure numerics: nothing here is included from there but
 *   its public header.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isvd_model.h"

#ifndef ISVD_VERSION
#error "ISVD_VERSION must be defined by the build (meson.project_version())"
#endif

static PyObject *EngineError; /* isvd.EngineError, a ValueError */

static const char *const err_names[ISVD_ERR_COUNT_] = {
	[ISVD_OK] = "OK",
	[ISVD_ERR_INVALID] = "INVALID",
	[ISVD_ERR_DIM] = "DIM",
	[ISVD_ERR_NONFINITE] = "NONFINITE",
	[ISVD_ERR_NOMEM] = "NOMEM",
	[ISVD_ERR_LAPACK] = "LAPACK",
	[ISVD_ERR_NOT_READY] = "NOT_READY",
	[ISVD_ERR_FORMAT] = "FORMAT",
	[ISVD_ERR_CORRUPT] = "CORRUPT",
	[ISVD_ERR_TRUNCATED] = "TRUNCATED",
	[ISVD_ERR_TOO_LARGE] = "TOO_LARGE",
	[ISVD_ERR_GAPS] = "GAPS",
};

/* Sets the Python exception for engine error err (never ISVD_OK); returns NULL. */
static PyObject *raise_engine(int err, const char *what)
{
	if (err == ISVD_ERR_NOMEM)
		return PyErr_NoMemory();
	const char *name = (err > 0 && err < ISVD_ERR_COUNT_) ? err_names[err] : "UNKNOWN";
	PyObject *exc = PyObject_CallFunction(EngineError, "N",
	                                      PyUnicode_FromFormat("%s: %s", what, isvd_strerror(err)));
	if (!exc)
		return NULL;
	PyObject *code = PyLong_FromLong(err);
	PyObject *nm = PyUnicode_FromString(name);
	if (code && nm && PyObject_SetAttrString(exc, "code", code) == 0
	    && PyObject_SetAttrString(exc, "name", nm) == 0)
		PyErr_SetObject(EngineError, exc);
	Py_XDECREF(code);
	Py_XDECREF(nm);
	Py_DECREF(exc);
	return NULL;
}

/* ------------------------------------------------------------------ Model */

typedef struct {
	PyObject_HEAD
	struct isvd_model *m;   /* NULL only between tp_alloc and a successful init */
	PyThread_type_lock lock;
} ModelObject;

static PyTypeObject ModelType;

/* Runs stmt with the GIL released and the model's lock held. */
#define LOCKED(self, stmt)                                          \
	do {                                                        \
		Py_BEGIN_ALLOW_THREADS                              \
		PyThread_acquire_lock((self)->lock, WAIT_LOCK);     \
		stmt;                                               \
		PyThread_release_lock((self)->lock);                \
		Py_END_ALLOW_THREADS                                \
	} while (0)

static int check_ready(ModelObject *self)
{
	if (self->m)
		return 0;
	PyErr_SetString(PyExc_RuntimeError, "isvd._engine.Model is not initialised");
	return -1;
}

static ModelObject *model_wrap(struct isvd_model *m)
{
	ModelObject *self = (ModelObject *)ModelType.tp_alloc(&ModelType, 0);
	if (!self) {
		isvd_model_destroy(m);
		return NULL;
	}
	self->lock = PyThread_allocate_lock();
	if (!self->lock) {
		isvd_model_destroy(m);
		Py_DECREF(self);
		return (ModelObject *)PyErr_NoMemory();
	}
	self->m = m;
	return self;
}

static void model_dealloc(ModelObject *self)
{
	isvd_model_destroy(self->m);
	if (self->lock)
		PyThread_free_lock(self->lock);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int parse_mode(const char *s, int *mode)
{
	for (int i = ISVD_MODE_AUTO; i <= ISVD_MODE_TRUNCATED; i++)
		if (strcmp(s, isvd_mode_name(i)) == 0) {
			*mode = i;
			return 0;
		}
	PyErr_Format(PyExc_ValueError, "mode must be 'auto', 'exact' or 'truncated', not '%s'", s);
	return -1;
}

static const char *missing_name(int missing)
{
	return missing == ISVD_MISSING_IMPUTE ? "impute" : "reject";
}

static int parse_missing(const char *s, int *missing)
{
	if (strcmp(s, "reject") == 0)
		*missing = ISVD_MISSING_REJECT;
	else if (strcmp(s, "impute") == 0)
		*missing = ISVD_MISSING_IMPUTE;
	else {
		PyErr_Format(PyExc_ValueError, "missing must be 'reject' or 'impute', not '%s'", s);
		return -1;
	}
	return 0;
}

/* Model(dim, rank, *, extra=10, center=True, forget=1.0, reorth_every=100000,
 *       rcond=1e-12, mode="auto", missing="reject", max_block=0, threads=0) */
static PyObject *model_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "dim", "rank", "extra", "center", "forget", "reorth_every",
		"rcond", "mode", "missing", "max_block", "threads", NULL };
	struct isvd_options o;
	isvd_options_default(&o);
	Py_ssize_t dim, rank, extra = (Py_ssize_t)o.extra, max_block = 0, threads = 0;
	unsigned long long reorth = o.reorth_every;
	int center = 1;
	const char *mode = "auto", *missing = "reject";
	if (!PyArg_ParseTupleAndKeywords(args, kw, "nn|$npdKdssnn", kwlist, &dim, &rank, &extra,
	                                 &center, &o.forget, &reorth, &o.rcond, &mode, &missing,
	                                 &max_block, &threads))
		return NULL;
	if (dim < 1 || rank < 1 || extra < 0 || max_block < 0 || threads < 0) {
		PyErr_SetString(PyExc_ValueError,
		                "dim and rank must be >= 1; extra, max_block and threads >= 0");
		return NULL;
	}
	o.dim = (size_t)dim;
	o.rank = (size_t)rank;
	o.extra = (size_t)extra;
	o.max_block = (size_t)max_block;
	o.threads = (size_t)threads;
	o.center = center;
	o.reorth_every = reorth;
	if (parse_mode(mode, &o.mode) < 0 || parse_missing(missing, &o.missing) < 0)
		return NULL;
	struct isvd_model *m = NULL;
	int err;
	Py_BEGIN_ALLOW_THREADS
	err = isvd_model_create(&o, &m);
	Py_END_ALLOW_THREADS
	if (err)
		return raise_engine(err, "create");
	(void)type;
	return (PyObject *)model_wrap(m);
}

/* Gets rows from obj: a C-contiguous 2-D float64 buffer of dim columns.
 * On success the caller releases *view. */
static int get_rows(ModelObject *self, PyObject *obj, Py_buffer *view, size_t *nrows)
{
	if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
		return -1;
	const char *f = view->format ? view->format : "B";
	if (f[0] == '<' || f[0] == '=' || f[0] == '@')
		f++;
	if (view->ndim != 2 || view->itemsize != 8 || strcmp(f, "d") != 0) {
		PyErr_SetString(PyExc_TypeError, "rows must be a C-contiguous 2-D float64 array");
		PyBuffer_Release(view);
		return -1;
	}
	size_t dim = isvd_model_dim(self->m);
	if ((size_t)view->shape[1] != dim) {
		PyErr_Format(PyExc_ValueError, "rows have %zd values; the model's dimension is %zu",
		             view->shape[1], dim);
		PyBuffer_Release(view);
		return -1;
	}
	*nrows = (size_t)view->shape[0];
	return 0;
}

/* A new bytearray of count doubles (count may be 0); *data points into it. */
static PyObject *new_doubles(size_t count, double **data)
{
	if (count > (size_t)PY_SSIZE_T_MAX / sizeof(double))
		return PyErr_NoMemory();
	PyObject *b = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(count * sizeof(double)));
	if (b)
		*data = (double *)(void *)PyByteArray_AS_STRING(b);
	return b;
}

/* update(rows) — folds rows (n_rows × dim); None. */
static PyObject *model_update(ModelObject *self, PyObject *rows)
{
	Py_buffer v;
	size_t nrows;
	int err;
	if (check_ready(self) < 0 || get_rows(self, rows, &v, &nrows) < 0)
		return NULL;
	size_t dim = isvd_model_dim(self->m);
	LOCKED(self, err = isvd_model_update(self->m, v.buf, nrows, dim));
	PyBuffer_Release(&v);
	if (err)
		return raise_engine(err, "update");
	Py_RETURN_NONE;
}

/* factors() — (sigma, vt, mean, rank): bytearrays of rank, rank × dim and dim doubles. */
static PyObject *model_factors(ModelObject *self, PyObject *unused)
{
	if (check_ready(self) < 0)
		return NULL;
	size_t dim = isvd_model_dim(self->m), kmax;
	struct isvd_options o;
	isvd_model_options(self->m, &o);
	kmax = o.rank < dim ? o.rank : dim;
	double *s, *vt, *mu;
	PyObject *bs = new_doubles(kmax, &s);
	PyObject *bv = bs ? new_doubles(kmax * dim, &vt) : NULL;
	PyObject *bm = bv ? new_doubles(dim, &mu) : NULL;
	if (!bm) {
		Py_XDECREF(bs);
		Py_XDECREF(bv);
		return NULL;
	}
	size_t r = 0;
	int err;
	LOCKED(self, err = isvd_model_factors(self->m, s, vt, mu, &r));
	if (err || PyByteArray_Resize(bs, (Py_ssize_t)(r * sizeof(double))) < 0
	    || PyByteArray_Resize(bv, (Py_ssize_t)(r * dim * sizeof(double))) < 0) {
		Py_DECREF(bs);
		Py_DECREF(bv);
		Py_DECREF(bm);
		return err ? raise_engine(err, "factors") : NULL;
	}
	return Py_BuildValue("(NNNn)", bs, bv, bm, (Py_ssize_t)r);
}

/* project(rows, space="scores") — (coords, residual, rank): n_rows × rank and n_rows doubles. */
static PyObject *model_project(ModelObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "rows", "space", NULL };
	PyObject *rows;
	const char *space = "scores";
	if (check_ready(self) < 0
	    || !PyArg_ParseTupleAndKeywords(args, kw, "O|s", kwlist, &rows, &space))
		return NULL;
	enum isvd_space sp;
	if (strcmp(space, "scores") == 0)
		sp = ISVD_SPACE_SCORES;
	else if (strcmp(space, "u") == 0)
		sp = ISVD_SPACE_U;
	else {
		PyErr_Format(PyExc_ValueError, "space must be 'scores' or 'u', not '%s'", space);
		return NULL;
	}
	Py_buffer v;
	size_t nrows, r = 0;
	int err;
	if (get_rows(self, rows, &v, &nrows) < 0)
		return NULL;
	/* sized for min(k, n), the most the model reports, since another
	 * thread may fold rows before the locked call below; the rank the
	 * call used is read in the same locked section */
	struct isvd_options o;
	isvd_model_options(self->m, &o);
	size_t dim = isvd_model_dim(self->m), kmax = o.rank < dim ? o.rank : dim;
	double *c, *res;
	PyObject *bc = nrows > (size_t)PY_SSIZE_T_MAX / (kmax ? kmax : 1) ? PyErr_NoMemory()
	                                                                  : new_doubles(nrows * kmax, &c);
	PyObject *br = bc ? new_doubles(nrows, &res) : NULL;
	if (!br) {
		Py_XDECREF(bc);
		PyBuffer_Release(&v);
		return NULL;
	}
	LOCKED(self, r = isvd_model_rank(self->m);
	       err = isvd_model_project(self->m, v.buf, nrows, dim, sp, c, res));
	PyBuffer_Release(&v);
	if (err || PyByteArray_Resize(bc, (Py_ssize_t)(nrows * r * sizeof(double))) < 0) {
		Py_DECREF(bc);
		Py_DECREF(br);
		return err ? raise_engine(err, "project") : NULL;
	}
	return Py_BuildValue("(NNn)", bc, br, (Py_ssize_t)r);
}

typedef int (*rows_to_rows_fn)(const struct isvd_model *, const double *, size_t, size_t,
                               double *);

/* Shared body of reconstruct() and impute(): n_rows × dim doubles out. */
static PyObject *rows_to_rows(ModelObject *self, PyObject *rows, rows_to_rows_fn fn,
                              const char *what)
{
	Py_buffer v;
	size_t nrows;
	int err;
	if (check_ready(self) < 0 || get_rows(self, rows, &v, &nrows) < 0)
		return NULL;
	size_t dim = isvd_model_dim(self->m);
	double *out;
	PyObject *b = new_doubles(nrows * dim, &out);
	if (!b) {
		PyBuffer_Release(&v);
		return NULL;
	}
	LOCKED(self, err = fn(self->m, v.buf, nrows, dim, out));
	PyBuffer_Release(&v);
	if (err) {
		Py_DECREF(b);
		return raise_engine(err, what);
	}
	return b;
}

/* reconstruct(rows) — μ + VₖVₖᵀ(x − μ) per row (gaps: of the completed row). */
static PyObject *model_reconstruct(ModelObject *self, PyObject *rows)
{
	return rows_to_rows(self, rows, isvd_model_reconstruct, "reconstruct");
}

/* impute(rows) — rows with each NaN replaced by the engine's estimate. */
static PyObject *model_impute(ModelObject *self, PyObject *rows)
{
	return rows_to_rows(self, rows, isvd_model_impute, "impute");
}

#define SET_ITEM(d, key, obj)                                                    \
	do {                                                                     \
		PyObject *o_ = (obj);                                            \
		if (!o_ || PyDict_SetItemString((d), (key), o_) < 0) {           \
			Py_XDECREF(o_);                                          \
			Py_DECREF(d);                                            \
			return NULL;                                             \
		}                                                                \
		Py_DECREF(o_);                                                   \
	} while (0)

/* info() — a dict of struct isvd_info's fields (mode and missing by name). */
static PyObject *model_info(ModelObject *self, PyObject *unused)
{
	struct isvd_info in;
	int err;
	if (check_ready(self) < 0)
		return NULL;
	LOCKED(self, err = isvd_model_info(self->m, &in));
	if (err)
		return raise_engine(err, "info");
	PyObject *d = PyDict_New();
	if (!d)
		return NULL;
	SET_ITEM(d, "dim", PyLong_FromSize_t(in.dim));
	SET_ITEM(d, "rank", PyLong_FromSize_t(in.rank));
	SET_ITEM(d, "rank_max", PyLong_FromSize_t(in.rank_max));
	SET_ITEM(d, "rank_internal", PyLong_FromSize_t(in.rank_internal));
	SET_ITEM(d, "rows_seen", PyLong_FromUnsignedLongLong(in.rows_seen));
	SET_ITEM(d, "weight_total", PyFloat_FromDouble(in.weight_total));
	SET_ITEM(d, "energy_total", PyFloat_FromDouble(in.energy_total));
	SET_ITEM(d, "energy_captured", PyFloat_FromDouble(in.energy_captured));
	SET_ITEM(d, "explained_energy_ratio", PyFloat_FromDouble(in.explained_energy_ratio));
	SET_ITEM(d, "condition_number", PyFloat_FromDouble(in.condition_number));
	SET_ITEM(d, "orthogonality_error", PyFloat_FromDouble(in.orthogonality_error));
	SET_ITEM(d, "center", PyBool_FromLong(in.center));
	SET_ITEM(d, "forget", PyFloat_FromDouble(in.forget));
	SET_ITEM(d, "reorth_every", PyLong_FromUnsignedLongLong(in.reorth_every));
	SET_ITEM(d, "reorth_count", PyLong_FromUnsignedLongLong(in.reorth_count));
	SET_ITEM(d, "mode", PyUnicode_FromString(isvd_mode_name(in.mode)));
	SET_ITEM(d, "missing", PyUnicode_FromString(missing_name(in.missing)));
	SET_ITEM(d, "rows_with_gaps", PyLong_FromUnsignedLongLong(in.rows_with_gaps));
	SET_ITEM(d, "values_imputed", PyLong_FromUnsignedLongLong(in.values_imputed));
	return d;
}

/* options() — a dict of the options the model runs with (resolved). */
static PyObject *model_options(ModelObject *self, PyObject *unused)
{
	struct isvd_options o;
	int err;
	if (check_ready(self) < 0)
		return NULL;
	LOCKED(self, err = isvd_model_options(self->m, &o));
	if (err)
		return raise_engine(err, "options");
	PyObject *d = PyDict_New();
	if (!d)
		return NULL;
	SET_ITEM(d, "dim", PyLong_FromSize_t(o.dim));
	SET_ITEM(d, "rank", PyLong_FromSize_t(o.rank));
	SET_ITEM(d, "extra", PyLong_FromSize_t(o.extra));
	SET_ITEM(d, "max_block", PyLong_FromSize_t(o.max_block));
	SET_ITEM(d, "center", PyBool_FromLong(o.center));
	SET_ITEM(d, "forget", PyFloat_FromDouble(o.forget));
	SET_ITEM(d, "reorth_every", PyLong_FromUnsignedLongLong(o.reorth_every));
	SET_ITEM(d, "rcond", PyFloat_FromDouble(o.rcond));
	SET_ITEM(d, "mode", PyUnicode_FromString(isvd_mode_name(o.mode)));
	SET_ITEM(d, "threads", PyLong_FromSize_t(o.threads));
	SET_ITEM(d, "missing", PyUnicode_FromString(missing_name(o.missing)));
	return d;
}

/* save() — the engine's saved image (isvd_model_save) as bytes. */
static PyObject *model_save(ModelObject *self, PyObject *unused)
{
	if (check_ready(self) < 0)
		return NULL;
	size_t cap = 0, len = 0;
	int err = ISVD_ERR_NOMEM;
	void *buf = NULL;
	/* sized and written in one locked section: a fold by another thread
	 * in between could grow the image */
	LOCKED(self, cap = isvd_model_saved_size(self->m);
	       if (cap && (buf = malloc(cap)))
		       err = isvd_model_save(self->m, buf, cap, &len));
	if (cap == 0 || cap > (size_t)PY_SSIZE_T_MAX)
		err = ISVD_ERR_TOO_LARGE;
	if (err) {
		free(buf);
		return raise_engine(err, "save");
	}
	PyObject *b = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
	free(buf);
	return b;
}

/* set_missing("reject" | "impute") */
static PyObject *model_set_missing(ModelObject *self, PyObject *arg)
{
	const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
	int missing, err;
	if (check_ready(self) < 0)
		return NULL;
	if (!s) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_TypeError, "missing must be a str");
		return NULL;
	}
	if (parse_missing(s, &missing) < 0)
		return NULL;
	LOCKED(self, err = isvd_model_set_missing(self->m, missing));
	if (err)
		return raise_engine(err, "set_missing");
	Py_RETURN_NONE;
}

/* set_threads(n) — 0 = auto */
static PyObject *model_set_threads(ModelObject *self, PyObject *arg)
{
	Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
	int err;
	if (check_ready(self) < 0 || (n == -1 && PyErr_Occurred()))
		return NULL;
	if (n < 0) {
		PyErr_SetString(PyExc_ValueError, "threads must be >= 0");
		return NULL;
	}
	LOCKED(self, err = isvd_model_set_threads(self->m, (size_t)n));
	if (err)
		return raise_engine(err, "set_threads");
	Py_RETURN_NONE;
}

static PyObject *model_get_dim(ModelObject *self, void *unused)
{
	if (check_ready(self) < 0)
		return NULL;
	return PyLong_FromSize_t(isvd_model_dim(self->m));
}

static PyObject *model_get_rows_seen(ModelObject *self, void *unused)
{
	uint64_t n;
	if (check_ready(self) < 0)
		return NULL;
	LOCKED(self, n = isvd_model_rows_seen(self->m));
	return PyLong_FromUnsignedLongLong(n);
}

static PyObject *model_get_rank(ModelObject *self, void *unused)
{
	size_t r;
	if (check_ready(self) < 0)
		return NULL;
	LOCKED(self, r = isvd_model_rank(self->m));
	return PyLong_FromSize_t(r);
}

static PyMethodDef model_methods[] = {
	{ "update", (PyCFunction)model_update, METH_O,
	  "update(rows): fold rows (C-contiguous float64, n_rows x dim) into the model; "
	  "the GIL is released meanwhile" },
	{ "factors", (PyCFunction)model_factors, METH_NOARGS,
	  "factors() -> (sigma, vt, mean, rank) as bytearrays of float64" },
	{ "project", (PyCFunction)(void (*)(void))model_project, METH_VARARGS | METH_KEYWORDS,
	  "project(rows, space='scores') -> (coords, residual, rank) as bytearrays" },
	{ "reconstruct", (PyCFunction)model_reconstruct, METH_O,
	  "reconstruct(rows) -> bytearray of n_rows x dim float64" },
	{ "impute", (PyCFunction)model_impute, METH_O,
	  "impute(rows) -> bytearray: rows with every NaN filled by the engine's estimate" },
	{ "info", (PyCFunction)model_info, METH_NOARGS, "info() -> dict (struct isvd_info)" },
	{ "options", (PyCFunction)model_options, METH_NOARGS,
	  "options() -> dict (struct isvd_options, resolved)" },
	{ "save", (PyCFunction)model_save, METH_NOARGS, "save() -> bytes: the engine's saved image" },
	{ "set_missing", (PyCFunction)model_set_missing, METH_O,
	  "set_missing('reject' | 'impute')" },
	{ "set_threads", (PyCFunction)model_set_threads, METH_O, "set_threads(n), 0 = auto" },
	{ NULL, NULL, 0, NULL }
};

static PyGetSetDef model_getset[] = {
	{ "dim", (getter)model_get_dim, NULL, "n, the row length", NULL },
	{ "rows_seen", (getter)model_get_rows_seen, NULL, "rows folded since creation", NULL },
	{ "rank", (getter)model_get_rank, NULL, "components reported now", NULL },
	{ NULL, NULL, NULL, NULL, NULL }
};

static PyTypeObject ModelType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "isvd._engine.Model",
	.tp_basicsize = sizeof(ModelObject),
	.tp_dealloc = (destructor)model_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Model(dim, rank, *, extra=10, center=True, forget=1.0, reorth_every=100000, "
	          "rcond=1e-12, mode='auto', missing='reject', max_block=0, threads=0): "
	          "one isvd engine model (update/isvd_model.h)",
	.tp_methods = model_methods,
	.tp_getset = model_getset,
	.tp_new = model_new,
};

/* load(image) — a Model from a saved image (bytes-like). */
static PyObject *engine_load(PyObject *mod, PyObject *arg)
{
	Py_buffer v;
	struct isvd_model *m = NULL;
	int err;
	if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	err = isvd_model_load(v.buf, (size_t)v.len, &m);
	Py_END_ALLOW_THREADS
	PyBuffer_Release(&v);
	if (err)
		return raise_engine(err, "load");
	return (PyObject *)model_wrap(m);
}

/* image_length(buf) — the total length an image declares in its header
 * (u64 little-endian at offset 16), or -1 when buf is shorter than that. */
static PyObject *engine_image_length(PyObject *mod, PyObject *arg)
{
	Py_buffer v;
	if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0)
		return NULL;
	long long len = -1;
	if (v.len >= 24) {
		const unsigned char *p = (const unsigned char *)v.buf + 16;
		uint64_t x = 0;
		for (int i = 7; i >= 0; i--)
			x = (x << 8) | p[i];
		len = x > (uint64_t)INT64_MAX ? -1 : (long long)x;
	}
	PyBuffer_Release(&v);
	return PyLong_FromLongLong(len);
}

static PyMethodDef engine_methods[] = {
	{ "load", engine_load, METH_O, "load(image) -> Model from a saved image" },
	{ "image_length", engine_image_length, METH_O,
	  "image_length(buf) -> the length the image at the start of buf declares, or -1" },
	{ NULL, NULL, 0, NULL }
};

static struct PyModuleDef engine_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "isvd._engine",
	.m_doc = "The isvd engine (update/isvd_model.h) in process; used by isvd.StreamingPCA.",
	.m_size = -1,
	.m_methods = engine_methods,
};

PyMODINIT_FUNC PyInit__engine(void); /* the one exported symbol */

PyMODINIT_FUNC PyInit__engine(void)
{
	if (PyType_Ready(&ModelType) < 0)
		return NULL;
	PyObject *mod = PyModule_Create(&engine_module);
	if (!mod)
		return NULL;
	EngineError = PyErr_NewExceptionWithDoc(
	    "isvd.EngineError",
	    "The engine refused a call; .code is the isvd_err number and .name its name "
	    "(e.g. 'NONFINITE', 'DIM', 'GAPS', 'NOT_READY').",
	    PyExc_ValueError, NULL);
	if (!EngineError
	    || PyModule_AddObjectRef(mod, "EngineError", EngineError) < 0
	    || PyModule_AddObjectRef(mod, "Model", (PyObject *)&ModelType) < 0
	    || PyModule_AddStringConstant(mod, "__version__", ISVD_VERSION) < 0
	    || PyModule_AddIntConstant(mod, "MAX_RANK", ISVD_MAX_RANK) < 0
	    || PyModule_AddIntConstant(mod, "MAX_DIM", (long)ISVD_MAX_DIM) < 0) {
		Py_DECREF(mod);
		return NULL;
	}
	return mod;
}
