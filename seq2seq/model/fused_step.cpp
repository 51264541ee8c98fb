// The element-wise parts of one decoder step, forward and backward, each in one pass over its tensors:
// the LSTM and GRU cells' gate math and Bahdanau attention's score vᵀ tanh(k + q); and the forget-gate
// pooling of SRU and QRNN layers over a whole sequence, the only sequential part of those recurrences; and the
// label-smoothed cross-entropy over the output layer's logits, the largest element-wise work of a training step,
// and the top k and log-normaliser of each row of a decoding step's logits.
//
// Plain C entry points over contiguous buffers (called through ctypes), so that this file needs no torch
// headers and compiles in about a second at first use. Eager PyTorch runs each of these as 8-12 kernels
// forward and as many backward, each a dispatch and an autograd node; here each is one call. The matrix
// products stay in PyTorch (oneDNN/MKL), where they already run near the machine's peak.
//
// dtype codes: 0 float32, 1 bfloat16 (stored as uint16, computed in float), 2 float64 (for gradient checks).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

// Eigen's rational approximation of tanh (a few ulp in float): branch-free, so loops over it vectorise,
// where std::tanh would be a scalar call per element.
inline float fast_tanh(float x) {
  const float clamp = 7.90531110763549805f;
  x = x < -clamp ? -clamp : (x > clamp ? clamp : x);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

inline double fast_tanh(double x) { return std::tanh(x); }

// Cephes' expf: 2^n · p(r) with r = x - n ln 2 in [-ln2/2, ln2/2], about 1 ulp in float. Branch-free (the
// rounding by adding 1.5 · 2^23), so loops over it vectorise, where std::exp would be a scalar call per element.
// x is clamped to [-87, 88]: exp(-87) ≈ 1.6e-38 stands in for anything smaller (no denormals, no zero).
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float round = 12582912.0f;  // 1.5 · 2^23
  const float n = (x * 1.44269504088896341f + round) - round;
  const float r = x - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

inline double fast_exp(double x) { return std::exp(x); }

template <typename Acc>
inline Acc sigmoid(Acc x) { return Acc(0.5) + Acc(0.5) * fast_tanh(Acc(0.5) * x); }

struct BF16 { uint16_t bits; };

inline float load(const float* p, int64_t i) { return p[i]; }
inline double load(const double* p, int64_t i) { return p[i]; }
inline float load(const BF16* p, int64_t i) {
  uint32_t u = uint32_t(p[i].bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline void store(float* p, int64_t i, float x) { p[i] = x; }
inline void store(double* p, int64_t i, double x) { p[i] = x; }
inline void store(BF16* p, int64_t i, float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even, as PyTorch's conversion does for finite values
  p[i].bits = uint16_t(u >> 16);
}

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

// Each kernel works row by row through __restrict row pointers: with them the compiler needs no run-time
// aliasing checks between the many input and output streams, and vectorises the inner loop.
#define RESTRICT __restrict__

// ---- LSTM: gates (B, 4H) = [i f o g] pre-activations (input and hidden parts summed), c (B, H).
// act (B, 4H): the activated gates, for the backward; null when decoding.
// SAVE: keep what the backward needs (false when decoding, which never runs one).
template <typename T, bool SAVE>
void lstm_row(int64_t H, const T* RESTRICT gates, const T* RESTRICT c_prev, T* RESTRICT h_out,
              T* RESTRICT c_out, T* RESTRICT act) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc i = sigmoid<Acc>(load(gates, j)), f = sigmoid<Acc>(load(gates, H + j));
    const Acc o = sigmoid<Acc>(load(gates, 2 * H + j)), g = fast_tanh(Acc(load(gates, 3 * H + j)));
    const Acc c = f * Acc(load(c_prev, j)) + i * g;
    store(c_out, j, c);
    store(h_out, j, o * fast_tanh(c));
    if (SAVE) {
      store(act, j, i);
      store(act, H + j, f);
      store(act, 2 * H + j, o);
      store(act, 3 * H + j, g);
    }
  }
}

template <typename T>
void lstm_backward_row(int64_t H, const T* RESTRICT act, const T* RESTRICT c_prev, const T* RESTRICT c_new,
                       const T* RESTRICT dh, const T* RESTRICT dc_next, T* RESTRICT dgates, T* RESTRICT dc_prev) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc i = load(act, j), f = load(act, H + j), o = load(act, 2 * H + j), g = load(act, 3 * H + j);
    const Acc tc = fast_tanh(Acc(load(c_new, j)));
    const Acc dh_j = load(dh, j);
    const Acc dc = Acc(load(dc_next, j)) + dh_j * o * (Acc(1) - tc * tc);
    store(dgates, j, dc * g * i * (Acc(1) - i));
    store(dgates, H + j, dc * Acc(load(c_prev, j)) * f * (Acc(1) - f));
    store(dgates, 2 * H + j, dh_j * tc * o * (Acc(1) - o));
    store(dgates, 3 * H + j, dc * i * (Acc(1) - g * g));
    store(dc_prev, j, dc * f);
  }
}

