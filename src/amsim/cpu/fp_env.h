// Flush-to-zero for the duration of a kernel, restored afterwards.
//
// The fast kernels compose a product as (t * scale_a) * scale_b, which is
// exact except at overflow (-> inf, as the contract wants) and underflow,
// where the contract wants a signed zero: that is what the hardware's
// flush-to-zero mode gives.  Partial sums flush the same way.
#pragma once

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define AMSIM_HAVE_FTZ_MODE 1
#elif defined(__aarch64__) && defined(__GNUC__)
// AArch64: FPCR.FZ flushes subnormal inputs and results (scalar and NEON)
// to a zero of the same sign.  The kernels' products and sums that land in
// the subnormal range are exact there, so flushing before or after rounding
// (x86 vs Arm tininess detection) gives the same bits.
#include <cstdint>
#define AMSIM_HAVE_FTZ_MODE 1
#define AMSIM_FTZ_AARCH64 1
#else
#define AMSIM_HAVE_FTZ_MODE 0
#endif

namespace amsim {

class FlushToZeroScope {
 public:
#if defined(AMSIM_FTZ_AARCH64)
  FlushToZeroScope() {
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    saved_ = fpcr;
    fpcr |= uint64_t{1} << 24;  // FZ
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
  }
  ~FlushToZeroScope() { __asm__ __volatile__("msr fpcr, %0" : : "r"(saved_)); }
#elif AMSIM_HAVE_FTZ_MODE
  FlushToZeroScope() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~FlushToZeroScope() { _mm_setcsr(saved_); }
#else
  FlushToZeroScope() = default;
#endif
  FlushToZeroScope(const FlushToZeroScope&) = delete;
  FlushToZeroScope& operator=(const FlushToZeroScope&) = delete;

 private:
#if defined(AMSIM_FTZ_AARCH64)
  uint64_t saved_;
#elif AMSIM_HAVE_FTZ_MODE
  unsigned saved_;
#endif
};

}  // namespace amsim
