// Each part of _core registers its functions here; module.cpp calls them.
#pragma once

#include <pybind11/pybind11.h>

namespace approxtrain {
void bind_cpu(pybind11::module_& m);
// Defines cuda_available() always, and the *_cuda functions when built with CUDA.
void bind_cuda(pybind11::module_& m);
// int_matmul (and int_matmul_cuda when built with CUDA): bind_int.cpp.
void bind_int(pybind11::module_& m);
}  // namespace approxtrain
