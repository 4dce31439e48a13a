// The embedding facade (see embedder.h): instruction format, EOS, truncation, token-budget
// batching over one or more backends.
#include "embed/embedder.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace qsearch {
namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

const char* kDownloadHint =
    ": download a Qwen3-Embedding model (e.g. `hf download Qwen/Qwen3-Embedding-0.6B "
    "--local-dir DIR`, or from ModelScope) or make a small random one with "
    "`qsearch make-test-model --tokenizer tokenizer.json --out DIR`";

// Batches of consecutive items, each within the token budget (an item over it goes alone).
struct BatchPlan {
  size_t begin, end;  // items [begin, end)
};

std::vector<BatchPlan> plan_batches(const std::vector<const std::vector<int32_t>*>& items,
                                    int64_t budget) {
  std::vector<BatchPlan> plan;
  size_t begin = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    int64_t len = static_cast<int64_t>(items[i]->size());
    if (i > begin && tokens + len > budget) {
      plan.push_back({begin, i});
      begin = i;
      tokens = 0;
    }
    tokens += len;
  }
  if (begin < items.size()) plan.push_back({begin, items.size()});
  return plan;
}

// ids already end with EOS: truncates to limit tokens, keeping the EOS last.
PreparedText truncate_keep_eos(std::vector<int32_t> ids, int64_t limit, int32_t eos_id) {
  PreparedText p;
  p.input_tokens = static_cast<int32_t>(ids.size());
  if (static_cast<int64_t>(ids.size()) > limit) {
    ids.resize(limit);
    ids.back() = eos_id;
    p.truncated_tokens = p.input_tokens - static_cast<int32_t>(limit);
  }
  p.ids = std::move(ids);
  return p;
}

}  // namespace

Embedder::Embedder(ModelConfig config, std::unique_ptr<Tokenizer> tokenizer,
                   std::vector<std::unique_ptr<Backend>> backends, int32_t eos_id)
    : config_(std::move(config)),
      tokenizer_(std::move(tokenizer)),
      backends_(std::move(backends)),
      eos_id_(eos_id) {
  for (size_t i = 0; i < backends_.size(); ++i)
    backend_mu_.push_back(std::make_unique<std::mutex>());
}

Embedder::~Embedder() = default;

StatusOr<std::unique_ptr<Embedder>> Embedder::open(const EmbedderOptions& options) {
  const std::string& dir = options.model_dir;
  if (dir.empty()) return invalid_argument(std::string("no model directory given") + kDownloadHint);
  if (!is_dir(dir)) return not_found("model directory " + dir + " does not exist" + kDownloadHint);
  std::string config_path = dir + "/config.json";
  if (!is_file(config_path))
    return not_found("model directory " + dir + " has no config.json" + kDownloadHint);
  std::string tokenizer_path = dir + "/tokenizer.json";
  if (!is_file(tokenizer_path))
    return not_found("model directory " + dir + " has no tokenizer.json" + kDownloadHint);
  QS_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::from_file(config_path));
  auto tok = Tokenizer::from_file(tokenizer_path);
  if (!tok.is_ok()) return tok.status().with_context("loading " + tokenizer_path);

  QS_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Backend>> backends,
                      make_backends(options, config));
  return std::make_unique<Embedder>(std::move(config), std::move(tok).value(), std::move(backends));
}

