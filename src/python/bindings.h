// Each part of _core registers its functions here; module.cpp calls them.
#pragma once

#include <pybind11/pybind11.h>

namespace approxtrain {
void bind_cpu(pybind11::module_& m);
// Defines cuda_available() always, and the *_cuda functions when built with CUDA.
void bind_cuda(pybind11::module_& m);
}  // namespace approxtrain
