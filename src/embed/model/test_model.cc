// The random-weight test model generator (see test_model.h).
#include "embed/model/test_model.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/thread_pool.h"
#include "embed/model/safetensors.h"

namespace qsearch {
namespace {

using ojson = nlohmann::ordered_json;

constexpr int32_t kEos = 151643;  // <|endoftext|>
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  return h;
}

struct Shape {
  const char* name;
  int hidden, layers, heads, kv_heads, head_dim, intermediate;
};
// Real Qwen3-Embedding shapes, and "tiny" for tests (q width 512 != hidden, like 0.6B).
constexpr Shape kShapes[] = {
    {"tiny", 128, 2, 4, 2, 128, 384},
    {"0.6B", 1024, 28, 16, 8, 128, 3072},
    {"4B", 2560, 36, 32, 8, 128, 9728},
    {"8B", 4096, 36, 32, 8, 128, 12288},
};

const char* torch_dtype_name(DType t) { return dtype_name(t); }

ojson config_json(const Shape& s, int layers, DType dtype, bool tied = true) {
  ojson c;
  c["architectures"] = {"Qwen3ForCausalLM"};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = kEos;
  c["eos_token_id"] = kEos;
  c["head_dim"] = s.head_dim;
  c["hidden_act"] = "silu";
  c["hidden_size"] = s.hidden;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = s.intermediate;
  c["max_position_embeddings"] = 32768;
  c["max_window_layers"] = layers;
  c["model_type"] = "qwen3";
  c["num_attention_heads"] = s.heads;
  c["num_hidden_layers"] = layers;
  c["num_key_value_heads"] = s.kv_heads;
  c["rms_norm_eps"] = 1e-06;
  c["rope_scaling"] = nullptr;
  c["rope_theta"] = 1000000;
  c["sliding_window"] = nullptr;
  c["tie_word_embeddings"] = tied;
  c["torch_dtype"] = torch_dtype_name(dtype);
  c["transformers_version"] = "4.51.3";
  c["use_cache"] = true;
  c["use_sliding_window"] = false;
  c["vocab_size"] = 151669;
  return c;
}

// Qwen3-Embedding's post-processor: appends <|endoftext|> to every sequence.
ojson embedding_post_processor() {
  ojson seq_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  ojson seq_b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  ojson eos0 = {{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}};
  ojson eos1 = {{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 1}}}};
  ojson p;
  p["type"] = "TemplateProcessing";
  p["single"] = ojson::array({seq_a, eos0});
  p["pair"] = ojson::array({seq_a, eos0, seq_b, eos1});
  p["special_tokens"] = {
      {"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {kEos}}, {"tokens", {"<|endoftext|>"}}}}};
  return p;
}

ojson tokenizer_config_json() {
  ojson c;
  c["add_prefix_space"] = false;
  c["bos_token"] = nullptr;
  c["clean_up_tokenization_spaces"] = false;
  c["eos_token"] = "<|im_end|>";
  c["errors"] = "replace";
  c["model_max_length"] = 131072;
  c["pad_token"] = "<|endoftext|>";
  c["padding_side"] = "left";
  c["split_special_tokens"] = false;
  c["tokenizer_class"] = "Qwen2Tokenizer";
  c["unk_token"] = nullptr;
  return c;
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return io_error(path + ": cannot create: " + std::strerror(errno));
  out << text;
  out.close();
  if (!out) return io_error(path + ": write failed");
  return Status::ok();
}

Status make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
        return io_error("cannot create directory " + cur + ": " + std::strerror(errno));
    }
    if (i < dir.size()) cur.push_back(dir[i]);
  }
  return Status::ok();
}

