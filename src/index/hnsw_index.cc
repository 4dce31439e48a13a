#include "index/hnsw_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexScalarQuantizer.h>

#include <algorithm>
#include <cfloat>

#include "index/distances.h"
#include "index/exact_scan.h"

namespace qsearch {

using index_internal::ByteReader;
using index_internal::ByteWriter;
using index_internal::FunctionSelector;
using index_internal::guard_faiss;

HnswIndex::HnswIndex(const VectorIndexConfig& config)
    : config_(config),
      index_(new_graph()),
      pending_(std::make_unique<FlatIndex>(config.dimension, config.metric)) {}

std::unique_ptr<faiss::IndexHNSW> HnswIndex::new_graph() const {
  const faiss::MetricType metric = index_internal::to_faiss(config_.metric);
  std::unique_ptr<faiss::IndexHNSW> g;
  if (config_.quantizer == "sq8" || config_.quantizer == "fp16") {
    g = std::make_unique<faiss::IndexHNSWSQ>(
        config_.dimension,
        config_.quantizer == "sq8" ? faiss::ScalarQuantizer::QT_8bit : faiss::ScalarQuantizer::QT_fp16,
        config_.hnsw_m, metric);
  } else {
    g = std::make_unique<faiss::IndexHNSWFlat>(config_.dimension, config_.hnsw_m, metric);
    // SIMD distances (see distances.h); serialised by FAISS as a plain IndexFlat.
    delete g->storage;
    g->storage = new index_internal::FastFlatStorage(config_.dimension, metric);
  }
  g->hnsw.efConstruction = config_.hnsw_ef_construction;
  g->hnsw.efSearch = config_.hnsw_ef_search;
  return g;
}

const float* HnswIndex::stored_vectors() const {
  auto* flat = dynamic_cast<const faiss::IndexFlat*>(index_->storage);
  return flat ? flat->get_xb() : nullptr;
}

void HnswIndex::get_row(int64_t pos, float* out) const {
  if (const float* xb = stored_vectors()) {
    std::memcpy(out, xb + pos * config_.dimension, sizeof(float) * config_.dimension);
  } else {
    index_->storage->reconstruct(pos, out);  // decodes the row's code
  }
}

int64_t HnswIndex::pending() const {
  // An untrained sq8 index below its training size: the buffer is the index (exact), not work
  // waiting for the inserter.
  if (!trained() && pending_->size() < kSqTrainMin) return 0;
  return pending_->size();
}

Status HnswIndex::train_if_due() {
  if (trained() || pending_->size() < kSqTrainMin) return Status::ok();
  return guard_faiss("IndexHNSWSQ::train", [&] {
    index_->train(static_cast<faiss::Index::idx_t>(pending_->size()), pending_->vectors());
  });
}

Status HnswIndex::add(int64_t n, const int64_t* labels, const float* vectors) {
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0) return invalid_argument("index labels must be >= 0");
  }
  // A label already in the graph is replaced: tombstone its old vector there; the new one goes
  // to the pending buffer (which replaces a pending vector of the same label in place).
  for (int64_t i = 0; i < n; ++i) {
    auto it = positions_.find(labels[i]);
    if (it == positions_.end()) continue;
    dead_[it->second] = 1;
    positions_.erase(it);
  }
  return pending_->add(n, labels, vectors);
}

Status HnswIndex::remove(int64_t n, const int64_t* labels) {
  for (int64_t i = 0; i < n; ++i) {
    auto it = positions_.find(labels[i]);
    if (it == positions_.end()) continue;
    dead_[it->second] = 1;
    positions_.erase(it);
  }
  return pending_->remove(n, labels);  // ignores labels it does not hold
}

