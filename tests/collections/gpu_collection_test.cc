// A collection with index "gpu": on a machine without a GPU (CI) it searches as CPU flat and
// says so (index_type "flat", a fallback reason); with one it answers as a flat collection does.
// Either way a kill -9 (no index save) and a restart rebuild the index from the stored
// embeddings, and filters and removes agree with a flat collection of the same documents.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Origin = RocksCollectionStore::IndexOrigin;

constexpr int kDim = 64;

void fill(CollectionStore* s, const char* name) {
  std::vector<Document> docs;
  for (int i = 0; i < 400; ++i) {
    const std::string id = std::string("d").append(std::to_string(i));
    docs.push_back(doc(id, vector_for(id, 0, kDim), {{"i", i}, {"even", i % 2 == 0}}));
  }
  ASSERT_TRUE(s->upsert(name, docs).is_ok());
  for (int i = 0; i < 400; i += 7) ASSERT_TRUE(s->remove(name, "d" + std::to_string(i)).is_ok());
}

// The gpu collection's hits equal the flat collection's: scores within 1e-3 at each rank and
// the same ids unless two scores are that close.
void expect_same_hits(CollectionStore* s, const SearchParams& p) {
  for (int t = 0; t < 6; ++t) {
    auto q = vector_for("q", t, kDim);
    auto g = s->search("g", q, p);
    auto f = s->search("f", q, p);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    ASSERT_EQ(g->size(), f->size());
    for (size_t i = 0; i < g->size(); ++i) {
      EXPECT_NEAR((*g)[i].score, (*f)[i].score, 1e-3) << "query " << t << " rank " << i;
      const bool clear_gap =
          (i + 1 == f->size() || std::fabs((*f)[i].score - (*f)[i + 1].score) > 2e-3) &&
          (i == 0 || std::fabs((*f)[i].score - (*f)[i - 1].score) > 2e-3);
      if (clear_gap) {
        EXPECT_EQ((*g)[i].id, (*f)[i].id) << "query " << t << " rank " << i;
      }
    }
  }
}

TEST(GpuCollection, WorksAsFlatReportsItsTypeAndRebuildsAfterKill) {
  const std::string dir = make_temp_dir("gpucoll");
  {
    auto s = open_store(dir);
    ASSERT_TRUE(s->create_collection(spec("g", kDim, "gpu")).is_ok());
    ASSERT_TRUE(s->create_collection(spec("f", kDim, "flat")).is_ok());
    fill(s.get(), "g");
    fill(s.get(), "f");
    auto info = s->get_collection("g");
    ASSERT_TRUE(info.is_ok());
    EXPECT_EQ(info->spec.index.type, "gpu");
    if (info->index_type == "gpu") {
      EXPECT_TRUE(info->index_fallback_reason.empty());
    } else {
      EXPECT_EQ(info->index_type, "flat");
      EXPECT_FALSE(info->index_fallback_reason.empty());
      std::cout << "[ INFO     ] gpu collection fell back: " << info->index_fallback_reason << "\n";
    }
    // The same documents; the gpu index may still hold the rows of replaced documents as
    // tombstones (compacted past a quarter), as HNSW does, so it holds at least as many.
    EXPECT_EQ(info->document_count, s->get_collection("f")->document_count);
    EXPECT_GE(info->index_vectors, s->get_collection("f")->index_vectors);
    expect_same_hits(s.get(), top_k(10));
    expect_same_hits(s.get(), top_k(5, {{"even", true}}));
    expect_same_hits(s.get(), top_k(3, {{"i", {{"$lt", 50}}}}));
    EXPECT_TRUE(rocks(s.get())->check_consistency("g").is_ok());
    rocks(s.get())->set_save_on_close(false);  // as kill -9: nothing saved at close
    ASSERT_TRUE(s->remove("g", "d1").is_ok());
    ASSERT_TRUE(s->remove("f", "d1").is_ok());
  }
  {
    auto s = open_store(dir);
    auto origin = rocks(s.get())->index_origin("g");
    ASSERT_TRUE(origin.is_ok());
    EXPECT_EQ(*origin, Origin::kRebuilt);
    Status st = rocks(s.get())->check_consistency("g");
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_EQ(s->get_collection("g")->document_count, s->get_collection("f")->document_count);
    expect_same_hits(s.get(), top_k(10));
    expect_same_hits(s.get(), top_k(5, {{"even", false}}));
    ASSERT_TRUE(s->save_indexes().is_ok());  // writes the marker; the next start rebuilds again
  }
  {
    auto s = open_store(dir);
    EXPECT_EQ(*rocks(s.get())->index_origin("g"), Origin::kRebuilt);
    expect_same_hits(s.get(), top_k(10));
  }
  std::filesystem::remove_all(dir);
}

// Two shards on one GPU ("--gpus 0,0") and int8 rows with exact rescoring: the same hits as
// flat (int8 rescoring returns exact fp32 scores), GET collection's view of the shards (rows per
// device adding up, device and host bytes), and the spec's precision and rescore kept. Without
// a GPU: flat, with a reason, no devices, host bytes still reported.
TEST(GpuCollection, ShardedInt8ReportsDevicesAndMatchesFlat) {
  const std::string dir = make_temp_dir("gpushard");
  StoreOptions o;
  o.data_dir = dir;
  o.model = "test-model@1";
  o.index_save_interval_s = 0;
  o.gpu_devices = {0, 0};
  auto opened = CollectionStore::open(o);
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  auto s = std::move(opened).value();
  CollectionSpec g = spec("g", kDim, "gpu");
  g.index.gpu_precision = "int8";
  g.index.gpu_rescore = 32;
  ASSERT_TRUE(s->create_collection(g).is_ok());
  ASSERT_TRUE(s->create_collection(spec("f", kDim, "flat")).is_ok());
  fill(s.get(), "g");
  fill(s.get(), "f");
  auto info = s->get_collection("g");
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->spec.index.gpu_precision, "int8");
  EXPECT_EQ(info->spec.index.gpu_rescore, 32);
  EXPECT_GT(info->index_bytes, 0);
  if (info->index_type == "gpu") {
    ASSERT_EQ(info->index_devices.size(), 2u);
    int64_t rows = 0;
    for (const auto& d : info->index_devices) {
      EXPECT_EQ(d.device, 0);
      EXPECT_GT(d.rows, 0);
      EXPECT_GT(d.bytes, 0);
      rows += d.rows;
    }
    EXPECT_EQ(rows, info->index_vectors);
    EXPECT_GT(info->index_device_bytes, 0);
    // The int8 index keeps fp32 copies on the host for rescoring: at least 4 * dim a vector.
    EXPECT_GE(info->index_bytes, info->index_vectors * 4 * kDim);
  } else {
    EXPECT_FALSE(info->index_fallback_reason.empty());
    EXPECT_TRUE(info->index_devices.empty());
    EXPECT_EQ(info->index_device_bytes, 0);
    GTEST_LOG_(INFO) << "gpu collection fell back: " << info->index_fallback_reason;
  }
  expect_same_hits(s.get(), top_k(10));
  expect_same_hits(s.get(), top_k(5, {{"even", true}}));
  s.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
