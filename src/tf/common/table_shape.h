// Shape-function check of the table input (rank 1, length 4^M when known).
#pragma once

#include "common/am_table.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace approxtrain {
namespace tf {

inline absl::Status CheckTableShape(tensorflow::shape_inference::InferenceContext* c, int input_index) {
  tensorflow::shape_inference::ShapeHandle table;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(input_index), 1, &table));
  const auto length = c->Dim(table, 0);
  if (c->ValueKnown(length)) {
    int mantissa_bits = 0;
    TF_RETURN_IF_ERROR(MantissaBitsForTableLength(c->Value(length), &mantissa_bits));
  }
  return absl::OkStatus();
}

}  // namespace tf
}  // namespace approxtrain
