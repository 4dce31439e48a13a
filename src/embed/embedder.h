// The embedding facade: one implementation of Qwen3-Embedding's semantics shared by every
// engine. It owns the tokenizer, the model config and one Backend per replica.
//
//  - A query with an instruction becomes "Instruct: {task}\nQuery:{text}"; documents get none.
//  - Every input ends with <|endoftext|> (151643): kept if the tokenizer's post-processor
//    appended it, appended otherwise. The last token is found by position, never by id.
//  - Truncation to max_tokens keeps the trailing EOS and reports how many tokens were cut.
//  - Pooling (last token after the final norm), MRL truncation and L2 normalisation happen in
//    the Backend (see backend.h); out vectors are float32, L2-normalised.
//
// Thread safety: prepare*() are const and safe from any thread. embed() serialises access to
// each backend internally and may be called from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "embed/engine/backend.h"
#include "embed/model/config.h"
#include "embed/tokenizer/tokenizer.h"

namespace qsearch {

inline constexpr int32_t kEndOfTextId = 151643;  // <|endoftext|> in Qwen2/Qwen3
inline constexpr int kDefaultMaxTokens = 8192;

struct EmbedderOptions {
  std::string model_dir;            // Hugging Face layout: config.json, tokenizer.json, weights
  std::string device = "auto";      // "cpu", "cuda", or "auto" (cuda when a GPU is visible)
  int64_t max_batch_tokens = 0;     // token budget of one engine batch (0: engine default)
  int threads = 0;                  // CPU engine threads (0: all cores)
  std::vector<int> gpus;            // CUDA devices to run replicas on (empty: all visible)
  // CUDA engine GEMM numerics (backend.h). kFP8 is refused on the CPU engine, without a GPU and
  // on GPUs without FP8 tensor cores (kFp8NeedsGpuMessage).
  EngineDType dtype = EngineDType::kBF16;
};

struct PreparedText {
  std::vector<int32_t> ids;    // ends with <|endoftext|>
  int32_t input_tokens = 0;    // length before truncation (EOS included)
  int32_t truncated_tokens = 0;  // tokens cut by truncation
};

class Embedder {
 public:
  static StatusOr<std::unique_ptr<Embedder>> open(const EmbedderOptions& options);
  // For tests: wraps given parts (the backends take ownership).
  Embedder(ModelConfig config, std::unique_ptr<Tokenizer> tokenizer,
           std::vector<std::unique_ptr<Backend>> backends, int32_t eos_id = kEndOfTextId);
  ~Embedder();

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int hidden_size() const { return config_.hidden_size; }
  // The longest input accepted: min(max_position_embeddings, backend limits).
  int64_t max_input_tokens() const;
  size_t num_backends() const { return backends_.size(); }
  Backend& backend(size_t i) { return *backends_[i]; }
  std::string device_name() const;

  static std::string format_query(std::string_view instruction, std::string_view text);

  // Text -> token ids with instruction (empty: none), EOS and truncation to max_tokens
  // (0: kDefaultMaxTokens, capped at max_input_tokens()). Invalid UTF-8 -> kInvalidArgument.
  StatusOr<PreparedText> prepare(std::string_view text, std::string_view instruction,
                                 int max_tokens = 0) const;
  // Raw token ids (OpenAI token input): range-checked, EOS appended when missing, truncated.
  StatusOr<PreparedText> prepare_ids(std::vector<int32_t> ids, int max_tokens = 0) const;

  // Embeds prepared texts in token-budget batches; dim 0 means hidden_size(), else 32..hidden.
  // out gets one vector of dim floats per item, in order.
  Status embed(const std::vector<PreparedText>& items, int dim,
               std::vector<std::vector<float>>* out);

  // The final-norm hidden state of each sequence's last token, hidden_size() floats, neither
  // truncated nor normalised (backend.h raw_hidden; the reranker's input). Sequences are used
  // as given (no EOS appended), batched like embed().
  Status last_hidden_states(const std::vector<std::vector<int32_t>>& sequences,
                            std::vector<std::vector<float>>* out);

  // Convenience for the CLI and tests: prepare + embed.
  Status embed_texts(const std::vector<std::string>& texts, std::string_view instruction,
                     int dim, int max_tokens, std::vector<std::vector<float>>* out);

 private:
  // Runs the sequences in token-budget batches over the backends: rows of dim floats (raw:
  // hidden-size raw hidden states).
  Status run(const std::vector<const std::vector<int32_t>*>& sequences, int dim, bool raw,
             std::vector<std::vector<float>>* out);

  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::unique_ptr<std::mutex>> backend_mu_;
  int32_t eos_id_;
};

// The backends options ask for: one CPU engine, or one CUDA engine per selected GPU
// (options.device "cpu", "cuda", "cuda:N" or "auto"; options.gpus; options.dtype: kFP8 with
// device "cpu", or "auto" without a visible GPU, is kUnavailable with kFp8NeedsGpuMessage).
StatusOr<std::vector<std::unique_ptr<Backend>>> make_backends(const EmbedderOptions& options,
                                                             const ModelConfig& config);

// Creates the backend for a device string ("cpu", "cuda:N"). Implemented per engine;
// make_cuda_backend returns kUnavailable in builds without CUDA or where no GPU is visible.
StatusOr<std::unique_ptr<Backend>> make_cpu_backend(const std::string& model_dir,
                                                    const ModelConfig& config,
                                                    int64_t max_batch_tokens, int threads);
StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const std::string& model_dir,
                                                     const ModelConfig& config,
                                                     int64_t max_batch_tokens, int device,
                                                     EngineDType dtype = EngineDType::kBF16);
// Number of visible CUDA devices (0 without CUDA or without a GPU). Never fails.
int cuda_device_count();

}  // namespace qsearch
