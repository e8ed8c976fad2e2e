// Matrix products straight from GGUF quantised blocks, as torch ops: y[b, n] = sum_k x[b, k] * W[n, k].
//
// W stays in the file's block format (blocks.h), one row of blocks per output row ([N, row_bytes] uint8);
// the activations are quantised per block of 32 to int8 with one scale (Q8, as llama.cpp does), so each
// block's dot product is an integer dot product scaled once. Every (b, n) is computed alone, in the
// same order whatever the batch: a row's result never depends on its batch mates.
//
// qmatmul goes row by row on the portable path (the reference, and the path where the others cannot
// run); repack_x8 regroups W eight rows at a time for qmatmul_x8, which takes the fastest path this CPU
// has (paths.h: AVX-512 VNNI, AVX2, or NEON with the dot product extension).

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <string>

#include "paths.h"

namespace {

using namespace ee;

// x: [B, K] float32; w: [N, K / 32 * block_bytes] uint8 -> [B, N] float32, row by row on the portable
// path: the reference the repacked kernels are tested against, and the path where they cannot run.
at::Tensor qmatmul(const at::Tensor& x, const at::Tensor& w, int64_t qtype) {
  TORCH_CHECK(block_bytes(qtype) > 0, "qmatmul: unsupported block type ", qtype);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "qmatmul: x must be [B, K] float32");
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kByte, "qmatmul: w must be [N, row_bytes] uint8");
  const int64_t k = x.size(1), n = w.size(0), batch = x.size(0);
  TORCH_CHECK(k % block_weights(qtype) == 0, "qmatmul: K (", k, ") must be a multiple of ", block_weights(qtype));
  const int64_t nb = k / block_weights(qtype);
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
      for (int64_t b = 0; b < batch; ++b)
        yp[b * n + o] = is_k(qtype) ? dot_k_portable(qtype, wp + o * row_bytes, rows[b], nb)
                                    : dot_row_portable(qtype, wp + o * row_bytes, rows[b], nb);
    }
  });
  return y;
}

// Blocks [N, row_bytes] -> [ceil(N / 8), units, X8_BYTES]: groups of 8 rows for qmatmul_x8, a unit
// being a block of 32 (K / 32 of them) or a K-quant super-block (K / 256). Layouts in x86.inc;
// missing rows of the last group are zeros.
at::Tensor repack_x8(const at::Tensor& w, int64_t qtype) {
  TORCH_CHECK(block_bytes(qtype) > 0, "repack_x8: unsupported block type ", qtype);
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kByte && w.size(1) % block_bytes(qtype) == 0,
              "repack_x8: w must be [N, row_bytes] uint8 of whole blocks");
  const at::Tensor wc = w.contiguous();
  const int64_t n = wc.size(0), bb = block_bytes(qtype), nb = wc.size(1) / bb, groups = (n + 7) / 8;
  const int64_t bytes = X8_BYTES[x8_layout(qtype)];
  at::Tensor out = at::zeros({groups, nb, bytes}, wc.options());
  const uint8_t* src = wc.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < nb; ++i)
      for (int r = 0; r < 8 && g * 8 + r < n; ++r)
        repack_block(qtype, src + (g * 8 + r) * wc.size(1) + i * bb, r, dst + (g * nb + i) * bytes);
  return out;
}

// x: [B, K] float32; packed: repack_x8's [G, units, bytes] (the layout known by its bytes) -> [B, n] float32
at::Tensor qmatmul_x8(const at::Tensor& x, const at::Tensor& packed, int64_t n, bool vnni_allowed) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "qmatmul_x8: x must be [B, K] float32");
  TORCH_CHECK(packed.dim() == 3, "qmatmul_x8: packed must be repack_x8's [groups, units, bytes]");
  int layout = -1;
  for (int l = X8_Q4; l <= X8_K6; ++l)
    if (packed.size(2) == X8_BYTES[l]) layout = l;
  const int64_t unit = layout >= X8_K4 ? QKK : QK;  // weights a unit covers along K
  TORCH_CHECK(layout >= 0 && packed.size(1) * unit == x.size(1) && n <= 8 * packed.size(0) && n > 8 * (packed.size(0) - 1),
              "qmatmul_x8: packed does not fit x's K or n");
  const Path path = vnni_allowed || cpu_path() != Path::vnni ? cpu_path() : Path::avx2;
  TORCH_CHECK(path != Path::portable, "qmatmul_x8 needs AVX2 (x86) or the dot product extension (arm64)");
  const int64_t k = x.size(1), units = packed.size(1), batch = x.size(0), groups = packed.size(0), padded = 8 * groups;
  const at::Tensor xc = x.contiguous(), pc = packed.contiguous();
  std::vector<Q8Row> rows(batch);
  for (int64_t b = 0; b < batch; ++b) quantise_row(xc.data_ptr<float>() + b * k, k, rows[b]);
  at::Tensor y = at::empty({batch, padded}, x.options());
  float* yp = y.data_ptr<float>();
  const uint8_t* pp = pc.data_ptr<uint8_t>();
  at::parallel_for(0, groups, 4, [&](int64_t start, int64_t end) {
    groups_on(path, layout, pp, start, end, rows, units, X8_BYTES[layout], yp, padded);
  });
  return padded == n ? y : y.narrow(1, 0, n).contiguous();
}

at::Tensor qmatmul_x8_op(const at::Tensor& x, const at::Tensor& packed, int64_t n) {
  return qmatmul_x8(x, packed, n, true);
}

at::Tensor qmatmul_x8_avx2_op(const at::Tensor& x, const at::Tensor& packed, int64_t n) {
  return qmatmul_x8(x, packed, n, false);
}

std::string path_op() { return path_name(cpu_path()); }  // the path qmatmul_x8 takes on this CPU

}  // namespace

namespace ee {
// for decode.cpp's fused layer: the product qmatmul_x8 computes, called without the dispatcher
at::Tensor qmatmul_x8(const at::Tensor& x, const at::Tensor& packed, int64_t n) { return qmatmul_x8_op(x, packed, n); }
}  // namespace ee

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
