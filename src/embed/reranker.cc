// The reranker facade (see reranker.h): prompt, cut, and the two LM-head rows.
#include "embed/reranker.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cmath>

#include "embed/model/weights.h"

namespace qsearch {
namespace {

constexpr std::string_view kPrefix =
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
    "the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n"
    "<|im_start|>user\n";
constexpr std::string_view kSuffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

const char* kDownloadHint =
    ": download a Qwen3-Reranker (e.g. `hf download Qwen/Qwen3-Reranker-0.6B --local-dir DIR`, or "
    "from ModelScope) or make a small random one with `qsearch make-test-model --reranker "
    "--tokenizer tokenizer.json --out DIR`";

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

StatusOr<int32_t> token_id(const Tokenizer& tok, const ModelConfig& config, const char* token) {
  std::optional<int32_t> id = tok.token_to_id(token);
  if (!id)
    return invalid_argument(std::string("the tokenizer has no token \"") + token +
                            "\" (not a Qwen3-Reranker tokenizer)");
  if (*id < 0 || *id >= config.vocab_size)
    return invalid_argument(std::string("token \"") + token + "\" has id " + std::to_string(*id) +
                            ", outside the model's vocabulary of " +
                            std::to_string(config.vocab_size));
  return *id;
}

std::vector<float> row_of(const TensorView& t, int64_t row, int hidden) {
  const size_t size = dtype_size(t.dtype);
  TensorView r = t;
  r.shape = {hidden};
  r.data = static_cast<const uint8_t*>(t.data) + static_cast<size_t>(row) * hidden * size;
  return r.to_float();
}

}  // namespace

std::string_view Reranker::prefix() { return kPrefix; }
std::string_view Reranker::suffix() { return kSuffix; }

std::string Reranker::format_body(std::string_view instruction, std::string_view query,
                                  std::string_view document) {
  std::string s = "<Instruct>: ";
  s.append(instruction);
  s += "\n<Query>: ";
  s.append(query);
  s += "\n<Document>: ";
  s.append(document);
  return s;
}

Reranker::Reranker(std::unique_ptr<Embedder> model, int32_t no_id, int32_t yes_id,
                   std::vector<float> no_row, std::vector<float> yes_row)
    : model_(std::move(model)),
      no_id_(no_id),
      yes_id_(yes_id),
      no_row_(std::move(no_row)),
      yes_row_(std::move(yes_row)) {
  // ASCII constants with added tokens: encoding cannot fail; prepare() checks they are set.
  if (auto p = model_->tokenizer().encode(kPrefix, /*add_special=*/false); p.is_ok())
    prefix_ids_ = std::move(p).value();
  if (auto s = model_->tokenizer().encode(kSuffix, /*add_special=*/false); s.is_ok())
    suffix_ids_ = std::move(s).value();
}

Reranker::~Reranker() = default;

StatusOr<std::unique_ptr<Reranker>> Reranker::open(const EmbedderOptions& options) {
  const std::string& dir = options.model_dir;
  if (dir.empty())
    return invalid_argument(std::string("no reranker directory given") + kDownloadHint);
  const std::string config_path = dir + "/config.json";
  if (!is_file(config_path))
    return not_found("reranker directory " + dir + " has no config.json" + kDownloadHint);
  if (!is_file(dir + "/tokenizer.json"))
    return not_found("reranker directory " + dir + " has no tokenizer.json" + kDownloadHint);
  QS_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::from_file(config_path));
  if (config.architecture != "Qwen3ForCausalLM")
    return invalid_argument(config_path + ": architecture " + config.architecture +
                            " has no LM head; a Qwen3-Reranker is a Qwen3ForCausalLM");

