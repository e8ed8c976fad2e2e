// The decode pass's small steps, fused (lm/model.py's forward_packed uses them where the kernels load):
// at a batch of a few rows a transformer layer's norms, rotary, gated activation, residual adds and
// attention are a hundred PyTorch ops whose dispatch costs more than their arithmetic; each op here
// does one of those steps in one call. Every row (and every sequence's attention) is computed alone,
// in the same order whatever the batch, so a row's result never depends on its batch mates.
//
//   rms_norm(x, w, eps)             x / sqrt(mean(x^2) + eps) * w, row by row        x: [N, C]
//   add_rms_norm_(x, d, w, eps)     x += d in place, then rms_norm(x)                 the residual add
//   rope_(qk, cos, sin)             qk = qk * cos + roll(qk, hs/2) * sin, in place    qk: [N, H, hs]
//   silu_mul(gu, hidden)            silu(gu[:, :hidden]) * gu[:, hidden:]             gu: [N, 2 hidden]
//   decode_attention_(...)          one new token of each decoding sequence: its K/V written into the
//                                   cache at its position, then softmax(q K^T * scale) V over 0..pos
//   decode_layer_(...)              a whole decoder layer for a batch of decoding sequences, its four
//                                   projections in qmatmul_x8's repacked blocks (no adapter in the layer)

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#define EE_SIMD __attribute__((target("avx2,fma")))
#define EE_HAVE_AVX2() __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
#else
#define EE_SIMD
#define EE_HAVE_AVX2() false
#endif

namespace ee {
at::Tensor qmatmul_x8(const at::Tensor& x, const at::Tensor& packed, int64_t n);  // qmatmul.cpp
}

namespace {

// Each body is compiled twice, inlined into a function for AVX2 + FMA (picked at run time where the CPU
// has them) and into one for the compiler's baseline; `omp simd` vectorises the reductions in a fixed order.
#define EE_BODY __attribute__((always_inline)) inline

EE_BODY float dot_body(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

EE_BODY void rms_row_body(const float* x, const float* w, float* out, int64_t c, float eps) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < c; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / static_cast<float>(c) + eps);
#pragma omp simd
  for (int64_t i = 0; i < c; ++i) out[i] = x[i] * inv * w[i];
}

