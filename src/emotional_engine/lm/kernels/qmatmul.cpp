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
// Chosen at run time by what the CPU has: AVX-512 VNNI, else AVX2 (with FMA and F16C), else a portable path.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

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

// ---- x86: AVX2, and AVX-512 VNNI where the CPU has it ----------------------------------------------

#ifdef EE_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
#define EE_VNNI 0
#include "qmatmul_x86.inc"
#undef EE_VNNI
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")
namespace vnni {
#define EE_VNNI 1
#include "qmatmul_x86.inc"
#undef EE_VNNI
}  // namespace vnni
#pragma GCC pop_options

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

bool cpu_has_vnni() {
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512vnni");
  return has;
}
#endif

// x: [B, K] float32; w: [N, K / 32 * block_bytes] uint8 -> [B, N] float32
at::Tensor qmatmul(const at::Tensor& x, const at::Tensor& w, int64_t qtype, bool portable, bool vnni_allowed = true) {
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
    if (!portable && vnni_allowed && cpu_has_vnni()) {
      switch (qtype) {
        case Q4_0: return vnni::rows_avx2<Q4_0>(wp, row_bytes, start, end, rows, nb, yp, n);
        case Q4_1: return vnni::rows_avx2<Q4_1>(wp, row_bytes, start, end, rows, nb, yp, n);
        default: return vnni::rows_avx2<Q8_0>(wp, row_bytes, start, end, rows, nb, yp, n);
      }
    }
    if (!portable && cpu_has_avx2()) {
      switch (qtype) {
        case Q4_0: return avx2::rows_avx2<Q4_0>(wp, row_bytes, start, end, rows, nb, yp, n);
        case Q4_1: return avx2::rows_avx2<Q4_1>(wp, row_bytes, start, end, rows, nb, yp, n);
        default: return avx2::rows_avx2<Q8_0>(wp, row_bytes, start, end, rows, nb, yp, n);
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

at::Tensor qmatmul_avx2_op(const at::Tensor& x, const at::Tensor& w, int64_t qtype) {
  return qmatmul(x, w, qtype, false, false);
}

std::string path_op() {  // the path qmatmul takes on this CPU
#ifdef EE_X86
  if (cpu_has_vnni()) return "avx512-vnni";
  if (cpu_has_avx2()) return "avx2";
#endif
  return "portable";
}

}  // namespace

TORCH_LIBRARY(ee, m) {
  m.def("qmatmul(Tensor x, Tensor w, int qtype) -> Tensor");
  m.def("qmatmul_portable(Tensor x, Tensor w, int qtype) -> Tensor");
  m.def("qmatmul_avx2(Tensor x, Tensor w, int qtype) -> Tensor");  // AVX2 even where VNNI is there
  m.def("path() -> str", path_op);
}

TORCH_LIBRARY_IMPL(ee, CPU, m) {
  m.impl("qmatmul", qmatmul_op);
  m.impl("qmatmul_portable", qmatmul_portable_op);
  m.impl("qmatmul_avx2", qmatmul_avx2_op);
}
