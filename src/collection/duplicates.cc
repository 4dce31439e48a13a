#include "collection/duplicates.h"

#include <algorithm>
#include <cmath>

#include "collection/collection_store.h"
#include "dedup/clusters.h"
#include "dedup/similarity_join.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

Status RocksCollectionStore::scan_embeddings(const std::string& collection, const Filter& filter,
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
        const bool filtered = !filter.matches_all();
        problem = store::decode_document(
            value, &rec, store::kPartEmbedding | (filtered ? store::kPartMetadata : 0u));
        if (problem.is_ok() && filtered) {
          auto metadata = nlohmann::json::parse(rec.metadata_json, nullptr, false);
          if (metadata.is_discarded()) {
            problem = corruption("document '" + id + "': stored metadata is not JSON");
            return false;
          }
          if (!filter.matches(metadata)) return true;
        }
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

StatusOr<DuplicatesResult> find_duplicates(CollectionStore& store, const std::string& collection,
                                           const DuplicatesRequest& request) {
  if (!(request.threshold > 0.0f && request.threshold <= 1.0f))
    return unprocessable("\"threshold\" must be in (0, 1], got " +
                         std::to_string(request.threshold));
  if (request.limit < 1 || request.limit > 10000)
    return unprocessable("\"limit\" must be in 1..10000, got " + std::to_string(request.limit));
  if (request.cursor < 0)
    return unprocessable("\"cursor\" must be >= 0, got " + std::to_string(request.cursor));
  QS_ASSIGN_OR_RETURN(CollectionInfo info, store.get_collection(collection));
  std::vector<std::string> ids;
  std::vector<float> vectors;
  QS_RETURN_IF_ERROR(store.scan_embeddings(collection, request.filter, &ids, &vectors));
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
  options.max_pairs = request.max_pairs;
  JoinStats stats;
  auto joined = find_similar_pairs(vectors.data(), n, info.spec.dimension, options, &stats);
  if (!joined.is_ok() && joined.status().code() == StatusCode::kResourceExhausted &&
      joined.status().message().find("raise the threshold") != std::string::npos)
    return unprocessable("more than " + std::to_string(request.max_pairs) +
                         " pairs at cosine >= " + std::to_string(request.threshold) +
                         " (max_duplicate_pairs): raise \"threshold\"");
  QS_ASSIGN_OR_RETURN(std::vector<SimilarPair> pairs, std::move(joined));
  result.pairs = static_cast<int64_t>(pairs.size());
  result.device = stats.device;
  std::vector<DuplicateCluster> clusters = cluster_pairs(n, pairs, KeepPolicy::kFirst);
  result.total_clusters = static_cast<int64_t>(clusters.size());
  for (const auto& cl : clusters)
    result.duplicate_documents += static_cast<int64_t>(cl.members.size()) - 1;
  // Largest clusters first; ties keep the order of their first member (id order).
  std::stable_sort(clusters.begin(), clusters.end(),
                   [](const DuplicateCluster& a, const DuplicateCluster& b) {
                     return a.members.size() > b.members.size();
                   });
  const int64_t total = static_cast<int64_t>(clusters.size());
  const int64_t first = std::min(request.cursor, total);
  const int64_t last = std::min(total, first + request.limit);
  if (last < total) result.next_cursor = last;
  for (int64_t c = first; c < last; ++c) {
    const DuplicateCluster& cl = clusters[static_cast<size_t>(c)];
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
