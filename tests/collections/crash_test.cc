// Kill -9 during ingestion: a child process (this test binary, re-executed) opens the store and
// upserts/replaces/removes in a loop, announcing each operation on a pipe before it starts and
// acknowledging it when the call returned OK. The parent SIGKILLs it at a random moment, reopens
// the store and checks that every acknowledged write is there (and searchable by its own
// embedding), that the one operation in flight was applied entirely or not at all (one
// WriteBatch), and that index and store agree. Several rounds on the same data directory, so
// later rounds recover from index files and change logs left by earlier kills.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;

constexpr int kDim = 16;
// "chunked" is a flat collection with the chunking option: its documents have 1..4 chunks
// (one index label each), the count changing with the version.
const char* kCollections[] = {"flat", "hnsw", "ivf", "chunked"};
constexpr int kNumCollections = 4;

CollectionSpec crash_spec(const std::string& name) {
  if (name != "chunked") return spec(name, kDim, name);
  CollectionSpec s = spec(name, kDim, "flat");
  s.chunking = ChunkingOptions{64, 8};
  return s;
}

int chunk_count(const std::string& id, int version) {
  return 1 + static_cast<int>((std::hash<std::string>()(id) + static_cast<size_t>(version)) % 4);
}

// The document written for (collection, id, version).
Document crash_doc(const std::string& coll, const std::string& id, int version, nlohmann::json metadata = {}) {
  if (coll != "chunked") return doc(id, vector_for(id, version, kDim), std::move(metadata));
  Document d = doc(id, {}, std::move(metadata));
  for (int i = 0; i < chunk_count(id, version); ++i) {
    std::vector<float> v = vector_for(id, version * 100 + i, kDim);
    d.embedding.insert(d.embedding.end(), v.begin(), v.end());
    d.chunks.push_back({i, i + 1, 1});
  }
  return d;
}

void write_line(int fd, const std::string& line) {
  std::string s = line + "\n";
  const char* p = s.data();
  size_t n = s.size();
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) _exit(5);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// The child: never returns normally (it is killed).
TEST(CrashChild, Run) {
  const char* dir = getenv("QSEARCH_CRASH_DIR");
  if (!dir) GTEST_SKIP() << "run only by Crash.KillDuringIngestLosesNoAcknowledgedWrite";
  const int fd = atoi(getenv("QSEARCH_CRASH_FD"));
  const int round = atoi(getenv("QSEARCH_CRASH_ROUND"));
  StoreOptions o;
  o.data_dir = dir;
  o.index_save_interval_s = 1;
  o.index_save_writes = 300;
  auto opened = CollectionStore::open(o);
  if (!opened.is_ok()) {
    write_line(fd, "E open: " + opened.status().to_string());
    _exit(3);
  }
  auto& s = *opened;
  for (const char* name : kCollections) {
    Status st = s->create_collection(crash_spec(name));
    if (!st.is_ok() && st.code() != StatusCode::kAlreadyExists) _exit(4);
  }
  std::mt19937 rng(1000 + round);
  std::map<std::string, std::vector<std::pair<std::string, int>>> mine;  // this round's live ids
  for (int op = 0;; ++op) {
    const std::string coll = kCollections[op % kNumCollections];
    auto& live = mine[coll];
    const unsigned r = rng() % 10;
    std::ostringstream intent;
    Status st;
    if (r < 7 || live.size() < 2) {
      const int n = 1 + static_cast<int>(rng() % 16);
      std::vector<Document> docs;
      intent << "U " << coll;
      for (int j = 0; j < n; ++j) {
        const std::string id = "r" + std::to_string(round) + "-" + std::to_string(op) + "-" + std::to_string(j);
        docs.push_back(crash_doc(coll, id, 0, {{"op", op}}));
        intent << " " << id << " 0";
      }
      write_line(fd, intent.str());
      st = s->upsert(coll, docs);
      for (auto& d : docs) live.emplace_back(d.id, 0);
    } else if (r < 9) {
      auto& [id, version] = live[rng() % live.size()];
      ++version;
      intent << "U " << coll << " " << id << " " << version;
      write_line(fd, intent.str());
      st = s->upsert(coll, {crash_doc(coll, id, version)});
    } else {
      const size_t i = rng() % live.size();
      const std::string id = live[i].first;
      live.erase(live.begin() + i);
      write_line(fd, "D " + coll + " " + id);
      st = s->remove(coll, id);
    }
    if (!st.is_ok()) {
      write_line(fd, "E " + st.to_string());
      _exit(6);
    }
    write_line(fd, "A");
  }
}

