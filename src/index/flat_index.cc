#include "index/flat_index.h"

#include <algorithm>
#include <cfloat>
#include <cstring>

#include "index/distances.h"
#include "index/exact_scan.h"

namespace qsearch {

using index_internal::ByteReader;
using index_internal::ByteWriter;
using index_internal::FunctionSelector;
using index_internal::guard_faiss;

FlatIndex::FlatIndex(int dimension, IndexMetric metric)
    : dimension_(dimension),
      metric_(metric),
      index_(std::make_unique<faiss::IndexFlat>(dimension, index_internal::to_faiss(metric))) {}

Status FlatIndex::add(int64_t n, const int64_t* labels, const float* vectors) {
  const size_t row_bytes = static_cast<size_t>(dimension_) * sizeof(float);
  std::vector<float> fresh;
  std::vector<int64_t> fresh_labels;
  std::unordered_map<int64_t, size_t> fresh_slot;  // label -> row in `fresh` (dups in one call)
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0) return invalid_argument("index labels must be >= 0");
    const float* row = vectors + i * dimension_;
    auto it = positions_.find(labels[i]);
    if (it != positions_.end()) {  // replace in place
      std::memcpy(index_->codes.data() + it->second * row_bytes, row, row_bytes);
      norms_[it->second] = index_internal::dot_product(row, row, dimension_);
      continue;
    }
    auto f = fresh_slot.find(labels[i]);
    if (f != fresh_slot.end()) {
      std::memcpy(fresh.data() + f->second * dimension_, row, row_bytes);
      continue;
    }
    fresh_slot[labels[i]] = fresh_labels.size();
    fresh_labels.push_back(labels[i]);
    fresh.insert(fresh.end(), row, row + dimension_);
  }
  if (fresh_labels.empty()) return Status::ok();
  const int64_t base = index_->ntotal;
  QS_RETURN_IF_ERROR(guard_faiss("IndexFlat::add", [&] {
    index_->add(static_cast<faiss::Index::idx_t>(fresh_labels.size()), fresh.data());
  }));
  for (size_t i = 0; i < fresh_labels.size(); ++i) {
    positions_[fresh_labels[i]] = base + static_cast<int64_t>(i);
    labels_.push_back(fresh_labels[i]);
    const float* row = fresh.data() + i * dimension_;
    norms_.push_back(index_internal::dot_product(row, row, dimension_));
  }
  return Status::ok();
}

Status FlatIndex::remove(int64_t n, const int64_t* labels) {
  const size_t row_bytes = static_cast<size_t>(dimension_) * sizeof(float);
  for (int64_t i = 0; i < n; ++i) {
    auto it = positions_.find(labels[i]);
    if (it == positions_.end()) continue;
    const int64_t pos = it->second;
    const int64_t last = static_cast<int64_t>(labels_.size()) - 1;
    positions_.erase(it);
    if (pos != last) {  // move the last row into the hole
      std::memcpy(index_->codes.data() + pos * row_bytes, index_->codes.data() + last * row_bytes,
                  row_bytes);
      labels_[pos] = labels_[last];
      norms_[pos] = norms_[last];
      positions_[labels_[pos]] = pos;
    }
    labels_.pop_back();
    norms_.pop_back();
    index_->codes.resize(static_cast<size_t>(last) * row_bytes);
    index_->ntotal = last;
  }
  return Status::ok();
}

