// HNSW ingestion off the search path (issue 14): writes land in the index's pending buffer and
// a background inserter moves them into the graph in short slices. Read-your-writes during
// ingestion (with and without filters, removals included), bounded search latency while a big
// batch is inserted, and kill -9 during ingestion (index == store after restart, nothing
// acknowledged lost).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Clock = std::chrono::steady_clock;

std::unique_ptr<CollectionStore> open_ingest_store(const std::string& dir, int save_interval_s = 0) {
  StoreOptions o;
  o.data_dir = dir;
  o.model = "test-model@1";
  o.index_save_interval_s = save_interval_s;
  o.index_save_writes = 2000;
  o.background_insert = true;
  o.index_insert_slice_ms = 2;
  auto s = CollectionStore::open(o);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

CollectionSpec hnsw_spec(const std::string& name, int d) {
  CollectionSpec s = spec(name, d, "hnsw");
  s.lexical = false;
  return s;
}

std::string top1(CollectionStore& s, const std::string& coll, const std::vector<float>& q,
                 nlohmann::json filter = nlohmann::json::object()) {
  auto hits = s.search(coll, q, top_k(1, std::move(filter)));
  EXPECT_TRUE(hits.is_ok()) << hits.status().to_string();
  return hits.is_ok() && !hits->empty() ? (*hits)[0].id : std::string();
}

int64_t pending_of(CollectionStore& s, const std::string& coll) {
  auto info = s.get_collection(coll);
  return info.is_ok() ? info->index_pending : -1;
}

bool wait_drained(CollectionStore& s, const std::string& coll, int timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    if (pending_of(s, coll) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(HnswIngest, SearchSeesEveryAcknowledgedWriteWithAndWithoutFilters) {
  const int d = 64, batches = 30, per_batch = 100;
  auto s = open_ingest_store(make_temp_dir("ingest-ryw"));
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->create_collection(hnsw_spec("h", d)).is_ok());
  // Searches from another thread throughout (they must never fail).
  std::atomic<bool> stop{false};
  std::atomic<int> background_searches{0};
  std::thread searcher([&] {
    for (int i = 0; !stop.load(); ++i) {
      auto hits = s->search("h", vector_for("q", i, d), top_k(5));
      EXPECT_TRUE(hits.is_ok());
      ++background_searches;
    }
  });
  int64_t max_pending = 0;
  std::mt19937 rng(5);
  std::vector<std::string> removed;
  for (int b = 0; b < batches; ++b) {
    std::vector<Document> docs;
    for (int j = 0; j < per_batch; ++j) {
      const std::string id = "b" + std::to_string(b) + "-" + std::to_string(j);
      docs.push_back(doc(id, vector_for(id, 0, d), {{"g", b % 4}}));
    }
    ASSERT_TRUE(s->upsert("h", docs).is_ok());
    max_pending = std::max(max_pending, pending_of(*s, "h"));
    // Right after the acknowledgement: found by its own embedding, with a filter that
    // matches it, never with one that does not.
    for (int probe = 0; probe < 3; ++probe) {
      const Document& dd = docs[rng() % per_batch];
      EXPECT_EQ(top1(*s, "h", dd.embedding), dd.id) << "batch " << b;
      EXPECT_EQ(top1(*s, "h", dd.embedding, {{"g", b % 4}}), dd.id) << "batch " << b;
      EXPECT_NE(top1(*s, "h", dd.embedding, {{"g", (b + 1) % 4}}), dd.id) << "batch " << b;
    }
    // A replacement and a removal of documents just written (most likely still pending).
    const std::string replaced = docs[1].id;
    ASSERT_TRUE(s->upsert("h", {doc(replaced, vector_for(replaced, 1, d), {{"g", b % 4}})}).is_ok());
    EXPECT_EQ(top1(*s, "h", vector_for(replaced, 1, d)), replaced);
    EXPECT_NE(top1(*s, "h", vector_for(replaced, 0, d)), replaced);  // the old vector is gone
    ASSERT_TRUE(s->remove("h", docs[2].id).is_ok());
    EXPECT_NE(top1(*s, "h", docs[2].embedding), docs[2].id);
    removed.push_back(docs[2].id);
  }
  stop = true;
  searcher.join();
  EXPECT_GT(max_pending, 0) << "every write was in the graph before its upsert returned: the "
                               "pending buffer was never exercised";
  EXPECT_GT(background_searches.load(), 0);
  ASSERT_TRUE(wait_drained(*s, "h", 60));
  EXPECT_TRUE(rocks(s.get())->check_consistency("h").is_ok());
  // After the drain the graph answers alone: the same documents are found.
  for (int b = 0; b < batches; b += 3) {
    const std::string id = "b" + std::to_string(b) + "-7";
    EXPECT_EQ(top1(*s, "h", vector_for(id, 0, d)), id);
    EXPECT_EQ(top1(*s, "h", vector_for(id, 0, d), {{"g", b % 4}}), id);
  }
  for (const auto& id : removed) EXPECT_NE(top1(*s, "h", vector_for(id, 0, d)), id);
  auto info = s->get_collection("h");
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->document_count, batches * (per_batch - 1));
  std::cout << "[ingest] max pending " << max_pending << ", background searches "
            << background_searches.load() << "\n";
}

TEST(HnswIngest, SearchLatencyBoundedWhileABigBatchIsInserted) {
  const int d = 96, n = 6000;
  auto s = open_ingest_store(make_temp_dir("ingest-latency"));
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->create_collection(hnsw_spec("h", d)).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) docs.push_back(doc("x" + std::to_string(i), vector_for("x", i, d)));
  std::atomic<bool> stop{false};
  std::vector<double> during;  // ms, searches that ran while vectors were pending
  std::thread searcher([&] {
    for (int i = 0; !stop.load(); ++i) {
      const bool pending = pending_of(*s, "h") > 0;
      const auto t0 = Clock::now();
      auto hits = s->search("h", vector_for("q", i, d), top_k(10));
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      EXPECT_TRUE(hits.is_ok());
      if (pending && pending_of(*s, "h") > 0) during.push_back(ms);
    }
  });
  const auto t0 = Clock::now();
  ASSERT_TRUE(s->upsert("h", docs).is_ok());
  const double upsert_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  // The write did not wait for the graph: most of it is still pending when it returns.
  EXPECT_GT(pending_of(*s, "h"), 0);
  ASSERT_TRUE(wait_drained(*s, "h", 60));
  const double drained_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  stop = true;
  searcher.join();
  ASSERT_GE(during.size(), 5u) << "too few searches overlapped the insert to measure";
  const double max_ms = *std::max_element(during.begin(), during.end());
  std::sort(during.begin(), during.end());
  std::cout << "[ingest] upsert of " << n << " returned in " << upsert_ms << " ms, graph complete after "
            << drained_ms << " ms; " << during.size() << " searches meanwhile: P50 "
            << during[during.size() / 2] << " ms, max " << max_ms << " ms\n";
  EXPECT_LT(max_ms, 1000.0);
  EXPECT_EQ(top1(*s, "h", vector_for("x", 1234, d)), "x1234");
  // Index memory per vector: at least the fp32 vector and its level-0 links (2 * m = 32).
  auto info = s->get_collection("h");
  ASSERT_TRUE(info.is_ok());
  EXPECT_GE(info->index_bytes / info->index_vectors, d * 4 + 32 * 4);
}

