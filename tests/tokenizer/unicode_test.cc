// The Unicode layer: UTF-8 validation, NFC (chunked, against utf8proc on the whole text and
// against the oracle's normalizer), and the character classes of the pre-tokenizer checked
// against the oracle's pre-tokenizer for EVERY code point.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <utf8proc.h>

#include <random>
#include <string>
#include <vector>

#include "embed/tokenizer/bpe.h"
#include "embed/tokenizer/pretokenizer.h"
#include "embed/tokenizer/unicode.h"
#include "tokenizer/tokenizer_util.h"

namespace qsearch {
namespace {

std::string utf8(char32_t cp) {
  std::string s;
  unicode::append_utf8(cp, &s);
  return s;
}

bool is_surrogate(char32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }

// Our NFC + Split, as byte-level piece strings (what the oracle's pre-tokenizer prints).
std::vector<std::string> our_pieces(const std::string& text) {
  std::string norm;
  std::string_view v = text;
  if (unicode::nfc_normalize(text, &norm, nullptr)) v = norm;
  std::vector<std::string> out;
  split_qwen2(v, unicode::ClassTable::get(),
              [&](size_t b, size_t e) { out.push_back(byte_level_encode(v.substr(b, e - b))); });
  return out;
}

TEST(Utf8, ValidTextPasses) {
  for (const auto& t : testing::handwritten_corpus()) EXPECT_FALSE(unicode::find_invalid_utf8(t)) << t;
  std::string all;
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp)
    if (!is_surrogate(cp)) unicode::append_utf8(cp, &all);
  EXPECT_FALSE(unicode::find_invalid_utf8(all));
}

TEST(Utf8, InvalidSequencesReportTheirOffset) {
  struct Case {
    std::string text;
    size_t offset;
  };
  const std::vector<Case> cases = {
      {"\x80", 0},                      // stray continuation byte
      {"ab\xBF", 2},                    // stray continuation byte after ASCII
      {"abc\xC0\xAF", 3},               // overlong '/'
      {"\xC1\xBF", 0},                  // overlong
      {"x\xE0\x80\xAF", 1},             // overlong 3-byte
      {"\xF0\x80\x80\xAF", 0},          // overlong 4-byte
      {"ok \xED\xA0\x80", 3},           // UTF-16 surrogate D800
      {"\xED\xBF\xBF", 0},              // surrogate DFFF
      {"\xF4\x90\x80\x80", 0},          // U+110000
      {"\xF5\x80\x80\x80", 0},          // lead byte past U+10FFFF
      {"\xFF", 0},                      // never valid
      {"hello \xE4\xBD", 6},            // truncated at the end
      {"\xE4\xBDx", 0},                 // truncated in the middle
      {"\xF0\x9F\x98", 0},              // truncated emoji
      {"\xC3", 0},                      // truncated 2-byte
      {"12345678\xC3(", 8},             // after the 8-byte ASCII fast path
      {std::string(1000, 'a') + "\xFE", 1000},
  };
  for (const auto& c : cases) {
    auto bad = unicode::find_invalid_utf8(c.text);
    ASSERT_TRUE(bad.has_value()) << testing::json_quote(c.text);
    EXPECT_EQ(*bad, c.offset) << testing::json_quote(c.text);
  }
}

TEST(Nfc, ChunkedEqualsWholeTextOnRandomMarkSoup) {
  // Random sequences of starters, combining marks (several classes), Hangul jamo, Indic vowel
  // signs that compose, singletons and precomposed letters: the chunked normaliser must agree
  // with utf8proc run on the whole text.
  const std::vector<char32_t> pool = {
      'a', 'e', 'o', 'A', 'x', ' ', 0x0301, 0x0300, 0x0308, 0x0323, 0x0327, 0x031B, 0x0345, 0x0344,
      0x0340, 0x00E9, 0x00C5, 0x212B, 0x2126, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xAC01, 0x0B47, 0x0B3E,
      0x0B57, 0x0BC6, 0x0BBE, 0x0BD7, 0x09C7, 0x09BE, 0x0DD9, 0x0DCF, 0x0DDF, 0x1025, 0x102E, 0x3099,
      0x304B, 0x30AB, 0x05D1, 0x05BC, 0x05B8, 0x0627, 0x0653, 0x0654, 0x0655, 0x093C, 0x0928, 0x0915,
      0x0F71, 0x0F72, 0x0F80, 0x0FB2, 0x1E0B, 0x0307, 0x1B05, 0x1B35, 0x0E38, 0x0E48, 0x4E00};
  std::mt19937_64 rng(5);
  for (int n = 0; n < 20000; ++n) {
    std::string s;
    size_t len = 1 + rng() % 10;
    for (size_t k = 0; k < len; ++k) unicode::append_utf8(pool[rng() % pool.size()], &s);
    std::string want = unicode::nfc_reference(s), got;
    std::vector<unicode::Span> spans;
    bool changed = unicode::nfc_normalize(s, &got, &spans);
    if (!changed) got = s;
    ASSERT_EQ(got, want) << testing::json_quote(s);
    EXPECT_EQ(changed, want != s) << testing::json_quote(s);
    if (changed) {
      ASSERT_EQ(spans.size(), got.size());
      for (const auto& sp : spans) EXPECT_TRUE(sp.begin < sp.end && sp.end <= s.size());
    }
  }
}

TEST(Nfc, EveryMarkAndCompositeMatchesTheOracle) {
  // Every code point NFC can touch: marks with a combining class (placed where a reorder
  // shows the class: after U+0345 of class 240 and before U+0334 of class 1), characters with
  // a canonical decomposition (alone, decomposed, and with a mark), starters that compose with
  // U+0301, and Hangul. Compared with Hugging Face's NFC normalizer.
  std::vector<std::string> texts;
  for (char32_t cp = 0xA0; cp <= 0x10FFFF; ++cp) {
    if (is_surrogate(cp)) continue;
    const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
    std::string c = utf8(cp);
    if (p->combining_class != 0) {
      texts.push_back("a\xCD\x85" + c + " a" + c + "\xCC\xB4");
    } else if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0) {
      utf8proc_int32_t dec[16];
      int boundclass = 0;
      auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), dec, 16, UTF8PROC_DECOMPOSE, &boundclass);
      std::string d;
      for (int k = 0; k < n; ++k) d += utf8(static_cast<char32_t>(dec[k]));
      texts.push_back(c + " " + d + " " + c + "\xCC\x81 " + d + "\xCC\xA3");
    } else if ((cp >= 0xAC00 && cp <= 0xD7A3 && cp % 89 == 0) ||
               unicode::nfc_reference(c + "\xCC\x81") != c + "\xCC\x81") {
      texts.push_back(c + "\xCC\x81 " + c + "\xCC\xA3\xCC\x88");
    }
  }
  ASSERT_GT(texts.size(), 3000u);
  std::string error;
  auto want = testing::run_oracle(testing::qwen3_tokenizer_path(), texts, "--normalize", &error);
  ASSERT_TRUE(error.empty()) << error;
  size_t bad = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string got;
    if (!unicode::nfc_normalize(texts[i], &got, nullptr)) got = texts[i];
    std::string expected = nlohmann::json::parse(want[i]).get<std::string>();
    if (got != expected && ++bad <= 10)
      ADD_FAILURE() << testing::json_quote(texts[i]) << ": ours " << testing::json_quote(got) << " oracle "
                    << testing::json_quote(expected);
  }
  EXPECT_EQ(bad, 0u) << "of " << texts.size();
}

