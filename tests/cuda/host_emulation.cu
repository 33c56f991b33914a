// Runs the CUDA kernels' building blocks on the CPU (they are __host__
// __device__) and checks them bit for bit against a naive canonical-order
// reference built on amsim.h's am_multiply and add_ftz:
//   - stage_left / stage_right / staged_product / any_product, for both
//     table placements (shared: LEA form with a zero row; global: two FMULs),
//   - the index math of the GEMM Problems (dense, conv forward, input grad,
//     filter grad) driven in the kernels' K order,
//   - the per-element depthwise functions.
// What it cannot check is the GPU-only part: thread mapping, shared-memory
// staging, barriers and launch configuration (tests/cuda/test_cuda_*.py do,
// on a GPU).  Build and run: see tests/cuda/test_host_emulation.py.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/conv_problems.cuh"
#include "cuda/depthwise_elements.cuh"
#include "cuda/gemm_problem.cuh"
#include "cuda/shared_table.cuh"
#include "cuda/staged_operands.cuh"

using namespace amsim;
using namespace amsim::cuda;

namespace {

int failures = 0;

bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return float_bits(a) == float_bits(b);
}

void expect_same(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (!same_bits(got[i], want[i])) {
      std::printf("FAIL %s: element %zu of %zu: got %a (0x%08x), want %a (0x%08x)\n", what, i, want.size(), got[i],
                  float_bits(got[i]), want[i], float_bits(want[i]));
      ++failures;
      return;
    }
  }
}

// float32 values from all bit patterns mixed with ordinary normals, as
// tests/amsim_reference.random_floats, plus the contract's special values.
std::vector<float> random_floats(std::mt19937_64& rng, size_t n) {
  static const float specials[] = {0.0f,     -0.0f,           1e-45f, -1e-39f,       1.17549435e-38f,
                                   INFINITY, -INFINITY,       NAN,    3.4028235e38f, -1.7e38f,
                                   0x1p127f, 0x1.fffffep126f, 1.0f,   -1.5f,         0x1p-126f};
  std::vector<float> v(n);
  std::normal_distribution<float> normal;
  for (auto& x : v) {
    const uint64_t r = rng();
    switch (r % 8) {
      case 0:
        x = bits_float(static_cast<uint32_t>(rng()));
        break;
      case 1:
        x = specials[rng() % (sizeof specials / sizeof specials[0])];
        break;
      default:
        x = std::ldexp(normal(rng), static_cast<int>(rng() % 40) - 20);
    }
  }
  return v;
}

struct HostTable {
  int mbits;
  Rounding rounding;
  std::vector<uint16_t> entries;  // 2^(2M)
  std::vector<uint16_t> shared;  // as load_shared_table lays it out: entries, zero row, padding

  HostTable(std::mt19937_64& rng, int m, Rounding r)
      : mbits(m), rounding(r), entries(static_cast<size_t>(table_size(m))) {
    for (auto& e : entries) e = static_cast<uint16_t>(rng());
    shared.assign(shared_table_bytes(m) / 2, 0);
    std::memcpy(shared.data(), entries.data(), entries.size() * 2);
  }
  Table table() const { return Table{entries.data(), mbits, rounding}; }
  template <bool kShared>
  StagedTable staged() const {
    return kShared ? StagedTable{shared.data(), mbits, rounding, zero_row_bytes(mbits)}
                   : StagedTable{entries.data(), mbits, rounding, 0};
  }
};

// The staged product of every pair of a and b equals am_multiply.
template <bool kShared>
void check_products(const HostTable& t, const std::vector<float>& a, const std::vector<float>& b) {
  const StagedTable st = t.staged<kShared>();
  std::vector<float> got, want;
  for (float x : a)
    for (float y : b) {
      const uint2 l = stage_left<kShared>(x, t.mbits, t.rounding, st.zero_row);
      const StagedRight r = stage_right<kShared>(y, t.mbits, t.rounding);
      got.push_back(any_product<kShared>(st.entries, l, r.col, r.scale, t.mbits, t.rounding));
      want.push_back(am_multiply(x, y, t.table()));
      if (!same_bits(got.back(), want.back()) && failures < 3)
        std::printf("  M=%d rounding=%d a=%a (0x%08x) b=%a (0x%08x) staged a=(0x%x, 0x%08x) b=(0x%x, %a)\n", t.mbits,
                    static_cast<int>(t.rounding), x, float_bits(x), y, float_bits(y), l.x, l.y, r.col, r.scale);
    }
  expect_same(got, want, kShared ? "products (shared table)" : "products (global table)");
}

