/* RNNsearch's per-step work in a few fused loops, for float32 on the CPU (mtkit/kernels/native.py builds it).

   Under torch every step of the recurrence is some thirty small kernels, each reading and writing
   whole (B, S, A) or (B, H) tensors; here each is one pass that keeps its values in registers, and
   padded source positions are skipped rather than computed and masked. Matrix products stay in
   torch. Layouts are row-major and contiguous; G queries read each memory row (the beams of a
   sentence; G = 1 in training). Every row of mask has at least one real token. The training loss's
   per-row work (mtkit/loss.py) is here too: the same idea, one pass per row while it is in L1.

   Compiled without -ffast-math (native.py says which flags, and why): a NaN or an infinity in the
   inputs comes out as it does from the same equations in torch ops. Padding is skipped, not masked
   with infinities.

   Each function splits its rows over `threads` OpenMP threads (the caller passes torch's thread
   count; built with -fopenmp, the library shares torch's own OpenMP runtime and its warm threads).
   Every output element, and every sum a gradient accumulates, is written by one thread in a fixed
   order, so the results are the same bits for any thread count. The work of a range of rows is a
   function of its own, called by each thread on its share: a loop written inside the parallel
   region would lose its pointers' `restrict` (gcc outlines the region) and with it vectorisation,
   which made one thread twice as slow. Without -fopenmp the pragmas are ignored: one thread. */

#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* glibc's vector tanhf and expf (libmvec, 2.35 on), which its math.h declares under -ffast-math only: declared
   here so that the loops calling them vectorise without -ffast-math's assumption of finite numbers. libmvec
   handles NaN and infinities (within 4 ulp elsewhere). */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
float tanhf(float) __attribute__((__simd__("notinbranch")));
float expf(float) __attribute__((__simd__("notinbranch")));
#endif
#endif

/* Below this many float operations a call stays on one thread: a team costs a few microseconds. */
#define MTK_SPLIT_MIN 32768

/* This thread's share [*lo, *hi) of count rows, in a parallel region (all of them outside one). */
static void share(int64_t count, int64_t *lo, int64_t *hi)
{
#ifdef _OPENMP
    const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
#else
    const int64_t t = 0, k = 1;
#endif
    *lo = count * t / k;
    *hi = count * (t + 1) / k;
}

/* alpha (N, S) and context (N, K) of additive attention for queries q (N, A), N = B * G:
   e_s = v . tanh(q + k_s) on real s; alpha = softmax(e) (0 on padding); context = sum_s alpha_s h_s. */
static void additive_forward_rows(int64_t lo, int64_t hi, int64_t G, int64_t S, int64_t A, int64_t K,
                                  const float *restrict q, const float *restrict keys, const float *restrict v,
                                  const uint8_t *restrict mask, const float *restrict states, float *restrict alpha,
                                  float *restrict context)
{
    for (int64_t n = lo; n < hi; n++) {
        const int64_t b = n / G;
        const float *qn = q + n * A;
        const uint8_t *mb = mask + b * S;
        float *an = alpha + n * S;
        float best = 0.0f;
        int first = 1;
        for (int64_t s = 0; s < S; s++) {
            if (!mb[s]) {
                an[s] = 0.0f;
                continue;
            }
            const float *ks = keys + (b * S + s) * A;
            float e = 0.0f;
            for (int64_t a = 0; a < A; a++)
                e += v[a] * tanhf(qn[a] + ks[a]);
            an[s] = e;
            if (first || e > best) {
                best = e;
                first = 0;
            }
        }
        float total = 0.0f;
        for (int64_t s = 0; s < S; s++) {
            const float x = mb[s] ? expf(an[s] - best) : 0.0f;
            an[s] = x;
            total += x;
        }
        const float inverse = 1.0f / total;
        for (int64_t s = 0; s < S; s++)
            an[s] *= inverse;
        float *cn = context + n * K;
        memset(cn, 0, (size_t)K * sizeof(float));
        for (int64_t s = 0; s < S; s++) {
            if (!mb[s])
                continue;
            const float w = an[s];
            const float *hs = states + (b * S + s) * K;
            for (int64_t k = 0; k < K; k++)
                cn[k] += w * hs[k];
        }
    }
}

