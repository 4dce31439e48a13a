#include "collections_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <random>

namespace qsearch::testing_util {

std::string make_temp_dir(const char* tag) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / (std::string("qsearch-") + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) ADD_FAILURE() << "mkdtemp failed";
  return tmpl;
}

std::vector<float> vector_for(const std::string& id, int version, int d) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : id) h = (h ^ ch) * 1099511628211ULL;
  h ^= static_cast<uint64_t>(version) * 0x9E3779B97F4A7C15ULL;
  std::mt19937_64 rng(h);
  std::normal_distribution<float> g;
  std::vector<float> v(d);
  for (auto& x : v) x = g(rng);
  return v;
}

std::unique_ptr<CollectionStore> open_store(const std::string& dir, int save_interval_s) {
  StoreOptions o;
  o.data_dir = dir;
  o.model = "test-model@1";
  o.index_save_interval_s = save_interval_s;
  auto s = CollectionStore::open(o);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

RocksCollectionStore* rocks(CollectionStore* s) { return dynamic_cast<RocksCollectionStore*>(s); }

CollectionSpec spec(const std::string& name, int d, const std::string& index, Metric metric) {
  CollectionSpec s;
  s.name = name;
  s.dimension = d;
  s.metric = metric;
  s.index.type = index;
  s.index.hnsw_m = 16;
  s.index.hnsw_ef_construction = 80;
  s.index.ivf_train_min = 300;
  return s;
}

SearchParams top_k(int k, nlohmann::json filter, bool text, bool metadata) {
  SearchParams p;
  p.k = k;
  p.filter = std::move(filter);
  p.include_text = text;
  p.include_metadata = metadata;
  return p;
}

Document doc(const std::string& id, std::vector<float> embedding, nlohmann::json metadata,
             std::string text) {
  Document d;
  d.id = id;
  d.embedding = std::move(embedding);
  d.metadata = metadata.is_null() ? nlohmann::json::object() : std::move(metadata);
  d.text = std::move(text);
  d.tokens = static_cast<int32_t>(d.text.size());
  return d;
}

}  // namespace qsearch::testing_util
