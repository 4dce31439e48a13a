#include "embed/tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <exception>

#include "embed/tokenizer/pretokenizer.h"
#include "embed/tokenizer/unicode.h"

namespace qsearch {
namespace {

using json = nlohmann::json;

std::string type_of(const json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool flag(const json& j, const char* key, bool fallback = false) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

Status parse_normalizer(const json& j, TokenizerData* d) {
  if (j.is_null()) return Status::ok();
  std::string type = type_of(j);
  if (type == "NFC") {
    d->nfc = true;
    return Status::ok();
  }
  if (type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array()) {
    for (const json& n : j["normalizers"]) QS_RETURN_IF_ERROR(parse_normalizer(n, d));
    return Status::ok();
  }
  return invalid_argument("unsupported normalizer '" + (type.empty() ? j.dump() : type) +
                          "' (supported: NFC, a Sequence of NFC, or none)");
}

Status parse_pre_tokenizer(const json& j) {
  const std::string expected =
      "a Sequence of Split (the Qwen2 regex, behavior Isolated, invert false) and ByteLevel "
      "(add_prefix_space false, use_regex false)";
  if (type_of(j) != "Sequence" || !j.contains("pretokenizers") || !j["pretokenizers"].is_array() ||
      j["pretokenizers"].size() != 2)
    return invalid_argument("unsupported pre_tokenizer " + j.dump().substr(0, 200) +
                            " (supported: " + expected + ")");
  const json& split = j["pretokenizers"][0];
  const json& byte_level = j["pretokenizers"][1];
  if (type_of(split) != "Split")
    return invalid_argument("unsupported pre_tokenizer '" + type_of(split) + "' (supported: " + expected + ")");
  const json* pattern = nullptr;
  if (split.contains("pattern") && split["pattern"].is_object() && split["pattern"].contains("Regex"))
    pattern = &split["pattern"]["Regex"];
  if (!pattern || !pattern->is_string() || pattern->get<std::string>() != kQwen2SplitPattern)
    return invalid_argument("unsupported Split pattern " +
                            (split.contains("pattern") ? split["pattern"].dump() : std::string("(none)")) +
                            " (only the Qwen2 regex is implemented)");
  if (split.value("behavior", "") != "Isolated" || flag(split, "invert"))
    return invalid_argument("unsupported Split behavior/invert (supported: Isolated, invert false)");
  if (type_of(byte_level) != "ByteLevel" || flag(byte_level, "add_prefix_space") ||
      flag(byte_level, "use_regex", true))
    return invalid_argument("unsupported second pre_tokenizer " + byte_level.dump() +
                            " (supported: ByteLevel with add_prefix_space false, use_regex false)");
  return Status::ok();
}

// Adds one post-processor's template to prefix/suffix.
Status parse_post_processor(const json& j, TokenizerData* d) {
  if (j.is_null()) return Status::ok();
  std::string type = type_of(j);
  if (type == "ByteLevel") return Status::ok();  // only adjusts offsets when trim_offsets is set
  if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
    for (const json& p : j["processors"]) QS_RETURN_IF_ERROR(parse_post_processor(p, d));
    return Status::ok();
  }
  if (type != "TemplateProcessing")
    return invalid_argument("unsupported post_processor '" + type +
                            "' (supported: TemplateProcessing, ByteLevel, Sequence of those, none)");
  if (!j.contains("single") || !j["single"].is_array())
    return corruption("TemplateProcessing without a 'single' template");
  const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json::object();
  bool seen_sequence = false;
  for (const json& item : j["single"]) {
    if (item.contains("Sequence")) {
      if (seen_sequence || item["Sequence"].value("id", "") != "A")
        return invalid_argument("unsupported TemplateProcessing single template " + j["single"].dump());
      seen_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken"))
      return corruption("TemplateProcessing item " + item.dump() + " is neither Sequence nor SpecialToken");
    std::string name = item["SpecialToken"].value("id", "");
    if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
      return corruption("TemplateProcessing special token '" + name + "' has no ids in special_tokens");
    auto& target = seen_sequence ? d->suffix_ids : d->prefix_ids;
    for (const json& id : specials[name]["ids"]) target.push_back(id.get<int32_t>());
  }
  if (!seen_sequence) return invalid_argument("TemplateProcessing single template lacks $A");
  return Status::ok();
}

// vocab and merges are taken out of the document by the SAX loader (see below).
struct VocabAndMerges {
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false;
  bool has_merges = false;
};

Status parse_model(const json& m, VocabAndMerges& vm, TokenizerData* d) {
  std::string type = type_of(m);
  if (!m.is_object() || (type != "BPE" && !(type.empty() && vm.has_merges)))
    return invalid_argument("unsupported model type '" + type + "' (supported: BPE)");
  if (m.contains("dropout") && !m["dropout"].is_null() &&
      (!m["dropout"].is_number() || m["dropout"].get<double>() != 0.0))
    return invalid_argument("unsupported BPE dropout (it makes tokenization random)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !(m[key].is_string() && m[key].get<std::string>().empty()))
      return invalid_argument(std::string("unsupported BPE ") + key + " (byte-level BPE uses none)");
  if (flag(m, "byte_fallback")) return invalid_argument("unsupported BPE byte_fallback");
  d->ignore_merges = flag(m, "ignore_merges");
  if (!vm.has_vocab) return corruption("model.vocab missing");
  if (!vm.has_merges) return corruption("model.merges missing");

  d->vocab.reserve(vm.vocab.size());
  std::string bytes;
  for (const auto& [token, id] : vm.vocab) {
    if (id < 0 || id > INT32_MAX - 1) return corruption("vocab id out of range for '" + token + "'");
    if (static_cast<size_t>(id) >= d->id_bytes.size()) d->id_bytes.resize(static_cast<size_t>(id) + 1);
    // Tokens that are not byte-level strings decode to their own UTF-8 (as HF's decoder does).
    if (!byte_level_decode(token, &bytes)) bytes = token;
    if (d->ignore_merges) d->vocab_bytes.insert(bytes, static_cast<int32_t>(id));
    d->id_bytes[static_cast<size_t>(id)] = bytes;
    d->vocab_size = std::max<int64_t>(d->vocab_size, id + 1);
    d->vocab.insert(token, static_cast<int32_t>(id));
  }
  int32_t byte_ids[256];
  const ByteLevelTable& bl = ByteLevelTable::get();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(bl.byte_to_char[b], &ch);
    int32_t id = d->vocab.find(ch);
    if (id < 0)
      return invalid_argument("vocabulary lacks the byte-level token for byte " + std::to_string(b) +
                              " (not a byte-level BPE vocabulary)");
    byte_ids[b] = id;
  }
  d->bpe.set_byte_ids(byte_ids);

  MergeMap& mm = d->bpe.merges();
  mm.reserve(vm.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vm.merges.size(); ++rank) {
    const auto& [left, right] = vm.merges[rank];
    joined.assign(left).append(right);
    int32_t a = d->vocab.find(left), b = d->vocab.find(right), ab = d->vocab.find(joined);
    if (a < 0 || b < 0 || ab < 0)
      return corruption("merge #" + std::to_string(rank) + " (" + left + ", " + right +
                        ") uses a token missing from the vocabulary");
    mm.insert(a, b, {static_cast<int32_t>(rank), ab});
  }
  return Status::ok();
}

// Ids are assigned the way Hugging Face does when it loads the file (one add_tokens call per
// token, in file order), not taken from the file's "id" (HF only warns when they differ): a
// content already in the model vocabulary gets that id, an already added content keeps its
// id (with the new flags), anything else the next free id.
Status parse_added_tokens(const json& j, TokenizerData* d) {
  if (j.is_null()) return Status::ok();
  if (!j.is_array()) return corruption("added_tokens is not an array");
  const int64_t model_size = static_cast<int64_t>(d->vocab.size());
  int64_t max_added = -1;
  for (const json& t : j) {
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
      return corruption("added token without content: " + t.dump());
    AddedToken a;
    a.content = t["content"].get<std::string>();
    if (unicode::find_invalid_utf8(a.content)) return corruption("added token with invalid UTF-8");
    a.special = flag(t, "special");
    a.single_word = flag(t, "single_word");
    a.lstrip = flag(t, "lstrip");
    a.rstrip = flag(t, "rstrip");
    a.normalized = flag(t, "normalized", !a.special);
    if (a.content.empty()) continue;  // HF ignores empty added tokens
    auto known = d->added_by_content.find(a.content);
    if (known != d->added_by_content.end()) {
      a.id = known->second;
      for (AddedToken& old : d->added)
        if (old.content == a.content) old = a;
      continue;
    }
    int32_t in_vocab = d->vocab.find(a.content);
    int64_t id = in_vocab >= 0                                  ? in_vocab
                 : max_added < 0                                ? model_size
                 : (max_added >= model_size || model_size == 0) ? max_added + 1
                                                                : model_size;
    if (id > INT32_MAX - 1) return corruption("too many added tokens");
    a.id = static_cast<int32_t>(id);
    max_added = std::max(max_added, id);
    d->added_by_content[a.content] = a.id;
    d->added.push_back(std::move(a));
  }
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const AddedToken& a : d->added) {
    if (static_cast<size_t>(a.id) >= d->id_bytes.size()) d->id_bytes.resize(static_cast<size_t>(a.id) + 1);
    d->id_bytes[static_cast<size_t>(a.id)] = a.content;
    d->vocab_size = std::max<int64_t>(d->vocab_size, int64_t{a.id} + 1);
    if (a.normalized) {
      std::string pattern = a.content, norm;
      if (d->nfc && unicode::nfc_normalize(a.content, &norm, nullptr)) pattern = norm;
      normalized_patterns.push_back(pattern);
      normalized.push_back(a);
    } else {
      raw_patterns.push_back(a.content);
      raw.push_back(a);
    }
  }
  d->raw_matcher.build(std::move(raw), std::move(raw_patterns));
  d->normalized_matcher.build(std::move(normalized), std::move(normalized_patterns));
  return Status::ok();
}

// SAX handler: builds a DOM of the document except model.vocab and model.merges (151k entries
// each in Qwen3), which go straight into flat vectors; 3-4x faster than a full DOM.
class Loader {
 public:
  json root;
  VocabAndMerges vm;
  std::string error;

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) {
    if (mode_ == kVocab) return vocab_id(v);
    return value(json(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode_ == kVocab) return vocab_id(v > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    return value(json(v));
  }
  bool number_float(json::number_float_t v, const std::string&) { return value(json(v)); }
  bool binary(json::binary_t&) { return fail("unexpected binary value"); }
  bool string(std::string& v) {
    if (mode_ == kMerges) {
      if (merge_level_ == 1) {
        if (pair_n_ >= 2) return fail("merge #" + std::to_string(vm.merges.size()) + " has more than two parts");
        (pair_n_ == 0 ? pair_.first : pair_.second) = std::move(v);
        ++pair_n_;
        return true;
      }
      size_t sp = v.find(' ');
      if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos)
        return fail("merge #" + std::to_string(vm.merges.size()) + " '" + v +
                    "' is not two tokens separated by one space");
      vm.merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
      return true;
    }
    if (mode_ == kVocab) return fail("vocab entry '" + key_ + "' has no integer id");
    return value(json(std::move(v)));
  }
  bool key(std::string& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) {
    if (mode_ != kDom) return fail(mode_ == kVocab ? "model.vocab holds a nested object" : "malformed merge");
    if (in_model() && key_ == "vocab") {
      mode_ = kVocab;
      vm.has_vocab = true;
      vm.vocab.reserve(1 << 17);
      return true;
    }
    return open(json::object());
  }
  bool end_object() {
    if (mode_ == kVocab) {
      mode_ = kDom;
      return true;
    }
    return close();
  }
  bool start_array(std::size_t) {
    if (mode_ == kMerges) {
      if (merge_level_ != 0) return fail("merge #" + std::to_string(vm.merges.size()) + " is nested too deep");
      merge_level_ = 1;
      pair_n_ = 0;
      return true;
    }
    if (mode_ == kVocab) return fail("model.vocab holds an array");
    if (in_model() && key_ == "merges") {
      mode_ = kMerges;
      merge_level_ = 0;
      vm.has_merges = true;
      vm.merges.reserve(1 << 17);
      return true;
    }
    return open(json::array());
  }
  bool end_array() {
    if (mode_ == kMerges) {
      if (merge_level_ == 0) {
        mode_ = kDom;
        return true;
      }
      if (pair_n_ != 2) return fail("merge #" + std::to_string(vm.merges.size()) + " is not a pair");
      vm.merges.push_back(std::move(pair_));
      merge_level_ = 0;
      return true;
    }
    return close();
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    return fail("JSON syntax error near byte " + std::to_string(position) + ": " + e.what());
  }

 private:
  enum Mode { kDom, kVocab, kMerges };
  bool fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }
  bool in_model() const { return stack_.size() == 2 && path_[1] == "model" && stack_[1]->is_object(); }
  bool vocab_id(int64_t id) {
    vm.vocab.emplace_back(std::move(key_), id);
    key_.clear();
    return true;
  }
  json* insert(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json* parent = stack_.back();
    if (parent->is_array()) {
      parent->push_back(std::move(v));
      return &parent->back();
    }
    json& slot = (*parent)[key_];
    slot = std::move(v);
    return &slot;
  }
  bool value(json v) {
    if (mode_ == kVocab) return fail("vocab entry '" + key_ + "' has no integer id");
    if (mode_ == kMerges) return fail("merge #" + std::to_string(vm.merges.size()) + " is not a string pair");
    insert(std::move(v));
    return true;
  }
  bool open(json v) {
    std::string name = stack_.empty() || stack_.back()->is_array() ? std::string() : key_;
    stack_.push_back(insert(std::move(v)));
    path_.push_back(std::move(name));
    return true;
  }
  bool close() {
    stack_.pop_back();
    path_.pop_back();
    return true;
  }

