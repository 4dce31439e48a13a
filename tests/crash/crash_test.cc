// Crash test (issue 5): start `qsearch serve`, ingest from several clients, kill -9 the server
// at a random moment, restart it, and check that
//   - every acknowledged write is there: acknowledged upserts with their text and metadata
//     (from the same write: one WriteBatch), acknowledged deletes gone;
//   - writes in flight at the kill are either fully there or fully absent (old or new version);
//   - every stored document is searchable by its own vector, and no search returns a document
//     the store does not have (index and store agree);
//   - document_count equals a scan (every id any client ever used is known, so probing them all
//     is a full scan).
// Rounds accumulate in one data directory. CI runs a few rounds per index type; more with
//   QSEARCH_CRASH_ROUNDS=50 QSEARCH_CRASH_CLIENTS=8 build/tests/test_crash   (scripts/crash_test.sh)
// Other knobs: QSEARCH_CRASH_SEED, QSEARCH_CRASH_MAX_KILL_MS (kill within 0..this after ready),
// QSEARCH_CRASH_KEEP (keep the data directory), QSEARCH_CRASH_INDEX (run one index type only),
// QSEARCH_CRASH_SERVER_ARGS (extra `qsearch serve` flags, space-separated, e.g. "--sync").
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// What an id may look like after a crash: a set of allowed versions (0 = absent).
struct IdModel {
  std::set<int> allowed = {0};
  int next_version = 1;  // versions are per id, increasing
};

std::string doc_text(const std::string& id, int version, uint64_t salt) {
  static const char* words[] = {"river",  "granite", "lantern", "orbit",  "meadow", "cipher",
                                "harbor", "quartz",  "falcon",  "ember",  "tundra", "violet",
                                "delta",  "summit",  "pixel",   "saffron"};
  std::string t = "document " + id + " version " + std::to_string(version) + ":";
  std::mt19937_64 rng(salt);
  for (int i = 0; i < 12; ++i) t += std::string(" ") + words[rng() % 16];
  return t;
}

// Parses "version N" back out of a stored text.
int text_version(const std::string& text) {
  size_t p = text.find(" version ");
  if (p == std::string::npos) return -1;
  return std::atoi(text.c_str() + p + 9);
}

struct Shared {
  std::mutex mu;
  std::map<std::string, IdModel> ids;  // every id any client ever touched
  std::atomic<bool> killing{false};
  std::atomic<int64_t> acked{0}, attempted{0};
  std::vector<std::string> unexpected;  // errors not caused by the kill
  void note_unexpected(const std::string& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (unexpected.size() < 20) unexpected.push_back(e);
  }
};

