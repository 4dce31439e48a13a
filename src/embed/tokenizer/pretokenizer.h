// The Split pre-tokenizer of Qwen2/Qwen3 (behavior Isolated), hand-written with the exact
// semantics the regex has in Hugging Face tokenizers (Oniguruma, leftmost-first alternation,
// backtracking):
//
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N} | ?[^\s\p{L}\p{N}]+[\r\n]*
//   | \s*[\r\n]+ | \s+(?!\S) | \s+
//
// Every character starts a match of some alternative and no alternative matches the empty
// string, so the matches tile the text: each match is one piece.
#pragma once

#include <cstddef>
#include <string_view>

#include "embed/tokenizer/unicode.h"

namespace qsearch {

// The exact pattern string this pre-tokenizer implements (as written in tokenizer.json).
inline constexpr std::string_view kQwen2SplitPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Calls on_piece(begin, end) for each piece of valid UTF-8 `s`, in order.
template <typename OnPiece>
void split_qwen2(std::string_view s, const unicode::ClassTable& table, OnPiece&& on_piece) {
  using unicode::kLetter;
  using unicode::kNumber;
  using unicode::kSpace;
  const char* p = s.data();
  const size_t n = s.size();
  // Class of the character at byte i (n: end of text, class 0); len receives its byte length.
  auto class_at = [&](size_t i, size_t* len) -> uint8_t {
    char32_t cp = unicode::decode_utf8(p, i, len);
    return table(cp);
  };
  auto scan_letters = [&](size_t i) {  // end of the run of \p{L} starting at i
    while (i < n) {
      size_t l;
      if (!(class_at(i, &l) & kLetter)) break;
      i += l;
    }
    return i;
  };
  auto lower = [](char c) { return static_cast<char>(c | 0x20); };  // ASCII letters only

  size_t i = 0;
  while (i < n) {
    const char c = p[i];
    size_t len;
    const uint8_t k = class_at(i, &len);

    // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d); under (?i) 's' also matches U+017F (long s).
    if (c == '\'' && i + 1 < n) {
      const char a = p[i + 1];
      const char la = lower(a);
      size_t end = 0;
      if (la == 's' || la == 't' || la == 'm' || la == 'd') {
        end = i + 2;
      } else if (static_cast<unsigned char>(a) == 0xC5 && i + 2 < n &&
                 static_cast<unsigned char>(p[i + 2]) == 0xBF) {
        end = i + 3;
      } else if (i + 2 < n && (la == 'r' || la == 'v' || la == 'l')) {
        const char lb = lower(p[i + 2]);
        if ((la == 'l' && lb == 'l') || (la != 'l' && lb == 'e')) end = i + 3;
      }
      if (end) {
        on_piece(i, end);
        i = end;
        continue;
      }
    }
    // 2. [^\r\n\p{L}\p{N}]?\p{L}+
    if (k & kLetter) {
      size_t end = scan_letters(i + len);
      on_piece(i, end);
      i = end;
      continue;
    }
    if (c != '\r' && c != '\n' && !(k & kNumber) && i + len < n) {
      size_t l2;
      if (class_at(i + len, &l2) & kLetter) {
        size_t end = scan_letters(i + len + l2);
        on_piece(i, end);
        i = end;
        continue;
      }
    }
    // 3. \p{N}
    if (k & kNumber) {
      on_piece(i, i + len);
      i += len;
      continue;
    }
    // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    {
      size_t j = i;
      bool ok = false;
      if (!(k & kSpace)) {
        ok = true;  // not L, not N, not space
      } else if (c == ' ' && i + 1 < n) {
        size_t l2;
        if (!(class_at(i + 1, &l2) & (kSpace | kLetter | kNumber))) {
          ok = true;
          j = i + 1;
        }
      }
      if (ok) {
        while (j < n) {
          size_t l2;
          if (class_at(j, &l2) & (kSpace | kLetter | kNumber)) break;
          j += l2;
        }
        while (j < n && (p[j] == '\r' || p[j] == '\n')) ++j;
        on_piece(i, j);
        i = j;
        continue;
      }
    }
    // Here the character is white space. Scan the run, remembering the last \r or \n and the
    // start of the last character.
    size_t j = i, last_newline = n, last_start = i;
    while (j < n) {
      size_t l2;
      if (!(class_at(j, &l2) & kSpace)) break;
      if (p[j] == '\r' || p[j] == '\n') last_newline = j;
      last_start = j;
      j += l2;
    }
    size_t end;
    if (last_newline != n) {
      end = last_newline + 1;  // 5. \s*[\r\n]+ : backtracks to the last newline of the run
    } else if (j == n || last_start == i) {
      end = j;  // 6. \s+(?!\S) at the end of the text, or 7. \s+ for a single character
    } else {
      end = last_start;  // 6. \s+(?!\S) backtracks one character before the non-space
    }
    on_piece(i, end);
    i = end;
  }
}

}  // namespace qsearch
