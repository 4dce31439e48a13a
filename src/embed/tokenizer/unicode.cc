#include "embed/tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace qsearch::unicode {
namespace {

constexpr char32_t kMaxCodePoint = 0x10FFFF;

bool is_white_space(char32_t cp) {
  // The Unicode White_Space property (PropList.txt), which is what Oniguruma's \s matches.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Letters and numbers new in Unicode 16.0, which Hugging Face tokenizers (Oniguruma 6.9.10)
// knows and utf8proc 2.8 (Unicode 15.0) does not yet: applied only where utf8proc says
// "unassigned", so a newer utf8proc makes this a no-op. The list is what the exhaustive test
// (tests/tokenizer/unicode_test.cc, every code point against the oracle) found.
struct Range {
  char32_t first, last;
  uint8_t cls;
};
constexpr uint8_t kL = kLetter | kWord, kN = kNumber | kWord;
constexpr Range kUnicode16[] = {
    {0x1C89, 0x1C8A, kL},   {0xA7CB, 0xA7CD, kL},   {0xA7DA, 0xA7DC, kL},   {0x105C0, 0x105F3, kL},
    {0x10D40, 0x10D49, kN}, {0x10D4A, 0x10D65, kL}, {0x10D6F, 0x10D85, kL}, {0x10EC2, 0x10EC4, kL},
    {0x11380, 0x11389, kL}, {0x1138B, 0x1138B, kL}, {0x1138E, 0x1138E, kL}, {0x11390, 0x113B5, kL},
    {0x113B7, 0x113B7, kL}, {0x113D1, 0x113D1, kL}, {0x113D3, 0x113D3, kL}, {0x116D0, 0x116E3, kN},
    {0x11BC0, 0x11BE0, kL}, {0x11BF0, 0x11BF9, kN}, {0x13460, 0x143FA, kL}, {0x16100, 0x1611D, kL},
    {0x16130, 0x16139, kN}, {0x16D40, 0x16D6C, kL}, {0x16D70, 0x16D79, kN}, {0x18CFF, 0x18CFF, kL},
    {0x1CCF0, 0x1CCF9, kN}, {0x1E5D0, 0x1E5ED, kL}, {0x1E5F0, 0x1E5F0, kL}, {0x1E5F1, 0x1E5FA, kN},
    {0x2EBF0, 0x2EE5D, kL},
};

// Characters NFC handles but Hugging Face's normalizer (unicode-normalization-alignments,
// Unicode 9.0 data) does not know: combining marks and composites added in Unicode 10-15. HF
// gives them combining class 0 and no (de)composition, so they block reordering and never
// compose; we leave them untouched and cut the text around them. Found by the exhaustive test
// (every mark and composite against the oracle); U+11930 is the second half of the Unicode 13
// composite U+11938.
constexpr Range kNfcUnknownToHf[] = {
    {0x07FD, 0x07FD, 0},   {0x0898, 0x089F, 0},   {0x08CA, 0x08D3, 0},   {0x09FE, 0x09FE, 0},
    {0x0C3C, 0x0C3C, 0},   {0x0D3B, 0x0D3C, 0},   {0x0EBA, 0x0EBA, 0},   {0x1715, 0x1715, 0},
    {0x1ABF, 0x1ACE, 0},   {0x1DF6, 0x1DFA, 0},   {0xA82C, 0xA82C, 0},   {0x10D24, 0x10D27, 0},
    {0x10EAB, 0x10EAC, 0}, {0x10EFD, 0x10EFF, 0}, {0x10F46, 0x10F50, 0}, {0x10F82, 0x10F85, 0},
    {0x11070, 0x11070, 0}, {0x1133B, 0x1133B, 0}, {0x1145E, 0x1145E, 0}, {0x11839, 0x1183A, 0},
    {0x11930, 0x11930, 0}, {0x11938, 0x11938, 0}, {0x1193D, 0x1193E, 0}, {0x11943, 0x11943, 0},
    {0x119E0, 0x119E0, 0}, {0x11A34, 0x11A34, 0}, {0x11A47, 0x11A47, 0}, {0x11A99, 0x11A99, 0},
    {0x11D42, 0x11D42, 0}, {0x11D44, 0x11D45, 0}, {0x11D97, 0x11D97, 0}, {0x11F41, 0x11F42, 0},
    {0x16FF0, 0x16FF1, 0}, {0x1E08F, 0x1E08F, 0}, {0x1E130, 0x1E136, 0}, {0x1E2AE, 0x1E2AE, 0},
    {0x1E2EC, 0x1E2EF, 0}, {0x1E4EC, 0x1E4EF, 0},
};

// Options for canonical decomposition + ordering (utf8proc_decompose) and composition
// (utf8proc_normalize_utf32): exactly what utf8proc_NFC uses, minus NULLTERM.
constexpr utf8proc_option_t kNfcOptions =
    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);

// NFC of a short UTF-8 string into *out (replacing its contents).
void nfc_chunk(std::string_view in, std::string* out, std::vector<int32_t>* buf) {
  out->clear();
  if (buf->size() < in.size() * 4 + 16) buf->resize(in.size() * 4 + 16);
  utf8proc_ssize_t n;
  for (;;) {
    n = utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                           static_cast<utf8proc_ssize_t>(in.size()), buf->data(),
                           static_cast<utf8proc_ssize_t>(buf->size()), kNfcOptions);
    if (n < 0) {  // cannot happen on valid UTF-8; keep the text as it is
      out->assign(in);
      return;
    }
    if (static_cast<size_t>(n) <= buf->size()) break;
    buf->resize(static_cast<size_t>(n));
  }
  n = utf8proc_normalize_utf32(buf->data(), n, kNfcOptions);
  if (n < 0) {
    out->assign(in);
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) append_utf8(static_cast<char32_t>((*buf)[i]), out);
}

}  // namespace

