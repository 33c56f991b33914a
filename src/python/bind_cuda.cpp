// _core functions on the GPU (device="cuda" in approxtrain/core.py): the same
// Python signatures as bind_cpu.cpp with "_cuda" appended.  Each call copies
// its numpy inputs and the table to the device, launches the kernels of
// cuda/launchers.h on the legacy default stream, and copies the result back.
// The *_cuda_bench variants (same arguments plus `repeats`, defined by the
// same def_run_and_bench) copy once, then time `repeats` launches with CUDA
// events and return the median kernel time in milliseconds.
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
  throw std::runtime_error("CUDA error during " + what + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                           ")");
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
  T* as() const {
    return static_cast<T*>(ptr_);
  }
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

// One op with its arguments checked (with the GIL): the table, the inputs'
// host bytes, the output's shape, and how to launch it on device pointers.
struct CudaCall {
  std::string name;
  amsim::Table table;  // host entries, checked by table_view
  HostBytes in0, in1;
  std::vector<int64_t> out_shape;
  std::function<cudaError_t(const amsim::Table& table, const float* in0, const float* in1, float* out,
                            cudaStream_t stream)>
      launch;
};

// One call ready on the device: table and inputs uploaded, output allocated.
struct DeviceOp {
  std::string name;
  std::vector<Buffer> buffers;  // table, in0, in1
  Buffer output;
  std::function<cudaError_t(cudaStream_t)> launch;
};

// Uploads the table and the inputs.  Call without the GIL.
DeviceOp prepare(const CudaCall& call) {
  require_device();
  DeviceOp op;
  op.name = call.name;
  const size_t table_bytes = static_cast<size_t>(call.table.size()) * sizeof(uint16_t);
  op.buffers.push_back(std::make_unique<DeviceBuffer>(call.table.entries, table_bytes));
  for (const HostBytes& in : {call.in0, call.in1})
    op.buffers.push_back(std::make_unique<DeviceBuffer>(in.data, in.bytes));
  int64_t out_floats = 1;
  for (int64_t d : call.out_shape) out_floats *= d;
  op.output = std::make_unique<DeviceBuffer>(static_cast<size_t>(out_floats) * sizeof(float));
  const amsim::Table table{op.buffers[0]->as<uint16_t>(), call.table.mantissa_bits, call.table.rounding};
  op.launch = [launch = call.launch, table, in0 = op.buffers[1]->as<float>(), in1 = op.buffers[2]->as<float>(),
               out = op.output->as<float>()](cudaStream_t stream) { return launch(table, in0, in1, out, stream); };
  return op;
}

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

FloatArray run_call(const CudaCall& call) {
  FloatArray out = empty_float(call.out_shape);
  float* host = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    run(prepare(call), host);
  }
  return out;
}

double bench_call(const CudaCall& call, int repeats) {
  if (repeats < 1) throw py::value_error("repeats must be >= 1, got " + std::to_string(repeats));
  py::gil_scoped_release nogil;
  return bench(prepare(call), repeats);
}

// Defines `name` (the op once, its result as a numpy array) and `name`_bench
// (the same arguments and `repeats`: the median kernel time in ms, inputs
// copied once) from the one function that checks the arguments.
template <class... Args, class... Extra>
void def_run_and_bench(py::module_& m, const std::string& name, CudaCall (*make_call)(Args...), const char* doc,
                       const Extra&... extra) {
  m.def(
      name.c_str(), [make_call](Args... args) { return run_call(make_call(args...)); }, extra..., doc);
  m.def((name + "_bench").c_str(),
        [make_call](Args... args, int repeats) { return bench_call(make_call(args...), repeats); }, extra...,
        py::arg("repeats") = 20, ("Median kernel time (ms) of " + name + ", inputs copied once.").c_str());
}

// ---- the ops: each checks its arguments and says how to launch ----

std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

CudaCall multiply_call(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                       const std::string& rounding) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  require_same_size(a, b, "multiply");
  const int64_t n = a.size();
  return {"multiply_cuda",
          t,
          host_bytes(a),
          host_bytes(b),
          dims_of(a),
          [n](const amsim::Table& table, const float* pa, const float* pb, float* pc, cudaStream_t s) {
            return amsim::cuda::multiply(table, pa, pb, pc, n, s);
          }};
}

CudaCall matmul_call(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                     const std::string& rounding, bool transpose_a, bool transpose_b) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  const amsim::BatchPlan plan = matmul_plan(a, b, transpose_a, transpose_b);
  return {"matmul_cuda",
          t,
          host_bytes(a),
          host_bytes(b),
          plan.output_dims(),
          [plan](const amsim::Table& table, const float* pa, const float* pb, float* pc, cudaStream_t s) {
            return amsim::cuda::batched_gemm(table, plan, pa, pb, pc, s);
          }};
}

