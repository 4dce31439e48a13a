// ModelWeights: finds and checks every Qwen3 tensor in model.safetensors or a sharded
// checkpoint (model.safetensors.index.json), with or without the "model." prefix.
#include "embed/model/weights.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "embed/model/safetensors.h"

namespace qsearch {
namespace {

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

// Where each tensor name lives: one file, or the weight_map of an index.
struct TensorSource {
  std::string model_dir;
  std::string index_path;                              // empty for a single model.safetensors
  std::vector<SafetensorsFile*> files;                 // all opened files
  std::map<std::string, SafetensorsFile*> weight_map;  // index: name -> shard

  // Looks a tensor up by its bare name ("norm.weight"), trying "model." + name first.
  StatusOr<TensorView> get(const std::string& name, const std::vector<int64_t>& shape) const {
    for (const std::string& candidate : {"model." + name, name}) {
      const TensorView* t = nullptr;
      if (index_path.empty()) {
        t = files[0]->find(candidate);
      } else {
        auto it = weight_map.find(candidate);
        if (it == weight_map.end()) continue;
        t = it->second->find(candidate);
        if (!t)
          return corruption(index_path + " maps tensor \"" + candidate + "\" to " +
                            it->second->path() + ", which does not contain it");
      }
      if (!t) continue;
      if (t->shape != shape)
        return corruption(t->file + ": tensor \"" + t->name + "\" has shape " +
                          shape_string(t->shape) + ", expected " + shape_string(shape) +
                          " from config.json");
      return *t;
    }
    std::string where = index_path.empty() ? files[0]->path() : index_path;
    return not_found(where + ": tensor \"" + name + "\" (or \"model." + name + "\") is missing");
  }
};

namespace {

StatusOr<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
    case DType::kF32:
      return "float32";
  }
  return "?";
}

size_t dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }

float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    float f = static_cast<float>(mant) * (1.0f / 16777216.0f);  // subnormal: mant * 2^-24
    std::memcpy(&u, &f, 4);
    u |= sign;
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t float_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                        // below 2^-14: half subnormal or zero
    float af;
    std::memcpy(&af, &a, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(af * 16777216.0f));  // exact scale, RNE
  }
  uint32_t h = (((a >> 23) - 112) << 10) | ((a & 0x7fffffu) >> 13);
  uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may bump the exponent
  return sign | static_cast<uint16_t>(h);
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> TensorView::to_float() const {
  size_t n = static_cast<size_t>(numel());
  std::vector<float> out(n);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  if (dtype == DType::kF32) {
    if (n) std::memcpy(out.data(), p, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);  // the mapping may be unaligned
      out[i] = dtype == DType::kBF16 ? bf16_to_float(v) : f16_to_float(v);
    }
  }
  return out;
}

std::vector<uint16_t> TensorView::to_bf16() const {
  size_t n = static_cast<size_t>(numel());
  std::vector<uint16_t> out(n);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  if (dtype == DType::kBF16) {
    if (n) std::memcpy(out.data(), p, n * 2);
  } else if (dtype == DType::kF16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);
      out[i] = float_to_bf16(f16_to_float(v));
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] = float_to_bf16(v);
    }
  }
  return out;
}

ModelWeights::~ModelWeights() = default;

StatusOr<TensorView> ModelWeights::tensor(const std::string& name,
                                          const std::vector<int64_t>& shape) const {
  return source_->get(name, shape);
}

int64_t ModelWeights::total_bytes() const {
  int64_t total = static_cast<int64_t>(embed_tokens_.nbytes() + norm_.nbytes());
  for (const auto& l : layers_) {
    for (const TensorView* t :
         {&l.input_layernorm, &l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.q_norm, &l.k_norm,
          &l.post_attention_layernorm, &l.gate_proj, &l.up_proj, &l.down_proj})
      total += static_cast<int64_t>(t->nbytes());
  }
  return total;
}

