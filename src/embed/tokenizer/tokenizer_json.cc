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

Status parse_model(const json& m, TokenizerData* d) {
  std::string type = type_of(m);
  if (!m.is_object() || (type != "BPE" && !(type.empty() && m.contains("merges"))))
    return invalid_argument("unsupported model type '" + type + "' (supported: BPE)");
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0)
    return invalid_argument("unsupported BPE dropout (it makes tokenization random)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !m[key].get<std::string>().empty())
      return invalid_argument(std::string("unsupported BPE ") + key + " (byte-level BPE uses none)");
  if (flag(m, "byte_fallback")) return invalid_argument("unsupported BPE byte_fallback");
  d->ignore_merges = flag(m, "ignore_merges");
  if (!m.contains("vocab") || !m["vocab"].is_object()) return corruption("model.vocab missing");
  if (!m.contains("merges") || !m["merges"].is_array()) return corruption("model.merges missing");

  const json& vocab = m["vocab"];
  d->vocab.reserve(vocab.size() * 2);
  std::string bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) return corruption("vocab entry '" + it.key() + "' has no integer id");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX - 1) return corruption("vocab id out of range for '" + it.key() + "'");
    d->vocab[it.key()] = static_cast<int32_t>(id);
    if (static_cast<size_t>(id) >= d->id_bytes.size()) d->id_bytes.resize(static_cast<size_t>(id) + 1);
    // Tokens that are not byte-level strings decode to their own UTF-8 (as HF's decoder does).
    if (!byte_level_decode(it.key(), &bytes)) bytes = it.key();
    if (d->ignore_merges) d->vocab_bytes[bytes] = static_cast<int32_t>(id);
    d->id_bytes[static_cast<size_t>(id)] = bytes;
    d->vocab_size = std::max<int64_t>(d->vocab_size, id + 1);
  }
  int32_t byte_ids[256];
  const ByteLevelTable& bl = ByteLevelTable::get();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(bl.byte_to_char[b], &ch);
    auto it = d->vocab.find(ch);
    if (it == d->vocab.end())
      return invalid_argument("vocabulary lacks the byte-level token for byte " + std::to_string(b) +
                              " (not a byte-level BPE vocabulary)");
    byte_ids[b] = it->second;
  }
  d->bpe.set_byte_ids(byte_ids);

  const json& merges = m["merges"];
  MergeMap& mm = d->bpe.merges();
  mm.reserve(merges.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& e = merges[rank];
    if (e.is_string()) {  // "a b"
      const std::string& s = e.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return corruption("merge #" + std::to_string(rank) + " '" + s + "' is not two tokens separated by one space");
      left.assign(s, 0, sp);
      right.assign(s, sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {  // ["a", "b"]
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      return corruption("merge #" + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto a = d->vocab.find(left), b = d->vocab.find(right), ab = d->vocab.find(left + right);
    if (a == d->vocab.end() || b == d->vocab.end() || ab == d->vocab.end())
      return corruption("merge #" + std::to_string(rank) + " (" + left + ", " + right +
                        ") uses a token missing from the vocabulary");
    mm.insert(a->second, b->second, {static_cast<int32_t>(rank), ab->second});
  }
  return Status::ok();
}

Status parse_added_tokens(const json& j, TokenizerData* d) {
  if (j.is_null()) return Status::ok();
  if (!j.is_array()) return corruption("added_tokens is not an array");
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const json& t : j) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content"))
      return corruption("added token without id/content: " + t.dump());
    AddedToken a;
    a.id = t["id"].get<int32_t>();
    a.content = t["content"].get<std::string>();
    if (auto bad = unicode::find_invalid_utf8(a.content)) return corruption("added token with invalid UTF-8");
    a.special = flag(t, "special");
    a.single_word = flag(t, "single_word");
    a.lstrip = flag(t, "lstrip");
    a.rstrip = flag(t, "rstrip");
    a.normalized = flag(t, "normalized", !a.special);
    d->added.push_back(a);
    d->added_by_content[a.content] = a.id;
    if (a.id < 0) return corruption("added token '" + a.content + "' has a negative id");
    if (static_cast<size_t>(a.id) >= d->id_bytes.size()) d->id_bytes.resize(static_cast<size_t>(a.id) + 1);
    d->id_bytes[static_cast<size_t>(a.id)] = a.content;
    d->vocab_size = std::max<int64_t>(d->vocab_size, int64_t{a.id} + 1);
    if (a.normalized) {
      std::string pattern = a.content, norm;
      if (d->nfc && unicode::nfc_normalize(a.content, &norm, nullptr)) pattern = norm;
      normalized_patterns.push_back(pattern);
      normalized.push_back(std::move(a));
    } else {
      raw_patterns.push_back(a.content);
      raw.push_back(std::move(a));
    }
  }
  d->raw_matcher.build(std::move(raw), std::move(raw_patterns));
  d->normalized_matcher.build(std::move(normalized), std::move(normalized_patterns));
  return Status::ok();
}

StatusOr<std::unique_ptr<TokenizerData>> parse_document(const json& doc) {
  if (!doc.is_object()) return corruption("tokenizer.json is not a JSON object");
  auto d = std::make_unique<TokenizerData>();
  auto get = [&](const char* key) -> const json& {
    static const json null_value;
    auto it = doc.find(key);
    return it == doc.end() ? null_value : *it;
  };
  QS_RETURN_IF_ERROR(parse_normalizer(get("normalizer"), d.get()).with_context("normalizer"));
  QS_RETURN_IF_ERROR(parse_pre_tokenizer(get("pre_tokenizer")).with_context("pre_tokenizer"));
  QS_RETURN_IF_ERROR(parse_model(get("model"), d.get()).with_context("model"));
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
    json doc = json::parse(text.begin(), text.end());
    return parse_document(doc);
  } catch (const std::exception& e) {
    return corruption(std::string("malformed tokenizer.json: ") + e.what());
  }
}

}  // namespace qsearch