StatusOr<std::vector<std::unique_ptr<Backend>>> make_backends(const EmbedderOptions& options,
                                                             const ModelConfig& config) {
  const std::string& dir = options.model_dir;
  std::string device = options.device.empty() ? "auto" : options.device;
  std::vector<int> gpus = options.gpus;
  if (device.rfind("cuda:", 0) == 0) {  // "cuda:N": that one GPU
    try {
      size_t pos = 0;
      int n = std::stoi(device.substr(5), &pos);
      if (pos != device.size() - 5 || n < 0) throw std::invalid_argument("device");
      gpus = {n};
    } catch (const std::exception&) {
      return invalid_argument("bad device \"" + device + "\" (cpu, cuda, cuda:N or auto)");
    }
    device = "cuda";
  }
  if (device == "auto") device = cuda_device_count() > 0 ? "cuda" : "cpu";

  std::vector<std::unique_ptr<Backend>> backends;
  if (options.dtype == EngineDType::kFP8 && device == "cpu")
    return unavailable(std::string(kFp8NeedsGpuMessage) + (options.device == "cpu"
                                                               ? "; the CPU engine is fp32 only"
                                                               : "; no CUDA GPU is visible"));
  if (device == "cpu") {
    QS_ASSIGN_OR_RETURN(auto b,
                        make_cpu_backend(dir, config, options.max_batch_tokens, options.threads));
    backends.push_back(std::move(b));
  } else if (device == "cuda") {
    int count = cuda_device_count();
    if (gpus.empty())
      for (int i = 0; i < count; ++i) gpus.push_back(i);
    if (gpus.empty())
      return unavailable("device cuda requested but no CUDA GPU is visible (use --device cpu)");
    for (int g : gpus) {
      if (g >= count)
        return invalid_argument("GPU " + std::to_string(g) + " requested but only " +
                                std::to_string(count) + " visible");
      QS_ASSIGN_OR_RETURN(
          auto b, make_cuda_backend(dir, config, options.max_batch_tokens, g, options.dtype));
      backends.push_back(std::move(b));
    }
  } else {
    return invalid_argument("unknown device \"" + device + "\" (cpu, cuda, cuda:N or auto)");
  }
  return backends;
}

int64_t Embedder::max_input_tokens() const {
  int64_t limit = config_.max_position_embeddings;
  for (const auto& b : backends_) limit = std::min(limit, b->max_sequence_tokens());
  return limit;
}

std::string Embedder::device_name() const {
  std::string s;
  for (size_t i = 0; i < backends_.size(); ++i) {
    if (i) s += ',';
    s += backends_[i]->name();
  }
  return s;
}

std::string Embedder::format_query(std::string_view instruction, std::string_view text) {
  std::string s = "Instruct: ";
  s.append(instruction);
  s += "\nQuery:";
  s.append(text);
  return s;
}

StatusOr<PreparedText> Embedder::prepare(std::string_view text, std::string_view instruction,
                                         int max_tokens) const {
  if (max_tokens < 0)
    return invalid_argument("max_tokens must be >= 0, got " + std::to_string(max_tokens));
  StatusOr<std::vector<int32_t>> ids =
      instruction.empty() ? tokenizer_->encode(text, /*add_special=*/true)
                          : tokenizer_->encode(format_query(instruction, text), true);
  if (!ids.is_ok()) return ids.status();
  // The post-processor of Qwen3-Embedding's tokenizer.json appends <|endoftext|>; a plain Qwen3
  // tokenizer (ByteLevel post-processor) adds nothing, so we append it. Never test the last id:
  // a text may itself end in "<|endoftext|>".
  if (!tokenizer_->post_processor_appends(eos_id_)) ids->push_back(eos_id_);
  int64_t limit =
      std::min<int64_t>(max_tokens == 0 ? kDefaultMaxTokens : max_tokens, max_input_tokens());
  return truncate_keep_eos(std::move(ids).value(), limit, eos_id_);
}

StatusOr<PreparedText> Embedder::prepare_ids(std::vector<int32_t> ids, int max_tokens) const {
  if (max_tokens < 0)
    return invalid_argument("max_tokens must be >= 0, got " + std::to_string(max_tokens));
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= config_.vocab_size)
      return invalid_argument("token id " + std::to_string(ids[i]) + " at position " +
                              std::to_string(i) + " is outside the vocabulary 0.." +
                              std::to_string(config_.vocab_size - 1));
  if (ids.empty() || ids.back() != eos_id_) ids.push_back(eos_id_);
  int64_t limit =
      std::min<int64_t>(max_tokens == 0 ? kDefaultMaxTokens : max_tokens, max_input_tokens());
  return truncate_keep_eos(std::move(ids), limit, eos_id_);
}

