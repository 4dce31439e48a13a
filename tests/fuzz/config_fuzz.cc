// libFuzzer target: ModelConfig::from_json (config.json) on any bytes. Beyond "no crash, no
// sanitizer report": an accepted config has positive sizes and head_dim, and the derived
// numbers (q/kv width, parameter count, FLOPs) are finite and positive; a rejected one gives a
// message naming the origin.
#include <cmath>
#include <string>
#include <string_view>

#include "embed/model/config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto c = qsearch::ModelConfig::from_json(json, "fuzz/config.json");
  if (!c.is_ok()) {
    FUZZ_CHECK(c.status().message().find("fuzz/config.json") != std::string::npos,
               "error does not name the file: %s", c.status().to_string().c_str());
    return 0;
  }
  FUZZ_CHECK(c->hidden_size > 0 && c->num_layers > 0 && c->num_heads > 0 && c->num_kv_heads > 0 &&
                 c->head_dim > 0 && c->intermediate_size > 0 && c->vocab_size > 0 &&
                 c->max_position_embeddings > 0,
             "accepted a config with a non-positive size");
  FUZZ_CHECK(c->architecture == "Qwen3ForCausalLM" || c->architecture == "Qwen3Model",
             "accepted architecture '%s'", c->architecture.c_str());
  FUZZ_CHECK(std::isfinite(c->rope_theta) && c->rope_theta > 0, "rope_theta %g", c->rope_theta);
  FUZZ_CHECK(std::isfinite(c->rms_norm_eps) && c->rms_norm_eps > 0, "rms_norm_eps %g", c->rms_norm_eps);
  FUZZ_CHECK(c->num_heads % c->num_kv_heads == 0, "heads %d not a multiple of kv heads %d",
             c->num_heads, c->num_kv_heads);
  // Derived numbers must not overflow (UBSan reports signed overflow) and must be positive.
  FUZZ_CHECK(c->num_parameters() > 0, "num_parameters %lld", (long long)c->num_parameters());
  double f = c->flops_per_sequence(512);
  FUZZ_CHECK(std::isfinite(f) && f > 0, "flops %g", f);
  return 0;
}
