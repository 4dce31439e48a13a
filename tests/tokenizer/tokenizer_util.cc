#include "tokenizer/tokenizer_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace qsearch::testing {

std::string qwen3_tokenizer_path() { return std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

std::string temp_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/qsearch-tok-test-XXXXXX";
    const char* d = mkdtemp(tmpl);
    return std::string(d ? d : "/tmp");
  }();
  return dir;
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

bool parse_id_array(const std::string& line, std::vector<int32_t>* ids) {
  ids->clear();
  size_t i = 0;
  auto skip = [&] {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\r')) ++i;
  };
  skip();
  if (i >= line.size() || line[i] != '[') return false;
  ++i;
  skip();
  if (i < line.size() && line[i] == ']') return true;
  while (i < line.size()) {
    skip();
    size_t start = i;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
    if (i == start) return false;
    ids->push_back(static_cast<int32_t>(std::stol(line.substr(start, i - start))));
    skip();
    if (i < line.size() && line[i] == ',') {
      ++i;
      continue;
    }
    return i < line.size() && line[i] == ']';
  }
  return false;
}

std::string run_command(const std::string& command, const std::string& input, int* exit_code,
                        std::string* stderr_text) {
  static std::atomic<int> counter{0};
  std::string base = temp_dir() + "/cmd" + std::to_string(counter++);
  write_file(base + ".in", input);
  std::string full = command + " < '" + base + ".in' > '" + base + ".out' 2> '" + base + ".err'";
  int status = std::system(full.c_str());
  *exit_code = status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (stderr_text) *stderr_text = read_file(base + ".err");
  std::string out = read_file(base + ".out");
  std::remove((base + ".in").c_str());
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return out;
}

std::vector<std::string> run_oracle(const std::string& tokenizer_json, const std::vector<std::string>& texts,
                                    const std::string& mode, std::string* error) {
  int code = 0;
  std::string err;
  run_command("command -v node", "", &code, &err);
  if (code != 0) {
    *error = "node is not installed: the Hugging Face oracle (tests/tokenizer/oracle.js) needs it; run `make deps`";
    return {};
  }
  std::string input;
  for (const auto& t : texts) input += json_quote(t) + "\n";
  std::string cmd = "node '" + std::string(QSEARCH_SOURCE_DIR) + "/tests/tokenizer/oracle.js' '" +
                    tokenizer_json + "' " + mode;
  std::string out = run_command(cmd, input, &code, &err);
  if (code != 0) {
    *error = "oracle failed (exit " + std::to_string(code) + "): " + err +
             " -- is @anush008/tokenizers installed in .deps/node? run `make deps`";
    return {};
  }
  std::vector<std::string> lines;
  std::istringstream ss(out);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  if (lines.size() != texts.size()) {
    *error = "oracle returned " + std::to_string(lines.size()) + " lines for " + std::to_string(texts.size()) + " texts";
    return {};
  }
  return lines;
}

