// qsearch-bench-lexical: the lexical index (issue 12) at scale, through the CollectionStore API
// directly (RocksDB + FAISS + SQLite FTS5, no HTTP, no model: vectors are precomputed random
// Gaussian directions, so the figures measure the indexes, not the embedder).
//
// For each of --lexical on,off (in order): a fresh collection (flat index, --dim) in a scratch
// data directory is filled with n documents of synthetic multilingual text (upserts of --batch
// documents from --ingest-threads threads; writes to one collection are serialised by the
// store, the threads overlap generation and the RocksDB write with the lexical indexing) and the
// ingestion rate is reported (docs/s, wall clock). With the lexical index on, single-thread
// search latency (P50/P99/mean over --queries queries, or until --latency-seconds) is then
// measured for "lexical" (BM25 through the store) and "hybrid" (flat dense search + lexical,
// max(k, 100) candidates each, fused by RRF k=60: the service's own code path minus the query
// embedding), and with --rebuild the time to rebuild the lexical index from the store.
//
// Text: document i (depends only on seed and i) is in one of four languages (i mod 4):
// English (a 4000-word synthetic vocabulary), Chinese and Japanese (60 real words plus 3000
// synthetic two-character words each), Thai (60 real words only: a small vocabulary, so each
// Thai word is in many documents, the slow case for BM25); words drawn Zipf-like (s = 1), CJK and
// Thai written without spaces; 12..48 words, plus a unique product code "SKU-<i>-XZ" in every
// 10th document. Queries (q mod 6): 1..3 words of English, Chinese, Japanese or Thai drawn
// uniformly from the vocabulary, the first two words of an English document as a quoted phrase,
// or a stored product code.
//
//   qsearch-bench-lexical --n 1000000 --dim 64 --json out.json
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "collection/collection_store.h"
#include "collection/hybrid.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using namespace qsearch;

