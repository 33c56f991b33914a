// Conv2D on the CPU as GEMMs over im2col-style patch matrices, built in
// row chunks so memory stays bounded (depthwise convolutions take direct
// loops instead, conv_depthwise.cpp).  The K order of each patch matrix is
// the canonical summation order documented in conv.h.
#include "amsim/conv.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "amsim/cpu/conv_depthwise.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/gemm_packed_left.h"
#include "amsim/cpu/gemm_shifted.h"
#include "amsim/gemm.h"

namespace amsim {

namespace {
// Patch-matrix chunks hold at most this many floats (1 MiB): a chunk stays in
// cache while the GEMM packs it (32 MiB chunks made LeNet-5's input gradients
// 3-4x slower), and a small net's step keeps little scratch memory (4 MiB
// chunks took LeNet-5's AM step to twice the native step's peak; the same
// speed at 1 MiB).
constexpr int64_t kMaxPatchFloats = int64_t{1} << 18;

int64_t rows_per_chunk(int64_t row_len) {
  return std::max<int64_t>(1, kMaxPatchFloats / std::max<int64_t>(1, row_len));
}

// Patch runs and line segments are often a handful of floats (one channel
// per group in LeNet's first layer): they are copied without a library call,
// by overlapping fixed-size moves.
inline void copy_short(const float* src, int64_t n, float* dst) {
  if (n > 16) {
    std::copy(src, src + n, dst);
  } else if (n >= 8) {
    std::memcpy(dst, src, 8 * sizeof(float));
    std::memcpy(dst + n - 8, src + n - 8, 8 * sizeof(float));
  } else if (n >= 4) {
    std::memcpy(dst, src, 4 * sizeof(float));
    std::memcpy(dst + n - 4, src + n - 4, 4 * sizeof(float));
  } else {  // spelled out: GCC turns a loop back into a memcpy call
    if (n > 0) dst[0] = src[0];
    if (n > 1) dst[1] = src[1];
    if (n > 2) dst[2] = src[2];
  }
}
inline void zero_short(int64_t n, float* dst) {
  static constexpr float kZeros[16] = {};
  if (n > 16)
    std::fill(dst, dst + n, 0.0f);
  else
    copy_short(kZeros, n, dst);
}

// The patch matrices as runs of one pixel's channels (GatheredLeft): the
// source pixel of each (kh, kw) run of a patch row, -1 for a padded one.
// Rows are walked in order (PixelWalk), without divisions per row.

// The pixel (n, y, x) of row r of an image batch of height h and width w.
struct PixelWalk {
  int64_t h, w, n, y, x;
  PixelWalk(int64_t r, int64_t height, int64_t width)
      : h(height), w(width), n(r / (height * width)), y((r / width) % height), x(r % width) {}
  void next() {
    if (++x == w) {
      x = 0;
      if (++y == h) y = 0, ++n;
    }
  }
};

// A window that lies wholly inside the source image has its runs at fixed
// offsets from its first pixel: such rows are written without a test per run
// (most rows of a padded conv).
constexpr int64_t kMaxWindowTaps = 64;

struct WindowOffsets {
  int64_t taps;
  bool usable;  // taps <= kMaxWindowTaps (and the caller's geometry allows it)
  int64_t at[kMaxWindowTaps];
  // Tap (kh, kw) at sign * (kh * row_step + kw * col_step) from the first pixel.
  WindowOffsets(const Conv2DShape& s, bool geometry_ok, int64_t row_step, int64_t col_step, int64_t sign)
      : taps(s.filter_h * s.filter_w), usable(geometry_ok && taps <= kMaxWindowTaps) {
    if (!usable) return;
    for (int64_t kh = 0; kh < s.filter_h; ++kh)
      for (int64_t kw = 0; kw < s.filter_w; ++kw) at[kh * s.filter_w + kw] = sign * (kh * row_step + kw * col_step);
  }
  void write(int64_t first, int64_t* pixels) const {
    for (int64_t t = 0; t < taps; ++t) pixels[t] = first + at[t];
  }
};

// Forward: row r = (n, oh, ow); run (kh, kw) is input pixel (n, ih, iw).
struct ForwardRuns {
  const Conv2DShape& s;
  void operator()(int64_t r0, int64_t r1, int64_t* pixels) const {
    const WindowOffsets inside(s, true, s.dilation_h * s.in_w, s.dilation_w, 1);
    const int64_t last_h = (s.filter_h - 1) * s.dilation_h, last_w = (s.filter_w - 1) * s.dilation_w;
    for (PixelWalk out(r0, s.out_h, s.out_w); r0 < r1; ++r0, out.next()) {
      const int64_t n = out.n, ih0 = out.y * s.stride_h - s.pad_top, iw0 = out.x * s.stride_w - s.pad_left;
      if (inside.usable && ih0 >= 0 && ih0 + last_h < s.in_h && iw0 >= 0 && iw0 + last_w < s.in_w) {
        inside.write((n * s.in_h + ih0) * s.in_w + iw0, pixels);
        pixels += inside.taps;
        continue;
      }
      for (int64_t kh = 0; kh < s.filter_h; ++kh) {
        const int64_t ih = ih0 + kh * s.dilation_h;
        const bool row_ok = ih >= 0 && ih < s.in_h;
        const int64_t row_pixel = (n * s.in_h + ih) * s.in_w;
        for (int64_t kw = 0; kw < s.filter_w; ++kw) {
          const int64_t iw = iw0 + kw * s.dilation_w;
          *pixels++ = row_ok && iw >= 0 && iw < s.in_w ? row_pixel + iw : -1;
        }
      }
    }
  }
};

// Input gradient: row r = (n, ih, iw); run (kh, kw) is output pixel
// (n, oh, ow) where the stride divides exactly (conv.h).
struct InputGradRuns {
  const Conv2DShape& s;
  void operator()(int64_t r0, int64_t r1, int64_t* pixels) const {
    // With unit strides every tap divides: tap (kh, kw) of a window inside
    // the output is at -(kh * dh * out_w + kw * dw) from (th0, tw0).
    const WindowOffsets inside(s, s.stride_h == 1 && s.stride_w == 1, s.dilation_h * s.out_w, s.dilation_w, -1);
    const int64_t last_h = (s.filter_h - 1) * s.dilation_h, last_w = (s.filter_w - 1) * s.dilation_w;
    for (PixelWalk in(r0, s.in_h, s.in_w); r0 < r1; ++r0, in.next()) {
      const int64_t n = in.n, th0 = in.y + s.pad_top, tw0 = in.x + s.pad_left;
      if (inside.usable && th0 - last_h >= 0 && th0 < s.out_h && tw0 - last_w >= 0 && tw0 < s.out_w) {
        inside.write((n * s.out_h + th0) * s.out_w + tw0, pixels);
        pixels += inside.taps;
        continue;
      }
      for (int64_t kh = 0; kh < s.filter_h; ++kh) {
        const int64_t th = th0 - kh * s.dilation_h;
        const int64_t oh = th / s.stride_h;
        const bool row_ok = th >= 0 && th % s.stride_h == 0 && oh < s.out_h;
        const int64_t row_pixel = (n * s.out_h + oh) * s.out_w;
        for (int64_t kw = 0; kw < s.filter_w; ++kw) {
          const int64_t tw = tw0 - kw * s.dilation_w;
          const int64_t ow = tw / s.stride_w;
          *pixels++ = row_ok && tw >= 0 && tw % s.stride_w == 0 && ow < s.out_w ? row_pixel + ow : -1;
        }
      }
    }
  }
};

// Patch rows are described this many at a time.
constexpr int64_t kRunRowsBlock = 64;

// Rows [r0, r1) of a gathered patch matrix, materialized row-major.  Runs
// of neighbouring pixels (a filter row inside the image, with all channels
// in one group) are copied in one go, as are runs of padding.
void gather_rows(const GatheredLeft& left, int64_t r0, int64_t r1, float* dst) {
  const int64_t len = left.run_len, runs = left.runs;
  const bool dense_source = left.source.row_stride == len;
  std::vector<int64_t> block(static_cast<size_t>(kRunRowsBlock * runs));
  for (int64_t b0 = r0; b0 < r1; b0 += kRunRowsBlock) {
    const int64_t b1 = std::min(r1, b0 + kRunRowsBlock);
    left.run_rows(b0, b1, block.data());
    for (const int64_t* pixels = block.data(); pixels < block.data() + (b1 - b0) * runs; pixels += runs) {
      for (int64_t t = 0; t < runs;) {
        const int64_t first = pixels[t];
        int64_t count = 1;
        if (first < 0) {
          while (t + count < runs && pixels[t + count] < 0) ++count;
          zero_short(count * len, dst);
        } else {
          if (dense_source)
            while (t + count < runs && pixels[t + count] == first + count) ++count;
          copy_short(left.source.data + first * left.source.row_stride, count * len, dst);
        }
        t += count;
        dst += count * len;
      }
    }
  }
}

// Rows [r0, r1) of a gathered patch matrix into out (row-major), in parallel.
void build_patches(const GatheredLeft& left, int64_t r0, int64_t r1, float* out, const ParallelFor& parallel) {
  const int64_t kcols = left.runs * left.run_len;
  parallel(r1 - r0, kcols, [&](int64_t b, int64_t e) { gather_rows(left, r0 + b, r0 + e, out + b * kcols); });
}

// out (rows x n, leading dimension ldc) = P . B for the gathered patch matrix
// P: straight from the source where the GEMM can (gemm_cpu_gathered), else
// materialized in chunks small enough to stay in cache while the GEMM reads
// them (a narrow C reads its chunk down the columns, gemm_cpu's transposed form).
void patch_gemm(const Table& table, const GatheredLeft& left, int64_t rows, int64_t n, const MatrixView& b, float* out,
                int64_t ldc, const ParallelFor& parallel) {
  const int64_t kcols = left.runs * left.run_len;
  if (gemm_cpu_gathered(table, GemmShape{rows, n, kcols}, left, b, out, ldc, parallel)) return;
  // The bucket GEMM pays per call for its table and T: it takes longer chunks.
  const int64_t chunk = std::max(rows_per_chunk(kcols), gemm_cpu_min_rows(table, GemmShape{rows, n, kcols}));
  std::vector<float> patches(static_cast<size_t>(std::min(rows, chunk) * kcols));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    build_patches(left, r0, r1, patches.data(), parallel);
    gemm_cpu(table, GemmShape{r1 - r0, n, kcols}, MatrixView{patches.data(), kcols, 1}, b, out + r0 * ldc, ldc,
             parallel);
  }
}

// --- K-major patch lines, for the narrow conv GEMMs ---
// A conv GEMM with few output channels (or a filter gradient) runs as its
// transpose (gemm_cpu_runs_transposed), which packs the patch matrix along
// its patch rows.  Where a patch row is made of short runs (LeNet-5's first
// layer: a window row of 5 floats, one copy each), the patch matrix is built
// K-major instead: one line per (kh, kw, c) over the chunk's patch rows,
// assembled from whole image rows of one channel plane and read by the GEMM
// with contiguous loads.  Runs of a vector or more (its second layer: 30
// floats) copy as fast, and the row-major patches are kept.
constexpr int64_t kShortRun = 16;

// A forward patch row's runs: a window row when the taps are neighbouring
// pixels of a source whose channels all belong to one group (gather_rows
// merges those), else one pixel's channels of the group.
bool forward_runs_are_short(const Conv2DShape& s) {
  const int64_t cg = s.in_c_per_group();
  return (s.groups == 1 && s.dilation_w == 1 ? s.filter_w * cg : cg) < kShortRun;
}

// One spatial axis of a tap: destination coordinate u (an output pixel of
// the forward pass, an input pixel of the input gradient) reads source
// coordinate (u * mul + offset) / div when that divides exactly and lies in
// [0, size); anything else is a zero operand (padding, or a stride that
// does not divide).
struct TapAxis {
  int64_t mul, offset, div, size;
  // The same axis for the tap `taps` filter positions further on.
  TapAxis shifted(int64_t taps, int64_t offset_step) const { return {mul, offset + taps * offset_step, div, size}; }
  int64_t source(int64_t u) const {
    const int64_t v = u * mul + offset;
    if (v < 0 || v % div != 0 || v / div >= size) return -1;
    return v / div;
  }
  // With div == 1: the u in [first, last) that read a source, within [0, extent).
  void valid_range(int64_t extent, int64_t* first, int64_t* last) const {
    const int64_t lo = offset >= 0 ? 0 : ceil_div(-offset, mul);
    const int64_t hi = size - 1 - offset < 0 ? 0 : (size - 1 - offset) / mul + 1;
    *first = std::min(lo, extent);
    *last = std::max(*first, std::min(hi, extent));
  }
};

// The source of K-major patch lines: channel planes (plane c: channel c of
// every source pixel, batch x src_h x src_w), the destination image the
// patch rows walk, and the two axes of tap (0, 0) with the offset each
// further filter row / column adds.
struct PatchLines {
  const float* planes;
  int64_t plane_size, channels;  // line (kh, kw, c) for c < channels
  int64_t src_h, src_w, dst_h, dst_w, filter_w;
  TapAxis rows, cols;
  int64_t row_step, col_step;

