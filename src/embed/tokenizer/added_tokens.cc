#include "embed/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

#include "embed/tokenizer/unicode.h"

namespace qsearch {

void AddedTokenMatcher::build(std::vector<AddedToken> tokens, std::vector<std::string> patterns) {
  tokens_.clear();
  patterns_.clear();
  by_first_byte_.assign(256, {});
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (patterns[i].empty()) continue;  // HF ignores empty added tokens
    auto b = static_cast<unsigned char>(patterns[i][0]);
    by_first_byte_[b].push_back(static_cast<int32_t>(tokens_.size()));
    first_byte_[b] = true;
    tokens_.push_back(std::move(tokens[i]));
    patterns_.push_back(std::move(patterns[i]));
  }
  distinct_first_bytes_ = 0;
  for (int b = 0; b < 256; ++b) {
    if (!first_byte_[b]) continue;
    ++distinct_first_bytes_;
    only_first_byte_ = static_cast<unsigned char>(b);
    // Longest first; among equal lengths the earlier token (aho-corasick reports the pattern
    // added first).
    std::stable_sort(by_first_byte_[b].begin(), by_first_byte_[b].end(), [&](int32_t x, int32_t y) {
      return patterns_[x].size() > patterns_[y].size();
    });
  }
}

AddedTokenMatcher::Match AddedTokenMatcher::next_match(std::string_view s, size_t from) const {
  const char* p = s.data();
  const size_t n = s.size();
  size_t i = from;
  while (i < n) {
    if (distinct_first_bytes_ == 1) {
      const void* hit = std::memchr(p + i, only_first_byte_, n - i);
      if (!hit) break;
      i = static_cast<size_t>(static_cast<const char*>(hit) - p);
    } else {
      while (i < n && !first_byte_[static_cast<unsigned char>(p[i])]) ++i;
      if (i >= n) break;
    }
    for (int32_t t : by_first_byte_[static_cast<unsigned char>(p[i])]) {
      const std::string& pat = patterns_[static_cast<size_t>(t)];
      if (pat.size() <= n - i && std::memcmp(p + i, pat.data(), pat.size()) == 0)
        return {t, i, i + pat.size()};
    }
    ++i;
  }
  return {-1, 0, 0};
}

namespace {

// Start of the character that ends at byte `end` (exclusive).
size_t prev_char_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && unicode::is_continuation(static_cast<unsigned char>(s[i]))) --i;
  return i;
}

uint8_t class_of_char_at(std::string_view s, size_t i) {
  size_t len;
  return unicode::ClassTable::get()(unicode::decode_utf8(s.data(), i, &len));
}

}  // namespace

bool AddedTokenMatcher::single_word_ok(std::string_view s, size_t start, size_t stop) {
  if (start > 0 && (class_of_char_at(s, prev_char_start(s, start)) & unicode::kWord)) return false;
  if (stop < s.size() && (class_of_char_at(s, stop) & unicode::kWord)) return false;
  return true;
}

size_t AddedTokenMatcher::lstrip_start(std::string_view s, size_t start) {
  while (start > 0) {
    size_t prev = prev_char_start(s, start);
    if (!(class_of_char_at(s, prev) & unicode::kSpace)) break;
    start = prev;
  }
  return start;
}

size_t AddedTokenMatcher::rstrip_stop(std::string_view s, size_t stop) {
  while (stop < s.size()) {
    size_t len;
    char32_t cp = unicode::decode_utf8(s.data(), stop, &len);
    if (!(unicode::ClassTable::get()(cp) & unicode::kSpace)) break;
    stop += len;
  }
  return stop;
}

}  // namespace qsearch
