// Device copies of integer product tables, uploaded once per (device, table).
//
// The CUDA integer GEMM (cuda/int_gemm.cu) reads its 256 x 256 table from
// device memory.  Its callers (the AMIntMatMul GPU kernel, _core's
// int_matmul_cuda) get the host table at every call; instead of copying it to
// the device each time they keep one device copy per table in a ContentCache
// (content_cache.h, the mechanism the bucket GEMM keeps its float tables in):
// found by device and the table's exact content, made on a miss by the
// caller's upload function, given the entries at the width the kernel reads
// them (16 bits where every entry fits, else 32), decided here once per
// table; at most `capacity` tables, the least recently used goes first.
//
// Host logic only (no CUDA, no TF): Buffer is whatever owns the caller's device
// memory (a TF Tensor, a shared_ptr to a cudaMalloc'd block), copied out to
// every user, so an evicted table lives on until its last user lets it go.
// Thread-safe.  Callers keep one cache for the process and never destroy it
// (the device allocators may be gone by the time static objects die): the
// process's end frees what it holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "amsim/content_cache.h"
#include "amsim/int_table.h"

namespace amsim {

constexpr int64_t kIntTableEntries = int64_t{256} * 256;

// What an upload copies to the device: kIntTableEntries entries of `width`.
struct IntTableUpload {
  const void* entries = nullptr;
  size_t bytes = 0;
  IntTableWidth width = IntTableWidth::kInt32;
};

template <class Buffer>
struct CachedIntTable {
  Buffer buffer{};  // the device copy
  IntTableWidth width = IntTableWidth::kInt32;  // of its entries
};

template <class Buffer>
class IntTableCache {
 public:
  explicit IntTableCache(size_t capacity) : tables_(capacity) {}

  // The device copy of `products` (kIntTableEntries int32, row = a's pattern)
  // on `device`: the cached one, or made by upload(const IntTableUpload&,
  // Buffer*) -> bool, outside the cache's lock.  False when the upload fails
  // (nothing is cached then; the upload reports why).
  template <class Upload>
  bool get(int device, const int32_t* products, Upload&& upload, CachedIntTable<Buffer>* out) {
    const auto make = [&](CachedIntTable<Buffer>* made) {
      made->width = int_table_width(products, kIntTableEntries);
      std::vector<uint16_t> narrow;
      IntTableUpload what{products, kIntTableEntries * sizeof(int32_t), made->width};
      if (made->width != IntTableWidth::kInt32) {
        narrow.resize(kIntTableEntries);
        for (int64_t e = 0; e < kIntTableEntries; ++e) narrow[e] = static_cast<uint16_t>(products[e]);
        what.entries = narrow.data();
        what.bytes = narrow.size() * sizeof(uint16_t);
      }
      return upload(static_cast<const IntTableUpload&>(what), &made->buffer);
    };
    return tables_.get(device, products, kIntTableEntries * sizeof(int32_t), make, out);
  }

  size_t size() const { return tables_.size(); }

 private:
  ContentCache<CachedIntTable<Buffer>> tables_;
};

// Tables kept per process by the GPU callers: a model uses one to three
// (forward, gradient multipliers); each costs 128 or 256 KiB of device memory
// and 256 KiB of host memory.
constexpr size_t kCachedIntTables = 8;

}  // namespace amsim
