// Exact search: a faiss::IndexFlat (IP or L2) plus our own position <-> label maps.
//
// Why not IndexIDMap2: in FAISS 1.7.3 IndexIDMap::search rejects SearchParameters, so it cannot
// take an IDSelector (the label filter). IndexFlat accepts one over positions, so we keep the
// label of each position and translate. Removal swaps the last row into the hole: O(d) per
// label instead of IndexFlat::remove_ids' O(n) compaction. Search scores with BLAS rather than
// FAISS's scan (scalar in Debian's baseline build; see distances.h). Thread-safety: see
// vector_index.h.
#pragma once

#include <faiss/IndexFlat.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "index/index_util.h"
#include "index/vector_index.h"

namespace qsearch {

class FlatIndex : public VectorIndex {
 public:
  FlatIndex(int dimension, IndexMetric metric);

  Status add(int64_t n, const int64_t* labels, const float* vectors) override;
  Status remove(int64_t n, const int64_t* labels) override;
  Status search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                const LabelFilter* filter, int64_t* out_labels,
                float* out_distances) const override;
  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t stored() const override { return size(); }
  bool contains(int64_t label) const override { return positions_.count(label) > 0; }
  std::string type() const override { return "flat"; }
  int dimension() const override { return dimension_; }
  Status serialize(std::string* out) const override;
  Status export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const override;
  int64_t memory_bytes() const override;

  // Payload without the common header (used inside the IVF index's untrained form).
  Status write_payload(index_internal::ByteWriter* w) const;
  static StatusOr<std::unique_ptr<FlatIndex>> read_payload(int dimension, IndexMetric metric,
                                                           index_internal::ByteReader* r);

  // Row-major vectors, row i labelled labels()[i] (for IVF training and hand-over).
  const float* vectors() const { return index_->get_xb(); }
  const std::vector<int64_t>& labels() const { return labels_; }

 private:
  int dimension_;
  IndexMetric metric_;
  std::unique_ptr<faiss::IndexFlat> index_;
  std::vector<int64_t> labels_;                   // position -> label
  std::unordered_map<int64_t, int64_t> positions_;  // label -> position
  std::vector<float> norms_;                        // position -> squared L2 norm (for L2)
};

}  // namespace qsearch
