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

/* One row's score, bitwise as the 8-row loop of scan_body computes it (the same lane order, see
 * hsum8): the rows past the last group of 8, and the float16 scan's exact re-score. */
static inline __attribute__((always_inline)) float exact_row(const part_t *parts, int nparts,
                                                             int tails, const norm_t *nm,
                                                             Py_ssize_t r) {
    v8 acc = {0};
    for (int p = 0; p < nparts; p++) {
        const float *x = parts[p].base + r * parts[p].stride;
        for (Py_ssize_t c = 0; c < parts[p].nv; c++)
            acc += loadu(x + 8 * c) * loadu(parts[p].q + 8 * c);
    }
    float s = hsum8(acc);
    if (tails) s += tail_dot(parts, nparts, r);
    return s * (nm->cols ? row_inv(nm, r) : nm->inv[r]);
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
    for (; r < b; r++) offer(hs, hi, hn, k, exact_row(parts, nparts, tails, nm, r), r);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2 1
__attribute__((target("avx2,fma"))) static void scan_avx2(
    const part_t *parts, int nparts, int tails, const norm_t *nm, Py_ssize_t a, Py_ssize_t b,
    Py_ssize_t k, float *hs, int64_t *hi, Py_ssize_t *hn) {
    scan_body(parts, nparts, tails, nm, a, b, k, hs, hi, hn);
}
#endif

/* Given rows' scores (a rerank's candidates), each as the scan computes it (exact_row), in the
 * same copy of the code as the scan (FMA or not), so a row scores bitwise as in a search. */
static inline __attribute__((always_inline)) void score_body(const part_t *parts, int nparts,
                                                             int tails, const norm_t *nm,
                                                             const int64_t *ids, Py_ssize_t n,
                                                             float *out) {
    for (Py_ssize_t i = 0; i < n; i++) out[i] = exact_row(parts, nparts, tails, nm, ids[i]);
}

static void score_base(const part_t *parts, int nparts, int tails, const norm_t *nm,
                       const int64_t *ids, Py_ssize_t n, float *out) {
    score_body(parts, nparts, tails, nm, ids, n, out);
}

#ifdef HAVE_AVX2
__attribute__((target("avx2,fma"))) static void score_avx2(const part_t *parts, int nparts,
                                                           int tails, const norm_t *nm,
                                                           const int64_t *ids, Py_ssize_t n,
                                                           float *out) {
    score_body(parts, nparts, tails, nm, ids, n, out);
}
#endif

/* ---------------------------------------------------------------- the float16 scan (AVX2+F16C)
 *
 * NestedIndex may keep a float16 mirror of its blocks: row r stored as h = fp16(x * sigma_r),
 * sigma_r a power of two that puts the row's largest |x| in [2^14, 2^15) (so nothing overflows
 * and little is subnormal), and rs_r = 1/sigma_r (0 for an all-zero row). The scan reads the
 * mirror (half the bytes), keeps every row whose approximate score could still reach the final
 * k-th exact score, and re-scores those from the float32 blocks with exact_row, so the heap ends
 * up holding exactly what scan_body's would: the top k of all rows by (score, lower id).
 *
 * The error bound. u = 2^-24 (float32), n = d + 8 (roundings along any dot path: d/8 per lane,
 * 3 in the lane tree, < 8 tail columns, the products), gamma = n*u / (1 - n*u). Let
 * P = sum |q_i x_i| over the prefix, inv the (stored or tail-corrected) inverse prefix norm, w = rs * inv.
 *   - fp16 rounding: |y_i - h_i| <= 2^-11 |y_i| for a normal half, <= 2^-25 (half the subnormal
 *     spacing) below 2^-14; so |rs*h_i - x_i| <= 2^-11 |x_i| + 2^-25 rs, and the real approximate
 *     dot differs from the real exact one by <= 2^-11 P + 2^-25 rs |q|_1.
 *   - accumulation: each computed dot is within gamma * sum |terms| of its real value (the exact
 *     one: gamma P; the approximate one, unscaled: gamma ((1 + 2^-11) P + 2^-25 rs |q|_1)).
 *   - Cauchy-Schwarz: P * inv <= |q_d| |x_d| inv <= |q_d| (1 + 32u) (inv is 1/|x_d| to a few
 *     roundings, or smaller where the TINY clamp applies).
 *   - the last products (dot * inv, dot * w, rs * inv) and the sums s +- e: a relative u each, of
 *     values below 2 |q_d| + the second term.
 * Together |approx - exact| <= C1 + C2 * w with
 *   C1 = |q_d| ((1 + 32u)(2^-11 + 2.001 gamma) + 8u),  C2 = 2^-25 |q|_1 (1 + gamma + 4u),
 * both taken 1/8 larger again (half_bounds) and rounded up to float32. A row is a candidate
 * unless approx + E < tau, where tau is the k-th largest of lower bounds of distinct rows: the
 * exact scores already in the heap (earlier calls) and approx - E of this call's rows, or the
 * heap's worst exact score after a re-score; tau never exceeds the final k-th exact score, so no
 * row of the final top k is dropped. Comparisons are written so a NaN would keep the row. */

#ifdef HAVE_AVX2
#include <immintrin.h>
#define HAVE_F16C 1

typedef struct {
    const uint16_t *base; /* the block's float16 mirror, first row */
    Py_ssize_t stride;    /* halves per row (a multiple of 8: the mirror is zero-padded) */
    const float *q;       /* the query's columns for this block, zero-padded to 8 * nv */
    Py_ssize_t nv;        /* 8-half vectors read per row */
} hpart_t;

#define CAND 256 /* candidates held before they are re-scored */

typedef struct {
    float *lb;      /* a min-heap of lower bounds of distinct rows, k at most */
    Py_ssize_t ln, k;
    float tau;      /* the row threshold: no final top-k row's exact score is below it */
    int64_t cid[CAND];
    float cup[CAND]; /* their upper bounds */
    Py_ssize_t nc;
} cand_t;

static void lb_offer(cand_t *c, float v) {
    if (!(v == v)) return;
    float *h = c->lb;
    if (c->ln < c->k) {
        Py_ssize_t i = c->ln++;
        while (i > 0) {
            Py_ssize_t p = (i - 1) / 2;
            if (!(v < h[p])) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = v;
    } else if (v > h[0]) {
        Py_ssize_t i = 0, n = c->ln;
        for (;;) {
            Py_ssize_t ch = 2 * i + 1;
            if (ch >= n) break;
            if (ch + 1 < n && h[ch + 1] < h[ch]) ch++;
            if (!(h[ch] < v)) break;
            h[i] = h[ch];
            i = ch;
        }
        h[i] = v;
    } else {
        return;
    }
    if (c->ln == c->k && h[0] > c->tau) c->tau = h[0];
}

static inline __attribute__((always_inline)) void flush(cand_t *c, const part_t *parts, int nparts,
                                                        int tails, const norm_t *nm, float *hs,
                                                        int64_t *hi, Py_ssize_t *hn) {
    for (Py_ssize_t j = 0; j < c->nc; j++)
        if (!(c->cup[j] < c->tau))
            offer(hs, hi, hn, c->k, exact_row(parts, nparts, tails, nm, c->cid[j]), c->cid[j]);
    c->nc = 0;
    if (*hn == c->k && hs[0] > c->tau) c->tau = hs[0];
}

static inline __attribute__((always_inline, target("avx2,fma,f16c"))) v8 loadh(const uint16_t *p) {
    return (v8)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* A row that may reach the top k: held for the re-score, its lower bound offered to tau. */
static inline __attribute__((always_inline)) void candidate(cand_t *c, Py_ssize_t r, float s,
                                                            float e, const part_t *parts,
                                                            int nparts, int tails,
                                                            const norm_t *nm, float *hs,
                                                            int64_t *hi, Py_ssize_t *hn) {
    c->cid[c->nc] = r;
    c->cup[c->nc++] = s + e;
    lb_offer(c, s - e);
    if (c->nc == CAND) flush(c, parts, nparts, tails, nm, hs, hi, hn);
}

__attribute__((target("avx2,fma,f16c"))) static void scan16_avx2(
    const hpart_t *hp, const float *rs, const part_t *parts, int nparts, int tails,
    const norm_t *nm, Py_ssize_t a, Py_ssize_t b, float c1, float c2, float *hs, int64_t *hi,
    Py_ssize_t *hn, cand_t *cs) {
    cs->ln = 0;
    cs->nc = 0;
    cs->tau = -INFINITY;
    for (Py_ssize_t i = 0; i < *hn; i++) lb_offer(cs, hs[i]); /* exact: their own bounds */
    Py_ssize_t width = 0;
    for (int p = 0; p < nparts; p++) width += 8 * hp[p].nv;
    Py_ssize_t ahead = AHEAD_BYTES / (2 * (width > 0 ? width : 1));
    ahead = ahead < ROWS ? ROWS : ahead > 64 ? 64 : ahead;
    const v8 c1v = {c1, c1, c1, c1, c1, c1, c1, c1}, c2v = {c2, c2, c2, c2, c2, c2, c2, c2};
    Py_ssize_t r = a;
    for (; r + ROWS <= b; r += ROWS) {
        v8 acc[ROWS];
        for (int i = 0; i < ROWS; i++) acc[i] = (v8){0};
        for (int p = 0; p < nparts; p++) {
            const uint16_t *x = hp[p].base + r * hp[p].stride;
            const Py_ssize_t st = hp[p].stride;
            const float *q = hp[p].q;
            for (Py_ssize_t c = 0; c < hp[p].nv; c++) {
                v8 qv = loadu(q + 8 * c);
                for (int i = 0; i < ROWS; i++) {
                    if ((c & 3) == 0) /* one 64-byte line per four 8-half reads */
                        __builtin_prefetch(x + (i + ahead) * st + 8 * c);
                    acc[i] += loadh(x + i * st + 8 * c) * qv;
                }
            }
        }
        v8 s = reduce8(acc), w;
        if (nm->cols) {
            for (int i = 0; i < ROWS; i++) w[i] = rs[r + i] * row_inv(nm, r + i);
        } else {
            w = loadu(rs + r) * loadu(nm->inv + r);
        }
        s *= w;
        v8 e = c1v + c2v * w;
        float t = cs->tau;
        v8i below = (s + e) < (v8){t, t, t, t, t, t, t, t};
        uint64_t m[4];
        memcpy(m, &below, sizeof m);
        if ((m[0] & m[1] & m[2] & m[3]) == UINT64_MAX) continue;
        for (int i = 0; i < ROWS; i++)
            if (!below[i]) candidate(cs, r + i, s[i], e[i], parts, nparts, tails, nm, hs, hi, hn);
    }
    for (; r < b; r++) {
        v8 acc = {0};
        for (int p = 0; p < nparts; p++) {
            const uint16_t *x = hp[p].base + r * hp[p].stride;
            for (Py_ssize_t c = 0; c < hp[p].nv; c++)
                acc += loadh(x + 8 * c) * loadu(hp[p].q + 8 * c);
        }
        float w = rs[r] * (nm->cols ? row_inv(nm, r) : nm->inv[r]);
        float s = hsum8(acc) * w, e = c1 + c2 * w;
        if (!(s + e < cs->tau)) candidate(cs, r, s, e, parts, nparts, tails, nm, hs, hi, hn);
    }
    flush(cs, parts, nparts, tails, nm, hs, hi, hn);
}

/* out[r, :w] = fp16(x[r, :w] * scale[r]), rounded to nearest even (numpy's own cast is ~10x
 * slower: it made the mirror cost as much as the rest of building the index). */
__attribute__((target("avx2,fma,f16c"))) static void to_half_avx2(
    const float *x, Py_ssize_t n, Py_ssize_t w, const float *scale, uint16_t *out,
    Py_ssize_t ostride) {
    for (Py_ssize_t r = 0; r < n; r++) {
        const float *src = x + r * w;
        uint16_t *dst = out + r * ostride;
        const __m256 sv = _mm256_set1_ps(scale[r]);
        Py_ssize_t c = 0;
        for (; c + 8 <= w; c += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + c), sv);
            _mm_storeu_si128((__m128i *)(dst + c),
                             _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        for (; c < w; c++)
            dst[c] = _cvtss_sh(src[c] * scale[r], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
}
#endif

/* C1 and C2 of the bound above for a query prefix q (d values), rounded up; 0 when the query is
 * too large for the float16 scan's arithmetic to stay finite (it then scans float32). */
static int half_bounds(const float *q, Py_ssize_t d, float *c1, float *c2) {
    double sq = 0.0, l1 = 0.0, mx = 0.0;
    for (Py_ssize_t i = 0; i < d; i++) {
        double v = fabs((double)q[i]);
        sq += v * v;
        l1 += v;
        mx = v > mx ? v : mx;
    }
    if (!(mx < 0x1p30)) return 0;
    const double u = 0x1p-24, n = (double)d + 8.0, gamma = n * u / (1.0 - n * u);
    double b1 = sqrt(sq) * ((1.0 + 32 * u) * (0x1p-11 + 2.001 * gamma) + 8 * u);
    double b2 = 0x1p-25 * l1 * (1.0 + gamma + 4 * u);
    /* 1/8 more for safety, and 2^-20 relative so the float32 rounding goes up */
    *c1 = (float)(b1 * 1.125 * (1.0 + 0x1p-20));
    *c2 = (float)(b2 * 1.125 * (1.0 + 0x1p-20));
    return 1;
}

static void scan_base(const part_t *parts, int nparts, int tails, const norm_t *nm, Py_ssize_t a,
                      Py_ssize_t b, Py_ssize_t k, float *hs, int64_t *hi, Py_ssize_t *hn) {
    scan_body(parts, nparts, tails, nm, a, b, k, hs, hi, hn);
}

typedef void (*scan_fn)(const part_t *, int, int, const norm_t *, Py_ssize_t, Py_ssize_t,
                        Py_ssize_t, float *, int64_t *, Py_ssize_t *);
static scan_fn chosen = scan_base;
typedef void (*score_fn)(const part_t *, int, int, const norm_t *, const int64_t *, Py_ssize_t,
                         float *);
static score_fn chosen_score = score_base;
static const char *chosen_name = "baseline";
static int half_ok = 0; /* the float16 scan may run: AVX2, FMA and F16C, and not use_baseline */

static int cpu_has_half(void) {
#ifdef HAVE_F16C
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------- Python glue */

#define MAX_PARTS 64

static int get_buffer(PyObject *obj, Py_buffer *view, const char *what, char kind, int ndim,
                      int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = view->ndim == ndim &&
             (kind == 'f'   ? (f[0] == 'f' && view->itemsize == 4)
              : kind == 'e' ? (f[0] == 'e' && view->itemsize == 2)
                            : ((f[0] == 'q' || f[0] == 'l') && view->itemsize == 8));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a %d-D C-contiguous %s array", what, ndim,
                     kind == 'f' ? "float32" : kind == 'e' ? "float16" : "int64");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The blocks' views and parts, the query zero-padded per part into *qpad (to free), *tails set
 * when a part has odd columns; every block must have `rows` rows. Returns 0, or -1 with an error
 * set; either way *nviews views are taken (to release). */
static int make_parts(PyObject *blocks, PyObject *widths, const Py_buffer *qv, Py_ssize_t rows,
                      Py_buffer *views, int *nviews, part_t *parts, float **qpad, int *tails) {
    Py_ssize_t nparts = PyTuple_GET_SIZE(blocks);
    if (nparts < 1 || nparts > MAX_PARTS || PyTuple_GET_SIZE(widths) != nparts) {
        PyErr_SetString(PyExc_ValueError, "blocks and widths: 1..64 of each, as many of both");
        return -1;
    }
    Py_ssize_t dim = qv->shape[0], used = 0, padded = 0;
    for (; *nviews < nparts; (*nviews)++) {
        if (get_buffer(PyTuple_GET_ITEM(blocks, *nviews), &views[*nviews], "a block", 'f', 2, 0) <
            0)
            return -1;
    }
    for (Py_ssize_t p = 0; p < nparts; p++) {
        Py_ssize_t w = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, p));
        if (w == -1 && PyErr_Occurred()) return -1;
        Py_ssize_t st = views[p].shape[1];
        if (w < 1 || w > st || views[p].shape[0] < rows) {
            PyErr_SetString(PyExc_ValueError, "a width is outside its block, or a block is short");
            return -1;
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
    if (used != dim) {
        PyErr_SetString(PyExc_ValueError, "widths must add up to len(q)");
        return -1;
    }
    *qpad = calloc(padded > 0 ? padded : 1, sizeof(float));
    if (!*qpad) {
        PyErr_NoMemory();
        return -1;
    }
    const float *q = qv->buf;
    Py_ssize_t off = 0, at = 0;
    *tails = 0;
    for (Py_ssize_t p = 0; p < nparts; p++) {
        Py_ssize_t w = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, p));
        memcpy(*qpad + at, q + off, w * sizeof(float));
        parts[p].q = *qpad + at;
        parts[p].qtail = *qpad + at + 8 * parts[p].nv;
        *tails |= parts[p].ntail > 0;
        at += 8 * parts[p].nv + parts[p].ntail;
        off += w;
    }
    return 0;
}

/* The inverse prefix norms (inv, norm_cols as scan takes them) of `rows` rows into *nm; the
 * views taken are flagged in *have_inv / *have_cols (to release). Returns 0, or -1 with an error
 * set. */
static int make_norm(PyObject *invobj, PyObject *colsobj, Py_ssize_t rows, Py_buffer *invv,
                     int *have_inv, Py_buffer *colv, int *have_cols, norm_t *nm) {
    if (invobj != Py_None) {
        if (get_buffer(invobj, invv, "inv", 'f', 1, 0) < 0) return -1;
        *have_inv = 1;
        if (invv->shape[0] < rows) {
            PyErr_SetString(PyExc_ValueError, "inv is shorter than the rows");
            return -1;
        }
        nm->inv = invv->buf;
    }
    if (colsobj != Py_None) {
        PyObject *blk;
        Py_ssize_t first, n;
        if (!PyArg_ParseTuple(colsobj, "Onn", &blk, &first, &n)) return -1;
        if (get_buffer(blk, colv, "the norm block", 'f', 2, 0) < 0) return -1;
        *have_cols = 1;
        if (first < 0 || n < 1 || n >= 8 || first + n > colv->shape[1] || colv->shape[0] < rows) {
            PyErr_SetString(PyExc_ValueError, "norm columns outside their block");
            return -1;
        }
        nm->cols = (const float *)colv->buf + first;
        nm->stride = colv->shape[1];
        nm->ncols = n;
    } else if (!nm->inv) {
        PyErr_SetString(PyExc_ValueError, "inv is needed when d is a multiple of 8");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
             "scan(blocks, widths, q, inv, norm_cols, start, stop, k, ids, scores, count[, half])"
             " -> count\n\n"
             "Rows start..stop (ascending) into a running top-k of dot(x[:d], q) * 1/|x[:d]|.\n"
             "blocks: 2-D float32 column blocks in order; widths: columns used of each (they add\n"
             "up to d = len(q)); inv: stored 1/|x[:g*8]| per row (None if g == 0); norm_cols:\n"
             "None when d is a multiple of 8, else (block, first column, count) of the columns\n"
             "past g*8; ids/scores: the top-k heap, its first `count` entries filled; returns the\n"
             "new count. The heap is unsorted; rows tying the worst kept hit do not enter.\n"
             "half: None, or (mirror, rscale): the blocks' float16 mirror (row r scaled by\n"
             "1/rscale[r], each zero-padded to a multiple of 8 columns) and rscale (float32 per\n"
             "row); where the CPU has F16C the mirror is scanned and the rows that may reach\n"
             "the top k re-scored from the blocks: the same heap as without it.");

static PyObject *py_scan(PyObject *self, PyObject *args) {
    PyObject *blocks, *widths, *qobj, *invobj, *colsobj, *idsobj, *scoresobj, *halfobj = Py_None;
    Py_ssize_t start, stop, k, count;
    if (!PyArg_ParseTuple(args, "O!O!OOOnnnOOn|O", &PyTuple_Type, &blocks, &PyTuple_Type,
                          &widths, &qobj, &invobj, &colsobj, &start, &stop, &k, &idsobj,
                          &scoresobj, &count, &halfobj))
        return NULL;
    Py_ssize_t nparts = PyTuple_GET_SIZE(blocks);
    Py_buffer views[MAX_PARTS], qv, invv, colv, idv, scv;
    int nviews = 0, have_inv = 0, have_cols = 0, have_ids = 0, have_sc = 0;
    PyObject *result = NULL;
    float *qpad = NULL;
#ifdef HAVE_F16C
    Py_buffer hviews[MAX_PARTS], rsv;
    int nhviews = 0, have_rs = 0;
    hpart_t hparts[MAX_PARTS];
    float *hqpad = NULL;
    cand_t *cs = NULL;
#endif
    part_t parts[MAX_PARTS];
    norm_t nm = {NULL, NULL, 0, 0};

    if (get_buffer(qobj, &qv, "q", 'f', 1, 0) < 0) return NULL;
    Py_ssize_t dim = qv.shape[0];
    int tails = 0;
    if (start < 0 || stop < start || k < 1 || count < 0 || count > k) {
        PyErr_SetString(PyExc_ValueError, "0 <= start <= stop; 0 <= count <= k");
        goto done;
    }
    if (make_parts(blocks, widths, &qv, stop, views, &nviews, parts, &qpad, &tails) < 0) goto done;
    {
        const float *q = qv.buf;
        if (make_norm(invobj, colsobj, stop, &invv, &have_inv, &colv, &have_cols, &nm) < 0)
            goto done;
        if (get_buffer(idsobj, &idv, "ids", 'i', 1, 1) < 0) goto done;
        have_ids = 1;
        if (get_buffer(scoresobj, &scv, "scores", 'f', 1, 1) < 0) goto done;
        have_sc = 1;
        if (idv.shape[0] < k || scv.shape[0] < k) {
            PyErr_SetString(PyExc_ValueError, "ids and scores need room for k hits");
            goto done;
        }
        Py_ssize_t n = count;
        float c1, c2;
        if (halfobj != Py_None && half_ok && half_bounds(q, dim, &c1, &c2)) {
#ifdef HAVE_F16C
            PyObject *mirror, *rsobj;
            if (!PyArg_ParseTuple(halfobj, "O!O", &PyTuple_Type, &mirror, &rsobj)) goto done;
            if (PyTuple_GET_SIZE(mirror) != nparts) {
                PyErr_SetString(PyExc_ValueError, "the mirror needs as many blocks as blocks");
                goto done;
            }
            if (get_buffer(rsobj, &rsv, "rscale", 'f', 1, 0) < 0) goto done;
            have_rs = 1;
            if (rsv.shape[0] < stop) {
                PyErr_SetString(PyExc_ValueError, "rscale is shorter than stop");
                goto done;
            }
            Py_ssize_t hpadded = 0;
            for (; nhviews < nparts; nhviews++) {
                Py_buffer *hv = &hviews[nhviews];
                if (get_buffer(PyTuple_GET_ITEM(mirror, nhviews), hv, "a mirror block", 'e', 2,
                               0) < 0)
                    goto done;
                Py_ssize_t w = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, nhviews));
                Py_ssize_t nv = (w + 7) / 8;
                if (hv->shape[0] < stop || hv->shape[1] < 8 * nv) {
                    PyErr_SetString(PyExc_ValueError, "a mirror block is short or narrow");
                    nhviews++;
                    goto done;
                }
                hparts[nhviews].base = hv->buf;
                hparts[nhviews].stride = hv->shape[1];
                hparts[nhviews].nv = nv;
                hpadded += 8 * nv;
            }
            hqpad = calloc(hpadded > 0 ? hpadded : 1, sizeof(float));
            cs = malloc(sizeof(cand_t) + k * sizeof(float));
            if (!hqpad || !cs) {
                PyErr_NoMemory();
                goto done;
            }
            cs->lb = (float *)(cs + 1);
            cs->k = k;
            Py_ssize_t off = 0, at = 0;
            for (Py_ssize_t p = 0; p < nparts; p++) {
                Py_ssize_t w = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, p));
                memcpy(hqpad + at, q + off, w * sizeof(float));
                hparts[p].q = hqpad + at;
                at += 8 * hparts[p].nv;
                off += w;
            }
            Py_BEGIN_ALLOW_THREADS;
            scan16_avx2(hparts, rsv.buf, parts, (int)nparts, tails, &nm, start, stop, c1, c2,
                        scv.buf, idv.buf, &n, cs);
            Py_END_ALLOW_THREADS;
#endif
        } else {
            Py_BEGIN_ALLOW_THREADS;
            chosen(parts, (int)nparts, tails, &nm, start, stop, k, scv.buf, idv.buf, &n);
            Py_END_ALLOW_THREADS;
        }
        result = PyLong_FromSsize_t(n);
    }
done:
#ifdef HAVE_F16C
    free(cs);
    free(hqpad);
    if (have_rs) PyBuffer_Release(&rsv);
    for (int i = 0; i < nhviews; i++) PyBuffer_Release(&hviews[i]);
#endif
    free(qpad);
    if (have_sc) PyBuffer_Release(&scv);
    if (have_ids) PyBuffer_Release(&idv);
    if (have_cols) PyBuffer_Release(&colv);
    if (have_inv) PyBuffer_Release(&invv);
    for (int i = 0; i < nviews; i++) PyBuffer_Release(&views[i]);
    PyBuffer_Release(&qv);
    return result;
}

PyDoc_STRVAR(score_doc,
             "score(blocks, widths, q, inv, norm_cols, ids, out) -> None\n\n"
             "out[i] = dot(x[ids[i], :d], q) * 1/|x[ids[i], :d]|, each as scan scores the row\n"
             "(bitwise); blocks, widths, q, inv, norm_cols as scan takes them; ids int64, out\n"
             "float32, as long as ids; every id must be a row of every block.");

static PyObject *py_score(PyObject *self, PyObject *args) {
    PyObject *blocks, *widths, *qobj, *invobj, *colsobj, *idsobj, *outobj;
    if (!PyArg_ParseTuple(args, "O!O!OOOOO", &PyTuple_Type, &blocks, &PyTuple_Type, &widths,
                          &qobj, &invobj, &colsobj, &idsobj, &outobj))
        return NULL;
    Py_buffer views[MAX_PARTS], qv, invv, colv, idv, outv;
    int nviews = 0, have_inv = 0, have_cols = 0, have_ids = 0, have_out = 0, tails = 0;
    PyObject *result = NULL;
    float *qpad = NULL;
    part_t parts[MAX_PARTS];
    norm_t nm = {NULL, NULL, 0, 0};
    if (get_buffer(qobj, &qv, "q", 'f', 1, 0) < 0) return NULL;
    if (get_buffer(idsobj, &idv, "ids", 'i', 1, 0) < 0) goto done;
    have_ids = 1;
    if (get_buffer(outobj, &outv, "out", 'f', 1, 1) < 0) goto done;
    have_out = 1;
    Py_ssize_t n = idv.shape[0], rows = 0;
    const int64_t *ids = idv.buf;
    if (outv.shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "out must be as long as ids");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ids[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "ids must not be negative");
            goto done;
        }
        if (ids[i] >= rows) rows = ids[i] + 1;
    }
    if (make_parts(blocks, widths, &qv, rows, views, &nviews, parts, &qpad, &tails) < 0) goto done;
    if (make_norm(invobj, colsobj, rows, &invv, &have_inv, &colv, &have_cols, &nm) < 0) goto done;
    chosen_score(parts, (int)PyTuple_GET_SIZE(blocks), tails, &nm, ids, n, outv.buf);
    result = Py_None;
    Py_INCREF(result);
