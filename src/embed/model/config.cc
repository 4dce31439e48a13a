// config.json parsing for Qwen3 (see config.h). Accepts the layouts written by transformers 4.x
// (rope_theta, torch_dtype at the top level) and 5.x (rope_parameters.rope_theta, dtype).
#include "embed/model/config.h"

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace qsearch {
namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// Reads a required positive integer field.
Status get_positive_int(const json& j, const char* field, const std::string& origin, int64_t* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null())
    return invalid_argument(origin + ": missing field \"" + field + "\"");
  if (!it->is_number_integer())
    return invalid_argument(origin + ": field \"" + field + "\" must be an integer, got " +
                            type_name(*it));
  int64_t v = it->get<int64_t>();
  if (v <= 0)
    return invalid_argument(origin + ": field \"" + field + "\" must be positive, got " +
                            std::to_string(v));
  *out = v;
  return Status::ok();
}

Status get_int32(const json& j, const char* field, const std::string& origin, int* out) {
  int64_t v = 0;
  QS_RETURN_IF_ERROR(get_positive_int(j, field, origin, &v));
  if (v > (1 << 30))
    return invalid_argument(origin + ": field \"" + field +
                            "\" is too large: " + std::to_string(v));
  *out = static_cast<int>(v);
  return Status::ok();
}

// Reads an optional number; absent or null leaves *out unchanged.
Status get_optional_number(const json& j, const char* field, const std::string& origin, double* out,
                           bool* found = nullptr) {
  auto it = j.find(field);
  if (found) *found = false;
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_number())
    return invalid_argument(origin + ": field \"" + field + "\" must be a number, got " +
                            type_name(*it));
  *out = it->get<double>();
  if (found) *found = true;
  return Status::ok();
}

Status get_optional_string(const json& j, const char* field, const std::string& origin,
                           std::string* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_string())
    return invalid_argument(origin + ": field \"" + field + "\" must be a string, got " +
                            type_name(*it));
  *out = it->get<std::string>();
  return Status::ok();
}

bool is_true(const json& j, const char* field) {
  auto it = j.find(field);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// rope_scaling / rope_parameters may name a rope type; only the default one is Qwen3's.
Status check_rope_type(const json& rope, const char* field, const std::string& origin) {
  if (!rope.is_object()) return Status::ok();
  for (const char* key : {"rope_type", "type"}) {
    auto it = rope.find(key);
    if (it != rope.end() && it->is_string() && it->get<std::string>() != "default")
      return invalid_argument(origin + ": " + field + "." + key + " \"" + it->get<std::string>() +
                              "\" is not supported (only the default RoPE of Qwen3)");
  }
  return Status::ok();
}

}  // namespace

int64_t ModelConfig::num_parameters() const {
  int64_t h = hidden_size;
  int64_t per_layer = 2 * h * q_width() + 2 * h * kv_width()  // q, o and k, v projections
                      + 3 * h * intermediate_size             // gate, up, down
                      + 2 * h + 2 * head_dim;                 // two RMSNorms, q_norm, k_norm
  return vocab_size * h + num_layers * per_layer + h;
}

// Forward FLOPs of one sequence of n tokens, counting a multiply-add as 2 FLOPs:
//   matmuls:   2 * n * P, P = per-layer projection weights (q, k, v, o, gate, up, down) x layers
//   attention: per layer and head, Q.K^T and P.V over the causal triangle (~n*n/2 pairs) of
//              head_dim-long dot products: 2 (two products) * 2 (mul+add) * n*n/2 * head_dim.
// The embedding gather, norms, RoPE and softmax are ignored (lower order).
double ModelConfig::flops_per_sequence(int64_t n) const {
  double h = hidden_size;
  double per_layer_matmul =
      2.0 * h * q_width() + 2.0 * h * kv_width() + 3.0 * h * intermediate_size;
  double nn = static_cast<double>(n);
  double matmul = 2.0 * nn * per_layer_matmul * num_layers;
  double attention = 2.0 * 2.0 * nn * nn / 2.0 * num_heads * head_dim * num_layers;
  return matmul + attention;
}

StatusOr<ModelConfig> ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return io_error("cannot read " + path);
  return from_json(ss.str(), path);
}