// ---- SRU and QRNN steps (the decoder's): gates (B, G·H) pre-activations, c (B, H); no product on the state.
// SRU  (G = 4) [z f r x̂]: c = σ(f) c + (1 - σ(f)) z, h = σ(r) c + (1 - σ(r)) x̂
// QRNN (G = 3) [z f o]:   c = σ(f) c + (1 - σ(f)) tanh(z), h = σ(o) c
// act: the gates after their activations (z and x̂ as they are for SRU), for the backward; null when decoding.
template <typename T, bool SAVE>
void sru_row(int64_t H, const T* RESTRICT gates, const T* RESTRICT c_prev, T* RESTRICT h_out,
             T* RESTRICT c_out, T* RESTRICT act) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc z = load(gates, j), f = sigmoid<Acc>(load(gates, H + j)), r = sigmoid<Acc>(load(gates, 2 * H + j));
    const Acc highway = load(gates, 3 * H + j);
    const Acc c = f * Acc(load(c_prev, j)) + (Acc(1) - f) * z;
    store(c_out, j, c);
    store(h_out, j, r * c + (Acc(1) - r) * highway);
    if (SAVE) {
      store(act, j, z);
      store(act, H + j, f);
      store(act, 2 * H + j, r);
      store(act, 3 * H + j, highway);
    }
  }
}

template <typename T>
void sru_backward_row(int64_t H, const T* RESTRICT act, const T* RESTRICT c_prev, const T* RESTRICT c_new,
                      const T* RESTRICT dh, const T* RESTRICT dc_next, T* RESTRICT dgates, T* RESTRICT dc_prev) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc z = load(act, j), f = load(act, H + j), r = load(act, 2 * H + j), highway = load(act, 3 * H + j);
    const Acc c = load(c_new, j), dh_j = load(dh, j);
    const Acc dc = Acc(load(dc_next, j)) + dh_j * r;
    store(dgates, j, dc * (Acc(1) - f));
    store(dgates, H + j, dc * (Acc(load(c_prev, j)) - z) * f * (Acc(1) - f));
    store(dgates, 2 * H + j, dh_j * (c - highway) * r * (Acc(1) - r));
    store(dgates, 3 * H + j, dh_j * (Acc(1) - r));
    store(dc_prev, j, dc * f);
  }
}

template <typename T, bool SAVE>
void qrnn_row(int64_t H, const T* RESTRICT gates, const T* RESTRICT c_prev, T* RESTRICT h_out,
              T* RESTRICT c_out, T* RESTRICT act) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc z = fast_tanh(Acc(load(gates, j))), f = sigmoid<Acc>(load(gates, H + j));
    const Acc o = sigmoid<Acc>(load(gates, 2 * H + j));
    const Acc c = f * Acc(load(c_prev, j)) + (Acc(1) - f) * z;
    store(c_out, j, c);
    store(h_out, j, o * c);
    if (SAVE) {
      store(act, j, z);
      store(act, H + j, f);
      store(act, 2 * H + j, o);
    }
  }
}

