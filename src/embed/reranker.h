// The reranker facade: Qwen3-Reranker's semantics on the same engines as the embedder.
//
// A Qwen3-Reranker is a Qwen3ForCausalLM; the model card scores a (query, document) pair as
//   input  = prefix + body + suffix, each tokenized without special tokens, where
//            prefix = "<|im_start|>system\nJudge whether the Document meets the requirements
//                     based on the Query and the Instruct provided. Note that the answer can
//                     only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
//            body   = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
//            suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
//   score  = softmax([logit("no"), logit("yes")])[1] at the last position.
// Here the engine returns the final-norm hidden state h of the last token (EngineBatch
// raw_hidden: the same forward as embeddings, without MRL or L2) and only the two LM-head rows
// of "no" and "yes" are applied: logit = h . row, in fp32 with a double accumulator. The rows
// are lm_head.weight's, or embed_tokens' when tie_word_embeddings is true. The token ids of
// "yes" and "no" are looked up in the tokenizer.
// Over max_tokens (default 8192, as the model card's max_length) the body is cut at its end, so
// prefix and suffix stay; the cut is reported.
//
// Thread safety: prepare() and score_hidden() are const and safe from any thread; score() may
// be called from several threads (the embedder serialises each backend).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "embed/embedder.h"

namespace qsearch {

// The model card's default instruction.
inline constexpr std::string_view kDefaultRerankInstruction =
    "Given a web search query, retrieve relevant passages that answer the query";

struct PreparedPair {
  std::vector<int32_t> ids;      // prefix + body (cut to fit) + suffix
  int32_t input_tokens = 0;      // length before the cut
  int32_t truncated_tokens = 0;  // body tokens cut
};

class Reranker {
 public:
  // Loads a Qwen3-Reranker directory (config.json, tokenizer.json, safetensors) onto the
  // engines options names (device, gpus, batch budget, threads as for the embedder).
  static StatusOr<std::unique_ptr<Reranker>> open(const EmbedderOptions& options);
  // For tests: wraps a loaded model and its two head rows (no_row, yes_row: hidden floats).
  Reranker(std::unique_ptr<Embedder> model, int32_t no_id, int32_t yes_id,
           std::vector<float> no_row, std::vector<float> yes_row);
  ~Reranker();

  static std::string_view prefix();
  static std::string_view suffix();
  static std::string format_body(std::string_view instruction, std::string_view query,
                                 std::string_view document);

  const ModelConfig& config() const { return model_->config(); }
  const Tokenizer& tokenizer() const { return model_->tokenizer(); }
  int hidden_size() const { return model_->hidden_size(); }
  size_t num_backends() const { return model_->num_backends(); }
  Backend& backend(size_t i) { return model_->backend(i); }
  std::string device_name() const { return model_->device_name(); }
  int64_t max_input_tokens() const { return model_->max_input_tokens(); }
  int32_t yes_id() const { return yes_id_; }
  int32_t no_id() const { return no_id_; }

  // Token ids of one pair, cut to max_tokens (0: kDefaultMaxTokens; capped at
  // max_input_tokens()). The instruction is used as given (callers substitute the default).
  // Invalid UTF-8 is kInvalidArgument; a max_tokens too small to hold prefix and suffix plus
  // one body token is kInvalidArgument.
  StatusOr<PreparedPair> prepare(std::string_view query, std::string_view document,
                                 std::string_view instruction, int max_tokens = 0) const;

  // softmax([h . no_row, h . yes_row])[1] for one raw hidden state (hidden_size() floats).
  float score_hidden(const float* hidden) const;

  // Scores prepared pairs on the engines directly (CLI and tests; the server goes through its
  // scheduler and score_hidden()). scores gets one value per pair, in order.
  Status score(const std::vector<PreparedPair>& pairs, std::vector<float>* scores);

 private:
  std::unique_ptr<Embedder> model_;
  int32_t no_id_, yes_id_;
  std::vector<float> no_row_, yes_row_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;
};

}  // namespace qsearch