// The tokenizer.json to write: the given one checked to be a Qwen2/Qwen3 tokenizer, with
// Qwen3-Embedding's post-processor (embedding) or unchanged (reranker).
StatusOr<std::string> model_tokenizer_json(const std::string& path, bool embedding) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open tokenizer " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  // nlohmann::json (sorted keys), not ordered_json: the latter's linear-time key lookup makes
  // parsing a 151k-entry vocab quadratic. Key order carries no meaning in tokenizer.json.
  nlohmann::json tok = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (tok.is_discarded() || !tok.is_object()) return invalid_argument(path + ": not valid JSON");
  bool has_eos = false;
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array())
    for (const auto& t : tok["added_tokens"])
      if (t.is_object() && t.value("content", "") == "<|endoftext|>" && t.value("id", -1) == kEos)
        has_eos = true;
  if (!has_eos)
    return invalid_argument(path +
                            ": no added token <|endoftext|> with id 151643 "
                            "(not a Qwen2/Qwen3 tokenizer.json)");
  if (!embedding) return ss.str();
  tok["post_processor"] = nlohmann::json::parse(embedding_post_processor().dump());
  try {
    return tok.dump();
  } catch (const std::exception& e) {
    return invalid_argument(path + ": " + e.what());
  }
}

enum class Init { kMatrix, kEmbedding, kNorm };

struct PlannedTensor {
  std::string name;  // bare name, without "model."
  std::vector<int64_t> shape;
  Init init;
  int64_t bytes;
};

}  // namespace

namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

inline uint64_t splitmix_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline double to_uniform(uint64_t x) { return (static_cast<double>(x >> 11) + 0.5) * 0x1.0p-53; }

}  // namespace

uint64_t TestRng::next_u64() { return splitmix_mix(state_ += kGolden); }

double TestRng::uniform() { return to_uniform(next_u64()); }

// normal() draws pairs: values 2p and 2p+1 come from uniforms 2p and 2p+1 of the stream, and
// uniform i from state seed + (i + 1) * golden.
double TestRng::normal_at(uint64_t seed, uint64_t j) {
  double c, s;
  normal_pair(seed, j >> 1, &c, &s);
  return (j & 1) ? s : c;
}

void TestRng::normal_pair(uint64_t seed, uint64_t p, double* first, double* second) {
  const double u1 = to_uniform(splitmix_mix(seed + (2 * p + 1) * kGolden));
  const double u2 = to_uniform(splitmix_mix(seed + (2 * p + 2) * kGolden));
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double a = 6.283185307179586 * u2;
  *first = r * std::cos(a);
  *second = r * std::sin(a);
}

double TestRng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double r = std::sqrt(-2.0 * std::log(uniform()));
  double a = 6.283185307179586 * uniform();
  spare_ = r * std::sin(a);
  has_spare_ = true;
  return r * std::cos(a);
}

std::string checksum_hex(uint64_t checksum) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(checksum));
  return buf;
}

StatusOr<ModelConfig> test_model_config(const std::string& shape, int layers) {
  for (const Shape& s : kShapes) {
    if (shape != s.name) continue;
    if (layers < 0) return invalid_argument("layers must be >= 0");
    return ModelConfig::from_json(
        config_json(s, layers > 0 ? layers : s.layers, DType::kBF16).dump(), "test model " + shape);
  }
  return invalid_argument("unknown test model shape \"" + shape + "\" (tiny, 0.6B, 4B, 8B)");
}

