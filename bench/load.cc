// qsearch-load: the HTTP stress test of a running `qsearch serve` (issue 5).
//
// For each concurrency level (default 1,4,8,16,32,64) it runs that many workers, each with its
// own keep-alive connection (the pool is one persistent cpp-httplib client per worker), for a
// set duration after a warm-up, bounded in requests and time. Default workload: the embedding
// server stress test people run: POST /v1/embeddings with one 512-token text input and
// "dimensions": 1024 (--input ids: 511 random token ids + <|endoftext|>).
// Other workloads: search, ingest, or a weighted mix, against a collection.
//
// Reports per level: requests, QPS, mean/P50/P99/max latency (successful requests, including
// those that finished after the level's end), unfinished requests (in flight when the level
// ended: never dropped, counted apart and waited for), fairness (fewest and most requests one
// client completed; a client with none is starved), tokens/s (from the responses' usage /
// tokens), error rate (non-2xx other than 429, and transport failures), 429 rejections, and GPU
// memory (peak device used, from /metrics) — as a table on stdout, JSON (--json), a TSV row per
// level (--tsv, appended, with --label) and a PNG plot (--plot, gnuplot). The embed workload
// sends text by default (as the seeds' stress test does; --tokenizer makes each text exactly
// --tokens tokens), token ids with --input ids. Loopback only: other hosts are refused.
//
//   qsearch-load --port 8080 --concurrency 1,4,8,16,32,64 --duration 20 --json out.json --plot out.png
#include <netdb.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/http.h"
#include "embed/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::vector<int> levels = {1, 4, 8, 16, 32, 64};
  double duration_s = 10;       // measured seconds per level
  double warmup_s = 2;          // unmeasured seconds before each level
  int64_t max_requests = 1000000;  // per level (measured + warm-up)
  double max_total_s = 3600;    // hard cap for the whole run
  double timeout_s = 120;       // per request
  std::string workload = "embed";  // embed | search | ingest | mixed
  std::string mix = "embed=1";     // weights for mixed, e.g. "embed=6,search=3,ingest=1"
  int tokens = 512;             // tokens per input (EOS included)
  int batch = 1;                // inputs per /v1/embeddings request
  int dimensions = 1024;        // 0: leave out (server default: hidden size)
  std::string input = "text";   // text | ids (exact token counts for text need --tokenizer)
  std::string tokenizer;        // tokenizer.json, to build texts of exactly --tokens tokens
  std::string encoding = "float";
  std::string collection = "load";
  std::string create_index;     // create the collection with this index type if missing
  int k = 10;
  std::string api_key;
  std::string json_path, plot_path, tsv_path, label;
  bool retry_429 = true;        // sleep (Retry-After, at most 1 s) and go on after a 429
  bool fail_on_error = false;   // exit 1 if any unexpected error occurred
  uint64_t seed = 42;
};

void usage() {
  std::fprintf(stderr,
"usage: qsearch-load [options]   (loopback servers only)\n"
"  --host H (127.0.0.1)  --port N (8080)  --api-key KEY\n"
"  --concurrency 1,4,8,16,32,64   --duration S (10)  --warmup S (2)\n"
"  --max-requests N per level (1000000)  --max-total S (3600)  --timeout S (120)\n"
"  --workload embed|search|ingest|mixed (embed)  --mix embed=6,search=3,ingest=1\n"
"  --tokens N (512, EOS included)  --batch N inputs per request (1)  --dimensions N (1024; 0: omit)\n"
"  --input text|ids (text)  --tokenizer tokenizer.json (exact --tokens for text)  --encoding float|base64\n"
"  --collection NAME (load)  --create-index flat|hnsw|ivf  --k N (10)\n"
"  --json FILE  --tsv FILE (rows appended)  --plot FILE.png  --label TEXT  --no-retry-429\n"
"  --fail-on-error  --seed N\n");
}