// Backpressure: a writer returns only once the pending buffer is back under
// index_pending_max, so the buffer every search scans stays bounded.
TEST(HnswIngest, WritersWaitWhileTooManyVectorsArePending) {
  const int d = 64;
  StoreOptions o;
  o.data_dir = make_temp_dir("ingest-backpressure");
  o.index_save_interval_s = 0;
  o.index_insert_slice_ms = 2;
  o.index_pending_max = 50;  // below one write (100): every write must wait
  auto opened = CollectionStore::open(o);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  auto& s = *opened;
  ASSERT_TRUE(s->create_collection(hnsw_spec("h", d)).is_ok());
  int64_t max_after = 0;
  for (int b = 0; b < 20; ++b) {
    std::vector<Document> docs;
    for (int j = 0; j < 100; ++j) {
      const std::string id = "p" + std::to_string(b) + "-" + std::to_string(j);
      docs.push_back(doc(id, vector_for(id, 0, d)));
    }
    ASSERT_TRUE(s->upsert("h", docs).is_ok());
    max_after = std::max(max_after, pending_of(*s, "h"));  // one writer: only the inserter moves it
  }
  EXPECT_LE(max_after, 50);
  ASSERT_TRUE(wait_drained(*s, "h", 60));
  EXPECT_EQ(s->get_collection("h")->document_count, 2000);
  EXPECT_TRUE(rocks(s.get())->check_consistency("h").is_ok());
}

// Kill -9 during HNSW ingestion. The child (this binary re-executed) upserts batches and
// acknowledges each on a pipe with the pending count; the parent kills it, reopens the store
// and checks that index and store agree and that every acknowledged document is there and
// found by its embedding. Two rounds on one directory: the second recovers from the index file
// (saved with pending vectors) and the change log the first left.
constexpr int kKillDim = 128;
constexpr int kKillBatch = 400;

