// Inverted-file search: exact (a FlatIndex) until enough vectors exist, then (optimize(), which
// wants_optimize() asks for) a faiss::IndexIVFFlat trained once on the vectors it holds (the
// stored embeddings) and filled with them. Labels are FAISS ids directly; a hashtable direct map makes remove_ids O(1) per id.
// nprobe is a per-call SearchParametersIVF. Thread-safety: see vector_index.h.
//
// Training threshold: ivf_train_min if set, else 39*ivf_nlist if set, else 24336 (the n at which
// n = 39 * 4*sqrt(n), FAISS's minimum of 39 training points per list). nlist when not set:
// 4*sqrt(n), at most n/39, at least 1. Retraining: once the index holds ivf_retrain_factor (4)
// times the vectors it was trained on, wants_optimize() asks for a new training on all of them
// (CollectionStore builds it beside the live index and swaps it in).
//
// Quantizer "pq" (VectorIndexConfig::quantizer): the trained index is a faiss::IndexIVFPQ
// (residuals to the list centroid coded as pq_m sub-vectors of pq_nbits bits: pq_m bytes per
// vector at 8 bits), trained together with the centroids; it needs at least 39 * 2^pq_nbits
// vectors (9984 at 8 bits) besides the threshold above. Its distances are approximate (the
// collection rescores candidates exactly) and export_live() returns decoded vectors, so a
// retraining takes its vectors from the store (lossy()).
#pragma once

#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>

#include <memory>
#include <unordered_set>

#include "index/flat_index.h"
#include "index/index_util.h"
#include "index/vector_index.h"

namespace qsearch {

class IvfIndex : public VectorIndex {
 public:
  explicit IvfIndex(const VectorIndexConfig& config);

  Status add(int64_t n, const int64_t* labels, const float* vectors) override;
  Status remove(int64_t n, const int64_t* labels) override;
  Status search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                const LabelFilter* filter, int64_t* out_labels,
                float* out_distances) const override;
  int64_t size() const override;
  int64_t stored() const override;
  bool contains(int64_t label) const override;
  std::string type() const override { return trained() ? "ivf" : "flat"; }
  int dimension() const override { return config_.dimension; }
  Status serialize(std::string* out) const override;
  Status export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const override;
  bool wants_optimize() const override;
  // Trains when due; retrains (from the vectors it holds) when it grew past the factor.
  Status optimize() override;
  int64_t trained_size() const override { return trained_size_; }
  int64_t memory_bytes() const override;
  bool lossy() const override { return config_.quantizer == "pq" && trained(); }

  static StatusOr<std::unique_ptr<IvfIndex>> read_payload(const VectorIndexConfig& config,
                                                          index_internal::IndexKind kind,
                                                          index_internal::ByteReader* r);
  bool trained() const { return ivf_ != nullptr; }
  int64_t nlist() const { return ivf_ ? static_cast<int64_t>(ivf_->nlist) : 0; }
  int64_t train_threshold() const;

 private:
  Status train_from_flat();
  Status finish_load();

  VectorIndexConfig config_;
  std::unique_ptr<FlatIndex> flat_;           // before training
  std::unique_ptr<faiss::IndexIVF> ivf_;      // after training (owns its quantizer): flat or PQ
  std::unordered_set<int64_t> live_;          // labels in ivf_
  int64_t trained_size_ = 0;                  // vectors the centroids were trained on
};

}  // namespace qsearch