// One client: a random mix of single PUTs, batch POSTs, NDJSON imports, updates and deletes on
// its own ids, until its first failure (the kill). Every op is recorded in the model before it
// is sent (as possible) and narrowed once acknowledged.
void client_loop(int port, const std::string& coll, int round, int client, uint64_t seed,
                 Shared* sh) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> mine;  // ids this client created (any state)
  int counter = 0;
  auto add_possible = [&](const std::string& id, int version) {
    std::lock_guard<std::mutex> lock(sh->mu);
    sh->ids[id].allowed.insert(version);
  };
  auto settle = [&](const std::string& id, int version) {
    std::lock_guard<std::mutex> lock(sh->mu);
    sh->ids[id].allowed = {version};
  };
  auto new_version = [&](const std::string& id) {
    std::lock_guard<std::mutex> lock(sh->mu);
    return sh->ids[id].next_version++;
  };
  auto failed = [&](const HttpResult& r, const std::string& what) {
    if (sh->killing.load()) return true;  // expected: the server is being killed
    sh->note_unexpected(what + ": status " + std::to_string(r.status) + " " + r.error + " " +
                        r.body.substr(0, 300));
    return true;
  };
  // PUTs the next version of id (a new document or an update); false when not acknowledged.
  auto put_version = [&](const std::string& id, const std::string& what) {
    int v = new_version(id);
    add_possible(id, v);
    json body = {{"text", doc_text(id, v, rng())}, {"metadata", {{"v", v}, {"client", client}}}};
    sh->attempted++;
    HttpResult r = http_request(port, "PUT",
                                "/collections/" + coll + "/documents/" + url_encode(id),
                                body.dump(), {}, 30.0);
    if (r.status != 200) {
      failed(r, what + " " + id);
      return false;
    }
    settle(id, v);
    sh->acked++;
    return true;
  };
  for (;;) {
    int op = static_cast<int>(rng() % 100);
    if (op < 55 || mine.size() < 4) {  // PUT one new document
      std::string id = "r" + std::to_string(round) + "-c" + std::to_string(client) + "-" +
                       std::to_string(counter++);
      mine.push_back(id);
      if (!put_version(id, "PUT")) return;
    } else if (op < 70 || op >= 92) {  // POST a batch (op >= 92: an NDJSON import) of 2..6 documents
      int n = 2 + static_cast<int>(rng() % 5);
      json docs = json::array();
      std::vector<std::pair<std::string, int>> batch;
      for (int i = 0; i < n; ++i) {
        std::string id = "r" + std::to_string(round) + "-c" + std::to_string(client) + "-" +
                         std::to_string(counter++);
        int v = new_version(id);
        add_possible(id, v);
        docs.push_back({{"id", id}, {"text", doc_text(id, v, rng())}, {"metadata", {{"v", v}}}});
        batch.emplace_back(id, v);
        mine.push_back(id);
      }
      sh->attempted += n;
      const bool import = op >= 92;
      std::string body;
      if (import) {
        for (const auto& d : docs) body += d.dump() + "\n";
      } else {
        body = json{{"documents", docs}}.dump();
      }
      HttpResult r = http_request(port, "POST",
                                  "/collections/" + coll + (import ? "/import" : "/documents"),
                                  body, {import ? "Content-Type: application/x-ndjson" : "Content-Type: application/json"},
                                  30.0);
      if (r.status != 200) {
        failed(r, import ? "POST import" : "POST batch");
        return;
      }
      json resp = json::parse(r.body, nullptr, false);
      if (import && (!resp.is_object() || resp.value("upserted", -1) != n)) {
        sh->note_unexpected("import of " + std::to_string(n) + " answered " + r.body.substr(0, 300));
        continue;
      }
      // Per-item results: any item reporting an error stays uncertain (and is unexpected).
      for (size_t i = 0; i < batch.size(); ++i) {
        bool item_ok = true;
        if (resp.is_object() && resp.contains("results") && resp["results"].is_array() &&
            i < resp["results"].size()) {
          const json& item = resp["results"][i];
          if (item.is_object() && item.contains("error")) item_ok = false;
        }
        if (item_ok) {
          settle(batch[i].first, batch[i].second);
          sh->acked++;
        } else {
          sh->note_unexpected("batch item " + batch[i].first + " failed: " + r.body.substr(0, 300));
        }
      }
    } else if (op < 85) {  // update one of mine
      const std::string id = mine[rng() % mine.size()];
      if (!put_version(id, "update")) return;
    } else if (op < 92) {  // delete one of mine; 404 is fine when it is already absent
      const std::string id = mine[rng() % mine.size()];
      add_possible(id, 0);
      sh->attempted++;
      HttpResult r = http_request(port, "DELETE",
                                  "/collections/" + coll + "/documents/" + url_encode(id), "",
                                  {}, 30.0);
      if (r.status == 200 || r.status == 204) {
        settle(id, 0);
        sh->acked++;
      } else if (r.status == 404) {
        bool was_absent;
        {
          std::lock_guard<std::mutex> lock(sh->mu);
          was_absent = sh->ids[id].allowed.count(0) > 0;
        }
        if (!was_absent) sh->note_unexpected("DELETE " + id + " gave 404 for a present document");
        settle(id, 0);
      } else {
        failed(r, "DELETE " + id);
        return;
      }
    }
  }
}

struct Verification {
  int64_t present = 0;
  std::vector<std::string> failures;
  void fail(const std::string& f) {
    if (failures.size() < 30) failures.push_back(f);
  }
};

std::vector<float> json_vector(const json& j) {
  std::vector<float> v;
  if (j.is_array())
    for (const auto& x : j) v.push_back(x.get<float>());
  return v;
}

