// approxtrain._core: the native core on numpy arrays, no TensorFlow.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"

#ifndef APPROXTRAIN_VERSION
#define APPROXTRAIN_VERSION "0.0.0"
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "approxtrain native core: AMSim arithmetic, CPU (and CUDA) kernels on numpy arrays";
  approxtrain::bind_cpu(m);
  approxtrain::bind_cuda(m);
  approxtrain::bind_int(m);
  pybind11::dict info;
  info["version"] = APPROXTRAIN_VERSION;
  info["compiler"] = __VERSION__;
#ifdef APPROXTRAIN_WITH_CUDA
  info["cuda"] = true;
  info["cuda_archs"] = APPROXTRAIN_CUDA_ARCHS_STRING;
#else
  info["cuda"] = false;
  info["cuda_archs"] = "";
#endif
  m.attr("build_info") = info;
}
