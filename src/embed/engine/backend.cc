#include "embed/engine/backend.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace qsearch {

StatusOr<EngineDType> parse_engine_dtype(std::string_view s) {
  if (s == "bf16") return EngineDType::kBF16;
  if (s == "fp8") return EngineDType::kFP8;
  return invalid_argument("unknown dtype \"" + std::string(s) + "\" (bf16 or fp8)");
}

const char* engine_dtype_name(EngineDType d) { return d == EngineDType::kFP8 ? "fp8" : "bf16"; }

Status validate_batch(const EngineBatch& batch, int64_t vocab_size, int hidden_size,
                      int64_t max_batch_tokens, int64_t max_sequence_tokens) {
  size_t n = batch.num_sequences();
  if (n == 0) return Status::ok();
  if (batch.cu_seqlens.front() != 0 ||
      static_cast<size_t>(batch.cu_seqlens.back()) != batch.tokens.size())
    return invalid_argument("batch offsets do not cover the token array");
  if (!batch.dims.empty() && batch.dims.size() != n)
    return invalid_argument("batch has " + std::to_string(batch.dims.size()) + " dims for " +
                            std::to_string(n) + " sequences");
  if (static_cast<int64_t>(batch.tokens.size()) > max_batch_tokens)
    return invalid_argument("batch of " + std::to_string(batch.tokens.size()) +
                            " tokens exceeds the engine budget of " +
                            std::to_string(max_batch_tokens));
  for (size_t i = 0; i < n; ++i) {
    int64_t len = batch.cu_seqlens[i + 1] - batch.cu_seqlens[i];
    if (len <= 0) return invalid_argument("sequence " + std::to_string(i) + " is empty");
    if (len > max_sequence_tokens)
      return invalid_argument("sequence " + std::to_string(i) + " has " + std::to_string(len) +
                              " tokens, more than the maximum " +
                              std::to_string(max_sequence_tokens));
    if (!batch.dims.empty() && (batch.dims[i] < 1 || batch.dims[i] > hidden_size))
      return invalid_argument("dimension " + std::to_string(batch.dims[i]) +
                              " out of range 1.." + std::to_string(hidden_size));
    if (batch.raw_hidden && !batch.dims.empty() && batch.dims[i] != hidden_size)
      return invalid_argument("a raw hidden-state batch has dimension " +
                              std::to_string(batch.dims[i]) + ", not the hidden size " +
                              std::to_string(hidden_size));
  }
  for (size_t t = 0; t < batch.tokens.size(); ++t) {
    if (batch.tokens[t] < 0 || batch.tokens[t] >= vocab_size)
      return invalid_argument("token id " + std::to_string(batch.tokens[t]) +
                              " out of vocabulary range 0.." + std::to_string(vocab_size - 1));
  }
  return Status::ok();
}

void mrl_normalize(float* v, int hidden, int dim) {
  if (dim <= 0 || dim > hidden) dim = hidden;
  double ss = 0;
  for (int j = 0; j < dim; ++j) ss += static_cast<double>(v[j]) * v[j];
  // torch.nn.functional.normalize uses max(norm, 1e-12)
  double norm = std::max(std::sqrt(ss), 1e-12);
  float inv = static_cast<float>(1.0 / norm);
  for (int j = 0; j < dim; ++j) v[j] *= inv;
  for (int j = dim; j < hidden; ++j) v[j] = 0.0f;
}

}  // namespace qsearch