void mtk_additive_forward(int64_t threads, int64_t B, int64_t G, int64_t S, int64_t A, int64_t K,
                          const float *q, const float *keys, const float *v, const uint8_t *mask, const float *states,
                          float *alpha, float *context)
{
#pragma omp parallel num_threads(threads) if (threads > 1 && B * G * S * (A + K) >= MTK_SPLIT_MIN)
    {
        int64_t lo, hi;
        share(B * G, &lo, &hi);
        additive_forward_rows(lo, hi, G, S, A, K, q, keys, v, mask, states, alpha, context);
    }
}

/* The backward of mtk_additive_forward for one step, given d_context (N, K) and, or NULL, d_alpha_in (N, S):
   writes d_q (N, A); adds to d_v_rows (N, A) += sum_s de tanh, v's gradient by query row (the caller sums the
   rows once after all steps), de_sum (B, S) += de and de_tanh2 (B, S, A) += de * tanh^2, from which the caller
   makes the keys' gradient, v * (de_sum - de_tanh2), once after all steps. Threads split the sentences b, so
   each sentence's sums are added by one thread. */
static void additive_backward_rows(int64_t lo, int64_t hi, int64_t G, int64_t S, int64_t A, int64_t K,
                                   const float *restrict q, const float *restrict keys, const float *restrict v,
                                   const uint8_t *restrict mask, const float *restrict states, const float *restrict alpha,
                                   const float *restrict d_context, const float *restrict d_alpha_in, float *restrict d_q,
                                   float *restrict d_v_rows, float *restrict de_sum, float *restrict de_tanh2)
{
    for (int64_t b = lo; b < hi; b++) {
        const uint8_t *mb = mask + b * S;
        float de[S];
        for (int64_t n = b * G; n < (b + 1) * G; n++) {
            const float *an = alpha + n * S;
            const float *dc = d_context + n * K;
            float dot = 0.0f;
            for (int64_t s = 0; s < S; s++) {
                if (!mb[s]) {
                    de[s] = 0.0f;
                    continue;
                }
                const float *hs = states + (b * S + s) * K;
                float d = 0.0f;
                for (int64_t k = 0; k < K; k++)
                    d += hs[k] * dc[k];
                if (d_alpha_in)
                    d += d_alpha_in[n * S + s];
                de[s] = d;
                dot += an[s] * d;
            }
            const float *qn = q + n * A;
            float *dq = d_q + n * A, *dv = d_v_rows + n * A;
            memset(dq, 0, (size_t)A * sizeof(float));
            for (int64_t s = 0; s < S; s++) {
                if (!mb[s])
                    continue;
                const float e = an[s] * (de[s] - dot); /* softmax backward */
                const float *ks = keys + (b * S + s) * A;
                float *acc = de_tanh2 + (b * S + s) * A;
                for (int64_t a = 0; a < A; a++) {
                    const float t = tanhf(qn[a] + ks[a]);
                    const float t2 = t * t;
                    dv[a] += e * t;
                    dq[a] += e - e * t2;
                    acc[a] += e * t2;
                }
                de_sum[b * S + s] += e;
            }
            for (int64_t a = 0; a < A; a++)
                dq[a] *= v[a];
        }
    }
}

void mtk_additive_backward(int64_t threads, int64_t B, int64_t G, int64_t S, int64_t A, int64_t K,
                           const float *q, const float *keys, const float *v, const uint8_t *mask, const float *states,
                           const float *alpha, const float *d_context, const float *d_alpha_in, float *d_q,
                           float *d_v_rows, float *de_sum, float *de_tanh2)
{
#pragma omp parallel num_threads(threads) if (threads > 1 && B * G * S * (A + K) >= MTK_SPLIT_MIN)
    {
        int64_t lo, hi;
        share(B, &lo, &hi);
        additive_backward_rows(lo, hi, G, S, A, K, q, keys, v, mask, states, alpha, d_context, d_alpha_in, d_q,
                               d_v_rows, de_sum, de_tanh2);
    }
}

/* torch's GRU cell from its gate pre-activations gi = W_ih x + b_ih and gh = W_hh s + b_hh, both (N, 3H):
   r, z = sigmoid(gi + gh) on the first 2H; n = tanh(gi_n + r gh_n); s = n + z (s_prev - n).
   Keeps rz (N, 2H), n (N, H) and gh_n (N, H) for the backward pass. */