// Checks the restarted server against the model (see the file comment).
Verification verify(const ServerProcess& srv, const std::string& coll,
                    const std::map<std::string, IdModel>& ids, bool exact_index) {
  Verification out;
  std::set<std::string> present;
  for (const auto& [id, m] : ids) {
    HttpResult r = srv.request("GET", "/collections/" + coll + "/documents/" + url_encode(id) +
                                            "?include=embedding");
    if (r.status == 404) {
      if (!m.allowed.count(0)) out.fail(id + ": acknowledged document missing after restart");
      continue;
    }
    if (r.status != 200) {
      out.fail(id + ": GET gave " + std::to_string(r.status) + " " + r.error + " " + r.body.substr(0, 200));
      continue;
    }
    json doc = json::parse(r.body, nullptr, false);
    std::string text = doc.value("text", "");
    int v = text_version(text);
    if (!m.allowed.count(v)) {
      std::string allowed;
      for (int a : m.allowed) allowed += std::to_string(a) + " ";
      out.fail(id + ": version " + std::to_string(v) + " present, allowed {" + allowed + "}");
    }
    if (!doc.contains("metadata") || !doc["metadata"].is_object() ||
        doc["metadata"].value("v", -1) != v)
      out.fail(id + ": metadata " + (doc.contains("metadata") ? doc["metadata"].dump() : "none") +
               " does not belong to text version " + std::to_string(v) + " (torn write)");
    present.insert(id);
    std::vector<float> emb = json_vector(doc.value("embedding", json()));
    if (emb.empty()) {
      out.fail(id + ": no embedding in GET ?include=embedding: " + r.body.substr(0, 200));
      continue;
    }
    HttpResult s = srv.request("POST", "/collections/" + coll + "/search",
                               json{{"vector", emb}, {"k", 5}}.dump());
    json res = json::parse(s.body, nullptr, false);
    if (s.status != 200 || !res.contains("results")) {
      out.fail(id + ": search by own vector gave " + std::to_string(s.status) + " " + s.body.substr(0, 200));
      continue;
    }
    bool found = false;
    float best = -1e30f, mine = -1e30f;
    for (const auto& h : res["results"]) {
      float sc = h.value("score", 0.0f);
      best = std::max(best, sc);
      if (h.value("id", "") == id) {
        found = true;
        mine = sc;
      }
    }
    if (!found) out.fail(id + ": not found by a search with its own vector: " + s.body.substr(0, 300));
    else if (mine < best - 1e-4f) out.fail(id + ": own vector scores " + std::to_string(mine) +
                                           " below best " + std::to_string(best));
  }
  out.present = static_cast<int64_t>(present.size());

  // document_count from the collection info must equal the scan.
  HttpResult info = srv.request("GET", "/collections/" + coll);
  json ij = json::parse(info.body, nullptr, false);
  if (info.status != 200 || !ij.is_object()) {
    out.fail("GET collection gave " + std::to_string(info.status) + " " + info.body.substr(0, 200));
  } else {
    int64_t count = ij.value("document_count", int64_t{-1});
    if (count != out.present)
      out.fail("document_count " + std::to_string(count) + " != scan " + std::to_string(out.present));
    // The index holds every document (HNSW may also hold tombstones until it is rebuilt).
    int64_t index_size = ij.value("index_size", int64_t{-1});
    if (index_size < count || (exact_index && index_size != count))
      out.fail("index_size " + std::to_string(index_size) + " vs document_count " + std::to_string(count));
  }

  // No search may return a document the store does not have; with an exact index a search
  // for k >= count returns every document.
  if (!present.empty()) {
    HttpResult g = srv.request("GET", "/collections/" + coll + "/documents/" +
                                            url_encode(*present.begin()) + "?include=embedding");
    json gd = json::parse(g.body, nullptr, false);
    int k = static_cast<int>(std::min<int64_t>(1000, out.present + 10));
    HttpResult s = srv.request("POST", "/collections/" + coll + "/search",
                               json{{"vector", gd.value("embedding", json::array())}, {"k", k}}.dump());
    json res = json::parse(s.body, nullptr, false);
    if (s.status != 200 || !res.contains("results")) {
      out.fail("wide search gave " + std::to_string(s.status) + " " + s.body.substr(0, 200));
    } else {
      std::set<std::string> seen;
      for (const auto& h : res["results"]) {
        std::string hid = h.value("id", "");
        if (!present.count(hid)) out.fail("search returned " + hid + ", which the store does not have");
        if (!seen.insert(hid).second) out.fail("search returned " + hid + " twice");
      }
      if (exact_index && static_cast<int64_t>(seen.size()) != std::min<int64_t>(k, out.present))
        out.fail("exact search for k=" + std::to_string(k) + " returned " +
                 std::to_string(seen.size()) + " of " + std::to_string(out.present) + " documents");
    }
  }
  return out;
}

class CrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashTest, KillNineLosesNoAcknowledgedWrite) {
  const std::string index_type = GetParam();
  if (const char* only = std::getenv("QSEARCH_CRASH_INDEX"); only && *only && index_type != only)
    GTEST_SKIP() << "QSEARCH_CRASH_INDEX=" << only;
  const int rounds = env_int("QSEARCH_CRASH_ROUNDS", 3);
  const int clients = env_int("QSEARCH_CRASH_CLIENTS", 4);
  const int max_kill_ms = env_int("QSEARCH_CRASH_MAX_KILL_MS", 1500);
  uint64_t seed = static_cast<uint64_t>(env_int("QSEARCH_CRASH_SEED", 0));
  if (seed == 0) seed = std::random_device{}();
  std::printf("crash test: index %s, %d rounds, %d clients, seed %llu "
              "(rerun with QSEARCH_CRASH_SEED)\n",
              index_type.c_str(), rounds, clients, static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);