  // Line `kline` = (kh, kw, c) over patch rows [r0, r1) into dst.  The source
  // of each image row and column is found once per line; the patch rows go
  // by in segments of a destination image row.
  void build(int64_t kline, int64_t r0, int64_t r1, float* dst) const {
    const int64_t c = kline % channels, tap = kline / channels;
    const TapAxis ya = rows.shifted(tap / filter_w, row_step), xa = cols.shifted(tap % filter_w, col_step);
    const float* plane = planes + c * plane_size;
    std::vector<int64_t> row_source(static_cast<size_t>(dst_h)), col_source;
    for (int64_t y = 0; y < dst_h; ++y) row_source[y] = ya.source(y);
    int64_t first = 0, last = 0;
    if (xa.div == 1) {
      xa.valid_range(dst_w, &first, &last);
    } else {
      col_source.resize(static_cast<size_t>(dst_w));
      for (int64_t x = 0; x < dst_w; ++x) col_source[x] = xa.source(x);
    }
    int64_t n = r0 / (dst_h * dst_w), y = (r0 / dst_w) % dst_h, x0 = r0 % dst_w;
    for (int64_t r = r0; r < r1;) {
      const int64_t x1 = std::min(dst_w, x0 + (r1 - r));  // this segment: (n, y, [x0, x1))
      const int64_t sy = row_source[y];
      if (sy < 0) {
        zero_short(x1 - x0, dst);
      } else {
        const float* line = plane + (n * src_h + sy) * src_w;
        if (xa.div == 1) {
          const int64_t lo = std::clamp(first, x0, x1), hi = std::clamp(last, lo, x1);
          zero_short(lo - x0, dst);
          const float* src = line + lo * xa.mul + xa.offset;
          if (xa.mul == 1)
            copy_short(src, hi - lo, dst + (lo - x0));
          else
            for (int64_t u = lo; u < hi; ++u) dst[u - x0] = src[(u - lo) * xa.mul];
          zero_short(x1 - hi, dst + (hi - x0));
        } else {
          for (int64_t u = x0; u < x1; ++u) dst[u - x0] = col_source[u] < 0 ? 0.0f : line[col_source[u]];
        }
      }
      dst += x1 - x0;
      r += x1 - x0;
      x0 = 0;
      if (++y == dst_h) y = 0, ++n;
    }
  }
};

// Channels [c0, c0 + count) of a dense NHWC tensor with `channels` channels
// as planes: the tensor itself when that is one plane.
struct ChannelPlanes {
  std::vector<float> storage;
  const float* data;
  ChannelPlanes(const float* src, int64_t pixels, int64_t channels, int64_t c0, int64_t count,
                const ParallelFor& parallel)
      : data(src) {
    if (channels == 1) return;
    storage.resize(static_cast<size_t>(pixels * count));
    parallel(pixels, count * 2, [&](int64_t p0, int64_t p1) {
      for (int64_t c = 0; c < count; ++c)
        for (int64_t p = p0; p < p1; ++p) storage[c * pixels + p] = src[p * channels + c0 + c];
    });
    data = storage.data();
  }
};

// The forward (and filter-gradient) lines of a group: (kh, kw, c) over output pixels.
PatchLines forward_lines(const Conv2DShape& s, const float* planes) {
  return PatchLines{planes,
                    s.batch * s.in_h * s.in_w,
                    s.in_c_per_group(),
                    s.in_h,
                    s.in_w,
                    s.out_h,
                    s.out_w,
                    s.filter_w,
                    TapAxis{s.stride_h, -s.pad_top, 1, s.in_h},
                    TapAxis{s.stride_w, -s.pad_left, 1, s.in_w},
                    s.dilation_h,
                    s.dilation_w};
}

// The input-gradient lines of a group: (kh, kw, o) over input pixels, from dy's planes.
PatchLines input_grad_lines(const Conv2DShape& s, const float* planes) {
  return PatchLines{planes,
                    s.batch * s.out_h * s.out_w,
                    s.out_c_per_group(),
                    s.out_h,
                    s.out_w,
                    s.in_h,
                    s.in_w,
                    s.filter_w,
                    TapAxis{1, s.pad_top, s.stride_h, s.out_h},
                    TapAxis{1, s.pad_left, s.stride_w, s.out_w},
                    -s.dilation_h,
                    -s.dilation_w};
}

// Chunks of lines: a whole number of 64-column strips of the GEMM's right operand.
int64_t line_chunk_rows(int64_t kcols) { return std::max<int64_t>(64, rows_per_chunk(kcols) / 64 * 64); }

// Patch rows [r0, r1) of every line into out (K-major, leading dimension r1 - r0), in parallel.
void build_lines(const PatchLines& lines, int64_t kcols, int64_t r0, int64_t r1, float* out,
                 const ParallelFor& parallel) {
  const int64_t ld = r1 - r0;
  parallel(kcols, ld, [&](int64_t k0, int64_t k1) {
    for (int64_t kl = k0; kl < k1; ++kl) lines.build(kl, r0, r1, out + kl * ld);
  });
}

// out (rows x n, leading dimension ldc) = P . B for the patch matrix P of
// `lines`, built K-major chunk by chunk.
void lines_gemm(const Table& table, const PatchLines& lines, int64_t kcols, int64_t rows, int64_t n,
                const MatrixView& b, float* out, int64_t ldc, const ParallelFor& parallel) {
  const int64_t chunk = line_chunk_rows(kcols);
  std::vector<float> buf(static_cast<size_t>(std::min(rows, chunk) * kcols));
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    build_lines(lines, kcols, r0, r1, buf.data(), parallel);
    // A(r, k) = buf[k * (r1 - r0) + r].
    gemm_cpu(table, GemmShape{r1 - r0, n, kcols}, MatrixView{buf.data(), 1, r1 - r0}, b, out + r0 * ldc, ldc, parallel);
  }
}