namespace {

std::string utf8(char32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// Fragments the random generator mixes; each one exercises a script or a regex branch.
const std::vector<std::string>& fragments() {
  static const std::vector<std::string> f = {
      // Latin, contractions in every case, the long s that (?i)'s also matches
      "Hello", "world", " the", "don't", "I'M", "we'Ll", "they'RE", "you'VE", "it'S", "he'D",
      "'s", "'S", "'t", "'T", "'re", "'rE", "'Re", "'ve", "'vE", "'m", "'M", "'ll", "'lL", "'LL",
      "'d", "'D", "'\xC5\xBF", "'x", "''", "'", "can'T", "O'Neil", "rock'n'roll",
      // CJK, Japanese, Korean (precomposed and conjoining jamo, which NFC composes)
      "中文分词测试", "你好，世界！", "東京は日本の首都です。", "ひらがなとカタカナ", "ｶﾀｶﾅ",
      "한국어 텍스트", "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB", "\xE1\x84\x80\xE1\x85\xA1",
      // Arabic (with harakat), Hebrew (with niqqud), Devanagari, Thai, Bengali, Tamil
      "مرحبا بالعالم", "اَلْعَرَبِيَّةُ", "٣٤٥", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया", "क़िला",
      "क\xE0\xA4\xBC", "สวัสดีครับ", "ภาษาไทย", "বাংলা", "\xE0\xA6\xA7\xE0\xA7\x87\xE0\xA6\xBE",
      "தமிழ்", "\xE0\xAE\x95\xE0\xAF\x86\xE0\xAE\xBE", "०१२३",
      // Cyrillic, Greek (precomposed and decomposed tonos)
      "Привет, мир", "ЁЖИК", "Ελληνικά", "\xCE\xB1\xCC\x81", "ά", "ΑΘΗΝΑ",
      // combining marks: decomposed é, reordering (dot below after diaeresis), singletons
      "e\xCC\x81", "cafe\xCC\x81", "a\xCC\x88\xCC\xA3", "a\xCC\xA3\xCC\x88", "\xE2\x84\xAB", "\xE2\x84\xA6",
      "A\xCC\x8A", "\xCC\x81", "\xCC\x81\xCC\x81x", "o\xCC\x88\xCC\x81", "\xEF\xAC\x81", "\xEF\xAC\x85",
      // emoji: skin tones, ZWJ families, flags, keycaps, variation selectors
      "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "1️⃣", "❤️", "😀😃😄", "🧑🏿‍💻",
      // fullwidth forms and other numbers
      "ＡＢＣ", "１２３", "！？", "²³", "½", "Ⅻ", "①②", "𝟘𝟙", "𝐀𝐁",
      // white space of every kind
      " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\r\n\r\n", " \n", "\n ", "\x0B",
      "\x0C", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xC2\x85", "\xE1\x9A\x80",
      "\xE2\x80\x82", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE1\xA0\x8E", "\xE2\x80\x8B", "\xEF\xBB\xBF",
      // digits, punctuation, code, URLs, JSON
      "1234567890", "3.14159", "2024-01-01", "!!!", "...", "—", "«»", "“quoted”", "、。",
      "def f(x):\n    return x ** 2\n", "if (a && b) { c++; }", "#include <vector>", "</div>",
      "https://example.com/path?q=1&r=2#frag", "user@example.org", "{\"key\": [1, 2.5, \"v\"]}",
      // added tokens and near misses
      "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>",
      "</tool_call>", "<|fim_prefix|>", "<|vision_start|>", "<|endoftext|", "<|im_start", "<|", "|>",
      "<<|im_end|>>", "<think", "think>",
      // control characters
      std::string("\0", 1), "\x01", "\x1F", "\x7F",
  };
  return f;
}

// A base letter and a few combining marks, some new since Unicode 9.0 (which HF's NFC does not
// know), some that compose, some that reorder; and Unicode 16 letters and digits.
std::string mark_soup(std::mt19937_64& rng) {
  static const char32_t bases[] = {'a', 'e', 'o', 'A', 0x0915, 0x0B47, 0x1100, 0xAC00, 0x11935, 0x05D1,
                                   0x0627, 0x0E01, 0x1C89, 0x13460, 0x10D40, 0x16D70, 0x1E5D0};
  static const char32_t marks[] = {0x0301, 0x0300, 0x0308, 0x0323, 0x0327, 0x0345, 0x0334, 0x093C,
                                   0x094D, 0x0B3E, 0x0B57, 0x1161, 0x11A8, 0x11930, 0x05BC, 0x0651,
                                   0x0E38, 0x0E48, 0x1DF6, 0x1DFA, 0x1ABF, 0x0898, 0x1E4EC, 0x1133B,
                                   0x200D, 0xFE0F, 0x1F3FD};
  std::string s = utf8(bases[rng() % std::size(bases)]);
  size_t n = rng() % 5;
  for (size_t k = 0; k < n; ++k) s += utf8(marks[rng() % std::size(marks)]);
  return s;
}

char32_t random_code_point(std::mt19937_64& rng) {
  for (;;) {
    uint64_t r = rng() % 100;
    char32_t cp;
    if (r < 40) cp = static_cast<char32_t>(rng() % 0x800);
    else if (r < 80) cp = static_cast<char32_t>(rng() % 0x10000);
    else if (r < 95) cp = static_cast<char32_t>(0x10000 + rng() % 0x20000);
    else cp = static_cast<char32_t>(rng() % 0x110000);
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    return cp;
  }
}

}  // namespace

std::vector<std::string> handwritten_corpus() {
  std::vector<std::string> c = {
      "",
      "Hello, world!",
      "The quick brown fox jumps over the lazy dog.",
      "I'm sure they'll say it's John's, but we'd've known. DON'T SHOUT, I'LL LEAVE. 'S 'Ll 'VE 'Re 'D 'M 'T",
      "\xC5\xBF'\xC5\xBF 'LL 'lL",
      "中华人民共和国成立于1949年。今天天气很好，我们去公园散步吧！",
      "日本語のテキスト：東京タワーは333メートルです。カタカナとひらがな。",
      "한국어는 한글로 씁니다. 안녕하세요!",
      "العربية لغة جميلة. اَلسَّلَامُ عَلَيْكُمْ ١٢٣٤",
      "עברית: שָׁלוֹם, מַה שְּׁלוֹמְךָ?",
      "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है। क़ ख़ ग़",
      "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ สวัสดีครับ",
      "Русский язык: съешь же ещё этих мягких французских булок.",
      "Ελληνικά: Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
      "Emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸 1️⃣ 🧑🏿‍💻 ❤️‍🔥",
      "decomposed: cafe\xCC\x81 re\xCC\x81sume\xCC\x81 A\xCC\x8A \xE2\x84\xAB \xE2\x84\xA6 n\xCC\x83",
      "reorder: a\xCC\x88\xCC\xA3 q\xCC\x87\xCC\xA3 \xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB",
      "fullwidth: ＡＢＣ ａｂｃ １２３ ！＂＃ ｶﾀｶﾅ",
      "   leading spaces and trailing   ",
      "tabs\tbetween\t\twords\t",
      "line one\nline two\r\nline three\rline four\n\n\nend",
      "nbsp\xC2\xA0here and ideographic\xE3\x80\x80space \xC2\xA0 \xE3\x80\x80 x",
      "    \n    indented\n\t\n",
      "12345678901234567890123456789012345678901234567890",
      "π ≈ 3.14159265358979323846, e ≈ 2.71828, ½ ² Ⅻ ① ٣",
      "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
      "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; } // dot product",
      "https://www.example.com/search?q=qwen3+embedding&lang=en#results",
      "{\"name\": \"qsearch\", \"version\": [1, 2, 3], \"nested\": {\"ok\": true, \"x\": null}}",
      "<|endoftext|>",
      "text<|endoftext|>more text<|im_start|>user\nhi<|im_end|>",
      "<think>reasoning</think> answer",
      "partial <|endoftext| and <|im_start and <|im_end|>>",
      "<|endoftext|><|endoftext|><|endoftext|>",
      "<<|endoftext|>>",
      "<tool_call>{\"name\": \"f\"}</tool_call>",
      "\xE2\x80\xA8\xE2\x80\xA9\xC2\x85\xE1\x9A\x80\xE2\x80\x8B\xEF\xBB\xBF\xE1\xA0\x8E",
      std::string("nul\0byte", 8),
      "\x01\x02\x1F\x7F control",
      "x",
      " ",
      "\n",
      "'",
      "!!!???...",
      "Mixed: English, 中文, 日本語, 한국어, العربية, עברית, हिन्दी, ไทย, Русский, Ελληνικά 🎉",
  };
  // The 3000-character words the issue asks for, and other very long pieces.
  std::string letters, cjk, digits, spaces, punct;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 3000; ++i) letters += static_cast<char>('a' + rng() % 26);
  for (int i = 0; i < 3000; ++i) cjk += utf8(static_cast<char32_t>(0x4E00 + rng() % 2000));
  digits.assign(3000, '7');
  spaces.assign(3000, ' ');
  for (int i = 0; i < 3000; ++i) punct += "!?.,;:"[rng() % 6];
  c.push_back(letters);
  c.push_back(cjk);
  c.push_back(digits);
  c.push_back(spaces + "x");
  c.push_back(punct + "\n\n");
  std::string aaa(4000, 'a');
  c.push_back(aaa);
  return c;
}

