#include "service/chunking.h"

#include <algorithm>
#include <string>

namespace qsearch {
namespace {

bool is_char_start(unsigned char b) { return (b & 0xC0) != 0x80; }

// The code point that ends right before byte `at` (0 when at == 0 or the bytes are not UTF-8).
char32_t code_point_before(std::string_view text, size_t at) {
  if (at == 0) return 0;
  size_t begin = at - 1;
  while (begin > 0 && !is_char_start(static_cast<unsigned char>(text[begin]))) --begin;
  const auto b0 = static_cast<unsigned char>(text[begin]);
  const size_t len = at - begin;
  if (len == 1) return b0 < 0x80 ? b0 : 0;
  char32_t cp = 0;
  if (len == 2 && (b0 & 0xE0) == 0xC0) cp = b0 & 0x1F;
  else if (len == 3 && (b0 & 0xF0) == 0xE0) cp = b0 & 0x0F;
  else if (len == 4 && (b0 & 0xF8) == 0xF0) cp = b0 & 0x07;
  else return 0;
  for (size_t i = begin + 1; i < at; ++i) cp = (cp << 6) | (static_cast<unsigned char>(text[i]) & 0x3F);
  return cp;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

std::vector<TextChunk> plan_chunks(std::string_view text, const std::vector<TokenSpan>& tokens,
                                   const ChunkingOptions& options) {
  const size_t n = tokens.size();
  const size_t window = static_cast<size_t>(std::max(1, options.max_tokens - 1));  // EOS follows
  const size_t overlap = static_cast<size_t>(std::max(0, options.overlap));
  // Byte where token i starts (the text's end for i == n); token offsets never go backwards.
  auto byte_at = [&](size_t i) -> size_t {
    return i < n ? std::min<size_t>(tokens[i].begin, text.size()) : text.size();
  };
  // A chunk may start or end before token i only where a new character starts there.
  auto boundary = [&](size_t i) {
    if (i == 0 || i == n) return true;
    const size_t b = byte_at(i);
    return b > byte_at(i - 1) && b < text.size() && is_char_start(static_cast<unsigned char>(text[b]));
  };
  auto sentence_end = [&](size_t i) {
    const size_t b = byte_at(i);
    const char32_t prev = code_point_before(text, b);
    switch (prev) {
      case U'\n':
      case U'\u3002': case U'\uFF01': case U'\uFF1F':  // 。！？
      case U'\u0964': case U'\u061F': case U'\u06D4':  // । ؟ ۔
        return true;
      case U'.': case U'!': case U'?': case U'\u2026':  // … too
        return b == text.size() || is_space(text[b]);
      default:
        return false;
    }
  };

  // cp_before[b]: characters that start before byte b (a chunk boundary byte starts its own).
  std::vector<int32_t> cp_before;
  cp_before.reserve(text.size() + 1);
  int32_t count = 0;
  for (size_t b = 0; b < text.size(); ++b) {
    cp_before.push_back(count);
    if (is_char_start(static_cast<unsigned char>(text[b]))) ++count;
  }
  cp_before.push_back(count);
  auto make = [&](size_t first, size_t last) {
    TextChunk c;
    c.first_token = first;
    c.last_token = last;
    c.byte_begin = first == 0 ? 0 : byte_at(first);
    c.byte_end = byte_at(last);
    c.start = cp_before[c.byte_begin];
    c.end = cp_before[c.byte_end];
    return c;
  };

  std::vector<TextChunk> chunks;
  size_t s = 0;
  for (;;) {
    if (n - s <= window) {
      chunks.push_back(make(s, n));
      break;
    }
    const size_t hi = s + window;
    const size_t lo = s + std::max<size_t>(1, window - window / 4);
    size_t e = 0;
    for (size_t i = hi; i >= lo && e == 0; --i)
      if (boundary(i) && sentence_end(i)) e = i;
    for (size_t i = hi; i > s && e == 0; --i)
      if (boundary(i)) e = i;
    for (size_t i = hi + 1; i <= n && e == 0; ++i)  // one character longer than the window
      if (boundary(i)) e = i;
    chunks.push_back(make(s, e));
    if (e >= n) break;
    size_t next = e > s + overlap ? e - overlap : s + 1;
    if (next <= s) next = s + 1;
    while (next < e && !boundary(next)) ++next;
    s = next;
  }
  return chunks;
}

std::string_view code_point_slice(std::string_view text, int32_t start, int32_t end) {
  size_t begin_byte = text.size(), end_byte = text.size();
  int32_t cp = 0;
  for (size_t b = 0; b < text.size(); ++b) {
    if (!is_char_start(static_cast<unsigned char>(text[b]))) continue;
    if (cp == start) begin_byte = b;
    if (cp == end) {
      end_byte = b;
      break;
    }
    ++cp;
  }
  if (begin_byte > end_byte) return {};
  return text.substr(begin_byte, end_byte - begin_byte);
}

}  // namespace qsearch
