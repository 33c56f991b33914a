// _core functions on the GPU (device="cuda" in approxtrain/core.py): the same
// Python signatures as bind_cpu.cpp with "_cuda" appended.  Each call copies
// its numpy inputs and the table to the device, launches the kernels of
// cuda/launchers.h on the legacy default stream, and copies the result back.
// The *_cuda_bench variants copy once, then time `repeats` launches with
// CUDA events and return the median kernel time in milliseconds.
//
// The CUDA runtime is linked statically and reaches the driver at run time:
// without a driver or a GPU, cuda_available() is False and every *_cuda
// function raises RuntimeError; nothing aborts the process.
#include <cuda_runtime_api.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "arrays.h"
#include "bindings.h"
#include "cuda/launchers.h"

namespace approxtrain {

namespace {

[[noreturn]] void throw_cuda(cudaError_t err, const std::string& what) {
  cudaGetLastError();  // clears the error unless the context is lost for good
  throw std::runtime_error("CUDA error during " + what + ": " + cudaGetErrorName(err) + " (" +
                           cudaGetErrorString(err) + ")");
}

void check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) throw_cuda(err, what);
}

// True when a device is present and a context can be made on it; decided once.
bool device_usable() {
  static std::once_flag once;
  static bool usable = false;
  std::call_once(once, [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
      cudaGetLastError();
      return;
    }
    if (cudaFree(nullptr) != cudaSuccess) {  // creates the primary context
      cudaGetLastError();
      return;
    }
    usable = true;
  });
  return usable;
}

void require_device() {
  if (!device_usable())
    throw std::runtime_error("no usable CUDA device (no GPU, no driver, or the driver is older than this build)");
}

