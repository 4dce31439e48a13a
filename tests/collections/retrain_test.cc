// IVF retraining (issue 14): once a trained IVF collection holds 4 times the vectors it was
// trained on, the background thread trains a new index on all of them beside the live one
// (searches keep answering), catches it up with the writes made meanwhile and swaps it in.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Clock = std::chrono::steady_clock;

int64_t trained_on(CollectionStore& s) {
  auto info = s.get_collection("v");
  return info.is_ok() ? info->index_trained_on : -1;
}

bool wait_for(const std::function<bool()>& done, int timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(IvfRetrain, GrownCollectionRetrainsInTheBackgroundLosingNoWrite) {
  const int d = 32;
  auto s = open_store(make_temp_dir("retrain"), /*save_interval_s=*/1);
  ASSERT_NE(s, nullptr);
  CollectionSpec sp = spec("v", d, "ivf");
  sp.index.ivf_nlist = 4;
  sp.index.ivf_train_min = 150;
  sp.index.ivf_nprobe = 4;  // every list: searches are exact, so any loss shows
  sp.lexical = false;
  ASSERT_TRUE(s->create_collection(sp).is_ok());
  int next = 0;
  auto write = [&](int n) {
    std::vector<Document> docs;
    for (int i = 0; i < n; ++i, ++next) {
      const std::string id = "d" + std::to_string(next);
      docs.push_back(doc(id, vector_for(id, 0, d)));
    }
    ASSERT_TRUE(s->upsert("v", docs).is_ok());
  };
  write(150);
  ASSERT_TRUE(wait_for([&] { return trained_on(*s) == 150; }, 30)) << trained_on(*s);
  EXPECT_EQ(s->get_collection("v")->index_type, "ivf");
  // Searches run throughout; writes continue while the retraining is due and running.
  std::atomic<bool> stop{false};
  std::atomic<int> searches{0};
  std::thread searcher([&] {
    for (int i = 0; !stop.load(); ++i) {
      auto hits = s->search("v", vector_for("q", i, d), top_k(3));
      EXPECT_TRUE(hits.is_ok() && !hits->empty());
      ++searches;
    }
  });
  for (int b = 0; b < 9; ++b) write(50);  // 600 = 4 x 150: retraining due
  for (int b = 0; b < 20 && trained_on(*s) == 150; ++b) write(10);
  ASSERT_TRUE(wait_for([&] { return trained_on(*s) >= 600; }, 30)) << trained_on(*s);
  write(40);
  stop = true;
  searcher.join();
  EXPECT_GT(searches.load(), 0);
  EXPECT_TRUE(rocks(s.get())->check_consistency("v").is_ok());
  auto info = s->get_collection("v");
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->document_count, next);
  EXPECT_EQ(info->index_vectors, next);
  EXPECT_EQ(info->index_type, "ivf");
  // Every document, including those written while the new index was being built.
  for (int i = 0; i < next; ++i) {
    const std::string id = "d" + std::to_string(i);
    auto hits = s->search("v", vector_for(id, 0, d), top_k(1));
    ASSERT_TRUE(hits.is_ok());
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].id, id);
  }
  std::cout << "[retrain] trained on " << info->index_trained_on << " of " << next
            << " documents; " << searches.load() << " searches meanwhile\n";
}

}  // namespace
}  // namespace qsearch