// The three conv ops share everything but the launcher and which shape is the output's.
enum class ConvOp { kForward, kInputGrad, kFilterGrad };

// Forward: in0 = x, in1 = w.  Input grad: in0 = dy, in1 = w.  Filter grad: in0 = x, in1 = dy.
CudaCall conv_call(ConvOp kind, const std::vector<int64_t>& input_shape, const std::vector<int64_t>& filter_shape,
                   const FloatArray& in0, const FloatArray& in1, const TableArray& lut, int mbits,
                   const std::string& rounding, const std::vector<int64_t>& strides,
                   const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups) {
  static const char* ops[] = {"conv2d", "conv2d_input_grad", "conv2d_filter_grad"};
  const char* op = ops[static_cast<int>(kind)];
  const amsim::Table t = table_view(lut, mbits, rounding);
  const amsim::Conv2DShape s = conv_shape(input_shape, filter_shape, strides, dilations, paddings, groups);
  if (kind == ConvOp::kInputGrad) require_conv_output_shape(in0, s, op);
  if (kind == ConvOp::kFilterGrad) require_conv_output_shape(in1, s, op);
  if (const char* why = amsim::cuda::conv2d_unsupported(s))
    throw py::value_error(std::string("conv2d on CUDA: ") + why);
  std::vector<int64_t> out = kind == ConvOp::kForward     ? std::vector<int64_t>{s.batch, s.out_h, s.out_w, s.out_c}
                             : kind == ConvOp::kInputGrad ? input_shape
                                                          : filter_shape;
  return {std::string(op) + "_cuda",
          t,
          host_bytes(in0),
          host_bytes(in1),
          out,
          [kind, s](const amsim::Table& table, const float* p0, const float* p1, float* po, cudaStream_t stream) {
            switch (kind) {
              case ConvOp::kForward:
                return amsim::cuda::conv2d_forward(table, s, p0, p1, po, stream);
              case ConvOp::kInputGrad:
                return amsim::cuda::conv2d_input_grad(table, s, p0, p1, po, stream);
              default:
                return amsim::cuda::conv2d_filter_grad(table, s, p0, p1, po, stream);
            }
          }};
}

CudaCall conv2d_call(const FloatArray& x, const FloatArray& w, const TableArray& lut, int mbits,
                     const std::string& rounding, const std::vector<int64_t>& strides,
                     const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups) {
  return conv_call(ConvOp::kForward, dims_of(x), dims_of(w), x, w, lut, mbits, rounding, strides, dilations, paddings,
                   groups);
}

CudaCall conv2d_input_grad_call(const std::vector<int64_t>& input_shape, const FloatArray& w, const FloatArray& dy,
                                const TableArray& lut, int mbits, const std::string& rounding,
                                const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                                const std::vector<int64_t>& paddings, int64_t groups) {
  return conv_call(ConvOp::kInputGrad, input_shape, dims_of(w), dy, w, lut, mbits, rounding, strides, dilations,
                   paddings, groups);
}

CudaCall conv2d_filter_grad_call(const FloatArray& x, const std::vector<int64_t>& filter_shape, const FloatArray& dy,
                                 const TableArray& lut, int mbits, const std::string& rounding,
                                 const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                                 const std::vector<int64_t>& paddings, int64_t groups) {
  return conv_call(ConvOp::kFilterGrad, dims_of(x), filter_shape, x, dy, lut, mbits, rounding, strides, dilations,
                   paddings, groups);
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

  // noconvert, as in bind_cpu.cpp: a float64 array is an error, never a silent copy.
  def_run_and_bench(m, "multiply_cuda", &multiply_call, "multiply on the GPU.", "a"_a.noconvert(), "b"_a.noconvert(),
                    "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a);
  def_run_and_bench(m, "matmul_cuda", &matmul_call, "matmul on the GPU.", "a"_a.noconvert(), "b"_a.noconvert(),
                    "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a, "transpose_a"_a = false,
                    "transpose_b"_a = false);
  def_run_and_bench(m, "conv2d_cuda", &conv2d_call, "conv2d on the GPU.", "x"_a.noconvert(), "w"_a.noconvert(),
                    "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a, "strides"_a, "dilations"_a, "paddings"_a,
                    "groups"_a = 1);
  def_run_and_bench(m, "conv2d_input_grad_cuda", &conv2d_input_grad_call, "conv2d_input_grad on the GPU.",
                    "input_shape"_a, "w"_a.noconvert(), "dy"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a,
                    "rounding"_a, "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1);
  def_run_and_bench(m, "conv2d_filter_grad_cuda", &conv2d_filter_grad_call, "conv2d_filter_grad on the GPU.",
                    "x"_a.noconvert(), "filter_shape"_a, "dy"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a,
                    "rounding"_a, "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1);
}

}  // namespace approxtrain
