// How fast can one core form and add AM products with AVX-512, at best?
//
//   g++ -O3 -mavx512f -mavx512bw -mavx512vbmi -o /tmp/product_bound benchmarks/avx512_product_bound.cpp
//   /tmp/product_bound
//
// Prints ns per 16 products (one zmm of results) for three register-only or
// cache-resident loops, so the kernels' figures can be read against a floor:
//   fma      one vfmadd231ps per 16 multiply-adds: what an sgemm's inner loop
//            does (oneDNN, OpenBLAS), 16 independent accumulators;
//   lut      the avx512vbmi-high kernel's sequence per 16 products: a byte
//            permute of the table row (vpermi2b), an integer add of the left
//            operand's sign and exponent, a multiply-add by the right
//            operand's scale (gemm_avx512_lut.cpp), as a 4 x 4 register tile;
//   bucket   the bucket method's panel with zmm: one multiply-add per 16
//            products with a T row chosen per (row, k) from a 256 KiB block
//            (L2), 12 rows x 2 vectors.
// The ratio lut / fma is the least an M <= 7 table GEMM can cost against a
// float GEMM on this core with the register-table design.
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double seconds() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

__attribute__((noinline)) void fma_loop(int64_t n, __m512* out) {
  __m512 acc[16];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512 x = _mm512_set1_ps(1e-10f), y = _mm512_set1_ps(1.0f);
  for (int64_t it = 0; it < n; ++it) {
    asm volatile("" : "+v"(x));
#pragma GCC unroll 16
    for (auto& a : acc) a = _mm512_fmadd_ps(x, y, a);
  }
  for (int i = 0; i < 16; ++i) out[i] = acc[i];
}

__attribute__((noinline)) void lut_loop(int64_t n, __m512* out) {
  __m512i row0 = _mm512_set1_epi8(1), row1 = _mm512_set1_epi8(2), scale_a = _mm512_set1_epi32(0x3f000000);
  __m512i idx[4];
  __m512 scale_b[4], acc[4][4];
  for (int v = 0; v < 4; ++v) {
    idx[v] = _mm512_set1_epi32((v * 9) << 16);
    scale_b[v] = _mm512_set1_ps(1.0f);
    for (int r = 0; r < 4; ++r) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t it = 0; it < n; ++it) {
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      asm volatile("" : "+v"(row0), "+v"(row1), "+v"(scale_a));  // a new left operand per row
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m512i entry = _mm512_mask2_permutex2var_epi8(row0, idx[v], 0x4444444444444444ull, row1);
        const __m512 x = _mm512_castsi512_ps(_mm512_add_epi32(entry, scale_a));
        acc[r][v] = _mm512_fmadd_ps(x, scale_b[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int v = 0; v < 4; ++v) out[4 * r + v] = acc[r][v];
}

struct Left {
  float scale;
  uint32_t offset;  // T row * ldt
};

__attribute__((noinline)) void bucket_loop(const float* t, int64_t kc, int64_t side, const Left* left, int64_t rows,
                                           float* c, int repeats) {
  constexpr int R = 12, V = 2;
  constexpr int64_t ldt = 16 * V;
  for (int rep = 0; rep < repeats; ++rep)
    for (int64_t r0 = 0; r0 + R <= rows; r0 += R) {
      __m512 acc[R][V];
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_loadu_ps(c + (r0 + r) * ldt + 16 * v);
      for (int64_t kk = 0; kk < kc; ++kk) {
        const float* tk = t + kk * side * ldt;
#pragma GCC unroll 12
        for (int r = 0; r < R; ++r) {
          const Left& p = left[(r0 + r) * kc + kk];
          const __m512 sa = _mm512_set1_ps(p.scale);
#pragma GCC unroll 2
          for (int v = 0; v < V; ++v)
            acc[r][v] = _mm512_fmadd_ps(sa, _mm512_load_ps(tk + p.offset + 16 * v), acc[r][v]);
        }
      }
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) _mm512_storeu_ps(c + (r0 + r) * ldt + 16 * v, acc[r][v]);
    }
}

}  // namespace

int main() {
  alignas(64) __m512 sink[16];
  const int64_t n = 20000000;
  double start = seconds();
  fma_loop(n, sink);
  const double fma_ns = (seconds() - start) / double(n * 16) * 1e9;
  start = seconds();
  lut_loop(n / 4, sink);
  const double lut_ns = (seconds() - start) / double(n / 4 * 16) * 1e9;

  const int64_t side = 64, ldt = 32, kc = 32, rows = 1020;  // T: 32 x 64 x 32 floats = 256 KiB
  float* t = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kc * side * ldt));
  for (int64_t i = 0; i < kc * side * ldt; ++i) t[i] = 1e-3f * float(i % 7);
  std::vector<Left> left(rows * kc);
  std::srand(1);
  for (auto& p : left) p = {1.0f, uint32_t((std::rand() % side) * ldt)};
  std::vector<float> c(rows * ldt);
  const int repeats = 1000;
  start = seconds();
  bucket_loop(t, kc, side, left.data(), rows, c.data(), repeats);
  const double bucket_ns = (seconds() - start) / (double(repeats) * rows * kc * ldt / 16) * 1e9;
  std::free(t);

  std::printf("ns per 16 products, one core\n");
  std::printf("  fma     %.3f  (an sgemm's inner loop)\n", fma_ns);
  std::printf("  lut     %.3f  (vpermi2b + vpaddd + vfmadd: %.2fx fma)\n", lut_ns, lut_ns / fma_ns);
  std::printf("  bucket  %.3f  (vfmadd from a T row in L2: %.2fx fma)\n", bucket_ns, bucket_ns / fma_ns);
  return sink[0][0] == 12345.0f && c[0] == 12345.0f;  // keeps the results live
}