Status HnswIndex::absorb_pending(int64_t max_vectors) {
  QS_RETURN_IF_ERROR(train_if_due());
  if (!trained()) return Status::ok();
  const int64_t m = std::min<int64_t>(max_vectors, pending_->size());
  if (m <= 0) return Status::ok();
  const int d = config_.dimension;
  // The last m rows of the buffer: removing them afterwards is a truncation (no row moves).
  const int64_t first = pending_->size() - m;
  std::vector<int64_t> moved(pending_->labels().begin() + first, pending_->labels().end());
  std::vector<float> rows(pending_->vectors() + first * d, pending_->vectors() + (first + m) * d);
  QS_RETURN_IF_ERROR(guard_faiss("IndexHNSWFlat::add", [&] {
    index_->add(static_cast<faiss::Index::idx_t>(m), rows.data());
  }));
  for (int64_t label : moved) {
    positions_[label] = static_cast<int64_t>(labels_.size());
    labels_.push_back(label);
    dead_.push_back(0);
  }
  std::reverse(moved.begin(), moved.end());  // last row first: each removal pops the tail
  return pending_->remove(m, moved.data());
}

bool HnswIndex::wants_optimize() const {
  return tombstones() > 0 &&
         tombstones() > config_.hnsw_rebuild_fraction * static_cast<double>(stored());
}

Status HnswIndex::export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const {
  const int d = config_.dimension;
  labels->clear();
  vectors->clear();
  labels->reserve(size());
  vectors->reserve(static_cast<size_t>(size()) * d);
  for (size_t pos = 0; pos < labels_.size(); ++pos) {
    if (dead_[pos]) continue;
    labels->push_back(labels_[pos]);
    vectors->resize(vectors->size() + d);
    get_row(static_cast<int64_t>(pos), vectors->data() + vectors->size() - d);
  }
  const std::vector<int64_t>& pl = pending_->labels();
  labels->insert(labels->end(), pl.begin(), pl.end());
  vectors->insert(vectors->end(), pending_->vectors(), pending_->vectors() + pl.size() * d);
  return Status::ok();
}

Status HnswIndex::optimize() {
  if (tombstones() == 0) return absorb_pending(pending_->size());
  std::vector<int64_t> live;
  std::vector<float> rows;
  QS_RETURN_IF_ERROR(export_live(&live, &rows));
  auto graph = new_graph();
  if (!graph->is_trained) {
    // Keep the trained ranges: the decoded rows then encode to the codes they came from.
    auto* from = dynamic_cast<const faiss::IndexScalarQuantizer*>(index_->storage);
    auto* to = dynamic_cast<faiss::IndexScalarQuantizer*>(graph->storage);
    if (!from || !to) return internal_error("HNSW rebuild: scalar quantizer storage expected");
    to->sq.trained = from->sq.trained;
    to->is_trained = true;
    graph->is_trained = true;
  }
  QS_RETURN_IF_ERROR(guard_faiss("IndexHNSWFlat::add (rebuild)", [&] {
    if (!live.empty()) graph->add(static_cast<faiss::Index::idx_t>(live.size()), rows.data());
  }));
  index_ = std::move(graph);
  pending_ = std::make_unique<FlatIndex>(config_.dimension, config_.metric);
  labels_ = live;
  dead_.assign(live.size(), 0);
  positions_.clear();
  for (size_t pos = 0; pos < live.size(); ++pos) positions_[live[pos]] = static_cast<int64_t>(pos);
  return Status::ok();
}

