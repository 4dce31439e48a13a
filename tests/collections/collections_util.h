// Helpers shared by the CollectionStore tests.
#pragma once

#include <string>
#include <vector>

#include "collection/collection_store.h"

namespace qsearch::testing_util {

std::string make_temp_dir(const char* tag);
// A deterministic pseudo-random vector for (id, version).
std::vector<float> vector_for(const std::string& id, int version, int d);
std::unique_ptr<CollectionStore> open_store(const std::string& dir, int save_interval_s = 0);
RocksCollectionStore* rocks(CollectionStore* s);
CollectionSpec spec(const std::string& name, int d, const std::string& index = "flat",
                    Metric metric = Metric::kCosine);
SearchParams top_k(int k, nlohmann::json filter = nlohmann::json::object(), bool text = false,
                   bool metadata = false);
Document doc(const std::string& id, std::vector<float> embedding, nlohmann::json metadata = {},
             std::string text = "");

}  // namespace qsearch::testing_util
