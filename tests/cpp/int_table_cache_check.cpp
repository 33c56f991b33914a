// Host checks of amsim/int_table_cache.h (the GPU integer GEMM's table
// cache, on amsim/content_cache.h) with a fake device: "uploads" are
// recorded, buffers are shared_ptrs to a copy of the uploaded bytes.  Built and run by
// tests/test_int_table_cache.py; prints one line per failed check.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "amsim/int_table_cache.h"

namespace {

using Buffer = std::shared_ptr<std::vector<unsigned char>>;
using Cache = amsim::IntTableCache<Buffer>;

int failures = 0;

#define CHECK(cond)                                         \
  do {                                                      \
    if (!(cond)) {                                          \
      std::printf("FAILED line %d: %s\n", __LINE__, #cond); \
      ++failures;                                           \
    }                                                       \
  } while (0)

struct FakeDevice {
  std::atomic<int> uploads{0};
  bool fail = false;
  std::mutex mutex;  // uploads run outside the cache's lock
  amsim::IntTableUpload last;

  bool operator()(const amsim::IntTableUpload& what, Buffer* buffer) {
    ++uploads;
    std::lock_guard<std::mutex> lock(mutex);
    last = what;
    if (fail) return false;
    const auto* bytes = static_cast<const unsigned char*>(what.entries);
    *buffer = std::make_shared<std::vector<unsigned char>>(bytes, bytes + what.bytes);
    return true;
  }
};

// A table of products x * y (+ offset) of the patterns read as signed or unsigned bytes.
std::vector<int32_t> table(bool is_signed, int32_t offset = 0) {
  std::vector<int32_t> t(amsim::kIntTableEntries);
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b) {
      const int x = is_signed ? static_cast<int8_t>(a) : a, y = is_signed ? static_cast<int8_t>(b) : b;
      t[a * 256 + b] = x * y + offset;
    }
  return t;
}

amsim::CachedIntTable<Buffer> get(Cache& cache, FakeDevice& device, int ordinal, const std::vector<int32_t>& t) {
  amsim::CachedIntTable<Buffer> out;
  CHECK(cache.get(ordinal, t.data(), device, &out));
  return out;
}

void uploads_once_per_content_and_device() {
  Cache cache(8);
  FakeDevice device;
  const std::vector<int32_t> signed_table = table(true);
  const auto first = get(cache, device, 0, signed_table);
  CHECK(device.uploads == 1);
  CHECK(first.width == amsim::IntTableWidth::kInt16);
  CHECK(device.last.bytes == amsim::kIntTableEntries * 2);
  bool narrowed = first.buffer->size() == amsim::kIntTableEntries * 2;
  for (int64_t e = 0; narrowed && e < amsim::kIntTableEntries; ++e) {
    uint16_t v;
    std::memcpy(&v, first.buffer->data() + 2 * e, 2);
    narrowed = v == static_cast<uint16_t>(signed_table[e]);
  }
  CHECK(narrowed);

  const std::vector<int32_t> same_content = signed_table;  // another address
  const auto again = get(cache, device, 0, same_content);
  CHECK(device.uploads == 1 && again.buffer == first.buffer && again.width == first.width);

  get(cache, device, 1, signed_table);  // another device: its own copy
  CHECK(device.uploads == 2 && cache.size() == 2);

  std::vector<int32_t> changed = signed_table;  // changed in place: not the old table
  get(cache, device, 0, changed);
  changed[256 * 3 + 7] += 1;
  const auto after_change = get(cache, device, 0, changed);
  CHECK(device.uploads == 3 && after_change.buffer != first.buffer);
}

void widths() {
  Cache cache(8);
  FakeDevice device;
  const std::vector<int32_t> unsigned_table = table(false);  // up to 255 * 255 = 65025
  CHECK(get(cache, device, 0, unsigned_table).width == amsim::IntTableWidth::kUint16);
  CHECK(device.last.bytes == amsim::kIntTableEntries * 2);
  const std::vector<int32_t> wide = table(false, 1000);  // 66025 > 65535
  const auto w = get(cache, device, 0, wide);
  CHECK(w.width == amsim::IntTableWidth::kInt32);
  CHECK(device.last.bytes == amsim::kIntTableEntries * 4 && device.last.entries == wide.data());
  CHECK(std::memcmp(w.buffer->data(), wide.data(), w.buffer->size()) == 0);
}

void keeps_the_most_recently_used() {
  Cache cache(2);
  FakeDevice device;
  const std::vector<int32_t> a = table(true), b = table(true, 1), c = table(true, 2);
  get(cache, device, 0, a);
  const Buffer b_copy = get(cache, device, 0, b).buffer;
  get(cache, device, 0, a);  // a is now the most recently used: b goes next
  get(cache, device, 0, c);
  CHECK(device.uploads == 3 && cache.size() == 2);
  CHECK(b_copy.use_count() == 1);  // evicted, alive while its user holds it
  get(cache, device, 0, a);
  CHECK(device.uploads == 3);
  get(cache, device, 0, b);
  CHECK(device.uploads == 4);
}

void failed_upload_is_not_cached() {
  Cache cache(8);
  FakeDevice device;
  device.fail = true;
  const std::vector<int32_t> t = table(true);
  amsim::CachedIntTable<Buffer> out;
  CHECK(!cache.get(0, t.data(), device, &out));
  CHECK(cache.size() == 0);
  device.fail = false;
  get(cache, device, 0, t);
  CHECK(device.uploads == 2 && cache.size() == 1);
}

void one_copy_kept_under_concurrent_callers() {
  // Uploads run outside the lock: callers missing at once may each upload,
  // but one copy is kept and every caller gets that one.
  Cache cache(8);
  FakeDevice device;
  const std::vector<int32_t> t = table(false);
  std::vector<std::thread> threads;
  std::vector<Buffer> seen(8);
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      amsim::CachedIntTable<Buffer> out;
      if (cache.get(0, t.data(), device, &out)) seen[i] = out.buffer;
    });
  for (std::thread& th : threads) th.join();
  CHECK(device.uploads >= 1 && cache.size() == 1);
  amsim::CachedIntTable<Buffer> kept;
  CHECK(cache.get(0, t.data(), device, &kept));
  bool all_kept = true;
  for (const Buffer& s : seen) all_kept = all_kept && s == kept.buffer;
  CHECK(all_kept);
}

}  // namespace

int main() {
  uploads_once_per_content_and_device();
  widths();
  keeps_the_most_recently_used();
  failed_upload_is_not_cached();
  one_copy_kept_under_concurrent_callers();
  if (failures) return 1;
  std::printf("all int table cache checks passed\n");
  return 0;
}