// The tiled kernel's arithmetic, serially: C[b][i, j] = sum over k ascending
// of staged A[b][i, k] (x) staged B[b][k, j], read through the Problem.
template <bool kShared, class Problem>
void emulate_gemm(const Problem& p, const HostTable& t) {
  const StagedTable st = t.staged<kShared>();
  for (int64_t bi = 0; bi < p.batch; ++bi)
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) {
        const auto row = p.a_row(bi, i);
        const auto col = p.b_col(bi, j);
        float acc = 0.0f;
        for (int64_t k = 0; k < p.k; ++k) {
          const uint2 a = stage_left<kShared>(p.a_at(row, p.a_k(bi, k)), t.mbits, t.rounding, st.zero_row);
          const StagedRight b = stage_right<kShared>(p.b_at(p.b_k(bi, k), col), t.mbits, t.rounding);
          acc = add_rn_ftz(acc, any_product<kShared>(st.entries, a, b.col, b.scale, t.mbits, t.rounding));
        }
        p.c_row(bi, i)[j] = acc;
      }
}

// ---- naive references in the canonical orders of gemm.h and conv.h ----

float x_at(const std::vector<float>& x, const ConvDims& d, int n, int ih, int iw, int c) {
  if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) return 0.0f;
  return x[((int64_t{n} * d.h + ih) * d.w + iw) * d.c + c];
}

std::vector<float> ref_forward(const HostTable& t, const ConvDims& d, const std::vector<float>& x,
                               const std::vector<float>& w) {
  std::vector<float> y(size_t(d.out_positions()) * d.o);
  for (int n = 0; n < d.n; ++n)
    for (int oh = 0; oh < d.oh; ++oh)
      for (int ow = 0; ow < d.ow; ++ow)
        for (int o = 0; o < d.o; ++o) {
          const int g = o / d.og;
          float acc = 0.0f;
          for (int kh = 0; kh < d.kh; ++kh)
            for (int kw = 0; kw < d.kw; ++kw)
              for (int c = 0; c < d.cg; ++c) {
                const float xv =
                    x_at(x, d, n, oh * d.sh - d.pad_top + kh * d.dh, ow * d.sw - d.pad_left + kw * d.dw, g * d.cg + c);
                acc = add_ftz(acc, am_multiply(xv, w[((int64_t{kh} * d.kw + kw) * d.cg + c) * d.o + o], t.table()));
              }
          y[((int64_t{n} * d.oh + oh) * d.ow + ow) * d.o + o] = acc;
        }
  return y;
}

std::vector<float> ref_input_grad(const HostTable& t, const ConvDims& d, const std::vector<float>& dy,
                                  const std::vector<float>& w) {
  std::vector<float> dx(size_t(d.in_positions()) * d.c);
  for (int n = 0; n < d.n; ++n)
    for (int ih = 0; ih < d.h; ++ih)
      for (int iw = 0; iw < d.w; ++iw)
        for (int c = 0; c < d.c; ++c) {
          const int g = c / d.cg;
          float acc = 0.0f;
          for (int kh = 0; kh < d.kh; ++kh)
            for (int kw = 0; kw < d.kw; ++kw)
              for (int o = 0; o < d.og; ++o) {
                const int th = ih + d.pad_top - kh * d.dh, tw = iw + d.pad_left - kw * d.dw;
                float v = 0.0f;
                if (th >= 0 && tw >= 0 && th % d.sh == 0 && tw % d.sw == 0 && th / d.sh < d.oh && tw / d.sw < d.ow)
                  v = dy[((int64_t{n} * d.oh + th / d.sh) * d.ow + tw / d.sw) * d.o + g * d.og + o];
                const float wv = w[((int64_t{kh} * d.kw + kw) * d.cg + c % d.cg) * d.o + g * d.og + o];
                acc = add_ftz(acc, am_multiply(v, wv, t.table()));
              }
          dx[((int64_t{n} * d.h + ih) * d.w + iw) * d.c + c] = acc;
        }
  return dx;
}

