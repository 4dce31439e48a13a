// POST /collections/{name}/duplicates end to end: planted duplicates come back as clusters,
// and the clusters equal a brute-force union-find over the stored embeddings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <string>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

class Duplicates : public SharedServerTest {
};

// Connected components (as sorted id lists) of pairs with cosine >= threshold.
std::set<std::vector<std::string>> brute_force_clusters(
    const std::vector<std::string>& ids, const std::vector<std::vector<float>>& v, double threshold) {
  const size_t n = ids.size();
  std::vector<size_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      double dot = 0, ni = 0, nj = 0;
      for (size_t k = 0; k < v[i].size(); ++k) {
        dot += double(v[i][k]) * v[j][k];
        ni += double(v[i][k]) * v[i][k];
        nj += double(v[j][k]) * v[j][k];
      }
      if (dot / std::sqrt(ni * nj) >= threshold) parent[find(i)] = find(j);
    }
  std::map<size_t, std::vector<std::string>> groups;
  for (size_t i = 0; i < n; ++i) groups[find(i)].push_back(ids[i]);
  std::set<std::vector<std::string>> out;
  for (auto& [root, g] : groups)
    if (g.size() > 1) {
      std::sort(g.begin(), g.end());
      out.insert(g);
    }
  return out;
}

TEST_F(Duplicates, PlantedDuplicatesClusterAndMatchBruteForce) {
  ASSERT_EQ(s().post("/collections", json{{"name", "d"}, {"dimension", 64}}).status, 201);
  std::vector<std::string> ids;
  json docs = json::array();
  for (int i = 0; i < 40; ++i) {
    std::string id = "doc" + std::to_string(100 + i);
    std::string text = "Document number " + std::to_string(i * 7919) + " talks about topic " +
                       std::to_string(i % 5) + (i % 3 ? " in a long way." : " briefly!");
    // Planted: doc110, doc120 and doc130 repeat doc100's text; doc125 repeats doc105's.
    if (i == 10 || i == 20 || i == 30) text = docs[0]["text"];
    if (i == 25) text = docs[5]["text"];
    ids.push_back(id);
    docs.push_back({{"id", id}, {"text", text}});
  }
  ASSERT_EQ(s().post("/collections/d/documents", json{{"documents", docs}}).status, 200);

  HttpResult r = s().post("/collections/d/duplicates", json{{"threshold", 0.9999}, {"limit", 100}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  EXPECT_EQ(j["documents"], 40);
  std::set<std::vector<std::string>> got;
  for (const auto& c : j["clusters"]) {
    auto g = c["ids"].get<std::vector<std::string>>();
    EXPECT_EQ(c["keep"], g.front());
    EXPECT_GE(c["min_score"].get<double>(), 0.9999 - 1e-6);
    std::sort(g.begin(), g.end());
    got.insert(g);
  }
  // The planted groups are there (exact copies: cosine 1).
  bool a = false, b = false;
  for (const auto& g : got) {
    std::set<std::string> gs(g.begin(), g.end());
    if (gs.count("doc100") && gs.count("doc110") && gs.count("doc120") && gs.count("doc130")) a = true;
    if (gs.count("doc105") && gs.count("doc125")) b = true;
  }
  EXPECT_TRUE(a) << r.body;
  EXPECT_TRUE(b) << r.body;

  // Every cluster, at two thresholds, equals brute force over the stored embeddings.
  std::vector<std::vector<float>> vectors;
  for (const auto& id : ids)
    vectors.push_back(
        s().get("/collections/d/documents/" + id + "?include=embedding").json_body()["embedding"].get<std::vector<float>>());
  for (double t : {0.9999, 0.5}) {
    r = s().post("/collections/d/duplicates", json{{"threshold", t}, {"limit", 10000}});
    ASSERT_EQ(r.status, 200) << r.body;
    std::set<std::vector<std::string>> clusters;
    const json body = r.json_body();
    for (const auto& c : body["clusters"]) {
      auto g = c["ids"].get<std::vector<std::string>>();
      std::sort(g.begin(), g.end());
      clusters.insert(g);
    }
    EXPECT_EQ(clusters, brute_force_clusters(ids, vectors, t)) << "threshold " << t;
    EXPECT_EQ(r.json_body()["total_clusters"].get<size_t>(), clusters.size());
  }

  // limit: the largest cluster first.
  r = s().post("/collections/d/duplicates", json{{"threshold", 0.9999}, {"limit", 1}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json_body()["clusters"].size(), 1u);
  EXPECT_EQ(r.json_body()["clusters"][0]["ids"].size(), 4u);
  EXPECT_GE(r.json_body()["total_clusters"].get<int>(), 2);

  // Deleting a copy removes it from the clusters.
  ASSERT_EQ(s().del("/collections/d/documents/doc125").status, 200);
  r = s().post("/collections/d/duplicates", json{{"threshold", 0.9999}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json after = r.json_body();
  EXPECT_GE(after["clusters"].size(), 1u);
  for (const auto& c : after["clusters"])
    for (const auto& id : c["ids"]) EXPECT_NE(id, "doc125");
}

TEST_F(Duplicates, Validation) {
  ASSERT_EQ(s().post("/collections", json{{"name", "v"}}).status, 201);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"threshold", 0}}).status, 422);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"threshold", 1.01}}).status, 422);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"threshold", -0.5}}).status, 422);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"limit", 0}}).status, 422);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"limit", 10001}}).status, 422);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"threshold", "high"}}).status, 400);
  EXPECT_EQ(s().post("/collections/v/duplicates", json{{"thresh", 0.9}}).status, 400);
  EXPECT_EQ(s().post("/collections/nope/duplicates", json{{"threshold", 0.9}}).status, 404);
  HttpResult r = s().post("/collections/v/duplicates", json{{"threshold", 1}});
  ASSERT_EQ(r.status, 200) << r.body;  // empty collection: no clusters
  EXPECT_EQ(r.json_body()["clusters"].size(), 0u);
}

}  // namespace
}  // namespace qsearch::testing
