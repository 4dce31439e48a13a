// qsearch-bench-ingest: end-to-end ingestion (HTTP -> tokenize -> embed -> RocksDB -> FAISS) in
// documents/s and tokens/s, against the raw engine on the same machine (issue 5, target: the
// service reaches >= 90% of the raw engine).
//
// Phases, one after the other so they never compete for the engine:
//   1. raw engine, in this process: Embedder::open(--model, --device); the documents are
//      tokenized (prepare) and embedded (Embedder::embed, token-budget batches) -> "engine" and
//      "tokenize + engine" rates. The embedder is then destroyed (frees the GPU / threads).
//   2. the service: `qsearch serve` (started here from --qsearch with the same model and
//      device, on a free loopback port, or an already running one with --port) receives the
//      same documents from --clients HTTP clients as POST /collections/{c}/documents batches
//      of --batch (429 answers are retried after Retry-After), then once more through one
//      streamed NDJSON POST /collections/{c}/import; every write is acknowledged only once
//      durable, and document_count is checked at the end.
//
//   qsearch-bench-ingest --model DIR --device cuda --qsearch build/qsearch --docs 20000 --tokens 256
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/http.h"
#include "embed/embedder.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

struct Options {
  std::string model;
  std::string device = "cpu";
  std::string qsearch;        // binary to start the server with (else --port must be running)
  int port = 0;
  int docs = 2000;
  int tokens = 256;           // tokens per document, EOS included
  int batch = 64;             // documents per POST
  int clients = 4;
  int threads = 0;            // CPU engine threads (both phases)
  int64_t max_batch_tokens = 0;
  std::string index = "flat";
  std::string json_path;
  std::string server_args;    // extra flags for `qsearch serve`, space-separated
  bool skip_import = false;
  // --search-during: one more client searches the collection (a random unit vector of the
  // collection's dimension, k 10, include []) back to back while the writes run, and the
  // latencies are reported: what searches see while an HNSW collection ingests (issue 14).
  bool search_during = false;
  uint64_t seed = 7;
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--model") o->model = val();
    else if (a == "--device") o->device = val();
    else if (a == "--qsearch") o->qsearch = val();
    else if (a == "--port") o->port = std::stoi(val());
    else if (a == "--docs") o->docs = std::stoi(val());
    else if (a == "--tokens") o->tokens = std::stoi(val());
    else if (a == "--batch") o->batch = std::stoi(val());
    else if (a == "--clients") o->clients = std::stoi(val());
    else if (a == "--threads") o->threads = std::stoi(val());
    else if (a == "--max-batch-tokens") o->max_batch_tokens = std::stoll(val());
    else if (a == "--index") o->index = val();
    else if (a == "--json") o->json_path = val();
    else if (a == "--server-args") o->server_args = val();
    else if (a == "--skip-import") o->skip_import = true;
    else if (a == "--search-during") o->search_during = true;
    else if (a == "--seed") o->seed = std::stoull(val());
    else {
      std::fprintf(stderr,
                   "usage: qsearch-bench-ingest --model DIR [--device cpu|cuda] (--qsearch BIN | --port N)\n"
                   "  [--docs N] [--tokens N] [--batch N] [--clients N] [--threads N]\n"
                   "  [--max-batch-tokens N] [--index flat|hnsw|ivf] [--server-args \"...\"]\n"
                   "  [--skip-import] [--search-during] [--json FILE] [--seed N]\n");
      return false;
    }
  }
  if (o->model.empty() || (o->qsearch.empty() && o->port == 0)) {
    std::fprintf(stderr, "qsearch-bench-ingest: --model and one of --qsearch / --port are required\n");
    return false;
  }
  return o->docs > 0 && o->tokens >= 2 && o->batch > 0 && o->clients > 0;
}

// Documents of exactly `tokens` tokens (EOS included): random words, cut at a token boundary.
std::vector<std::string> make_documents(const Options& o, const qsearch::Tokenizer& tok) {
  static const char* words[] = {"the", "river", "carries", "ancient", "stones", "toward", "a",
                                "quiet", "harbor", "where", "ships", "wait", "for", "morning",
                                "light", "and", "merchants", "count", "their", "silver", "coins",
                                "while", "children", "watch", "gulls", "circle", "above", "nets"};
  const size_t nw = sizeof(words) / sizeof(words[0]);
  std::mt19937_64 rng(o.seed);
  std::vector<std::string> docs;
  docs.reserve(o.docs);
  for (int d = 0; d < o.docs; ++d) {
    std::string t = "doc " + std::to_string(d) + ":";
    for (int i = 0; i < o.tokens + 8; ++i) t += std::string(" ") + words[rng() % nw];
    auto ids = tok.encode(t, false);
    if (ids.is_ok() && static_cast<int>(ids->size()) > o.tokens - 1) {
      std::vector<int32_t> cut(ids->begin(), ids->begin() + (o.tokens - 1));
      t = tok.decode(cut);
    }
    docs.push_back(std::move(t));
  }
  return docs;
}

