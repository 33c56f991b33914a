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
#else
#define AMSIM_HAVE_FTZ_MODE 0
#endif

namespace amsim {

class FlushToZeroScope {
 public:
#if AMSIM_HAVE_FTZ_MODE
  FlushToZeroScope() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~FlushToZeroScope() { _mm_setcsr(saved_); }
#else
  FlushToZeroScope() = default;
#endif
  FlushToZeroScope(const FlushToZeroScope&) = delete;
  FlushToZeroScope& operator=(const FlushToZeroScope&) = delete;

 private:
#if AMSIM_HAVE_FTZ_MODE
  unsigned saved_;
#endif
};

}  // namespace amsim