template <typename T>
void qrnn_backward_row(int64_t H, const T* RESTRICT act, const T* RESTRICT c_prev, const T* RESTRICT c_new,
                       const T* RESTRICT dh, const T* RESTRICT dc_next, T* RESTRICT dgates, T* RESTRICT dc_prev) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc z = load(act, j), f = load(act, H + j), o = load(act, 2 * H + j);
    const Acc c = load(c_new, j), dh_j = load(dh, j);
    const Acc dc = Acc(load(dc_next, j)) + dh_j * o;
    store(dgates, j, dc * (Acc(1) - f) * (Acc(1) - z * z));
    store(dgates, H + j, dc * (Acc(load(c_prev, j)) - z) * f * (Acc(1) - f));
    store(dgates, 2 * H + j, dh_j * c * o * (Acc(1) - o));
    store(dc_prev, j, dc * f);
  }
}

// ---- GRU: gin, ghid (B, 3H) = [r z n] input and hidden projections, h (B, H).
// saved (B, 4H) = [r z n ghid_n], what the backward needs; null when decoding.
template <typename T, bool SAVE>
void gru_row(int64_t H, const T* RESTRICT gin, const T* RESTRICT ghid, const T* RESTRICT h_prev,
             T* RESTRICT h_out, T* RESTRICT saved) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc r = sigmoid<Acc>(Acc(load(gin, j)) + Acc(load(ghid, j)));
    const Acc z = sigmoid<Acc>(Acc(load(gin, H + j)) + Acc(load(ghid, H + j)));
    const Acc hn = load(ghid, 2 * H + j);
    const Acc n = fast_tanh(Acc(load(gin, 2 * H + j)) + r * hn);
    const Acc h = load(h_prev, j);
    store(h_out, j, n + z * (h - n));
    if (SAVE) {
      store(saved, j, r);
      store(saved, H + j, z);
      store(saved, 2 * H + j, n);
      store(saved, 3 * H + j, hn);
    }
  }
}

template <typename T>
void gru_backward_row(int64_t H, const T* RESTRICT saved, const T* RESTRICT h_prev, const T* RESTRICT dh,
                      T* RESTRICT dgin, T* RESTRICT dghid, T* RESTRICT dh_prev) {
  using Acc = typename AccOf<T>::type;
  for (int64_t j = 0; j < H; ++j) {
    const Acc r = load(saved, j), z = load(saved, H + j), n = load(saved, 2 * H + j), hn = load(saved, 3 * H + j);
    const Acc d = load(dh, j), h = load(h_prev, j);
    const Acc dn_pre = d * (Acc(1) - z) * (Acc(1) - n * n);
    const Acc dr_pre = dn_pre * hn * r * (Acc(1) - r);
    const Acc dz_pre = d * (h - n) * z * (Acc(1) - z);
    store(dgin, j, dr_pre);
    store(dgin, H + j, dz_pre);
    store(dgin, 2 * H + j, dn_pre);
    store(dghid, j, dr_pre);
    store(dghid, H + j, dz_pre);
    store(dghid, 2 * H + j, dn_pre * r);
    store(dh_prev, j, d * z);
  }
}

// Rows in parallel only when there is enough work to pay for waking the other threads.
#define FOR_ROWS(B, H, BODY)                        \
  _Pragma("omp parallel for if (B * H > 65536)")    \
  for (int64_t b = 0; b < B; ++b) { BODY; }

