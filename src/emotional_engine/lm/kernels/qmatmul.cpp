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
// The fast kernels take W repacked eight rows at a time (repack_x8, qmatmul_x8), chosen at run time by
// what the CPU has: AVX-512 VNNI, else AVX2 (with FMA and F16C); elsewhere qmatmul goes row by row.

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

// x: [B, K] float32; w: [N, K / 32 * block_bytes] uint8 -> [B, N] float32, row by row on the portable
// path: the reference the repacked kernels are tested against, and the path where they cannot run.
at::Tensor qmatmul(const at::Tensor& x, const at::Tensor& w, int64_t qtype) {
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
    for (int64_t o = start; o < end; ++o) {
      for (int64_t b = 0; b < batch; ++b) yp[b * n + o] = dot_row_portable(qtype, wp + o * row_bytes, rows[b], nb);
    }
  });
  return y;
}

// Blocks [N, row_bytes] -> [ceil(N / 8), K / 32, 160 for Q4 or 288 for Q8_0]: groups of 8 rows for
// qmatmul_x8 (layouts in qmatmul_x86.inc; missing rows of the last group are zeros). Q4_0's m is -8 d.
at::Tensor repack_x8(const at::Tensor& w, int64_t qtype) {
  TORCH_CHECK(block_bytes(qtype) > 0, "repack_x8: unsupported block type ", qtype);
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kByte && w.size(1) % block_bytes(qtype) == 0,
              "repack_x8: w must be [N, row_bytes] uint8 of whole blocks");
  const at::Tensor wc = w.contiguous();
  const int64_t n = wc.size(0), bb = block_bytes(qtype), nb = wc.size(1) / bb, groups = (n + 7) / 8;
  const int64_t bytes = qtype == Q8_0 ? 288 : 160;
  at::Tensor out = at::zeros({groups, nb, bytes}, wc.options());
  const uint8_t* src = wc.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* o = dst + (g * nb + i) * bytes;
      for (int r = 0; r < 8 && g * 8 + r < n; ++r) {
        const uint8_t* b = src + (g * 8 + r) * wc.size(1) + i * bb;
        std::memcpy(o + 2 * r, b, 2);  // d, as the file has it
        if (qtype == Q8_0) {
          for (int t = 0; t < 8; ++t) std::memcpy(o + 32 + 32 * t + 4 * r, b + 2 + 4 * t, 4);
          continue;
        }
        const uint16_t hm = qtype == Q4_1 ? [&] { uint16_t h; std::memcpy(&h, b + 2, 2); return h; }()
                                          : c10::detail::fp16_ieee_from_fp32_value(-8.f * half_to_float(b));
        std::memcpy(o + 16 + 2 * r, &hm, 2);
        const uint8_t* qs = b + (qtype == Q4_1 ? 4 : 2);
        uint8_t q[QK];  // the row's 32 weights, 0..15
        for (int j = 0; j < QK / 2; ++j) {
          q[j] = qs[j] & 15;
          q[j + QK / 2] = qs[j] >> 4;
        }
        for (int t = 0; t < 4; ++t)
          for (int c = 0; c < 4; ++c)
            o[32 + 32 * t + 4 * r + c] = static_cast<uint8_t>(q[4 * t + c] | (q[4 * (t + 4) + c] << 4));
      }
    }
  }
  return out;
}

// x: [B, K] float32; packed: repack_x8's [G, K / 32, 160] -> [B, n] float32
at::Tensor qmatmul_x8(const at::Tensor& x, const at::Tensor& packed, int64_t n, bool vnni_allowed) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "qmatmul_x8: x must be [B, K] float32");
  TORCH_CHECK(packed.dim() == 3 && (packed.size(2) == 160 || packed.size(2) == 288) && packed.size(1) * QK == x.size(1) &&
                  n <= 8 * packed.size(0) && n > 8 * (packed.size(0) - 1),
              "qmatmul_x8: packed does not fit x's K or n");
#ifdef EE_X86
  TORCH_CHECK(cpu_has_avx2(), "qmatmul_x8 needs AVX2");
  const int64_t k = x.size(1), nb = k / QK, batch = x.size(0), groups = packed.size(0), padded = 8 * groups;
  const at::Tensor xc = x.contiguous(), pc = packed.contiguous();
  std::vector<Q8Row> rows(batch);
  for (int64_t b = 0; b < batch; ++b) quantise_row(xc.data_ptr<float>() + b * k, k, rows[b]);
  at::Tensor y = at::empty({batch, padded}, x.options());
  float* yp = y.data_ptr<float>();
  const uint8_t* pp = pc.data_ptr<uint8_t>();
  const bool vnni = vnni_allowed && cpu_has_vnni();
  at::parallel_for(0, groups, 4, [&](int64_t start, int64_t end) {
    const bool q8 = pc.size(2) == 288;
    if (vnni) return q8 ? vnni::groups_x8<true>(pp, start, end, rows, nb, yp, padded)
                        : vnni::groups_x8<false>(pp, start, end, rows, nb, yp, padded);
    q8 ? avx2::groups_x8<true>(pp, start, end, rows, nb, yp, padded)
       : avx2::groups_x8<false>(pp, start, end, rows, nb, yp, padded);
  });
  return padded == n ? y : y.narrow(1, 0, n).contiguous();
#else
  TORCH_CHECK(false, "qmatmul_x8 needs an x86 CPU with AVX2");
#endif
}

at::Tensor qmatmul_x8_op(const at::Tensor& x, const at::Tensor& packed, int64_t n) {
  return qmatmul_x8(x, packed, n, true);
}

at::Tensor qmatmul_x8_avx2_op(const at::Tensor& x, const at::Tensor& packed, int64_t n) {
  return qmatmul_x8(x, packed, n, false);
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
  m.def("path() -> str", path_op);
  m.def("repack_x8(Tensor w, int qtype) -> Tensor");
  m.def("qmatmul_x8(Tensor x, Tensor packed, int n) -> Tensor");
  m.def("qmatmul_x8_avx2(Tensor x, Tensor packed, int n) -> Tensor");
}

TORCH_LIBRARY_IMPL(ee, CPU, m) {
  m.impl("qmatmul", qmatmul);
  m.impl("repack_x8", repack_x8);
  m.impl("qmatmul_x8", qmatmul_x8_op);
  m.impl("qmatmul_x8_avx2", qmatmul_x8_avx2_op);
}