void append_utf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const ClassTable& ClassTable::get() {
  static const ClassTable table;
  return table;
}

ClassTable::ClassTable() {
  std::vector<uint8_t> cls(kMaxCodePoint + 1, 0);
  std::vector<bool> maybe_second(kMaxCodePoint + 1, false);
  std::vector<bool> changes_alone(kMaxCodePoint + 1, false);  // NFC(cp) != cp
  std::vector<int32_t> buf(64);
  std::string tmp, norm;

  for (char32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;  // surrogates never reach the table
    const utf8proc_property_t* prop = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
    uint8_t c = 0;
    switch (prop->category) {
      case UTF8PROC_CATEGORY_LU:
      case UTF8PROC_CATEGORY_LL:
      case UTF8PROC_CATEGORY_LT:
      case UTF8PROC_CATEGORY_LM:
      case UTF8PROC_CATEGORY_LO:
        c |= kLetter | kWord;
        break;
      case UTF8PROC_CATEGORY_ND:
        c |= kNumber | kWord;
        break;
      case UTF8PROC_CATEGORY_NL:
        c |= kNumber | kWord;
        break;
      case UTF8PROC_CATEGORY_NO:
        c |= kNumber;
        break;
      case UTF8PROC_CATEGORY_MN:
      case UTF8PROC_CATEGORY_MC:
      case UTF8PROC_CATEGORY_ME:
      case UTF8PROC_CATEGORY_PC:
        c |= kWord;
        break;
      default:
        break;
    }
    if (cp == 0x200C || cp == 0x200D) c |= kWord;
    if (prop->category == UTF8PROC_CATEGORY_CN)
      for (const Range& r : kUnicode16)
        if (cp >= r.first && cp <= r.last) c |= r.cls;
    if (is_white_space(cp)) c |= kSpace;
    cls[cp] = c;
    // Canonical decompositions: every character after the first of a full decomposition may
    // be the second half of a composition pair (conservative: it only costs speed).
    if (prop->decomp_seqindex != UINT16_MAX && prop->decomp_type == 0) {
      utf8proc_int32_t dec[32];
      int last_boundclass = 0;
      utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), dec, 32,
                                                   UTF8PROC_DECOMPOSE, &last_boundclass);
      for (utf8proc_ssize_t k = 1; k < n && k < 32; ++k) maybe_second[dec[k]] = true;
      tmp.clear();
      append_utf8(cp, &tmp);
      nfc_chunk(tmp, &norm, &buf);
      if (norm != tmp) changes_alone[cp] = true;
    }
  }
  // Hangul: conjoining vowels and trailing consonants compose with what precedes them.
  for (char32_t cp = 0x1161; cp <= 0x1175; ++cp) maybe_second[cp] = true;
  for (char32_t cp = 0x11A8; cp <= 0x11C2; ++cp) maybe_second[cp] = true;
  for (char32_t cp = 0; cp <= kMaxCodePoint; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const utf8proc_property_t* prop = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
    if (prop->combining_class == 0 && !maybe_second[cp] && !changes_alone[cp]) cls[cp] |= kNfcInert;
  }
  for (const Range& r : kNfcUnknownToHf)
    for (char32_t cp = r.first; cp <= r.last; ++cp) cls[cp] = (cls[cp] & ~kNfcInert) | kNfcOpaque;

  for (char32_t cp = 0; cp < 0x80; ++cp) ascii_[cp] = cls[cp];
  index_.resize((kMaxCodePoint + 1) >> 8);
  std::unordered_map<std::string, uint16_t> seen;
  for (size_t b = 0; b < index_.size(); ++b) {
    std::string key(reinterpret_cast<const char*>(&cls[b << 8]), 256);
    auto [it, inserted] = seen.emplace(key, static_cast<uint16_t>(seen.size()));
    if (inserted) blocks_.insert(blocks_.end(), key.begin(), key.end());
    index_[b] = it->second;
  }
}

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;  // overlong
      if (b == 0xED) hi = 0x9F;  // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;  // overlong
      if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;  // continuation byte, C0/C1 overlong lead, or F5..FF
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if (!is_continuation(p[i + k])) return i;
    i += len;
  }
  return std::nullopt;
}

