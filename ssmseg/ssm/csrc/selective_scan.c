/* Fused selective scan for the CPU: forward and backward, the plan of mamba-ssm's CUDA kernel.
 *
 * One row = one (batch, channel) pair, scanned sequentially over the length with its N states in
 * registers (the inner loops over n are vectorised). The forward stores the state every K steps; the
 * backward walks the chunks in reverse, recomputes each chunk's states from its checkpoint (one exp per
 * element, as in the forward) and runs the reverse recurrence. No (B, D, L, N) tensor ever exists.
 *
 * Threads are the caller's: each call handles rows [r0, r1) and writes the gradients that several rows
 * share (dA, dD, d(delta_bias), dB, dC) into its own partial buffer, which the caller sums.
 * Plain C99, no torch headers, so it builds in well under a second. Layouts (all float32, contiguous):
 *   u, delta, z, out, du, ddelta, dz, dout: (batch, dim, L)       A: (dim, N)      D, bias: (dim)
 *   B, C element (b, g, t, n) at b*sb + g*sg + t*st + n, group g = d / dpg (channels per group); a
 *   time-invariant (dim, N) matrix is sb = st = 0, sg = N, dpg = 1.   ckpt: (batch, dim, ceil(L/K), N)   last: (batch, dim, N)
 */
#include <math.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

/* Flush denormals to zero while a kernel runs (and restore the caller's mode): a state or output below
 * 1e-38 otherwise costs a microcode assist per operation, measured as +20 ms on one pass over S2. */
#if defined(__SSE2__)
#define FTZ_BEGIN unsigned int saved_csr_ = _mm_getcsr(); _mm_setcsr(saved_csr_ | 0x8040u);
#define FTZ_END _mm_setcsr(saved_csr_);
#else
#define FTZ_BEGIN
#define FTZ_END
#endif

#define MAXN 256
#define CHUNK_MAX 64 /* largest checkpoint interval K the stack buffers hold */

/* exp with a polynomial on [-ln2/2, ln2/2] and an exponent built from bits: about 3 ulp,
 * vectorises without a vector math library. Inputs below -87.3 give ~1e-38 rather than 0. */
static inline float exp_approx(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    float k = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693145751953125f - k * 1.428606765330187045e-06f;
    /* Degree-5 minimax fit of exp on the reduced range: 1.7e-7 relative error in float32, one FMA less
     * than the degree-6 Taylor series of the same accuracy. */
    float p = 8.2903158489e-03f;
    p = p * r + 4.1897932302e-02f;
    p = p * r + 1.6667636187e-01f;
    p = p * r + 4.9999149505e-01f;
    p = p * r + 9.9999970719e-01f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)k + 127) << 23};
    return p * scale.f;
}

/* log(v) for v > 0: mantissa in [sqrt(1/2), sqrt(2)), then 2 atanh(f / (2 + f)) as an odd series. */
static inline float log_approx(float v) {
    union {
        float f;
        int32_t i;
    } bits = {.f = v};
    float e = (float)(((bits.i >> 23) & 0xff) - 127);
    bits.i = (bits.i & 0x007fffff) | 0x3f800000;
    float m = bits.f;
    int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e = big ? e + 1.0f : e;
    float f = m - 1.0f, s = f / (2.0f + f), s2 = s * s;
    float p = s2 * (1.0f / 9.0f) + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return e * 0.693147180559945f + 2.0f * s * p;
}