Status Embedder::embed(const std::vector<PreparedText>& items, int dim,
                       std::vector<std::vector<float>>* out) {
  const int hidden = hidden_size();
  if (dim == 0) dim = hidden;
  if (dim < 32 || dim > hidden)
    return unprocessable("dimension " + std::to_string(dim) + " out of range 32.." +
                         std::to_string(hidden));
  std::vector<const std::vector<int32_t>*> seqs;
  seqs.reserve(items.size());
  for (const auto& item : items) seqs.push_back(&item.ids);
  return run(seqs, dim, /*raw=*/false, out);
}

Status Embedder::last_hidden_states(const std::vector<std::vector<int32_t>>& sequences,
                                    std::vector<std::vector<float>>* out) {
  std::vector<const std::vector<int32_t>*> seqs;
  seqs.reserve(sequences.size());
  for (const auto& s : sequences) seqs.push_back(&s);
  return run(seqs, hidden_size(), /*raw=*/true, out);
}

Status Embedder::run(const std::vector<const std::vector<int32_t>*>& items, int dim, bool raw,
                     std::vector<std::vector<float>>* out) {
  const int hidden = hidden_size();
  if (backends_.empty()) return unavailable("the embedder has no engine");
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i]->empty()) return invalid_argument("item " + std::to_string(i) + " is empty");
  out->assign(items.size(), {});
  if (items.empty()) return Status::ok();

  int64_t budget = backends_[0]->max_batch_tokens();
  for (const auto& b : backends_) budget = std::min(budget, b->max_batch_tokens());
  std::vector<BatchPlan> plan = plan_batches(items, std::max<int64_t>(budget, 1));

  // Runs batch k on backend b (callers hold that backend's mutex).
  auto run_batch = [&](size_t k, size_t b, std::vector<float>& buf) -> Status {
    const BatchPlan& p = plan[k];
    EngineBatch batch;
    batch.raw_hidden = raw;
    for (size_t i = p.begin; i < p.end; ++i) batch.add(*items[i], dim);
    buf.resize(batch.num_sequences() * static_cast<size_t>(hidden));
    QS_RETURN_IF_ERROR(backends_[b]->embed(batch, buf.data()));
    for (size_t i = p.begin; i < p.end; ++i) {
      const float* row = buf.data() + (i - p.begin) * static_cast<size_t>(hidden);
      (*out)[i].assign(row, row + dim);
    }
    return Status::ok();
  };

  size_t workers = std::min(backends_.size(), plan.size());
  if (workers <= 1) {
    std::lock_guard<std::mutex> lock(*backend_mu_[0]);
    std::vector<float> buf;
    for (size_t k = 0; k < plan.size(); ++k) QS_RETURN_IF_ERROR(run_batch(k, 0, buf));
    return Status::ok();
  }
  // Several backends: one thread per backend pulls the next batch; one batch per backend at
  // a time. The first error stops the others from taking new batches.
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<Status> errors(workers);
  std::vector<std::thread> threads;
  for (size_t b = 0; b < workers; ++b) {
    threads.emplace_back([&, b] {
      std::vector<float> buf;
      std::lock_guard<std::mutex> lock(*backend_mu_[b]);
      for (size_t k; !failed.load() && (k = next.fetch_add(1)) < plan.size();) {
        Status s = run_batch(k, b, buf);
        if (!s.is_ok()) {
          errors[b] = s;
          failed.store(true);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : errors) QS_RETURN_IF_ERROR(s);
  return Status::ok();
}

Status Embedder::embed_texts(const std::vector<std::string>& texts, std::string_view instruction,
                             int dim, int max_tokens, std::vector<std::vector<float>>* out) {
  std::vector<PreparedText> items;
  items.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto p = prepare(texts[i], instruction, max_tokens);
    if (!p.is_ok()) return p.status().with_context("text " + std::to_string(i));
    items.push_back(std::move(p).value());
  }
  return embed(items, dim, out);
}

}  // namespace qsearch
