// Search: k nearest documents, with exact-match metadata filters by over-fetching.
//
// Filtering: the index is searched for f candidates (k without a filter; 4k, at least 64, with
// one), their documents are read and the filter applied; while fewer than k match and the
// index may hold more, f grows 8x and the search repeats, up to the whole index. Correct for
// any filter selectivity; cost grows only for rare filters. exclude_id is an IDSelector on
// its label inside the index scan.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "service/collection_store.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

StatusOr<std::vector<SearchHit>> RocksCollectionStore::search(const std::string& collection,
                                                              const std::vector<float>& query,
                                                              const SearchParams& params) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  const int k = params.k;
  if (k < 1 || k > 1000) return unprocessable("k must be in 1..1000");
  const int d = c->spec.dimension;
  if (static_cast<int>(query.size()) != d) {
    return unprocessable("query vector has " + std::to_string(query.size()) +
                         " values, collection '" + collection + "' has dimension " +
                         std::to_string(d));
  }
  for (float v : query) {
    if (!std::isfinite(v)) return unprocessable("query vector is not finite");
  }
  if (!params.filter.is_null() && !params.filter.is_object()) {
    return unprocessable("filter must be an object");
  }
  const bool has_filter = params.filter.is_object() && !params.filter.empty();
  std::vector<float> q = query;
  if (c->spec.metric == Metric::kCosine) normalize_l2(q.data(), d);

  int64_t excluded_label = -1;
  if (params.exclude_id) {
    std::string value;
    Status s = kv_->get(store::document_key(c->id, *params.exclude_id), &value);
    if (s.is_ok()) {
      store::DocumentRecord rec;
      QS_RETURN_IF_ERROR(store::decode_document(value, &rec, store::kPartLabel));
      excluded_label = rec.label;
    } else if (s.code() != StatusCode::kNotFound) {
      return s;
    }
  }
  LabelFilter exclude = [excluded_label](int64_t label) { return label != excluded_label; };
  const bool need_docs = has_filter || params.include_text || params.include_metadata;
  const unsigned parts = (params.include_text ? store::kPartText : 0u) |
                         (has_filter || params.include_metadata ? store::kPartMetadata : 0u);
  const bool l2 = c->spec.metric == Metric::kL2;

  std::vector<SearchHit> hits;
  std::unordered_set<int64_t> seen;
  int64_t fetch = has_filter ? std::max<int64_t>(4LL * k, 64) : k;
  IndexSearchParams index_params;
  bool exhaustive = false;
  for (;;) {
    int64_t total = 0;
    bool is_ivf = false;
    std::vector<int64_t> labels;
    std::vector<float> dist;
    {
      std::shared_lock<std::shared_mutex> lock(c->index_mu);
      total = c->index->size();
      if (total == 0) break;
      is_ivf = c->index->type() == "ivf";
      fetch = std::min(fetch, total);
      labels.resize(fetch);
      dist.resize(fetch);
      if (exhaustive) index_params.nprobe = 1 << 30;  // IVF: every list (clamped to nlist)
      QS_RETURN_IF_ERROR(c->index->search(1, q.data(), static_cast<int>(fetch), index_params,
                                          excluded_label >= 0 ? &exclude : nullptr, labels.data(),
                                          dist.data()));
    }
    int64_t returned = 0;
    std::vector<int64_t> fresh;
    std::vector<float> fresh_dist;
    for (int64_t i = 0; i < fetch; ++i) {
      if (labels[i] < 0) continue;
      ++returned;
      if (seen.insert(labels[i]).second) {
        fresh.push_back(labels[i]);
        fresh_dist.push_back(dist[i]);
      }
    }
    // Resolve labels -> ids (and documents when needed); stale labels (changed meanwhile) drop.
    std::vector<std::string> keys;
    for (int64_t label : fresh) keys.push_back(store::label_key(c->id, label));
    std::vector<std::optional<std::string>> ids;
    QS_RETURN_IF_ERROR(kv_->multi_get(keys, &ids));
    std::vector<std::optional<std::string>> docs;
    if (need_docs) {
      keys.clear();
      for (const auto& id : ids) keys.push_back(store::document_key(c->id, id ? *id : std::string()));
      QS_RETURN_IF_ERROR(kv_->multi_get(keys, &docs));
    }
    for (size_t i = 0; i < fresh.size(); ++i) {
      if (!ids[i]) continue;
      SearchHit hit;
      hit.id = *ids[i];
      hit.score = l2 ? std::sqrt(std::max(0.0f, fresh_dist[i])) : fresh_dist[i];
      if (need_docs) {
        if (!docs[i]) continue;
        store::DocumentRecord rec;
        QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &rec, parts));
        if (rec.label != fresh[i]) continue;
        nlohmann::json metadata;
        if (parts & store::kPartMetadata) {
          metadata = nlohmann::json::parse(rec.metadata_json, nullptr, false);
          if (metadata.is_discarded()) return corruption("document '" + hit.id + "': bad metadata");
        }
        if (has_filter && !metadata_matches(metadata, params.filter)) continue;
        if (params.include_text) hit.text = std::move(rec.text);
        if (params.include_metadata) hit.metadata = std::move(metadata);
      }
      hits.push_back(std::move(hit));
    }
    if (static_cast<int64_t>(hits.size()) >= k) break;
    if (returned < fetch) {
      // Fewer candidates than asked: the index is exhausted, unless IVF skipped unprobed lists.
      if (exhaustive || !is_ivf) break;
      exhaustive = true;
      continue;
    }
    if (fetch >= total) break;
    fetch *= 8;
  }
  std::stable_sort(hits.begin(), hits.end(), [l2](const SearchHit& a, const SearchHit& b) {
    return l2 ? a.score < b.score : a.score > b.score;
  });
  if (static_cast<int64_t>(hits.size()) > k) hits.resize(k);
  return hits;
}

}  // namespace qsearch
