// Timings at production sizes (1024 dims): upsert batches of 256, flat search over 100k
// vectors, save and reopen. Heavy (about 1 GB of RAM and disk), so it runs only with
// QSEARCH_PERF=1; it prints its numbers and checks generous upper bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <thread>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// CPU time of the whole process (all threads, incl. BLAS and RocksDB), in ms: on a shared,
// overloaded machine wall time says little, CPU time still measures the work.
double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

void report(const char* what, const std::vector<double>& v) {
  std::cout << "[perf] " << what << ": median " << percentile(v, 0.5) << " ms, p90 "
            << percentile(v, 0.9) << " ms, n=" << v.size() << "\n";
}

TEST(Perf, UpsertAndFlatSearchAt1024Dims) {
  if (!getenv("QSEARCH_PERF")) GTEST_SKIP() << "set QSEARCH_PERF=1 to run the timing test";
  const int d = 1024, n = 100000, batch = 256;
  const std::string dir = make_temp_dir("perf");
  auto s = open_store(dir);
  ASSERT_TRUE(s->create_collection(spec("flat", d)).is_ok());
  std::vector<double> upsert_ms, upsert_cpu;
  for (int i = 0; i < n; i += batch) {
    std::vector<Document> docs;
    for (int j = i; j < std::min(n, i + batch); ++j) {
      const std::string id = "doc-" + std::to_string(j);
      docs.push_back(doc(id, vector_for(id, 0, d), {{"g", j % 100}}, "some text of a document " + id));
    }
    auto t0 = Clock::now();
    const double c0 = cpu_ms();
    ASSERT_TRUE(s->upsert("flat", docs).is_ok());
    upsert_cpu.push_back(cpu_ms() - c0);
    upsert_ms.push_back(ms_since(t0));
  }
  report("upsert 256 x 1024 (WAL, no fsync), wall", upsert_ms);
  report("upsert 256 x 1024 (WAL, no fsync), process CPU", upsert_cpu);
  std::vector<double> search_ms, filtered_ms, search_cpu, filtered_cpu;
  for (int t = 0; t < 50; ++t) {
    auto q = vector_for("q", t, d);
    auto t0 = Clock::now();
    double c0 = cpu_ms();
    auto hits = s->search("flat", q, top_k(10));
    search_cpu.push_back(cpu_ms() - c0);
    search_ms.push_back(ms_since(t0));
    ASSERT_TRUE(hits.is_ok());
    ASSERT_EQ(hits->size(), 10u);
    t0 = Clock::now();
    c0 = cpu_ms();
    hits = s->search("flat", q, top_k(10, {{"g", 7}}, true, true));
    filtered_cpu.push_back(cpu_ms() - c0);
    filtered_ms.push_back(ms_since(t0));
    ASSERT_EQ(hits->size(), 10u);
  }
  report("search flat 100k x 1024, k=10, wall", search_ms);
  report("search flat 100k x 1024, k=10, process CPU", search_cpu);
  report("search flat 100k x 1024, k=10, filter matching 1%, wall", filtered_ms);
  report("search flat 100k x 1024, k=10, filter matching 1%, process CPU", filtered_cpu);
  auto t0 = Clock::now();
  ASSERT_TRUE(s->save_indexes().is_ok());
  std::cout << "[perf] save index 100k x 1024: " << ms_since(t0) << " ms\n";
  s.reset();
  t0 = Clock::now();
  s = open_store(dir);
  std::cout << "[perf] reopen (load index file): " << ms_since(t0) << " ms\n";
  std::filesystem::remove(dir + "/indexes/1.faiss");
  s.reset();
  t0 = Clock::now();
  {
    StoreOptions o;
    o.data_dir = dir;
    o.index_save_interval_s = 0;
    auto r = CollectionStore::open(o);
    ASSERT_TRUE(r.is_ok());
    std::cout << "[perf] reopen (rebuild from stored embeddings): " << ms_since(t0) << " ms\n";
    rocks(r->get())->set_save_on_close(false);
  }
  // Synced writes: the fsync dominates.
  {
    StoreOptions o;
    o.data_dir = dir;
    o.sync = true;
    o.index_save_interval_s = 0;
    auto r = CollectionStore::open(o);
    ASSERT_TRUE(r.is_ok());
    std::vector<double> sync_ms;
    for (int b = 0; b < 20; ++b) {
      std::vector<Document> docs;
      for (int j = 0; j < batch; ++j) {
        const std::string id = "sync-" + std::to_string(b * batch + j);
        docs.push_back(doc(id, vector_for(id, 0, d)));
      }
      auto t1 = Clock::now();
      ASSERT_TRUE((*r)->upsert("flat", docs).is_ok());
      sync_ms.push_back(ms_since(t1));
    }
    report("upsert 256 x 1024 with --sync (fsync)", sync_ms);
    rocks(r->get())->set_save_on_close(false);
  }
  EXPECT_LT(percentile(upsert_ms, 0.5), 200.0);
  EXPECT_LT(percentile(search_ms, 0.5), 500.0);
  std::filesystem::remove_all(dir);
}

TEST(Perf, HnswBuildAndSearchAt1024Dims) {
  if (!getenv("QSEARCH_PERF")) GTEST_SKIP() << "set QSEARCH_PERF=1 to run the timing test";
  const int d = 1024, n = 10000;
  const std::string dir = make_temp_dir("perfh");
  auto s = open_store(dir);
  CollectionSpec sp = spec("hnsw", d, "hnsw");
  sp.index.hnsw_m = 32;
  sp.index.hnsw_ef_construction = 200;
  ASSERT_TRUE(s->create_collection(sp).is_ok());
  std::vector<double> upsert_ms;
  auto t_all = Clock::now();
  const double cpu_all = cpu_ms();
  for (int i = 0; i < n; i += 256) {
    std::vector<Document> docs;
    for (int j = i; j < std::min(n, i + 256); ++j) {
      const std::string id = "doc-" + std::to_string(j);
      docs.push_back(doc(id, vector_for(id, 0, d)));
    }
    auto t0 = Clock::now();
    ASSERT_TRUE(s->upsert("hnsw", docs).is_ok());
    upsert_ms.push_back(ms_since(t0));
  }
  // Writes return once stored (the graph is built by the background inserter): wait for it.
  std::cout << "[perf] HNSW upserts acknowledged after " << ms_since(t_all) << " ms\n";
  while (s->get_collection("hnsw")->index_pending > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::cout << "[perf] HNSW build 10k x 1024 (M 32, efC 200): " << ms_since(t_all) << " ms wall, "
            << cpu_ms() - cpu_all << " ms process CPU\n";
  report("upsert 256 x 1024 into HNSW", upsert_ms);
  std::vector<double> search_ms, search_cpu;
  for (int t = 0; t < 50; ++t) {
    auto t0 = Clock::now();
    const double c0 = cpu_ms();
    auto hits = s->search("hnsw", vector_for("q", t, d), top_k(10));
    search_cpu.push_back(cpu_ms() - c0);
    search_ms.push_back(ms_since(t0));
    ASSERT_EQ(hits->size(), 10u);
  }
  report("search HNSW 10k x 1024, k=10, ef 128, wall", search_ms);
  report("search HNSW 10k x 1024, k=10, ef 128, process CPU", search_cpu);
  s.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
