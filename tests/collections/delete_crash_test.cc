// Kill -9 during delete-by-filter: a child process (this test binary, re-executed) opens a
// store holding documents with metadata, says so on a pipe and removes every document matching
// a filter, in batches of 50 documents (StoreOptions::remove_batch_documents) with fsync'd
// writes, so the delete takes long enough to be interrupted. The parent SIGKILLs it at a
// random moment, reopens the store and checks: no document outside the filter was touched
// (same vector, same metadata); each matching document is wholly present or wholly gone; the
// documents gone are whole batches, in order; counts, the metadata index and the vector index
// agree with the documents; and repeating the delete finishes the job.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using json = nlohmann::json;

constexpr int kDim = 8;
constexpr int kDocs = 1200;
constexpr size_t kBatch = 50;
const json kFilter = {{"g", {{"$lt", 4}}}};  // 40% of the documents

json meta(int i) { return {{"g", i % 10}, {"name", "doc" + std::to_string(i)}}; }
std::string id_of(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "d%05d", i);
  return buf;
}

StoreOptions crash_options(const std::string& dir) {
  StoreOptions o;
  o.data_dir = dir;
  o.sync = true;
  o.index_save_interval_s = 0;
  o.remove_batch_documents = kBatch;
  return o;
}

TEST(DeleteCrashChild, Run) {
  const char* dir = getenv("QSEARCH_DELETE_CRASH_DIR");
  if (!dir) GTEST_SKIP() << "run only by DeleteCrash.KillDuringDeleteByFilter";
  const int fd = atoi(getenv("QSEARCH_DELETE_CRASH_FD"));
  auto opened = CollectionStore::open(crash_options(dir));
  if (!opened.is_ok()) _exit(3);
  auto filter = Filter::parse(kFilter);
  if (::write(fd, "R\n", 2) != 2) _exit(4);
  auto r = (*opened)->remove_matching("c", *filter);
  if (!r.is_ok()) _exit(5);
  const std::string done = "A " + std::to_string(*r) + "\n";
  if (::write(fd, done.data(), done.size()) < 0) _exit(6);
  _exit(0);
}

TEST(DeleteCrash, KillDuringDeleteByFilter) {
  std::mt19937 rng(7);
  int interrupted = 0;
  for (int round = 0; round < 4; ++round) {
    const std::string dir = make_temp_dir("delcrash");
    const char* types[] = {"flat", "hnsw", "ivf", "flat"};
    {
      auto s = CollectionStore::open(crash_options(dir));
      ASSERT_TRUE(s.is_ok());
      CollectionSpec sp = spec("c", kDim, types[round]);
      ASSERT_TRUE((*s)->create_collection(sp).is_ok());
      std::vector<Document> docs;
      for (int i = 0; i < kDocs; ++i)
        docs.push_back(doc(id_of(i), vector_for(id_of(i), 0, kDim), meta(i)));
      ASSERT_TRUE((*s)->upsert("c", docs).is_ok());
    }
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    std::fflush(stdout);  // the child would flush a copy of our buffer again
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(p[0]);
      setenv("QSEARCH_DELETE_CRASH_DIR", dir.c_str(), 1);
      setenv("QSEARCH_DELETE_CRASH_FD", std::to_string(p[1]).c_str(), 1);
      if (!freopen("/dev/null", "w", stdout)) _exit(126);
      execl("/proc/self/exe", "test_collections", "--gtest_filter=DeleteCrashChild.Run",
            (char*)nullptr);
      _exit(127);
    }
    close(p[1]);
    // Wait for "R" (the store is open), then kill after a random delay.
    std::string got;
    char buf[64];
    while (got.find('\n') == std::string::npos) {
      pollfd pfd{p[0], POLLIN, 0};
      ASSERT_GT(poll(&pfd, 1, 60000), 0) << "child never got ready";
      const ssize_t n = read(p[0], buf, sizeof buf);
      ASSERT_GT(n, 0) << "child exited early";
      got.append(buf, static_cast<size_t>(n));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    kill(pid, SIGKILL);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    while (true) {
      const ssize_t n = read(p[0], buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    close(p[0]);
    const bool finished = got.find("A ") != std::string::npos;

    auto reopened = CollectionStore::open(crash_options(dir));
    ASSERT_TRUE(reopened.is_ok()) << reopened.status().to_string();
    auto& s = *reopened;
    std::vector<std::string> gone;  // matching documents removed, in id order
    int64_t present = 0;
    for (int i = 0; i < kDocs; ++i) {
      auto d = s->get("c", id_of(i), true);
      const bool matches = i % 10 < 4;
      if (!d.is_ok()) {
        ASSERT_EQ(d.status().code(), StatusCode::kNotFound);
        EXPECT_TRUE(matches) << id_of(i) << " does not match the filter but is gone";
        gone.push_back(id_of(i));
        continue;
      }
      ++present;
      EXPECT_EQ(d->metadata, meta(i)) << id_of(i);
      auto want = vector_for(id_of(i), 0, kDim);
      normalize_l2(want.data(), kDim);
      ASSERT_EQ(d->embedding.size(), want.size());
      for (int j = 0; j < kDim; ++j) EXPECT_NEAR(d->embedding[j], want[j], 1e-6) << id_of(i);
    }
    // The removed ones are the first whole batches of the matching documents in id order.
    std::vector<std::string> matching;
    for (int i = 0; i < kDocs; ++i)
      if (i % 10 < 4) matching.push_back(id_of(i));
    ASSERT_LE(gone.size(), matching.size());
    EXPECT_TRUE(std::equal(gone.begin(), gone.end(), matching.begin())) << "not a prefix";
    EXPECT_TRUE(gone.size() % kBatch == 0 || gone.size() == matching.size()) << gone.size();
    if (finished) {
      EXPECT_EQ(gone.size(), matching.size());
    }
    if (!gone.empty() && gone.size() < matching.size()) ++interrupted;
    auto filter = Filter::parse(kFilter);
    EXPECT_EQ(*s->count("c", Filter()), present);
    EXPECT_EQ(*s->count("c", *filter), static_cast<int64_t>(matching.size() - gone.size()));
    EXPECT_TRUE(rocks(s.get())->check_consistency("c").is_ok());
    // Search never returns a removed document; the delete, repeated, finishes.
    auto hits = s->search("c", vector_for(id_of(0), 0, kDim), top_k(20, kFilter));
    ASSERT_TRUE(hits.is_ok());
    std::set<std::string> gone_set(gone.begin(), gone.end());
    for (const auto& h : *hits) EXPECT_FALSE(gone_set.count(h.id)) << h.id;
    auto again = s->remove_matching("c", *filter);
    ASSERT_TRUE(again.is_ok());
    EXPECT_EQ(*again, static_cast<int64_t>(matching.size() - gone.size()));
    EXPECT_EQ(*s->count("c", *filter), 0);
    EXPECT_EQ(*s->count("c", Filter()), kDocs - static_cast<int64_t>(matching.size()));
    EXPECT_TRUE(rocks(s.get())->check_consistency("c").is_ok());
    std::printf("round %d (%s): %zu of %zu matching documents removed before the kill%s\n", round,
                types[round], gone.size(), matching.size(), finished ? " (finished)" : "");
    s.reset();
    std::filesystem::remove_all(dir);
  }
  std::printf("%d of 4 rounds were killed mid-delete\n", interrupted);
}

}  // namespace
}  // namespace qsearch