struct Options {
  int64_t n = 100000;
  int dim = 64;
  int batch = 1000;
  int ingest_threads = 4;
  int queries = 500;
  int k = 10;
  double latency_seconds = 60;
  std::vector<std::string> lexical = {"on", "off"};
  bool rebuild = false;
  std::string data_dir;
  std::string json_path;
  uint64_t seed = 1;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const std::vector<std::string> kZh = {
    "我们", "北京", "大学", "学习", "机器", "自然", "语言", "处理", "数据", "系统", "城市", "中国",
    "经济", "发展", "技术", "研究", "公司", "市场", "政府", "社会", "问题", "工作", "时间", "国家",
    "科学", "文化", "历史", "教育", "医院", "学生", "老师", "朋友", "电脑", "网络", "手机", "音乐",
    "电影", "天气", "今天", "明天", "上海", "广州", "深圳", "香港", "台湾", "世界", "未来", "环境",
    "能源", "交通", "银行", "价格", "产品", "服务", "客户", "管理", "计划", "项目", "安全", "健康"};
const std::vector<std::string> kJa = {
    "東京",     "大阪",     "京都",     "今日",     "明日",     "天気",   "電車",   "会社",
    "学校",     "先生",     "学生",     "友達",     "日本",     "時間",   "仕事",   "映画",
    "音楽",     "料理",     "旅行",     "病院",     "銀行",     "郵便",   "図書館", "公園",
    "新聞",     "雑誌",     "写真",     "手紙",     "電話",     "自転車", "飛行機", "駅",
    "山",       "川",       "海",       "空",       "春",       "夏",     "秋",     "冬",
    "朝",       "夜",       "食べます", "飲みます", "行きます", "来ます", "見ます", "読みます",
    "書きます", "話します", "聞きます", "買います", "です",     "ました", "ません", "には",
    "から",     "まで",     "ですね",   "でした"};
const std::vector<std::string> kTh = {
    "ภาษา",      "ไทย",     "สวยงาม",    "ประเทศ", "กรุงเทพ",  "เชียงใหม่",   "อาหาร",   "อร่อย",
    "โรงเรียน",   "นักเรียน",  "ครู",        "เพื่อน",   "ครอบครัว", "บ้าน",       "รถ",      "ถนน",
    "ทะเล",      "ภูเขา",    "แม่น้ำ",      "วันนี้",    "พรุ่งนี้",    "อากาศ",     "ร้อน",     "หนาว",
    "ฝน",        "ตลาด",    "ราคา",      "สินค้า",   "บริษัท",    "งาน",       "เวลา",    "ประวัติ",
    "ศาสตร์",     "วัฒนธรรม", "ดนตรี",      "หนังสือ",  "ห้องสมุด",  "โรงพยาบาล", "หมอ",     "ยา",
    "คอมพิวเตอร์", "โทรศัพท์",  "อินเทอร์เน็ต", "ข้อมูล",   "ระบบ",    "ความรู้",     "การศึกษา", "ธนาคาร",
    "เงิน",       "ท่องเที่ยว", "โรงแรม",    "สนามบิน", "เครื่องบิน", "รถไฟ",      "กิน",      "ดื่ม",
    "นอน",       "เดิน",     "วิ่ง",        "อ่าน"};

// A pronounceable synthetic English vocabulary (deterministic).
std::vector<std::string> english_vocabulary(int size) {
  static const char* onset[] = {"b", "c", "d", "f", "g",  "h",  "k",  "l",  "m",  "n",  "p",  "r",
                                "s", "t", "v", "w", "br", "cl", "dr", "st", "tr", "sh", "ch", "pl"};
  static const char* vowel[] = {"a", "e", "i", "o", "u", "ea", "ou", "ai"};
  static const char* coda[] = {"", "n", "r", "s", "t", "l", "nd", "st", "ck", "m"};
  std::mt19937_64 rng(12345);
  std::vector<std::string> out;
  std::set<std::string> seen;
  while (static_cast<int>(out.size()) < size) {
    std::string w;
    const int syllables = 1 + static_cast<int>(rng() % 3);
    for (int s = 0; s < syllables; ++s)
      w += std::string(onset[rng() % 24]) + vowel[rng() % 8] + coda[rng() % 10];
    if (seen.insert(w).second) out.push_back(w);
  }
  return out;
}

// 467 common Han characters, for synthetic two-character Chinese and Japanese words.
const char* kHan =
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"
    "她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从"
    "动两长知"
    "民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很"
    "业最间新"
    "什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万"
    "市眼体别"
    "处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计"
    "或司利受"
    "光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认"
    "算论百吃"
    "义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武"
    "半候七必"
    "城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始"
    "版双历越"
    "史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包"
    "组造落视"
    "济喜离虽坏兴切讲消";

// The real word lists plus `extra` synthetic two-character words (with a kana ending for
// Japanese), deterministic.
std::vector<std::string> cjk_vocabulary(const std::vector<std::string>& real, int extra,
                                        bool japanese) {
  std::vector<std::string> chars;
  for (const char* p = kHan; *p; p += 3) chars.emplace_back(p, 3);  // each is 3 UTF-8 bytes
  static const char* endings[] = {"", "", "する", "な", "の", "い"};
  std::vector<std::string> out = real;
  std::set<std::string> seen(real.begin(), real.end());
  std::mt19937_64 rng(japanese ? 777 : 555);
  while (static_cast<int>(out.size()) < static_cast<int>(real.size()) + extra) {
    std::string w = chars[rng() % chars.size()] + chars[rng() % chars.size()];
    if (japanese) w += endings[rng() % 6];
    if (seen.insert(w).second) out.push_back(w);
  }
  return out;
}

// Zipf-like index in [0, n): P(i) ~ 1 / (i + 1).
size_t zipf(std::mt19937_64& rng, size_t n) {
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  const double x = std::exp(u * std::log(static_cast<double>(n) + 1.0)) - 1.0;
  return std::min(n - 1, static_cast<size_t>(x));
}

struct Corpus {
  std::vector<std::string> en = english_vocabulary(4000);
  std::vector<std::string> zh = cjk_vocabulary(kZh, 3000, false);
  std::vector<std::string> ja = cjk_vocabulary(kJa, 3000, true);
  const std::vector<std::string>& words(int lang) const {
    return lang == 0 ? en : lang == 1 ? zh : lang == 2 ? ja : kTh;
  }
  std::string text(uint64_t seed, int64_t i) const {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i));
    const int lang = static_cast<int>(i % 4);
    const auto& w = words(lang);
    const int count = 12 + static_cast<int>(rng() % 37);
    std::string s;
    for (int j = 0; j < count; ++j) {
      if (lang == 0 && j > 0) s += ' ';
      s += w[zipf(rng, w.size())];
      if (lang != 0 && j % 9 == 8) s += lang == 3 ? " " : "。";
    }
    if (i % 10 == 0) s += (lang == 0 ? " SKU-" : " SKU-") + std::to_string(i) + "-XZ";
    return s;
  }
  std::string query(uint64_t seed, int q, int64_t n) const {
    std::mt19937_64 rng(seed * 31 + 7 + static_cast<uint64_t>(q));
    const int kind = q % 6;
    if (kind == 5)
      return "SKU-" + std::to_string((rng() % static_cast<uint64_t>(n / 10 + 1)) * 10) + "-XZ";
    const int lang = kind % 4;
    const auto& w = words(lang);
    const int count = 1 + static_cast<int>(rng() % 3);
    std::string s = kind == 4 ? "\"" : "";
    // Content words: uniform over the vocabulary (the documents draw them Zipf-like, so common
    // words are still likely); a phrase is two words of one stored document, in order.
    if (kind == 4) {
      const std::string doc =
          text(seed, static_cast<int64_t>(rng() % static_cast<uint64_t>(n)) / 4 * 4);
      const size_t space = doc.find(' ', doc.find(' ') + 1);
      return "\"" + doc.substr(0, space == std::string::npos ? doc.size() : space) + "\"";
    }
    for (int j = 0; j < count; ++j) {
      if (j > 0) s += ' ';
      s += w[rng() % w.size()];
    }
    return s;
  }
};

