// Chunk planning (service/chunking.h) on the real Qwen3 tokenizer: windows within max_tokens,
// cuts at sentence or line ends, the overlap, code-point offsets, and boundaries that are valid
// UTF-8 in every script (also where byte-level BPE splits a character across tokens).
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>

#include "service/chunking.h"

namespace qsearch {
namespace {

const Tokenizer& tokenizer() {
  static std::unique_ptr<Tokenizer> t = [] {
    auto r = Tokenizer::from_file(std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json");
    if (!r.is_ok()) {
      ADD_FAILURE() << r.status().to_string() << " (run `make deps`)";
      return std::unique_ptr<Tokenizer>();
    }
    return std::move(r).value();
  }();
  return *t;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

// Code points of s, counted independently of the code under test.
size_t code_points(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

struct Checked {
  std::vector<TextChunk> chunks;
  size_t tokens = 0;
};

// Plans the chunks of text and checks every invariant that holds for any text.
Checked plan_and_check(const std::string& text, ChunkingOptions o) {
  Checked out;
  auto spans = tokenizer().encode_with_offsets(text, false);
  EXPECT_TRUE(spans.is_ok()) << spans.status().to_string();
  if (!spans.is_ok()) return out;
  out.tokens = spans->size();
  out.chunks = plan_chunks(text, *spans, o);
  const auto& chunks = out.chunks;
  EXPECT_FALSE(chunks.empty());
  if (chunks.empty()) return out;
  EXPECT_EQ(chunks.front().byte_begin, 0u);
  EXPECT_EQ(chunks.back().byte_end, text.size());
  EXPECT_EQ(chunks.front().first_token, 0u);
  EXPECT_EQ(chunks.back().last_token, spans->size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    const TextChunk& c = chunks[i];
    const std::string_view piece = std::string_view(text).substr(c.byte_begin, c.byte_end - c.byte_begin);
    EXPECT_TRUE(valid_utf8(piece)) << "chunk " << i;
    EXPECT_LT(c.first_token, c.last_token) << "chunk " << i;
    // A window holds at most max_tokens - 1 tokens (EOS follows), unless no character
    // boundary exists inside it (then one character longer).
    EXPECT_LE(c.last_token - c.first_token, static_cast<size_t>(o.max_tokens - 1) + 4) << "chunk " << i;
    // Offsets in code points name exactly these bytes.
    EXPECT_EQ(static_cast<size_t>(c.start), code_points(std::string_view(text).substr(0, c.byte_begin)));
    EXPECT_EQ(static_cast<size_t>(c.end - c.start), code_points(piece));
    EXPECT_EQ(code_point_slice(text, c.start, c.end), piece);
    // No window starts or ends inside the tokens of one character (byte-level BPE pieces of a
    // character share its begin): the window's tokens are exactly the chunk's bytes.
    for (size_t cut : {c.first_token, c.last_token}) {
      if (cut == 0 || cut == spans->size()) continue;
      EXPECT_GT((*spans)[cut].begin, (*spans)[cut - 1].begin) << "chunk " << i << " cut " << cut;
    }
    if (i > 0) {
      const TextChunk& p = chunks[i - 1];
      // In order, overlapping by at most `overlap` tokens (fewer where the start had to move
      // to a character boundary), and never leaving a gap.
      EXPECT_GT(c.first_token, p.first_token);
      EXPECT_LE(c.first_token, p.last_token);
      EXPECT_LE(p.last_token - c.first_token, static_cast<size_t>(o.overlap));
      EXPECT_LE(c.byte_begin, p.byte_end);
    }
  }
  return out;
}

std::string sentences(int n, std::mt19937* rng) {
  static const char* words[] = {"river", "mountain", "capital", "library", "engine", "search",
                                "vector", "cloud", "harbour", "garden", "signal", "winter"};
  std::string s;
  for (int i = 0; i < n; ++i) {
    const int len = 6 + static_cast<int>((*rng)() % 14);
    for (int w = 0; w < len; ++w) {
      s += w == 0 ? "The" : words[(*rng)() % 12];
      s += w + 1 < len ? " " : ". ";
    }
    if (i % 7 == 6) s += "\n\n";
  }
  return s;
}

TEST(ChunkPlan, OptionsValidated) {
  auto ok = ChunkingOptions::from_json({{"max_tokens", 256}, {"overlap", 32}});
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->max_tokens, 256);
  EXPECT_EQ(ok->overlap, 32);
  auto defaults = ChunkingOptions::from_json(nlohmann::json::object());
  ASSERT_TRUE(defaults.is_ok());
  EXPECT_EQ(defaults->max_tokens, 512);
  EXPECT_EQ(defaults->overlap, 64);
  // The default overlap shrinks with a small window rather than failing.
  EXPECT_EQ(ChunkingOptions::from_json({{"max_tokens", 20}})->overlap, 10);
  for (const nlohmann::json& bad :
       {nlohmann::json(true), nlohmann::json{{"max_tokens", 15}}, nlohmann::json{{"max_tokens", 40000}},
        nlohmann::json{{"max_tokens", 100}, {"overlap", 51}}, nlohmann::json{{"overlap", -1}},
        nlohmann::json{{"max_tokens", "512"}}, nlohmann::json{{"max_tokens", 51.5}},
        nlohmann::json{{"size", 512}}}) {
    auto r = ChunkingOptions::from_json(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kUnprocessable) << bad.dump();
  }
}

TEST(ChunkPlan, ShortAndEmptyTextsAreOneChunk) {
  Checked c = plan_and_check("A short text.", {512, 64});
  ASSERT_EQ(c.chunks.size(), 1u);
  EXPECT_EQ(c.chunks[0].end, 13);
  auto empty = plan_chunks("", {}, {512, 64});
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0].byte_begin, 0u);
  EXPECT_EQ(empty[0].byte_end, 0u);
}

TEST(ChunkPlan, CutsAtSentenceEndsWithTheOverlap) {
  std::mt19937 rng(7);
  const std::string text = sentences(400, &rng);
  const ChunkingOptions o{128, 16};
  Checked c = plan_and_check(text, o);
  ASSERT_GT(c.chunks.size(), 10u);
  for (size_t i = 0; i + 1 < c.chunks.size(); ++i) {
    const TextChunk& k = c.chunks[i];
    // Sentences are at most ~20 words, so a sentence end always lies in the last quarter.
    const char last = text[k.byte_end - 1];
    EXPECT_TRUE(last == '.' || last == '\n') << "chunk " << i << " ends with '" << last << "'";
    EXPECT_GE(k.last_token - k.first_token, static_cast<size_t>((o.max_tokens - 1) * 3 / 4));
    // Away from character-boundary adjustments (none in ASCII), the overlap is exact.
    EXPECT_EQ(k.last_token - c.chunks[i + 1].first_token, static_cast<size_t>(o.overlap));
  }
}

TEST(ChunkPlan, NoOverlapMeansAPartition) {
  std::mt19937 rng(11);
  const std::string text = sentences(200, &rng);
  Checked c = plan_and_check(text, {64, 0});
  for (size_t i = 0; i + 1 < c.chunks.size(); ++i) {
    EXPECT_EQ(c.chunks[i].last_token, c.chunks[i + 1].first_token);
    EXPECT_EQ(c.chunks[i].byte_end, c.chunks[i + 1].byte_begin);
    EXPECT_EQ(c.chunks[i].end, c.chunks[i + 1].start);
  }
}

TEST(ChunkPlan, MultilingualBoundariesAreValidUtf8) {
  // Scripts where byte-level BPE splits characters (rare CJK, emoji with modifiers and ZWJ,
  // combining marks), text without spaces or sentence ends, and CJK/Hindi/Arabic full stops.
  const std::vector<std::string> pieces = {
      "北京是中国的首都，也是最大的城市之一。",
      "𠀀𠀁𠀂𪚥𪚥𠮷野家",
      "👩🏽‍💻👨‍👩‍👧‍👦🏳️‍🌈🇯🇵",
      "मनुष्य स्वतंत्र पैदा होता है। ",
      "هل تتحدث العربية؟ نعم. ",
      "Ελληνικά κείμενα με τόνους. ",
      "e\xcc\x81\xcc\x82\xcc\x83 o\xcc\x88 ",  // combining marks (NFC changes some)
      "Привет, мир! ",
      "\n",
      "한국어 문장입니다. ",
      "no_spaces_here_at_all_just_one_long_identifier_",
  };
  std::mt19937 rng(3);
  for (int trial = 0; trial < 12; ++trial) {
    std::string text;
    while (text.size() < 12000) text += pieces[rng() % pieces.size()];
    for (int max_tokens : {16, 33, 100}) {
      const int overlap = static_cast<int>(rng() % (max_tokens / 2 + 1));
      SCOPED_TRACE("trial " + std::to_string(trial) + " max_tokens " + std::to_string(max_tokens));
      Checked c = plan_and_check(text, {max_tokens, overlap});
      EXPECT_GT(c.chunks.size(), 5u);
    }
  }
  // One long run of 4-byte characters, each split into several byte tokens: no cut may fall
  // inside a character even with the smallest window.
  std::string run;
  for (int i = 0; i < 3000; ++i) run += (i % 3 == 0) ? "𪚥" : (i % 3 == 1) ? "𠀀" : "🧬";
  Checked c = plan_and_check(run, {16, 4});
  EXPECT_GT(c.chunks.size(), 100u);
  EXPECT_GT(c.tokens, 3000u);  // really split into bytes, so the boundary check mattered
}

TEST(ChunkPlan, FiftyThousandTokenDocument) {
  std::mt19937 rng(5);
  std::string text = sentences(3800, &rng);
  text += "北京是中国的首都。";
  Checked c = plan_and_check(text, {512, 64});
  ASSERT_GE(c.tokens, 50000u);
  // About tokens / (window - overlap) chunks: the cuts lose at most a quarter window each.
  const double stride_min = (511 * 3 / 4) - 64, stride_max = 511 - 64;
  EXPECT_GE(static_cast<double>(c.chunks.size()), static_cast<double>(c.tokens) / stride_max);
  EXPECT_LE(static_cast<double>(c.chunks.size()), static_cast<double>(c.tokens) / stride_min + 2);
}

}  // namespace
}  // namespace qsearch