TEST(HnswIngestChild, Run) {
  const char* dir = getenv("QSEARCH_INGEST_DIR");
  if (!dir) GTEST_SKIP() << "run only by HnswIngest.KillDuringIngestionThenRestartAgrees";
  const int fd = atoi(getenv("QSEARCH_INGEST_FD"));
  const int round = atoi(getenv("QSEARCH_INGEST_ROUND"));
  auto s = open_ingest_store(dir, /*save_interval_s=*/1);
  if (!s) _exit(3);
  Status st = s->create_collection(hnsw_spec("h", kKillDim));
  if (!st.is_ok() && st.code() != StatusCode::kAlreadyExists) _exit(4);
  for (int b = 0;; ++b) {
    std::vector<Document> docs;
    for (int j = 0; j < kKillBatch; ++j) {
      const std::string id = "r" + std::to_string(round) + "-" + std::to_string(b) + "-" + std::to_string(j);
      docs.push_back(doc(id, vector_for(id, 0, kKillDim)));
    }
    if (!s->upsert("h", docs).is_ok()) _exit(6);
    std::string line = "A " + std::to_string(b) + " " + std::to_string(pending_of(*s, "h")) + "\n";
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
  }
}

TEST(HnswIngest, KillDuringIngestionThenRestartAgrees) {
  const std::string dir = make_temp_dir("ingest-kill");
  std::vector<std::pair<int, int>> acked;  // (round, batches acknowledged)
  int kills_with_pending = 0;
  for (int round = 0; round < 2; ++round) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(p[0]);
      setenv("QSEARCH_INGEST_DIR", dir.c_str(), 1);
      setenv("QSEARCH_INGEST_FD", std::to_string(p[1]).c_str(), 1);
      setenv("QSEARCH_INGEST_ROUND", std::to_string(round).c_str(), 1);
      freopen("/dev/null", "w", stdout);
      execl("/proc/self/exe", "test_collections", "--gtest_filter=HnswIngestChild.Run", (char*)nullptr);
      _exit(127);
    }
    close(p[1]);
    // Kill after 6..9 acknowledged batches (on a loaded machine the child may be slow to start).
    const int want = 6 + round * 3;
    std::string data;
    int acks = 0;
    int64_t last_pending = 0;
    char buf[4096];
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (acks < want && Clock::now() < deadline) {
      pollfd pfd{p[0], POLLIN, 0};
      if (poll(&pfd, 1, 10) <= 0) continue;
      ssize_t n = read(p[0], buf, sizeof(buf));
      if (n <= 0) break;
      data.append(buf, n);
      acks = 0;
      std::istringstream lines(data);
      for (std::string line; std::getline(lines, line);) {
        if (lines.eof()) break;
        int b = 0;
        long long pend = 0;
        if (sscanf(line.c_str(), "A %d %lld", &b, &pend) == 2) {
          ++acks;
          last_pending = pend;
        }
      }
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(p[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited on its own: " << data;
    ASSERT_GE(acks, want) << "the child acknowledged too few batches";
    kills_with_pending += last_pending > 0;
    acked.emplace_back(round, acks);

    auto s = open_ingest_store(dir);
    ASSERT_NE(s, nullptr);
    Status st = rocks(s.get())->check_consistency("h");
    EXPECT_TRUE(st.is_ok()) << "round " << round << ": " << st.to_string();
    int64_t expected = 0;
    for (auto [r, batches] : acked) {
      expected += static_cast<int64_t>(batches) * kKillBatch;
      // Every acknowledged batch: its first, a middle and its last document are stored and found.
      for (int b = 0; b < batches; ++b) {
        for (int j : {0, kKillBatch / 2, kKillBatch - 1}) {
          const std::string id = "r" + std::to_string(r) + "-" + std::to_string(b) + "-" + std::to_string(j);
          ASSERT_TRUE(s->get("h", id, false).is_ok()) << "acknowledged " << id << " is lost";
          EXPECT_EQ(top1(*s, "h", vector_for(id, 0, kKillDim)), id);
        }
      }
    }
    // At most the one batch in flight beyond the acknowledged ones.
    auto info = s->get_collection("h");
    ASSERT_TRUE(info.is_ok());
    EXPECT_TRUE(info->document_count == expected || info->document_count == expected + kKillBatch)
        << info->document_count << " documents, " << expected << " acknowledged";
    // The round's count is what is stored (an in-flight batch that landed counts for the next).
    acked.back().second = static_cast<int>((info->document_count - (expected - static_cast<int64_t>(acks) * kKillBatch)) / kKillBatch);
  }
  std::cout << "[ingest] kills with vectors pending: " << kills_with_pending << " of 2\n";
  EXPECT_GE(kills_with_pending, 1) << "the kills never caught vectors pending";
}

}  // namespace
}  // namespace qsearch