// The LSTM, SRU and QRNN steps share one shape: gates (B, G·H) and c (B, H) in, h and c out.
#define GATED_CELL(NAME, G)                                                                                    \
  template <typename T>                                                                                        \
  void NAME##_forward(int64_t B, int64_t H, const T* gates, const T* c_prev, T* h_out, T* c_out, T* act) {     \
    if (act) {                                                                                                 \
      FOR_ROWS(B, H, (NAME##_row<T, true>(H, gates + b * G * H, c_prev + b * H, h_out + b * H, c_out + b * H, \
                                          act + b * G * H)))                                                   \
    } else {                                                                                                   \
      FOR_ROWS(B, H, (NAME##_row<T, false>(H, gates + b * G * H, c_prev + b * H, h_out + b * H,               \
                                           c_out + b * H, nullptr)))                                           \
    }                                                                                                          \
  }                                                                                                            \
  template <typename T>                                                                                        \
  void NAME##_backward(int64_t B, int64_t H, const T* act, const T* c_prev, const T* c_new, const T* dh,       \
                       const T* dc_next, T* dgates, T* dc_prev) {                                              \
    FOR_ROWS(B, H, NAME##_backward_row(H, act + b * G * H, c_prev + b * H, c_new + b * H, dh + b * H,          \
                                       dc_next + b * H, dgates + b * G * H, dc_prev + b * H))                  \
  }

GATED_CELL(lstm, 4)
GATED_CELL(sru, 4)
GATED_CELL(qrnn, 3)

template <typename T>
void gru_forward(int64_t B, int64_t H, const T* gin, const T* ghid, const T* h_prev, T* h_out, T* saved) {
  if (saved) {
    FOR_ROWS(B, H, (gru_row<T, true>(H, gin + b * 3 * H, ghid + b * 3 * H, h_prev + b * H, h_out + b * H,
                                     saved + b * 4 * H)))
  } else {
    FOR_ROWS(B, H, (gru_row<T, false>(H, gin + b * 3 * H, ghid + b * 3 * H, h_prev + b * H, h_out + b * H,
                                      nullptr)))
  }
}

template <typename T>
void gru_backward(int64_t B, int64_t H, const T* saved, const T* h_prev, const T* dh, T* dgin, T* dghid,
                  T* dh_prev) {
  FOR_ROWS(B, H, gru_backward_row(H, saved + b * 4 * H, h_prev + b * H, dh + b * H, dgin + b * 3 * H,
                                  dghid + b * 3 * H, dh_prev + b * H))
}

// ---- Bahdanau score: keys (B, S, A), q (B, K, A), v (A) → scores (B, K, S) = Σ_a v_a tanh(k_sa + q_ka).
// The (B, K, S, A) sum is never stored: the backward recomputes it, which costs less than writing it.
template <typename T>
void additive_score_forward(int64_t B, int64_t K, int64_t S, int64_t A, const T* keys, const T* q, const T* v,
                            T* scores) {
  using Acc = typename AccOf<T>::type;
#pragma omp parallel
  {
    std::vector<Acc> vv(A), qq(A);
    for (int64_t a = 0; a < A; ++a) vv[a] = load(v, a);
#pragma omp for collapse(2)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t a = 0; a < A; ++a) qq[a] = load(q, (b * K + k) * A + a);
        for (int64_t s = 0; s < S; ++s) {
          const int64_t k0 = (b * S + s) * A;
          Acc total = 0;
#pragma omp simd reduction(+ : total)
          for (int64_t a = 0; a < A; ++a) total += vv[a] * fast_tanh(Acc(load(keys, k0 + a)) + qq[a]);
          store(scores, (b * K + k) * S + s, total);
        }
      }
    }
  }
}

