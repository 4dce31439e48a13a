// Unicode support for the tokenizer: UTF-8 validation and decoding, a precomputed per-code-point
// class table (\p{L}, \p{N}, White_Space, ...), and NFC normalisation with byte alignment.
//
// The class table is built once from utf8proc (Unicode 15) on first use and is immutable after
// that, so every function here is safe to call from many threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qsearch::unicode {

// Bits of a code point's class.
enum ClassBit : uint8_t {
  kLetter = 1,    // \p{L}: Lu Ll Lt Lm Lo
  kNumber = 2,    // \p{N}: Nd Nl No
  kSpace = 4,     // \s: the Unicode White_Space property (what Oniguruma's \s is)
  kNfcInert = 8,  // NFC-inert: ccc 0, never the second of a canonical composition, NFC(c) == c.
                  // A text can be cut before such a character and each side normalised alone.
  kWord = 16,     // \w as Rust regex defines it (Alphabetic, M, Nd, Pc, Join_Control), approximated
                  // by L, Nl, M, Nd, Pc, U+200C, U+200D; used only for AddedToken.single_word.
  kNfcOpaque = 32,  // unknown to Hugging Face's NFC (Unicode 9.0 data): never normalised, and
                    // the text is cut before and after it.
};

// Two-stage lookup table over all 0x110000 code points.
class ClassTable {
 public:
  static const ClassTable& get();
  uint8_t operator()(char32_t cp) const {
    if (cp < 0x80) return ascii_[cp];
    if (cp >= 0x110000) return 0;
    return blocks_[(static_cast<size_t>(index_[cp >> 8]) << 8) | (cp & 0xFF)];
  }

 private:
  ClassTable();
  uint8_t ascii_[128];
  std::vector<uint16_t> index_;  // cp >> 8 -> block number
  std::vector<uint8_t> blocks_;  // deduplicated 256-entry blocks
};

// Offset of the first byte of the first invalid UTF-8 sequence (overlong forms, surrogates,
// truncated sequences, code points above U+10FFFF, stray continuation bytes), or nullopt.
std::optional<size_t> find_invalid_utf8(std::string_view s);

// Decodes the code point starting at s[i] of VALID UTF-8; sets len to its byte length.
inline char32_t decode_utf8(const char* s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s + i);
  unsigned char b = p[0];
  if (b < 0x80) {
    *len = 1;
    return b;
  }
  if (b < 0xE0) {
    *len = 2;
    return (char32_t(b & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (b < 0xF0) {
    *len = 3;
    return (char32_t(b & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  *len = 4;
  return (char32_t(b & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
         (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

// Appends the UTF-8 encoding of cp.
void append_utf8(char32_t cp, std::string* out);

inline bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// The original byte range one byte of normalised text came from.
struct Span {
  uint32_t begin;
  uint32_t end;
};

// NFC-normalises valid UTF-8. Returns false, without touching *out, when `in` is already in NFC
// (checked chunk by chunk, without allocating, so plain text costs one pass). Otherwise writes
// the normalised text to *out and, when spans is not null, one Span per output byte (offsets
// relative to `in`): bytes that NFC left alone map to themselves, bytes of a changed chunk (a
// run from one NFC-inert character to the next) map to the whole chunk.
// Exact to Hugging Face's NFC, which uses Unicode 9.0 data: see kNfcOpaque.
bool nfc_normalize(std::string_view in, std::string* out, std::vector<Span>* spans);

// The whole NFC of `in` in one call, for tests: utf8proc_NFC on the full string.
std::string nfc_reference(std::string_view in);

}  // namespace qsearch::unicode
