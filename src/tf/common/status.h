// InvalidArgument status built from message pieces (TF's errors:: helpers
// are deprecated in favour of absl).
#pragma once

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace approxtrain {
namespace tf {

template <typename... Args>
absl::Status InvalidArgument(const Args&... pieces) {
  return absl::InvalidArgumentError(absl::StrCat(pieces...));
}

inline const char* BoolName(bool v) { return v ? "true" : "false"; }

}  // namespace tf
}  // namespace approxtrain
