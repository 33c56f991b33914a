// _core's integer GEMM: int_matmul (CPU), int_matmul_cuda (when built with
// CUDA) and int_gemm_cpu_path.  Operands are the 8-bit patterns (uint8) of
// integer codes, the table an IntegerMultiplier's `products` (int32 256 x 256,
// row = a's pattern); results are exact int64 sums.  approxtrain/core.py
// turns integer values into patterns and checks their range.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "amsim/batch_plan.h"
#include "amsim/cpu/int_gemm.h"
#include "amsim/int_table.h"
#include "bindings.h"
#include "thread_pool.h"

#ifdef APPROXTRAIN_WITH_CUDA
#include <cuda_runtime_api.h>

#include "amsim/int_table_cache.h"
#include "cuda/int_launchers.h"
#endif

namespace approxtrain {

namespace py = pybind11;

namespace {

using PatternArray = py::array_t<uint8_t, py::array::c_style>;
using ProductsArray = py::array_t<int32_t, py::array::c_style>;
using SumArray = py::array_t<int64_t, py::array::c_style>;

std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

void require_products(const ProductsArray& products) {
  if (products.ndim() != 2 || products.shape(0) != amsim::kIntTableSide || products.shape(1) != amsim::kIntTableSide)
    throw py::value_error("int_matmul: products must be an int32 array of shape (256, 256), got shape " +
                          dims_text(dims_of(products)));
}

amsim::BatchPlan int_plan(const PatternArray& a, const PatternArray& b, bool transpose_a, bool transpose_b) {
  const std::vector<int64_t> a_dims = dims_of(a), b_dims = dims_of(b);
  amsim::BatchPlan plan;
  const amsim::BatchPlanError error = amsim::plan_batched_gemm(a_dims, b_dims, transpose_a, transpose_b, &plan);
  switch (error.kind) {
    case amsim::BatchPlanError::kNone:
      break;
    case amsim::BatchPlanError::kRank:
      throw py::value_error("int_matmul operands must have rank >= 2, got shapes " + dims_text(a_dims) + " and " +
                            dims_text(b_dims));
    case amsim::BatchPlanError::kInnerDims:
      throw py::value_error("int_matmul: inner dimensions differ: " + std::to_string(error.left) + " vs " +
                            std::to_string(error.right) + " (shapes " + dims_text(a_dims) + " and " +
                            dims_text(b_dims) + ")");
    case amsim::BatchPlanError::kBatchDims:
      throw py::value_error("int_matmul: batch dimensions of " + dims_text(a_dims) + " and " + dims_text(b_dims) +
                            " do not broadcast (" + std::to_string(error.left) + " vs " + std::to_string(error.right) +
                            ")");
  }
  return plan;
}

SumArray empty_sums(const std::vector<int64_t>& dims) {
  return SumArray(std::vector<py::ssize_t>(dims.begin(), dims.end()));
}

SumArray int_matmul(const PatternArray& a, const PatternArray& b, const ProductsArray& products, bool transpose_a,
                    bool transpose_b) {
  require_products(products);
  const amsim::BatchPlan plan = int_plan(a, b, transpose_a, transpose_b);
  SumArray c = empty_sums(plan.output_dims());
  const uint8_t *pa = a.data(), *pb = b.data();
  const int32_t* table = products.data();
  int64_t* pc = c.mutable_data();
  py::gil_scoped_release nogil;
  amsim::batched_int_gemm_cpu(table, plan, pa, pb, pc, default_pool().as_parallel_for());
  return c;
}

#ifdef APPROXTRAIN_WITH_CUDA

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error during ") + what + ": " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ")");
  }
}

class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    if (bytes_) check(cudaMalloc(&ptr_, bytes_), "cudaMalloc");
  }
  DeviceBytes(const void* host, size_t bytes) : DeviceBytes(bytes) {
    if (bytes_) check(cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice), "the copy to the GPU");
  }
  ~DeviceBytes() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// The tables' device copies, made once per table (amsim/int_table_cache.h).
