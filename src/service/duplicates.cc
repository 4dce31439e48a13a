#include "service/duplicates.h"

#include <algorithm>
#include <cmath>

#include "dedup/clusters.h"
#include "dedup/similarity_join.h"
#include "service/chunking.h"
#include "service/collection_store.h"
#include "service/service.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

Status RocksCollectionStore::scan_embeddings(const std::string& collection,
                                             std::vector<std::string>* ids,
                                             std::vector<float>* vectors) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  ids->clear();
  vectors->clear();
  const size_t d = static_cast<size_t>(c->spec.dimension);
  Status problem;
  QS_RETURN_IF_ERROR(kv_->scan(
      store::collection_range_begin(store::KeyPrefix::kDocument, c->id),
      store::collection_range_end(store::KeyPrefix::kDocument, c->id),
      [&](std::string_view key, std::string_view value) {
        uint64_t cid = 0;
        std::string id;
        if (!store::parse_document_key(key, &cid, &id)) return true;
        store::DocumentRecord rec;
        problem = store::decode_document(value, &rec, store::kPartEmbedding);
        if (problem.is_ok() && rec.embedding.size() != d * static_cast<size_t>(rec.label_count()))
          problem = corruption("document '" + id + "': stored embedding has " +
                               std::to_string(rec.embedding.size()) + " values");
        if (!problem.is_ok()) return false;
        ids->push_back(std::move(id));
        if (rec.chunks.empty()) {
          vectors->insert(vectors->end(), rec.embedding.begin(), rec.embedding.end());
          return true;
        }
        // A chunked document: the normalised mean of its chunk vectors stands for the whole.
        std::vector<float> mean = normalized_mean(rec.embedding, static_cast<int>(d));
        vectors->insert(vectors->end(), mean.begin(), mean.end());
        return true;
      }));
  return problem;
}

Status validate_collection_options(const CollectionSpec& spec) {
  if (spec.options.is_null()) return Status::ok();
  if (!spec.options.is_object()) return unprocessable("collection options must be an object");
  for (const auto& [key, value] : spec.options.items())
    if (key != "chunking" && key != "dedup")
      return unprocessable("unknown collection option \"" + key + "\"");
  if (spec.options.contains("chunking")) {
    QS_RETURN_IF_ERROR(parse_chunking_options(spec.options["chunking"]).status());
    if (spec.options.contains("dedup"))
      return unprocessable("\"dedup\" compares whole-document embeddings and cannot be combined "
                           "with \"chunking\" (use POST /collections/{name}/duplicates instead)");
  }
  auto it = spec.options.find("dedup");
  if (it == spec.options.end()) return Status::ok();
  const nlohmann::json& d = *it;
  if (!d.is_object()) return unprocessable("\"dedup\" must be an object");
  for (const auto& [key, value] : d.items())
    if (key != "threshold" && key != "action")
      return unprocessable("unknown field \"" + key + "\" in \"dedup\"");
  if (d.contains("threshold")) {
    const auto& t = d["threshold"];
    if (!t.is_number() || !(t.get<double>() > 0.0 && t.get<double>() <= 1.0))
      return unprocessable("\"dedup\".\"threshold\" must be a number in (0, 1]");
  }
  if (d.contains("action") && d["action"] != "skip" && d["action"] != "flag")
    return unprocessable("\"dedup\".\"action\" must be \"skip\" or \"flag\"");
  if (spec.metric != Metric::kCosine)
    return unprocessable("\"dedup\" needs the cosine metric (its threshold is a cosine)");
  return Status::ok();
}