EE_BODY void axpy_body(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// exp(x) to about 1e-7 relative (Cephes' expf: a degree-6 polynomial on x - n ln 2, times 2^n), written so
// that `omp simd` loops vectorise it, as the C library's exp would not be without -ffast-math
EE_BODY float exp_body(float x) {
  x = std::min(std::max(x, -87.3f), 88.7f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  x = x - n * 0.693359375f + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

// One kv head of one sequence: its `group` query heads (q, `q_stride` apart) against keys and values
// [len, hs]; `scores` holds group * len floats; out: group rows of hs, contiguous.
EE_BODY void attend_body(const float* q, int64_t q_stride, const float* keys, const float* vals, int64_t len,
                         int64_t hs, int64_t group, float scale, float* scores, float* out) {
  for (int64_t j = 0; j < group; ++j) {
    const float* qj = q + j * q_stride;
    float* sj = scores + j * len;
    float top = -INFINITY;
    for (int64_t p = 0; p < len; ++p) {
      sj[p] = dot_body(qj, keys + p * hs, hs) * scale;
      top = std::max(top, sj[p]);
    }
    float total = 0.f;
#pragma omp simd reduction(+ : total)
    for (int64_t p = 0; p < len; ++p) {
      sj[p] = exp_body(sj[p] - top);
      total += sj[p];
    }
    float* oj = out + j * hs;
    std::fill(oj, oj + hs, 0.f);
    const float inv = 1.f / total;
    for (int64_t p = 0; p < len; ++p) axpy_body(sj[p] * inv, vals + p * hs, oj, hs);
  }
}

EE_SIMD void attend_avx2(const float* q, int64_t q_stride, const float* keys, const float* vals, int64_t len, int64_t hs,
                         int64_t group, float scale, float* scores, float* out) {
  attend_body(q, q_stride, keys, vals, len, hs, group, scale, scores, out);
}
void attend_base(const float* q, int64_t q_stride, const float* keys, const float* vals, int64_t len, int64_t hs,
                 int64_t group, float scale, float* scores, float* out) {
  attend_body(q, q_stride, keys, vals, len, hs, group, scale, scores, out);
}
EE_SIMD void rms_row_avx2(const float* x, const float* w, float* out, int64_t c, float eps) { rms_row_body(x, w, out, c, eps); }
void rms_row_base(const float* x, const float* w, float* out, int64_t c, float eps) { rms_row_body(x, w, out, c, eps); }
EE_SIMD void axpy_avx2(float a, const float* x, float* y, int64_t n) { axpy_body(a, x, y, n); }
void axpy_base(float a, const float* x, float* y, int64_t n) { axpy_body(a, x, y, n); }

const bool kAvx2 = EE_HAVE_AVX2();

inline void rms_row(const float* x, const float* w, float* out, int64_t c, float eps) {
  kAvx2 ? rms_row_avx2(x, w, out, c, eps) : rms_row_base(x, w, out, c, eps);
}
inline void axpy(float a, const float* x, float* y, int64_t n) { kAvx2 ? axpy_avx2(a, x, y, n) : axpy_base(a, x, y, n); }
inline void attend(const float* q, int64_t q_stride, const float* keys, const float* vals, int64_t len, int64_t hs,
                   int64_t group, float scale, float* scores, float* out) {
  (kAvx2 ? attend_avx2 : attend_base)(q, q_stride, keys, vals, len, hs, group, scale, scores, out);
}

void check_rows(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), op, ": x must be contiguous [N, C] float32");
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  check_rows(x, "rms_norm");
  const at::Tensor wc = w.contiguous();
  TORCH_CHECK(wc.numel() == x.size(1) && wc.scalar_type() == at::kFloat, "rms_norm: w must be [C] float32");
  at::Tensor out = at::empty_like(x);
  const int64_t c = x.size(1);
  for (int64_t r = 0; r < x.size(0); ++r)
    rms_row(x.data_ptr<float>() + r * c, wc.data_ptr<float>(), out.data_ptr<float>() + r * c, c, static_cast<float>(eps));
  return out;
}

at::Tensor add_rms_norm_(at::Tensor& x, const at::Tensor& delta, const at::Tensor& w, double eps) {
  check_rows(x, "add_rms_norm_");
  const at::Tensor dc = delta.contiguous();
  TORCH_CHECK(dc.sizes() == x.sizes() && dc.scalar_type() == at::kFloat, "add_rms_norm_: delta must be shaped as x");
  axpy(1.f, dc.data_ptr<float>(), x.data_ptr<float>(), x.numel());
  return rms_norm(x, w, eps);
}

// qk: [N, H, hs] float32 with unit stride along hs (a view of the fused projection's output is fine);
// cos, sin: [N, 1, hs] or [N, hs], sin with its first half negated (model.Rotary.tables).
void rope_(at::Tensor& qk, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(qk.dim() == 3 && qk.scalar_type() == at::kFloat && qk.stride(2) == 1, "rope_: qk must be [N, H, hs] float32");
  const int64_t n = qk.size(0), heads = qk.size(1), hs = qk.size(2), half = hs / 2;
  const at::Tensor cc = cos.contiguous(), sc = sin.contiguous();
  TORCH_CHECK(cc.numel() == n * hs && sc.numel() == n * hs, "rope_: cos and sin must hold [N, hs]");
  float* base = qk.data_ptr<float>();
  std::vector<float> tmp(hs);
  for (int64_t r = 0; r < n; ++r) {
    const float* c = cc.data_ptr<float>() + r * hs;
    const float* s = sc.data_ptr<float>() + r * hs;
    for (int64_t h = 0; h < heads; ++h) {
      float* x = base + r * qk.stride(0) + h * qk.stride(1);
      std::memcpy(tmp.data(), x, hs * sizeof(float));
      for (int64_t i = 0; i < hs; ++i) x[i] = tmp[i] * c[i] + tmp[(i + half) % hs] * s[i];
    }
  }
}

at::Tensor silu_mul(const at::Tensor& gate_up, int64_t hidden) {
  check_rows(gate_up, "silu_mul");
  TORCH_CHECK(gate_up.size(1) == 2 * hidden, "silu_mul: gate_up must be [N, 2 * hidden]");
  at::Tensor out = at::empty({gate_up.size(0), hidden}, gate_up.options());
  const float* gu = gate_up.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t r = 0; r < gate_up.size(0); ++r) {
    const float* g = gu + r * 2 * hidden;
    for (int64_t i = 0; i < hidden; ++i) o[r * hidden + i] = g[i] / (1.f + std::exp(-g[i])) * g[hidden + i];
  }
  return out;
}