// dkeys (B, S, A) and dq (B, K, A) in T; dv_partial (B, A) in the accumulation type, summed over B by the caller.
template <typename T, typename Acc>
void additive_score_backward(int64_t B, int64_t K, int64_t S, int64_t A, const T* keys, const T* q, const T* v,
                             const T* dscores, T* dkeys, T* dq, Acc* dv_partial) {
#pragma omp parallel
  {
    std::vector<Acc> vv(A), qq(K * A), dqq(K * A), dk(A);
    for (int64_t a = 0; a < A; ++a) vv[a] = load(v, a);
#pragma omp for
    for (int64_t b = 0; b < B; ++b) {
      Acc* dvb = dv_partial + b * A;
      for (int64_t a = 0; a < A; ++a) dvb[a] = 0;
      for (int64_t i = 0; i < K * A; ++i) { qq[i] = load(q, b * K * A + i); dqq[i] = 0; }
      for (int64_t s = 0; s < S; ++s) {
        const int64_t k0 = (b * S + s) * A;
        for (int64_t a = 0; a < A; ++a) dk[a] = 0;
        for (int64_t k = 0; k < K; ++k) {
          const Acc ds = load(dscores, (b * K + k) * S + s);
          const Acc* qk = qq.data() + k * A;
          Acc* dqk = dqq.data() + k * A;
          for (int64_t a = 0; a < A; ++a) {
            const Acc t = fast_tanh(Acc(load(keys, k0 + a)) + qk[a]);
            const Acc dpre = ds * vv[a] * (Acc(1) - t * t);
            dk[a] += dpre;
            dqk[a] += dpre;
            dvb[a] += ds * t;
          }
        }
        for (int64_t a = 0; a < A; ++a) store(dkeys, k0 + a, dk[a]);
      }
      for (int64_t i = 0; i < K * A; ++i) store(dq, b * K * A + i, dqq[i]);
    }
  }
}

// ---- Forget-gate pooling over a whole sequence (SRU, QRNN): c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ z_t, c_{-1} = 0.
// z, f, c: (B, T, H), f already through its sigmoid; sequence b runs over its first lengths[b] steps, from the
// last one back when `reverse`; c is 0 on the padding after them. The loop over time is here, not in Python.
template <typename T>
void forget_pool_forward(int64_t B, int64_t Tn, int64_t H, const T* z, const T* f, const int64_t* lengths,
                         int reverse, T* c) {
  using Acc = typename AccOf<T>::type;
#pragma omp parallel
  {
    std::vector<Acc> state(H);
#pragma omp for
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = lengths[b];
      for (int64_t j = 0; j < H; ++j) state[j] = 0;
      for (int64_t step = 0; step < L; ++step) {
        const int64_t o = (b * Tn + (reverse ? L - 1 - step : step)) * H;
        const T* RESTRICT zt = z + o;
        const T* RESTRICT ft = f + o;
        T* RESTRICT ct = c + o;
        Acc* RESTRICT st = state.data();
        for (int64_t j = 0; j < H; ++j) {
          const Acc fj = load(ft, j);
          st[j] = fj * st[j] + (Acc(1) - fj) * Acc(load(zt, j));
          store(ct, j, st[j]);
        }
      }
      for (int64_t t = L; t < Tn; ++t)
        for (int64_t j = 0; j < H; ++j) store(c + (b * Tn + t) * H, j, Acc(0));
    }
  }
}

// dc: (B, T, H) the gradient reaching each c_t from outside the recurrence → dz, df (0 on padding).
template <typename T>
void forget_pool_backward(int64_t B, int64_t Tn, int64_t H, const T* z, const T* f, const T* c,
                          const int64_t* lengths, int reverse, const T* dc, T* dz, T* df) {
  using Acc = typename AccOf<T>::type;
#pragma omp parallel
  {
    std::vector<Acc> carry(H);
#pragma omp for
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = lengths[b];
      for (int64_t j = 0; j < H; ++j) carry[j] = 0;
      for (int64_t step = L - 1; step >= 0; --step) {
        const int64_t t = reverse ? L - 1 - step : step;
        const int64_t o = (b * Tn + t) * H;
        const bool first = step == 0;  // c_{-1} = 0
        const int64_t prev = (b * Tn + (reverse ? t + 1 : t - 1)) * H;
        const T* RESTRICT zt = z + o;
        const T* RESTRICT ft = f + o;
        const T* RESTRICT cp = c + (first ? o : prev);
        const T* RESTRICT dct = dc + o;
        T* RESTRICT dzt = dz + o;
        T* RESTRICT dft = df + o;
        Acc* RESTRICT cr = carry.data();
        const Acc keep = first ? Acc(0) : Acc(1);
        for (int64_t j = 0; j < H; ++j) {
          const Acc g = Acc(load(dct, j)) + cr[j];
          const Acc fj = load(ft, j);
          store(dzt, j, g * (Acc(1) - fj));
          store(dft, j, g * (keep * Acc(load(cp, j)) - Acc(load(zt, j))));
          cr[j] = g * fj;
        }
      }
      for (int64_t t = L; t < Tn; ++t)
        for (int64_t j = 0; j < H; ++j) {
          store(dz + (b * Tn + t) * H, j, Acc(0));
          store(df + (b * Tn + t) * H, j, Acc(0));
        }
    }
  }
}