std::vector<std::string> random_corpus(uint64_t seed, size_t count) {
  std::mt19937_64 rng(seed);
  const auto& frag = fragments();
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t n = 0; n < count; ++n) {
    std::string s;
    size_t parts = 1 + rng() % 12;
    for (size_t p = 0; p < parts; ++p) {
      uint64_t r = rng() % 100;
      if (r < 55) {
        s += frag[rng() % frag.size()];
      } else if (r < 62) {
        s += mark_soup(rng);
      } else if (r < 80) {
        s += utf8(random_code_point(rng));
      } else if (r < 90) {
        s += " \t\n\r"[rng() % 4];
      } else {
        std::string w;
        size_t len = 1 + rng() % 8;
        for (size_t k = 0; k < len; ++k) w += static_cast<char>((rng() % 2 ? 'a' : 'A') + rng() % 26);
        s += w;
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> regex_soup(uint64_t seed, size_t count) {
  static const std::vector<std::string> alphabet = {
      " ", " ", "  ", "\n", "\r", "\r\n", "\t", "\xC2\xA0", "\xE3\x80\x80", "\x0B", "\xC2\x85", "'", "'", "s",
      "S", "t", "l", "L", "e", "E", "r", "v", "m", "d", "D", "\xC5\xBF", "a", "Z", "\xC3\xA9", "e\xCC\x81",
      "\xCC\x81", "\xE4\xB8\xAD", "1", "\xD9\xA3", "\xC2\xB2", "!", ".", "-", "_", "\"", "<", "|", ">",
      "<|endoftext|>", "<|im_end|>", "\xF0\x9F\x98\x80", "\xE2\x80\x8D", std::string("\0", 1)};
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t n = 0; n < count; ++n) {
    std::string s;
    size_t len = 1 + rng() % 16;
    for (size_t k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace qsearch::testing
