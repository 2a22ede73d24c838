// Flash attention for XLA:CPU as two XLA FFI custom calls, forward and backward, for one CPU device.
//
// Forward: softmax(q k^T * scale) v, with each query's score max and 1 / sum of exp(score - max). Backward: dq, dk,
// dv from those statistics (the probabilities recomputed with one q k^T per block of queries, the softmax's
// Jacobian as p * (dp - rowsum(dout * out))). The math and the statistics are those of `_head_forward` and
// `_head_backward` in videomae_jax/models/attention.py, which computes the same in XLA ops.
//
// Why it exists: XLA:CPU has no fused attention, and its matmuls run attention's shapes (a 64-deep contraction for
// q k^T, a 64-wide output for p v) at ~65% of a core's FMA peak, against ~80% in PyTorch's CPU kernel (MKL); on a
// single core that made attention the one place our ViT trailed PyTorch. Here every product is a register-blocked
// micro-kernel over operands packed once per (clip, head), the softmax a vectorized pass over a block's scores in
// cache; no [h, N, N] array exists.
//
// Layout: the model's fused projection qkv [..., N, 3, h, d] as it is, before its bias [3, h, d] (q_bias, 0,
// v_bias), which the kernels add as they pack their operands (no slices, bias pass or transposes; the queries may
// be the last Nq < N tokens), out and dout [..., Nq, h, d], float32; statistics [..., h, Nq]; the backward's dqkv
// like qkv (also the bias's gradient, summed over clips and tokens by the caller). Work is split over (clip, head) (and, forward, blocks of query rows) on
// XLA's intra-op thread pool. Compiled on the machine that runs it (videomae_jax/models/cpu_attention_kernel.py)
// for that machine's vector width: AVX-512, AVX2 or SSE/NEON, through GCC/Clang vector extensions.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__AVX512F__)
#include <immintrin.h>
constexpr int W = 16;
#elif defined(__AVX__)
constexpr int W = 8;
#else
constexpr int W = 4;
#endif