bool nfc_normalize(std::string_view in, std::string* out, std::vector<Span>* spans) {
  const ClassTable& table = ClassTable::get();
  thread_local std::vector<int32_t> buf;
  thread_local std::string chunk_out;
  const size_t n = in.size();
  size_t i = 0;
  size_t boundary = 0;  // start of the latest NFC-inert character
  size_t copied = 0;    // bytes of `in` already accounted for in *out
  bool changed = false;
  auto copy_through = [&](size_t upto) {
    out->append(in.data() + copied, upto - copied);
    if (spans)
      for (size_t k = copied; k < upto; ++k)
        spans->push_back({static_cast<uint32_t>(k), static_cast<uint32_t>(k + 1)});
    copied = upto;
  };
  while (i < n) {
    unsigned char b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      boundary = i++;
      continue;
    }
    size_t len;
    char32_t cp = decode_utf8(in.data(), i, &len);
    const uint8_t cls = table(cp);
    if (cls & kNfcOpaque) {  // kept as is; the next chunk starts after it
      i += len;
      boundary = i;
      continue;
    }
    if (cls & kNfcInert) {
      boundary = i;
      i += len;
      continue;
    }
    // A non-inert character: its chunk runs from the last inert character to the next one.
    size_t chunk_begin = boundary;
    size_t j = i + len;
    while (j < n) {
      size_t l2;
      char32_t c2 = decode_utf8(in.data(), j, &l2);
      if (table(c2) & (kNfcInert | kNfcOpaque)) break;
      j += l2;
    }
    std::string_view chunk = in.substr(chunk_begin, j - chunk_begin);
    nfc_chunk(chunk, &chunk_out, &buf);
    if (chunk_out != chunk) {
      if (!changed) {
        out->clear();
        if (spans) spans->clear();
        changed = true;
      }
      copy_through(chunk_begin);
      out->append(chunk_out);
      if (spans)
        for (size_t k = 0; k < chunk_out.size(); ++k)
          spans->push_back({static_cast<uint32_t>(chunk_begin), static_cast<uint32_t>(j)});
      copied = j;
    }
    i = j;
    boundary = j;
  }
  if (changed) copy_through(n);
  return changed;
}

std::string nfc_reference(std::string_view in) {
  utf8proc_uint8_t* dst = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                    static_cast<utf8proc_ssize_t>(in.size()), &dst, kNfcOptions);
  if (n < 0) return std::string(in);
  std::string result(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return result;
}

}  // namespace qsearch::unicode
