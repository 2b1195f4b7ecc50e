/* migstream._runscan: the bulk-stage record walk of migstream/fastpath.py, compiled;
 * and the write-side loops of the encoder (write_pages) and of extract (write_run).
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
#define _GNU_SOURCE
#include <Python.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/uio.h>
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

static inline void store_be64(unsigned char *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

#define WRITE_IOV_MAX 1024 /* Linux's UIO_MAXIOV */

/* pwritev the iovecs at off (off < 0: writev at the file position, for pipes),
 * finishing short writes; 0, or -1 with errno set. */
static int pwritev_all(int fd, struct iovec *iov, int cnt, off_t off)
{
    while (cnt > 0) {
        ssize_t done = off < 0 ? writev(fd, iov, cnt) : pwritev(fd, iov, cnt, off);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (done == 0) {
            errno = EIO;
            return -1;
        }
        if (off >= 0)
            off += done;
        while (cnt > 0 && (size_t)done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

/* iovecs gathered for one pwritev at off (off < 0: writev in order), written when
 * the array is full and at the end; after a failure nothing more is written. */
struct gather {
    int fd, cnt, failed;
    long long off, pending, written; /* pending: bytes in iov[0..cnt) */
    struct iovec iov[WRITE_IOV_MAX];
};

static void gather_flush(struct gather *w)
{
    if (w->cnt && !w->failed) {
        w->failed = pwritev_all(w->fd, w->iov, w->cnt, w->off);
        if (w->off >= 0)
            w->off += w->pending;
        w->written += w->pending;
    }
    w->cnt = 0;
    w->pending = 0;
}

static void gather_add(struct gather *w, void *base, size_t len)
{
    if (w->cnt == WRITE_IOV_MAX)
        gather_flush(w);
    w->iov[w->cnt].iov_base = base;
    w->iov[w->cnt].iov_len = len;
    w->cnt++;
    w->pending += (long long)len;
}

/* write_run(fd, data, starts, kinds, page_kind, page_size, offset, hole_min, zero_page) -> bool
 *
 * Writes a bulk run of records (the decoder's PageRun: data, starts as native int64,
 * kinds) to fd, page i of the run at offset + i*page_size: the payload of a record of
 * page_kind (a record's last page_size bytes) for every such record; a stretch of
 * fewer than hole_min other (zero) records between two page stretches as zero_page
 * copies; longer stretches, and those at the run's end, are left as they are (holes
 * in a fresh file).  Runs of adjacent pages go out as one pwritev of up to 1024
 * buffers.  image/ramimage.py holds this equal to its Python loop
 * (tests/unit/test_extract_compiled.py).  Returns False, having written nothing, when a
 * record of another kind (ZERO) has a non-zero fill byte (its last byte): those pages
 * are not zeros, the caller applies the run record by record.
 */
static PyObject *write_run(PyObject *self, PyObject *args)
{
    int fd, page_kind;
    Py_buffer data, starts, kinds, zero;
    Py_ssize_t page_size, hole_min;
    long long offset;

    if (!PyArg_ParseTuple(args, "iy*y*y*inLny*", &fd, &data, &starts, &kinds, &page_kind, &page_size, &offset,
                          &hole_min, &zero))
        return NULL;
    const Py_ssize_t n = kinds.len;
    const int64_t *st = starts.buf;
    const unsigned char *k = kinds.buf;
    int bad = starts.len != n * (Py_ssize_t)sizeof(int64_t) || page_size <= 0 || zero.len != page_size || offset < 0
              || hole_min < 1;
    int filled = 0; /* a ZERO record whose fill byte is not 0 */
    for (Py_ssize_t i = 0; !bad && i < n; i++) {
        int64_t end = i + 1 < n ? st[i + 1] : data.len;
        bad = st[i] < 0 || end > data.len || end - st[i] < (k[i] == page_kind ? page_size : 1)
              || (i + 1 < n && st[i + 1] < st[i]);
        if (!bad && k[i] != page_kind)
            filled |= ((const unsigned char *)data.buf)[end - 1] != 0;
    }
    if (bad || filled) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&starts);
        PyBuffer_Release(&kinds);
        PyBuffer_Release(&zero);
        if (!bad)
            Py_RETURN_FALSE;
        PyErr_SetString(PyExc_ValueError, "write_run: bad arguments");
        return NULL;
    }
    struct gather w = {.fd = fd};

    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    while (i < n && !w.failed) {
        Py_ssize_t j = i;
        int page = k[i] == page_kind;
        while (j < n && (k[j] == page_kind) == page)
            j++;
        /* Pages, or a short zero stretch inside a batch (written as zeros, keeping the
           batch one pwritev, rather than left as a hole that splits it). */
        if (page || (w.cnt && j < n && j - i < hole_min)) {
            if (!w.cnt)
                w.off = offset + i * page_size;
            for (Py_ssize_t p = i; p < j; p++) {
                int64_t end = p + 1 < n ? st[p + 1] : data.len;
                gather_add(&w, page ? (char *)data.buf + end - page_size : zero.buf, page_size);
            }
        } else {
            gather_flush(&w); /* a hole: the next pages start a new pwritev */
        }
        i = j;
    }
    gather_flush(&w);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&kinds);
    PyBuffer_Release(&zero);
    if (w.failed)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

/* write_pages(fd, offset, data, first, count, page_size, header_size, zero_tag, zero_size, page_tag,
 *             zero, glue) -> written
 *
 * The encoder's bulk records of pages first .. first+count-1 of data, back to back:
 * a page marked in zero (zero[i] != 0, found beforehand) becomes header(addr +
 * zero_tag) and zero_size - header_size zero bytes (the fill), any other page
 * header(addr + page_tag) and the page.  Written to fd at offset with pwritev (offset
 * -1: writev at the file position, a pipe) without copying a page: headers and fills
 * go back to back into the writable buffer glue (at least count * zero_size bytes),
 * each page is an iovec pointing into data.  written is the byte count.
 * encode/encoder.py passes every size and tag from the grammar and holds the output
 * equal to its numpy path's (tests/unit/test_encode_compiled.py).
 */
static PyObject *write_pages(PyObject *self, PyObject *args)
{
    int fd;
    long long offset;
    Py_buffer view, zero, glue;
    Py_ssize_t first, count, page_size, header_size, zero_size;
    unsigned long long zero_tag, page_tag;

    if (!PyArg_ParseTuple(args, "iLy*nnnnKnKy*w*", &fd, &offset, &view, &first, &count, &page_size, &header_size,
                          &zero_tag, &zero_size, &page_tag, &zero, &glue))
        return NULL;
    if (offset < -1 || first < 0 || count < 0 || page_size < 8 || header_size != 8 || zero_size < header_size
        || zero_size > header_size + page_size || first > view.len / page_size
        || count > view.len / page_size - first || zero.len != count || count > glue.len / zero_size) {
        PyBuffer_Release(&view);
        PyBuffer_Release(&zero);
        PyBuffer_Release(&glue);
        PyErr_SetString(PyExc_ValueError, "write_pages: bad arguments");
        return NULL;
    }
    const unsigned char *z = (const unsigned char *)zero.buf;
    unsigned char *g = (unsigned char *)glue.buf;
    const Py_ssize_t fill = zero_size - header_size;
    struct gather w = {.fd = fd, .off = offset};

    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t used = 0, piece = 0; /* glue bytes used; start of the glue not in an iovec yet */
    const char *src = (const char *)view.buf + first * page_size;
    uint64_t addr = (uint64_t)first * (uint64_t)page_size;
    for (Py_ssize_t i = 0; i < count && !w.failed; i++, src += page_size, addr += page_size) {
        if (z[i]) {
            store_be64(g + used, addr + zero_tag);
            memset(g + used + header_size, 0, fill);
            used += zero_size;
            continue;
        }
        store_be64(g + used, addr + page_tag);
        used += header_size;
        gather_add(&w, g + piece, used - piece);
        gather_add(&w, (char *)src, page_size);
        piece = used;
    }
    if (used > piece)
        gather_add(&w, g + piece, used - piece);
    gather_flush(&w);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    PyBuffer_Release(&zero);
    PyBuffer_Release(&glue);
    if (w.failed)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLongLong(w.written);
}

/* preallocate(fd, offset, length) -> bool
 *
 * fallocate(fd, 0, offset, length): the file system allocates the blocks of a range
 * about to be written in one extent, instead of one delayed allocation per page as
 * the writes arrive (ext4: 13 % off encode's wall time, benchmarks/README.md).  False
 * when the file system cannot (EOPNOTSUPP, ...): the caller just writes.  Unlike
 * posix_fallocate, never falls back to writing zeros. */
static PyObject *preallocate(PyObject *self, PyObject *args)
{
    int fd, rc;
    long long offset, length;

    if (!PyArg_ParseTuple(args, "iLL", &fd, &offset, &length))
        return NULL;
    if (offset < 0 || length <= 0) {
        PyErr_SetString(PyExc_ValueError, "preallocate: bad range");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = fallocate(fd, 0, (off_t)offset, (off_t)length);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(rc == 0);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(buf, pos, addr, page_size, cap, header_size, tag_a, size_a, kind_a, tag_b, size_b, "
     "kind_b) -> (count, end, starts, kinds): the run of page records at buf[pos]."},
    {"write_pages", write_pages, METH_VARARGS,
     "write_pages(fd, offset, data, first, count, page_size, header_size, zero_tag, zero_size, page_tag, zero, "
     "glue) -> written: the bulk ZERO/PAGE records of pages first..first+count-1 written to fd at offset with "
     "pwritev (-1: writev), pages straight from data (zero[i]: page first+i is a ZERO record)."},
    {"preallocate", preallocate, METH_VARARGS,
     "preallocate(fd, offset, length) -> bool: fallocate() the range about to be written (False: not "
     "supported here; nothing was written)."},
    {"write_run", write_run, METH_VARARGS,
     "write_run(fd, data, starts, kinds, page_kind, page_size, offset, hole_min, zero_page) -> bool: "
     "the pages of a bulk run written to fd with pwritev (short zero stretches as zero pages); "
     "False, nothing written, when a ZERO record has a non-zero fill byte."},
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