StatusOr<ModelConfig> ModelConfig::from_json(std::string_view text, const std::string& origin) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument(origin + ": not valid JSON");
  if (!j.is_object()) return invalid_argument(origin + ": expected a JSON object");

  ModelConfig c;
  // architectures: ["Qwen3ForCausalLM"] (Qwen3-Embedding ships this) or ["Qwen3Model"].
  auto arch = j.find("architectures");
  if (arch == j.end() || arch->is_null())
    return invalid_argument(origin + ": missing field \"architectures\"");
  if (!arch->is_array() || arch->empty() || !(*arch)[0].is_string())
    return invalid_argument(origin +
                            ": field \"architectures\" must be a non-empty array of "
                            "strings, got " +
                            type_name(*arch));
  c.architecture = (*arch)[0].get<std::string>();
  if (c.architecture != "Qwen3ForCausalLM" && c.architecture != "Qwen3Model")
    return invalid_argument(origin + ": architecture \"" + c.architecture +
                            "\" is not supported (expected Qwen3ForCausalLM or Qwen3Model, "
                            "as in Qwen/Qwen3-Embedding-*)");
  std::string model_type;
  QS_RETURN_IF_ERROR(get_optional_string(j, "model_type", origin, &model_type));
  if (!model_type.empty() && model_type != "qwen3")
    return invalid_argument(origin + ": model_type \"" + model_type + "\" is not qwen3");

  QS_RETURN_IF_ERROR(get_int32(j, "hidden_size", origin, &c.hidden_size));
  QS_RETURN_IF_ERROR(get_int32(j, "num_hidden_layers", origin, &c.num_layers));
  QS_RETURN_IF_ERROR(get_int32(j, "num_attention_heads", origin, &c.num_heads));
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()) {
    QS_RETURN_IF_ERROR(get_int32(j, "num_key_value_heads", origin, &c.num_kv_heads));
  } else {
    c.num_kv_heads = c.num_heads;  // transformers' default
  }
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    QS_RETURN_IF_ERROR(get_int32(j, "head_dim", origin, &c.head_dim));
  } else {
    if (c.hidden_size % c.num_heads != 0)
      return invalid_argument(origin + ": no \"head_dim\" and hidden_size " +
                              std::to_string(c.hidden_size) + " is not a multiple of " +
                              "num_attention_heads " + std::to_string(c.num_heads));
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0)
    return invalid_argument(origin + ": head_dim " + std::to_string(c.head_dim) +
                            " must be even for RoPE");
  if (c.num_heads % c.num_kv_heads != 0)
    return invalid_argument(origin + ": num_attention_heads " + std::to_string(c.num_heads) +
                            " is not a multiple of num_key_value_heads " +
                            std::to_string(c.num_kv_heads));
  QS_RETURN_IF_ERROR(get_int32(j, "intermediate_size", origin, &c.intermediate_size));
  QS_RETURN_IF_ERROR(get_positive_int(j, "vocab_size", origin, &c.vocab_size));
  QS_RETURN_IF_ERROR(
      get_positive_int(j, "max_position_embeddings", origin, &c.max_position_embeddings));

  // rope_theta: top level (transformers 4.x) or rope_parameters.rope_theta (5.x).
  bool found_theta = false;
  QS_RETURN_IF_ERROR(get_optional_number(j, "rope_theta", origin, &c.rope_theta, &found_theta));
  auto rp = j.find("rope_parameters");
  if (rp != j.end() && !rp->is_null()) {
    if (!rp->is_object())
      return invalid_argument(origin + ": field \"rope_parameters\" must be an object, got " +
                              type_name(*rp));
    bool found_inner = false;
    QS_RETURN_IF_ERROR(get_optional_number(*rp, "rope_theta", origin + " rope_parameters",
                                           &c.rope_theta, &found_inner));
    found_theta = found_theta || found_inner;
    QS_RETURN_IF_ERROR(check_rope_type(*rp, "rope_parameters", origin));
  }
  if (!found_theta)
    return invalid_argument(origin +
                            ": missing field \"rope_theta\" (top level or inside "
                            "\"rope_parameters\")");
  if (!(c.rope_theta > 1.0))
    return invalid_argument(origin + ": rope_theta must be > 1, got " +
                            std::to_string(c.rope_theta));
  auto rs = j.find("rope_scaling");
  if (rs != j.end()) QS_RETURN_IF_ERROR(check_rope_type(*rs, "rope_scaling", origin));

  bool found_eps = false;
  QS_RETURN_IF_ERROR(get_optional_number(j, "rms_norm_eps", origin, &c.rms_norm_eps, &found_eps));
  if (!(c.rms_norm_eps > 0.0)) return invalid_argument(origin + ": rms_norm_eps must be positive");

  // Each field is bounded above; their products must be too (q_width() is an int, token ids
  // are int32, and num_parameters() an int64).
  if (int64_t{c.num_heads} * c.head_dim > (1 << 30) ||
      int64_t{c.num_kv_heads} * c.head_dim > (1 << 30))
    return invalid_argument(origin + ": num_attention_heads x head_dim (" +
                            std::to_string(int64_t{c.num_heads} * c.head_dim) + ") is too large");
  if (c.vocab_size > INT32_MAX)
    return invalid_argument(origin + ": vocab_size " + std::to_string(c.vocab_size) +
                            " does not fit 32-bit token ids");
  {
    const __int128 h = c.hidden_size, q = c.q_width(), kv = c.kv_width();
    const __int128 params =
        static_cast<__int128>(c.vocab_size) * h +
        static_cast<__int128>(c.num_layers) *
            (2 * h * q + 2 * h * kv + 3 * h * c.intermediate_size + 2 * h + 2 * c.head_dim) +
        h;
    if (params > (static_cast<__int128>(1) << 53))
      return invalid_argument(origin + ": the sizes describe a model of over 2^53 parameters");
  }

  // torch_dtype (transformers 4.x) or dtype (5.x); informational only.
  QS_RETURN_IF_ERROR(get_optional_string(j, "torch_dtype", origin, &c.dtype));
  if (c.dtype.empty()) QS_RETURN_IF_ERROR(get_optional_string(j, "dtype", origin, &c.dtype));
  if (c.dtype.empty()) c.dtype = "bfloat16";

  auto tie = j.find("tie_word_embeddings");
  if (tie != j.end() && !tie->is_null()) {
    if (!tie->is_boolean())
      return invalid_argument(origin + ": field \"tie_word_embeddings\" must be a boolean, got " +
                              type_name(*tie));
    c.tie_word_embeddings = tie->get<bool>();
  }

  // Features of other Qwen variants that this engine does not implement.
  std::string act = "silu";
  QS_RETURN_IF_ERROR(get_optional_string(j, "hidden_act", origin, &act));
  if (act != "silu")
    return invalid_argument(origin + ": hidden_act \"" + act + "\" is not supported (silu)");
  if (is_true(j, "attention_bias"))
    return invalid_argument(origin + ": attention_bias true is not supported (Qwen3 has none)");
  if (is_true(j, "use_sliding_window"))
    return invalid_argument(origin + ": use_sliding_window true is not supported");
  return c;
}

}  // namespace qsearch