StatusOr<TestModelInfo> write_test_model(const TestModelOptions& o) {
  const Shape* shape = nullptr;
  for (const Shape& s : kShapes)
    if (o.shape == s.name) shape = &s;
  if (!shape) return invalid_argument("unknown shape \"" + o.shape + "\" (tiny, 0.6B, 4B, 8B)");
  if (o.layers < 0) return invalid_argument("layers must be >= 0");
  if (o.out_dir.empty()) return invalid_argument("no output directory");
  const int layers = o.layers > 0 ? o.layers : shape->layers;
  QS_ASSIGN_OR_RETURN(std::string tokenizer, model_tokenizer_json(o.tokenizer_path, !o.reranker));
  const bool tied = !o.reranker || o.tied;
  ojson config = config_json(*shape, layers, o.dtype, tied);

  TestModelInfo info;
  QS_ASSIGN_OR_RETURN(info.config, ModelConfig::from_json(config.dump(), "test model config"));
  const ModelConfig& c = info.config;

  // The tensors, in the fixed generation order.
  std::vector<PlannedTensor> plan;
  auto add = [&](std::string name, std::vector<int64_t> shape_, Init init) {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    plan.push_back(
        {std::move(name), std::move(shape_), init, n * static_cast<int64_t>(dtype_size(o.dtype))});
  };
  const int64_t h = c.hidden_size, q = c.q_width(), kv = c.kv_width(), hd = c.head_dim;
  const int64_t inter = c.intermediate_size;
  add("embed_tokens.weight", {c.vocab_size, h}, Init::kEmbedding);
  for (int i = 0; i < layers; ++i) {
    std::string p = "layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {h}, Init::kNorm);
    add(p + "self_attn.q_proj.weight", {q, h}, Init::kMatrix);
    add(p + "self_attn.k_proj.weight", {kv, h}, Init::kMatrix);
    add(p + "self_attn.v_proj.weight", {kv, h}, Init::kMatrix);
    add(p + "self_attn.o_proj.weight", {h, q}, Init::kMatrix);
    add(p + "self_attn.q_norm.weight", {hd}, Init::kNorm);
    add(p + "self_attn.k_norm.weight", {hd}, Init::kNorm);
    add(p + "post_attention_layernorm.weight", {h}, Init::kNorm);
    add(p + "mlp.gate_proj.weight", {inter, h}, Init::kMatrix);
    add(p + "mlp.up_proj.weight", {inter, h}, Init::kMatrix);
    add(p + "mlp.down_proj.weight", {h, inter}, Init::kMatrix);
  }
  add("norm.weight", {h}, Init::kNorm);
  if (o.lm_head || !tied) add("lm_head.weight", {c.vocab_size, h}, Init::kMatrix);

  // Shards: consecutive runs of tensors of about total / shards bytes each.
  if (o.shards < 1 || o.shards > static_cast<int>(plan.size()))
    return invalid_argument("shards must be 1.." + std::to_string(plan.size()));
  int64_t total = 0;
  for (const auto& t : plan) total += t.bytes;
  std::vector<size_t> shard_end;  // plan index one past each shard
  {
    int64_t target = (total + o.shards - 1) / o.shards, acc = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      acc += plan[i].bytes;
      size_t remaining_tensors = plan.size() - i - 1;
      size_t remaining_shards = static_cast<size_t>(o.shards) - shard_end.size() - 1;
      if (remaining_shards > 0 && (acc >= target * static_cast<int64_t>(shard_end.size() + 1) ||
                                   remaining_tensors == remaining_shards))
        shard_end.push_back(i + 1);
    }
    shard_end.push_back(plan.size());
  }

  QS_RETURN_IF_ERROR(make_dirs(o.out_dir));
  auto shard_name = [&](size_t s) {
    if (o.shards == 1) return std::string("model.safetensors");
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05d.safetensors", s + 1, o.shards);
    return std::string(buf);
  };
  // lm_head.weight sits outside the "model." module in Hugging Face checkpoints.
  const bool prefixed = o.prefix || o.reranker;
  auto stored_name = [&](const std::string& bare) {
    return (prefixed && bare != "lm_head.weight" ? "model." : "") + bare;
  };
  ThreadPool pool(o.threads > 0 ? static_cast<size_t>(o.threads) : 0);
  uint64_t normals = 0;  // values of the normal stream used so far
  uint64_t checksum = kFnvOffset;
  nlohmann::json weight_map = nlohmann::json::object();
  // Tensor i+1 is generated on the pool while a writer thread checksums and writes tensor i
  // (FNV-1a is sequential: for an 8B model it is the longest step), in two buffers.
  std::vector<uint8_t> buffers[2];
  int cur = 0;
  std::thread writer;
  bool written = true;  // false once a write failed; read after joining the writer
  auto join_writer = [&] {
    if (writer.joinable()) writer.join();
  };
  auto generate = [&](const PlannedTensor& t, std::vector<uint8_t>& bytes) {
    bytes.resize(static_cast<size_t>(t.bytes));
    const int64_t n = t.bytes / static_cast<int64_t>(dtype_size(o.dtype));
    const uint64_t first = normals;
    auto store = [&](size_t k, double z) {
      const double v = t.init == Init::kNorm        ? 1.0 + 0.1 * z
                       : t.init == Init::kEmbedding ? 0.05 * z
                                                    : 0.02 * z;
      const float f = static_cast<float>(v);
      if (o.dtype == DType::kF32) {
        std::memcpy(&bytes[4 * k], &f, 4);
      } else {
        uint16_t b = o.dtype == DType::kBF16 ? float_to_bf16(f) : float_to_f16(f);
        std::memcpy(&bytes[2 * k], &b, 2);
      }
    };
    pool.parallel_for(static_cast<size_t>(n), [&](size_t begin, size_t end) {
      size_t k = begin;
      if (k < end && ((first + k) & 1)) {  // the second value of a pair begun elsewhere
        store(k, TestRng::normal_at(o.seed, first + k));
        ++k;
      }
      for (; k + 1 < end; k += 2) {  // both values of a Box-Muller pair at once
        double c, sn;
        TestRng::normal_pair(o.seed, (first + k) >> 1, &c, &sn);
        store(k, c);
        store(k + 1, sn);
      }
      if (k < end) store(k, TestRng::normal_at(o.seed, first + k));
    });
    normals += static_cast<uint64_t>(n);
  };
  size_t begin = 0;
  for (size_t s = 0; s < shard_end.size(); ++s) {
    std::vector<SafetensorsTensor> meta;
    for (size_t i = begin; i < shard_end[s]; ++i)
      meta.push_back({stored_name(plan[i].name), o.dtype, plan[i].shape, nullptr});
    std::string file = shard_name(s);
    std::string path = o.out_dir + "/" + file;
    FILE* out = std::fopen(path.c_str(), "wb");
    if (!out) return io_error(path + ": cannot create: " + std::strerror(errno));
    std::string header = safetensors_header(meta, {{"format", "pt"}});
    bool ok = std::fwrite(header.data(), 1, header.size(), out) == header.size();
    for (size_t i = begin; ok && i < shard_end[s]; ++i) {
      const PlannedTensor& t = plan[i];
      generate(t, buffers[cur]);
      join_writer();
      if (!written) break;
      writer = std::thread([&, out, bytes = &buffers[cur], name = &t.name] {
        checksum = fnv1a(checksum, name->data(), name->size());
        checksum = fnv1a(checksum, bytes->data(), bytes->size());
        if (std::fwrite(bytes->data(), 1, bytes->size(), out) != bytes->size()) written = false;
      });
      cur ^= 1;
      weight_map[stored_name(t.name)] = file;
    }
    join_writer();
    ok = ok && written;
    if (std::fclose(out) != 0) ok = false;
    if (!ok) return io_error(path + ": write failed");
    info.files.push_back(file);
    begin = shard_end[s];
  }
  if (o.shards > 1) {
    nlohmann::json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;  // nlohmann::json sorts keys, as transformers does
    std::string file = "model.safetensors.index.json";
    QS_RETURN_IF_ERROR(write_text(o.out_dir + "/" + file, index.dump(2) + "\n"));
    info.files.push_back(file);
  }
  info.checksum = checksum;
  info.bytes = total;

  QS_RETURN_IF_ERROR(write_text(o.out_dir + "/config.json", config.dump(2) + "\n"));
  QS_RETURN_IF_ERROR(write_text(o.out_dir + "/tokenizer.json", tokenizer));
  QS_RETURN_IF_ERROR(
      write_text(o.out_dir + "/tokenizer_config.json", tokenizer_config_json().dump(2) + "\n"));
  ojson meta;
  meta["generator"] = "qsearch make-test-model";
  meta["seed"] = o.seed;
  meta["shape"] = o.shape;
  meta["layers"] = layers;
  meta["dtype"] = dtype_name(o.dtype);
  meta["prefix"] = prefixed;
  meta["kind"] = o.reranker ? "reranker" : "embedding";
  meta["tie_word_embeddings"] = tied;
  meta["shards"] = o.shards;
  meta["checksum"] = checksum_hex(checksum);
  QS_RETURN_IF_ERROR(write_text(o.out_dir + "/test_model.json", meta.dump(2) + "\n"));
  for (const char* f :
       {"config.json", "tokenizer.json", "tokenizer_config.json", "test_model.json"})
    info.files.push_back(f);
  return info;
}

}  // namespace qsearch