static void gru_forward_rows(int64_t lo, int64_t hi, int64_t H, const float *restrict gi, const float *restrict gh,
                             const float *restrict s_prev, float *restrict rz, float *restrict n_out,
                             float *restrict ghn, float *restrict s_out)
{
    for (int64_t i = lo; i < hi; i++) {
        const float *gi_i = gi + i * 3 * H, *gh_i = gh + i * 3 * H, *sp = s_prev + i * H;
        float *rz_i = rz + i * 2 * H;
        for (int64_t j = 0; j < 2 * H; j++)
            rz_i[j] = 1.0f / (1.0f + expf(-(gi_i[j] + gh_i[j])));
        for (int64_t j = 0; j < H; j++) {
            const float hn = gh_i[2 * H + j];
            const float n = tanhf(gi_i[2 * H + j] + rz_i[j] * hn);
            ghn[i * H + j] = hn;
            n_out[i * H + j] = n;
            s_out[i * H + j] = n + rz_i[H + j] * (sp[j] - n);
        }
    }
}

void mtk_gru_forward(int64_t threads, int64_t N, int64_t H, const float *gi, const float *gh, const float *s_prev,
                     float *rz, float *n_out, float *ghn, float *s_out)
{
#pragma omp parallel num_threads(threads) if (threads > 1 && N * H * 16 >= MTK_SPLIT_MIN)
    {
        int64_t lo, hi;
        share(N, &lo, &hi);
        gru_forward_rows(lo, hi, H, gi, gh, s_prev, rz, n_out, ghn, s_out);
    }
}

/* The backward of mtk_gru_forward given d_s (N, H): writes d_gi and d_gh (N, 3H), the gradients of the
   two pre-activations, and d_prev (N, H) = d_s * z, the direct part of s_prev's gradient. */
static void gru_backward_rows(int64_t lo, int64_t hi, int64_t H, const float *restrict d_s,
                              const float *restrict s_prev, const float *restrict rz, const float *restrict n_in,
                              const float *restrict ghn, float *restrict d_gi, float *restrict d_gh,
                              float *restrict d_prev)
{
    for (int64_t i = lo; i < hi; i++) {
        const float *rz_i = rz + i * 2 * H;
        float *dgi = d_gi + i * 3 * H, *dgh = d_gh + i * 3 * H;
        for (int64_t j = 0; j < H; j++) {
            const int64_t k = i * H + j;
            const float ds = d_s[k], r = rz_i[j], z = rz_i[H + j], n = n_in[k];
            const float d_pre_n = ds * (1.0f - z) * (1.0f - n * n);
            const float d_r = d_pre_n * ghn[k] * r * (1.0f - r);
            const float d_z = ds * (s_prev[k] - n) * z * (1.0f - z);
            dgi[j] = dgh[j] = d_r;
            dgi[H + j] = dgh[H + j] = d_z;
            dgi[2 * H + j] = d_pre_n;
            dgh[2 * H + j] = d_pre_n * r;
            d_prev[k] = ds * z;
        }
    }
}

void mtk_gru_backward(int64_t threads, int64_t N, int64_t H, const float *d_s, const float *s_prev, const float *rz,
                      const float *n_in, const float *ghn, float *d_gi, float *d_gh, float *d_prev)
{
#pragma omp parallel num_threads(threads) if (threads > 1 && N * H * 16 >= MTK_SPLIT_MIN)
    {
        int64_t lo, hi;
        share(N, &lo, &hi);
        gru_backward_rows(lo, hi, H, d_s, s_prev, rz, n_in, ghn, d_gi, d_gh, d_prev);
    }
}

/* Cross-entropy of C rows of logits (C, V) = x W^T, the bias not yet added, against target (C,), with
   label smoothing eps: writes nll (C,), the loss of each row, (1 - eps) (lse - l_y) + eps (lse - mean_v l_v).
   When grad is set, each row becomes its logits' gradient, softmax - (1 - eps) onehot(y) - eps / V, and
   grad_b (V,) gains the rows' sum. A row of a 4k vocabulary (16 KB) stays in L1 over the three passes.
   Threads split the rows, then the columns of grad_b, each column summed over the rows in order. */