// --- narrow stride-1 convs read in place (gemm_shifted.h) ---

// A stride-1 conv GEMM as gemm_cpu_shifted takes it.  The source is
// channels [c0, c0 + count) of a dense NHWC tensor (batch x h x w x
// channels), seen as placed at (top, left) in an unbounded zero plane per
// channel; output pixel (y, x), y < valid_h, x < valid_w, sums over its
// taps the plane value at (y + tap.rows, x + tap.cols) (0 <= tap.rows <=
// reach_h, 0 <= tap.cols <= reach_w), in tap order (patch column kk =
// taps[kk]), against row kk of b; out (ldc apart, n_out columns = b's).
struct ShiftedTap {
  int64_t plane, rows, cols;
};
struct ShiftedConv {
  const float* src;
  int64_t batch, h, w, channels, c0, count;
  int64_t top, left, valid_h, valid_w, reach_h, reach_w;
  std::vector<ShiftedTap> taps;
  MatrixView b;
  int64_t n_out;
  float* out;
  int64_t ldc;
  // Source pixel (y, x) sits at (top + y * stride_h, left + x * stride_w),
  // zeros between (a strided conv's input gradient reads dy spread out so).
  int64_t stride_h = 1, stride_w = 1;
  // The planes as stored: image rows and image row length.  Each image and
  // each row is stored once with only as many zeros after it as the reads
  // past its data need: a read past a row (or image) lands in the zeros
  // before the next one's data.
  int64_t plane_h() const { return std::max(top + (h - 1) * stride_h + 1, valid_h + reach_h - top); }
  int64_t plane_w() const { return std::max(left + (w - 1) * stride_w + 1, valid_w + reach_w - left); }
};

