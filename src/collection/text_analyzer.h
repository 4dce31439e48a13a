// Text analysis of the lexical index: the same for documents and queries.
//
// 1. Word-break iteration with ICU (the root locale's word rules; Chinese, Japanese, Thai, Khmer,
//    Lao and Burmese are segmented by ICU's dictionaries). Segments without a letter, number,
//    kana or ideograph (spaces, punctuation, symbols) are dropped.
// 2. Each word is NFKC-normalised and case-folded (ICU's NFKC_Casefold: also removes default
//    ignorables such as zero-width joiners and soft hyphens); a word that folds to nothing is
//    dropped, and a folded word is cut to kMaxTokenBytes (at a code point boundary).
// Offsets are byte offsets of the word in the input (before normalisation), so a match maps back
// to the original text. Invalid UTF-8 bytes are treated as U+FFFD (one code point each).
//
// Thread safety: analyze() may be called from many threads at once (ICU objects are per thread).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qsearch {

inline constexpr size_t kMaxTokenBytes = 256;

struct TextToken {
  std::string term;  // normalised, case-folded UTF-8
  size_t begin = 0;  // byte range of the word in the input
  size_t end = 0;
};

// Calls emit(term, begin, end) per word, in text order; emit returns false to stop early.
void analyze_text(std::string_view text,
                  const std::function<bool(std::string_view term, size_t begin, size_t end)>& emit);
std::vector<TextToken> analyze_text(std::string_view text);

// Code points (counted as UTF-8 lead bytes and invalid bytes, like the chunker) in text[0, byte).
int32_t code_points_before(std::string_view text, size_t byte);
// The bytes of code points [start, end) of text (clamped to the text).
std::string_view code_point_range(std::string_view text, int32_t start, int32_t end);

}  // namespace qsearch