std::vector<float> random_vector(uint64_t seed, int64_t i, int d) {
  std::mt19937_64 rng(seed ^ (static_cast<uint64_t>(i) * 0xD1B54A32D192ED03ULL));
  std::normal_distribution<float> g;
  std::vector<float> v(static_cast<size_t>(d));
  for (auto& x : v) x = g(rng);
  return v;
}

struct Latency {
  std::vector<double> ms;
  json to_json() const {
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    auto pct = [&](double p) {
      return s.empty() ? 0.0
                       : s[std::min(s.size() - 1, static_cast<size_t>(p * (s.size() - 1) + 0.5))];
    };
    double sum = 0;
    for (double x : s) sum += x;
    return {{"queries", s.size()},
            {"p50_ms", pct(0.5)},
            {"p99_ms", pct(0.99)},
            {"mean_ms", s.empty() ? 0.0 : sum / s.size()}};
  }
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--n")
      o->n = std::atoll(next());
    else if (a == "--dim")
      o->dim = std::atoi(next());
    else if (a == "--batch")
      o->batch = std::atoi(next());
    else if (a == "--ingest-threads")
      o->ingest_threads = std::atoi(next());
    else if (a == "--queries")
      o->queries = std::atoi(next());
    else if (a == "--k")
      o->k = std::atoi(next());
    else if (a == "--latency-seconds")
      o->latency_seconds = std::atof(next());
    else if (a == "--rebuild")
      o->rebuild = true;
    else if (a == "--data-dir")
      o->data_dir = next();
    else if (a == "--json")
      o->json_path = next();
    else if (a == "--seed")
      o->seed = std::strtoull(next(), nullptr, 10);
    else if (a == "--lexical") {
      o->lexical.clear();
      std::string v = next();
      for (size_t p = 0; p <= v.size();) {
        size_t c = v.find(',', p);
        if (c == std::string::npos) c = v.size();
        o->lexical.push_back(v.substr(p, c - p));
        p = c + 1;
      }
    } else {
      std::fprintf(
          stderr,
          "usage: qsearch-bench-lexical [--n N] [--dim D] [--batch B] [--ingest-threads T]\n"
          "  [--queries Q] [--k K] [--latency-seconds S] [--lexical on,off] [--rebuild]\n"
          "  [--data-dir DIR] [--json FILE] [--seed S]\n");
      return false;
    }
  }
  return o->n > 0 && o->dim > 0 && o->batch > 0 && o->ingest_threads > 0 && o->k > 0 &&
         o->k <= 1000;
}