// Exact scan: BLAS scores every stored vector against the query (multi-threaded sgemv, at
// memory bandwidth), then a bounded heap keeps the best k that pass the filter.
Status FlatIndex::search(int64_t n, const float* queries, int k, const IndexSearchParams& /*params*/,
                         const LabelFilter* filter, int64_t* out_labels,
                         float* out_distances) const {
  if (k < 1) return invalid_argument("k must be >= 1");
  // An explicit label set up to a quarter of the index: score only those rows.
  if (const std::vector<int64_t>* set = filter ? filter->sorted_labels() : nullptr;
      set && static_cast<int64_t>(set->size()) <= std::max<int64_t>(size() / 4, 1024)) {
    const float* rows = vectors();
    const int d = dimension_;
    return index_internal::exact_search(
        n, queries, dimension_, metric_, k, *set,
        [this, rows, d](int64_t label, float*) -> const float* {
          auto it = positions_.find(label);
          return it == positions_.end() ? nullptr : rows + it->second * d;
        },
        out_labels, out_distances);
  }
  const bool ip = metric_ == IndexMetric::kInnerProduct;
  const int64_t nt = size();
  std::vector<float> scores(static_cast<size_t>(nt));
  std::vector<std::pair<float, int64_t>> heap;  // (key, position); smaller key is better
  heap.reserve(static_cast<size_t>(std::min<int64_t>(k, nt)) + 1);
  for (int64_t qi = 0; qi < n; ++qi) {
    const float* q = queries + qi * dimension_;
    index_internal::inner_products(vectors(), nt, dimension_, q, scores.data());
    const float qn = ip ? 0.f : index_internal::dot_product(q, q, dimension_);
    heap.clear();
    for (int64_t j = 0; j < nt; ++j) {
      const float key = ip ? -scores[j] : norms_[j] + qn - 2.f * scores[j];
      if (static_cast<int>(heap.size()) == k && !(key < heap.front().first)) continue;
      if (filter && !filter->accepts(labels_[j])) continue;
      if (static_cast<int>(heap.size()) == k) {
        std::pop_heap(heap.begin(), heap.end());
        heap.back() = {key, j};
      } else {
        heap.emplace_back(key, j);
      }
      std::push_heap(heap.begin(), heap.end());
    }
    std::sort_heap(heap.begin(), heap.end());
    int64_t* lab = out_labels + qi * k;
    float* dis = out_distances + qi * k;
    for (int i = 0; i < k; ++i) {
      if (i < static_cast<int>(heap.size())) {
        lab[i] = labels_[heap[i].second];
        dis[i] = ip ? -heap[i].first : std::max(0.f, heap[i].first);
      } else {
        lab[i] = -1;
        dis[i] = ip ? -FLT_MAX : FLT_MAX;
      }
    }
  }
  return Status::ok();
}

Status FlatIndex::write_payload(ByteWriter* w) const {
  w->put_array(labels_.data(), labels_.size());
  w->put_array(index_->get_xb(), labels_.size() * static_cast<size_t>(dimension_));
  return Status::ok();
}

StatusOr<std::unique_ptr<FlatIndex>> FlatIndex::read_payload(int dimension, IndexMetric metric,
                                                             ByteReader* r) {
  auto index = std::make_unique<FlatIndex>(dimension, metric);
  std::string_view rows;
  uint64_t count = 0;
  if (!r->get_array(&index->labels_) || !r->get_raw_array(sizeof(float), &rows, &count)) {
    return corruption("flat index payload is truncated");
  }
  const size_t n = index->labels_.size();
  if (count != n * static_cast<size_t>(dimension)) {
    return corruption("flat index payload: vector count does not match label count");
  }
  // One copy straight into FAISS's storage (no per-row add path: this is the restart path).
  index->index_->codes.assign(reinterpret_cast<const uint8_t*>(rows.data()),
                              reinterpret_cast<const uint8_t*>(rows.data()) + rows.size());
  index->index_->ntotal = static_cast<faiss::Index::idx_t>(n);
  index->positions_.reserve(n);
  index->norms_.resize(n);
  const float* x = index->vectors();
  for (size_t i = 0; i < n; ++i) {
    if (index->labels_[i] < 0 ||
        !index->positions_.emplace(index->labels_[i], static_cast<int64_t>(i)).second) {
      return corruption("flat index payload has a negative or duplicate label");
    }
    index->norms_[i] = index_internal::dot_product(x + i * dimension, x + i * dimension, dimension);
  }
  return index;
}

Status FlatIndex::export_live(std::vector<int64_t>* labels, std::vector<float>* out) const {
  *labels = labels_;
  out->assign(vectors(), vectors() + labels_.size() * dimension_);
  return Status::ok();
}

int64_t FlatIndex::memory_bytes() const {
  const int64_t n = size();
  return static_cast<int64_t>(index_->codes.size()) + n * static_cast<int64_t>(sizeof(int64_t) + sizeof(float)) +
         static_cast<int64_t>(positions_.size()) * index_internal::kHashEntryBytes;
}

Status FlatIndex::serialize(std::string* out) const {
  out->clear();
  ByteWriter w(out);
  w.put<uint8_t>(static_cast<uint8_t>(index_internal::IndexKind::kFlat));
  return write_payload(&w);
}

}  // namespace qsearch