struct Op {
  char kind = 0;  // 'U' or 'D'
  std::string coll;
  std::vector<std::pair<std::string, int>> items;  // (id, version); version unused for D
};

Op parse_op(const std::string& line) {
  std::istringstream in(line);
  Op op;
  in >> op.kind >> op.coll;
  std::string id;
  int version = 0;
  if (op.kind == 'U') {
    while (in >> id >> version) op.items.emplace_back(id, version);
  } else {
    in >> id;
    op.items.emplace_back(id, -1);
  }
  return op;
}

std::vector<float> normalized(std::vector<float> v) {
  double s = 0;
  for (float x : v) s += x * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
  return v;
}

// The stored embedding expected for (collection, id, version): every chunk's unit vector.
std::vector<float> expected_embedding(const std::string& coll, const std::string& id, int version) {
  Document d = crash_doc(coll, id, version);
  std::vector<float> out;
  for (size_t r = 0; r < d.embedding.size(); r += kDim) {
    std::vector<float> v = normalized(std::vector<float>(d.embedding.begin() + r, d.embedding.begin() + r + kDim));
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

bool same_vector(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > 1e-5) return false;
  }
  return true;
}

TEST(Crash, KillDuringIngestLosesNoAcknowledgedWrite) {
  const std::string dir = make_temp_dir("crash");
  // Acknowledged state: collection -> id -> version (-1: removed).
  std::map<std::string, std::map<std::string, int>> acked;
  std::mt19937 rng(42);
  int total_acked_ops = 0, kills_with_pending = 0;
  for (int round = 0; round < 6; ++round) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(p[0]);
      setenv("QSEARCH_CRASH_DIR", dir.c_str(), 1);
      setenv("QSEARCH_CRASH_FD", std::to_string(p[1]).c_str(), 1);
      setenv("QSEARCH_CRASH_ROUND", std::to_string(round).c_str(), 1);
      freopen("/dev/null", "w", stdout);
      execl("/proc/self/exe", "test_collections", "--gtest_filter=CrashChild.Run", (char*)nullptr);
      _exit(127);
    }
    close(p[1]);
    // The kill comes a random 0.3-2 s after the child's first announced operation, not after
    // the fork: on a loaded machine starting the child and opening the store can take longer
    // than the whole window, and a child killed before it wrote anything tests nothing.
    const int delay_ms = 300 + static_cast<int>(rng() % 1700);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    bool started = false;
    std::string data;
    char buf[65536];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{p[0], POLLIN, 0};
      if (poll(&pfd, 1, 10) > 0) {
        ssize_t n = read(p[0], buf, sizeof(buf));
        if (n <= 0) break;  // the child died on its own
        data.append(buf, n);
        if (!started) {
          started = true;
          deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
        }
      }
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    for (ssize_t n; (n = read(p[0], buf, sizeof(buf))) > 0;) data.append(buf, n);
    close(p[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited on its own (status " << status << "): " << data.substr(data.size() > 400 ? data.size() - 400 : 0);

    // Replay the announced operations; only complete lines count.
    std::istringstream lines(data);
    std::string line;
    std::optional<Op> pending;
    while (std::getline(lines, line)) {
      if (lines.eof()) break;  // a partial last line (no '\n') is not a statement
      if (line == "A") {
        ASSERT_TRUE(pending.has_value());
        for (auto& [id, version] : pending->items) acked[pending->coll][id] = version;
        pending.reset();
        ++total_acked_ops;
      } else {
        ASSERT_FALSE(pending.has_value()) << line;
        ASSERT_TRUE(line[0] == 'U' || line[0] == 'D') << line;
        pending = parse_op(line);
      }
    }
    kills_with_pending += pending.has_value();

    auto s = open_store(dir);
    ASSERT_NE(s, nullptr);
    auto* r = rocks(s.get());
    for (const char* coll : kCollections) {
      if (acked[coll].empty()) continue;
      ASSERT_TRUE(s->get_collection(coll).is_ok()) << coll;
      // The in-flight operation: all or nothing.
      std::map<std::string, int> maybe;  // id -> version it may also have
      if (pending && pending->coll == coll) {
        int applied = 0;
        for (auto& [id, version] : pending->items) {
          auto got = s->get(coll, id, true);
          bool is_new = pending->kind == 'U' && got.is_ok() &&
                        same_vector(got->embedding, expected_embedding(coll, id, version));
          bool is_removed = pending->kind == 'D' && !got.is_ok();
          applied += (is_new || is_removed);
          maybe[id] = version;
        }
        EXPECT_TRUE(applied == 0 || applied == static_cast<int>(pending->items.size()))
            << "round " << round << ": in-flight op applied partially (" << applied << " of "
            << pending->items.size() << ")";
      }
      std::set<std::string> expected_ids;
      for (auto& [id, version] : acked[coll]) {
        const bool ambiguous = maybe.count(id) > 0;
        auto got = s->get(coll, id, true);
        if (version < 0) {
          if (!ambiguous) {
            EXPECT_EQ(got.status().code(), StatusCode::kNotFound) << coll << " " << id;
          }
          continue;
        }
        if (ambiguous && maybe[id] < 0) continue;  // a removal in flight
        ASSERT_TRUE(got.is_ok()) << "round " << round << ": acknowledged " << coll << "/" << id
                                 << " is lost: " << got.status().to_string();
        expected_ids.insert(id);
        const bool current = same_vector(got->embedding, expected_embedding(coll, id, version));
        const bool next = ambiguous && same_vector(got->embedding, expected_embedding(coll, id, maybe[id]));
        EXPECT_TRUE(current || next) << coll << "/" << id << " has the wrong embedding";
        // By its own (last chunk's) embedding.
        std::vector<float> own(got->embedding.end() - kDim, got->embedding.end());
        auto hits = s->search(coll, own, top_k(1));
        ASSERT_TRUE(hits.is_ok());
        ASSERT_EQ(hits->size(), 1u);
        EXPECT_EQ((*hits)[0].id, id) << coll << ": search by its own embedding";
      }
      // Full scan: the store holds exactly the acknowledged ids (plus an in-flight insert).
      auto ids = r->document_ids(coll);
      ASSERT_TRUE(ids.is_ok());
      for (const auto& id : *ids) {
        EXPECT_TRUE(expected_ids.count(id) || maybe.count(id)) << coll << ": unexpected " << id;
      }
      for (const auto& id : expected_ids) {
        EXPECT_TRUE(std::binary_search(ids->begin(), ids->end(), id)) << coll << ": missing " << id;
      }
      Status st = r->check_consistency(coll);
      EXPECT_TRUE(st.is_ok()) << "round " << round << " " << coll << ": " << st.to_string();
      EXPECT_EQ(s->get_collection(coll)->document_count, static_cast<int64_t>(ids->size()));
    }
    // Fold the in-flight op into the known state as it actually landed.
    if (pending) {
      for (auto& [id, version] : pending->items) {
        auto got = s->get(pending->coll, id, true);
        if (!got.is_ok()) {
          if (acked[pending->coll].count(id)) acked[pending->coll][id] = -1;
        } else if (pending->kind == 'U' &&
                   same_vector(got->embedding, expected_embedding(pending->coll, id, version))) {
          acked[pending->coll][id] = version;
        }
      }
    }
    // Odd rounds close without saving, leaving stale index files for the next child.
    if (round % 2 == 1) r->set_save_on_close(false);
  }
  EXPECT_GT(total_acked_ops, 50) << "the children did too little work to test anything";
  std::cout << "[crash] acknowledged operations: " << total_acked_ops
            << ", kills with an operation in flight: " << kills_with_pending << "\n";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