Status HnswIndex::search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                         const LabelFilter* filter, int64_t* out_labels,
                         float* out_distances) const {
  if (k < 1) return invalid_argument("k must be >= 1");
  if (pending_->size() == 0) {
    return search_graph(n, queries, k, params, filter, out_labels, out_distances);
  }
  if (labels_.empty()) {
    return pending_->search(n, queries, k, params, filter, out_labels, out_distances);
  }
  // Both: the graph's best k and the pending buffer's exact best k, merged per query.
  const size_t nk = static_cast<size_t>(n) * k;
  std::vector<int64_t> gl(nk), pl(nk);
  std::vector<float> gd(nk), pd(nk);
  QS_RETURN_IF_ERROR(search_graph(n, queries, k, params, filter, gl.data(), gd.data()));
  QS_RETURN_IF_ERROR(pending_->search(n, queries, k, params, filter, pl.data(), pd.data()));
  const bool ip = config_.metric == IndexMetric::kInnerProduct;
  for (int64_t qi = 0; qi < n; ++qi) {
    const size_t base = static_cast<size_t>(qi) * k;
    size_t a = base, b = base;
    for (int i = 0; i < k; ++i) {
      const bool a_ok = a < base + k && gl[a] >= 0;
      const bool b_ok = b < base + k && pl[b] >= 0;
      bool take_a;
      if (a_ok && b_ok) {
        take_a = ip ? gd[a] >= pd[b] : gd[a] <= pd[b];
      } else {
        take_a = a_ok;
        if (!a_ok && !b_ok) {
          out_labels[base + i] = -1;
          out_distances[base + i] = ip ? -FLT_MAX : FLT_MAX;
          continue;
        }
      }
      out_labels[base + i] = take_a ? gl[a] : pl[b];
      out_distances[base + i] = take_a ? gd[a++] : pd[b++];
    }
  }
  return Status::ok();
}

Status HnswIndex::search_graph(int64_t n, const float* queries, int k,
                               const IndexSearchParams& params, const LabelFilter* filter,
                               int64_t* out_labels, float* out_distances) const {
  const int64_t graph_live = static_cast<int64_t>(positions_.size());
  faiss::SearchParametersHNSW sp;
  sp.efSearch = std::max(params.ef_search > 0 ? params.ef_search : config_.hnsw_ef_search, k);
  if (const std::vector<int64_t>* set = filter ? filter->sorted_labels() : nullptr) {
    const int64_t m = static_cast<int64_t>(set->size());
    if (m <= index_internal::exact_scan_limit(graph_live)) {
      // A selective filter: the graph would be walked mostly through non-matches (and lose
      // recall); scoring the matches exactly is cheaper and exact (on decoded rows when
      // quantized).
      const float* xb = stored_vectors();
      const int d = config_.dimension;
      return index_internal::exact_search(
          n, queries, d, config_.metric, k, *set,
          [this, xb, d](int64_t label, float* scratch) -> const float* {
            auto it = positions_.find(label);
            if (it == positions_.end()) return nullptr;
            if (xb != nullptr) return xb + it->second * d;
            get_row(it->second, scratch);
            return scratch;
          },
          out_labels, out_distances);
    }
    // A wider filter: the graph with the filter as a selector, the beam widened by the share
    // of non-matches so that k matches are still found (capped).
    const int64_t widened = static_cast<int64_t>(sp.efSearch) * std::max<int64_t>(1, graph_live / std::max<int64_t>(1, m));
    sp.efSearch = static_cast<int>(std::min<int64_t>(std::max<int64_t>(sp.efSearch, widened), 2048));
  }
  const bool has_dead = tombstones() > 0;
  FunctionSelector selector([this, filter, has_dead](int64_t pos) {
    if (has_dead && dead_[pos]) return false;
    return filter == nullptr || filter->accepts(labels_[pos]);
  });
  if (has_dead || filter) sp.sel = &selector;
  index_internal::SingleQueryOmp omp(n);
  QS_RETURN_IF_ERROR(guard_faiss("IndexHNSWFlat::search", [&] {
    index_->search(n, queries, k, out_distances, out_labels, &sp);
  }));
  for (int64_t i = 0; i < n * k; ++i) {
    if (out_labels[i] >= 0) out_labels[i] = labels_[out_labels[i]];
  }
  return Status::ok();
}

