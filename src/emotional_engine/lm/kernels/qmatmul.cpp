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

// ---- AVX2 ---------------------------------------------------------------------------------------

#ifdef EE_X86
// 32 signed bytes a * 32 signed bytes b, summed into 8 int32 lanes, as floats.
__attribute__((target("avx2,fma"))) inline __m256 dot_i8(__m256i a, __m256i b) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// 32 unsigned bytes a (0..15) * 32 signed bytes b.
__attribute__((target("avx2,fma"))) inline __m256 dot_u8_i8(__m256i a, __m256i b) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
}

// 16 bytes of nibbles -> 32 bytes: the low nibbles (weights 0..15), then the high ones (16..31).
__attribute__((target("avx2,fma"))) inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low = _mm_and_si128(bytes, _mm_set1_epi8(15));
  const __m128i high = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(15));
  return _mm256_set_m128i(high, low);
}

__attribute__((target("avx2,fma,f16c"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) float dot_row_avx2(int64_t qtype, const uint8_t* w, const Q8Row& x,
                                                          int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float min_terms = 0.f;
  const int bb = block_bytes(qtype);
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = w + i * bb;
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q.data() + i * QK));
    const __m256 scale = _mm256_set1_ps(half_to_float(b) * x.d[i]);
    __m256 sums;
    if (qtype == Q8_0) {
      sums = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)), xq);
    } else if (qtype == Q4_0) {
      sums = dot_i8(_mm256_sub_epi8(unpack_nibbles(b + 2), _mm256_set1_epi8(8)), xq);
    } else {  // Q4_1
      sums = dot_u8_i8(unpack_nibbles(b + 4), xq);
      min_terms += half_to_float(b + 2) * x.dsum[i];
    }
    acc = _mm256_fmadd_ps(scale, sums, acc);
  }
  return hsum(acc) + min_terms;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}
#endif

using DotRow = float (*)(int64_t, const uint8_t*, const Q8Row&, int64_t);

DotRow choose_dot(bool portable) {
#ifdef EE_X86
  if (!portable && cpu_has_avx2()) return dot_row_avx2;
#endif
  return dot_row_portable;
}

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
  const DotRow dot = choose_dot(portable);
  at::parallel_for(0, n, 16, [&](int64_t start, int64_t end) {
    for (int64_t o = start; o < end; ++o) {
      for (int64_t b = 0; b < batch; ++b) yp[b * n + o] = dot(qtype, wp + o * row_bytes, rows[b], nb);
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