// The GEMM computes every grid position of the stored planes; the conv's
// outputs are the valid part.  Beyond this ratio the materialized paths are faster.
constexpr double kMaxShiftedWaste = 1.5;

bool shifted_pays(const ShiftedConv& conv) {
  return double(conv.plane_h() * conv.plane_w()) <= kMaxShiftedWaste * double(conv.valid_h * conv.valid_w);
}

// Planes of at most this many bytes per GEMM (a few images of a wide
// layer): they stay in cache while the kernels read them, as the patch
// chunks do (kMaxPatchFloats), and bound the step's scratch memory (with
// the transposed output, about 1.5x this).  1 MiB made LeNet-5's conv2
// input gradient 20% slower (six GEMMs instead of two).
constexpr int64_t kMaxShiftedBytes = int64_t{2} << 20;

// Runs `conv` (see ShiftedConv) a chunk of images at a time.  False where
// the source or B holds a value the in-place path cannot take (inf, NaN,
// huge): the outputs may then be partly written, and the caller computes
// them all again on another path.
bool run_shifted(const Table& table, cpu::RightLayout layout, const ShiftedConv& conv, const ParallelFor& parallel) {
  const int64_t k = int64_t(conv.taps.size());
  const int64_t plane_h = conv.plane_h(), plane_w = conv.plane_w(), image = plane_h * plane_w;
  const int64_t index_bytes = layout == cpu::RightLayout::kLutPlanes ? 1 : 4;
  const int64_t chunk =
      std::clamp<int64_t>(kMaxShiftedBytes / std::max<int64_t>(1, conv.count * image * (index_bytes + 4)), 1, conv.batch);
  // Every strip reads 64 elements from each shifted position of the grid.
  const int64_t reach = conv.reach_h * plane_w + conv.reach_w;
  const int64_t plane_stride = ceil_div(chunk * image + reach + 64, 64) * 64;
  // Not value-initialized: every element is written below (the planes per
  // image, their tails here; C by the GEMM).
  std::unique_ptr<uint8_t[]> index_planes(new uint8_t[static_cast<size_t>(conv.count * plane_stride * index_bytes)]);
  std::unique_ptr<float[]> scale_planes(new float[static_cast<size_t>(conv.count * plane_stride)]);
  std::unique_ptr<float[]> ct(new float[static_cast<size_t>(conv.n_out * chunk * image)]);
  std::vector<int64_t> offsets(static_cast<size_t>(k));
  for (int64_t kk = 0; kk < k; ++kk)
    offsets[kk] = conv.taps[kk].plane * plane_stride + conv.taps[kk].rows * plane_w + conv.taps[kk].cols;

  for (int64_t n0 = 0; n0 < conv.batch; n0 += chunk) {
    const int64_t images = std::min(chunk, conv.batch - n0), grid = images * image;
    // Zeros past the chunk's images (index 0 and scale +0: a zero's product,
    // whatever its index).
    for (int64_t c = 0; c < conv.count; ++c) {
      std::fill(index_planes.get() + (c * plane_stride + grid) * index_bytes,
                index_planes.get() + (c + 1) * plane_stride * index_bytes, uint8_t{0});
      std::fill(scale_planes.get() + c * plane_stride + grid, scale_planes.get() + (c + 1) * plane_stride, 0.0f);
    }
    // Per image: its block of every plane zeroed, then each source value
    // encoded once into its place, one source row (all channels) at a time.
    cpu::ExponentRange range;
    bool ok = true;
    std::mutex merge;
    const int64_t row_values = conv.w * conv.channels;
    parallel(images, image * conv.count * 2, [&](int64_t i0, int64_t i1) {
      std::vector<uint32_t> index(static_cast<size_t>(row_values));
      std::vector<float> scale(static_cast<size_t>(row_values));
      cpu::ExponentRange task_range;
      bool good = true;
      for (int64_t i = i0; i < i1 && good; ++i) {
        for (int64_t c = 0; c < conv.count; ++c) {
          const int64_t at = c * plane_stride + i * image;
          std::fill(index_planes.get() + at * index_bytes, index_planes.get() + (at + image) * index_bytes, uint8_t{0});
          std::fill(scale_planes.get() + at, scale_planes.get() + at + image, 0.0f);
        }
        for (int64_t y = 0; y < conv.h && good; ++y) {
          const float* src = conv.src + ((n0 + i) * conv.h + y) * row_values;
          good = cpu::encode_right_values_avx512(layout, table, src, row_values, index.data(), scale.data(), &task_range);
          for (int64_t c = 0; c < conv.count; ++c) {
            const int64_t at = c * plane_stride + i * image + (y * conv.stride_h + conv.top) * plane_w + conv.left;
            const int64_t from = conv.c0 + c, sx = conv.stride_w;
            float* sp = scale_planes.get() + at;
            for (int64_t x = 0; x < conv.w; ++x) sp[x * sx] = scale[from + x * conv.channels];
            if (index_bytes == 1) {
              uint8_t* ip = index_planes.get() + at;
              for (int64_t x = 0; x < conv.w; ++x) ip[x * sx] = uint8_t(index[from + x * conv.channels]);
            } else {
              uint32_t* ip = reinterpret_cast<uint32_t*>(index_planes.get()) + at;
              for (int64_t x = 0; x < conv.w; ++x) ip[x * sx] = index[from + x * conv.channels];
            }
          }
        }
      }
      const std::lock_guard<std::mutex> lock(merge);
      ok = ok && good;
      range.merge(task_range);
    });
    if (!ok) return false;

    cpu::ShiftedRight right;
    right.index = index_planes.get();
    right.index_bytes = index_bytes;
    right.scales = scale_planes.get();
    right.k_offsets = offsets.data();
    right.range = range;
    if (!cpu::gemm_cpu_shifted(table, GemmShape{grid, conv.n_out, k}, conv.b, ct.get(), parallel, right)) return false;
    parallel(images * conv.valid_h, conv.valid_w * conv.n_out * 2, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r / conv.valid_h, y = r % conv.valid_h;
        const float* from = ct.get() + i * image + y * plane_w;
        float* to = conv.out + (n0 * conv.valid_h + r) * conv.valid_w * conv.ldc;
        for (int64_t x = 0; x < conv.valid_w; ++x)
          for (int64_t j = 0; j < conv.n_out; ++j) to[x * conv.ldc + j] = from[j * grid + x];
      }
    });
  }
  return true;
}

