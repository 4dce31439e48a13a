// libFuzzer target: safetensors loading. The first input byte picks the mode, the rest is the
// content of one file in a scratch model directory:
//   even: model.safetensors itself -> SafetensorsFile::open, then ModelWeights::open against a
//         micro Qwen3 config (hidden 8, 1 layer) so a valid file can also pass the shape checks;
//   odd:  model.safetensors.index.json next to one valid shard -> ModelWeights::open.
// Oracle for mode "file": our own reading of the header (written here, not shared with the
// loader). If the loader accepts a file, every tensor it reports must be in the header with the
// same dtype and shape, its offsets must lie inside the data section, and its bytes must be the
// input's bytes at those offsets (a pointer outside the mapping crashes here under ASan/SEGV).
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "embed/model/config.h"
#include "embed/model/safetensors.h"
#include "embed/model/weights.h"
#include "fuzz_util.h"

namespace {

using nlohmann::json;
using qsearch::DType;

const char* kMicroConfig = R"({
  "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 8,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
  "intermediate_size": 16, "vocab_size": 16, "max_position_embeddings": 64,
  "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16"})";

std::string g_file_dir, g_index_dir;
qsearch::ModelConfig g_config;

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

size_t dtype_bytes(const std::string& s) {
  if (s == "BF16" || s == "F16") return 2;
  if (s == "F32") return 4;
  return 0;
}

// Checks an accepted file against our own parse of it.
void check_accepted(const qsearch::SafetensorsFile& f, const uint8_t* data, size_t size) {
  FUZZ_CHECK(size >= 8, "accepted a %zu-byte file", size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  FUZZ_CHECK(n <= size - 8, "accepted header length %llu in a %zu-byte file", (unsigned long long)n, size);
  json header = json::parse(data + 8, data + 8 + n, nullptr, false);
  FUZZ_CHECK(!header.is_discarded() && header.is_object(), "accepted a header that is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  const uint8_t* body = data + 8 + n;
  size_t expected = 0;
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__") ++expected;
  FUZZ_CHECK(f.tensors().size() == expected, "%zu tensors reported, header has %zu",
             f.tensors().size(), expected);
  for (const auto& t : f.tensors()) {
    auto it = header.find(t.name);
    FUZZ_CHECK(it != header.end() && it->is_object(), "tensor '%s' not in the header", t.name.c_str());
    const json& e = *it;
    FUZZ_CHECK(e.contains("dtype") && e["dtype"].is_string() &&
                   e["dtype"].get<std::string>() == qsearch::dtype_safetensors_name(t.dtype),
               "tensor '%s' dtype mismatch", t.name.c_str());
    FUZZ_CHECK(e.contains("shape") && e["shape"].is_array() && e["shape"].size() == t.shape.size(),
               "tensor '%s' rank mismatch", t.name.c_str());
    unsigned __int128 numel = 1;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      FUZZ_CHECK(e["shape"][d].is_number_integer() && e["shape"][d].get<int64_t>() == t.shape[d] &&
                     t.shape[d] >= 0,
                 "tensor '%s' shape mismatch at %zu", t.name.c_str(), d);
      numel *= static_cast<uint64_t>(t.shape[d]);
    }
    const json& off = e["data_offsets"];
    FUZZ_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
               "tensor '%s' offsets malformed but accepted", t.name.c_str());
    uint64_t b = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    FUZZ_CHECK(b <= end && end <= data_size, "tensor '%s' offsets [%llu, %llu) outside %llu data bytes",
               t.name.c_str(), (unsigned long long)b, (unsigned long long)end, (unsigned long long)data_size);
    unsigned __int128 want = numel * dtype_bytes(e["dtype"].get<std::string>());
    FUZZ_CHECK(want == end - b, "tensor '%s' spans %llu bytes for %llu expected", t.name.c_str(),
               (unsigned long long)(end - b), (unsigned long long)want);
    FUZZ_CHECK(t.nbytes() == end - b, "nbytes %zu != span", t.nbytes());
    if (end > b) FUZZ_CHECK(std::memcmp(t.data, body + b, end - b) == 0, "tensor '%s' bytes differ", t.name.c_str());
  }
}

