// Search: k nearest documents, with metadata filters (collection/filter.h).
//
// Filtering is pushed into the index when the metadata index narrows the filter down to at
// most an eighth of the documents (collection/metadata_index.h): their labels become a
// LabelSetFilter, so the flat index scores only the matches and HNSW/IVF score them exactly
// (selective sets) or search with the set as a selector and a widened beam / more lists
// (index/exact_scan.h); the matching set of a filter is kept in the collection's filter
// cache while nothing is written (collection/filter_cache.h). Otherwise (a broad filter, or
// one the index cannot narrow: $ne, $not, ...) the index is searched for f candidates (4k, at least 64), their documents are read and
// the filter applied; while fewer than k match and the index may hold more, f grows 8x and the
// search repeats, up to the whole index. Either way each hit's document is checked against
// the filter. exclude_id is an IDSelector on its labels inside the index scan.
// Chunking collections: one label per chunk; a hit's record tells which chunk it is, and each
// document is returned once with the score and offsets of its best chunk (k distinct documents).
// Rescoring (index "rescore": R > 0, the default with a quantizer): the index is asked for at
// least R candidates (not only k + offset), each candidate's stored embedding (its chunk's row
// in a chunked collection) is read with its record and scored exactly with the collection's
// metric, and the best k by that exact score are returned: a quantized index only has to get
// the true neighbours into its top R, and the scores shown are exact.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "collection/collection_store.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

// The score a flat index gives: inner product (cosine: of normalised vectors, as stored), or
// the L2 distance. Accumulated in double, so it matches FAISS's float sums to ~1e-6.
static float exact_score(const float* q, const float* v, int d, bool l2) {
  double acc = 0;
  for (int j = 0; j < d; ++j) {
    if (l2) {
      const double diff = static_cast<double>(q[j]) - v[j];
      acc += diff * diff;
    } else {
      acc += static_cast<double>(q[j]) * v[j];
    }
  }
  return static_cast<float>(l2 ? std::sqrt(acc) : acc);
}