StatusOr<std::unique_ptr<ModelWeights>> ModelWeights::open(const std::string& model_dir,
                                                           const ModelConfig& config) {
  std::unique_ptr<ModelWeights> w(new ModelWeights());
  w->source_ = std::make_unique<TensorSource>();
  TensorSource& src = *w->source_;
  src.model_dir = model_dir;
  std::string single = model_dir + "/model.safetensors";
  std::string index = model_dir + "/model.safetensors.index.json";
  if (file_exists(single)) {
    QS_ASSIGN_OR_RETURN(auto f, SafetensorsFile::open(single));
    src.files.push_back(f.get());
    w->files_.push_back(std::move(f));
  } else if (file_exists(index)) {
    src.index_path = index;
    QS_ASSIGN_OR_RETURN(std::string text, read_file(index));
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return corruption(index + ": not a valid JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object())
      return corruption(index + ": missing \"weight_map\" object");
    std::map<std::string, SafetensorsFile*> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string())
        return corruption(index + ": weight_map entry for tensor \"" + it.key() +
                          "\" is not a file name");
      std::string shard = it->get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..")
        return corruption(index + ": weight_map entry for tensor \"" + it.key() +
                          "\" names a bad shard \"" + shard + "\"");
      auto found = shards.find(shard);
      if (found == shards.end()) {
        std::string path = model_dir + "/" + shard;
        if (!file_exists(path))
          return not_found(index + ": shard " + shard + " (holding tensor \"" + it.key() +
                           "\") does not exist in " + model_dir);
        QS_ASSIGN_OR_RETURN(auto f, SafetensorsFile::open(path));
        found = shards.emplace(shard, f.get()).first;
        src.files.push_back(f.get());
        w->files_.push_back(std::move(f));
      }
      src.weight_map[it.key()] = found->second;
    }
    if (src.files.empty()) return corruption(index + ": weight_map is empty");
  } else {
    return not_found("model directory " + model_dir +
                     " has no model.safetensors or model.safetensors.index.json: download a "
                     "Qwen3-Embedding model (e.g. Qwen/Qwen3-Embedding-0.6B from Hugging Face) "
                     "or make one with `qsearch make-test-model`");
  }

  const int64_t h = config.hidden_size, q = config.q_width(), kv = config.kv_width();
  const int64_t hd = config.head_dim, inter = config.intermediate_size;
  QS_ASSIGN_OR_RETURN(w->embed_tokens_, src.get("embed_tokens.weight", {config.vocab_size, h}));
  w->layers_.resize(config.num_layers);
  for (int i = 0; i < config.num_layers; ++i) {
    LayerWeights& l = w->layers_[i];
    std::string p = "layers." + std::to_string(i) + ".";
    QS_ASSIGN_OR_RETURN(l.input_layernorm, src.get(p + "input_layernorm.weight", {h}));
    QS_ASSIGN_OR_RETURN(l.q_proj, src.get(p + "self_attn.q_proj.weight", {q, h}));
    QS_ASSIGN_OR_RETURN(l.k_proj, src.get(p + "self_attn.k_proj.weight", {kv, h}));
    QS_ASSIGN_OR_RETURN(l.v_proj, src.get(p + "self_attn.v_proj.weight", {kv, h}));
    QS_ASSIGN_OR_RETURN(l.o_proj, src.get(p + "self_attn.o_proj.weight", {h, q}));
    QS_ASSIGN_OR_RETURN(l.q_norm, src.get(p + "self_attn.q_norm.weight", {hd}));
    QS_ASSIGN_OR_RETURN(l.k_norm, src.get(p + "self_attn.k_norm.weight", {hd}));
    QS_ASSIGN_OR_RETURN(l.post_attention_layernorm,
                        src.get(p + "post_attention_layernorm.weight", {h}));
    QS_ASSIGN_OR_RETURN(l.gate_proj, src.get(p + "mlp.gate_proj.weight", {inter, h}));
    QS_ASSIGN_OR_RETURN(l.up_proj, src.get(p + "mlp.up_proj.weight", {inter, h}));
    QS_ASSIGN_OR_RETURN(l.down_proj, src.get(p + "mlp.down_proj.weight", {h, inter}));
  }
  QS_ASSIGN_OR_RETURN(w->norm_, src.get("norm.weight", {h}));
  return w;
}

}  // namespace qsearch