// Touches every tensor of loaded weights (conversions read all bytes).
void touch(const qsearch::ModelWeights& w) {
  double sum = 0;
  auto add = [&](const qsearch::TensorView& t) {
    for (float x : t.to_float()) sum += x;
    FUZZ_CHECK(t.to_bf16().size() == static_cast<size_t>(t.numel()), "to_bf16 size");
  };
  add(w.embed_tokens());
  add(w.norm());
  const auto& l = w.layer(0);
  for (const auto* t : {&l.input_layernorm, &l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.q_norm,
                        &l.k_norm, &l.post_attention_layernorm, &l.gate_proj, &l.up_proj, &l.down_proj})
    add(*t);
  (void)sum;
}

// A valid shard for the index mode: every tensor of the micro config, bf16, without prefix.
void write_valid_shard(const std::string& path) {
  const int64_t h = 8, q = 8, kv = 4, hd = 4, inter = 16, vocab = 16;
  std::vector<std::pair<std::string, std::vector<int64_t>>> specs = {
      {"embed_tokens.weight", {vocab, h}}, {"norm.weight", {h}},
      {"layers.0.input_layernorm.weight", {h}}, {"layers.0.self_attn.q_proj.weight", {q, h}},
      {"layers.0.self_attn.k_proj.weight", {kv, h}}, {"layers.0.self_attn.v_proj.weight", {kv, h}},
      {"layers.0.self_attn.o_proj.weight", {h, q}}, {"layers.0.self_attn.q_norm.weight", {hd}},
      {"layers.0.self_attn.k_norm.weight", {hd}}, {"layers.0.post_attention_layernorm.weight", {h}},
      {"layers.0.mlp.gate_proj.weight", {inter, h}}, {"layers.0.mlp.up_proj.weight", {inter, h}},
      {"layers.0.mlp.down_proj.weight", {h, inter}}};
  static std::vector<std::vector<uint16_t>> storage;
  std::vector<qsearch::SafetensorsTensor> tensors;
  for (auto& [name, shape] : specs) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    storage.emplace_back(static_cast<size_t>(n), qsearch::float_to_bf16(0.5f));
    tensors.push_back({name, DType::kBF16, shape, storage.back().data()});
  }
  auto st = qsearch::write_safetensors(path, tensors);
  if (!st.is_ok()) {
    std::fprintf(stderr, "cannot write the shard: %s\n", st.to_string().c_str());
    std::exit(1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto c = qsearch::ModelConfig::from_json(kMicroConfig, "micro config");
  if (!c.is_ok()) {
    std::fprintf(stderr, "micro config rejected: %s\n", c.status().to_string().c_str());
    std::exit(1);
  }
  g_config = *c;
  const std::string& base = qsearch::fuzz::scratch_dir();
  g_file_dir = base + "/file";
  g_index_dir = base + "/index";
  ::mkdir(g_file_dir.c_str(), 0755);
  ::mkdir(g_index_dir.c_str(), 0755);
  write_valid_shard(g_index_dir + "/model-00001-of-00001.safetensors");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool index_mode = data[0] & 1;
  ++data;
  --size;
  if (!index_mode) {
    const std::string path = g_file_dir + "/model.safetensors";
    write_file(path, data, size);
    auto f = qsearch::SafetensorsFile::open(path);
    if (f.is_ok()) {
      check_accepted(**f, data, size);
    } else {
      FUZZ_CHECK(f.status().message().find(path) != std::string::npos,
                 "error does not name the file: %s", f.status().to_string().c_str());
    }
    auto w = qsearch::ModelWeights::open(g_file_dir, g_config);
    FUZZ_CHECK(!w.is_ok() || f.is_ok(), "weights opened a file SafetensorsFile rejected");
    if (w.is_ok()) touch(**w);
  } else {
    write_file(g_index_dir + "/model.safetensors.index.json", data, size);
    auto w = qsearch::ModelWeights::open(g_index_dir, g_config);
    if (w.is_ok()) touch(**w);
  }
  return 0;
}
