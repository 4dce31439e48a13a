// The engine interface (after TEI's Backend): the CPU and CUDA engines are interchangeable
// behind it, so tests and the service drive either.
//
// Data contract: a batch is n sequences packed without padding. tokens holds all token ids
// back to back; cu_seqlens has n+1 entries, sequence i is tokens[cu_seqlens[i] .. cu_seqlens[i+1]).
// Every sequence already ends with <|endoftext|> (the Embedder facade guarantees it); positions
// restart at 0 for every sequence; attention is causal and never crosses sequences.
// Output: n rows of hidden_size() floats, row-major (row i at out[i * hidden_size()]).
// Row i holds the final-RMSNorm'd hidden state of the last token of sequence i, truncated to
// dims[i] components (MRL) and L2-normalised; components dims[i] .. hidden_size()-1 are zero.
// A batch with raw_hidden set (the reranker's) gets that hidden state as it is: all hidden_size()
// components, no MRL, no L2 (dims must then be empty or hidden_size()), fp32.
//
// Concurrency: one Backend instance runs one batch at a time; embed() is not reentrant.
// Callers (the service scheduler) own one instance per replica (per GPU).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace qsearch {

struct EngineBatch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> cu_seqlens;  // n + 1 offsets, cu_seqlens[0] == 0
  std::vector<int32_t> dims;        // n output dimensions; empty means hidden_size() for all
  bool raw_hidden = false;          // rows are the final-norm hidden states, not embeddings

  size_t num_sequences() const { return cu_seqlens.empty() ? 0 : cu_seqlens.size() - 1; }
  size_t num_tokens() const { return tokens.size(); }
  // Appends one sequence.
  void add(const std::vector<int32_t>& ids, int32_t dim) {
    if (cu_seqlens.empty()) cu_seqlens.push_back(0);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    cu_seqlens.push_back(static_cast<int32_t>(tokens.size()));
    dims.push_back(dim);
  }
};

// Numerics of the CUDA engine's matrix products (--dtype): bf16 weights and activations, or FP8
// E4M3 ones with per-channel / per-token scales on FP8 tensor cores (cuda_engine.h). Norms,
// attention and the fp32 residual stream are the same in both; the CPU engine is fp32 and has
// no FP8 mode.
enum class EngineDType { kBF16, kFP8 };

// "bf16" or "fp8" (anything else: kInvalidArgument naming the choices).
StatusOr<EngineDType> parse_engine_dtype(std::string_view s);
const char* engine_dtype_name(EngineDType d);  // "bf16" / "fp8"

// Why --dtype fp8 was refused: the CPU engine, no GPU, or a GPU without FP8 tensor cores.
inline constexpr const char* kFp8NeedsGpuMessage =
    "--dtype fp8 needs a CUDA GPU with FP8 tensor cores (sm_89+)";

// Memory a backend holds, reported at start and on /metrics.
struct EngineMemory {
  int64_t weights_bytes = 0;
  int64_t workspace_bytes = 0;
  int64_t device_total_bytes = 0;  // 0 on the CPU
  int64_t device_free_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // "cpu" or "cuda:0", ...
  virtual std::string name() const = 0;
  virtual int hidden_size() const = 0;
  // The most tokens one embed() call accepts (the token budget of a batch).
  virtual int64_t max_batch_tokens() const = 0;
  // The longest single sequence accepted.
  virtual int64_t max_sequence_tokens() const = 0;
  virtual EngineMemory memory() const = 0;
  // Validates the batch (ids in vocab, lengths, dims in 1..hidden) and fills out, which must
  // hold num_sequences() * hidden_size() floats.
  virtual Status embed(const EngineBatch& batch, float* out) = 0;
};

// Shared by the CPU engine and tests: checks a batch against the limits of a backend.
Status validate_batch(const EngineBatch& batch, int64_t vocab_size, int hidden_size,
                      int64_t max_batch_tokens, int64_t max_sequence_tokens);

// Shared by every CPU-side path: truncates v (length hidden) to dim components in place,
// L2-normalises them and zeroes the rest. A zero vector stays zero.
void mrl_normalize(float* v, int hidden, int dim);

}  // namespace qsearch
