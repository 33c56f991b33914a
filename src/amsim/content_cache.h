// A small cache of things made from a table, found by the table's exact
// contents: the bucket GEMM's float tables (cpu/gemm_bucket.cpp) and the
// integer tables' device copies (int_table_cache.h).
//
//  - found by a tag (what else the value depends on: a device, an
//    orientation) and the table's bytes, compared exactly with a copy kept
//    here, so a table changed in place, or another table at a reused address,
//    is never taken for an old one;
//  - made on a miss by the caller, outside the lock (a maker may run a
//    parallel loop whose workers could themselves be waiting on this cache);
//    two threads missing at once both make it and one copy is kept;
//  - at most `capacity` values are kept, the least recently used goes first.
//
// Value is copied out to every user (a shared_ptr, a TF Tensor), so an
// evicted value lives on until its last user lets it go.  Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <mutex>
#include <utility>
#include <vector>

namespace amsim {

template <class Value>
class ContentCache {
 public:
  explicit ContentCache(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}
  ContentCache(const ContentCache&) = delete;
  ContentCache& operator=(const ContentCache&) = delete;

  // The value for (tag, the `size` bytes at `bytes`): the cached one, or
  // made by make(Value*) -> bool.  False when make fails (nothing is cached
  // then; the maker reports why).
  template <class Make>
  bool get(int64_t tag, const void* bytes, size_t size, Make&& make, Value* out) {
    if (find(tag, bytes, size, out)) return true;
    Entry entry;
    entry.tag = tag;
    entry.bytes.assign(static_cast<const unsigned char*>(bytes), static_cast<const unsigned char*>(bytes) + size);
    if (!make(&entry.value)) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    if (find_locked(tag, bytes, size, out)) return true;  // another thread made it meanwhile: keep one copy
    *out = entry.value;
    entries_.push_front(std::move(entry));
    if (entries_.size() > capacity_) entries_.pop_back();
    return true;
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  struct Entry {
    int64_t tag = 0;
    std::vector<unsigned char> bytes;  // the table it was made from
    Value value{};
  };

  bool find(int64_t tag, const void* bytes, size_t size, Value* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    return find_locked(tag, bytes, size, out);
  }

  bool find_locked(int64_t tag, const void* bytes, size_t size, Value* out) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->tag == tag && it->bytes.size() == size && std::memcmp(it->bytes.data(), bytes, size) == 0) {
        entries_.splice(entries_.begin(), entries_, it);  // most recently used first
        *out = it->value;
        return true;
      }
    }
    return false;
  }

  const size_t capacity_;
  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
};

}  // namespace amsim