// Device memory owned for the duration of one call.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_) check(cudaMalloc(&ptr_, bytes_), "cudaMalloc of " + std::to_string(bytes_) + " bytes");
  }
  DeviceBuffer(const void* host, size_t bytes) : DeviceBuffer(bytes) {
    if (bytes_) check(cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice), "the copy to the GPU");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  void download(void* host) const {
    if (bytes_) check(cudaMemcpy(host, ptr_, bytes_, cudaMemcpyDeviceToHost), "the copy from the GPU");
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using Buffer = std::unique_ptr<DeviceBuffer>;

// An input's host bytes, taken while the GIL is held (numpy's accessors may
// touch reference counts); the copies happen without it.
struct HostBytes {
  const void* data;
  size_t bytes;
};

HostBytes host_bytes(const py::array& a) { return {a.data(), static_cast<size_t>(a.nbytes())}; }

// One op ready on the device: inputs and table uploaded, output allocated.
struct DeviceOp {
  std::string name;
  std::vector<Buffer> inputs;
  Buffer output;
  amsim::Table table;  // entries on the device
  std::function<cudaError_t(cudaStream_t)> launch;
};

// Uploads the table (checked by table_view) and the inputs.  Call without the GIL.
DeviceOp make_op(const char* name, const amsim::Table& host_table, const std::vector<HostBytes>& inputs,
                 size_t output_floats) {
  require_device();
  DeviceOp op;
  op.name = name;
  const size_t table_bytes = static_cast<size_t>(host_table.size()) * sizeof(uint16_t);
  op.inputs.push_back(std::make_unique<DeviceBuffer>(host_table.entries, table_bytes));
  op.table = amsim::Table{op.inputs.back()->as<uint16_t>(), host_table.mantissa_bits, host_table.rounding};
  for (const HostBytes& in : inputs) op.inputs.push_back(std::make_unique<DeviceBuffer>(in.data, in.bytes));
  op.output = std::make_unique<DeviceBuffer>(output_floats * sizeof(float));
  return op;
}

const float* device_input(const DeviceOp& op, size_t i) { return op.inputs[i + 1]->as<float>(); }

// Launches, waits, and copies the result into `out`.  Call without the GIL.
void run(const DeviceOp& op, float* out) {
  check(op.launch(nullptr), op.name + " (launch)");
  check(cudaStreamSynchronize(nullptr), op.name + " (kernel)");
  op.output->download(out);
}

class Event {
 public:
  Event() { check(cudaEventCreate(&event_), "cudaEventCreate"); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Median device time of `repeats` launches (after one warm-up), in ms.  Call without the GIL.
double bench(const DeviceOp& op, int repeats) {
  check(op.launch(nullptr), op.name + " (launch)");
  check(cudaStreamSynchronize(nullptr), op.name + " (kernel)");
  Event start, stop;
  std::vector<float> times;
  for (int r = 0; r < repeats; ++r) {
    check(cudaEventRecord(start.get(), nullptr), "cudaEventRecord");
    check(op.launch(nullptr), op.name + " (launch)");
    check(cudaEventRecord(stop.get(), nullptr), "cudaEventRecord");
    check(cudaEventSynchronize(stop.get()), op.name + " (kernel)");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start.get(), stop.get()), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

void require_repeats(int repeats) {
  if (repeats < 1) throw py::value_error("repeats must be >= 1, got " + std::to_string(repeats));
}

// ---- the ops: checks with the GIL, device work without ----

struct MultiplyCall {
  amsim::Table table;
  FloatArray out;
  std::vector<HostBytes> inputs;
  int64_t n;
  DeviceOp prepare() const {
    DeviceOp op = make_op("multiply_cuda", table, inputs, static_cast<size_t>(n));
    op.launch = [t = op.table, pa = device_input(op, 0), pb = device_input(op, 1), pc = op.output->as<float>(),
                 n = n](cudaStream_t s) { return amsim::cuda::multiply(t, pa, pb, pc, n, s); };
    return op;
  }
};

MultiplyCall multiply_call(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                           const std::string& rounding) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  require_same_size(a, b, "multiply");
  return {t, FloatArray(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim())), {host_bytes(a), host_bytes(b)},
          static_cast<int64_t>(a.size())};
}

FloatArray multiply_cuda(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                         const std::string& rounding) {
  MultiplyCall call = multiply_call(a, b, lut, mbits, rounding);
  float* out = call.out.mutable_data();
  {
    py::gil_scoped_release nogil;
    run(call.prepare(), out);
  }
  return call.out;
}

double multiply_cuda_bench(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                           const std::string& rounding, int repeats) {
  require_repeats(repeats);
  const MultiplyCall call = multiply_call(a, b, lut, mbits, rounding);
  py::gil_scoped_release nogil;
  return bench(call.prepare(), repeats);
}

DeviceOp prepare_matmul(const amsim::BatchPlan& plan, const amsim::Table& table,
                        const std::vector<HostBytes>& inputs) {
  const amsim::GemmShape& s = plan.shape;
  DeviceOp op = make_op("matmul_cuda", table, inputs, static_cast<size_t>(plan.batch * s.m * s.n));
  op.launch = [t = op.table, plan, pa = device_input(op, 0), pb = device_input(op, 1),
               pc = op.output->as<float>()](cudaStream_t stream) {
    return amsim::cuda::batched_gemm(t, plan, pa, pb, pc, stream);
  };
  return op;
}

FloatArray matmul_cuda(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                       const std::string& rounding, bool transpose_a, bool transpose_b) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  const amsim::BatchPlan plan = matmul_plan(a, b, transpose_a, transpose_b);
  FloatArray c = empty_float(plan.output_dims());
  float* out = c.mutable_data();
  const std::vector<HostBytes> inputs{host_bytes(a), host_bytes(b)};
  {
    py::gil_scoped_release nogil;
    run(prepare_matmul(plan, t, inputs), out);
  }
  return c;
}

double matmul_cuda_bench(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                         const std::string& rounding, bool transpose_a, bool transpose_b, int repeats) {
  require_repeats(repeats);
  const amsim::Table t = table_view(lut, mbits, rounding);
  const amsim::BatchPlan plan = matmul_plan(a, b, transpose_a, transpose_b);
  const std::vector<HostBytes> inputs{host_bytes(a), host_bytes(b)};
  py::gil_scoped_release nogil;
  return bench(prepare_matmul(plan, t, inputs), repeats);
}

// The three conv ops share everything but the launcher and which shape is the output's.
enum class ConvOp { kForward, kInputGrad, kFilterGrad };

struct ConvCall {
  ConvOp kind;
  amsim::Table table;
  amsim::Conv2DShape shape;
  std::vector<int64_t> out_shape;

  DeviceOp prepare(const std::vector<HostBytes>& inputs) const {
    int64_t out_floats = 1;
    for (int64_t d : out_shape) out_floats *= d;
    static const char* names[] = {"conv2d_cuda", "conv2d_input_grad_cuda", "conv2d_filter_grad_cuda"};
    DeviceOp op = make_op(names[static_cast<int>(kind)], table, inputs, static_cast<size_t>(out_floats));
    op.launch = [t = op.table, kind = kind, s = shape, p0 = device_input(op, 0), p1 = device_input(op, 1),
                 out = op.output->as<float>()](cudaStream_t stream) {
      switch (kind) {
        case ConvOp::kForward: return amsim::cuda::conv2d_forward(t, s, p0, p1, out, stream);
        case ConvOp::kInputGrad: return amsim::cuda::conv2d_input_grad(t, s, p0, p1, out, stream);
        default: return amsim::cuda::conv2d_filter_grad(t, s, p0, p1, out, stream);
      }
    };
    return op;
  }
};

void require_cuda_conv_shape(const amsim::Conv2DShape& s) {
  if (const char* why = amsim::cuda::conv2d_unsupported(s))
    throw py::value_error(std::string("conv2d on CUDA: ") + why);
}

std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// Forward: in0 = x, in1 = w.  Input grad: in0 = dy, in1 = w.  Filter grad: in0 = x, in1 = dy.
ConvCall conv_call(ConvOp kind, const std::vector<int64_t>& input_shape, const std::vector<int64_t>& filter_shape,
                   const FloatArray* dy, const TableArray& lut, int mbits, const std::string& rounding,
                   const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                   const std::vector<int64_t>& paddings, int64_t groups) {
  static const char* ops[] = {"conv2d", "conv2d_input_grad", "conv2d_filter_grad"};
  const amsim::Table t = table_view(lut, mbits, rounding);
  const auto s = conv_shape(input_shape, filter_shape, strides, dilations, paddings, groups);
  if (dy) require_conv_output_shape(*dy, s, ops[static_cast<int>(kind)]);
  require_cuda_conv_shape(s);
  std::vector<int64_t> out = kind == ConvOp::kForward ? std::vector<int64_t>{s.batch, s.out_h, s.out_w, s.out_c}
                             : kind == ConvOp::kInputGrad ? input_shape
                                                          : filter_shape;
  return {kind, t, s, out};
}

FloatArray run_conv(const ConvCall& call, const FloatArray& in0, const FloatArray& in1) {
  FloatArray out = empty_float(call.out_shape);
  float* host = out.mutable_data();
  const std::vector<HostBytes> inputs{host_bytes(in0), host_bytes(in1)};
  {
    py::gil_scoped_release nogil;
    run(call.prepare(inputs), host);
  }
  return out;
}

double bench_conv(const ConvCall& call, const FloatArray& in0, const FloatArray& in1, int repeats) {
  require_repeats(repeats);
  const std::vector<HostBytes> inputs{host_bytes(in0), host_bytes(in1)};
  py::gil_scoped_release nogil;
  return bench(call.prepare(inputs), repeats);
}

}  // namespace

