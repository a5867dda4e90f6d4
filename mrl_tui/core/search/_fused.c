/* Fused exact prefix scan for NestedIndex: dot products over the stored column blocks, times the
 * rows' inverse prefix norms, into a running top-k, in one pass over the rows.
 *
 * Optional: built at install time when a C compiler is there (setup.py); without it the index
 * scans with numpy (index.py). Built portable (no -march=native): an AVX2+FMA copy of the kernel
 * is chosen at run time on CPUs that have them, else the baseline (SSE2) copy.
 *
 * Only the CPython API and the buffer protocol are used, so the build needs no numpy headers.
 *
 * Scores are bitwise the same for identical rows wherever they sit: every row's dot product adds
 * its 8-lane partial sums in one fixed order (see reduce8 / hsum8), so ties between equal rows
 * stay ties and the lower id wins (the heap keeps the first of equal scores it sees). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef int32_t v8i __attribute__((vector_size(32)));

#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

#define ROWS 8 /* rows scored together: their 8 sums are reduced in one shuffle tree */
#define TINY 1e-30f
#define AHEAD_BYTES 8192 /* of rows (all blocks together) prefetched ahead of the scan, 8..64 rows */

typedef struct {
    const float *base; /* the block's first row */
    Py_ssize_t stride; /* floats per row of the block */
    const float *q;    /* the query's columns for this block, zero-padded to 8 * nv */
    Py_ssize_t nv;     /* 8-float vectors read per row */
    Py_ssize_t ntail;  /* columns past them, done one by one (only a last, odd-width block) */
    const float *qtail;
} part_t;

typedef struct {
    const float *inv;  /* stored 1/|x[:g*8]| per row, or NULL when g == 0 */
    const float *cols; /* the < 8 columns past g*8 (of row 0), or NULL when d is a multiple of 8 */
    Py_ssize_t stride;
    Py_ssize_t ncols;
} norm_t;

/* ---------------------------------------------------------------- running top-k (a min-heap)
 * heap[0] is the worst kept hit: the lowest score, and of equal scores the highest id. */

static inline int worse(float sa, int64_t ia, float sb, int64_t ib) {
    return sa < sb || (sa == sb && ia > ib);
}

static void sift_down(float *s, int64_t *ids, Py_ssize_t n, Py_ssize_t i) {
    float sv = s[i];
    int64_t iv = ids[i];
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && worse(s[c + 1], ids[c + 1], s[c], ids[c])) c++;
        if (!worse(s[c], ids[c], sv, iv)) break;
        s[i] = s[c];
        ids[i] = ids[c];
        i = c;
    }
    s[i] = sv;
    ids[i] = iv;
}

static void push(float *s, int64_t *ids, Py_ssize_t *n, float sv, int64_t iv) {
    Py_ssize_t i = (*n)++;
    while (i > 0) {
        Py_ssize_t p = (i - 1) / 2;
        if (!worse(sv, iv, s[p], ids[p])) break;
        s[i] = s[p];
        ids[i] = ids[p];
        i = p;
    }
    s[i] = sv;
    ids[i] = iv;
}

/* Rows come in increasing id order, so a row that only ties the worst kept hit loses to it. */
static inline void offer(float *s, int64_t *ids, Py_ssize_t *n, Py_ssize_t k, float sv,
                         int64_t iv) {
    if (*n < k) {
        push(s, ids, n, sv, iv);
    } else if (sv > s[0]) {
        s[0] = sv;
        ids[0] = iv;
        sift_down(s, ids, *n, 0);
    }
}

/* ---------------------------------------------------------------- the scan */

static inline __attribute__((always_inline)) v8 loadu(const float *p) { return *(const v8u *)p; }

/* Lane sums of 8 accumulators: out[r] = ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)) of acc[r]. Pairs are
 * added with in-lane shuffles (one instruction each on AVX), the two 128-bit halves last. */