int64_t HnswIndex::memory_bytes() const {
  const faiss::HNSW& h = index_->hnsw;
  int64_t bytes = 0;
  if (auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(index_->storage)) {
    bytes += static_cast<int64_t>(codes->codes.size());
  }
  bytes += static_cast<int64_t>(h.neighbors.size() * sizeof(h.neighbors[0]) +
                                h.levels.size() * sizeof(h.levels[0]) +
                                h.offsets.size() * sizeof(h.offsets[0]));
  bytes += static_cast<int64_t>(labels_.size() * sizeof(int64_t) + dead_.size());
  bytes += static_cast<int64_t>(positions_.size()) * index_internal::kHashEntryBytes;
  return bytes + pending_->memory_bytes();
}

Status HnswIndex::serialize(std::string* out) const {
  out->clear();
  ByteWriter w(out);
  w.put<uint8_t>(static_cast<uint8_t>(index_internal::IndexKind::kHnsw));
  w.put_array(labels_.data(), labels_.size());
  w.put_array(dead_.data(), dead_.size());
  std::string graph;
  QS_RETURN_IF_ERROR(index_internal::faiss_to_bytes(index_.get(), &graph));
  w.put_bytes(graph);
  // The pending buffer follows the graph (files written before it had none end here).
  return pending_->write_payload(&w);
}

StatusOr<std::unique_ptr<HnswIndex>> HnswIndex::read_payload(const VectorIndexConfig& config,
                                                             ByteReader* r) {
  auto index = std::make_unique<HnswIndex>(config);
  std::string_view graph_bytes;
  if (!r->get_array(&index->labels_) || !r->get_array(&index->dead_) ||
      !r->get_bytes(&graph_bytes)) {
    return corruption("HNSW index payload is truncated");
  }
  QS_ASSIGN_OR_RETURN(std::unique_ptr<faiss::Index> raw,
                      index_internal::faiss_from_bytes(graph_bytes));
  auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(raw.get());
  if (!hnsw) return corruption("HNSW index payload holds another FAISS index type");
  // The storage must be what the configuration asks for (a file of another quantizer is
  // rejected, and the index rebuilt from the store).
  auto* sq = dynamic_cast<const faiss::IndexScalarQuantizer*>(hnsw->storage);
  const bool storage_ok =
      config.quantizer == "none"
          ? dynamic_cast<const faiss::IndexFlat*>(hnsw->storage) != nullptr
          : sq != nullptr && sq->sq.qtype == (config.quantizer == "sq8" ? faiss::ScalarQuantizer::QT_8bit
                                                                         : faiss::ScalarQuantizer::QT_fp16);
  if (!storage_ok) return corruption("HNSW index payload holds another vector storage than " + config.quantizer);
  raw.release();
  index->index_.reset(hnsw);
  if (auto* flat = dynamic_cast<faiss::IndexFlat*>(hnsw->storage)) {
    hnsw->storage = index_internal::FastFlatStorage::adopt(flat);
    delete flat;
  }
  if (index->dead_.size() != index->labels_.size() ||
      index->index_->ntotal != static_cast<faiss::Index::idx_t>(index->labels_.size()) ||
      index->index_->d != config.dimension ||
      (!index->index_->is_trained && !index->labels_.empty())) {
    return corruption("HNSW index payload: sizes do not agree");
  }
  index->index_->hnsw.efSearch = config.hnsw_ef_search;
  for (size_t pos = 0; pos < index->labels_.size(); ++pos) {
    if (index->dead_[pos]) continue;
    if (!index->positions_.emplace(index->labels_[pos], static_cast<int64_t>(pos)).second) {
      return corruption("HNSW index payload has a live label twice");
    }
  }
  if (!r->done()) {
    QS_ASSIGN_OR_RETURN(index->pending_,
                        FlatIndex::read_payload(config.dimension, config.metric, r));
    for (int64_t label : index->pending_->labels()) {
      if (index->positions_.count(label))
        return corruption("HNSW index payload has a label both in the graph and pending");
    }
  }
  return index;
}

}  // namespace qsearch
