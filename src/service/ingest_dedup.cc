// Collection option "dedup" at ingestion (collection/options.h DedupOptions): each new
// document's nearest stored neighbour is looked up through the store's search; documents of one
// request are also compared with the earlier ones of the request.
#include <cmath>

#include "collection/collection_store.h"
#include "service/service.h"

namespace qsearch {

Status Service::check_ingest_duplicates(const CollectionInfo& info, std::vector<Document>* batch,
                                        std::vector<DocumentResult*>* results) {
  if (!info.spec.dedup) return Status::ok();
  const double threshold = info.spec.dedup->threshold;
  const bool skip = info.spec.dedup->skip;
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

}  // namespace qsearch
