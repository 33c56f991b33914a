// The multiplier table as an op input: a 1-D uint16 tensor of 4^M entries.
// M is derived from the length; operand rounding is an op attribute.
#pragma once

#include <cstdint>
#include <string>

#include "amsim/amsim.h"
#include "common/status.h"
#include "tensorflow/core/platform/status.h"

namespace approxtrain {
namespace tf {

// The attribute every AM op carries.
constexpr char kRoundingAttr[] = "operand_rounding: {'truncate', 'nearest'}";

// M such that length == 4^M, M in 1..11; InvalidArgument otherwise.
inline absl::Status MantissaBitsForTableLength(int64_t length, int* mantissa_bits) {
  for (int m = amsim::kMinMantissaBits; m <= amsim::kMaxMantissaBits; ++m) {
    if (amsim::table_size(m) == length) {
      *mantissa_bits = m;
      return absl::OkStatus();
    }
  }
  return InvalidArgument("table length ", length, " is not 4^M for a mantissa width M in ", amsim::kMinMantissaBits,
                         "..", amsim::kMaxMantissaBits, " (valid lengths: 4, 16, 64, ..., ",
                         amsim::table_size(amsim::kMaxMantissaBits), ")");
}

inline absl::Status ParseRounding(const std::string& name, amsim::Rounding* rounding) {
  if (name == "truncate") {
    *rounding = amsim::Rounding::kTruncate;
  } else if (name == "nearest") {
    *rounding = amsim::Rounding::kNearestEven;
  } else {
    return InvalidArgument("operand_rounding must be 'truncate' or 'nearest', got '", name, "'");
  }
  return absl::OkStatus();
}

}  // namespace tf
}  // namespace approxtrain