  Mode mode_ = kDom;
  std::vector<json*> stack_;
  std::vector<std::string> path_;
  std::string key_;
  int merge_level_ = 0;
  int pair_n_ = 0;
  std::pair<std::string, std::string> pair_;
};

StatusOr<std::unique_ptr<TokenizerData>> parse_document(const json& doc, VocabAndMerges& vm) {
  if (!doc.is_object()) return corruption("tokenizer.json is not a JSON object");
  auto d = std::make_unique<TokenizerData>();
  auto get = [&](const char* key) -> const json& {
    static const json null_value;
    auto it = doc.find(key);
    return it == doc.end() ? null_value : *it;
  };
  QS_RETURN_IF_ERROR(parse_normalizer(get("normalizer"), d.get()).with_context("normalizer"));
  QS_RETURN_IF_ERROR(parse_pre_tokenizer(get("pre_tokenizer")).with_context("pre_tokenizer"));
  QS_RETURN_IF_ERROR(parse_model(get("model"), vm, d.get()).with_context("model"));
  QS_RETURN_IF_ERROR(parse_added_tokens(get("added_tokens"), d.get()).with_context("added_tokens"));
  QS_RETURN_IF_ERROR(parse_post_processor(get("post_processor"), d.get()).with_context("post_processor"));
  for (int32_t id : d->prefix_ids)
    if (id < 0 || id >= d->vocab_size) return corruption("post_processor uses unknown id " + std::to_string(id));
  for (int32_t id : d->suffix_ids)
    if (id < 0 || id >= d->vocab_size) return corruption("post_processor uses unknown id " + std::to_string(id));
  return d;
}

}  // namespace

StatusOr<std::unique_ptr<TokenizerData>> parse_tokenizer_json(std::string_view text) {
  try {
    Loader loader;
    if (!json::sax_parse(text.begin(), text.end(), &loader) || !loader.error.empty())
      return corruption("malformed tokenizer.json: " +
                        (loader.error.empty() ? std::string("parse failed") : loader.error));
    return parse_document(loader.root, loader.vm);
  } catch (const std::exception& e) {
    return corruption(std::string("malformed tokenizer.json: ") + e.what());
  }
}

}  // namespace qsearch