// ---- Label-smoothed cross-entropy, rows of logits (N, V) against targets (N,), summed as F.cross_entropy's
// (1 - ε) · (lse - x_t) + ε · mean_j (lse - x_j), with lse = log Σ_j exp x_j; rows whose target is `ignore`
// count 0. The forward keeps each row's lse; the backward recomputes the softmax from it and writes
// d logits = g · (softmax - ε / V - (1 - ε) · onehot(t)) in one pass, in the logits' dtype. Eager PyTorch makes
// a float copy of the logits, a log-softmax and a gradient of each of them, several passes over the largest
// tensor of the step; here a row (V elements) is read from memory once each way and stays in cache meanwhile.
template <typename T>
void smoothed_ce_forward(int64_t N, int64_t V, const T* logits, const int64_t* targets, int64_t ignore,
                         double eps, typename AccOf<T>::type* loss, typename AccOf<T>::type* lse) {
  using Acc = typename AccOf<T>::type;
#pragma omp parallel for if (N * V > 65536)
  for (int64_t n = 0; n < N; ++n) {
    const T* RESTRICT x = logits + n * V;
    const int64_t t = targets[n];
    if (t == ignore) {
      loss[n] = 0;
      lse[n] = 0;
      continue;
    }
    Acc top = load(x, 0), total = 0, sum_x = 0;
#pragma omp simd reduction(max : top)
    for (int64_t j = 0; j < V; ++j) top = std::max(top, Acc(load(x, j)));
#pragma omp simd reduction(+ : total, sum_x)
    for (int64_t j = 0; j < V; ++j) {
      const Acc xj = load(x, j);
      total += fast_exp(xj - top);
      sum_x += xj;
    }
    const Acc row_lse = top + std::log(total);
    lse[n] = row_lse;
    loss[n] = Acc(1 - eps) * (row_lse - Acc(load(x, t))) + Acc(eps) * (row_lse - sum_x / Acc(V));
  }
}

template <typename T>
void smoothed_ce_backward(int64_t N, int64_t V, const T* logits, const int64_t* targets, int64_t ignore,
                          double eps, const typename AccOf<T>::type* lse, double grad, T* dlogits) {
  using Acc = typename AccOf<T>::type;
  const Acc g = Acc(grad), floor = Acc(grad * eps / double(V));
#pragma omp parallel for if (N * V > 65536)
  for (int64_t n = 0; n < N; ++n) {
    const T* RESTRICT x = logits + n * V;
    T* RESTRICT d = dlogits + n * V;
    const int64_t t = targets[n];
    if (t == ignore) {
      for (int64_t j = 0; j < V; ++j) store(d, j, Acc(0));
      continue;
    }
    const Acc row_lse = lse[n];
    for (int64_t j = 0; j < V; ++j) store(d, j, g * fast_exp(Acc(load(x, j)) - row_lse) - floor);
    store(d, t, g * fast_exp(Acc(load(x, t)) - row_lse) - floor - g * Acc(1 - eps));
  }
}