namespace {

namespace ffi = xla::ffi;

typedef float vf __attribute__((vector_size(W * 4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));
typedef float vf_unaligned __attribute__((vector_size(W * 4), aligned(4)));

inline vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline void store(float* p, vf x) { *reinterpret_cast<vf_unaligned*>(p) = x; }
inline vf splat(float x) { return vf{} + x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline float lane_max(vf x) {
  float m = x[0];
  for (int c = 1; c < W; ++c) m = std::max(m, x[c]);
  return m;
}
inline float lane_sum(vf x) {
  float s = x[0];
  for (int c = 1; c < W; ++c) s += x[c];
  return s;
}

// exp(x) for x <= 0 (scores minus their row's max): Cephes' single-precision polynomial after a Cody-Waite
// reduction x = n ln2 + r, |r| <= ln2 / 2; within 0.7 ulp of exp over [-30, 0] (measured against double). Below
// -87 it returns exp(-87) ~ 1.6e-38 rather than a denormal or zero: next to a row's max (exp(0) = 1) no sum can
// tell them apart.
inline vf exp_nonpositive(vf x) {
#if defined(__AVX512F__)
  const __m512 clamped = _mm512_max_ps(reinterpret_cast<__m512>(x), _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf nv = reinterpret_cast<vf>(n);
  vf r = reinterpret_cast<vf>(clamped) - nv * 0.693359375f;
#else
  x = x < -87.0f ? splat(-87.0f) : x;
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer, held in the low bits
  const vf t = x * 1.44269504088896341f + magic;
  const vf nv = t - magic;
  vf r = x - nv * 0.693359375f;
#endif
  r = r - nv * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
#if defined(__AVX512F__)
  return reinterpret_cast<vf>(_mm512_scalef_ps(reinterpret_cast<__m512>(p), n));
#else
  const vi exponent = (reinterpret_cast<vi>(t) - reinterpret_cast<vi>(magic) + 127) << 23;
  return p * reinterpret_cast<vf>(exponent);
#endif
}

// Micro-kernel shapes, measured on one Sapphire Rapids core at N = 1568, d = 64 (AVX-512: 32 registers):
// - rows x keys products (q k^T, dout v^T): 6 rows x 2 vectors of keys, the 64-deep contraction split in two
//   halves summed at the end (24 accumulators): ~160 GFLOP/s (12 x 2 unsplit ran as fast but rounded twice as
//   far from float64 as XLA's dot; 6 x 4: 150; 8 x 3: 145);
// - rows x width products (p v, ds k): 6 rows x 4 vectors of the head's width, keys in chunks of 128 whose rows
//   of v stay in L1: ~180 GFLOP/s;
// - keys x width products summed over query rows (p^T dout, ds^T q): 6 keys x 4 vectors (4 x 4: 10% slower).
constexpr int kRowsByKeys = 6;
constexpr int kSplit = 2;
constexpr int kKeyTile = 2 * W;  // keys per packed tile of k (or v): [d][kKeyTile]
constexpr int kRowsByWidth = 6;
constexpr int kWidthVectors = 4;
constexpr int kKeysByWidth = 6;
constexpr int kQueryBlock = 96;  // query rows per block: a block's [96, Nk] scores stay in L2
constexpr int kKeyChunk = 128;

// c[MR][kKeyTile] = a[MR][dp] . tile[dp][kKeyTile]; with kUpdateMax, each row's running max (a vector).
template <int MR, bool kUpdateMax>
inline void rows_by_key_tile(const float* a, int dp, const float* tile, float* c, int64_t stride, vf* row_max) {
  vf acc[kSplit][MR][2];
  for (int h = 0; h < kSplit; ++h)
    for (int r = 0; r < MR; ++r) acc[h][r][0] = acc[h][r][1] = vf{};
  for (int k0 = 0; k0 < dp; k0 += kSplit) {
    for (int h = 0; h < kSplit; ++h) {
      const int k = k0 + h;
      const vf b0 = load(tile + k * kKeyTile), b1 = load(tile + k * kKeyTile + W);
      for (int r = 0; r < MR; ++r) {
        const float x = a[r * dp + k];
        acc[h][r][0] += x * b0;
        acc[h][r][1] += x * b1;
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    vf s0 = acc[0][r][0], s1 = acc[0][r][1];
    for (int h = 1; h < kSplit; ++h) {
      s0 += acc[h][r][0];
      s1 += acc[h][r][1];
    }
    store(c + r * stride, s0);
    store(c + r * stride + W, s1);
    if (kUpdateMax) row_max[r] = vmax(row_max[r], vmax(s0, s1));
  }
}

// c[rows][tiles * kKeyTile] = a[rows][dp] . packed[tiles][dp][kKeyTile] (rows of c `stride` apart).
void rows_by_keys(const float* a, int64_t rows, int dp, const float* packed, int64_t tiles, float* c, int64_t stride) {
  int64_t r = 0;
  for (; r + kRowsByKeys <= rows; r += kRowsByKeys)
    for (int64_t t = 0; t < tiles; ++t)
      rows_by_key_tile<kRowsByKeys, false>(a + r * dp, dp, packed + t * dp * kKeyTile, c + r * stride + t * kKeyTile,
                                           stride, nullptr);
  for (; r < rows; ++r)
    for (int64_t t = 0; t < tiles; ++t)
      rows_by_key_tile<1, false>(a + r * dp, dp, packed + t * dp * kKeyTile, c + r * stride + t * kKeyTile, stride,
                                 nullptr);
}

// c[MR][NV * W] (+)= a[MR][n] . b[n][NV * W]: a is p (a[r][j] = p[r * stride + j]) or, kTransposed, p^T
// (a[r][j] = p[j * stride + r]); b's rows are dp apart, as are c's. The layout is a template argument: as a
// runtime stride of 1 it cost p^T . b 5%.
template <int MR, int NV, bool kAccumulate, bool kTransposed>
inline void by_width_tile(const float* p, int64_t stride, const float* b, int dp, int64_t n, float* c) {
  vf acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vf{};
  for (int64_t j = 0; j < n; ++j) {
    vf y[NV];
    for (int v = 0; v < NV; ++v) y[v] = load(b + j * dp + v * W);
    for (int r = 0; r < MR; ++r) {
      const float x = kTransposed ? p[j * stride + r] : p[r * stride + j];
      for (int v = 0; v < NV; ++v) acc[r][v] += x * y[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      store(c + r * dp + v * W, kAccumulate ? load(c + r * dp + v * W) + acc[r][v] : acc[r][v]);
}

// by_width_tile over the head's width dp: kWidthVectors vectors at a time, then single vectors.
template <int MR, bool kAccumulate, bool kTransposed>
void by_width(const float* p, int64_t stride, const float* b, int dp, int64_t n, float* c) {
  int v = 0;
  for (; v + kWidthVectors * W <= dp; v += kWidthVectors * W)
    by_width_tile<MR, kWidthVectors, kAccumulate, kTransposed>(p, stride, b + v, dp, n, c + v);
  for (; v + W <= dp; v += W) by_width_tile<MR, 1, kAccumulate, kTransposed>(p, stride, b + v, dp, n, c + v);
}

// c[MR][dp] = p[MR][nk] . b[nk][dp], keys in chunks of kKeyChunk, each summed in registers and added to c: a
// chunk's rows of b stay in L1, and float32 sums run over ~kKeyChunk + nk / kKeyChunk terms in a row, not nk.
template <int MR>
void rows_by_width(const float* p, int64_t p_stride, const float* b, int dp, int nk, float* c) {
  for (int j = 0; j < nk; j += kKeyChunk) {
    const int n = std::min(kKeyChunk, nk - j);
    if (j == 0) {
      by_width<MR, false, false>(p, p_stride, b, dp, n, c);
    } else {
      by_width<MR, true, false>(p + j, p_stride, b + static_cast<int64_t>(j) * dp, dp, n, c);
    }
  }
}

// c[rows][dp] = p[rows][nk] . b[nk][dp].
void rows_by_width_all(const float* p, int64_t rows, int64_t p_stride, const float* b, int dp, int nk, float* c) {
  int64_t r = 0;
  for (; r + kRowsByWidth <= rows; r += kRowsByWidth)
    rows_by_width<kRowsByWidth>(p + r * p_stride, p_stride, b, dp, nk, c + r * dp);
  for (; r < rows; ++r) rows_by_width<1>(p + r * p_stride, p_stride, b, dp, nk, c + r * dp);
}

// c[nkp][dp] += p[rows][nkp]^T . b[rows][dp]: kKeysByWidth keys (rows of p^T) at a time, summed over the rows.
void keys_by_width(const float* p, int64_t rows, int64_t nkp, const float* b, int dp, float* c) {
  int64_t j = 0;
  for (; j + kKeysByWidth <= nkp; j += kKeysByWidth)
    by_width<kKeysByWidth, true, true>(p + j, nkp, b, dp, rows, c + j * dp);
  for (; j < nkp; ++j) by_width<1, true, true>(p + j, nkp, b, dp, rows, c + j * dp);
}

template <class T>
struct CacheLineAllocator {
  typedef T value_type;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64)); }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const CacheLineAllocator&) const { return true; }
  bool operator!=(const CacheLineAllocator&) const { return false; }
};
typedef std::vector<float, CacheLineAllocator<float>> Buffer;

// The operands' shapes. q, k and v are read from the model's fused projection qkv [..., N, 3, h, d] as it is (no
// slices copied out of it), the queries being its last Nq tokens (Nq < N: the pretraining decoder's last block).
struct Shape {
  int64_t clips, tokens, heads, d, nq, nk, dp, tiles, nkp;
  int64_t clips_per_bias;  // bias [..., 3, h, d]: its leading dims are the leading ones of qkv's (vmap), or none
};

// Where one (clip, head)'s rows of an operand are: row(clip, token, head) is that token's d values, to which
// bias(clip, head) (d values; none where null) is added.
struct Rows {
  const float* base;
  int64_t clip_stride, token_stride, d;
  const float* biases = nullptr;  // [..., 3, h, d] at this part
  int64_t clips_per_bias = 1, bias_stride = 0;
  const float* row(int64_t clip, int64_t token, int64_t head) const {
    return base + clip * clip_stride + token * token_stride + head * d;
  }
  const float* bias(int64_t clip, int64_t head) const {
    return biases == nullptr ? nullptr : biases + clip / clips_per_bias * bias_stride + head * d;
  }
};

// Part 0, 1 or 2 (q, k, v) of qkv [..., N, 3, h, d] from token `first` on, plus that part of bias [..., 3, h, d].
Rows qkv_rows(const Shape& s, const float* qkv, const float* bias, int part, int64_t first) {
  const int64_t token_stride = 3 * s.heads * s.d, part_offset = part * s.heads * s.d;
  return Rows{qkv + part_offset + first * token_stride, s.tokens * token_stride, token_stride, s.d,
              bias == nullptr ? nullptr : bias + part_offset, s.clips_per_bias, token_stride};
}
Rows queries(const Shape& s, const float* qkv, const float* bias = nullptr) {  // the last nq tokens
  return qkv_rows(s, qkv, bias, 0, s.tokens - s.nq);
}
Rows keys(const Shape& s, const float* qkv, const float* bias = nullptr) { return qkv_rows(s, qkv, bias, 1, 0); }
Rows values(const Shape& s, const float* qkv, const float* bias = nullptr) { return qkv_rows(s, qkv, bias, 2, 0); }

// out, dout [..., Nq, h, d].
Rows out_rows(const Shape& s, const float* out) {
  return Rows{out, s.nq * s.heads * s.d, s.heads * s.d, s.d};
}

ffi::Error read_shape(const ffi::Buffer<ffi::F32>& qkv, const ffi::Buffer<ffi::F32>& bias, int64_t query_rows,
                      Shape* s) {
  const auto dims = qkv.dimensions(), bias_dims = bias.dimensions();
  const size_t rank = dims.size();
  if (rank < 4 || dims[rank - 3] != 3)
    return ffi::Error::InvalidArgument("videomae attention: qkv must be [..., N, 3, h, d]");
  s->clips = 1;
  for (size_t i = 0; i + 4 < rank; ++i) s->clips *= dims[i];
  s->tokens = dims[rank - 4];
  s->heads = dims[rank - 2];
  s->d = dims[rank - 1];
  s->nk = s->tokens;
  s->nq = query_rows;
  if (s->nk == 0 || query_rows < 0 || query_rows > s->nk)
    return ffi::Error::InvalidArgument("videomae attention: need 0 <= query_rows <= N and N > 0");
  s->dp = (s->d + W - 1) / W * W;
  s->tiles = (s->nk + kKeyTile - 1) / kKeyTile;
  s->nkp = s->tiles * kKeyTile;
  // bias [..., 3, h, d]: under vmap it gains the mapped (leading) dims of qkv; each of its [3, h, d] serves a run of
  // clips_per_bias clips.
  const size_t bias_rank = bias_dims.size();
  bool bias_ok = bias_rank >= 3 && bias_rank <= rank - 1;
  for (size_t i = 0; bias_ok && i < 3; ++i) bias_ok = bias_dims[bias_rank - 1 - i] == dims[rank - 1 - i];
  for (size_t i = 0; bias_ok && i + 3 < bias_rank; ++i) bias_ok = bias_dims[i] == dims[i];
  if (!bias_ok) return ffi::Error::InvalidArgument("videomae attention: bias must be [..., 3, h, d] like qkv");
  s->clips_per_bias = s->clips / std::max<int64_t>(1, bias.element_count() / (3 * s->heads * s->d));
  return ffi::Error::Success();
}

// One (clip, head)'s keys (or values) as tiles [tiles][dp][kKeyTile], zero padded (the operand of rows_by_keys).
void pack_key_tiles(const Shape& s, const Rows& x, int64_t clip, int64_t head, float* out) {
  std::fill(out, out + s.nkp * s.dp, 0.0f);
  const float* bias = x.bias(clip, head);
  for (int64_t j = 0; j < s.nk; ++j) {
    const float* row = x.row(clip, j, head);
    float* tile = out + (j / kKeyTile) * s.dp * kKeyTile + j % kKeyTile;
    for (int64_t c = 0; c < s.d; ++c) tile[c * kKeyTile] = bias == nullptr ? row[c] : row[c] + bias[c];
  }
}

// Rows first .. first + n of one (clip, head) as [n_padded][dp], zero padded, plus bias, times `scale` (in that
// order, as the XLA path rounds them).
void pack_rows(const Shape& s, const Rows& x, int64_t clip, int64_t head, int64_t first, int64_t n, int64_t n_padded,
               float scale, float* out) {
  std::fill(out, out + n_padded * s.dp, 0.0f);
  const float* bias = x.bias(clip, head);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x.row(clip, first + i, head);
    for (int64_t c = 0; c < s.d; ++c) out[i * s.dp + c] = (bias == nullptr ? row[c] : row[c] + bias[c]) * scale;
  }
}

// Runs body(i) for i in [0, n) on the calling thread and up to (pool size - 1) of XLA's intra-op threads. Items
// are claimed from a shared counter, so tasks the pool starts late (or runs inline) find none left; the caller
// returns once every item is done, and the shared state outlives any task still to start.
template <class Body>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const Body& body) {
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable all_done;
  };
  auto state = std::make_shared<State>();
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  auto work = [state, n, &body]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      body(i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->all_done.notify_all();
      }
    }
  };
  for (int64_t t = 0; t < helpers; ++t) {
    auto task = work;  // the pool takes ownership of a copy
    pool.Schedule(std::move(task));
  }
  work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->all_done.wait(lock, [&] { return state->done.load() == n; });
}