// The forward pass of group g as a ShiftedConv (stride 1 only).
bool shifted_forward(const Table& table, cpu::RightLayout layout, const Conv2DShape& s, const float* x,
                     const MatrixView& wb, int64_t g, float* y, const ParallelFor& parallel) {
  if (s.stride_h != 1 || s.stride_w != 1) return false;
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  ShiftedConv conv{};
  conv.src = x;
  conv.batch = s.batch, conv.h = s.in_h, conv.w = s.in_w, conv.channels = s.in_c, conv.c0 = g * cg, conv.count = cg;
  conv.top = s.pad_top, conv.left = s.pad_left, conv.valid_h = s.out_h, conv.valid_w = s.out_w;
  conv.reach_h = s.effective_filter_h() - 1, conv.reach_w = s.effective_filter_w() - 1;
  conv.b = wb, conv.n_out = og, conv.out = y + g * og, conv.ldc = s.out_c;
  if (!shifted_pays(conv)) return false;
  for (int64_t kh = 0; kh < s.filter_h; ++kh)
    for (int64_t kw = 0; kw < s.filter_w; ++kw)
      for (int64_t c = 0; c < cg; ++c) conv.taps.push_back({c, kh * s.dilation_h, kw * s.dilation_w});
  return run_shifted(table, layout, conv, parallel);
}

// The input gradient of group g as a ShiftedConv over dy: dx pixel (ih, iw)
// reads dy spread out by the strides (zeros where a stride does not divide,
// as in the patch matrix) at (ih + pad_top - kh dh, iw + pad_left - kw dw),
// i.e. that spread-out dy placed at (reach_h - pad_top, reach_w - pad_left)
// read at (ih + reach_h - kh dh, iw + reach_w - kw dw).
bool shifted_input_grad(const Table& table, cpu::RightLayout layout, const Conv2DShape& s, const float* dy,
                        const MatrixView& wb, int64_t g, float* dx, const ParallelFor& parallel) {
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  const int64_t reach_h = s.effective_filter_h() - 1, reach_w = s.effective_filter_w() - 1;
  if (s.pad_top > reach_h || s.pad_left > reach_w) return false;
  // Strided, the in-place read pays up to K = 288 (ResNet-20's 16 -> 32
  // channel conv, stride 2: -15%); at K = 576 (32 -> 64) it lost 15%: its
  // planes hold 4x the values of dy and the strips' reads outgrow L1.
  constexpr int64_t kMaxStridedShiftedK = 288;
  if ((s.stride_h != 1 || s.stride_w != 1) && s.filter_h * s.filter_w * og > kMaxStridedShiftedK) return false;
  ShiftedConv conv{};
  conv.src = dy;
  conv.batch = s.batch, conv.h = s.out_h, conv.w = s.out_w, conv.channels = s.out_c, conv.c0 = g * og, conv.count = og;
  conv.top = reach_h - s.pad_top, conv.left = reach_w - s.pad_left, conv.valid_h = s.in_h, conv.valid_w = s.in_w;
  conv.reach_h = reach_h, conv.reach_w = reach_w;
  conv.stride_h = s.stride_h, conv.stride_w = s.stride_w;
  conv.b = wb, conv.n_out = cg, conv.out = dx + g * cg, conv.ldc = s.in_c;
  if (!shifted_pays(conv)) return false;
  for (int64_t kh = 0; kh < s.filter_h; ++kh)
    for (int64_t kw = 0; kw < s.filter_w; ++kw)
      for (int64_t o = 0; o < og; ++o) conv.taps.push_back({o, reach_h - kh * s.dilation_h, reach_w - kw * s.dilation_w});
  return run_shifted(table, layout, conv, parallel);
}

// --- filter gradients whose transposed form reads x in place (gemm_shifted.h) ---
// With fewer than 64 output channels the filter gradient runs transposed,
// C^T = dy^T (x)' P (P the patch matrix, the table transposed: gemm_cpu's
// narrow form), whether or not gemm_cpu would.  P's row kk (an output
// pixel) holds, per tap, the group's cg channels of one input pixel.
// With cg a multiple of 16 each 16-column vector of P is one tap's run of 16
// channels: x's values are encoded once into a zero-padded copy of the
// group's channels (pixel-major, cg per pixel) and the kernels read each
// vector at k_offsets[kk] (the output pixel's window) + vector_offsets (the
// tap and channel).  Any stride, dilation or padding; same products and K
// order as the patch GEMM, so the same bits.

// Encoded padded images of at most this many bytes per GEMM.
constexpr int64_t kMaxShiftedDwBytes = int64_t{4} << 20;

