// Matrix products straight from GGUF quantised blocks: y[b, n] = sum_k x[b, k] * W[n, k].
//
// W stays in the file's block format, one row of blocks per output row ([N, row_bytes] uint8). The
// activations are quantised per block of 32 to int8 with one scale (Q8, as llama.cpp does), so each
// block's dot product is an integer dot product scaled once. Every (b, n) is computed alone, in the
// same order whatever the batch: a row's result never depends on its batch mates.
//
// Block formats (32 weights a block, d and m are IEEE halves):
//   Q4_0  {d, qs[16]}      w = d * (q - 8), q = qs[j] & 15 for weight j, qs[j] >> 4 for weight j + 16
//   Q4_1  {d, m, qs[16]}   w = d * q + m
//   Q8_0  {d, qs[32]}      w = d * qs[j] (int8)
//
// AVX2 (with FMA and F16C) is chosen at run time where the CPU has it; a portable path otherwise.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EE_X86 1
#endif

namespace {

constexpr int QK = 32;  // weights per block
enum QType : int64_t { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8 };  // GGML's type numbers

inline float half_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

int block_bytes(int64_t qtype) {
  switch (qtype) {
    case Q4_0: return 2 + QK / 2;
    case Q4_1: return 4 + QK / 2;
    case Q8_0: return 2 + QK;
    default: return 0;
  }
}

// One row of activations as Q8 blocks: scale d, int8 values, and d * sum(values) (Q4_1's min term).
struct Q8Row {
  std::vector<float> d, dsum;
  std::vector<int8_t> q;
};

void quantise_row(const float* x, int64_t k, Q8Row& out) {
  const int64_t nb = k / QK;
  out.d.resize(nb);
  out.dsum.resize(nb);
  out.q.resize(k);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * QK;
    float amax = 0.f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float inv = d > 0.f ? 1.f / d : 0.f;
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      const int v = static_cast<int>(std::nearbyint(xb[j] * inv));
      out.q[i * QK + j] = static_cast<int8_t>(v);
      sum += v;
    }
    out.d[i] = d;
    out.dsum[i] = d * static_cast<float>(sum);
  }
}

// ---- the portable path --------------------------------------------------------------------------

float dot_row_portable(int64_t qtype, const uint8_t* w, const Q8Row& x, int64_t nb) {
  float acc = 0.f;
  const int bb = block_bytes(qtype);
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = w + i * bb;
    const int8_t* xq = x.q.data() + i * QK;
    const float dw = half_to_float(b);
    int sum = 0;
    if (qtype == Q8_0) {
      const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
      for (int j = 0; j < QK; ++j) sum += q[j] * xq[j];
      acc += dw * x.d[i] * static_cast<float>(sum);
    } else {
      const uint8_t* qs = b + (qtype == Q4_1 ? 4 : 2);
      const int offset = qtype == Q4_0 ? 8 : 0;
      for (int j = 0; j < QK / 2; ++j) {
        sum += ((qs[j] & 15) - offset) * xq[j] + ((qs[j] >> 4) - offset) * xq[j + QK / 2];
      }
      acc += dw * x.d[i] * static_cast<float>(sum);
      if (qtype == Q4_1) acc += half_to_float(b + 2) * x.dsum[i];
    }
  }
  return acc;
}

// ---- AVX2 ----------------------------------------------------------------------------------------

#ifdef EE_X86
#define EE_AVX2 __attribute__((target("avx2,fma,f16c")))

EE_AVX2 inline float half_f16c(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 16 bytes of nibbles -> 32 bytes: the low nibbles (weights 0..15), then the high ones (16..31).
EE_AVX2 inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low = _mm_and_si128(bytes, _mm_set1_epi8(15));
  const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
  return _mm256_set_m128i(high, low);
}

// Pairs of u8 * s8 products summed to int32 lanes, as floats.
EE_AVX2 inline __m256 madd_u8_i8(__m256i u, __m256i s) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

EE_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One weight row against NB activation rows: each weight block is unpacked once for the NB rows. Q4
// weights are unsigned nibbles q: Q4_0's w = d * q - 8 d is Q4_1's w = d * q + m with m = -8 d, so both
// multiply u8 weights by s8 activations (maddubs) and add m times the activation block's sum. Q8_0's
// signed weights use the sign trick (|w| times x given w's sign). The minimum terms are summed with an
// explicit fma: left to the compiler, instantiations for different NB contracted them differently and
// a row's result depended on how many rows shared the call.
template <int QT, int NB>
EE_AVX2 void row_avx2(const uint8_t* w, const Q8Row* const* xs, int64_t nb, float* out) {
  constexpr int bb = QT == Q4_0 ? 2 + QK / 2 : QT == Q4_1 ? 4 + QK / 2 : 2 + QK;
  const int8_t* xq[NB];
  const float* xd[NB];
  const float* xsum[NB];
  __m256 acc[NB];
  float mins[NB];
  for (int j = 0; j < NB; ++j) {  // raw pointers: the loop below reads no vector's internals
    xq[j] = xs[j]->q.data();
    xd[j] = xs[j]->d.data();
    xsum[j] = xs[j]->dsum.data();
    acc[j] = _mm256_setzero_ps();
    mins[j] = 0.f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = w + i * bb;
    const float dw = half_f16c(b);
    __m256i wq;
    float dm = 0.f;
    if constexpr (QT == Q8_0) wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    if constexpr (QT == Q4_0) {
      wq = unpack_nibbles(b + 2);
      dm = -8.f * dw;
    }
    if constexpr (QT == Q4_1) {
      wq = unpack_nibbles(b + 4);
      dm = half_f16c(b + 2);
    }
    const __m256i wabs = QT == Q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
    for (int j = 0; j < NB; ++j) {
      __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[j] + i * QK));
      if constexpr (QT == Q8_0) x = _mm256_sign_epi8(x, wq);
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[j][i]), madd_u8_i8(wabs, x), acc[j]);
      if constexpr (QT != Q8_0) mins[j] = std::fma(dm, xsum[j][i], mins[j]);
    }
  }
  for (int j = 0; j < NB; ++j) out[j] = hsum(acc[j]) + mins[j];
}

