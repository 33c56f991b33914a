// Built when _core has no CUDA kernels.
#include "bindings.h"

namespace approxtrain {
void bind_cuda(pybind11::module_& m) {
  m.def(
      "cuda_available", [] { return false; }, "Whether _core was built with CUDA and a GPU is usable.");
}
}  // namespace approxtrain
