// Collection settings <-> JSON, metrics, and CollectionStore::open (the RocksDB + FAISS store
// lives in collection_store.{h,cc}).
#include "service/collections.h"

#include "service/collection_store.h"

namespace qsearch {

const char* metric_name(Metric m) {
  switch (m) {
    case Metric::kCosine: return "cosine";
    case Metric::kInnerProduct: return "ip";
    case Metric::kL2: return "l2";
  }
  return "cosine";
}

StatusOr<Metric> parse_metric(const std::string& name) {
  if (name == "cosine") return Metric::kCosine;
  if (name == "ip") return Metric::kInnerProduct;
  if (name == "l2") return Metric::kL2;
  return unprocessable("unknown metric '" + name + "' (cosine, ip, l2)");
}

namespace {

// Reads an optional integer field into *out, checking [lo, hi].
Status read_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi, int* out,
                const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_number_integer() && !it->is_number_unsigned()) {
    return unprocessable(where + "." + key + " must be an integer");
  }
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    return unprocessable(where + "." + key + " must be in " + std::to_string(lo) + ".." +
                         std::to_string(hi));
  }
  *out = static_cast<int>(v);
  return Status::ok();
}

Status read_string(const nlohmann::json& j, const char* key, std::string* out,
                   const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_string()) return unprocessable(where + "." + key + " must be a string");
  *out = it->get<std::string>();
  return Status::ok();
}

}  // namespace

nlohmann::json IndexSpec::to_json() const {
  nlohmann::json j = {{"type", type}};
  if (type == "hnsw") {
    j["m"] = hnsw_m;
    j["ef_construction"] = hnsw_ef_construction;
    j["ef_search"] = hnsw_ef_search;
  } else if (type == "ivf") {
    j["nlist"] = ivf_nlist;
    j["nprobe"] = ivf_nprobe;
    j["train_min"] = ivf_train_min;
  }
  return j;
}

// Keys: type; hnsw: m, ef_construction, ef_search; ivf: nlist, nprobe, train_min.
StatusOr<IndexSpec> IndexSpec::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return unprocessable("index must be an object");
  IndexSpec s;
  QS_RETURN_IF_ERROR(read_string(j, "type", &s.type, "index"));
  static const char* kHnswKeys[] = {"m", "ef_construction", "ef_search"};
  static const char* kIvfKeys[] = {"nlist", "nprobe", "train_min"};
  for (const auto& [key, value] : j.items()) {
    (void)value;
    bool known = key == "type";
    if (s.type == "hnsw") for (const char* k : kHnswKeys) known = known || key == k;
    if (s.type == "ivf") for (const char* k : kIvfKeys) known = known || key == k;
    if (!known) return unprocessable("unknown index parameter '" + key + "' for type " + s.type);
  }
  if (s.type == "hnsw") {
    QS_RETURN_IF_ERROR(read_int(j, "m", 2, 512, &s.hnsw_m, "index"));
    QS_RETURN_IF_ERROR(read_int(j, "ef_construction", 1, 100000, &s.hnsw_ef_construction, "index"));
    QS_RETURN_IF_ERROR(read_int(j, "ef_search", 1, 100000, &s.hnsw_ef_search, "index"));
  } else if (s.type == "ivf") {
    QS_RETURN_IF_ERROR(read_int(j, "nlist", 0, 1 << 20, &s.ivf_nlist, "index"));
    QS_RETURN_IF_ERROR(read_int(j, "nprobe", 1, 1 << 20, &s.ivf_nprobe, "index"));
    QS_RETURN_IF_ERROR(read_int(j, "train_min", 0, 1 << 30, &s.ivf_train_min, "index"));
  } else if (s.type != "flat") {
    return unprocessable("unknown index type '" + s.type + "' (flat, hnsw, ivf)");
  }
  return s;
}

nlohmann::json CollectionSpec::to_json() const {
  return {{"name", name},
          {"dimension", dimension},
          {"metric", metric_name(metric)},
          {"index", index.to_json()},
          {"query_instruction", query_instruction},
          {"max_tokens", max_tokens},
          {"model", model},
          {"options", options}};
}

StatusOr<CollectionSpec> CollectionSpec::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return unprocessable("collection settings must be an object");
  CollectionSpec s;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string()) return unprocessable("name must be a string");
  s.name = name->get<std::string>();
  QS_RETURN_IF_ERROR(read_int(j, "dimension", 0, 1 << 20, &s.dimension, "collection"));
  std::string metric = metric_name(s.metric);
  QS_RETURN_IF_ERROR(read_string(j, "metric", &metric, "collection"));
  QS_ASSIGN_OR_RETURN(s.metric, parse_metric(metric));
  if (auto it = j.find("index"); it != j.end() && !it->is_null()) {
    QS_ASSIGN_OR_RETURN(s.index, IndexSpec::from_json(*it));
  }
  QS_RETURN_IF_ERROR(read_string(j, "query_instruction", &s.query_instruction, "collection"));
  QS_RETURN_IF_ERROR(read_int(j, "max_tokens", 1, 1 << 30, &s.max_tokens, "collection"));
  QS_RETURN_IF_ERROR(read_string(j, "model", &s.model, "collection"));
  if (auto it = j.find("options"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return unprocessable("collection.options must be an object");
    s.options = *it;
  }
  return s;
}

StatusOr<std::unique_ptr<CollectionStore>> CollectionStore::open(const StoreOptions& options) {
  return RocksCollectionStore::open(options);
}

}  // namespace qsearch