// y: [N, nh, hs] contiguous, written at `rows` only; q: [N, nh, hs], k, v: [N, nkv, hs], unit stride along
// hs; kcache, vcache: [S, nkv, cap, hs] contiguous (an arena layer); rows, slots, pos: [B] int64, the
// packed row, cache slot and position of each decoding sequence. Query head h reads kv head h / (nh / nkv).
void decode_attention_(at::Tensor& y, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& kcache,
                       at::Tensor& vcache, const at::Tensor& rows, const at::Tensor& slots, const at::Tensor& pos,
                       double scale) {
  TORCH_CHECK(y.dim() == 3 && y.is_contiguous() && y.scalar_type() == at::kFloat, "decode_attention_: y must be contiguous [N, nh, hs]");
  TORCH_CHECK(kcache.dim() == 4 && kcache.is_contiguous() && vcache.is_contiguous() && kcache.sizes() == vcache.sizes() &&
                  kcache.scalar_type() == at::kFloat && vcache.scalar_type() == at::kFloat,
              "decode_attention_: the caches must be contiguous [S, nkv, cap, hs] float32");
  const int64_t nh = q.size(1), nkv = k.size(1), hs = q.size(2), cap = kcache.size(2), group = nh / nkv;
  TORCH_CHECK(q.stride(2) == 1 && k.stride(2) == 1 && v.stride(2) == 1 && nh % nkv == 0 && kcache.size(1) == nkv &&
                  kcache.size(3) == hs && y.size(1) == nh && y.size(2) == hs,
              "decode_attention_: q, k, v, y and the caches disagree on heads or head size");
  const at::Tensor rc = rows.to(at::kLong).contiguous(), sc = slots.to(at::kLong).contiguous(), pc = pos.to(at::kLong).contiguous();
  const int64_t b = rc.numel();
  const int64_t *rp = rc.data_ptr<int64_t>(), *sp = sc.data_ptr<int64_t>(), *pp = pc.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i)
    TORCH_CHECK(rp[i] >= 0 && rp[i] < q.size(0) && sp[i] >= 0 && sp[i] < kcache.size(0) && pp[i] >= 0 && pp[i] < cap,
                "decode_attention_: a row, slot or position is out of range");
  float *kc = kcache.data_ptr<float>(), *vc = vcache.data_ptr<float>(), *yp = y.data_ptr<float>();
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float sc_f = static_cast<float>(scale);
  for (int64_t i = 0; i < b; ++i) {  // the new keys and values first: every query head reads them
    for (int64_t g = 0; g < nkv; ++g) {
      const int64_t at = ((sp[i] * nkv + g) * cap + pp[i]) * hs;
      std::memcpy(kc + at, kp + rp[i] * k.stride(0) + g * k.stride(1), hs * sizeof(float));
      std::memcpy(vc + at, vp + rp[i] * v.stride(0) + g * v.stride(1), hs * sizeof(float));
    }
  }
  // one task per (sequence, query head); short contexts run on this thread alone, where waking the
  // others would cost more than the arithmetic
  int64_t work = 0;
  for (int64_t i = 0; i < b; ++i) work += (pp[i] + 1) * nh * hs;
  at::parallel_for(0, b * nh, work < (1 << 15) ? b * nh : 1, [&](int64_t start, int64_t end) {
    std::vector<float> scores;
    for (int64_t t = start; t < end; ++t) {
      const int64_t i = t / nh, h = t % nh, len = pp[i] + 1, head = (sp[i] * nkv + h / group) * cap * hs;
      scores.resize(len);
      attend(qp + rp[i] * q.stride(0) + h * q.stride(1), 0, kc + head, vc + head, len, hs, 1, sc_f, scores.data(),
             yp + (rp[i] * nh + h) * hs);
    }
  });
}

