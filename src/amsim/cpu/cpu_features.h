// Run-time CPU feature checks (the build targets baseline x86-64; faster
// paths are compiled for newer ISAs and chosen here, per machine).  The build
// defines AMSIM_NO_AVX512_KERNELS where it cannot compile the AVX-512 kernels.
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace amsim {
namespace cpu {

// APPROXTRAIN_CPU_PATH narrows the run-time choice, to test and compare the
// paths on one machine (it never enables what the CPU lacks): "generic" turns
// every SIMD kernel off (GEMM, multiply, depthwise conv), "avx512-gather"
// makes the GEMM use its gather kernel for every M, "avx2" / "bucket-avx512"
// / "bucket-portable" its bucket method (gemm_bucket.h) for every shape, with
// the AVX2 + FMA, the AVX-512 or the plain C++ kernels, "no-avx512" the GEMM
// choice of a CPU without AVX-512, "avx512" the AVX-512 GEMMs without the
// bucket method.  Read at each call.
inline const char* forced_cpu_path() { return std::getenv("APPROXTRAIN_CPU_PATH"); }
inline bool forced_path_is(const char* name) {
  const char* forced = forced_cpu_path();
  return forced != nullptr && std::strcmp(forced, name) == 0;
}

inline bool has_avx512_vbmi() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AMSIM_NO_AVX512_KERNELS)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vbmi");
#else
  return false;
#endif
}

inline bool has_avx512_bw() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AMSIM_NO_AVX512_KERNELS)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

// Whether the CPU runs 512-bit operations as two 256-bit halves: AMD Zen 4
// (family 25 with AVX-512), where the float GEMM's AVX2 kernels measured
// 15-20% faster than its AVX-512 ones.  Intel's and Zen 5's units are full
// width.
inline bool has_half_width_avx512() {
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const unsigned base_family = (eax >> 8) & 0xfu;
  const unsigned family = base_family == 0xfu ? base_family + ((eax >> 20) & 0xffu) : base_family;
  return __builtin_cpu_is("amd") && family == 25;
#else
  return false;
#endif
}

inline bool has_avx2_fma() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace amsim
