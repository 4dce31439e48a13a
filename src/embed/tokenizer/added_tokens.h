// Added tokens (special or not) split out of the text before the model sees it, with the
// semantics of Hugging Face's AddedVocabulary::find_matches: leftmost-longest, non-overlapping
// matches; single_word matches discarded (scanning resumes after them) when a word character
// touches either side; lstrip / rstrip widen a match over adjacent white space.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qsearch {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;  // matched against the normalised text instead of the raw text
};

class AddedTokenMatcher {
 public:
  // `patterns` are the strings to look for (a token's content, or its normalised content).
  void build(std::vector<AddedToken> tokens, std::vector<std::string> patterns);
  bool empty() const { return tokens_.empty(); }

  // Splits valid UTF-8 `s` into segments covering it: on_segment(begin, end, id) with id -1
  // for ordinary text (never empty) and the token id for an added token.
  template <typename OnSegment>
  void split(std::string_view s, OnSegment&& on_segment) const {
    size_t done = 0;
    size_t pos = 0;
    while (true) {
      Match m = next_match(s, pos);
      if (m.token < 0) break;
      size_t start = m.begin, stop = m.end;
      pos = m.end;
      const AddedToken& t = tokens_[static_cast<size_t>(m.token)];
      if (t.single_word && !single_word_ok(s, start, stop)) continue;
      if (t.lstrip) start = std::max(lstrip_start(s, start), done);
      if (t.rstrip) stop = rstrip_stop(s, stop);
      if (done < start) on_segment(done, start, -1);
      on_segment(start, stop, t.id);
      done = stop;
      if (pos < done) pos = done;
    }
    if (done < s.size()) on_segment(done, s.size(), -1);
  }

 private:
  struct Match {
    int32_t token;  // index into tokens_, -1: none
    size_t begin, end;
  };
  Match next_match(std::string_view s, size_t from) const;
  static bool single_word_ok(std::string_view s, size_t start, size_t stop);
  static size_t lstrip_start(std::string_view s, size_t start);
  static size_t rstrip_stop(std::string_view s, size_t stop);

  std::vector<AddedToken> tokens_;
  std::vector<std::string> patterns_;
  bool first_byte_[256] = {};
  int distinct_first_bytes_ = 0;
  unsigned char only_first_byte_ = 0;
  // Patterns by first byte, longest first.
  std::vector<std::vector<int32_t>> by_first_byte_;
};

}  // namespace qsearch
