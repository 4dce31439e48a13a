#include "index/ivf_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/invlists/DirectMap.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>

#include <algorithm>
#include <cmath>
#include <typeinfo>
#include <unordered_map>

#include "index/distances.h"
#include "index/exact_scan.h"

namespace qsearch {

using index_internal::ByteReader;
using index_internal::ByteWriter;
using index_internal::FunctionSelector;
using index_internal::guard_faiss;
using index_internal::IndexKind;

namespace {

// Scans inverted lists with the SIMD kernels of distances.h (FAISS's own IVFFlat scanner uses
// the scalar reference loops in Debian's baseline build). Honours the IDSelector on ids.
struct FastIvfScanner : faiss::InvertedListScanner {
  FastIvfScanner(size_t dim, bool inner_product, bool pairs, const faiss::IDSelector* selector)
      : faiss::InvertedListScanner(pairs, selector), d(dim), ip(inner_product) {
    keep_max = ip;
    code_size = d * sizeof(float);
  }
  void set_query(const float* x) override { q = x; }
  void set_list(idx_t list, float) override { list_no = list; }
  float distance_to_code(const uint8_t* code) const override {
    const float* v = reinterpret_cast<const float*>(code);
    return ip ? index_internal::dot_product(q, v, d) : index_internal::l2_squared(q, v, d);
  }
  size_t scan_codes(size_t n, const uint8_t* codes, const idx_t* ids, float* simi, idx_t* idxi,
                    size_t k) const override {
    size_t updates = 0;
    for (size_t j = 0; j < n; ++j, codes += code_size) {
      if (sel && ids && !sel->is_member(ids[j])) continue;
      const float dis = distance_to_code(codes);
      if (ip ? dis > simi[0] : dis < simi[0]) {
        const int64_t id = store_pairs ? static_cast<int64_t>(faiss::lo_build(list_no, j)) : ids[j];
        if (ip) {
          faiss::minheap_replace_top(k, simi, idxi, dis, id);
        } else {
          faiss::maxheap_replace_top(k, simi, idxi, dis, id);
        }
        ++updates;
      }
    }
    return updates;
  }
  size_t d;
  bool ip;
  const float* q = nullptr;
};

struct FastIvfFlat : faiss::IndexIVFFlat {
  using faiss::IndexIVFFlat::IndexIVFFlat;
  faiss::InvertedListScanner* get_InvertedListScanner(bool store_pairs,
                                                      const faiss::IDSelector* sel) const override {
    return new FastIvfScanner(d, metric_type == faiss::METRIC_INNER_PRODUCT, store_pairs, sel);
  }
};

}  // namespace

IvfIndex::IvfIndex(const VectorIndexConfig& config)
    : config_(config), flat_(std::make_unique<FlatIndex>(config.dimension, config.metric)) {}

int64_t IvfIndex::train_threshold() const {
  int64_t n = 24336;
  if (config_.ivf_train_min > 0) {
    n = config_.ivf_train_min;
  } else if (config_.ivf_nlist > 0) {
    n = 39LL * config_.ivf_nlist;
  }
  // PQ codebooks: k-means of 2^nbits centroids per sub-quantizer, 39 points each.
  if (config_.quantizer == "pq") n = std::max<int64_t>(n, 39LL << config_.pq_nbits);
  return n;
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
  std::unique_ptr<faiss::IndexIVF> ivf;
  if (config_.quantizer == "pq") {
    auto pq = std::make_unique<faiss::IndexIVFPQ>(new faiss::IndexFlat(config_.dimension, metric),
                                                  config_.dimension, nlist, config_.pq_m,
                                                  config_.pq_nbits, metric);
    pq->pq.cp.seed = 1234;
    ivf = std::move(pq);
  } else {
    ivf = std::make_unique<FastIvfFlat>(new faiss::IndexFlat(config_.dimension, metric),
                                        config_.dimension, nlist, metric);
  }
  ivf->own_fields = true;
  ivf->cp.seed = 1234;  // reproducible training
  QS_RETURN_IF_ERROR(guard_faiss("IndexIVF::train", [&] {
    ivf->train(n, flat_->vectors());
    ivf->set_direct_map_type(faiss::DirectMap::Hashtable);
    ivf->add_with_ids(n, flat_->vectors(), flat_->labels().data());
  }));
  live_ = std::unordered_set<int64_t>(flat_->labels().begin(), flat_->labels().end());
  ivf_ = std::move(ivf);
  flat_.reset();
  trained_size_ = n;
  return Status::ok();
}

bool IvfIndex::wants_optimize() const {
  if (!trained()) return flat_->size() >= train_threshold();
  return config_.ivf_retrain_factor > 0 &&
         static_cast<double>(size()) >=
             config_.ivf_retrain_factor * static_cast<double>(std::max<int64_t>(trained_size_, 1));
}

Status IvfIndex::optimize() {
  if (!wants_optimize()) return Status::ok();
  if (trained()) {
    // Retrain: back to an exact index of the live vectors, then train on all of them.
    std::vector<int64_t> labels;
    std::vector<float> rows;
    QS_RETURN_IF_ERROR(export_live(&labels, &rows));
    auto flat = std::make_unique<FlatIndex>(config_.dimension, config_.metric);
    QS_RETURN_IF_ERROR(flat->add(static_cast<int64_t>(labels.size()), labels.data(), rows.data()));
    auto old = std::move(ivf_);
    flat_ = std::move(flat);
    if (Status s = train_from_flat(); !s.is_ok()) {
      ivf_ = std::move(old);  // keep serving the old one
      flat_.reset();
      return s;
    }
  } else {
    QS_RETURN_IF_ERROR(train_from_flat());
  }
  return Status::ok();
}

Status IvfIndex::add(int64_t n, const int64_t* labels, const float* vectors) {
  if (!trained()) return flat_->add(n, labels, vectors);
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
  int64_t nprobe = params.nprobe > 0 ? params.nprobe : config_.ivf_nprobe;
  if (const std::vector<int64_t>* set = filter ? filter->sorted_labels() : nullptr) {
    const int64_t m = static_cast<int64_t>(set->size());
    if (m <= index_internal::exact_scan_limit(size())) {
      // A selective filter: the probed lists may hold none of the matches; score the matches
      // themselves (the hashtable direct map finds each one's row).
      return index_internal::exact_search(
          n, queries, config_.dimension, config_.metric, k, *set,
          [this](int64_t label, float* scratch) -> const float* {
            if (!live_.count(label)) return nullptr;
            ivf_->reconstruct(label, scratch);
            return scratch;
          },
          out_labels, out_distances);
    }
    nprobe *= std::max<int64_t>(1, size() / std::max<int64_t>(1, m));  // the lists thin out
  }
  sp.nprobe = std::min<size_t>(static_cast<size_t>(nprobe), ivf_->nlist);
  FunctionSelector selector([filter](int64_t label) { return filter->accepts(label); });
  if (filter) sp.sel = &selector;
  index_internal::SingleQueryOmp omp(n);
  return guard_faiss("IndexIVFFlat::search", [&] {
    ivf_->search(n, queries, k, out_distances, out_labels, &sp);
  });
}

Status IvfIndex::export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const {
  if (!trained()) return flat_->export_live(labels, vectors);
  labels->clear();
  vectors->clear();
  labels->reserve(live_.size());
  vectors->reserve(live_.size() * config_.dimension);
  const bool flat_codes = config_.quantizer == "none";
  return guard_faiss("IndexIVF::reconstruct_from_offset", [&] {
    for (size_t list = 0; list < ivf_->nlist; ++list) {
      const size_t len = ivf_->invlists->list_size(list);
      faiss::InvertedLists::ScopedIds ids(ivf_->invlists, list);
      labels->insert(labels->end(), ids.get(), ids.get() + len);
      if (flat_codes) {
        faiss::InvertedLists::ScopedCodes codes(ivf_->invlists, list);
        const float* rows = reinterpret_cast<const float*>(codes.get());
        vectors->insert(vectors->end(), rows, rows + len * config_.dimension);
        continue;
      }
      for (size_t j = 0; j < len; ++j) {  // decoded (lossy) rows
        vectors->resize(vectors->size() + config_.dimension);
        ivf_->reconstruct_from_offset(static_cast<int64_t>(list), static_cast<int64_t>(j),
                                      vectors->data() + vectors->size() - config_.dimension);
      }
    }
  });
}

int64_t IvfIndex::memory_bytes() const {
  if (!trained()) return flat_->memory_bytes();
  int64_t bytes = 0;
  for (size_t list = 0; list < ivf_->nlist; ++list) {
    bytes += static_cast<int64_t>(ivf_->invlists->list_size(list) *
                                  (ivf_->invlists->code_size + sizeof(faiss::Index::idx_t)));
  }
  bytes += static_cast<int64_t>(ivf_->nlist) * config_.dimension * static_cast<int64_t>(sizeof(float));
  if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(ivf_.get())) {
    // Codebooks and, for L2 with residuals, FAISS's table of centroid x codebook terms.
    bytes += static_cast<int64_t>((pq->pq.centroids.size() + pq->precomputed_table.size()) * sizeof(float));
  }
  // The live label set and the hashtable direct map (label -> list, offset).
  return bytes + 2 * static_cast<int64_t>(live_.size()) * index_internal::kHashEntryBytes;
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
  w.put<uint64_t>(static_cast<uint64_t>(trained_size_));  // absent in files written before
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
  if (config.quantizer == "pq") {
    auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(raw.get());
    if (!pq || typeid(*pq) != typeid(faiss::IndexIVFPQ) || pq->d != config.dimension ||
        !pq->is_trained || !pq->quantizer ||
        pq->quantizer->ntotal != static_cast<faiss::Index::idx_t>(pq->nlist) ||
        static_cast<int>(pq->pq.M) != config.pq_m || static_cast<int>(pq->pq.nbits) != config.pq_nbits) {
      return corruption("IVF index payload holds another FAISS index than IVF-PQ m=" +
                        std::to_string(config.pq_m) + " nbits=" + std::to_string(config.pq_nbits));
    }
    raw.release();
    index->ivf_.reset(pq);
    index->flat_.reset();
    QS_RETURN_IF_ERROR(guard_faiss("IndexIVFPQ::precompute_table", [&] { pq->precompute_table(); }));
  } else {
  auto* loaded = dynamic_cast<faiss::IndexIVFFlat*>(raw.get());
  if (!loaded || loaded->d != config.dimension || !loaded->is_trained || !loaded->quantizer ||
      loaded->quantizer->ntotal != static_cast<faiss::Index::idx_t>(loaded->nlist)) {
    return corruption("IVF index payload holds another FAISS index");
  }
  // Move the loaded quantizer and lists into our scanner-carrying subclass.
  auto fast = std::make_unique<FastIvfFlat>(loaded->quantizer, loaded->d, loaded->nlist,
                                            loaded->metric_type);
  fast->own_fields = true;
  loaded->own_fields = false;
  fast->replace_invlists(loaded->invlists, true);
  loaded->own_invlists = false;
  fast->ntotal = loaded->ntotal;
  index->ivf_ = std::move(fast);
  index->flat_.reset();
  }
  QS_RETURN_IF_ERROR(index->finish_load());
  uint64_t trained_size = 0;
  if (r->done()) {
    index->trained_size_ = index->ivf_->ntotal;  // a file from before retraining: as if now
  } else if (r->get(&trained_size)) {
    index->trained_size_ = static_cast<int64_t>(trained_size);
  } else {
    return corruption("IVF index payload is truncated");
  }
  return index;
}

}  // namespace qsearch