// One decoder layer (model.Block.forward_fused) for rows that all decode: x [N, C] is the residual stream,
// updated in place; `delta` the previous layer's MLP output not yet added to it (or none). Each projection
// is (repack_x8's blocks, output features); cos, sin [N, 1, hs]; the rest as decode_attention_. Returns
// this layer's MLP output.
at::Tensor decode_layer_(at::Tensor& x, const std::optional<at::Tensor>& delta, const at::Tensor& attn_norm,
                         const at::Tensor& mlp_norm, double eps, const at::Tensor& qkv, int64_t qkv_n,
                         const at::Tensor& proj, int64_t proj_n, const at::Tensor& gate_up, int64_t gate_up_n,
                         const at::Tensor& down, int64_t down_n, const at::Tensor& cos, const at::Tensor& sin,
                         int64_t n_head, int64_t n_kv_head, at::Tensor& kcache, at::Tensor& vcache,
                         const at::Tensor& rows, const at::Tensor& slots, const at::Tensor& pos, double scale) {
  const int64_t n = x.size(0), hs = kcache.size(3);
  TORCH_CHECK(qkv_n == (n_head + 2 * n_kv_head) * hs && gate_up_n % 2 == 0, "decode_layer_: projection sizes disagree with the heads");
  at::Tensor h = delta.has_value() ? add_rms_norm_(x, *delta, attn_norm, eps) : rms_norm(x, attn_norm, eps);
  const at::Tensor qkv_out = ee::qmatmul_x8(h, qkv, qkv_n);  // [N, (nh + 2 nkv) hs]: queries, keys, values
  at::Tensor qk = qkv_out.narrow(1, 0, (n_head + n_kv_head) * hs).view({n, n_head + n_kv_head, hs});
  rope_(qk, cos, sin);
  const at::Tensor q = qk.narrow(1, 0, n_head), k = qk.narrow(1, n_head, n_kv_head);
  const at::Tensor v = qkv_out.narrow(1, (n_head + n_kv_head) * hs, n_kv_head * hs).view({n, n_kv_head, hs});
  at::Tensor y = at::zeros({n, n_head, hs}, x.options());
  decode_attention_(y, q, k, v, kcache, vcache, rows, slots, pos, scale);
  h = add_rms_norm_(x, ee::qmatmul_x8(y.view({n, n_head * hs}), proj, proj_n), mlp_norm, eps);
  return ee::qmatmul_x8(silu_mul(ee::qmatmul_x8(h, gate_up, gate_up_n), gate_up_n / 2), down, down_n);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ee, m) {
  m.def("rms_norm(Tensor x, Tensor w, float eps) -> Tensor");
  m.def("add_rms_norm_(Tensor(a!) x, Tensor delta, Tensor w, float eps) -> Tensor");
  m.def("rope_(Tensor(a!) qk, Tensor cos, Tensor sin) -> ()");
  m.def("silu_mul(Tensor gate_up, int hidden) -> Tensor");
  m.def(
      "decode_attention_(Tensor(a!) y, Tensor q, Tensor k, Tensor v, Tensor(b!) kcache, Tensor(c!) vcache, Tensor rows, "
      "Tensor slots, Tensor pos, float scale) -> ()");
  m.def(
      "decode_layer_(Tensor(a!) x, Tensor? delta, Tensor attn_norm, Tensor mlp_norm, float eps, Tensor qkv, int qkv_n, "
      "Tensor proj, int proj_n, Tensor gate_up, int gate_up_n, Tensor down, int down_n, Tensor cos, Tensor sin, "
      "int n_head, int n_kv_head, Tensor(b!) kcache, Tensor(c!) vcache, Tensor rows, Tensor slots, Tensor pos, "
      "float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(ee, CPU, m) {
  m.impl("rms_norm", rms_norm);
  m.impl("add_rms_norm_", add_rms_norm_);
  m.impl("rope_", rope_);
  m.impl("silu_mul", silu_mul);
  m.impl("decode_attention_", decode_attention_);
  m.impl("decode_layer_", decode_layer_);
}