bool parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "qsearch-load: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") { usage(); std::exit(0); }
    else if (a == "--host") o->host = val();
    else if (a == "--port") o->port = std::stoi(val());
    else if (a == "--api-key") o->api_key = val();
    else if (a == "--concurrency") {
      o->levels.clear();
      std::stringstream ss(val());
      std::string item;
      while (std::getline(ss, item, ',')) o->levels.push_back(std::stoi(item));
    }
    else if (a == "--duration") o->duration_s = std::stod(val());
    else if (a == "--warmup") o->warmup_s = std::stod(val());
    else if (a == "--max-requests") o->max_requests = std::stoll(val());
    else if (a == "--max-total") o->max_total_s = std::stod(val());
    else if (a == "--timeout") o->timeout_s = std::stod(val());
    else if (a == "--workload") o->workload = val();
    else if (a == "--mix") o->mix = val();
    else if (a == "--tokens") o->tokens = std::stoi(val());
    else if (a == "--batch") o->batch = std::stoi(val());
    else if (a == "--dimensions") o->dimensions = std::stoi(val());
    else if (a == "--input") o->input = val();
    else if (a == "--tokenizer") o->tokenizer = val();
    else if (a == "--encoding") o->encoding = val();
    else if (a == "--collection") o->collection = val();
    else if (a == "--create-index") o->create_index = val();
    else if (a == "--k") o->k = std::stoi(val());
    else if (a == "--json") o->json_path = val();
    else if (a == "--plot") o->plot_path = val();
    else if (a == "--tsv") o->tsv_path = val();
    else if (a == "--label") o->label = val();
    else if (a == "--no-retry-429") o->retry_429 = false;
    else if (a == "--fail-on-error") o->fail_on_error = true;
    else if (a == "--seed") o->seed = std::stoull(val());
    else {
      std::fprintf(stderr, "qsearch-load: unknown option %s\n", a.c_str());
      usage();
      return false;
    }
  }
  for (int c : o->levels)
    if (c < 1 || c > 4096) {
      std::fprintf(stderr, "qsearch-load: concurrency %d out of 1..4096\n", c);
      return false;
    }
  if (o->input != "text" && o->input != "ids") {
    std::fprintf(stderr, "qsearch-load: --input is text or ids\n");
    return false;
  }
  if (o->tokens < 2 || o->batch < 1 || o->duration_s <= 0) {
    std::fprintf(stderr, "qsearch-load: --tokens >= 2, --batch >= 1, --duration > 0\n");
    return false;
  }
  return true;
}

