// qsearch-bench-tokenizer: tokenizer throughput (MB/s of UTF-8 input) on mixed multilingual
// text, single-thread (encode) and multi-thread (encode_batch on a ThreadPool).
//
//   qsearch-bench-tokenizer [--tokenizer FILE] [--mb N] [--repeat R] [--threads 1,2,4,...]
//
// The text: documents of 0.5-4 KB mixing English, Chinese, Japanese, Korean, Arabic, Hebrew,
// Hindi, Thai, Russian, Greek, code, URLs, JSON, numbers and emoji, built from real sentences
// and randomly generated words (a long tail of words, so the word cache is not all hits).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <ctime>
#include <vector>

#include "common/thread_pool.h"
#include "embed/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::vector<std::string>>& sentences() {
  static const std::vector<std::vector<std::string>> s = {
      {"The quick brown fox jumps over the lazy dog. ", "Vector search finds the nearest neighbours of a query. ",
       "I'm sure they'll say it's John's, but we'd've known. ", "Embeddings map text to points in a space where meaning is distance. "},
      {"中华人民共和国成立于1949年。", "今天天气很好，我们去公园散步吧！", "向量检索可以找到语义上最相近的文档。",
       "机器学习模型需要大量的数据进行训练。"},
      {"日本語のテキスト：東京タワーは333メートルです。", "カタカナとひらがなを混ぜて書きます。", "検索エンジンは文書を素早く見つけます。"},
      {"한국어는 한글로 씁니다. ", "안녕하세요, 만나서 반갑습니다! ", "검색 엔진은 문서를 빠르게 찾습니다. "},
      {"العربية لغة جميلة ومنتشرة في العالم. ", "اَلسَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ. ", "محرك البحث يجد المستندات بسرعة. "},
      {"עברית היא שפה שמית. ", "שָׁלוֹם, מַה שְּׁלוֹמְךָ? ", "מנוע החיפוש מוצא מסמכים במהירות. "},
      {"हिन्दी भाषा देवनागरी लिपि में लिखी जाती है। ", "खोज इंजन दस्तावेज़ों को जल्दी ढूंढता है। "},
      {"ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ ", "สวัสดีครับ ยินดีที่ได้รู้จัก "},
      {"Русский язык: съешь же ещё этих мягких французских булок. ", "Поисковая система быстро находит документы. "},
      {"Ελληνικά: Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο. ", "Η μηχανή αναζήτησης βρίσκει έγγραφα γρήγορα. "},
      {"def search(query, k=10):\n    return index.search(embed(query), k)\n",
       "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
       "{\"name\": \"qsearch\", \"version\": [1, 2, 3], \"ok\": true}\n", "https://example.com/search?q=vector+search&page=2 "},
      {"Emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸 ❤️ 🎉 ", "Prices: $1,299.99 or €1.099,00 (2024-05-17) "},
  };
  return s;
}

// A random word from syllables of the given script, for a long tail of distinct words.
std::string random_word(std::mt19937_64& rng, int script) {
  static const std::vector<std::vector<std::string>> syllables = {
      {"ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "qu", "str", "ing", "tion", "er", "an"},
      {"ка", "то", "ри", "не", "са", "мо", "лу", "пе", "ст", "ов", "ие", "ой"},
      {"κα", "το", "ρι", "νε", "σα", "μο", "λυ", "πε", "ση", "ος"},
  };
  const auto& syl = syllables[static_cast<size_t>(script) % syllables.size()];
  std::string w;
  size_t n = 1 + rng() % 4;
  for (size_t i = 0; i < n; ++i) w += syl[rng() % syl.size()];
  if (rng() % 5 == 0) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
  return w;
}

std::vector<std::string> make_documents(size_t total_bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto& s = sentences();
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < total_bytes) {
    std::string doc;
    size_t target = 512 + rng() % 3584;
    while (doc.size() < target) {
      uint64_t r = rng() % 100;
      if (r < 60) {
        const auto& group = s[rng() % s.size()];
        doc += group[rng() % group.size()];
      } else if (r < 85) {
        int script = static_cast<int>(rng() % 3);
        size_t words = 3 + rng() % 10;
        for (size_t i = 0; i < words; ++i) doc += random_word(rng, script) + (i + 1 < words ? " " : ". ");
      } else if (r < 95) {
        doc += std::to_string(rng() % 1000000) + " ";
      } else {
        doc += "\n\n";
      }
    }
    bytes += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU time of the calling thread: on a shared machine the wall clock also counts the time
// other processes hold the core, so single-thread figures are reported both ways.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = ".deps/qwen3/tokenizer.json";
  size_t mb = 12;
  int repeat = 3;
  std::vector<size_t> threads;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--tokenizer") {
      path = next();
    } else if (a == "--mb") {
      mb = std::stoul(next());
    } else if (a == "--repeat") {
      repeat = std::max(1, std::stoi(next()));
    } else if (a == "--threads") {
      std::stringstream ss(next());
      for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::stoul(t));
    } else {
      std::fprintf(stderr,
                   "usage: qsearch-bench-tokenizer [--tokenizer FILE] [--mb N] [--repeat R] [--threads 1,2,4]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  size_t hw = std::max(1u, std::thread::hardware_concurrency());
  if (threads.empty()) {
    for (size_t t = 1; t < hw; t *= 2) threads.push_back(t);
    threads.push_back(hw);
  }

  auto t0 = Clock::now();
  double c0 = thread_cpu_seconds();
  auto tok = qsearch::Tokenizer::from_file(path);
  double load_s = seconds_since(t0), load_cpu = thread_cpu_seconds() - c0;
  if (!tok.is_ok()) {
    std::fprintf(stderr, "%s\n", tok.status().to_string().c_str());
    return 1;
  }
  auto docs = make_documents(mb << 20, 42);
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  std::printf("tokenizer: %s (loaded in %.3f s, %.3f s CPU)\n", path.c_str(), load_s, load_cpu);
  std::printf("text: %zu documents, %.1f MB of mixed multilingual UTF-8\n", docs.size(), bytes / 1e6);
  std::printf("\n%-10s %-8s %12s %12s %14s %14s\n", "mode", "threads", "seconds", "MB/s", "tokens/s",
              "MB/s per CPU-s");

  size_t tokens = 0;
  for (size_t nt : threads) {
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < repeat; ++r) {
      size_t count = 0;
      auto start = Clock::now();
      double cpu_start = thread_cpu_seconds();
      if (nt == 1) {
        for (const auto& d : docs) {
          auto ids = (*tok)->encode(d, false);
          if (!ids.is_ok()) return 1;
          count += ids->size();
        }
      } else {
        qsearch::ThreadPool pool(nt - 1);  // the caller works too
        start = Clock::now();
        auto results = (*tok)->encode_batch(docs, false, &pool);
        for (const auto& res : results) count += res.is_ok() ? res->size() : 0;
      }
      best = std::min(best, seconds_since(start));
      if (nt == 1) best_cpu = std::min(best_cpu, thread_cpu_seconds() - cpu_start);
      tokens = count;
    }
    char cpu_col[32] = "-";
    if (nt == 1) std::snprintf(cpu_col, sizeof cpu_col, "%.2f", bytes / 1e6 / best_cpu);
    std::printf("%-10s %-8zu %12.3f %12.2f %14.0f %14s\n", nt == 1 ? "encode" : "batch", nt, best,
                bytes / 1e6 / best, tokens / best, cpu_col);
  }
  std::printf("\n%zu tokens (%.2f bytes/token)\n", tokens, static_cast<double>(bytes) / tokens);
  return 0;
}