// ---- A decoding step's logits (N, V) → each row's k best (values best first, ids; among equal values the
// lower id) and its log Σ_j exp x_j. Eager PyTorch takes six passes over the (N, V) tensor for these (block
// maxima, subtract, exp, sum, gather, top-k); here a row is read from memory once and stays in cache for the
// second pass. Every one of a row's k best lies in the k blocks of 128 whose maxima are highest (or in the tail
// after the last whole block), so only those are searched for them.
template <typename T>
void top_k_log_norm(int64_t N, int64_t V, int64_t K, const T* logits, typename AccOf<T>::type* values,
                    int64_t* ids, typename AccOf<T>::type* log_norm) {
  using Acc = typename AccOf<T>::type;
  const int64_t block = 128, blocks = V / block;
  const Acc lowest = -std::numeric_limits<Acc>::infinity();
#pragma omp parallel if (N * V > 65536)
  {
    std::vector<Acc> block_max(blocks);
    std::vector<int64_t> order(blocks);
#pragma omp for
    for (int64_t n = 0; n < N; ++n) {
      const T* RESTRICT x = logits + n * V;
      Acc top = lowest;
      for (int64_t b = 0; b < blocks; ++b) {
        Acc m = lowest;
#pragma omp simd reduction(max : m)
        for (int64_t j = b * block; j < (b + 1) * block; ++j) m = std::max(m, Acc(load(x, j)));
        block_max[b] = m;
        top = std::max(top, m);
      }
      for (int64_t j = blocks * block; j < V; ++j) top = std::max(top, Acc(load(x, j)));
      Acc total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < V; ++j) total += fast_exp(Acc(load(x, j)) - top);
      log_norm[n] = top + std::log(total);

      Acc* best = values + n * K;
      int64_t* best_ids = ids + n * K;
      for (int64_t i = 0; i < K; ++i) { best[i] = lowest; best_ids[i] = 0; }
      auto offer = [&](int64_t j) {  // insertion into the sorted k best; ids arrive in increasing order
        const Acc v = load(x, j);
        if (!(v > best[K - 1])) return;
        int64_t i = K - 1;
        for (; i > 0 && v > best[i - 1]; --i) { best[i] = best[i - 1]; best_ids[i] = best_ids[i - 1]; }
        best[i] = v;
        best_ids[i] = j;
      };
      int64_t searched = blocks;
      for (int64_t b = 0; b < blocks; ++b) order[b] = b;
      if (blocks > K) {
        std::nth_element(order.begin(), order.begin() + K, order.end(),
                         [&](int64_t a, int64_t b) { return block_max[a] > block_max[b]; });
        std::sort(order.begin(), order.begin() + K);
        searched = K;
      }
      for (int64_t i = 0; i < searched; ++i)
        for (int64_t j = order[i] * block; j < (order[i] + 1) * block; ++j) offer(j);
      for (int64_t j = blocks * block; j < V; ++j) offer(j);
    }
  }
}

}  // namespace

#define DISPATCH(dtype, CALL)                                     \
  switch (dtype) {                                                \
    case 0: { using T = float; CALL; break; }                     \
    case 1: { using T = BF16; CALL; break; }                      \
    case 2: { using T = double; CALL; break; }                    \
    default: return 1;                                            \
  }                                                               \
  return 0;

extern "C" {

#define GATED_CELL_ENTRY(NAME)                                                                                 \
  int s2s_##NAME##_forward(int dtype, int64_t B, int64_t H, const void* gates, const void* c_prev, void* h_out, \
                           void* c_out, void* act) {                                                           \
    DISPATCH(dtype, NAME##_forward<T>(B, H, (const T*)gates, (const T*)c_prev, (T*)h_out, (T*)c_out, (T*)act)) \
  }                                                                                                            \
  int s2s_##NAME##_backward(int dtype, int64_t B, int64_t H, const void* act, const void* c_prev,              \
                            const void* c_new, const void* dh, const void* dc_next, void* dgates,              \
                            void* dc_prev) {                                                                   \
    DISPATCH(dtype, NAME##_backward<T>(B, H, (const T*)act, (const T*)c_prev, (const T*)c_new, (const T*)dh,   \
                                       (const T*)dc_next, (T*)dgates, (T*)dc_prev))                            \
  }

