// A heap array aligned to a cache line (SIMD loads of packed operands never
// straddle two lines).  Contents are uninitialised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace amsim {
namespace cpu {

template <typename T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;

  explicit AlignedBuffer(int64_t count)
      : data_(count > 0 ? static_cast<T*>(
                              ::operator new(sizeof(T) * static_cast<std::size_t>(count), std::align_val_t(kAlignment)))
                        : nullptr) {}
  ~AlignedBuffer() {
    if (data_) ::operator delete(data_, std::align_val_t(kAlignment));
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  T* data_;
};

}  // namespace cpu
}  // namespace amsim