template <int QT>
EE_AVX2 void rows_avx2(const uint8_t* w, int64_t row_bytes, int64_t o0, int64_t o1, const std::vector<Q8Row>& rows,
                       int64_t nb, float* y, int64_t n) {
  const int64_t batch = static_cast<int64_t>(rows.size());
  float out[4];
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* wr = w + o * row_bytes;
    for (int64_t b0 = 0; b0 < batch; b0 += 4) {
      const Q8Row* xs[4];
      const int m = static_cast<int>(std::min<int64_t>(4, batch - b0));
      for (int j = 0; j < m; ++j) xs[j] = &rows[b0 + j];
      switch (m) {
        case 1: row_avx2<QT, 1>(wr, xs, nb, out); break;
        case 2: row_avx2<QT, 2>(wr, xs, nb, out); break;
        case 3: row_avx2<QT, 3>(wr, xs, nb, out); break;
        default: row_avx2<QT, 4>(wr, xs, nb, out); break;
      }
      for (int j = 0; j < m; ++j) y[(b0 + j) * n + o] = out[j];
    }
  }
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}
#endif

// x: [B, K] float32; w: [N, K / 32 * block_bytes] uint8 -> [B, N] float32
at::Tensor qmatmul(const at::Tensor& x, const at::Tensor& w, int64_t qtype, bool portable) {
  TORCH_CHECK(block_bytes(qtype) > 0, "qmatmul: unsupported block type ", qtype);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "qmatmul: x must be [B, K] float32");
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kByte, "qmatmul: w must be [N, row_bytes] uint8");
  const int64_t k = x.size(1), n = w.size(0), batch = x.size(0);
  TORCH_CHECK(k % QK == 0, "qmatmul: K (", k, ") must be a multiple of ", QK);
  const int64_t nb = k / QK;
  TORCH_CHECK(w.size(1) == nb * block_bytes(qtype), "qmatmul: w has ", w.size(1), " bytes a row, K=", k,
              " needs ", nb * block_bytes(qtype));
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  std::vector<Q8Row> rows(batch);
  const float* xp = xc.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) quantise_row(xp + b * k, k, rows[b]);
  at::Tensor y = at::empty({batch, n}, x.options());
  float* yp = y.data_ptr<float>();
  const uint8_t* wp = wc.data_ptr<uint8_t>();
  const int64_t row_bytes = wc.size(1);
  at::parallel_for(0, n, 32, [&](int64_t start, int64_t end) {
#ifdef EE_X86
    if (!portable && cpu_has_avx2()) {
      switch (qtype) {
        case Q4_0: return rows_avx2<Q4_0>(wp, row_bytes, start, end, rows, nb, yp, n);
        case Q4_1: return rows_avx2<Q4_1>(wp, row_bytes, start, end, rows, nb, yp, n);
        default: return rows_avx2<Q8_0>(wp, row_bytes, start, end, rows, nb, yp, n);
      }
    }
#endif
    for (int64_t o = start; o < end; ++o) {
      for (int64_t b = 0; b < batch; ++b) yp[b * n + o] = dot_row_portable(qtype, wp + o * row_bytes, rows[b], nb);
    }
  });
  return y;
}

at::Tensor qmatmul_op(const at::Tensor& x, const at::Tensor& w, int64_t qtype) { return qmatmul(x, w, qtype, false); }

at::Tensor qmatmul_portable_op(const at::Tensor& x, const at::Tensor& w, int64_t qtype) {
  return qmatmul(x, w, qtype, true);
}

bool has_avx2_op() {
#ifdef EE_X86
  return cpu_has_avx2();
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY(ee, m) {
  m.def("qmatmul(Tensor x, Tensor w, int qtype) -> Tensor");
  m.def("qmatmul_portable(Tensor x, Tensor w, int qtype) -> Tensor");
  m.def("has_avx2() -> bool", has_avx2_op);
}

TORCH_LIBRARY_IMPL(ee, CPU, m) {
  m.impl("qmatmul", qmatmul_op);
  m.impl("qmatmul_portable", qmatmul_portable_op);
}