GATED_CELL_ENTRY(lstm)
GATED_CELL_ENTRY(sru)
GATED_CELL_ENTRY(qrnn)

int s2s_gru_forward(int dtype, int64_t B, int64_t H, const void* gin, const void* ghid, const void* h_prev,
                    void* h_out, void* saved) {
  DISPATCH(dtype, gru_forward<T>(B, H, (const T*)gin, (const T*)ghid, (const T*)h_prev, (T*)h_out, (T*)saved))
}

int s2s_gru_backward(int dtype, int64_t B, int64_t H, const void* saved, const void* h_prev, const void* dh,
                     void* dgin, void* dghid, void* dh_prev) {
  DISPATCH(dtype, gru_backward<T>(B, H, (const T*)saved, (const T*)h_prev, (const T*)dh, (T*)dgin, (T*)dghid,
                                  (T*)dh_prev))
}

int s2s_additive_score_forward(int dtype, int64_t B, int64_t K, int64_t S, int64_t A, const void* keys,
                               const void* q, const void* v, void* scores) {
  DISPATCH(dtype, additive_score_forward<T>(B, K, S, A, (const T*)keys, (const T*)q, (const T*)v, (T*)scores))
}

// dv_partial is float for float32 and bfloat16, double for float64.
int s2s_additive_score_backward(int dtype, int64_t B, int64_t K, int64_t S, int64_t A, const void* keys,
                                const void* q, const void* v, const void* dscores, void* dkeys, void* dq,
                                void* dv_partial) {
  DISPATCH(dtype, (additive_score_backward<T, typename AccOf<T>::type>(
                      B, K, S, A, (const T*)keys, (const T*)q, (const T*)v, (const T*)dscores, (T*)dkeys,
                      (T*)dq, (typename AccOf<T>::type*)dv_partial)))
}

int s2s_forget_pool_forward(int dtype, int64_t B, int64_t Tn, int64_t H, const void* z, const void* f,
                            const int64_t* lengths, int reverse, void* c) {
  DISPATCH(dtype, forget_pool_forward<T>(B, Tn, H, (const T*)z, (const T*)f, lengths, reverse, (T*)c))
}

int s2s_forget_pool_backward(int dtype, int64_t B, int64_t Tn, int64_t H, const void* z, const void* f,
                             const void* c, const int64_t* lengths, int reverse, const void* dc, void* dz,
                             void* df) {
  DISPATCH(dtype, forget_pool_backward<T>(B, Tn, H, (const T*)z, (const T*)f, (const T*)c, lengths, reverse,
                                          (const T*)dc, (T*)dz, (T*)df))
}

// loss and lse (N,) are float for float32 and bfloat16, double for float64.
int s2s_smoothed_ce_forward(int dtype, int64_t N, int64_t V, const void* logits, const int64_t* targets,
                            int64_t ignore, double eps, void* loss, void* lse) {
  DISPATCH(dtype, (smoothed_ce_forward<T>(N, V, (const T*)logits, targets, ignore, eps,
                                          (typename AccOf<T>::type*)loss, (typename AccOf<T>::type*)lse)))
}

int s2s_smoothed_ce_backward(int dtype, int64_t N, int64_t V, const void* logits, const int64_t* targets,
                             int64_t ignore, double eps, const void* lse, double grad, void* dlogits) {
  DISPATCH(dtype, (smoothed_ce_backward<T>(N, V, (const T*)logits, targets, ignore, eps,
                                           (const typename AccOf<T>::type*)lse, grad, (T*)dlogits)))
}

// values and log_norm are float for float32 and bfloat16, double for float64.
int s2s_top_k_log_norm(int dtype, int64_t N, int64_t V, int64_t K, const void* logits, void* values, int64_t* ids,
                       void* log_norm) {
  DISPATCH(dtype, (top_k_log_norm<T>(N, V, K, (const T*)logits, (typename AccOf<T>::type*)values, ids,
                                     (typename AccOf<T>::type*)log_norm)))
}

}  // extern "C"
