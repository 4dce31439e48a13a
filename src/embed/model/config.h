// Qwen3 config.json, as written by transformers (old and new): rope_theta at the top level or
// inside rope_parameters, torch_dtype or dtype, architectures Qwen3ForCausalLM or Qwen3Model.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace qsearch {

struct ModelConfig {
  std::string architecture;        // "Qwen3ForCausalLM" or "Qwen3Model"
  int hidden_size = 0;             // 1024 (0.6B), 2560 (4B), 4096 (8B)
  int num_layers = 0;              // num_hidden_layers
  int num_heads = 0;               // num_attention_heads
  int num_kv_heads = 0;            // num_key_value_heads
  int head_dim = 0;                // explicit in Qwen3 (128); hidden/heads when absent
  int intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 1000000.0;
  double rms_norm_eps = 1e-6;
  std::string dtype;               // "bfloat16", "float16", "float32" (informational)
  // The LM head shares the embedding table (Qwen3-Reranker-0.6B/4B) or is its own lm_head.weight
  // (8B). Only the reranker reads the head. Default false, as transformers' Qwen3Config.
  bool tie_word_embeddings = false;

  int q_width() const { return num_heads * head_dim; }
  int kv_width() const { return num_kv_heads * head_dim; }
  // Parameters, for reports.
  int64_t num_parameters() const;
  // Forward FLOPs for one sequence of n tokens (matmuls and causal attention).
  double flops_per_sequence(int64_t n) const;

  static StatusOr<ModelConfig> from_file(const std::string& path);
  static StatusOr<ModelConfig> from_json(std::string_view json, const std::string& origin);
};

}  // namespace qsearch
