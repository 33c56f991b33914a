// Run-time CPU feature checks (the build targets baseline x86-64; faster
// paths are compiled for newer ISAs and chosen here, per machine).  The build
// defines AMSIM_NO_AVX512_KERNELS where it cannot compile the AVX-512 kernels.
#pragma once

namespace amsim {
namespace cpu {

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

inline bool has_avx2_fma() {
#if defined(__x86_64__) && defined(__GNUC__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace cpu
}  // namespace amsim