// ---------------------------------------------------------------------------------------------------------------
// Forward

struct ForwardWorkspace {
  Buffer q, scores, out;
  std::vector<vf, CacheLineAllocator<vf>> row_max;
};

// One block of query rows of one (clip, head): scores, softmax statistics, output.
void forward_block(const Shape& s, float scale, const Rows& q, const float* k_tiles, const float* v_rows,
                   int64_t clip, int64_t head, int64_t first, float* out, float* peak, float* inverse_total,
                   ForwardWorkspace& ws) {
  const int64_t rows = std::min<int64_t>(kQueryBlock, s.nq - first);
  const int dp = static_cast<int>(s.dp);
  const int64_t full_tiles = s.nk / kKeyTile;  // a last, partial tile holds padding keys, kept out of the max
  ws.q.resize(rows * s.dp);
  ws.scores.resize(rows * s.nkp);
  ws.out.resize(rows * s.dp);
  ws.row_max.resize(kRowsByKeys);
  pack_rows(s, q, clip, head, first, rows, rows, scale, ws.q.data());  // q * scale, as the XLA path rounds it
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsByKeys) {
    const int64_t n = std::min<int64_t>(kRowsByKeys, rows - r0);
    float* scores = ws.scores.data() + r0 * s.nkp;
    const float* a = ws.q.data() + r0 * dp;
    for (int64_t r = 0; r < n; ++r) ws.row_max[r] = splat(-INFINITY);
    for (int64_t t = 0; t < full_tiles; ++t) {
      const float* tile = k_tiles + t * dp * kKeyTile;
      if (n == kRowsByKeys) {
        rows_by_key_tile<kRowsByKeys, true>(a, dp, tile, scores + t * kKeyTile, s.nkp, ws.row_max.data());
      } else {
        for (int64_t r = 0; r < n; ++r)
          rows_by_key_tile<1, true>(a + r * dp, dp, tile, scores + r * s.nkp + t * kKeyTile, s.nkp,
                                    ws.row_max.data() + r);
      }
    }
    if (full_tiles < s.tiles)
      for (int64_t r = 0; r < n; ++r)
        rows_by_key_tile<1, false>(a + r * dp, dp, k_tiles + full_tiles * dp * kKeyTile,
                                   scores + r * s.nkp + full_tiles * kKeyTile, s.nkp, nullptr);
    for (int64_t r = 0; r < n; ++r) {  // softmax numerators in place; padding keys get probability 0
      float* row = scores + r * s.nkp;
      float max = lane_max(ws.row_max[r]);
      for (int64_t j = full_tiles * kKeyTile; j < s.nk; ++j) max = std::max(max, row[j]);
      const vf max_v = splat(max);
      vf sum_v = vf{};
      int64_t j = 0;
      for (; j + W <= s.nk; j += W) {
        const vf e = exp_nonpositive(load(row + j) - max_v);
        store(row + j, e);
        sum_v += e;
      }
      float sum = lane_sum(sum_v);
      for (; j < s.nk; ++j) {
        row[j] = std::exp(row[j] - max);
        sum += row[j];
      }
      std::fill(row + s.nk, row + s.nkp, 0.0f);
      peak[first + r0 + r] = max;
      inverse_total[first + r0 + r] = 1.0f / sum;
    }
  }
  rows_by_width_all(ws.scores.data(), rows, s.nkp, v_rows, dp, static_cast<int>(s.nkp), ws.out.data());
  const Rows out_view = out_rows(s, out);
  for (int64_t r = 0; r < rows; ++r) {  // divided by the sum, as the XLA path divides (not times its inverse)
    const float sum = 1.0f / inverse_total[first + r];
    float* out_row = const_cast<float*>(out_view.row(clip, first + r, head));
    for (int64_t c = 0; c < s.d; ++c) out_row[c] = ws.out[r * s.dp + c] / sum;
  }
}