done:
    free(qpad);
    if (have_cols) PyBuffer_Release(&colv);
    if (have_inv) PyBuffer_Release(&invv);
    for (int i = 0; i < nviews; i++) PyBuffer_Release(&views[i]);
    if (have_out) PyBuffer_Release(&outv);
    if (have_ids) PyBuffer_Release(&idv);
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
    chosen_score = score_base;
    chosen_name = "baseline";
    half_ok = 0;
#ifdef HAVE_AVX2
    if (!on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        chosen = scan_avx2;
        chosen_score = score_avx2;
        chosen_name = "avx2";
        half_ok = cpu_has_half();
    }
#endif
    Py_RETURN_NONE;
}

static PyObject *py_half(PyObject *self, PyObject *unused) { return PyBool_FromLong(half_ok); }

static PyObject *py_to_half(PyObject *self, PyObject *args) {
    PyObject *xobj, *sobj, *oobj;
    if (!PyArg_ParseTuple(args, "OOO", &xobj, &sobj, &oobj)) return NULL;
    if (!half_ok) {
        PyErr_SetString(PyExc_RuntimeError, "no float16 conversion here (AVX2, FMA and F16C)");
        return NULL;
    }
    Py_buffer xv, sv, ov;
    if (get_buffer(xobj, &xv, "x", 'f', 2, 0) < 0) return NULL;
    if (get_buffer(sobj, &sv, "scale", 'f', 1, 0) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    if (get_buffer(oobj, &ov, "out", 'e', 2, 1) < 0) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&xv);
        return NULL;
    }
    PyObject *result = NULL;
    if (sv.shape[0] != xv.shape[0] || ov.shape[0] != xv.shape[0] || ov.shape[1] < xv.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "x, scale and out: as many rows; out as wide as x");
    } else {
#ifdef HAVE_F16C
        Py_BEGIN_ALLOW_THREADS;
        to_half_avx2(xv.buf, xv.shape[0], xv.shape[1], sv.buf, ov.buf, ov.shape[1]);
        Py_END_ALLOW_THREADS;
#endif
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&ov);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&xv);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", py_scan, METH_VARARGS, scan_doc},
    {"score", py_score, METH_VARARGS, score_doc},
    {"kernel", py_kernel, METH_NOARGS, "Which copy of the kernel runs: 'avx2' or 'baseline'."},
    {"use_baseline", py_use_baseline, METH_O, "use_baseline(True): the portable copy (tests)."},
    {"half", py_half, METH_NOARGS, "Whether scan's float16 mirror is used here (AVX2+F16C)."},
    {"to_half", py_to_half, METH_VARARGS,
     "to_half(x, scale, out): out[r, :w] = float16(x[r] * scale[r]), x (n, w) float32."},
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
        chosen_score = score_avx2;
        chosen_name = "avx2";
        half_ok = cpu_has_half();
    }
#endif
    return PyModule_Create(&module);
}