// Never destroyed: the CUDA runtime may be gone when static objects die.
amsim::IntTableCache<std::shared_ptr<DeviceBytes>>& device_tables() {
  static auto* tables = new amsim::IntTableCache<std::shared_ptr<DeviceBytes>>(amsim::kCachedIntTables);
  return *tables;
}

bool cuda_usable() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
    cudaGetLastError();
    return false;
  }
  return true;
}

SumArray int_matmul_cuda(const PatternArray& a, const PatternArray& b, const ProductsArray& products, bool transpose_a,
                         bool transpose_b) {
  require_products(products);
  const amsim::BatchPlan plan = int_plan(a, b, transpose_a, transpose_b);
  SumArray c = empty_sums(plan.output_dims());
  const uint8_t *pa = a.data(), *pb = b.data();
  const size_t a_bytes = static_cast<size_t>(a.nbytes()), b_bytes = static_cast<size_t>(b.nbytes());
  const int32_t* table = products.data();
  int64_t* pc = c.mutable_data();
  const size_t c_bytes = static_cast<size_t>(c.nbytes());
  py::gil_scoped_release nogil;
  if (!cuda_usable()) throw std::runtime_error("no usable CUDA device (no GPU, no driver, or an older driver)");
  const int64_t chunk_k = std::min<int64_t>(std::max<int64_t>(plan.shape.k, 1),
                                            amsim::int_safe_block_k(amsim::int_products_max_abs(table)));
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  amsim::CachedIntTable<std::shared_ptr<DeviceBytes>> d_table;
  device_tables().get(
      device, table,
      [](const amsim::IntTableUpload& what, std::shared_ptr<DeviceBytes>* copy) {
        *copy = std::make_shared<DeviceBytes>(what.entries, what.bytes);  // throws when it fails
        return true;
      },
      &d_table);
  DeviceBytes d_a(pa, a_bytes), d_b(pb, b_bytes), d_c(c_bytes);
  check(amsim::cuda::batched_int_gemm(amsim::cuda::IntTable{d_table.buffer->as<void>(), d_table.width}, plan,
                                      d_a.as<uint8_t>(), d_b.as<uint8_t>(), d_c.as<int64_t>(), chunk_k, nullptr),
        "int_matmul_cuda (launch)");
  check(cudaStreamSynchronize(nullptr), "int_matmul_cuda (kernel)");
  if (c_bytes) check(cudaMemcpy(pc, d_c.as<void>(), c_bytes, cudaMemcpyDeviceToHost), "the copy from the GPU");
  return c;
}

#endif

}  // namespace

void bind_int(py::module_& m) {
  using namespace pybind11::literals;
  m.def("int_matmul", &int_matmul, "a"_a.noconvert(), "b"_a.noconvert(), "products"_a.noconvert(),
        "transpose_a"_a = false, "transpose_b"_a = false,
        "Exact integer GEMM of uint8 patterns through an int32 (256, 256) product table (row = a's pattern); "
        "rank >= 2, batch dimensions broadcast as in numpy; int64 result.");
#ifdef APPROXTRAIN_WITH_CUDA
  m.def("int_matmul_cuda", &int_matmul_cuda, "a"_a.noconvert(), "b"_a.noconvert(), "products"_a.noconvert(),
        "transpose_a"_a = false, "transpose_b"_a = false, "int_matmul on the GPU.");
#endif
  m.def(
      "int_gemm_cpu_path",
      [](int64_t m, int64_t n, int64_t k) {
        if (m < 0 || n < 0 || k < 0)
          throw py::value_error("int_gemm_cpu_path: shape (m, n, k) must be >= 0, got (" + std::to_string(m) + ", " +
                                std::to_string(n) + ", " + std::to_string(k) + ")");
        return std::string(amsim::int_gemm_cpu_path(amsim::GemmShape{m, n, k}));
      },
      "m"_a, "n"_a, "k"_a, "Which CPU path int_matmul takes for an (m, n, k) GEMM now.");
}

}  // namespace approxtrain