  std::string err;
  ASSERT_FALSE(test_model_dir(&err).empty()) << err;
  fs::path tmp = make_temp_dir("qsearch-crash");
  ASSERT_FALSE(tmp.empty());
  fs::path data = tmp / "data";
  std::vector<std::string> server_args;
  if (const char* extra = std::getenv("QSEARCH_CRASH_SERVER_ARGS")) {
    std::istringstream ss(extra);
    for (std::string a; ss >> a;) server_args.push_back(a);
  }
  ServerProcess srv(data.string(), server_args);
  ASSERT_TRUE(srv.start()) << srv.start_error();

  const std::string coll = "crash_" + index_type;
  json index = {{"type", index_type}};
  if (index_type == "ivf") index = {{"type", "ivf"}, {"nlist", 4}, {"train_min", 64}, {"nprobe", 4}};
  HttpResult created = srv.request("POST", "/collections",
                                   json{{"name", coll}, {"metric", "cosine"}, {"index", index}}.dump());
  ASSERT_EQ(created.status, 201) << created.body;

  Shared sh;
  int64_t total_acked = 0;
  for (int round = 0; round < rounds; ++round) {
    if (!srv.running()) {
      ASSERT_TRUE(srv.start()) << "restart before round " << round << ": " << srv.start_error();
    }
    sh.killing = false;
    sh.acked = 0;
    sh.attempted = 0;
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c)
      threads.emplace_back(client_loop, srv.port(), coll, round, c, rng(), &sh);
    // Mostly mid-ingestion; every 4th round early (first requests in flight, index just loaded).
    int kill_ms = round % 4 == 3 ? static_cast<int>(rng() % 200)
                                 : 200 + static_cast<int>(rng() % static_cast<uint64_t>(std::max(1, max_kill_ms - 199)));
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_ms));
    sh.killing = true;
    srv.kill9();
    for (auto& t : threads) t.join();
    total_acked += sh.acked;
    std::printf("round %d: killed after %d ms, %lld acknowledged of %lld attempted writes\n", round,
                kill_ms, static_cast<long long>(sh.acked.load()),
                static_cast<long long>(sh.attempted.load()));
    std::fflush(stdout);
    for (const auto& u : sh.unexpected) ADD_FAILURE() << "unexpected error before the kill: " << u;
    sh.unexpected.clear();

    ASSERT_TRUE(srv.start()) << "restart after kill in round " << round << ": "
                             << srv.start_error();
    Verification v;
    {
      std::lock_guard<std::mutex> lock(sh.mu);
      v = verify(srv, coll, sh.ids, index_type == "flat");
    }
    std::printf("round %d: verified %lld stored documents of %zu ids\n", round,
                static_cast<long long>(v.present), sh.ids.size());
    std::fflush(stdout);
    for (const auto& f : v.failures) ADD_FAILURE() << "round " << round << ": " << f;
    ASSERT_TRUE(v.failures.empty()) << "server log tail:\n" << srv.log_tail();
    {
      // Narrow every uncertain id to what the restarted server now holds (it is durable now).
      std::lock_guard<std::mutex> lock(sh.mu);
      for (auto& [id, m] : sh.ids) {
        if (m.allowed.size() <= 1) continue;
        HttpResult r = srv.request("GET", "/collections/" + coll + "/documents/" + url_encode(id));
        if (r.status == 404) m.allowed = {0};
        else if (r.status == 200)
          m.allowed = {text_version(json::parse(r.body, nullptr, false).value("text", ""))};
      }
    }
  }
  EXPECT_GT(total_acked, 0) << "no write was ever acknowledged: the kills came too early";

  // The checker itself must be able to fail: remove one acknowledged document behind the
  // model's back and expect verify() to report it missing.
  std::string victim;
  for (const auto& [id, m] : sh.ids)
    if (m.allowed.size() == 1 && !m.allowed.count(0)) { victim = id; break; }
  ASSERT_FALSE(victim.empty());
  ASSERT_EQ(srv.request("DELETE", "/collections/" + coll + "/documents/" + url_encode(victim)).status, 200);
  Verification self_check = verify(srv, coll, sh.ids, index_type == "flat");
  bool reported = false;
  for (const auto& f : self_check.failures) reported = reported || f.find(victim) != std::string::npos;
  EXPECT_TRUE(reported) << "verify() did not notice that " << victim << " was deleted";
  srv.stop();
  if (!std::getenv("QSEARCH_CRASH_KEEP")) fs::remove_all(tmp);
  else std::printf("data kept in %s\n", tmp.c_str());
}

INSTANTIATE_TEST_SUITE_P(IndexTypes, CrashTest, ::testing::Values("flat", "hnsw", "ivf"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace qsearch::testing