// True if every address host resolves to is a loopback address (127.0.0.0/8 or ::1).
bool is_loopback_host(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (getaddrinfo(h.c_str(), nullptr, &hints, &res) != 0 || !res) return false;
  bool all = true;
  for (addrinfo* p = res; p; p = p->ai_next) {
    if (p->ai_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(p->ai_addr);
      all = all && (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (p->ai_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(p->ai_addr);
      all = all && IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    } else {
      all = false;
    }
  }
  freeaddrinfo(res);
  return all;
}

const char* kWords[] = {"search", "vector", "engine", "river", "mountain", "library", "ancient",
                        "language", "model", "query", "document", "network", "quiet", "garden",
                        "history", "science", "music", "ocean", "market", "window", "energy",
                        "planet", "system", "memory", "light", "stone", "paper", "green"};

// Random words; with a tokenizer, trimmed/padded so that the text is exactly n-1 tokens (the
// server appends <|endoftext|>, making n).
std::string make_text(std::mt19937_64& rng, int n, const qsearch::Tokenizer* tok) {
  const size_t nwords = sizeof(kWords) / sizeof(kWords[0]);
  std::string t;
  int words = tok ? n : std::max(1, n * 3 / 4);  // without a tokenizer: about n tokens
  for (int i = 0; i < words; ++i) t += (i ? " " : "") + std::string(kWords[rng() % nwords]);
  if (!tok) return t;
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto ids = tok->encode(t, false);
    if (!ids.is_ok()) break;
    if (static_cast<int>(ids->size()) == n - 1) return t;
    if (static_cast<int>(ids->size()) > n - 1) {
      std::vector<int32_t> cut(ids->begin(), ids->begin() + (n - 1));
      t = tok->decode(cut);
    } else {
      t += " " + std::string(kWords[rng() % nwords]);
    }
  }
  return t;
}

struct Request {
  std::string method, path, body;
  std::string kind;  // embed | search | ingest
};

// Builds one request of the given kind.
class RequestFactory {
 public:
  RequestFactory(const Options& o, const qsearch::Tokenizer* tok) : o_(o), tok_(tok) {}

  Request make(const std::string& kind, std::mt19937_64& rng, int worker, int64_t seq) const {
    Request r;
    r.kind = kind;
    if (kind == "embed") {
      json inputs = json::array();
      for (int b = 0; b < o_.batch; ++b) {
        if (o_.input == "text") {
          inputs.push_back(make_text(rng, o_.tokens, tok_));
        } else {
          json ids = json::array();
          for (int i = 0; i < o_.tokens - 1; ++i) ids.push_back(static_cast<int>(rng() % 151643));
          ids.push_back(151643);
          inputs.push_back(std::move(ids));
        }
      }
      json body = {{"model", "qsearch-load"}, {"encoding_format", o_.encoding}};
      body["input"] = o_.batch == 1 ? inputs[0] : inputs;
      if (o_.dimensions > 0) body["dimensions"] = o_.dimensions;
      r.method = "POST";
      r.path = "/v1/embeddings";
      r.body = body.dump();
    } else if (kind == "search") {
      r.method = "POST";
      r.path = "/collections/" + o_.collection + "/search";
      r.body = json{{"query", make_text(rng, std::min(o_.tokens, 32), tok_)}, {"k", o_.k}}.dump();
    } else {  // ingest
      std::string id = "load-" + std::to_string(o_.seed) + "-" + std::to_string(worker) + "-" +
                       std::to_string(seq);
      r.method = "PUT";
      r.path = "/collections/" + o_.collection + "/documents/" + id;
      r.body = json{{"text", make_text(rng, o_.tokens, tok_)},
                    {"metadata", {{"worker", worker}, {"seq", seq}}}}.dump();
    }
    return r;
  }

 private:
  const Options& o_;
  const qsearch::Tokenizer* tok_;
};

// Pulls an integer field out of a response without parsing all of it (embeddings are large).
int64_t find_int_field(const std::string& body, const char* key) {
  size_t p = body.rfind(key);
  if (p == std::string::npos) return 0;
  p += std::strlen(key);
  while (p < body.size() && (body[p] == '"' || body[p] == ':' || body[p] == ' ')) ++p;
  return std::atoll(body.c_str() + p);
}

struct LevelResult {
  int concurrency = 0;
  int64_t requests = 0, ok = 0, errors = 0, rejected = 0, transport_errors = 0;
  // Requests in flight when the level ended: not in ok or QPS; their latencies are in the
  // percentiles (they were waited for).
  int64_t unfinished = 0;
  // Fairness: requests completed in the window by the client that completed the fewest and
  // the most; starved: clients that completed none.
  int64_t min_per_client = 0, max_per_client = 0, starved = 0;
  double seconds = 0, qps = 0, mean_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
  double tokens_per_s = 0;
  int64_t tokens = 0;
  double gpu_used_mib = -1, engine_mib = -1;  // -1: not reported (CPU engine)
  std::map<std::string, int64_t> status_counts;
  std::map<std::string, int64_t> kind_ok;
  std::vector<std::string> error_samples;
  std::vector<int64_t> timeline_ok, timeline_err;  // per measured second
};

// /metrics -> (device used MiB summed over backends, weights+workspace MiB); -1 when absent.
std::pair<double, double> sample_gpu_memory(httplib::Client& cli, const httplib::Headers& h) {
  auto res = cli.Get("/metrics", h);
  if (!res || res->status != 200) return {-1, -1};
  std::map<std::string, double> total, free_b;
  double engine = 0;
  bool any_device = false;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("qsearch_engine_memory_bytes{", 0) != 0) continue;
    size_t b = line.find("backend=\""), k = line.find("kind=\""), close = line.find('}');
    if (b == std::string::npos || k == std::string::npos || close == std::string::npos) continue;
    std::string backend = line.substr(b + 9, line.find('"', b + 9) - b - 9);
    std::string kind = line.substr(k + 6, line.find('"', k + 6) - k - 6);
    double v = std::atof(line.c_str() + close + 1);
    if (kind == "device_total") { total[backend] = v; any_device = any_device || v > 0; }
    else if (kind == "device_free") free_b[backend] = v;
    else if (kind == "weights" || kind == "workspace") engine += v;
  }
  double used = 0;
  for (const auto& [backend, t] : total) used += t - free_b[backend];
  return {any_device ? used / 1048576.0 : -1, engine / 1048576.0};
}