void bind_cuda(py::module_& m) {
  using namespace pybind11::literals;
  m.def("cuda_available", &device_usable, "Whether _core was built with CUDA and a GPU is usable.");
  m.def(
      "cuda_device",
      []() -> py::object {
        if (!device_usable()) return py::none();
        int device = 0;
        cudaDeviceProp prop;
        check(cudaGetDevice(&device), "cudaGetDevice");
        check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        int runtime = 0, driver = 0;
        cudaRuntimeGetVersion(&runtime);
        cudaDriverGetVersion(&driver);
        py::dict d;
        d["name"] = std::string(prop.name);
        d["compute_capability"] = std::to_string(prop.major) + "." + std::to_string(prop.minor);
        d["sm_count"] = prop.multiProcessorCount;
        d["memory_bytes"] = static_cast<int64_t>(prop.totalGlobalMem);
        d["runtime_version"] = runtime;
        d["driver_version"] = driver;
        return d;
      },
      "The current CUDA device (name, compute capability, SMs, ...), or None.");
  m.def(
      "gemm_cuda_variant",
      [](int mbits, int64_t m_, int64_t n, int64_t k, int64_t batch) {
        require_device();
        return std::string(amsim::cuda::gemm_variant(mbits, amsim::GemmShape{m_, n, k}, batch));
      },
      "mantissa_bits"_a, "m"_a, "n"_a, "k"_a, "batch"_a = 1, "Which GEMM kernel variant matmul_cuda runs.");

  m.def("multiply_cuda", &multiply_cuda, "a"_a.noconvert(), "b"_a.noconvert(), "lut"_a.noconvert(),
        "mantissa_bits"_a, "rounding"_a, "multiply on the GPU.");
  m.def("multiply_cuda_bench", &multiply_cuda_bench, "a"_a.noconvert(), "b"_a.noconvert(), "lut"_a.noconvert(),
        "mantissa_bits"_a, "rounding"_a, "repeats"_a = 20, "Median kernel time (ms) of multiply_cuda.");
  m.def("matmul_cuda", &matmul_cuda, "a"_a.noconvert(), "b"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a,
        "rounding"_a, "transpose_a"_a = false, "transpose_b"_a = false, "matmul on the GPU.");
  m.def("matmul_cuda_bench", &matmul_cuda_bench, "a"_a.noconvert(), "b"_a.noconvert(), "lut"_a.noconvert(),
        "mantissa_bits"_a, "rounding"_a, "transpose_a"_a = false, "transpose_b"_a = false, "repeats"_a = 20,
        "Median kernel time (ms) of matmul_cuda, inputs copied once.");

  m.def(
      "conv2d_cuda",
      [](const FloatArray& x, const FloatArray& w, const TableArray& lut, int mbits, const std::string& rounding,
         const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
         const std::vector<int64_t>& paddings, int64_t groups) {
        return run_conv(conv_call(ConvOp::kForward, dims_of(x), dims_of(w), nullptr, lut, mbits, rounding, strides,
                                  dilations, paddings, groups),
                        x, w);
      },
      "x"_a.noconvert(), "w"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a, "strides"_a,
      "dilations"_a, "paddings"_a, "groups"_a = 1, "conv2d on the GPU.");
  m.def(
      "conv2d_cuda_bench",
      [](const FloatArray& x, const FloatArray& w, const TableArray& lut, int mbits, const std::string& rounding,
         const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
         const std::vector<int64_t>& paddings, int64_t groups, int repeats) {
        return bench_conv(conv_call(ConvOp::kForward, dims_of(x), dims_of(w), nullptr, lut, mbits, rounding, strides,
                                    dilations, paddings, groups),
                          x, w, repeats);
      },
      "x"_a.noconvert(), "w"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a, "strides"_a,
      "dilations"_a, "paddings"_a, "groups"_a = 1, "repeats"_a = 20, "Median kernel time (ms) of conv2d_cuda.");
  m.def(
      "conv2d_input_grad_cuda",
      [](const std::vector<int64_t>& input_shape, const FloatArray& w, const FloatArray& dy, const TableArray& lut,
         int mbits, const std::string& rounding, const std::vector<int64_t>& strides,
         const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups) {
        return run_conv(conv_call(ConvOp::kInputGrad, input_shape, dims_of(w), &dy, lut, mbits, rounding, strides,
                                  dilations, paddings, groups),
                        dy, w);
      },
      "input_shape"_a, "w"_a.noconvert(), "dy"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a,
      "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1, "conv2d_input_grad on the GPU.");
  m.def(
      "conv2d_input_grad_cuda_bench",
      [](const std::vector<int64_t>& input_shape, const FloatArray& w, const FloatArray& dy, const TableArray& lut,
         int mbits, const std::string& rounding, const std::vector<int64_t>& strides,
         const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups, int repeats) {
        return bench_conv(conv_call(ConvOp::kInputGrad, input_shape, dims_of(w), &dy, lut, mbits, rounding, strides,
                                    dilations, paddings, groups),
                          dy, w, repeats);
      },
      "input_shape"_a, "w"_a.noconvert(), "dy"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a,
      "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1, "repeats"_a = 20,
      "Median kernel time (ms) of conv2d_input_grad_cuda.");
  m.def(
      "conv2d_filter_grad_cuda",
      [](const FloatArray& x, const std::vector<int64_t>& filter_shape, const FloatArray& dy, const TableArray& lut,
         int mbits, const std::string& rounding, const std::vector<int64_t>& strides,
         const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups) {
        return run_conv(conv_call(ConvOp::kFilterGrad, dims_of(x), filter_shape, &dy, lut, mbits, rounding, strides,
                                  dilations, paddings, groups),
                        x, dy);
      },
      "x"_a.noconvert(), "filter_shape"_a, "dy"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a,
      "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1, "conv2d_filter_grad on the GPU.");
  m.def(
      "conv2d_filter_grad_cuda_bench",
      [](const FloatArray& x, const std::vector<int64_t>& filter_shape, const FloatArray& dy, const TableArray& lut,
         int mbits, const std::string& rounding, const std::vector<int64_t>& strides,
         const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups, int repeats) {
        return bench_conv(conv_call(ConvOp::kFilterGrad, dims_of(x), filter_shape, &dy, lut, mbits, rounding, strides,
                                    dilations, paddings, groups),
                          x, dy, repeats);
      },
      "x"_a.noconvert(), "filter_shape"_a, "dy"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a,
      "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1, "repeats"_a = 20,
      "Median kernel time (ms) of conv2d_filter_grad_cuda.");
}

}  // namespace approxtrain