TEST(Nfc, CharactersUnknownToHuggingFaceStayPut) {
  // U+1DF6 (class 232 since Unicode 10) does not reorder before U+0301 in HF's Unicode 9.0
  // NFC, and the Dives Akuru pair U+11935 U+11930 does not compose to U+11938.
  std::string out;
  EXPECT_FALSE(unicode::nfc_normalize("a\xE1\xB7\xB6\xCC\x81", &out, nullptr));
  EXPECT_FALSE(unicode::nfc_normalize("\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0", &out, nullptr));
  EXPECT_FALSE(unicode::nfc_normalize("\xF0\x91\xA4\xB8", &out, nullptr));
  // Marks after such a character still reorder among themselves.
  ASSERT_TRUE(unicode::nfc_normalize("\xE1\xB7\xB6\xCC\x81\xCC\xA3", &out, nullptr));
  EXPECT_EQ(out, "\xE1\xB7\xB6\xCC\xA3\xCC\x81");
}

// The probe "a" c "1!" c c c "x" splits differently for each class of c (letter, number, white
// space, other), so equal pieces for every c mean equal classes.
TEST(ClassTable, EveryCodePointSplitsLikeTheOracle) {
  std::vector<std::string> texts;
  std::vector<char32_t> firsts;
  std::string line;
  char32_t first = 0;
  size_t in_line = 0;
  for (char32_t cp = 0x20; cp <= 0x10FFFF; ++cp) {
    if (is_surrogate(cp)) continue;
    if (in_line == 0) first = cp;
    std::string c = utf8(cp);
    line += "a" + c + "1!" + c + c + c + "x\n";
    if (++in_line == 512) {
      texts.push_back(std::move(line));
      firsts.push_back(first);
      line.clear();
      in_line = 0;
    }
  }
  if (!line.empty()) {
    texts.push_back(line);
    firsts.push_back(first);
  }
  std::string error;
  auto want = testing::run_oracle(testing::qwen3_tokenizer_path(), texts, "--pretokenize", &error);
  ASSERT_TRUE(error.empty()) << error;
  size_t bad_lines = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto expected = nlohmann::json::parse(want[i]).get<std::vector<std::string>>();
    auto got = our_pieces(texts[i]);
    if (got == expected) continue;
    if (++bad_lines > 20) continue;
    // Name the first code point whose probe differs.
    std::string detail;
    for (char32_t cp = firsts[i]; cp < firsts[i] + 600 && cp <= 0x10FFFF; ++cp) {
      if (is_surrogate(cp)) continue;
      std::string c = utf8(cp), probe = "a" + c + "1!" + c + c + c + "x\n";
      if (texts[i].find(probe) == std::string::npos) continue;
      std::string err2;
      auto one = testing::run_oracle(testing::qwen3_tokenizer_path(), {probe}, "--pretokenize", &err2);
      if (!one.empty() && nlohmann::json::parse(one[0]).get<std::vector<std::string>>() != our_pieces(probe)) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
        detail = std::string(buf) + ": oracle " + one[0];
        break;
      }
    }
    ADD_FAILURE() << "line " << i << " (from U+" << std::hex << static_cast<unsigned>(firsts[i]) << std::dec << ") differs; " << detail;
  }
  EXPECT_EQ(bad_lines, 0u);
}

}  // namespace
}  // namespace qsearch
