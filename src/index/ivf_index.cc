#include "index/ivf_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/invlists/InvertedLists.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace qsearch {

using index_internal::ByteReader;
using index_internal::ByteWriter;
using index_internal::FunctionSelector;
using index_internal::guard_faiss;
using index_internal::IndexKind;

IvfIndex::IvfIndex(const VectorIndexConfig& config)
    : config_(config), flat_(std::make_unique<FlatIndex>(config.dimension, config.metric)) {}

int64_t IvfIndex::train_threshold() const {
  if (config_.ivf_train_min > 0) return config_.ivf_train_min;
  if (config_.ivf_nlist > 0) return 39LL * config_.ivf_nlist;
  return 24336;
}

int64_t IvfIndex::size() const {
  return trained() ? static_cast<int64_t>(live_.size()) : flat_->size();
}
int64_t IvfIndex::stored() const { return trained() ? ivf_->ntotal : flat_->size(); }
bool IvfIndex::contains(int64_t label) const {
  return trained() ? live_.count(label) > 0 : flat_->contains(label);
}

Status IvfIndex::train_from_flat() {
  const int64_t n = flat_->size();
  if (n < 1) return Status::ok();
  int64_t nlist = config_.ivf_nlist;
  if (nlist <= 0) {
    nlist = static_cast<int64_t>(4 * std::sqrt(static_cast<double>(n)));
    nlist = std::max<int64_t>(1, std::min<int64_t>(nlist, n / 39));
  }
  nlist = std::min<int64_t>(nlist, n);
  const faiss::MetricType metric = index_internal::to_faiss(config_.metric);
  auto ivf = std::make_unique<faiss::IndexIVFFlat>(new faiss::IndexFlat(config_.dimension, metric),
                                                   config_.dimension, nlist, metric);
  ivf->own_fields = true;
  ivf->cp.seed = 1234;  // reproducible training
  QS_RETURN_IF_ERROR(guard_faiss("IndexIVFFlat::train", [&] {
    ivf->train(n, flat_->vectors());
    ivf->set_direct_map_type(faiss::DirectMap::Hashtable);
    ivf->add_with_ids(n, flat_->vectors(), flat_->labels().data());
  }));
  live_ = std::unordered_set<int64_t>(flat_->labels().begin(), flat_->labels().end());
  ivf_ = std::move(ivf);
  flat_.reset();
  return Status::ok();
}

Status IvfIndex::add(int64_t n, const int64_t* labels, const float* vectors) {
  if (!trained()) {
    QS_RETURN_IF_ERROR(flat_->add(n, labels, vectors));
    if (flat_->size() >= train_threshold()) return train_from_flat();
    return Status::ok();
  }
  const int d = config_.dimension;
  std::unordered_map<int64_t, int64_t> last;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0) return invalid_argument("index labels must be >= 0");
    last[labels[i]] = i;
  }
  std::vector<int64_t> replaced, ids;
  std::vector<float> rows;
  for (int64_t i = 0; i < n; ++i) {
    if (last[labels[i]] != i) continue;
    if (live_.count(labels[i])) replaced.push_back(labels[i]);
    ids.push_back(labels[i]);
    rows.insert(rows.end(), vectors + i * d, vectors + (i + 1) * d);
  }
  QS_RETURN_IF_ERROR(remove(static_cast<int64_t>(replaced.size()), replaced.data()));
  QS_RETURN_IF_ERROR(guard_faiss("IndexIVFFlat::add_with_ids", [&] {
    ivf_->add_with_ids(static_cast<faiss::Index::idx_t>(ids.size()), rows.data(), ids.data());
  }));
  live_.insert(ids.begin(), ids.end());
  return Status::ok();
}

Status IvfIndex::remove(int64_t n, const int64_t* labels) {
  if (!trained()) return flat_->remove(n, labels);
  std::vector<faiss::Index::idx_t> present;
  for (int64_t i = 0; i < n; ++i) {
    if (live_.erase(labels[i])) present.push_back(labels[i]);
  }
  if (present.empty()) return Status::ok();
  return guard_faiss("IndexIVFFlat::remove_ids", [&] {
    faiss::IDSelectorArray sel(present.size(), present.data());
    ivf_->remove_ids(sel);
  });
}

Status IvfIndex::search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                        const LabelFilter* filter, int64_t* out_labels,
                        float* out_distances) const {
  if (!trained()) return flat_->search(n, queries, k, params, filter, out_labels, out_distances);
  if (k < 1) return invalid_argument("k must be >= 1");
  faiss::SearchParametersIVF sp;
  const int nprobe = params.nprobe > 0 ? params.nprobe : config_.ivf_nprobe;
  sp.nprobe = std::min<size_t>(static_cast<size_t>(nprobe), ivf_->nlist);
  FunctionSelector selector([filter](int64_t label) { return (*filter)(label); });
  if (filter) sp.sel = &selector;
  return guard_faiss("IndexIVFFlat::search", [&] {
    ivf_->search(n, queries, k, out_distances, out_labels, &sp);
  });
}

Status IvfIndex::serialize(std::string* out) const {
  out->clear();
  ByteWriter w(out);
  if (!trained()) {
    w.put<uint8_t>(static_cast<uint8_t>(IndexKind::kIvfUntrained));
    return flat_->write_payload(&w);
  }
  w.put<uint8_t>(static_cast<uint8_t>(IndexKind::kIvfTrained));
  std::string bytes;
  QS_RETURN_IF_ERROR(index_internal::faiss_to_bytes(ivf_.get(), &bytes));
  w.put_bytes(bytes);
  return Status::ok();
}

Status IvfIndex::finish_load() {
  // Rebuild the hashtable direct map (if the file did not carry one) and the live label set.
  QS_RETURN_IF_ERROR(guard_faiss("IndexIVFFlat::set_direct_map_type", [&] {
    if (ivf_->direct_map.type != faiss::DirectMap::Hashtable) {
      ivf_->set_direct_map_type(faiss::DirectMap::Hashtable);
    }
  }));
  live_.clear();
  for (size_t list = 0; list < ivf_->nlist; ++list) {
    const size_t len = ivf_->invlists->list_size(list);
    faiss::InvertedLists::ScopedIds ids(ivf_->invlists, list);
    for (size_t j = 0; j < len; ++j) {
      if (!live_.insert(ids[j]).second) return corruption("IVF index holds a label twice");
    }
  }
  if (static_cast<int64_t>(live_.size()) != ivf_->ntotal) {
    return corruption("IVF index: list sizes do not add up to ntotal");
  }
  return Status::ok();
}

StatusOr<std::unique_ptr<IvfIndex>> IvfIndex::read_payload(const VectorIndexConfig& config,
                                                           IndexKind kind, ByteReader* r) {
  auto index = std::make_unique<IvfIndex>(config);
  if (kind == IndexKind::kIvfUntrained) {
    QS_ASSIGN_OR_RETURN(index->flat_, FlatIndex::read_payload(config.dimension, config.metric, r));
    return index;
  }
  std::string_view bytes;
  if (!r->get_bytes(&bytes)) return corruption("IVF index payload is truncated");
  QS_ASSIGN_OR_RETURN(std::unique_ptr<faiss::Index> raw, index_internal::faiss_from_bytes(bytes));
  auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(raw.get());
  if (!ivf || ivf->d != config.dimension || !ivf->is_trained) {
    return corruption("IVF index payload holds another FAISS index");
  }
  raw.release();
  index->ivf_.reset(ivf);
  index->flat_.reset();
  QS_RETURN_IF_ERROR(index->finish_load());
  return index;
}

}  // namespace qsearch