static inline __attribute__((always_inline)) v8 hadd(v8 a, v8 b) {
    /* [a0+a1, a2+a3, b0+b1, b2+b3, a4+a5, a6+a7, b4+b5, b6+b7] */
    return SHUF(a, b, 0, 2, 8, 10, 4, 6, 12, 14) + SHUF(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}

static inline __attribute__((always_inline)) v8 reduce8(const v8 *a) {
    v8 u0 = hadd(hadd(a[0], a[1]), hadd(a[2], a[3])); /* rows 0-3: low-half sums, high-half sums */
    v8 u1 = hadd(hadd(a[4], a[5]), hadd(a[6], a[7]));
    return SHUF(u0, u1, 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(u0, u1, 4, 5, 6, 7, 12, 13, 14, 15);
}

/* The same order for one accumulator. */
static inline __attribute__((always_inline)) float hsum8(v8 a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline __attribute__((always_inline)) float row_inv(const norm_t *nm, Py_ssize_t r) {
    float sq = 0.0f;
    if (nm->inv) {
        float i = nm->inv[r];
        sq = 1.0f / (i * i);
    }
    const float *c = nm->cols + r * nm->stride;
    for (Py_ssize_t j = 0; j < nm->ncols; j++) sq += c[j] * c[j];
    return 1.0f / sqrtf(sq > TINY ? sq : TINY);
}

static inline __attribute__((always_inline)) float tail_dot(const part_t *parts, int nparts,
                                                            Py_ssize_t r) {
    float t = 0.0f;
    for (int b = 0; b < nparts; b++) {
        const float *p = parts[b].base + r * parts[b].stride + 8 * parts[b].nv;
        for (Py_ssize_t j = 0; j < parts[b].ntail; j++) t += p[j] * parts[b].qtail[j];
    }
    return t;
}

static inline __attribute__((always_inline)) void scan_body(
    const part_t *parts, int nparts, int tails, const norm_t *nm, Py_ssize_t a, Py_ssize_t b,
    Py_ssize_t k, float *hs, int64_t *hi, Py_ssize_t *hn) {
    /* Prefetching AHEAD_BYTES of rows ahead took one thread from 0.6-0.8x faiss's read rate to
     * par (d = 64..384; more ahead lost at high d, where five blocks are read at once). A
     * prefetch past the last row is a harmless hint. */
    Py_ssize_t width = 0;
    for (int p = 0; p < nparts; p++) width += 8 * parts[p].nv + parts[p].ntail;
    Py_ssize_t ahead = AHEAD_BYTES / (4 * (width > 0 ? width : 1));
    ahead = ahead < ROWS ? ROWS : ahead > 64 ? 64 : ahead;
    Py_ssize_t r = a;
    for (; r + ROWS <= b; r += ROWS) {
        v8 acc[ROWS];
        for (int i = 0; i < ROWS; i++) acc[i] = (v8){0};
        for (int p = 0; p < nparts; p++) {
            const float *x = parts[p].base + r * parts[p].stride;
            const Py_ssize_t st = parts[p].stride;
            const float *q = parts[p].q;
            for (Py_ssize_t c = 0; c < parts[p].nv; c++) {
                v8 qv = loadu(q + 8 * c);
                for (int i = 0; i < ROWS; i++) {
                    if ((c & 1) == 0) /* one 64-byte line per two 8-float reads */
                        __builtin_prefetch(x + (i + ahead) * st + 8 * c);
                    acc[i] += loadu(x + i * st + 8 * c) * qv;
                }
            }
        }
        v8 s = reduce8(acc);
        if (tails)
            for (int i = 0; i < ROWS; i++) s[i] += tail_dot(parts, nparts, r + i);
        if (nm->cols) {
            for (int i = 0; i < ROWS; i++) s[i] *= row_inv(nm, r + i);
        } else {
            s *= loadu(nm->inv + r);
        }
        if (*hn < k) {
            for (int i = 0; i < ROWS; i++) offer(hs, hi, hn, k, s[i], r + i);
        } else {
            float t = hs[0];
            v8i above = s > (v8){t, t, t, t, t, t, t, t};
            uint64_t w[4];
            memcpy(w, &above, sizeof w);
            if (w[0] | w[1] | w[2] | w[3])
                for (int i = 0; i < ROWS; i++) offer(hs, hi, hn, k, s[i], r + i);
        }
    }
    for (; r < b; r++) {
        v8 acc = {0};
        for (int p = 0; p < nparts; p++) {
            const float *x = parts[p].base + r * parts[p].stride;
            for (Py_ssize_t c = 0; c < parts[p].nv; c++)
                acc += loadu(x + 8 * c) * loadu(parts[p].q + 8 * c);
        }
        float s = hsum8(acc);
        if (tails) s += tail_dot(parts, nparts, r);
        s *= nm->cols ? row_inv(nm, r) : nm->inv[r];
        offer(hs, hi, hn, k, s, r);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2 1
__attribute__((target("avx2,fma"))) static void scan_avx2(
    const part_t *parts, int nparts, int tails, const norm_t *nm, Py_ssize_t a, Py_ssize_t b,
    Py_ssize_t k, float *hs, int64_t *hi, Py_ssize_t *hn) {
    scan_body(parts, nparts, tails, nm, a, b, k, hs, hi, hn);
}
#endif

static void scan_base(const part_t *parts, int nparts, int tails, const norm_t *nm, Py_ssize_t a,
                      Py_ssize_t b, Py_ssize_t k, float *hs, int64_t *hi, Py_ssize_t *hn) {
    scan_body(parts, nparts, tails, nm, a, b, k, hs, hi, hn);
}

typedef void (*scan_fn)(const part_t *, int, int, const norm_t *, Py_ssize_t, Py_ssize_t,
                        Py_ssize_t, float *, int64_t *, Py_ssize_t *);
static scan_fn chosen = scan_base;
static const char *chosen_name = "baseline";

/* ---------------------------------------------------------------- Python glue */

#define MAX_PARTS 64

static int get_buffer(PyObject *obj, Py_buffer *view, const char *what, char kind, int ndim,
                      int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = view->ndim == ndim &&
             (kind == 'f' ? (f[0] == 'f' && view->itemsize == 4)
                          : ((f[0] == 'q' || f[0] == 'l') && view->itemsize == 8));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a %d-D C-contiguous %s array", what, ndim,
                     kind == 'f' ? "float32" : "int64");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
             "scan(blocks, widths, q, inv, norm_cols, start, stop, k, ids, scores, count) -> count\n\n"
             "Rows start..stop (ascending) into a running top-k of dot(x[:d], q) * 1/|x[:d]|.\n"
             "blocks: 2-D float32 column blocks in order; widths: columns used of each (they add\n"
             "up to d = len(q)); inv: stored 1/|x[:g*8]| per row (None if g == 0); norm_cols:\n"
             "None when d is a multiple of 8, else (block, first column, count) of the columns\n"
             "past g*8; ids/scores: the top-k heap, its first `count` entries filled; returns the\n"
             "new count. The heap is unsorted; rows tying the worst kept hit do not enter.");

static PyObject *py_scan(PyObject *self, PyObject *args) {
    PyObject *blocks, *widths, *qobj, *invobj, *colsobj, *idsobj, *scoresobj;
    Py_ssize_t start, stop, k, count;
    if (!PyArg_ParseTuple(args, "O!O!OOOnnnOOn", &PyTuple_Type, &blocks, &PyTuple_Type, &widths,
                          &qobj, &invobj, &colsobj, &start, &stop, &k, &idsobj, &scoresobj,
                          &count))
        return NULL;
    Py_ssize_t nparts = PyTuple_GET_SIZE(blocks);
    if (nparts < 1 || nparts > MAX_PARTS || PyTuple_GET_SIZE(widths) != nparts) {
        PyErr_SetString(PyExc_ValueError, "blocks and widths: 1..64 of each, as many of both");
        return NULL;
    }
    Py_buffer views[MAX_PARTS], qv, invv, colv, idv, scv;
    int nviews = 0, have_inv = 0, have_cols = 0, have_ids = 0, have_sc = 0;
    PyObject *result = NULL;
    float *qpad = NULL;
    part_t parts[MAX_PARTS];
    norm_t nm = {NULL, NULL, 0, 0};

    if (get_buffer(qobj, &qv, "q", 'f', 1, 0) < 0) return NULL;
    Py_ssize_t dim = qv.shape[0], used = 0, padded = 0;
    for (; nviews < nparts; nviews++) {
        if (get_buffer(PyTuple_GET_ITEM(blocks, nviews), &views[nviews], "a block", 'f', 2, 0) < 0)
            goto done;
    }
    for (Py_ssize_t p = 0; p < nparts; p++) {
        Py_ssize_t w = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, p));
        if (w == -1 && PyErr_Occurred()) goto done;
        Py_ssize_t st = views[p].shape[1];
        if (w < 1 || w > st || views[p].shape[0] < stop) {
            PyErr_SetString(PyExc_ValueError, "a width is outside its block, or a block is short");
            goto done;
        }
        /* Read whole 8-float vectors past the used columns when the row has them (the query is
         * zero there, and the values are finite); else the last < 8 columns one by one. */
        Py_ssize_t nv = ((w + 7) / 8 * 8 <= st) ? (w + 7) / 8 : w / 8;
        parts[p].base = views[p].buf;
        parts[p].stride = st;
        parts[p].nv = nv;
        parts[p].ntail = w - 8 * nv > 0 ? w - 8 * nv : 0;
        padded += 8 * nv + parts[p].ntail;
        used += w;
    }
    if (used != dim || start < 0 || stop < start || k < 1 || count < 0 || count > k) {
        PyErr_SetString(PyExc_ValueError, "widths must add up to len(q); 0 <= start <= stop; "
                                          "0 <= count <= k");
        goto done;
    }
    qpad = calloc(padded > 0 ? padded : 1, sizeof(float));
    if (!qpad) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const float *q = qv.buf;
        Py_ssize_t off = 0, at = 0;
        int tails = 0;
        for (Py_ssize_t p = 0; p < nparts; p++) {
            Py_ssize_t w = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, p));
            memcpy(qpad + at, q + off, w * sizeof(float));
            parts[p].q = qpad + at;
            parts[p].qtail = qpad + at + 8 * parts[p].nv;
            tails |= parts[p].ntail > 0;
            at += 8 * parts[p].nv + parts[p].ntail;
            off += w;
        }
        if (invobj != Py_None) {
            if (get_buffer(invobj, &invv, "inv", 'f', 1, 0) < 0) goto done;
            have_inv = 1;
            if (invv.shape[0] < stop) {
                PyErr_SetString(PyExc_ValueError, "inv is shorter than stop");
                goto done;
            }
            nm.inv = invv.buf;
        }
        if (colsobj != Py_None) {
            PyObject *blk;
            Py_ssize_t first, n;
            if (!PyArg_ParseTuple(colsobj, "Onn", &blk, &first, &n)) goto done;
            if (get_buffer(blk, &colv, "the norm block", 'f', 2, 0) < 0) goto done;
            have_cols = 1;
            if (first < 0 || n < 1 || n >= 8 || first + n > colv.shape[1] || colv.shape[0] < stop) {
                PyErr_SetString(PyExc_ValueError, "norm columns outside their block");
                goto done;
            }
            nm.cols = (const float *)colv.buf + first;
            nm.stride = colv.shape[1];
            nm.ncols = n;
        } else if (!nm.inv) {
            PyErr_SetString(PyExc_ValueError, "inv is needed when d is a multiple of 8");
            goto done;
        }
        if (get_buffer(idsobj, &idv, "ids", 'i', 1, 1) < 0) goto done;
        have_ids = 1;
        if (get_buffer(scoresobj, &scv, "scores", 'f', 1, 1) < 0) goto done;
        have_sc = 1;
        if (idv.shape[0] < k || scv.shape[0] < k) {
            PyErr_SetString(PyExc_ValueError, "ids and scores need room for k hits");
            goto done;
        }
        Py_ssize_t n = count;
        Py_BEGIN_ALLOW_THREADS;
        chosen(parts, (int)nparts, tails, &nm, start, stop, k, scv.buf, idv.buf, &n);
        Py_END_ALLOW_THREADS;
        result = PyLong_FromSsize_t(n);
    }
done:
    free(qpad);
    if (have_sc) PyBuffer_Release(&scv);
    if (have_ids) PyBuffer_Release(&idv);
    if (have_cols) PyBuffer_Release(&colv);
    if (have_inv) PyBuffer_Release(&invv);
    for (int i = 0; i < nviews; i++) PyBuffer_Release(&views[i]);
    PyBuffer_Release(&qv);
    return result;
}

static PyObject *py_kernel(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(chosen_name);
}

/* For the tests: run the baseline copy (or the best again) on this CPU. */
static PyObject *py_use_baseline(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    chosen = scan_base;
    chosen_name = "baseline";
#ifdef HAVE_AVX2
    if (!on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        chosen = scan_avx2;
        chosen_name = "avx2";
    }
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan", py_scan, METH_VARARGS, scan_doc},
    {"kernel", py_kernel, METH_NOARGS, "Which copy of the kernel runs: 'avx2' or 'baseline'."},
    {"use_baseline", py_use_baseline, METH_O, "use_baseline(True): the portable copy (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "Fused exact prefix scan (see _fused.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__fused(void) {
#ifdef HAVE_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        chosen = scan_avx2;
        chosen_name = "avx2";
    }
#endif
    return PyModule_Create(&module);
}
