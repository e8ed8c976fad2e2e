// The fast path this CPU has (paths.h) against the portable one, without torch: random blocks of every
// format, repacked as repack_x8 does, multiplied by both; and each activation row's result alone equal,
// to the bit, to the same row in a batch. Prints a line a case and exits 0 when all pass, 1 when one
// fails, 2 when this CPU has no fast path. tests/lm/test_kernel_paths.py builds it natively, and for
// arm64 with a cross compiler to run under an emulator: the NEON path is tested on an x86 machine.

#include <cstdio>
#include <random>

#include "paths.h"

using namespace ee;

namespace {

// Random bytes (every quant, scale and bit pattern occurs) with sane halves where the format keeps d,
// m or dmin, so the products stay finite.
std::vector<uint8_t> random_blocks(std::mt19937& rng, int64_t qtype, int64_t n, int64_t k) {
  const int64_t units = k / block_weights(qtype), bb = block_bytes(qtype);
  std::vector<uint8_t> w(n * units * bb);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 0.02f);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  const std::vector<int> halves = qtype == Q6_K ? std::vector<int>{208}
                                  : is_k(qtype) || qtype == Q4_1 ? std::vector<int>{0, 2}
                                                                 : std::vector<int>{0};
  for (int64_t u = 0; u < n * units; ++u)
    for (int at : halves) {
      const uint16_t h = c10::detail::fp16_ieee_from_fp32_value(at == 2 && qtype == Q4_1 ? -scale(rng) : scale(rng));
      std::memcpy(w.data() + u * bb + at, &h, 2);
    }
  return w;
}

bool check(Path path, int64_t qtype, const char* name, int64_t n, int64_t k, std::mt19937& rng) {
  const int64_t batch = 5, units = k / block_weights(qtype), bb = block_bytes(qtype), groups = (n + 7) / 8;
  const int layout = x8_layout(qtype);
  const int64_t bytes = X8_BYTES[layout];
  const std::vector<uint8_t> w = random_blocks(rng, qtype, n, k);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(batch * k);
  for (auto& v : x) v = normal(rng);
  std::vector<Q8Row> rows(batch);
  for (int64_t b = 0; b < batch; ++b) quantise_row(x.data() + b * k, k, rows[b]);

  std::vector<uint8_t> packed(groups * units * bytes, 0);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < units; ++i)
      for (int r = 0; r < 8 && g * 8 + r < n; ++r)
        repack_block(qtype, w.data() + (g * 8 + r) * units * bb + i * bb, r, packed.data() + (g * units + i) * bytes);
  std::vector<float> y(batch * 8 * groups), alone(8 * groups);
  groups_on(path, layout, packed.data(), 0, groups, rows, units, bytes, y.data(), 8 * groups);

  double worst = 0, largest = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t o = 0; o < n; ++o) {
      const uint8_t* row = w.data() + o * units * bb;
      const float ref = is_k(qtype) ? dot_k_portable(qtype, row, rows[b], units) : dot_row_portable(qtype, row, rows[b], units);
      worst = std::max(worst, static_cast<double>(std::fabs(ref - y[b * 8 * groups + o])));
      largest = std::max(largest, static_cast<double>(std::fabs(ref)));
    }
  bool invariant = true;
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<Q8Row> one{rows[b]};
    groups_on(path, layout, packed.data(), 0, groups, one, units, bytes, alone.data(), 8 * groups);
    for (int64_t o = 0; o < n; ++o) invariant = invariant && alone[o] == y[b * 8 * groups + o];
  }
  // the paths differ only in float rounding (fused multiply-adds, the order of the two scale multiplies)
  const bool ok = worst <= 1e-5 * largest + 1e-6 && invariant;
  std::printf("%s %s n=%lld k=%lld: largest %.4g, worst difference %.3g, batch invariant %s\n", ok ? "ok" : "FAIL", name,
              static_cast<long long>(n), static_cast<long long>(k), largest, worst, invariant ? "yes" : "NO");
  return ok;
}

}  // namespace

int main() {
  const Path path = cpu_path();
  std::printf("path: %s\n", path_name(path));
  if (path == Path::portable) return 2;
  std::mt19937 rng(1234);
  const std::pair<int64_t, const char*> formats[] = {{Q4_0, "Q4_0"}, {Q4_1, "Q4_1"}, {Q8_0, "Q8_0"},
                                                     {Q4_K, "Q4_K"}, {Q5_K, "Q5_K"}, {Q6_K, "Q6_K"}};
  bool ok = true;
  for (const auto& [qtype, name] : formats)
    for (const auto& [n, k] : {std::pair<int64_t, int64_t>{8, 256}, {13, 512}, {67, 1024}}) ok = check(path, qtype, name, n, k, rng) && ok;
  return ok ? 0 : 1;
}