static void cross_entropy_rows(int64_t lo, int64_t hi, int64_t V, float *restrict logits, const float *restrict bias,
                               const int64_t *restrict target, float eps, int64_t grad, float *restrict nll)
{
    for (int64_t i = lo; i < hi; i++) {
        float *row = logits + i * V;
        float best = row[0] + bias[0], total = 0.0f;
        for (int64_t v = 0; v < V; v++) {
            const float x = row[v] + bias[v];
            row[v] = x;
            best = x > best ? x : best;
            total += x;
        }
        const float mean = total / (float)V - best; /* mean of the shifted logits */
        const int64_t y = target[i];
        const float picked = row[y] - best; /* the target's shifted logit */
        float norm = 0.0f;
        for (int64_t v = 0; v < V; v++) {
            const float e = expf(row[v] - best);
            row[v] = e;
            norm += e;
        }
        const float log_norm = logf(norm);
        const float loss = log_norm - picked;
        nll[i] = eps ? (1.0f - eps) * loss + eps * (log_norm - mean) : loss;
        if (!grad)
            continue;
        const float inverse = 1.0f / norm, floor = eps / (float)V;
        for (int64_t v = 0; v < V; v++)
            row[v] = row[v] * inverse - floor;
        row[y] += eps - 1.0f;
    }
}

/* grad_b[v] += sum_i rows[i][v] over the C rows, for the columns v in [lo, hi), the rows in order. */
static void column_sums(int64_t lo, int64_t hi, int64_t C, int64_t V, const float *restrict rows, float *restrict grad_b)
{
    for (int64_t i = 0; i < C; i++)
        for (int64_t v = lo; v < hi; v++)
            grad_b[v] += rows[i * V + v];
}

void mtk_cross_entropy_rows(int64_t threads, int64_t C, int64_t V, float *logits, const float *bias,
                            const int64_t *target, float eps, int64_t grad, float *nll, float *grad_b)
{
#pragma omp parallel num_threads(threads) if (threads > 1 && C * V * 8 >= MTK_SPLIT_MIN)
    {
        int64_t lo, hi;
        share(C, &lo, &hi);
        cross_entropy_rows(lo, hi, V, logits, bias, target, eps, grad, nll);
        if (grad) {
#pragma omp barrier
            share(V, &lo, &hi);
            column_sums(lo, hi, C, V, logits, grad_b);
        }
    }
}

/* Dropout with a counter-based generator: element i of a call keeps its value, times 1 / (1 - p), when
   hash(i) >= threshold (= p * 2^32), else becomes x * 0: 0, or NaN for a NaN or an infinity, as torch's. The hash is murmur3's 32-bit finaliser applied twice,
   keyed by the call's 64-bit seed (k0, k1); the mask is a function of (seed, i) alone, so the backward pass
   makes the same mask again from the seed instead of keeping it, and any thread count gives the same bits.
   The tensor is (R1, R2, D), the last dimension contiguous, with row strides of its own for x and out;
   i = (r1 R2 + r2) D + d is the element's place in that logical order. */
static inline uint32_t mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static void dropout_rows(int64_t lo, int64_t hi, int64_t R2, int64_t D, uint32_t threshold, uint32_t k0, uint32_t k1,
                         float scale, const float *restrict x, int64_t x1, int64_t x2, float *restrict out, int64_t o1,
                         int64_t o2)
{
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + (r / R2) * x1 + (r % R2) * x2;
        float *orow = out + (r / R2) * o1 + (r % R2) * o2;
        const uint64_t base = (uint64_t)r * (uint64_t)D;
        for (int64_t d = 0; d < D; d++) {
            const uint64_t i = base + (uint64_t)d;
            const uint32_t h = mix32(mix32((uint32_t)i ^ k0) ^ (uint32_t)(i >> 32) ^ k1);
            orow[d] = xr[d] * (h >= threshold ? scale : 0.0f); /* as torch's x * mask: a dropped NaN stays NaN */
        }
    }
}

void mtk_dropout(int64_t threads, int64_t R1, int64_t R2, int64_t D, float p, int64_t seed, const float *x, int64_t x1,
                 int64_t x2, float *out, int64_t o1, int64_t o2)
{
    const uint32_t threshold = (uint32_t)fmin((double)p * 4294967296.0, 4294967295.0);
    const float scale = 1.0f / (1.0f - p);
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)((uint64_t)seed >> 32);
#pragma omp parallel num_threads(threads) if (threads > 1 && R1 * R2 * D * 4 >= MTK_SPLIT_MIN)
    {
        int64_t lo, hi;
        share(R1 * R2, &lo, &hi);
        dropout_rows(lo, hi, R2, D, threshold, k0, k1, scale, x, x1, x2, out, o1, o2);
    }
}