bool shifted_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, int64_t g,
                         float* dw, const ParallelFor& parallel) {
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  const int64_t taps = s.filter_h * s.filter_w, kcols = taps * cg, out_pixels = s.out_h * s.out_w;
  cpu::RightLayout layout;
  if (cg % 16 != 0 || !cpu::filter_grad_shifted_layout(table, GemmShape{kcols, og, s.batch * out_pixels}, &layout))
    return false;
  const int64_t index_bytes = layout == cpu::RightLayout::kLutPlanes ? 1 : 4;
  // The padded image: rows ih + pad_top in [0, hp), columns iw + pad_left in [0, wp).
  const int64_t hp = (s.out_h - 1) * s.stride_h + s.effective_filter_h();
  const int64_t wp = (s.out_w - 1) * s.stride_w + s.effective_filter_w();
  const int64_t image = hp * wp * cg;  // elements
  const int64_t chunk =
      std::clamp<int64_t>(kMaxShiftedDwBytes / std::max<int64_t>(1, image * (index_bytes + 4)), 1, s.batch);
  std::unique_ptr<uint8_t[]> index(new uint8_t[static_cast<size_t>(chunk * image * index_bytes)]);
  std::unique_ptr<float[]> scales(new float[static_cast<size_t>(chunk * image)]);
  std::vector<int64_t> k_offsets(static_cast<size_t>(chunk * out_pixels));
  // Vector v of strip st: patch column j = 16 (4 st + v) = (tap, c0); past
  // kcols, any readable vector (its lanes are never stored).
  const int64_t vectors = ceil_div(kcols, cpu::kStripCols) * (cpu::kStripCols / 16);
  std::vector<int64_t> vector_offsets(static_cast<size_t>(vectors));
  for (int64_t v = 0; v < vectors; ++v) {
    const int64_t j = std::min(16 * v, kcols - 16), tap = j / cg, c0 = j % cg;
    vector_offsets[v] = ((tap / s.filter_w) * s.dilation_h * wp + (tap % s.filter_w) * s.dilation_w) * cg + c0;
  }
  std::vector<float> ct(static_cast<size_t>(og * kcols), 0.0f);
  const int64_t row_values = s.in_w * s.in_c;
  // The padded image's rows and columns [first, second) that hold input values.
  const std::pair<int64_t, int64_t> rows_in{std::min(s.pad_top, hp), std::min(hp, s.pad_top + s.in_h)};
  const std::pair<int64_t, int64_t> cols_in{std::min(s.pad_left, wp), std::min(wp, s.pad_left + s.in_w)};
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t images = std::min(chunk, s.batch - n0);
    cpu::ExponentRange range;
    bool ok = true;
    std::mutex merge;
    parallel(images, image * 2, [&](int64_t i0, int64_t i1) {
      std::vector<uint32_t> row_index(static_cast<size_t>(row_values));
      std::vector<float> row_scale(static_cast<size_t>(row_values));
      cpu::ExponentRange task_range;
      bool good = true;
      for (int64_t i = i0; i < i1 && good; ++i) {
        uint8_t* ib = index.get() + i * image * index_bytes;
        float* sb = scales.get() + i * image;
        // Zeros (index 0, scale +0) where no input value lands: the padding.
        const auto zero = [&](int64_t from, int64_t to) {
          std::fill(ib + from * index_bytes, ib + to * index_bytes, uint8_t{0});
          std::fill(sb + from, sb + to, 0.0f);
        };
        const int64_t row = wp * cg;
        zero(0, rows_in.first * row);
        for (int64_t y = rows_in.first; y < rows_in.second; ++y) {
          zero(y * row, y * row + cols_in.first * cg);
          zero(y * row + cols_in.second * cg, (y + 1) * row);
        }
        zero(rows_in.second * row, hp * row);
        for (int64_t ih = 0; ih < s.in_h && good; ++ih) {
          const int64_t y = ih + s.pad_top;
          if (y >= hp) break;
          good = cpu::encode_right_values_avx512(layout, table, x + ((n0 + i) * s.in_h + ih) * row_values, row_values,
                                                 row_index.data(), row_scale.data(), &task_range);
          for (int64_t iw = 0; iw < s.in_w && iw + s.pad_left < wp; ++iw) {
            const int64_t at = (y * wp + iw + s.pad_left) * cg, from = iw * s.in_c + g * cg;
            std::copy(row_scale.data() + from, row_scale.data() + from + cg, sb + at);
            if (index_bytes == 1)
              for (int64_t c = 0; c < cg; ++c) ib[at + c] = uint8_t(row_index[from + c]);
            else
              std::memcpy(ib + at * 4, row_index.data() + from, sizeof(uint32_t) * cg);
          }
        }
      }
      const std::lock_guard<std::mutex> lock(merge);
      ok = ok && good;
      range.merge(task_range);
    });
    if (!ok) return false;  // dw untouched: the caller takes the patch path
    const int64_t k = images * out_pixels;
    for (int64_t n = 0, kk = 0; n < images; ++n)
      for (int64_t oh = 0; oh < s.out_h; ++oh)
        for (int64_t ow = 0; ow < s.out_w; ++ow, ++kk) k_offsets[kk] = n * image + (oh * s.stride_h * wp + ow * s.stride_w) * cg;
    cpu::ShiftedRight right;
    right.index = index.get();
    right.index_bytes = index_bytes;
    right.scales = scales.get();
    right.k_offsets = k_offsets.data();
    right.vector_offsets = vector_offsets.data();
    right.range = range;
    const MatrixView dyb{dy + n0 * out_pixels * s.out_c + g * og, s.out_c, 1};
    if (!cpu::gemm_cpu_shifted(table, GemmShape{kcols, og, k}, dyb, ct.data(), parallel, right, /*accumulate=*/true))
      return false;
  }
  for (int64_t j = 0; j < kcols; ++j)
    for (int64_t o = 0; o < og; ++o) dw[j * s.out_c + g * og + o] = ct[o * kcols + j];
  return true;
}

// --- filter gradients over inputs packed once (gemm_packed_left.h) ---
// dW (kcols x O) = A . dy, A[(kh, kw, c), (n, oh, ow)] the input value under
// tap (kh, kw) of output pixel (n, oh, ow): each input value sits in up to
// kh x kw rows of A.  Where gemm_cpu runs this shape as is on a blocked
// AVX-512 path (O >= 16 or so: no transposed form), each input value of a
// chunk of images is packed once into channel planes of LeftRefs and A's
// rows are copied from them, an output row's run at a time, instead of
// built as patches and packed value by value through 16 x 16 transposes.
// The rows, K order and products are those of the patch GEMM: the same bits.

// Packed input planes of at most this many bytes per chunk of images.
constexpr int64_t kMaxPackedPlaneBytes = int64_t{8} << 20;
// Output pixels (K) per GEMM: packed B and each task's packed A rows stay small.
constexpr int64_t kPackedLeftK = 4096;

