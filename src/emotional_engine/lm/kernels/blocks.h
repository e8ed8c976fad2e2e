// GGUF block formats and the portable path of the products from them: y[b, n] = sum_k x[b, k] * W[n, k].
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
// and the K-quants, super-blocks of 256 weights with integer scales per sub-block (unpack_k):
//   Q4_K  {d, dmin, scales[12], qs[128]}            w = d * sc * q - dmin * mn, 8 sub-blocks of 32
//   Q5_K  {d, dmin, scales[12], qh[32], qs[128]}    the same with a fifth bit from qh
//   Q6_K  {ql[128], qh[64], sc[16], d}              w = d * sc * (q - 32), 16 sub-blocks of 16
//
// The fast kernels (paths.h) take W repacked eight rows at a time (repack_block, one row's block at a
// time). Nothing here needs torch but c10's half conversions (header only), so the self-test
// (selftest.cpp) builds without it, for other CPUs too.

#pragma once

#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ee {

constexpr int QK = 32;    // weights per block, and per block of the quantised activations
constexpr int QKK = 256;  // weights per K-quant super-block
enum QType : int64_t { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14 };  // GGML's numbers

inline bool is_k(int64_t qtype) { return qtype == Q4_K || qtype == Q5_K || qtype == Q6_K; }
inline int block_weights(int64_t qtype) { return is_k(qtype) ? QKK : QK; }

// The repacked layouts (x86.inc) and the bytes of one unit (a block of 32 rows x 8, or a
// super-block of 256 x 8) in each.
enum X8Layout : int { X8_Q4, X8_Q8, X8_K4, X8_K5, X8_K6 };
constexpr int64_t X8_BYTES[] = {160, 288, 160 + 8 * 128, 160 + 8 * 160, 160 + 8 * 192};

inline X8Layout x8_layout(int64_t qtype) {
  switch (qtype) {
    case Q8_0: return X8_Q8;
    case Q4_K: return X8_K4;
    case Q5_K: return X8_K5;
    case Q6_K: return X8_K6;
    default: return X8_Q4;
  }
}

inline float half_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

inline int block_bytes(int64_t qtype) {
  switch (qtype) {
    case Q4_0: return 2 + QK / 2;
    case Q4_1: return 4 + QK / 2;
    case Q8_0: return 2 + QK;
    case Q4_K: return 144;
    case Q5_K: return 176;
    case Q6_K: return 210;
    default: return 0;
  }
}

// One row of activations as Q8 blocks: scale d, int8 values, and d * sum(values) (Q4_1's min term).
struct Q8Row {
  std::vector<float> d, dsum;
  std::vector<int8_t> q;
};

inline void quantise_row(const float* x, int64_t k, Q8Row& out) {
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

// One K-quant super-block unpacked: its 256 weights as unsigned integers, the halves d and dmin as
// stored, and the integer scales: sc and mn per sub-block of 32 (Q4_K, Q5_K), sc per 16 (Q6_K).
struct KBlock {
  uint16_t d = 0, dmin = 0;
  uint8_t q[QKK];
  int sc[16];
  int mn[8];
};

inline void unpack_k(int64_t qtype, const uint8_t* b, KBlock& k) {
  if (qtype == Q6_K) {
    const uint8_t *ql = b, *qh = b + 128;
    std::memcpy(&k.d, b + 208, 2);
    for (int j = 0; j < 16; ++j) k.sc[j] = static_cast<int8_t>(b[192 + j]);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32) {
      uint8_t* q = k.q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        q[l] = (ql[l] & 15) | (((qh[l] >> 0) & 3) << 4);
        q[l + 32] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
        q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      }
    }
    return;
  }
  std::memcpy(&k.d, b, 2);
  std::memcpy(&k.dmin, b + 2, 2);
  const uint8_t* s = b + 4;  // 8 six-bit scales and 8 six-bit mins in 12 bytes
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      k.sc[j] = s[j] & 63;
      k.mn[j] = s[j + 4] & 63;
    } else {
      k.sc[j] = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
      k.mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
  }
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (qtype == Q5_K ? 48 : 16);
  for (int sub = 0; sub < 8; ++sub)
    for (int l = 0; l < 32; ++l) {
      int q = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 15;
      if (qtype == Q5_K) q |= ((qh[l] >> sub) & 1) << 4;
      k.q[32 * sub + l] = static_cast<uint8_t>(q);
    }
}