struct Rate {
  double seconds = 0;
  int64_t docs = 0, tokens = 0;
  json to_json() const {
    return {{"seconds", seconds}, {"docs", docs}, {"tokens", tokens},
            {"docs_per_s", docs / seconds}, {"tokens_per_s", tokens / seconds}};
  }
};

// Phase 1: the raw engine.
bool raw_engine(const Options& o, const std::vector<std::string>& docs, Rate* tok_engine, Rate* engine) {
  qsearch::EmbedderOptions eo;
  eo.model_dir = o.model;
  eo.device = o.device;
  eo.threads = o.threads;
  eo.max_batch_tokens = o.max_batch_tokens;
  auto e = qsearch::Embedder::open(eo);
  if (!e.is_ok()) {
    std::fprintf(stderr, "raw engine: %s\n", e.status().to_string().c_str());
    return false;
  }
  auto& emb = **e;
  // Warm-up (CUDA graphs, allocations).
  std::vector<std::vector<float>> out;
  std::vector<std::string> warm(docs.begin(), docs.begin() + std::min<size_t>(docs.size(), 64));
  (void)emb.embed_texts(warm, "", 0, 0, &out);

  auto t0 = Clock::now();
  std::vector<qsearch::PreparedText> prepared;
  prepared.reserve(docs.size());
  for (const auto& d : docs) {
    auto p = emb.prepare(d, "");
    if (!p.is_ok()) {
      std::fprintf(stderr, "prepare: %s\n", p.status().to_string().c_str());
      return false;
    }
    prepared.push_back(std::move(p).value());
  }
  auto t1 = Clock::now();
  qsearch::Status st = emb.embed(prepared, 0, &out);
  auto t2 = Clock::now();
  if (!st.is_ok()) {
    std::fprintf(stderr, "embed: %s\n", st.to_string().c_str());
    return false;
  }
  int64_t tokens = 0;
  for (const auto& p : prepared) tokens += static_cast<int64_t>(p.ids.size());
  engine->seconds = std::chrono::duration<double>(t2 - t1).count();
  engine->docs = tok_engine->docs = static_cast<int64_t>(docs.size());
  engine->tokens = tok_engine->tokens = tokens;
  // Tokenization on one thread here; the service tokenizes on a pool: report it separately.
  tok_engine->seconds = std::chrono::duration<double>(t2 - t0).count();
  std::printf("raw engine (%s): %zu docs, %lld tokens: tokenize %.2f s (1 thread), embed %.2f s\n",
              emb.device_name().c_str(), docs.size(), static_cast<long long>(tokens),
              std::chrono::duration<double>(t1 - t0).count(), engine->seconds);
  return true;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

pid_t start_server(const Options& o, int port, const std::string& data_dir, const std::string& log) {
  std::vector<std::string> argv = {o.qsearch, "serve", "--model", o.model, "--device", o.device,
                                   "--data-dir", data_dir, "--host", "127.0.0.1",
                                   "--port", std::to_string(port)};
  if (o.threads > 0) { argv.push_back("--threads"); argv.push_back(std::to_string(o.threads)); }
  if (o.max_batch_tokens > 0) {
    argv.push_back("--max-batch-tokens");
    argv.push_back(std::to_string(o.max_batch_tokens));
  }
  std::istringstream extra(o.server_args);
  for (std::string a; extra >> a;) argv.push_back(a);
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { ::dup2(fd, 1); ::dup2(fd, 2); }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

// Phase 2a: batches from several clients.
bool http_batches(const Options& o, int port, const std::vector<std::string>& docs,
                  const std::string& coll, Rate* rate) {
  std::atomic<size_t> next{0};
  std::atomic<int64_t> ok{0}, tokens{0}, failed{0}, retries{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int c = 0; c < o.clients; ++c)
    ts.emplace_back([&] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);  // else each body write waits for the delayed ACK (~40 ms)
      cli.set_read_timeout(600, 0);
      cli.set_write_timeout(600, 0);
      for (;;) {
        size_t b0 = next.fetch_add(static_cast<size_t>(o.batch));
        if (b0 >= docs.size()) break;
        size_t nb = std::min<size_t>(o.batch, docs.size() - b0);
        json list = json::array();
        for (size_t i = 0; i < nb; ++i)
          list.push_back({{"id", "d" + std::to_string(b0 + i)}, {"text", docs[b0 + i]}});
        std::string body = json{{"documents", list}}.dump();
        for (int attempt = 0;; ++attempt) {
          auto r = cli.Post(("/collections/" + coll + "/documents").c_str(), body, "application/json");
          if (r && r->status == 429 && attempt < 1000) {
            retries++;
            double after = std::atof(r->get_header_value("Retry-After").c_str());
            std::this_thread::sleep_for(std::chrono::duration<double>(std::clamp(after, 0.005, 0.2)));
            continue;
          }
          if (!r || r->status != 200) {
            std::fprintf(stderr, "batch at %zu: %s\n", b0,
                         r ? (std::to_string(r->status) + " " + r->body.substr(0, 200)).c_str()
                           : httplib::to_string(r.error()).c_str());
            failed += static_cast<int64_t>(nb);
            break;
          }
          json j = json::parse(r->body, nullptr, false);
          for (const auto& item : j.value("results", json::array())) {
            if (item.contains("error")) failed++;
            else { ok++; tokens += item.value("tokens", 0); }
          }
          break;
        }
      }
    });
  for (auto& t : ts) t.join();
  rate->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  rate->docs = ok;
  rate->tokens = tokens;
  std::printf("HTTP batches: %lld ok, %lld failed, %lld 429 retries, %.2f s\n",
              static_cast<long long>(ok.load()), static_cast<long long>(failed.load()),
              static_cast<long long>(retries.load()), rate->seconds);
  return failed == 0;
}