// No value of v is inf, NaN or 2^126 or more in magnitude: never a special
// packed left operand, never one that rounds to infinity.  A plain loop the
// compiler vectorizes.
bool all_below_2_126(const float* v, int64_t count) {
  int32_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, v + i, sizeof(u));
    bad |= int32_t(u & 0x7fffffffu) >= 0x7e800000;
  }
  return bad == 0;
}

// Adds group g's filter gradient to dw through packed input planes; false,
// having done nothing, where gemm_cpu would not run it on a blocked path.
// The caller has checked that x and dy pass all_below_2_126.
bool packed_left_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, int64_t g,
                             float* dw, const ParallelFor& parallel) {
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  const int64_t kcols = s.filter_h * s.filter_w * cg, out_pixels = s.out_h * s.out_w;
  const int64_t gemm_rows = std::max<int64_t>(1, kPackedLeftK / std::max<int64_t>(1, s.out_w));
  cpu::RightLayout layout;
  if (!cpu::packed_left_layout(table, GemmShape{kcols, og, std::min(gemm_rows * s.out_w, s.batch * out_pixels)},
                               &layout))
    return false;
  const int64_t image = s.in_h * s.in_w;
  const int64_t chunk = std::clamp<int64_t>(kMaxPackedPlaneBytes / std::max<int64_t>(1, image * cg * 8), 1,
                                            std::max<int64_t>(1, s.batch));
  std::unique_ptr<cpu::LeftRef[]> planes(new cpu::LeftRef[static_cast<size_t>(chunk * image * cg)]);
  const std::vector<uint8_t> no_infinite_b(static_cast<size_t>(chunk * image), 0);
  // A zero operand (padding) in this layout.
  const float zero = 0.0f;
  cpu::LeftRef zero_ref;
  uint8_t zero_special;
  cpu::ExponentRange zero_range;
  cpu::pack_a_avx512(layout, table, MatrixView{&zero, 1, 1}, 1, 0, 1, 0, 1, no_infinite_b.data(), &zero_ref,
                     &zero_special, &zero_range);

  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t images = std::min(chunk, s.batch - n0), pixels = images * image;
    // Plane c: channel g * cg + c of the chunk's pixels (A^T of x, packed).
    cpu::LeftRowPacker rows;
    std::mutex merge;
    const MatrixView xt{x + n0 * image * s.in_c + g * cg, 1, s.in_c};
    parallel(pixels, cg * 4, [&](int64_t p0, int64_t p1) {
      cpu::ExponentRange range;
      std::vector<uint8_t> special(static_cast<size_t>(cg));
      cpu::pack_a_avx512(layout, table, xt, pixels, 0, cg, p0, p1, no_infinite_b.data(), planes.get(), special.data(),
                         &range);
      const std::lock_guard<std::mutex> lock(merge);
      rows.range.merge(range);
    });
    const int64_t out_rows = images * s.out_h;  // (image, oh) of the chunk
    for (int64_t q0 = 0; q0 < out_rows; q0 += gemm_rows) {
      const int64_t q1 = std::min(out_rows, q0 + gemm_rows);
      // Row i = (kh, kw, c) over output rows [q0, q1): per output row, the
      // input row under tap kh, read at columns ow * stride + kw * dilation - pad.
      rows.pack = [&](int64_t i0, int64_t i1, cpu::LeftRef* out) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t c = i % cg, tap = i / cg, kh = tap / s.filter_w, kw = tap % s.filter_w;
          const int64_t col0 = kw * s.dilation_w - s.pad_left, sw = s.stride_w;
          const int64_t lo = std::min(s.out_w, col0 >= 0 ? 0 : ceil_div(-col0, sw));
          const int64_t hi = std::max(lo, std::min(s.out_w, s.in_w - 1 - col0 < 0 ? 0 : (s.in_w - 1 - col0) / sw + 1));
          const cpu::LeftRef* plane = planes.get() + c * pixels;
          for (int64_t q = q0; q < q1; ++q, out += s.out_w) {
            const int64_t n = q / s.out_h, ih = (q % s.out_h) * s.stride_h + kh * s.dilation_h - s.pad_top;
            if (ih < 0 || ih >= s.in_h) {
              std::fill(out, out + s.out_w, zero_ref);
              continue;
            }
            std::fill(out, out + lo, zero_ref);
            const cpu::LeftRef* line = plane + (n * s.in_h + ih) * s.in_w + lo * sw + col0;
            if (sw == 1)
              std::memcpy(out + lo, line, sizeof(cpu::LeftRef) * (hi - lo));
            else
              for (int64_t u = lo; u < hi; ++u) out[u] = line[(u - lo) * sw];
            std::fill(out + hi, out + s.out_w, zero_ref);
          }
        }
      };
      const MatrixView dyb{dy + ((n0 * s.out_h + q0) * s.out_w) * s.out_c + g * og, s.out_c, 1};
      cpu::gemm_cpu_packed_left(table, GemmShape{kcols, og, (q1 - q0) * s.out_w}, rows, dyb, dw + g * og, s.out_c,
                                parallel, /*accumulate=*/true);
    }
  }
  return true;
}

// The forward patch matrix of group g: runs of Cg channels of x.
GatheredLeft forward_left(const Conv2DShape& s, const float* x, int64_t g) {
  const int64_t cg = s.in_c_per_group();
  return GatheredLeft{MatrixView{x + g * cg, s.in_c, 1}, s.batch * s.in_h * s.in_w, cg, s.filter_h * s.filter_w,
                      ForwardRuns{s}};
}

}  // namespace

const char* conv2d_finalize(Conv2DShape& s) {
  if (s.batch < 0 || s.in_h < 0 || s.in_w < 0 || s.in_c < 0 || s.out_c < 0) return "negative dimension";
  if (s.filter_h < 1 || s.filter_w < 1) return "filter height and width must be >= 1";
  if (s.groups < 1) return "groups must be >= 1";
  if (s.in_c % s.groups != 0) return "input channels must be divisible by groups";
  if (s.out_c % s.groups != 0) return "output channels must be divisible by groups";
  if (s.stride_h < 1 || s.stride_w < 1) return "strides must be >= 1";
  if (s.dilation_h < 1 || s.dilation_w < 1) return "dilations must be >= 1";
  if (s.pad_top < 0 || s.pad_bottom < 0 || s.pad_left < 0 || s.pad_right < 0) return "paddings must be >= 0";
  const int64_t span_h = s.in_h + s.pad_top + s.pad_bottom - s.effective_filter_h();
  const int64_t span_w = s.in_w + s.pad_left + s.pad_right - s.effective_filter_w();
  if (span_h < 0 || span_w < 0) return "the (dilated) filter is larger than the padded input";
  s.out_h = span_h / s.stride_h + 1;
  s.out_w = span_w / s.stride_w + 1;
  return nullptr;
}