/* log(1 + y) for y >= 0 without losing small y: log(w) y / (w - 1) with w = 1 + y rounded. */
static inline float softplus(float x) {
    float y = exp_approx(-fabsf(x)), w = 1.0f + y;
    float l = w == 1.0f ? y : log_approx(w) * y / (w - 1.0f);
    return (x > 0.0f ? x : 0.0f) + l;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/* dt for a whole row, vectorised before the recurrence (per step it would double the time). */
static void row_dt(const float *restrict delta, i64 L, float bias, int use_softplus, float *restrict dt) {
#pragma omp simd
    for (i64 t = 0; t < L; ++t) {
        float v = delta[t] + bias;
        dt[t] = use_softplus ? softplus(v) : v;
    }
}

/* sigmoid over a row (the z gate and the softplus derivative), vectorised. */
static void row_sigmoid(const float *restrict x, i64 L, float bias, float *restrict out) {
#pragma omp simd
    for (i64 t = 0; t < L; ++t) out[t] = sigmoid(x[t] + bias);
}

/* out *= silu(z) over a row (restrict: without it GCC guards the vector loop with an overlap test and
 * this loop ran at scalar speed). */
static void gate_row(float *restrict out, const float *restrict z, i64 L) {
#pragma omp simd
    for (i64 t = 0; t < L; ++t) out[t] *= z[t] * sigmoid(z[t]);
}

/* Common state sizes get their own copy of the row loops, with N a constant: the states then live in
 * registers and the inner loops need no remainder handling. */
#define DISPATCH_N(ROW)           \
    switch (N) {                  \
    case 4: ROW(4); break;        \
    case 8: ROW(8); break;        \
    case 16: ROW(16); break;      \
    case 32: ROW(32); break;      \
    default: ROW(N); break;       \
    }

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Forward recurrence of one row; checkpoints the state every K steps. */
ALWAYS_INLINE void fwd_row(const i64 N, i64 L, i64 K, const float *restrict dt, const float *restrict ur,
                           const float *restrict Ar, const float *restrict Bp, i64 sBt,
                           const float *restrict Cp, i64 sCt, float Dd, float *restrict ck,
                           float *restrict outr, float *restrict last) {
    float x[MAXN];
    for (i64 n = 0; n < N; ++n) x[n] = 0.0f;
    /* The decays of a chunk first, in one flat loop (pure throughput), then the recurrence: interleaved,
     * the exp and the dependent update compete for the same ports and the step was 30% slower. */
    float as_[CHUNK_MAX * MAXN];
    for (i64 t0 = 0; t0 < L; t0 += K) {
        memcpy(ck + (t0 / K) * N, x, sizeof(float) * (size_t)N);
        i64 t1 = t0 + K < L ? t0 + K : L;
        for (i64 t = t0; t < t1; ++t) {
            float dtt = dt[t];
            float *at = as_ + (t - t0) * N;
#pragma omp simd
            for (i64 n = 0; n < N; ++n) at[n] = exp_approx(dtt * Ar[n]);
        }
        for (i64 t = t0; t < t1; ++t) {
            const float *Bt = Bp + t * sBt, *Ct = Cp + t * sCt, *at = as_ + (t - t0) * N;
            float dtu = dt[t] * ur[t], y = 0.0f;
#pragma omp simd reduction(+ : y)
            for (i64 n = 0; n < N; ++n) {
                x[n] = at[n] * x[n] + dtu * Bt[n];
                y += x[n] * Ct[n];
            }
            outr[t] = y + Dd * ur[t];
        }
    }
    memcpy(last, x, sizeof(float) * (size_t)N);
}

int ssm_forward(i64 batch, i64 dim, i64 L, i64 N, i64 dpgB, i64 dpgC, const float *u, const float *delta,
                const float *A, const float *B, i64 sBb, i64 sBg, i64 sBt, const float *C, i64 sCb,
                i64 sCg, i64 sCt, const float *D, const float *z, const float *bias, int use_softplus,
                i64 K, float *out, float *last, float *ckpt, i64 r0, i64 r1) {
    if (N > MAXN || K > CHUNK_MAX) return -1;
    (void)batch;
    i64 nck = (L + K - 1) / K;
    float *dt = (float *)malloc(sizeof(float) * (size_t)(L > 0 ? L : 1));
    if (!dt) return -2;
    FTZ_BEGIN
    for (i64 r = r0; r < r1; ++r) {
        i64 b = r / dim, d = r % dim, gB = d / dpgB, gC = d / dpgC;
        const float *ur = u + r * L, *Ar = A + d * N;
        const float *Bp = B + b * sBb + gB * sBg, *Cp = C + b * sCb + gC * sCg;
        float Dd = D ? D[d] : 0.0f;
        row_dt(delta + r * L, L, bias ? bias[d] : 0.0f, use_softplus, dt);
        float *outr = out + r * L, *ck = ckpt + r * nck * N, *lr = last + r * N;
#define FWD_ROW(NN) fwd_row(NN, L, K, dt, ur, Ar, Bp, sBt, Cp, sCt, Dd, ck, outr, lr)
        DISPATCH_N(FWD_ROW)
#undef FWD_ROW
        if (z) gate_row(outr, z + r * L, L);
    }
    free(dt);
    FTZ_END
    return 0;
}

/* The recompute of one chunk: decays a_t = exp(dt A) for every step first, then x_t = a_t x_{t-1} + dt u B_t. */
static inline void chunk_states(i64 N, i64 n_steps, const float *restrict dt, const float *restrict ur,
                                const float *restrict Ar, const float *restrict Bp, i64 sBt,
                                const float *restrict x0, float *restrict xs, float *restrict as) {
    for (i64 t = 0; t < n_steps; ++t) {
        float dtt = dt[t];
        float *at = as + t * N;
#pragma omp simd
        for (i64 n = 0; n < N; ++n) at[n] = exp_approx(dtt * Ar[n]);
    }
    for (i64 t = 0; t < n_steps; ++t) {
        const float *Bt = Bp + t * sBt, *xp = t ? xs + (t - 1) * N : x0, *at = as + t * N;
        float *xt = xs + t * N;
        float dtu = dt[t] * ur[t];
#pragma omp simd
        for (i64 n = 0; n < N; ++n) xt[n] = at[n] * xp[n] + dtu * Bt[n];
    }
}

/* Backward of one row. dBp/dCp point at the row's gradient (stepped by sBt/sCt over time when B/C vary
 * with time, else a local N-vector accumulated over every step); dAl is written, dDl/dbl added to. */
ALWAYS_INLINE void bwd_row(const i64 N, i64 L, i64 K, const float *restrict dt, const float *restrict ur,
                           const float *restrict Ar, const float *restrict Bp, i64 sBt,
                           const float *restrict Cp, i64 sCt, float *restrict dBp, float *restrict dCp,
                           float Dd, const float *restrict zr, const float *restrict sz,
                           const float *restrict sd, int use_softplus, const float *restrict ck,
                           const float *restrict doutr, float *restrict dur, float *restrict ddr,
                           float *restrict dzr, float *restrict xs, float *restrict as,
                           float *restrict dAl, float *dDl, float *dbl) {
    float h[MAXN];
    for (i64 n = 0; n < N; ++n) h[n] = dAl[n] = 0.0f;
    if (!sBt)
        for (i64 n = 0; n < N; ++n) dBp[n] = 0.0f;
    if (!sCt)
        for (i64 n = 0; n < N; ++n) dCp[n] = 0.0f;
    float dD = 0.0f, db = 0.0f;
    i64 nck = (L + K - 1) / K;
    for (i64 k = nck - 1; k >= 0; --k) {
        i64 t0 = k * K, t1 = t0 + K < L ? t0 + K : L;
        const float *x0 = ck + k * N;
        /* Recompute the chunk's states and decays from its checkpoint. */
        chunk_states(N, t1 - t0, dt + t0, ur + t0, Ar, Bp + t0 * sBt, sBt, x0, xs, as);
        /* Reverse recurrence: g_t = dy_t C_t + a_{t+1} g_{t+1}, with h = a_{t+1} g_{t+1}. */
        for (i64 t = t1 - 1; t >= t0; --t) {
            const float *Bt = Bp + t * sBt, *Ct = Cp + t * sCt;
            const float *xt = xs + (t - t0) * N, *at = as + (t - t0) * N;
            const float *xp = t == t0 ? x0 : xs + (t - 1 - t0) * N;
            float dtt = dt[t], ut = ur[t], dy = doutr[t];
            if (zr) {
                float y = Dd * ut;
#pragma omp simd reduction(+ : y)
                for (i64 n = 0; n < N; ++n) y += Ct[n] * xt[n];
                float zt = zr[t], sg = sz[t];
                dzr[t] = dy * y * sg * (1.0f + zt * (1.0f - sg));
                dy *= zt * sg;
            }
            dD += dy * ut;
            float sum_aA = 0.0f, sum_gB = 0.0f, dtu = dtt * ut;
            float *dBt = dBp + t * sBt, *dCt = dCp + t * sCt;
#pragma omp simd reduction(+ : sum_aA, sum_gB)
            for (i64 n = 0; n < N; ++n) {
                float gn = dy * Ct[n] + h[n];
                float da = gn * xp[n] * at[n];
                dCt[n] += dy * xt[n];
                sum_aA += da * Ar[n];
                sum_gB += gn * Bt[n];
                dAl[n] += da * dtt;
                dBt[n] += gn * dtu;
                h[n] = gn * at[n];
            }
            dur[t] = dy * Dd + dtt * sum_gB;
            float ddt = sum_aA + ut * sum_gB;
            if (use_softplus) ddt *= sd[t];
            ddr[t] = ddt;
            db += ddt;
        }
    }
    *dDl += dD;
    *dbl += db;
}

/* Partial buffers: dA (dim, N), dD (dim), dbias (dim); dB, dC laid out like B, C (or (dim, N)). */
int ssm_backward(i64 batch, i64 dim, i64 L, i64 N, i64 dpgB, i64 dpgC, const float *u, const float *delta,
                 const float *A, const float *B, i64 sBb, i64 sBg, i64 sBt, const float *C, i64 sCb,
                 i64 sCg, i64 sCt, const float *D, const float *z, const float *bias, int use_softplus,
                 i64 K, const float *ckpt, const float *dout, float *du, float *ddelta, float *dz,
                 float *dA, float *dB, float *dC, float *dD, float *dbias, i64 r0, i64 r1) {
    if (N > MAXN) return -1;
    (void)batch;
    i64 nck = (L + K - 1) / K;
    size_t Lb = (size_t)(L > 0 ? L : 1);
    float *dt = (float *)malloc(sizeof(float) * Lb), *sz = (float *)malloc(sizeof(float) * Lb);
    float *sd = (float *)malloc(sizeof(float) * Lb);
    float *xs = (float *)malloc(sizeof(float) * (size_t)(K * N));
    float *as = (float *)malloc(sizeof(float) * (size_t)(K * N));
    if (!dt || !sz || !sd || !xs || !as) {
        free(dt), free(sz), free(sd), free(xs), free(as);
        return -2;
    }
    FTZ_BEGIN
    /* A time-invariant B (or C) has one gradient row per channel: keep it local, add it once. */
    int Bvar = sBt != 0, Cvar = sCt != 0;
    for (i64 r = r0; r < r1; ++r) {
        i64 b = r / dim, d = r % dim, gB = d / dpgB, gC = d / dpgC;
        const float *ur = u + r * L, *Ar = A + d * N, *dr = delta + r * L;
        const float *Bp = B + b * sBb + gB * sBg, *Cp = C + b * sCb + gC * sCg;
        float *dBp = dB + b * sBb + gB * sBg, *dCp = dC + b * sCb + gC * sCg;
        float Dd = D ? D[d] : 0.0f, bd = bias ? bias[d] : 0.0f;
        row_dt(dr, L, bd, use_softplus, dt);
        if (z) row_sigmoid(z + r * L, L, 0.0f, sz);
        if (use_softplus) row_sigmoid(dr, L, bd, sd);
        float dAl[MAXN], dBl[MAXN], dCl[MAXN], dDl = 0.0f, dbl = 0.0f;
        const float *zr = z ? z + r * L : NULL;
        float *dzr = z ? dz + r * L : NULL;
#define BWD_ROW(NN)                                                                                        \
    bwd_row(NN, L, K, dt, ur, Ar, Bp, sBt, Cp, sCt, Bvar ? dBp : dBl, Cvar ? dCp : dCl, Dd, zr, sz, sd,    \
            use_softplus, ckpt + r * nck * N, dout + r * L, du + r * L, ddelta + r * L, dzr, xs, as, dAl, \
            &dDl, &dbl)
        DISPATCH_N(BWD_ROW)
#undef BWD_ROW
        for (i64 n = 0; n < N; ++n) dA[d * N + n] += dAl[n];
        if (!Bvar)
            for (i64 n = 0; n < N; ++n) dBp[n] += dBl[n];
        if (!Cvar)
            for (i64 n = 0; n < N; ++n) dCp[n] += dCl[n];
        dD[d] += dDl;
        dbias[d] += dbl;
    }
    free(dt), free(sz), free(sd), free(xs), free(as);
    FTZ_END
    return 0;
}
