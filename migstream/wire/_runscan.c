/* migstream._runscan: the bulk-stage record walk of migstream/fastpath.py, compiled.
 *
 * The byte layout is not written here: the caller passes the header size, the
 * record size of each kind and the header tag each kind carries, all derived from
 * the construct grammar by fastpath.py.  This file only knows that a run is a row
 * of records, each starting with a big-endian u64 header equal to
 * "page address + tag", for consecutive pages.  tests/unit/test_fastpath.py holds it
 * equal to the pure-Python walk (and both to plain construct parsing).
 *
 * The walk is the part of decoding that touches every record of a bulk stage; in
 * Python it costs about 0.5 us a record, here a few ns plus the page fault that
 * reading the header costs anyway.  The GIL is released during the walk.
 *
 * Built against the limited API of Python 3.11 (Py_LIMITED_API, pyproject.toml):
 * one abi3 build serves every later CPython.  Only limited-API calls here; the
 * outputs are grown with the C library's malloc, which needs no GIL (PyMem_Raw*
 * are not in the limited API).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t load_be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* walk(buf, pos, addr, page_size, cap, header_size,
 *      tag_a, size_a, kind_a, tag_b, size_b, kind_b)
 *   -> (count, end, starts: bytes of native int64, kinds: bytes)
 *
 * From buf[pos], take records while fewer than cap were taken, the header fits,
 * the header equals addr + i*page_size + tag_a (or tag_b) and the whole record
 * fits in buf.  starts[i] is record i's offset relative to pos, kinds[i] is
 * kind_a or kind_b.
 */
static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, cap, header_size, size_a, size_b;
    unsigned long long addr, page_size, tag_a, tag_b;
    int kind_a, kind_b;

    if (!PyArg_ParseTuple(args, "y*nKKnnKniKni", &view, &pos, &addr, &page_size, &cap,
                          &header_size, &tag_a, &size_a, &kind_a, &tag_b, &size_b, &kind_b))
        return NULL;
    if (pos < 0 || pos > view.len || cap < 0 || header_size != 8 || size_a < header_size
        || size_b < header_size || kind_a < 0 || kind_a > 255 || kind_b < 0 || kind_b > 255) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "walk: bad arguments");
        return NULL;
    }
    const unsigned char *buf = view.buf;
    const Py_ssize_t end = view.len;
    const Py_ssize_t min_size = size_a < size_b ? size_a : size_b;
    Py_ssize_t most = (end - pos) / min_size;
    if (most > cap)
        most = cap;

    /* Grow the outputs as records are found: a hostile cap never allocates. */
    Py_ssize_t room = most < 4096 ? most : 4096;
    int64_t *starts = malloc((room ? room : 1) * sizeof(int64_t));
    unsigned char *kinds = malloc(room ? room : 1);
    if (!starts || !kinds) {
        free(starts);
        free(kinds);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_ssize_t n = 0, p = pos;
    int oom = 0;

    Py_BEGIN_ALLOW_THREADS
    uint64_t a = addr;
    while (n < most && p + header_size <= end) {
        uint64_t h = load_be64(buf + p);
        Py_ssize_t size;
        unsigned char kind;
        if (h == a + tag_a) {
            size = size_a;
            kind = (unsigned char)kind_a;
        } else if (h == a + tag_b) {
            size = size_b;
            kind = (unsigned char)kind_b;
        } else {
            break;
        }
        if (size > end - p)
            break;
        if (n == room) {
            Py_ssize_t grown = room * 2 < most ? room * 2 : most;
            int64_t *s2 = realloc(starts, grown * sizeof(int64_t));
            if (s2)
                starts = s2;
            unsigned char *k2 = s2 ? realloc(kinds, grown) : NULL;
            if (!k2) {
                oom = 1;
                break;
            }
            kinds = k2;
            room = grown;
        }
        starts[n] = p - pos;
        kinds[n] = kind;
        n++;
        p += size;
        a += page_size;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (oom) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("nny#y#", n, p, (const char *)starts, n * (Py_ssize_t)sizeof(int64_t),
                               (const char *)kinds, n);
    }
    free(starts);
    free(kinds);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(buf, pos, addr, page_size, cap, header_size, tag_a, size_a, kind_a, tag_b, size_b, "
     "kind_b) -> (count, end, starts, kinds): the run of page records at buf[pos]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "migstream._runscan",
    "The bulk-stage record walk of migstream.fastpath, compiled.", -1, methods,
};

PyMODINIT_FUNC PyInit__runscan(void)
{
    return PyModule_Create(&module);
}