httplib::Headers auth_headers(const Options& o) {
  httplib::Headers h;
  if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
  return h;
}

std::vector<std::pair<std::string, double>> parse_mix(const Options& o) {
  std::vector<std::pair<std::string, double>> out;
  if (o.workload != "mixed") return {{o.workload, 1.0}};
  std::stringstream ss(o.mix);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t eq = item.find('=');
    std::string kind = item.substr(0, eq);
    double w = eq == std::string::npos ? 1.0 : std::stod(item.substr(eq + 1));
    if (kind != "embed" && kind != "search" && kind != "ingest") {
      std::fprintf(stderr, "qsearch-load: unknown workload '%s' in --mix\n", kind.c_str());
      std::exit(2);
    }
    out.emplace_back(kind, w);
  }
  return out;
}

LevelResult run_level(const Options& o, int concurrency, const RequestFactory& factory,
                      Clock::time_point hard_deadline) {
  LevelResult lr;
  lr.concurrency = concurrency;
  const auto mix = parse_mix(o);
  double mix_total = 0;
  for (const auto& m : mix) mix_total += m.second;
  const auto t0 = Clock::now();
  const auto measure_from = t0 + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.warmup_s));
  auto end = measure_from + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(o.duration_s));
  if (end > hard_deadline) end = hard_deadline;
  const size_t seconds = static_cast<size_t>(std::ceil(o.duration_s)) + 1;
  std::vector<std::atomic<int64_t>> tl_ok(seconds), tl_err(seconds);
  std::atomic<int64_t> issued{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::vector<int64_t> per_client(static_cast<size_t>(concurrency), 0);
  const httplib::Headers headers = auth_headers(o);

  std::atomic<bool> stop_sampler{false};
  double gpu_peak = -1, engine_mib = -1;
  std::thread sampler([&] {
    httplib::Client cli(o.host, o.port);
    cli.set_keep_alive(true);
    cli.set_read_timeout(10, 0);
    while (!stop_sampler.load()) {
      auto [used, engine] = sample_gpu_memory(cli, headers);
      if (used > gpu_peak) gpu_peak = used;
      if (engine >= 0) engine_mib = engine;
      for (int i = 0; i < 10 && !stop_sampler.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  std::vector<std::thread> workers;
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937_64 rng(o.seed * 1000003 + static_cast<uint64_t>(w) * 7919 +
                          static_cast<uint64_t>(concurrency));
      httplib::Client cli(o.host, o.port);
      cli.set_keep_alive(true);
      // Without TCP_NODELAY the body's write waits on the delayed ACK of the headers' write:
      // a fixed ~40 ms on every request, seen at concurrency 1 before this was set.
      cli.set_tcp_nodelay(true);
      cli.set_connection_timeout(10, 0);
      cli.set_read_timeout(static_cast<time_t>(o.timeout_s), 0);
      cli.set_write_timeout(static_cast<time_t>(o.timeout_s), 0);
      std::vector<double> mine;
      std::map<std::string, int64_t> statuses, kinds;
      std::vector<std::string> samples;
      int64_t ok = 0, errors = 0, rejected = 0, transport = 0, tokens = 0, seq = 0;
      int64_t unfinished = 0;
      std::uniform_real_distribution<double> pick(0, mix_total);
      while (Clock::now() < end && issued.fetch_add(1) < o.max_requests) {
        std::string kind = mix[0].first;
        double x = pick(rng);
        for (const auto& m : mix) {
          if (x < m.second) { kind = m.first; break; }
          x -= m.second;
        }
        Request r = factory.make(kind, rng, w, seq++);
        auto start = Clock::now();
        httplib::Result res = r.method == "PUT"
                                  ? cli.Put(r.path.c_str(), headers, r.body, "application/json")
                                  : cli.Post(r.path.c_str(), headers, r.body, "application/json");
        auto done = Clock::now();
        if (done < measure_from) continue;  // warm-up
        if (done > end) {
          // In flight when the level ended: counted apart, its latency kept.
          ++unfinished;
          if (res && res->status >= 200 && res->status < 300)
            mine.push_back(std::chrono::duration<double, std::milli>(done - start).count());
          continue;
        }
        size_t sec = static_cast<size_t>(std::chrono::duration<double>(done - measure_from).count());
        if (sec >= seconds) sec = seconds - 1;
        if (!res) {
          ++transport;
          ++errors;
          tl_err[sec]++;
          statuses["transport"]++;
          if (samples.size() < 3) samples.push_back(kind + ": " + httplib::to_string(res.error()));
          continue;
        }
        statuses[std::to_string(res->status)]++;
        if (res->status >= 200 && res->status < 300) {
          ++ok;
          kinds[kind]++;
          tl_ok[sec]++;
          mine.push_back(std::chrono::duration<double, std::milli>(done - start).count());
          if (kind == "embed") tokens += find_int_field(res->body, "\"total_tokens\"");
          else if (kind == "ingest") tokens += find_int_field(res->body, "\"tokens\"");
        } else if (res->status == 429) {
          ++rejected;
          if (o.retry_429) {
            double after = std::atof(res->get_header_value("Retry-After").c_str());
            std::this_thread::sleep_for(std::chrono::duration<double>(std::clamp(after, 0.01, 1.0)));
          }
        } else {
          ++errors;
          tl_err[sec]++;
          if (samples.size() < 3)
            samples.push_back(kind + " " + r.path + ": " + std::to_string(res->status) + " " +
                              res->body.substr(0, 200));
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
      lr.ok += ok;
      lr.unfinished += unfinished;
      per_client[static_cast<size_t>(w)] = ok;
      lr.errors += errors;
      lr.rejected += rejected;
      lr.transport_errors += transport;
      lr.tokens += tokens;
      for (const auto& [k, v] : statuses) lr.status_counts[k] += v;
      for (const auto& [k, v] : kinds) lr.kind_ok[k] += v;
      for (auto& s : samples)
        if (lr.error_samples.size() < 5) lr.error_samples.push_back(s);
    });
  }
  for (auto& t : workers) t.join();
  const auto finished = Clock::now();
  stop_sampler = true;
  sampler.join();

  // The window ends at `end`: requests still in flight then are `unfinished`, not QPS.
  (void)finished;
  lr.seconds = std::max(1e-9, std::chrono::duration<double>(end - measure_from).count());
  lr.requests = lr.ok + lr.errors + lr.rejected + lr.unfinished;
  lr.min_per_client = *std::min_element(per_client.begin(), per_client.end());
  lr.max_per_client = *std::max_element(per_client.begin(), per_client.end());
  lr.starved = std::count(per_client.begin(), per_client.end(), int64_t{0});
  lr.qps = lr.ok / lr.seconds;
  lr.tokens_per_s = lr.tokens / lr.seconds;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    if (latencies_ms.empty()) return 0.0;
    size_t i = static_cast<size_t>(std::ceil(p * latencies_ms.size())) - 1;
    return latencies_ms[std::min(i, latencies_ms.size() - 1)];
  };
  if (!latencies_ms.empty()) {
    double sum = 0;
    for (double x : latencies_ms) sum += x;
    lr.mean_ms = sum / latencies_ms.size();
    lr.p50_ms = pct(0.50);
    lr.p90_ms = pct(0.90);
    lr.p99_ms = pct(0.99);
    lr.max_ms = latencies_ms.back();
  }
  lr.gpu_used_mib = gpu_peak;
  lr.engine_mib = engine_mib;
  size_t used_seconds = std::min(seconds, static_cast<size_t>(std::ceil(lr.seconds)));
  for (size_t s = 0; s < used_seconds; ++s) {
    lr.timeline_ok.push_back(tl_ok[s].load());
    lr.timeline_err.push_back(tl_err[s].load());
  }
  return lr;
}

json level_json(const LevelResult& r) {
  return {{"concurrency", r.concurrency}, {"requests", r.requests}, {"ok", r.ok},
          {"errors", r.errors}, {"rejected_429", r.rejected},
          {"transport_errors", r.transport_errors}, {"unfinished", r.unfinished},
          {"requests_per_client", {{"min", r.min_per_client}, {"max", r.max_per_client},
                                   {"starved", r.starved}}},
          {"seconds", r.seconds}, {"qps", r.qps},
          {"latency_ms", {{"mean", r.mean_ms}, {"p50", r.p50_ms}, {"p90", r.p90_ms},
                          {"p99", r.p99_ms}, {"max", r.max_ms}}},
          {"tokens", r.tokens}, {"tokens_per_s", r.tokens_per_s},
          {"error_rate", r.requests ? static_cast<double>(r.errors) / r.requests : 0.0},
          {"gpu_memory_used_mib", r.gpu_used_mib}, {"engine_memory_mib", r.engine_mib},
          {"status_counts", r.status_counts}, {"ok_by_kind", r.kind_ok},
          {"error_samples", r.error_samples}, {"timeline_ok_per_s", r.timeline_ok},
          {"timeline_errors_per_s", r.timeline_err}};
}

void print_table(const std::vector<LevelResult>& results) {
  std::printf("\n| concurrency | requests |     QPS | mean ms |  P50 ms |  P99 ms |  max ms | unfinished | per client min/max | starved |  tokens/s | errors | 429s | GPU MiB |\n");
  std::printf("|------------:|---------:|--------:|--------:|--------:|--------:|--------:|-----------:|-------------------:|--------:|----------:|-------:|-----:|--------:|\n");
  for (const auto& r : results) {
    char gpu[32];
    if (r.gpu_used_mib >= 0) std::snprintf(gpu, sizeof gpu, "%.0f", r.gpu_used_mib);
    else std::snprintf(gpu, sizeof gpu, "n/a");
    char fair[48];
    std::snprintf(fair, sizeof fair, "%lld/%lld", static_cast<long long>(r.min_per_client),
                  static_cast<long long>(r.max_per_client));
    std::printf("| %11d | %8lld | %7.1f | %7.1f | %7.1f | %7.1f | %7.1f | %10lld | %18s | %7lld | %9.0f | %5.2f%% | %4lld | %7s |\n",
                r.concurrency, static_cast<long long>(r.requests), r.qps, r.mean_ms, r.p50_ms,
                r.p99_ms, r.max_ms, static_cast<long long>(r.unfinished), fair,
                static_cast<long long>(r.starved), r.tokens_per_s,
                r.requests ? 100.0 * r.errors / r.requests : 0.0,
                static_cast<long long>(r.rejected), gpu);
  }
  std::fflush(stdout);
}

// Writes <plot>.dat and <plot>.gp next to the PNG and runs gnuplot.
bool write_plot(const Options& o, const std::vector<LevelResult>& results, const std::string& title) {
  std::string dat = o.plot_path + ".dat", gp = o.plot_path + ".gp";
  {
    std::ofstream d(dat);
    d << "# concurrency qps mean_ms p50_ms p99_ms tokens_per_s error_rate\n";
    for (const auto& r : results)
      d << r.concurrency << ' ' << r.qps << ' ' << r.mean_ms << ' ' << r.p50_ms << ' ' << r.p99_ms
        << ' ' << r.tokens_per_s << ' ' << (r.requests ? double(r.errors) / r.requests : 0.0) << '\n';
  }
  {
    std::ofstream g(gp);
    g << "set terminal pngcairo size 1100,800 font 'sans,10' noenhanced\n"
      << "set output '" << o.plot_path << "'\n"
      << "set multiplot layout 2,1 title '" << title << "'\n"
      << "set logscale x 2\nset grid\nset key left top\nset xlabel 'concurrency'\n"
      << "set ylabel 'requests/s'\nset y2label 'latency (ms)'\nset ytics nomirror\nset y2tics\n"
      << "plot '" << dat << "' using 1:2 with linespoints lw 2 title 'QPS', "
      << "'' using 1:4 axes x1y2 with linespoints title 'P50 latency', "
      << "'' using 1:5 axes x1y2 with linespoints title 'P99 latency'\n"
      << "unset y2label\nunset y2tics\nset ytics mirror\nset ylabel 'tokens/s'\n"
      << "plot '" << dat << "' using 1:6 with linespoints lw 2 title 'tokens/s'\n"
      << "unset multiplot\n";
  }
  std::string cmd = "gnuplot '" + gp + "'";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::fprintf(stderr, "qsearch-load: gnuplot failed (rc %d); data in %s\n", rc, dat.c_str());
    return false;
  }
  return true;
}

std::unique_ptr<qsearch::Tokenizer> load_tokenizer(const Options& o) {
  if (o.tokenizer.empty()) return nullptr;
  auto t = qsearch::Tokenizer::from_file(o.tokenizer);
  if (!t.is_ok()) {
    std::fprintf(stderr, "qsearch-load: %s\n", t.status().to_string().c_str());
    std::exit(2);
  }
  return std::move(t).value();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, &o)) return 2;
  if (!is_loopback_host(o.host)) {
    std::fprintf(stderr, "qsearch-load: refusing %s: only loopback servers (127.0.0.0/8, ::1, "
                         "localhost) may be load-tested\n", o.host.c_str());
    return 2;
  }
  if (o.input == "text" && o.tokenizer.empty())
    std::fprintf(stderr, "qsearch-load: --input text without --tokenizer: texts are only about "
                         "%d tokens long\n", o.tokens);
  auto tok = load_tokenizer(o);
  const auto mix = parse_mix(o);

  httplib::Client probe(o.host, o.port);
  probe.set_read_timeout(10, 0);
  auto ready = probe.Get("/ready");
  if (!ready || ready->status != 200) {
    std::fprintf(stderr, "qsearch-load: server %s:%d is not ready (%s)\n", o.host.c_str(), o.port,
                 ready ? std::to_string(ready->status).c_str() : httplib::to_string(ready.error()).c_str());
    return 1;
  }
  bool needs_collection = false;
  for (const auto& m : mix) needs_collection = needs_collection || m.first != "embed";
  if (needs_collection && !o.create_index.empty()) {
    json spec = {{"name", o.collection}, {"index", {{"type", o.create_index}}}};
    if (o.dimensions > 0) spec["dimension"] = o.dimensions;
    auto r = probe.Post("/collections", auth_headers(o), spec.dump(), "application/json");
    if (!r || (r->status != 201 && r->status != 409)) {
      std::fprintf(stderr, "qsearch-load: creating collection %s failed: %s\n", o.collection.c_str(),
                   r ? r->body.c_str() : httplib::to_string(r.error()).c_str());
      return 1;
    }
  }
  if (mix.size() == 1 && mix[0].first == "search") {
    // Searching an empty collection measures nothing: seed it with a few documents.
    RequestFactory f(o, tok.get());
    std::mt19937_64 rng(o.seed);
    for (int i = 0; i < 64; ++i) {
      Request r = f.make("ingest", rng, -1, i);
      probe.Put(r.path.c_str(), auth_headers(o), r.body, "application/json");
    }
  }

  RequestFactory factory(o, tok.get());
  const auto hard_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(o.max_total_s));
  std::string what = o.workload == "mixed" ? "mixed " + o.mix : o.workload;
  std::printf("qsearch-load: %s:%d, workload %s, %d-token inputs x %d per request, dimensions %d, "
              "%.0f s per level (+%.0f s warm-up)\n",
              o.host.c_str(), o.port, what.c_str(), o.tokens, o.batch, o.dimensions, o.duration_s,
              o.warmup_s);
  std::vector<LevelResult> results;
  bool unexpected = false;
  for (int c : o.levels) {
    if (Clock::now() >= hard_deadline) {
      std::fprintf(stderr, "qsearch-load: --max-total reached, skipping the remaining levels\n");
      break;
    }
    LevelResult r = run_level(o, c, factory, hard_deadline);
    std::printf("  concurrency %3d: %7.1f QPS, p50 %.1f ms, p99 %.1f ms, max %.1f ms, %lld unfinished, "
                "per client %lld..%lld, %.0f tokens/s, %lld errors, %lld 429s\n",
                c, r.qps, r.p50_ms, r.p99_ms, r.max_ms, static_cast<long long>(r.unfinished),
                static_cast<long long>(r.min_per_client), static_cast<long long>(r.max_per_client),
                r.tokens_per_s, static_cast<long long>(r.errors),
                static_cast<long long>(r.rejected));
    for (const auto& s : r.error_samples) std::printf("    error: %s\n", s.c_str());
    std::fflush(stdout);
    unexpected = unexpected || r.errors > 0;
    results.push_back(std::move(r));
  }
  print_table(results);

  if (!o.json_path.empty()) {
    json out = {{"tool", "qsearch-load"}, {"label", o.label}, {"host", o.host}, {"port", o.port},
                {"workload", what}, {"tokens_per_input", o.tokens}, {"batch", o.batch},
                {"dimensions", o.dimensions}, {"input", o.input}, {"duration_s", o.duration_s},
                {"warmup_s", o.warmup_s}, {"levels", json::array()}};
    for (const auto& r : results) out["levels"].push_back(level_json(r));
    std::ofstream f(o.json_path);
    f << out.dump(2) << '\n';
    std::printf("wrote %s\n", o.json_path.c_str());
  }
  if (!o.tsv_path.empty()) {
    bool fresh = !std::ifstream(o.tsv_path).good();
    std::ofstream f(o.tsv_path, std::ios::app);
    if (fresh)
      f << "label\tconcurrency\tqps\tp50_ms\tp99_ms\tmax_ms\tmean_ms\tunfinished\t"
           "min_per_client\tmax_per_client\tstarved\terrors\trejected_429\n";
    for (const auto& r : results)
      f << (o.label.empty() ? "qsearch" : o.label) << '\t' << r.concurrency << '\t' << r.qps
        << '\t' << r.p50_ms << '\t' << r.p99_ms << '\t' << r.max_ms << '\t' << r.mean_ms << '\t'
        << r.unfinished << '\t' << r.min_per_client << '\t' << r.max_per_client << '\t'
        << r.starved << '\t' << r.errors << '\t' << r.rejected << '\n';
    std::printf("appended to %s\n", o.tsv_path.c_str());
  }
  if (!o.plot_path.empty()) {
    std::string title = "qsearch-load: " + what + ", " + std::to_string(o.tokens) +
                        "-token inputs, dimensions " + std::to_string(o.dimensions) +
                        (o.label.empty() ? "" : " (" + o.label + ")");
    if (write_plot(o, results, title)) std::printf("wrote %s\n", o.plot_path.c_str());
  }
  if (o.fail_on_error && unexpected) {
    std::fprintf(stderr, "qsearch-load: unexpected errors occurred\n");
    return 1;
  }
  return 0;
}