  // The LM-head rows, from a mapping of our own (the engines convert what they need at load).
  QS_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights, ModelWeights::open(dir, config));
  const TensorView* head = &weights->embed_tokens();
  StatusOr<TensorView> lm_head = not_found("");
  if (!config.tie_word_embeddings) {
    lm_head = weights->tensor("lm_head.weight", {config.vocab_size, config.hidden_size});
    if (!lm_head.is_ok()) {
      if (lm_head.status().code() == StatusCode::kNotFound)
        return not_found(dir +
                         ": config.json has tie_word_embeddings false but the checkpoint "
                         "has no lm_head.weight");
      return lm_head.status();
    }
    head = &*lm_head;
  }

  QS_ASSIGN_OR_RETURN(std::unique_ptr<Embedder> model, Embedder::open(options));
  const Tokenizer& tok = model->tokenizer();
  QS_ASSIGN_OR_RETURN(int32_t no_id, token_id(tok, config, "no"));
  QS_ASSIGN_OR_RETURN(int32_t yes_id, token_id(tok, config, "yes"));
  if (tok.post_processor_appends(kEndOfTextId))
    spdlog::warn(
        "reranker {}: its tokenizer.json appends <|endoftext|> like a Qwen3-Embedding "
        "one; is this an embedding model? (pairs are tokenized without special tokens)",
        dir);
  std::vector<float> no_row = row_of(*head, no_id, config.hidden_size);
  std::vector<float> yes_row = row_of(*head, yes_id, config.hidden_size);
  return std::make_unique<Reranker>(std::move(model), no_id, yes_id, std::move(no_row),
                                    std::move(yes_row));
}

StatusOr<PreparedPair> Reranker::prepare(std::string_view query, std::string_view document,
                                         std::string_view instruction, int max_tokens) const {
  if (max_tokens < 0)
    return invalid_argument("max_tokens must be >= 0, got " + std::to_string(max_tokens));
  if (prefix_ids_.empty() || suffix_ids_.empty())
    return internal_error("the reranker prompt could not be tokenized");
  const int64_t limit =
      std::min<int64_t>(max_tokens == 0 ? kDefaultMaxTokens : max_tokens, max_input_tokens());
  const int64_t fixed = static_cast<int64_t>(prefix_ids_.size() + suffix_ids_.size());
  if (limit < fixed + 1)
    return invalid_argument("max_tokens " + std::to_string(limit) +
                            " cannot hold the reranker prompt (" + std::to_string(fixed) +
                            " tokens) and a document");
  QS_ASSIGN_OR_RETURN(std::vector<int32_t> body,
                      model_->tokenizer().encode(format_body(instruction, query, document),
                                                 /*add_special=*/false));
  PreparedPair p;
  p.input_tokens = static_cast<int32_t>(fixed + static_cast<int64_t>(body.size()));
  if (static_cast<int64_t>(body.size()) > limit - fixed) {
    p.truncated_tokens = static_cast<int32_t>(static_cast<int64_t>(body.size()) - (limit - fixed));
    body.resize(static_cast<size_t>(limit - fixed));
  }
  p.ids.reserve(static_cast<size_t>(fixed) + body.size());
  p.ids.insert(p.ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  p.ids.insert(p.ids.end(), body.begin(), body.end());
  p.ids.insert(p.ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return p;
}

float Reranker::score_hidden(const float* h) const {
  double no = 0, yes = 0;
  for (size_t j = 0; j < no_row_.size(); ++j) {
    no += static_cast<double>(h[j]) * no_row_[j];
    yes += static_cast<double>(h[j]) * yes_row_[j];
  }
  // Logits in fp32 as the model's; softmax over the two of them, max-subtracted.
  const float a = static_cast<float>(no), b = static_cast<float>(yes);
  const float m = std::max(a, b);
  const float ea = std::exp(a - m), eb = std::exp(b - m);
  return eb / (ea + eb);
}

Status Reranker::score(const std::vector<PreparedPair>& pairs, std::vector<float>* scores) {
  std::vector<std::vector<int32_t>> seqs;
  seqs.reserve(pairs.size());
  for (const auto& p : pairs) seqs.push_back(p.ids);
  std::vector<std::vector<float>> hidden;
  QS_RETURN_IF_ERROR(model_->last_hidden_states(seqs, &hidden));
  scores->resize(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) (*scores)[i] = score_hidden(hidden[i].data());
  return Status::ok();
}

}  // namespace qsearch