// Phase 2b: one streamed NDJSON import.
bool http_import(int port, const std::vector<std::string>& docs, const std::string& coll, Rate* rate) {
  std::string ndjson;
  for (size_t i = 0; i < docs.size(); ++i)
    ndjson += json{{"id", "i" + std::to_string(i)}, {"text", docs[i]}}.dump() + "\n";
  httplib::Client cli("127.0.0.1", port);
  cli.set_tcp_nodelay(true);
  cli.set_read_timeout(3600, 0);
  cli.set_write_timeout(3600, 0);
  auto t0 = Clock::now();
  auto r = cli.Post(("/collections/" + coll + "/import").c_str(), ndjson, "application/x-ndjson");
  rate->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r || r->status != 200) {
    std::fprintf(stderr, "import: %s\n", r ? (std::to_string(r->status) + " " + r->body.substr(0, 300)).c_str()
                                           : httplib::to_string(r.error()).c_str());
    return false;
  }
  json j = json::parse(r->body, nullptr, false);
  rate->docs = j.value("upserted", int64_t{0});
  rate->tokens = j.value("tokens", int64_t{0});
  std::printf("HTTP import: %lld upserted, %lld failed, %.2f s\n", static_cast<long long>(rate->docs),
              static_cast<long long>(j.value("failed", int64_t{0})), rate->seconds);
  return j.value("failed", int64_t{0}) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  auto tok = qsearch::Tokenizer::from_file(o.model + "/tokenizer.json");
  if (!tok.is_ok()) {
    std::fprintf(stderr, "%s\n", tok.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> docs = make_documents(o, **tok);
  std::printf("bench-ingest: %d documents of %d tokens, model %s, device %s\n", o.docs, o.tokens,
              o.model.c_str(), o.device.c_str());

  Rate tok_engine, engine;
  if (!raw_engine(o, docs, &tok_engine, &engine)) return 1;

  int port = o.port;
  pid_t server = -1;
  std::string data_dir, log;
  if (port == 0) {
    port = free_port();
    data_dir = (fs::temp_directory_path() / ("qsearch-bench-ingest-" + std::to_string(::getpid()))).string();
    log = data_dir + ".log";
    server = start_server(o, port, data_dir, log);
  }
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(10, 0);
  bool ready = false;
  for (int i = 0; i < 3000 && !ready; ++i) {
    auto r = cli.Get("/ready");
    ready = r && r->status == 200;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!ready) {
    std::fprintf(stderr, "server on port %d not ready (log: %s)\n", port, log.c_str());
    if (server > 0) ::kill(server, SIGKILL);
    return 1;
  }
  const std::string coll = "ingest_" + std::to_string(::getpid());
  auto c = cli.Post("/collections", json{{"name", coll}, {"index", {{"type", o.index}}}}.dump(), "application/json");
  if (!c || c->status != 201) {
    std::fprintf(stderr, "create collection: %s\n", c ? c->body.c_str() : "no response");
    return 1;
  }
  // Searches while writing (--search-during): latencies in ms, errors counted.
  std::atomic<bool> writing{true};
  std::vector<double> search_ms;
  int64_t search_errors = 0;
  std::thread searcher;
  if (o.search_during) {
    auto ci = cli.Get(("/collections/" + coll).c_str());
    const int dim = ci && ci->status == 200 ? json::parse(ci->body).value("dimension", 0) : 0;
    searcher = std::thread([&, dim] {
      httplib::Client sc("127.0.0.1", port);
      sc.set_keep_alive(true);
      sc.set_tcp_nodelay(true);
      sc.set_read_timeout(60, 0);
      std::mt19937_64 rng(o.seed + 1);
      std::normal_distribution<float> g;
      while (writing.load()) {
        std::vector<float> v(static_cast<size_t>(std::max(dim, 1)));
        float n2 = 0;
        for (float& x : v) { x = g(rng); n2 += x * x; }
        for (float& x : v) x /= std::sqrt(n2);
        const std::string body = json{{"vector", v}, {"k", 10}, {"include", json::array()}}.dump();
        const auto t0 = Clock::now();
        auto r = sc.Post(("/collections/" + coll + "/search").c_str(), body, "application/json");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (r && r->status == 200) search_ms.push_back(ms);
        else search_errors++;
      }
    });
  }
  Rate batches, import;
  bool ok = http_batches(o, port, docs, coll, &batches);
  if (!o.skip_import) ok = http_import(port, docs, coll, &import) && ok;
  writing = false;
  if (searcher.joinable()) searcher.join();
  json search_stats;
  if (o.search_during) {
    std::sort(search_ms.begin(), search_ms.end());
    auto pct = [&](double p) {
      return search_ms.empty() ? 0.0 : search_ms[std::min(search_ms.size() - 1, static_cast<size_t>(p * search_ms.size()))];
    };
    search_stats = {{"searches", search_ms.size()}, {"errors", search_errors}, {"p50_ms", pct(0.5)},
                    {"p99_ms", pct(0.99)}, {"max_ms", search_ms.empty() ? 0.0 : search_ms.back()}};
    std::printf("searches during ingestion: %zu ok, %lld failed, P50 %.2f ms, P99 %.2f ms, max %.2f ms\n",
                search_ms.size(), static_cast<long long>(search_errors), pct(0.5), pct(0.99),
                search_ms.empty() ? 0.0 : search_ms.back());
    if (search_errors > 0) ok = false;
  }
  auto info = cli.Get(("/collections/" + coll).c_str());
  int64_t count = info && info->status == 200 ? json::parse(info->body).value("document_count", int64_t{-1}) : -1;
  int64_t expect = static_cast<int64_t>(docs.size()) * (o.skip_import ? 1 : 2);
  if (count != expect) {
    std::fprintf(stderr, "document_count %lld, expected %lld\n", static_cast<long long>(count),
                 static_cast<long long>(expect));
    ok = false;
  }
  cli.Delete(("/collections/" + coll).c_str());
  if (server > 0) {
    ::kill(server, SIGTERM);
    int st = 0;
    ::waitpid(server, &st, 0);
    fs::remove_all(data_dir);
  }

  auto row = [&](const char* name, const Rate& r) {
    std::printf("| %-28s | %6lld | %7.2f | %8.1f | %9.0f | %5.1f%% |\n", name, static_cast<long long>(r.docs),
                r.seconds, r.docs / r.seconds, r.tokens / r.seconds,
                100.0 * (r.tokens / r.seconds) / (engine.tokens / engine.seconds));
  };
  std::printf("\n| path | docs | seconds | docs/s | tokens/s | of raw engine |\n|---|---:|---:|---:|---:|---:|\n");
  row("raw engine (embed only)", engine);
  row("raw tokenize (1 thread) + embed", tok_engine);
  row("HTTP batches (POST documents)", batches);
  if (!o.skip_import) row("HTTP NDJSON import (1 stream)", import);
  if (!o.json_path.empty()) {
    json out = {{"tool", "qsearch-bench-ingest"}, {"model", o.model}, {"device", o.device},
                {"docs", o.docs}, {"tokens_per_doc", o.tokens}, {"batch", o.batch},
                {"clients", o.clients}, {"index", o.index}, {"engine", engine.to_json()},
                {"tokenize_and_engine", tok_engine.to_json()}, {"http_batches", batches.to_json()},
                {"ratio_batches_vs_engine", (batches.tokens / batches.seconds) / (engine.tokens / engine.seconds)}};
    if (o.search_during) out["search_during_ingest"] = search_stats;
    if (!o.skip_import) {
      out["http_import"] = import.to_json();
      out["ratio_import_vs_engine"] = (import.tokens / import.seconds) / (engine.tokens / engine.seconds);
    }
    std::ofstream(o.json_path) << out.dump(2) << '\n';
  }
  return ok ? 0 : 1;
}
