// Tokenizer for Hugging Face tokenizer.json files of the Qwen2/Qwen3 family, exact to the
// Rust `tokenizers` library: added tokens split out first (longest match), NFC normalizer,
// Split pre-tokenizer with the Qwen2 regex, ByteLevel mapping, BPE by merge rank, and the
// post-processor (TemplateProcessing or ByteLevel).
//
// Supported tokenizer.json components (anything else is a kInvalidArgument naming it):
//   normalizer      null, NFC, or a Sequence of NFC (HF's NFC uses Unicode 9.0 data; so do we)
//   pre_tokenizer   Sequence[Split(the Qwen2 regex, Isolated), ByteLevel(use_regex false)]
//   model           BPE (merges "a b" or ["a", "b"], ignore_merges, no dropout/affixes)
//   post_processor  null, ByteLevel, TemplateProcessing (single template), Sequence of those
//   added_tokens    all flags (special, normalized, lstrip, rstrip, single_word); ids are
//                   assigned as HF assigns them when it loads the file
// "truncation" and "padding" in the file are ignored: callers truncate (see embedder.h).
// Implementation: src/embed/tokenizer/{tokenizer_json, added_tokens, unicode, pretokenizer,
// bpe}; parity with HF is tested in tests/tokenizer/ against the Rust library itself.
//
// Thread safety: a loaded Tokenizer is immutable; encode() may be called from many threads.
// Each thread keeps a small word cache per tokenizer (~200 KB).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace qsearch {

class ThreadPool;

// One token with the byte range [begin, end) of the input text it came from. Where NFC
// normalisation changed the text, a token's range covers the whole pre-normalisation span
// of the piece it belongs to.
struct TokenSpan {
  int32_t id;
  uint32_t begin;
  uint32_t end;
};

class Tokenizer {
 public:
  static StatusOr<std::unique_ptr<Tokenizer>> from_file(const std::string& path);
  static StatusOr<std::unique_ptr<Tokenizer>> from_json(std::string_view json);
  ~Tokenizer();

  // Encodes UTF-8 text. add_special applies the tokenizer.json post-processor.
  // Invalid UTF-8 gives kInvalidArgument naming the byte offset.
  StatusOr<std::vector<int32_t>> encode(std::string_view text, bool add_special = true) const;
  // As encode(), with byte offsets; tokens added by the post-processor get begin == end == size.
  StatusOr<std::vector<TokenSpan>> encode_with_offsets(std::string_view text,
                                                       bool add_special = true) const;
  // Encodes many texts on a pool (nullptr: the calling thread only), results in input order.
  std::vector<StatusOr<std::vector<int32_t>>> encode_batch(const std::vector<std::string>& texts,
                                                           bool add_special,
                                                           ThreadPool* pool) const;
  // Inverse of encode for display and tests (byte-level decode, added tokens as their text).
  std::string decode(const std::vector<int32_t>& ids) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // One past the largest id of the vocabulary and the added tokens.
  int64_t vocab_size() const;
  // True if the post-processor's single-sequence template ends with this token id
  // (Qwen3-Embedding's TemplateProcessing appends <|endoftext|>; a ByteLevel one adds nothing).
  bool post_processor_appends(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsearch
