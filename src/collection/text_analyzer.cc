// ICU word breaks + NFKC_Casefold (see text_analyzer.h).
#include "collection/text_analyzer.h"

#include <unicode/ubrk.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <memory>

namespace qsearch {

namespace {

// One word-break iterator and normaliser per thread: opening a break iterator loads rules and
// dictionaries, far too slow per call, and one iterator must not be shared between threads.
struct IcuAnalyzer {
  UBreakIterator* words = nullptr;
  const UNormalizer2* fold = nullptr;
  std::u16string text;          // the input as UTF-16
  std::vector<size_t> byte_of;  // byte offset of each UTF-16 unit (and of the end)
  std::u16string folded;
  std::string term;

  IcuAnalyzer() {
    UErrorCode st = U_ZERO_ERROR;
    words = ubrk_open(UBRK_WORD, "", nullptr, 0, &st);
    if (U_FAILURE(st)) words = nullptr;
    st = U_ZERO_ERROR;
    fold = unorm2_getNFKCCasefoldInstance(&st);
    if (U_FAILURE(st)) fold = nullptr;
  }
  ~IcuAnalyzer() {
    if (words) ubrk_close(words);
  }
  IcuAnalyzer(const IcuAnalyzer&) = delete;
  IcuAnalyzer& operator=(const IcuAnalyzer&) = delete;
};

IcuAnalyzer& analyzer() {
  thread_local IcuAnalyzer a;
  return a;
}

// UTF-16 of `in` into a.text with byte offsets; invalid bytes become U+FFFD.
void to_utf16(std::string_view in, IcuAnalyzer& a) {
  a.text.clear();
  a.byte_of.clear();
  const auto* s = reinterpret_cast<const uint8_t*>(in.data());
  const int32_t n = static_cast<int32_t>(in.size());
  int32_t i = 0;
  while (i < n) {
    const int32_t at = i;
    UChar32 c = 0;
    U8_NEXT(s, i, n, c);
    if (c < 0) c = 0xFFFD;
    if (U_IS_BMP(c)) {
      a.text.push_back(static_cast<char16_t>(c));
      a.byte_of.push_back(static_cast<size_t>(at));
    } else {
      a.text.push_back(static_cast<char16_t>(U16_LEAD(c)));
      a.text.push_back(static_cast<char16_t>(U16_TRAIL(c)));
      a.byte_of.push_back(static_cast<size_t>(at));
      a.byte_of.push_back(static_cast<size_t>(at));
    }
  }
  a.byte_of.push_back(in.size());
}

// NFKC_Casefold of text[start, end) into a.term (UTF-8, cut to kMaxTokenBytes); false if the
// normaliser failed.
bool fold_word(IcuAnalyzer& a, int32_t start, int32_t end) {
  const int32_t len = end - start;
  a.folded.resize(static_cast<size_t>(len) * 3 + 16);
  UErrorCode st = U_ZERO_ERROR;
  int32_t out = unorm2_normalize(a.fold, reinterpret_cast<const UChar*>(a.text.data()) + start, len,
                                 reinterpret_cast<UChar*>(a.folded.data()),
                                 static_cast<int32_t>(a.folded.size()), &st);
  if (st == U_BUFFER_OVERFLOW_ERROR) {
    a.folded.resize(static_cast<size_t>(out));
    st = U_ZERO_ERROR;
    out = unorm2_normalize(a.fold, reinterpret_cast<const UChar*>(a.text.data()) + start, len,
                           reinterpret_cast<UChar*>(a.folded.data()),
                           static_cast<int32_t>(a.folded.size()), &st);
  }
  if (U_FAILURE(st)) return false;
  a.term.clear();
  for (int32_t i = 0; i < out;) {
    UChar32 c = 0;
    U16_NEXT(a.folded.data(), i, out, c);
    if (U_IS_SURROGATE(c)) c = 0xFFFD;
    char buf[4];
    int32_t n = 0;
    UBool err = false;
    U8_APPEND(reinterpret_cast<uint8_t*>(buf), n, 4, c, err);
    if (err) continue;
    if (a.term.size() + static_cast<size_t>(n) > kMaxTokenBytes) break;
    a.term.append(buf, static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

void analyze_text(std::string_view text,
                  const std::function<bool(std::string_view, size_t, size_t)>& emit) {
  if (text.empty()) return;
  IcuAnalyzer& a = analyzer();
  if (!a.words || !a.fold) return;  // ICU data missing: nothing is indexed (logged by the index)
  to_utf16(text, a);
  UErrorCode st = U_ZERO_ERROR;
  ubrk_setText(a.words, reinterpret_cast<const UChar*>(a.text.data()),
               static_cast<int32_t>(a.text.size()), &st);
  if (U_FAILURE(st)) return;
  int32_t start = ubrk_first(a.words);
  for (int32_t end = ubrk_next(a.words); end != UBRK_DONE; start = end, end = ubrk_next(a.words)) {
    if (ubrk_getRuleStatus(a.words) < UBRK_WORD_NONE_LIMIT) continue;  // space, punctuation
    if (!fold_word(a, start, end) || a.term.empty()) continue;
    if (!emit(a.term, a.byte_of[static_cast<size_t>(start)], a.byte_of[static_cast<size_t>(end)]))
      break;
  }
  ubrk_setText(a.words, nullptr, 0, &st);  // drop the pointer into a.text
}

std::vector<TextToken> analyze_text(std::string_view text) {
  std::vector<TextToken> out;
  analyze_text(text, [&](std::string_view term, size_t begin, size_t end) {
    out.push_back({std::string(term), begin, end});
    return true;
  });
  return out;
}

int32_t code_points_before(std::string_view text, size_t byte) {
  if (byte > text.size()) byte = text.size();
  int32_t n = 0;
  for (size_t i = 0; i < byte; ++i) n += (static_cast<uint8_t>(text[i]) & 0xC0) != 0x80;
  return n;
}

std::string_view code_point_range(std::string_view text, int32_t start, int32_t end) {
  size_t begin_byte = text.size(), end_byte = text.size();
  int32_t cp = 0;
  for (size_t b = 0; b < text.size(); ++b) {
    if ((static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) continue;
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