inline float dot_k_portable(int64_t qtype, const uint8_t* w, const Q8Row& x, int64_t nsb) {
  float acc = 0.f;
  KBlock k;
  for (int64_t S = 0; S < nsb; ++S) {
    unpack_k(qtype, w + S * block_bytes(qtype), k);
    const float d = c10::detail::fp16_ieee_to_fp32_value(k.d), dmin = c10::detail::fp16_ieee_to_fp32_value(k.dmin);
    for (int s = 0; s < 8; ++s) {
      const int64_t i = 8 * S + s;
      const int8_t* xq = x.q.data() + i * QK;
      const uint8_t* q = k.q + 32 * s;
      if (qtype == Q6_K) {
        int lo = 0, hi = 0;
        for (int l = 0; l < 16; ++l) lo += (q[l] - 32) * xq[l];
        for (int l = 16; l < 32; ++l) hi += (q[l] - 32) * xq[l];
        acc += d * static_cast<float>(k.sc[2 * s]) * x.d[i] * static_cast<float>(lo);
        acc += d * static_cast<float>(k.sc[2 * s + 1]) * x.d[i] * static_cast<float>(hi);
      } else {
        int sum = 0;
        for (int l = 0; l < 32; ++l) sum += q[l] * xq[l];
        acc += d * static_cast<float>(k.sc[s]) * x.d[i] * static_cast<float>(sum);
        acc -= dmin * static_cast<float>(k.mn[s]) * x.dsum[i];
      }
    }
  }
  return acc;
}

// ---- the portable path --------------------------------------------------------------------------

inline float dot_row_portable(int64_t qtype, const uint8_t* w, const Q8Row& x, int64_t nb) {
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

// 32 unsigned weights (< 16) of row r into the 128 nibble bytes of a Q4 layout (x86.inc)
inline void put_nibbles(uint8_t* o, int r, const uint8_t* q) {
  for (int t = 0; t < 4; ++t)
    for (int c = 0; c < 4; ++c) o[32 * t + 4 * r + c] = static_cast<uint8_t>((q[4 * t + c] & 15) | ((q[4 * (t + 4) + c] & 15) << 4));
}

// Row r's K-quant super-block b into the 8 rows' repacked super-block o (layout in x86.inc).
inline void repack_k(int64_t qtype, const uint8_t* b, int r, uint8_t* o) {
  KBlock k;
  unpack_k(qtype, b, k);
  std::memcpy(o + 2 * r, &k.d, 2);
  std::memcpy(o + 16 + 2 * r, &k.dmin, 2);
  const int64_t sub = X8_BYTES[x8_layout(qtype)] / 8 - 20;  // (total - 160 header) / 8 sub-blocks
  for (int s = 0; s < 8; ++s) {
    if (qtype == Q6_K) {
      o[32 + 16 * s + r] = static_cast<uint8_t>(k.sc[2 * s]);
      o[40 + 16 * s + r] = static_cast<uint8_t>(k.sc[2 * s + 1]);
    } else {
      o[32 + 8 * s + r] = static_cast<uint8_t>(k.sc[s]);
      o[96 + 8 * s + r] = static_cast<uint8_t>(k.mn[s]);
    }
    uint8_t* so = o + 160 + s * sub;
    const uint8_t* q = k.q + 32 * s;
    put_nibbles(so, r, q);
    for (int t = 0; t < 8; ++t)
      for (int c = 0; c < 4; ++c) {
        const int top = q[4 * t + c] >> 4;
        if (qtype == Q5_K) so[128 + 4 * r + c] |= static_cast<uint8_t>(top << t);
        if (qtype == Q6_K) so[128 + 32 * (t / 4) + 4 * r + c] |= static_cast<uint8_t>(top << (2 * (t % 4)));
      }
  }
}

// Row r's block (or K-quant super-block) b, in the file's format, into the 8 rows' repacked unit o
// (repack_x8); Q4_0's m is -8 d.
inline void repack_block(int64_t qtype, const uint8_t* b, int r, uint8_t* o) {
  if (is_k(qtype)) return repack_k(qtype, b, r, o);
  std::memcpy(o + 2 * r, b, 2);  // d, as the file has it
  if (qtype == Q8_0) {
    for (int t = 0; t < 8; ++t) std::memcpy(o + 32 + 32 * t + 4 * r, b + 2 + 4 * t, 4);
    return;
  }
  uint16_t hm;
  if (qtype == Q4_1) std::memcpy(&hm, b + 2, 2);
  else hm = c10::detail::fp16_ieee_from_fp32_value(-8.f * half_to_float(b));
  std::memcpy(o + 16 + 2 * r, &hm, 2);
  const uint8_t* qs = b + (qtype == Q4_1 ? 4 : 2);
  uint8_t q[QK];  // the row's 32 weights, 0..15
  for (int j = 0; j < QK / 2; ++j) {
    q[j] = qs[j] & 15;
    q[j + QK / 2] = qs[j] >> 4;
  }
  put_nibbles(o + 32, r, q);
}

}  // namespace ee
