// Reading a Hugging Face tokenizer.json into the tables the tokenizer runs on. Internal to
// src/embed/tokenizer; the public API is tokenizer.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "embed/tokenizer/added_tokens.h"
#include "embed/tokenizer/bpe.h"

namespace qsearch {

struct TokenizerData {
  bool nfc = false;             // normalizer: NFC (or a Sequence of NFC) vs none
  bool ignore_merges = false;   // BPE.ignore_merges: a piece found whole in the vocab wins
  BpeModel bpe;
  // Byte-level token string -> id (the vocabulary as written in the file).
  StringIdMap vocab;
  // Raw bytes -> id, filled only when ignore_merges is set.
  StringIdMap vocab_bytes;
  // id -> the bytes it decodes to (raw bytes for vocabulary tokens, the content of added
  // tokens); empty for ids not in use.
  std::vector<std::string> id_bytes;
  std::vector<AddedToken> added;  // one per content, in file order, ids as HF assigns them
  std::unordered_map<std::string, int32_t> added_by_content;
  AddedTokenMatcher raw_matcher;         // added tokens with normalized == false
  AddedTokenMatcher normalized_matcher;  // added tokens with normalized == true
  // The post-processor's single-sequence template: ids before and after the text.
  std::vector<int32_t> prefix_ids;
  std::vector<int32_t> suffix_ids;
  int64_t vocab_size = 0;
};

// Parses tokenizer.json text. Unsupported component types (normalizer, pre-tokenizer, model,
// post-processor) give kInvalidArgument naming the component; a malformed file kCorruption.
StatusOr<std::unique_ptr<TokenizerData>> parse_tokenizer_json(std::string_view json);

}  // namespace qsearch