std::vector<float> ref_filter_grad(const HostTable& t, const ConvDims& d, const std::vector<float>& x,
                                   const std::vector<float>& dy) {
  std::vector<float> dw(size_t(d.kh) * d.kw * d.cg * d.o);
  for (int kh = 0; kh < d.kh; ++kh)
    for (int kw = 0; kw < d.kw; ++kw)
      for (int c = 0; c < d.cg; ++c)
        for (int o = 0; o < d.o; ++o) {
          const int g = o / d.og;
          float acc = 0.0f;
          for (int n = 0; n < d.n; ++n)
            for (int oh = 0; oh < d.oh; ++oh)
              for (int ow = 0; ow < d.ow; ++ow) {
                const float xv =
                    x_at(x, d, n, oh * d.sh - d.pad_top + kh * d.dh, ow * d.sw - d.pad_left + kw * d.dw, g * d.cg + c);
                acc = add_ftz(acc, am_multiply(xv, dy[((int64_t{n} * d.oh + oh) * d.ow + ow) * d.o + o], t.table()));
              }
          dw[((int64_t{kh} * d.kw + kw) * d.cg + c) * d.o + o] = acc;
        }
  return dw;
}

ConvDims make_dims(int n, int h, int w, int c, int kh, int kw, int o, int groups, int sh, int sw, int dh, int dw,
                   int pt, int pb, int pl, int pr) {
  ConvDims d{};
  d.n = n, d.h = h, d.w = w, d.c = c, d.kh = kh, d.kw = kw, d.o = o, d.groups = groups;
  d.cg = c / groups, d.og = o / groups, d.sh = sh, d.sw = sw, d.dh = dh, d.dw = dw, d.pad_top = pt, d.pad_left = pl;
  d.oh = (h + pt + pb - ((kh - 1) * dh + 1)) / sh + 1;
  d.ow = (w + pl + pr - ((kw - 1) * dw + 1)) / sw + 1;
  return d;
}

template <bool kShared>
void check_conv(std::mt19937_64& rng, const HostTable& t, const ConvDims& d) {
  const auto x = random_floats(rng, size_t(d.in_positions()) * d.c);
  const auto w = random_floats(rng, size_t(d.kh) * d.kw * d.cg * d.o);
  const auto dy = random_floats(rng, size_t(d.out_positions()) * d.o);

  std::vector<float> y(size_t(d.out_positions()) * d.o);
  emulate_gemm<kShared>(ConvForwardProblem{d.out_positions(), d.og, int64_t{d.kh} * d.kw * d.cg, d.groups, d, x.data(),
                                           w.data(), y.data(), false},
                        t);
  const auto y_ref = ref_forward(t, d, x, w);
  expect_same(y, y_ref, "conv forward (implicit GEMM)");

  std::vector<float> dx(size_t(d.in_positions()) * d.c);
  emulate_gemm<kShared>(ConvInputGradProblem{d.in_positions(), d.cg, int64_t{d.kh} * d.kw * d.og, d.groups, d,
                                             dy.data(), w.data(), dx.data(), false},
                        t);
  const auto dx_ref = ref_input_grad(t, d, dy, w);
  expect_same(dx, dx_ref, "conv input grad (implicit GEMM)");

  std::vector<float> dw(w.size());
  emulate_gemm<kShared>(ConvFilterGradProblem{int64_t{d.kh} * d.kw * d.cg, d.og, d.out_positions(), d.groups, d,
                                              x.data(), dy.data(), dw.data(), false},
                        t);
  const auto dw_ref = ref_filter_grad(t, d, x, dy);
  expect_same(dw, dw_ref, "conv filter grad (implicit GEMM)");

  if (d.cg != 1) return;  // the depthwise element functions take one input channel per group
  const StagedTable st = t.staged<kShared>();
  std::vector<float> got(y.size());
  for (int64_t pos = 0; pos < d.out_positions(); ++pos)
    for (int64_t o = 0; o < d.o; ++o)
      got[pos * d.o + o] = depthwise_forward_element<kShared>(d, st, x.data(), pos, o, [&](int tap) {
        return stage_right<kShared>(w[int64_t{tap} * d.o + o], t.mbits, t.rounding);
      });
  expect_same(got, y_ref, "depthwise forward");
  got.assign(dx.size(), 0.0f);
  for (int64_t pos = 0; pos < d.in_positions(); ++pos)
    for (int64_t c = 0; c < d.c; ++c)
      got[pos * d.c + c] = depthwise_input_grad_element<kShared>(d, st, dy.data(), pos, c, [&](int tap, int q) {
        return stage_right<kShared>(w[int64_t{tap} * d.o + c * d.og + q], t.mbits, t.rounding);
      });
  expect_same(got, dx_ref, "depthwise input grad");
  got.assign(dw.size(), 0.0f);
  for (int tap = 0; tap < d.kh * d.kw; ++tap)
    for (int64_t o = 0; o < d.o; ++o)
      got[tap * d.o + o] = depthwise_filter_grad_element<kShared>(d, st, x.data(), dy.data(), tap, o);
  expect_same(got, dw_ref, "depthwise filter grad");
}