StatusOr<std::vector<SearchHit>> RocksCollectionStore::search(const std::string& collection,
                                                              const std::vector<float>& query,
                                                              const SearchParams& params) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  if (params.k < 1 || params.k > 1000) return unprocessable("k must be in 1..1000");
  if (params.offset < 0 || params.offset > 10000)
    return unprocessable("\"offset\" must be in 0..10000, got " + std::to_string(params.offset));
  if (params.ef_search < 0 || params.ef_search > 100000)
    return unprocessable("\"ef_search\" must be in 1..100000, got " + std::to_string(params.ef_search));
  if (params.nprobe < 0 || params.nprobe > 65536)
    return unprocessable("\"nprobe\" must be in 1..65536, got " + std::to_string(params.nprobe));
  if (params.score_threshold && !std::isfinite(*params.score_threshold))
    return unprocessable("\"score_threshold\" must be a finite number");
  // The first offset + k hits are found; the first offset of them are dropped at the end.
  const int k = params.k + params.offset;
  const int d = c->spec.dimension;
  if (static_cast<int>(query.size()) != d) {
    return unprocessable("query vector has " + std::to_string(query.size()) +
                         " values, collection '" + collection + "' has dimension " +
                         std::to_string(d));
  }
  double query_norm2 = 0;
  for (float v : query) {
    if (!std::isfinite(v)) return unprocessable("query vector is not finite");
    query_norm2 += static_cast<double>(v) * v;
  }
  if (c->spec.metric != Metric::kCosine && !(std::sqrt(query_norm2) < kMaxVectorNorm))
    return unprocessable("query vector's norm is 1e18 or more: its scores would overflow");
  QS_ASSIGN_OR_RETURN(Filter filter, Filter::parse(params.filter));
  const bool has_filter = !filter.matches_all();
  std::vector<float> q = query;
  if (c->spec.metric == Metric::kCosine) normalize_l2(q.data(), d);

  // exclude_id: all labels of that document (every chunk) are filtered out inside the scan.
  int64_t excluded_begin = -1, excluded_end = -1;
  if (params.exclude_id) {
    std::string value;
    Status s = kv_->get(store::document_key(c->id, *params.exclude_id), &value);
    if (s.is_ok()) {
      store::DocumentRecord rec;
      QS_RETURN_IF_ERROR(store::decode_document(value, &rec, store::kPartLabel));
      excluded_begin = rec.label;
      excluded_end = rec.label + rec.label_count();
    } else if (s.code() != StatusCode::kNotFound) {
      return s;
    }
  }
  PredicateFilter exclude([excluded_begin, excluded_end](int64_t label) {
    return label < excluded_begin || label >= excluded_end;
  });
  using Clock = std::chrono::steady_clock;
  auto us_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
  };
  Clock::time_point stage = Clock::now();
  std::shared_ptr<const LabelSetFilter> label_set;
  if (has_filter) {
    // The filter's matching set, from the cache while nothing has been written since it was
    // read (collection/filter_cache.h), else from the metadata index.
    const std::string cache_key = params.filter.dump();
    const uint64_t sequence = kv_->latest_sequence();
    std::optional<FilterCache::Resolved> resolved;
    if (params.use_filter_cache) resolved = c->filter_cache.find(cache_key, sequence);
    if (!resolved) {
      const size_t limit = static_cast<size_t>(std::max<int64_t>(1000, c->documents.load() / 8));
      QS_ASSIGN_OR_RETURN(std::optional<LabelRuns> runs,
                          metadata_candidates(*kv_, c->id, filter, limit, c->vectors.load()));
      resolved.emplace();
      if (runs) resolved->set = std::make_shared<const LabelSetFilter>(expand_labels(*runs));
      if (params.use_filter_cache) c->filter_cache.put(cache_key, sequence, *resolved);
    }
    label_set = resolved->set;
    if (label_set && excluded_begin >= 0) {
      std::vector<int64_t> labels = *label_set->sorted_labels();
      labels.erase(std::remove_if(labels.begin(), labels.end(),
                                  [&](int64_t l) { return l >= excluded_begin && l < excluded_end; }),
                   labels.end());
      label_set = std::make_shared<const LabelSetFilter>(std::move(labels));
    }
    if (label_set && label_set->sorted_labels()->empty()) return std::vector<SearchHit>();
  }
  if (params.profile) params.profile->resolve_us = us_since(stage);
  const LabelFilter* index_filter =
      label_set ? static_cast<const LabelFilter*>(label_set.get()) : excluded_begin >= 0 ? &exclude : nullptr;
  // A chunking collection holds several labels per document: the records are always read (to
  // find the chunk a label is) and each document is returned once, by its best chunk.
  const bool chunked = c->spec.chunked();
  const int rescore = c->spec.index.rescore;
  const bool need_docs =
      chunked || has_filter || params.include_text || params.include_metadata || rescore > 0;
  const unsigned parts = (params.include_text ? store::kPartText : 0u) |
                         (has_filter || params.include_metadata ? store::kPartMetadata : 0u);
  const bool l2 = c->spec.metric == Metric::kL2;

  auto better = [l2](float a, float b) { return l2 ? a < b : a > b; };
  std::vector<SearchHit> hits;
  std::unordered_map<std::string, size_t> hit_of_id;  // chunked: a document's entry in hits
  std::unordered_set<int64_t> seen;
  int64_t fetch = chunked                   ? std::max(4LL * k, 32LL)
                  : has_filter && !label_set ? std::max<int64_t>(4LL * k, 64)
                                             : k;
  fetch = std::max<int64_t>(fetch, rescore);
  IndexSearchParams index_params;
  index_params.ef_search = params.ef_search;
  index_params.nprobe = params.nprobe;
  bool exhaustive = false;
  for (;;) {
    int64_t total = 0;
    bool is_ivf = false;
    std::vector<int64_t> labels;
    std::vector<float> dist;
    stage = Clock::now();
    {
      std::shared_lock<IndexMutex> lock(c->index_mu);
      total = c->index->size();
      if (total == 0) break;
      is_ivf = c->index->type() == "ivf";
      fetch = std::min(fetch, total);
      labels.resize(fetch);
      dist.resize(fetch);
      if (exhaustive) index_params.nprobe = 1 << 30;  // IVF: every list (clamped to nlist)
      QS_RETURN_IF_ERROR(c->index->search(1, q.data(), static_cast<int>(fetch), index_params,
                                          index_filter, labels.data(), dist.data()));
    }
    if (params.profile) {
      params.profile->index_us += us_since(stage);
      stage = Clock::now();
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
      if (!std::isfinite(hit.score)) continue;  // cannot happen within kMaxVectorNorm; never shown
      if (need_docs) {
        if (!docs[i]) continue;
        store::DocumentRecord rec;
        QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &rec,
                                                  rescore > 0 ? store::kPartEmbedding : store::kPartLabel));
        if (!rec.owns(fresh[i])) continue;  // the document changed meanwhile
        if (rescore > 0) {
          const size_t row = static_cast<size_t>(fresh[i] - rec.label);
          if (rec.embedding.size() < (row + 1) * static_cast<size_t>(d))
            return corruption("document '" + hit.id + "': stored embedding has the wrong dimension");
          hit.score = exact_score(q.data(), rec.embedding.data() + row * d, d, l2);
        }
        if (!rec.chunks.empty()) {
          hit.chunk = static_cast<int32_t>(fresh[i] - rec.label);
          const store::ChunkRecord& ch = rec.chunks[hit.chunk];
          hit.chunk_span = {ch.start, ch.end, ch.tokens};
        }
        if (chunked) {
          auto it = hit_of_id.find(hit.id);
          if (it != hit_of_id.end()) {
            // Another chunk of a document already found (and filtered): keep the better one.
            SearchHit& prior = hits[it->second];
            if (better(hit.score, prior.score)) {
              prior.score = hit.score;
              prior.chunk = hit.chunk;
              prior.chunk_span = hit.chunk_span;
            }
            continue;
          }
        }
        if (parts != store::kPartLabel) {
          QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &rec, parts));
        }
        nlohmann::json metadata;
        if (parts & store::kPartMetadata) {
          metadata = nlohmann::json::parse(rec.metadata_json, nullptr, false);
          if (metadata.is_discarded()) return corruption("document '" + hit.id + "': bad metadata");
        }
        if (has_filter && !filter.matches(metadata)) continue;
        if (params.include_text) hit.text = std::move(rec.text);
        if (params.include_metadata) hit.metadata = std::move(metadata);
      }
      if (chunked) hit_of_id.emplace(hit.id, hits.size());
      hits.push_back(std::move(hit));
    }
    if (params.profile) params.profile->assemble_us += us_since(stage);
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
  std::stable_sort(hits.begin(), hits.end(),
                   [&better](const SearchHit& a, const SearchHit& b) { return better(a.score, b.score); });
  if (static_cast<int64_t>(hits.size()) > k) hits.resize(k);
  hits.erase(hits.begin(), hits.begin() + std::min<size_t>(hits.size(), static_cast<size_t>(params.offset)));
  if (params.score_threshold) {
    const float t = *params.score_threshold;
    hits.erase(std::remove_if(hits.begin(), hits.end(),
                              [&](const SearchHit& h) { return l2 ? h.score > t : h.score < t; }),
               hits.end());
  }
  return hits;
}

}  // namespace qsearch
