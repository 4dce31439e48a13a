// Concurrent writers, searchers and savers on the same collections: no errors, no torn state,
// and afterwards (and after a reopen) index and store agree.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;

TEST(Concurrency, WritersSearchersAndSaversTogether) {
  const std::string dir = make_temp_dir("conc");
  const int d = 16;
  auto s = open_store(dir, /*save_interval_s=*/1);
  for (const char* type : {"flat", "hnsw", "ivf"}) {
    CollectionSpec sp = spec(type, d, type);
    sp.index.ivf_train_min = 100;  // trained in the background while writers run
    ASSERT_TRUE(s->create_collection(sp).is_ok());
  }
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, searches{0}, writes{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 400; ++i) {
        const char* coll = i % 3 == 0 ? "flat" : i % 3 == 1 ? "hnsw" : "ivf";
        const std::string id = "w" + std::to_string(w) + "-" + std::to_string(i % 150);
        Status st;
        if (i % 7 == 6) {
          st = s->remove(coll, id);
          if (st.code() == StatusCode::kNotFound) st = Status::ok();
        } else {
          st = s->upsert(coll, {doc(id, vector_for(id, i, d), {{"w", w}})});
        }
        if (!st.is_ok()) {
          ADD_FAILURE() << st.to_string();
          ++errors;
        }
        ++writes;
      }
    });
  }
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      int t = 0;
      while (!stop) {
        const char* coll = t % 3 == 0 ? "flat" : t % 3 == 1 ? "hnsw" : "ivf";
        SearchParams p = top_k(5, t % 2 ? nlohmann::json{{"w", r}} : nlohmann::json::object(), true, true);
        auto hits = s->search(coll, vector_for("q", t, d), p);
        if (!hits.is_ok()) {
          ADD_FAILURE() << hits.status().to_string();
          ++errors;
        } else {
          for (size_t i = 1; i < hits->size(); ++i) {
            if ((*hits)[i - 1].score < (*hits)[i].score) ++errors;  // best first
          }
          if (t % 2) {
            for (auto& h : *hits) {
              if (h.metadata["w"] != r) ++errors;
            }
          }
        }
        ++searches;
        ++t;
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop) {
      if (!s->save_indexes().is_ok()) ++errors;
      for (auto& info : s->list_collections()) {
        if (info.document_count < 0) ++errors;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  for (int w = 0; w < 3; ++w) threads[w].join();
  stop = true;
  for (size_t i = 3; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(writes.load(), 1200);
  EXPECT_GT(searches.load(), 0);
  // Background maintenance: the IVF index gets trained and HNSW tombstones (every write here
  // replaces) get compacted, while writes and searches went on.
  bool trained = false, compacted = false;
  for (int i = 0; i < 200 && !(trained && compacted); ++i) {
    trained = s->get_collection("ivf")->index_type == "ivf";
    auto h = s->get_collection("hnsw");
    // The store rebuilds once tombstones exceed a quarter of the stored vectors, so after
    // compaction at most document_count * 4/3 vectors remain (without it, about 3x).
    compacted = h->index_vectors * 3 <= h->document_count * 4;
    if (!(trained && compacted)) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(trained);
  EXPECT_TRUE(compacted);
  for (const char* type : {"flat", "hnsw", "ivf"}) {
    Status st = rocks(s.get())->check_consistency(type);
    EXPECT_TRUE(st.is_ok()) << type << ": " << st.to_string();
  }
  auto counts = s->document_counts();
  s.reset();
  s = open_store(dir);
  EXPECT_EQ(s->document_counts(), counts);
  for (const char* type : {"flat", "hnsw", "ivf"}) {
    EXPECT_TRUE(rocks(s.get())->check_consistency(type).is_ok()) << type;
    EXPECT_EQ(rocks(s.get())->index_origin(type).value(), RocksCollectionStore::IndexOrigin::kLoaded);
  }
  s.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