int run(const Options& o) {
  const Corpus corpus;
  const auto t_all = Clock::now();
  std::string root = o.data_dir;
  const bool own_dir = root.empty();
  if (own_dir)
    root = (fs::temp_directory_path() / ("qsearch-bench-lexical-" + std::to_string(getpid())))
               .string();
  json report = {{"n", o.n},
                 {"dim", o.dim},
                 {"batch", o.batch},
                 {"ingest_threads", o.ingest_threads},
                 {"k", o.k},
                 {"hardware_threads", std::thread::hardware_concurrency()},
                 {"runs", json::array()}};
  auto write_report = [&]() {
    if (o.json_path.empty()) return;
    std::ofstream(o.json_path) << report.dump(2) << "\n";
  };
  for (const std::string& mode : o.lexical) {
    const bool lexical = mode == "on";
    const std::string dir = root + "/" + mode;
    fs::remove_all(dir);
    StoreOptions so;
    so.data_dir = dir;
    so.index_save_interval_s = 0;
    auto opened = CollectionStore::open(so);
    if (!opened.is_ok()) {
      std::fprintf(stderr, "open: %s\n", opened.status().to_string().c_str());
      return 1;
    }
    std::unique_ptr<CollectionStore> store = std::move(opened).value();
    CollectionSpec spec;
    spec.name = "bench";
    spec.dimension = o.dim;
    spec.lexical = lexical;
    if (Status s = store->create_collection(spec); !s.is_ok()) {
      std::fprintf(stderr, "create: %s\n", s.to_string().c_str());
      return 1;
    }
    // Ingestion.
    std::atomic<int64_t> next{0}, done{0}, text_bytes{0};
    std::atomic<bool> failed{false};
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < o.ingest_threads; ++t) {
      threads.emplace_back([&]() {
        for (;;) {
          const int64_t begin = next.fetch_add(o.batch);
          if (begin >= o.n || failed) return;
          const int64_t end = std::min<int64_t>(o.n, begin + o.batch);
          std::vector<Document> docs;
          docs.reserve(static_cast<size_t>(end - begin));
          int64_t bytes = 0;
          for (int64_t i = begin; i < end; ++i) {
            Document d;
            d.id = "doc-" + std::to_string(i);
            d.text = corpus.text(o.seed, i);
            bytes += static_cast<int64_t>(d.text.size());
            d.embedding = random_vector(o.seed, i, o.dim);
            d.tokens = 1;
            docs.push_back(std::move(d));
          }
          if (Status s = store->upsert("bench", docs); !s.is_ok()) {
            std::fprintf(stderr, "upsert: %s\n", s.to_string().c_str());
            failed = true;
            return;
          }
          text_bytes += bytes;
          const int64_t now = done.fetch_add(end - begin) + (end - begin);
          if (now / 100000 != (now - (end - begin)) / 100000)
            std::fprintf(stderr, "[%.0f s] lexical %s: %ld documents\n", seconds_since(t_all),
                         mode.c_str(), static_cast<long>(now));
        }
      });
    }
    for (auto& t : threads) t.join();
    if (failed) return 1;
    const double ingest_s = seconds_since(t0);
    json run = {{"lexical", lexical},
                {"documents", done.load()},
                {"text_mb", text_bytes.load() / 1e6},
                {"ingest_seconds", ingest_s},
                {"docs_per_second", done.load() / ingest_s}};
    std::printf("lexical %-3s  ingest %ld docs (%.1f MB text) in %.1f s: %.0f docs/s\n",
                mode.c_str(), static_cast<long>(done.load()), text_bytes.load() / 1e6, ingest_s,
                done.load() / ingest_s);
    if (lexical) {
      std::error_code ec;
      run["lexical_file_mb"] =
          static_cast<double>(fs::file_size(dir + "/lexical/1.sqlite", ec)) / 1e6;
      Latency lex, hyb;
      // Per query kind (q % 6): English, Chinese, Japanese, Thai words, a phrase, a product code.
      static const char* kKinds[] = {"english", "chinese", "japanese", "thai", "phrase", "code"};
      Latency lex_kind[6];
      int64_t lexical_results = 0;
      SearchParams p;
      p.k = o.k;
      SearchParams side = p;
      side.k = hybrid_candidates(o.k);
      const auto tq = Clock::now();
      for (int q = 0; q < o.queries && (q < 10 || seconds_since(tq) < o.latency_seconds); ++q) {
        const std::string text = corpus.query(o.seed, q, o.n);
        auto t1 = Clock::now();
        auto hits = store->search_lexical("bench", text, p);
        lex.ms.push_back(seconds_since(t1) * 1e3);
        lex_kind[q % 6].ms.push_back(lex.ms.back());
        if (!hits.is_ok()) {
          std::fprintf(stderr, "lexical search: %s\n", hits.status().to_string().c_str());
          return 1;
        }
        lexical_results += static_cast<int64_t>(hits->size());
        const std::vector<float> qv = random_vector(o.seed + 99, q, o.dim);
        t1 = Clock::now();
        auto dense = store->search("bench", qv, side);
        auto lexical_hits = store->search_lexical("bench", text, side);
        if (!dense.is_ok() || !lexical_hits.is_ok()) {
          std::fprintf(stderr, "hybrid search failed\n");
          return 1;
        }
        auto fused = fuse_hits(std::move(*dense), std::move(*lexical_hits), FusionOptions{}, false);
        if (fused.size() > static_cast<size_t>(o.k)) fused.resize(static_cast<size_t>(o.k));
        hyb.ms.push_back(seconds_since(t1) * 1e3);
      }
      run["lexical_search"] = lex.to_json();
      run["hybrid_search"] = hyb.to_json();
      for (int kind = 0; kind < 6; ++kind) {
        run["lexical_search_by_kind"][kKinds[kind]] = lex_kind[kind].to_json();
        std::printf("  lexical %-8s P50 %.2f ms  P99 %.2f ms\n", kKinds[kind],
                    run["lexical_search_by_kind"][kKinds[kind]]["p50_ms"].get<double>(),
                    run["lexical_search_by_kind"][kKinds[kind]]["p99_ms"].get<double>());
      }
      run["lexical_results_per_query"] =
          lex.ms.empty() ? 0.0 : static_cast<double>(lexical_results) / lex.ms.size();
      std::printf(
          "  lexical search  P50 %.2f ms  P99 %.2f ms  (%zu queries, k=%d, %.1f results/query)\n",
          run["lexical_search"]["p50_ms"].get<double>(),
          run["lexical_search"]["p99_ms"].get<double>(), lex.ms.size(), o.k,
          run["lexical_results_per_query"].get<double>());
      std::printf(
          "  hybrid search   P50 %.2f ms  P99 %.2f ms  (flat dense + lexical, %d candidates each, "
          "RRF)\n",
          run["hybrid_search"]["p50_ms"].get<double>(),
          run["hybrid_search"]["p99_ms"].get<double>(), side.k);
      if (o.rebuild) {
        store.reset();
        LexicalIndex::remove_files(dir + "/lexical/1.sqlite");
        const auto tr = Clock::now();
        auto reopened = CollectionStore::open(so);
        if (!reopened.is_ok()) return 1;
        run["rebuild_seconds"] = seconds_since(tr);
        std::printf("  lexical index rebuilt from the store at open in %.1f s\n",
                    run["rebuild_seconds"].get<double>());
      }
    }
    report["runs"].push_back(run);
    write_report();
    store.reset();
    fs::remove_all(dir);
  }
  if (own_dir) fs::remove_all(root);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  return run(o);
}
