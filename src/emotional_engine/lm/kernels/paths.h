// The fast paths of the products from repacked blocks, chosen at run time by what the CPU has:
// AVX-512 VNNI, else AVX2 with FMA and F16C (x86.inc, compiled for both); NEON with the dot product
// extension on arm64 (neon.inc); elsewhere, or on a CPU without them, the portable path (blocks.h).
// Nothing here needs torch (selftest.cpp builds it alone, for another CPU under an emulator too).
#pragma once

#include "blocks.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define EE_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define EE_ARM 1
#if defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

namespace ee {

#ifdef EE_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
#define EE_VNNI 0
#include "x86.inc"
#undef EE_VNNI
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni")
namespace vnni {
#define EE_VNNI 1
#include "x86.inc"
#undef EE_VNNI
}  // namespace vnni
#pragma GCC pop_options
#endif

#ifdef EE_ARM
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
namespace neon {
#include "neon.inc"
}  // namespace neon
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
#endif

enum class Path { portable, avx2, vnni, neon };

inline Path detect_path() {
#ifdef EE_X86
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
    return Path::portable;
  return __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") ? Path::vnni : Path::avx2;
#elif defined(EE_ARM) && defined(__linux__) && defined(HWCAP_ASIMDDP)
  return getauxval(AT_HWCAP) & HWCAP_ASIMDDP ? Path::neon : Path::portable;
#elif defined(EE_ARM) && defined(__APPLE__)
  int has = 0;
  size_t size = sizeof has;
  return sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &size, nullptr, 0) == 0 && has ? Path::neon : Path::portable;
#else
  return Path::portable;
#endif
}

inline Path cpu_path() {
  static const Path path = detect_path();
  return path;
}

inline const char* path_name(Path path) {
  switch (path) {
    case Path::vnni: return "avx512-vnni";
    case Path::avx2: return "avx2";
    case Path::neon: return "neon-dotprod";
    default: return "portable";
  }
}

// Groups g0..g1 of a repacked matrix (layout, units, bytes as x8_layout gives them) against the quantised
// activation rows, into y [rows, n_padded], on `path` (one this CPU has, not the portable one).
inline void groups_on(Path path, int layout, const uint8_t* packed, int64_t g0, int64_t g1,
                      const std::vector<Q8Row>& rows, int64_t units, int64_t bytes, float* y, int64_t n_padded) {
#ifdef EE_X86
  if (path == Path::vnni) return vnni::groups_x8_any(layout, packed, g0, g1, rows, units, bytes, y, n_padded);
  if (path == Path::avx2) return avx2::groups_x8_any(layout, packed, g0, g1, rows, units, bytes, y, n_padded);
#endif
#ifdef EE_ARM
  if (path == Path::neon) return neon::groups_x8_any(layout, packed, g0, g1, rows, units, bytes, y, n_padded);
#endif
  (void)path, (void)layout, (void)packed, (void)g0, (void)g1, (void)rows, (void)units, (void)bytes, (void)y,
      (void)n_padded;
}

}  // namespace ee
