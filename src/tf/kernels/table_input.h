// The table input of an AM op as the core's borrowed amsim::Table view.
#pragma once

#include "common/am_table.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace approxtrain {
namespace tf {

inline absl::Status TableFromTensor(const tensorflow::Tensor& t, amsim::Rounding rounding, amsim::Table* table) {
  if (!tensorflow::TensorShapeUtils::IsVector(t.shape())) {
    return InvalidArgument("table must be a 1-D uint16 tensor, got shape ", t.shape().DebugString());
  }
  int mantissa_bits = 0;
  TF_RETURN_IF_ERROR(MantissaBitsForTableLength(t.NumElements(), &mantissa_bits));
  *table = amsim::Table{t.flat<uint16_t>().data(), mantissa_bits, rounding};
  return absl::OkStatus();
}

}  // namespace tf
}  // namespace approxtrain