void conv2d_forward_cpu(const Table& given, const Conv2DShape& s, const float* x, const float* w, float* y,
                        const ParallelFor& parallel) {
  if (is_depthwise(s)) return cpu::depthwise_forward(given, s, x, w, y, parallel);
  const Table table = with_entry_bytes(given);
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  const int64_t kcols = s.filter_h * s.filter_w * cg, rows = s.batch * s.out_h * s.out_w;
  if (kcols == 0) {
    std::fill(y, y + rows * s.out_c, 0.0f);
    return;
  }
  for (int64_t g = 0; g < s.groups; ++g) {
    // B(k, o) = w[k * O + g * og + o], k = (kh, kw, c).
    const MatrixView wb{w + g * og, s.out_c, 1};
    cpu::RightLayout layout;
    if (cpu::shifted_layout(table, GemmShape{rows, og, kcols}, &layout) &&
        shifted_forward(table, layout, s, x, wb, g, y, parallel))
      continue;
    if (gemm_cpu_runs_transposed(table, GemmShape{rows, og, kcols}) && forward_runs_are_short(s)) {
      const ChannelPlanes planes(x, s.batch * s.in_h * s.in_w, s.in_c, g * cg, cg, parallel);
      lines_gemm(table, forward_lines(s, planes.data), kcols, rows, og, wb, y + g * og, s.out_c, parallel);
    } else {
      patch_gemm(table, forward_left(s, x, g), rows, og, wb, y + g * og, s.out_c, parallel);
    }
  }
}

void conv2d_input_grad_cpu(const Table& given, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                           const ParallelFor& parallel) {
  if (is_depthwise(s)) return cpu::depthwise_input_grad(given, s, dy, w, dx, parallel);
  const Table table = with_entry_bytes(given);
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  const int64_t taps = s.filter_h * s.filter_w;
  const int64_t kcols = taps * og, rows = s.batch * s.in_h * s.in_w;
  if (kcols == 0) {
    std::fill(dx, dx + rows * s.in_c, 0.0f);
    return;
  }
  std::vector<float> wt(static_cast<size_t>(kcols * cg));
  for (int64_t g = 0; g < s.groups; ++g) {
    // B((kh, kw, o), c) = w[kh, kw, c, g * og + o].
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t o = 0; o < og; ++o)
        for (int64_t c = 0; c < cg; ++c) wt[(t * og + o) * cg + c] = w[(t * cg + c) * s.out_c + g * og + o];
    const MatrixView wb{wt.data(), cg, 1};
    cpu::RightLayout layout;
    if (cpu::shifted_layout(table, GemmShape{rows, cg, kcols}, &layout) &&
        shifted_input_grad(table, layout, s, dy, wb, g, dx, parallel))
      continue;
    // An input-gradient patch row's runs are og values (its taps walk dy backwards).
    if (gemm_cpu_runs_transposed(table, GemmShape{rows, cg, kcols}) && og < kShortRun) {
      const ChannelPlanes planes(dy, s.batch * s.out_h * s.out_w, s.out_c, g * og, og, parallel);
      lines_gemm(table, input_grad_lines(s, planes.data), kcols, rows, cg, wb, dx + g * cg, s.in_c, parallel);
    } else {
      const GatheredLeft left{MatrixView{dy + g * og, s.out_c, 1}, s.batch * s.out_h * s.out_w, og, taps,
                              InputGradRuns{s}};
      patch_gemm(table, left, rows, cg, wb, dx + g * cg, s.in_c, parallel);
    }
  }
}

void conv2d_filter_grad_cpu(const Table& given, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                            const ParallelFor& parallel) {
  if (is_depthwise(s)) return cpu::depthwise_filter_grad(given, s, x, dy, dw, parallel);
  const Table table = with_entry_bytes(given);
  const int64_t cg = s.in_c_per_group(), og = s.out_c_per_group();
  const int64_t kcols = s.filter_h * s.filter_w * cg, rows = s.batch * s.out_h * s.out_w;
  std::fill(dw, dw + kcols * s.out_c, 0.0f);
  if (kcols == 0 || rows == 0) return;
  const bool short_runs = forward_runs_are_short(s);
  const int64_t chunk = short_runs ? line_chunk_rows(kcols) : rows_per_chunk(kcols);
  // The in-place path declines huge, infinite and NaN operands itself (its
  // encoding and gemm_cpu_shifted check them); the packed one needs them
  // checked up front: once, and only when it is tried.
  int moderate = -1;
  const auto operands_moderate = [&] {
    if (moderate < 0)
      moderate = all_below_2_126(x, s.batch * s.in_h * s.in_w * s.in_c) && all_below_2_126(dy, rows * s.out_c);
    return moderate == 1;
  };
  std::vector<float> patches;
  for (int64_t g = 0; g < s.groups; ++g) {
    if (shifted_filter_grad(table, s, x, dy, g, dw, parallel) ||
        (operands_moderate() && packed_left_filter_grad(table, s, x, dy, g, dw, parallel)))
      continue;
    patches.resize(static_cast<size_t>(std::min(rows, chunk) * kcols));
    std::optional<ChannelPlanes> planes;
    if (short_runs) planes.emplace(x, s.batch * s.in_h * s.in_w, s.in_c, g * cg, cg, parallel);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t r1 = std::min(rows, r0 + chunk);
      // A((kh, kw, c), r): the patch lines (K-major), or the transposed row-major patches.
      MatrixView pa{patches.data(), r1 - r0, 1};
      if (short_runs) {
        build_lines(forward_lines(s, planes->data), kcols, r0, r1, patches.data(), parallel);
      } else {
        build_patches(forward_left(s, x, g), r0, r1, patches.data(), parallel);
        pa = MatrixView{patches.data(), 1, kcols};
      }
      const MatrixView dyb{dy + r0 * s.out_c + g * og, s.out_c, 1};
      gemm_cpu(table, GemmShape{kcols, og, r1 - r0}, pa, dyb, dw + g * og, s.out_c, parallel,
               /*accumulate=*/true);
    }
  }
}

}  // namespace amsim