template <bool kShared>
void check_gemm(std::mt19937_64& rng, const HostTable& t, int64_t batch, int64_t m, int64_t n, int64_t k, bool ta,
                bool tb, bool broadcast_b) {
  const auto a = random_floats(rng, size_t(batch * m * k));
  const auto b = random_floats(rng, size_t((broadcast_b ? 1 : batch) * k * n));
  std::vector<float> c(size_t(batch * m * n)), c_ref(c.size());
  const DenseGemmProblem p{m,          n,     k,        batch,      a.data(),   ta ? 1 : k,
                           ta ? m : 1, m * k, b.data(), tb ? 1 : n, tb ? k : 1, broadcast_b ? 0 : k * n,
                           c.data(),   false};
  emulate_gemm<kShared>(p, t);
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        float acc = 0.0f;
        for (int64_t q = 0; q < k; ++q) {
          const float av = a[bi * m * k + (ta ? q * m + i : i * k + q)];
          const float bv = b[(broadcast_b ? 0 : bi * k * n) + (tb ? j * k + q : q * n + j)];
          acc = add_ftz(acc, am_multiply(av, bv, t.table()));
        }
        c_ref[(bi * m + i) * n + j] = acc;
      }
  expect_same(c, c_ref, "dense GEMM");
}

template <bool kShared>
void check_all(std::mt19937_64& rng, const HostTable& t) {
  const auto a = random_floats(rng, 300), b = random_floats(rng, 300);
  check_products<kShared>(t, a, b);
  check_gemm<kShared>(rng, t, 2, 5, 7, 33, false, false, false);
  check_gemm<kShared>(rng, t, 3, 4, 3, 17, true, true, true);
  check_gemm<kShared>(rng, t, 1, 3, 2, 0, false, true, false);
  // N, H, W, C, KH, KW, O, groups, strides, dilations, paddings (t, b, l, r)
  check_conv<kShared>(rng, t, make_dims(2, 5, 6, 4, 3, 3, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1));
  check_conv<kShared>(rng, t, make_dims(1, 7, 5, 6, 3, 2, 4, 2, 2, 1, 1, 2, 1, 0, 2, 1));
  check_conv<kShared>(rng, t, make_dims(2, 6, 6, 3, 3, 3, 6, 3, 2, 2, 1, 1, 1, 1, 0, 1));  // depthwise, multiplier 2
  check_conv<kShared>(rng, t, make_dims(1, 6, 7, 4, 3, 3, 4, 4, 1, 2, 2, 1, 2, 2, 1, 1));  // depthwise, dilated
  // LeNet-5's first layer (one channel, no groups): not depthwise, so it runs as
  // an implicit GEMM; the depthwise elements give the same bits on it too.
  check_conv<kShared>(rng, t, make_dims(2, 8, 8, 1, 5, 5, 6, 1, 1, 1, 1, 1, 2, 2, 2, 2));
}

}  // namespace

int main() {
  std::mt19937_64 rng(20240607);
  for (int m : {1, 2, 3, 5, 7, 8, 9, 11}) {
    for (Rounding r : {Rounding::kTruncate, Rounding::kNearestEven}) {
      const HostTable t(rng, m, r);
      if (m <= 8) check_all<true>(rng, t);
      check_all<false>(rng, t);
    }
  }
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all host emulation checks passed\n");
  return 0;
}