ffi::Error AttentionForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> bias,
                            int64_t query_rows, float scale,
                            ffi::ResultBuffer<ffi::F32> out, ffi::ResultBuffer<ffi::F32> peak,
                            ffi::ResultBuffer<ffi::F32> inverse_total) {
  Shape s;
  if (ffi::Error error = read_shape(qkv, bias, query_rows, &s); error.failure()) return error;
  if (s.clips * s.heads * s.nq == 0) return ffi::Error::Success();
  const Rows q = queries(s, qkv.typed_data(), bias.typed_data()), k = keys(s, qkv.typed_data(), bias.typed_data());
  const Rows v = values(s, qkv.typed_data(), bias.typed_data());
  const int64_t heads = s.clips * s.heads, blocks = (s.nq + kQueryBlock - 1) / kQueryBlock, size = s.nkp * s.dp;
  Buffer k_tiles(heads * size), v_rows(heads * size);
  parallel_for(pool, heads, [&](int64_t item) {
    const int64_t clip = item / s.heads, head = item % s.heads;
    pack_key_tiles(s, k, clip, head, k_tiles.data() + item * size);
    pack_rows(s, v, clip, head, 0, s.nk, s.nkp, 1.0f, v_rows.data() + item * size);
  });
  parallel_for(pool, heads * blocks, [&](int64_t item) {
    thread_local ForwardWorkspace workspace;
    const int64_t clip_head = item / blocks, clip = clip_head / s.heads, head = clip_head % s.heads;
    forward_block(s, scale, q, k_tiles.data() + clip_head * size, v_rows.data() + clip_head * size, clip, head,
                  (item % blocks) * kQueryBlock, out->typed_data(), peak->typed_data() + clip_head * s.nq,
                  inverse_total->typed_data() + clip_head * s.nq, workspace);
  });
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------------------------
// Backward

struct BackwardWorkspace {
  Buffer k_tiles, v_tiles, k_rows, q, dout, probs, dprobs, dq, dk, dv;
  std::vector<float> delta;
};

// One (clip, head): per block of query rows, p = exp(q k^T - max) / sum; dv += p^T dout; dp = dout v^T;
// ds = p * (dp - rowsum(dout * out)); dq = ds k * scale; dk += ds^T (q * scale). Writes its dq, dk, dv into
// dqkv [..., N, 3, h, d]; the dq of tokens that are no queries (the first N - Nq) is zero.
void backward_head(const Shape& s, float scale, const float* qkv, const float* bias, const float* out, const float* peak,
                   const float* inverse_total, const float* dout, int64_t clip, int64_t head, float* dqkv,
                   BackwardWorkspace& ws) {
  const int dp = static_cast<int>(s.dp);
  const int64_t size = s.nkp * s.dp;
  const Rows q = queries(s, qkv, bias), k = keys(s, qkv, bias), v = values(s, qkv, bias);
  const Rows o = out_rows(s, out), dout_view = out_rows(s, dout);
  for (Buffer* b : {&ws.k_tiles, &ws.v_tiles, &ws.k_rows}) b->resize(size);
  for (Buffer* b : {&ws.q, &ws.dout}) b->resize(s.nq * s.dp);
  ws.probs.resize(kQueryBlock * s.nkp);
  ws.dprobs.resize(kQueryBlock * s.nkp);
  ws.dq.resize(kQueryBlock * s.dp);
  ws.dk.assign(size, 0.0f);
  ws.dv.assign(size, 0.0f);
  ws.delta.resize(s.nq);
  pack_key_tiles(s, k, clip, head, ws.k_tiles.data());
  pack_key_tiles(s, v, clip, head, ws.v_tiles.data());
  pack_rows(s, k, clip, head, 0, s.nk, s.nkp, 1.0f, ws.k_rows.data());
  pack_rows(s, q, clip, head, 0, s.nq, s.nq, scale, ws.q.data());
  pack_rows(s, dout_view, clip, head, 0, s.nq, s.nq, 1.0f, ws.dout.data());
  for (int64_t i = 0; i < s.nq; ++i) {
    const float* o_row = o.row(clip, i, head);
    float sum = 0.0f;
    for (int64_t c = 0; c < s.d; ++c) sum += ws.dout[i * s.dp + c] * o_row[c];
    ws.delta[i] = sum;
  }
  const Rows dq = queries(s, dqkv), dk = keys(s, dqkv), dv = values(s, dqkv);
  for (int64_t first = 0; first < s.nq; first += kQueryBlock) {
    const int64_t rows = std::min<int64_t>(kQueryBlock, s.nq - first);
    const float* q_block = ws.q.data() + first * dp;
    const float* dout_block = ws.dout.data() + first * dp;
    rows_by_keys(q_block, rows, dp, ws.k_tiles.data(), s.tiles, ws.probs.data(), s.nkp);
    rows_by_keys(dout_block, rows, dp, ws.v_tiles.data(), s.tiles, ws.dprobs.data(), s.nkp);
    for (int64_t r = 0; r < rows; ++r) {
      float* p = ws.probs.data() + r * s.nkp;
      float* ds = ws.dprobs.data() + r * s.nkp;
      const vf max_v = splat(peak[first + r]), inverse_v = splat(inverse_total[first + r]);
      const vf delta_v = splat(ws.delta[first + r]);
      int64_t j = 0;
      for (; j + W <= s.nk; j += W) {
        const vf pj = exp_nonpositive(load(p + j) - max_v) * inverse_v;
        store(p + j, pj);
        store(ds + j, pj * (load(ds + j) - delta_v));
      }
      for (; j < s.nk; ++j) {
        p[j] = std::exp(p[j] - peak[first + r]) * inverse_total[first + r];
        ds[j] = p[j] * (ds[j] - ws.delta[first + r]);
      }
      std::fill(p + s.nk, p + s.nkp, 0.0f);
      std::fill(ds + s.nk, ds + s.nkp, 0.0f);
    }
    keys_by_width(ws.probs.data(), rows, s.nkp, dout_block, dp, ws.dv.data());
    keys_by_width(ws.dprobs.data(), rows, s.nkp, q_block, dp, ws.dk.data());
    rows_by_width_all(ws.dprobs.data(), rows, s.nkp, ws.k_rows.data(), dp, static_cast<int>(s.nkp), ws.dq.data());
    for (int64_t r = 0; r < rows; ++r) {
      float* row = const_cast<float*>(dq.row(clip, first + r, head));
      for (int64_t c = 0; c < s.d; ++c) row[c] = ws.dq[r * s.dp + c] * scale;
    }
  }
  const Rows no_query = qkv_rows(s, dqkv, nullptr, 0, 0);  // tokens before the queries: their q gets no gradient
  for (int64_t j = 0; j < s.tokens - s.nq; ++j) std::fill_n(const_cast<float*>(no_query.row(clip, j, head)), s.d, 0.0f);
  for (int64_t j = 0; j < s.nk; ++j) {
    std::memcpy(const_cast<float*>(dk.row(clip, j, head)), ws.dk.data() + j * s.dp, s.d * sizeof(float));
    std::memcpy(const_cast<float*>(dv.row(clip, j, head)), ws.dv.data() + j * s.dp, s.d * sizeof(float));
  }
}

ffi::Error AttentionBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> bias,
                             ffi::Buffer<ffi::F32> out,
                             ffi::Buffer<ffi::F32> peak, ffi::Buffer<ffi::F32> inverse_total,
                             ffi::Buffer<ffi::F32> dout, int64_t query_rows, float scale,
                             ffi::ResultBuffer<ffi::F32> dqkv) {
  Shape s;
  if (ffi::Error error = read_shape(qkv, bias, query_rows, &s); error.failure()) return error;
  if (s.clips * s.heads * s.nq == 0) {
    std::fill(dqkv->typed_data(), dqkv->typed_data() + dqkv->element_count(), 0.0f);
    return ffi::Error::Success();
  }
  parallel_for(pool, s.clips * s.heads, [&](int64_t item) {
    thread_local BackwardWorkspace workspace;
    backward_head(s, scale, qkv.typed_data(), bias.typed_data(), out.typed_data(), peak.typed_data() + item * s.nq,
                  inverse_total.typed_data() + item * s.nq, dout.typed_data(), item / s.heads, item % s.heads,
                  dqkv->typed_data(), workspace);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(VideomaeAttentionForward, AttentionForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // qkv
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias [3, h, d]
                                  .Attr<int64_t>("query_rows")
                                  .Attr<float>("scale")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // out
                                  .Ret<ffi::Buffer<ffi::F32>>()   // peak
                                  .Ret<ffi::Buffer<ffi::F32>>());  // inverse_total

XLA_FFI_DEFINE_HANDLER_SYMBOL(VideomaeAttentionBackward, AttentionBackward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // qkv
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias [3, h, d]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // out
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peak
                                  .Arg<ffi::Buffer<ffi::F32>>()  // inverse_total
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dout
                                  .Attr<int64_t>("query_rows")
                                  .Attr<float>("scale")
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dqkv