Status Service::check_ingest_duplicates(const CollectionInfo& info, std::vector<Document>* batch,
                                        std::vector<DocumentResult*>* results) {
  const nlohmann::json& options = info.spec.options;
  if (!options.is_object() || !options.contains("dedup")) return Status::ok();
  const nlohmann::json& dedup = options["dedup"];
  const double threshold = dedup.value("threshold", 0.98);
  const bool skip = dedup.value("action", std::string("flag")) == "skip";
  std::vector<Document> kept;
  std::vector<DocumentResult*> kept_results;
  const size_t d = static_cast<size_t>(info.spec.dimension);
  for (size_t i = 0; i < batch->size(); ++i) {
    Document& doc = (*batch)[i];
    SearchParams params;
    params.k = 1;
    params.exclude_id = doc.id;  // an update is not a duplicate of its old version
    QS_ASSIGN_OR_RETURN(std::vector<SearchHit> hits,
                        store_->search(info.spec.name, doc.embedding, params));
    std::string duplicate_of;
    double best = threshold - 1e-6;
    if (!hits.empty() && hits[0].score >= best) {
      duplicate_of = hits[0].id;
      best = hits[0].score;
    }
    // The documents of this request stored before this one (vectors are unit length).
    std::vector<float> unit = doc.embedding;
    normalize_l2(unit.data(), static_cast<int>(d));
    for (const Document& earlier : kept) {
      double dot = 0;
      for (size_t j = 0; j < d; ++j) dot += static_cast<double>(unit[j]) * earlier.embedding[j];
      if (dot > best || (duplicate_of.empty() && dot >= best)) {
        duplicate_of = earlier.id;
        best = dot;
      }
    }
    if (!duplicate_of.empty()) {
      (*results)[i]->duplicate_of = duplicate_of;
      if (skip) {
        (*results)[i]->skipped = true;
        continue;
      }
      if (!doc.metadata.is_object()) doc.metadata = nlohmann::json::object();
      doc.metadata["_duplicate_of"] = duplicate_of;
    }
    doc.embedding = std::move(unit);  // the store normalises anyway (cosine collections)
    kept.push_back(std::move(doc));
    kept_results.push_back((*results)[i]);
  }
  *batch = std::move(kept);
  *results = std::move(kept_results);
  return Status::ok();
}

StatusOr<DuplicatesResult> find_duplicates(CollectionStore& store, const std::string& collection,
                                           const DuplicatesRequest& request) {
  if (!(request.threshold > 0.0f && request.threshold <= 1.0f))
    return unprocessable("\"threshold\" must be in (0, 1], got " +
                         std::to_string(request.threshold));
  if (request.limit < 1 || request.limit > 10000)
    return unprocessable("\"limit\" must be in 1..10000, got " + std::to_string(request.limit));
  QS_ASSIGN_OR_RETURN(CollectionInfo info, store.get_collection(collection));
  std::vector<std::string> ids;
  std::vector<float> vectors;
  QS_RETURN_IF_ERROR(store.scan_embeddings(collection, &ids, &vectors));
  DuplicatesResult result;
  const int64_t n = static_cast<int64_t>(ids.size());
  result.documents = n;
  if (n < 2) {
    result.device = "none";
    return result;
  }
  SimilarityJoinOptions options;
  options.threshold = request.threshold;
  options.device = request.device;
  // A server request should not hold gigabytes of pairs: a threshold that low is an error.
  options.max_pairs = 50'000'000;
  JoinStats stats;
  QS_ASSIGN_OR_RETURN(std::vector<SimilarPair> pairs,
                      find_similar_pairs(vectors.data(), n, info.spec.dimension, options, &stats));
  result.pairs = static_cast<int64_t>(pairs.size());
  result.device = stats.device;
  std::vector<DuplicateCluster> clusters = cluster_pairs(n, pairs, KeepPolicy::kFirst);
  result.total_clusters = static_cast<int64_t>(clusters.size());
  for (const auto& cl : clusters) result.duplicate_documents += static_cast<int64_t>(cl.members.size()) - 1;
  // Largest clusters first; ties keep the order of their first member (id order).
  std::stable_sort(clusters.begin(), clusters.end(),
                   [](const DuplicateCluster& a, const DuplicateCluster& b) {
                     return a.members.size() > b.members.size();
                   });
  if (static_cast<int64_t>(clusters.size()) > request.limit) clusters.resize(request.limit);
  for (const auto& cl : clusters) {
    DuplicateGroup g;
    for (int64_t m : cl.members) g.ids.push_back(ids[m]);
    g.max_score = -1;
    g.min_score = 1;
    for (const auto& p : cl.pairs) {
      g.max_score = std::max(g.max_score, p.score);
      g.min_score = std::min(g.min_score, p.score);
    }
    result.clusters.push_back(std::move(g));
  }
  return result;
}

}  // namespace qsearch
