// Approximate search with HNSW: a faiss::IndexHNSWFlat plus position <-> label maps.
//
// HNSW graphs cannot delete, so remove() and replacing add() mark the old position dead (a
// tombstone); searches skip tombstones through an IDSelector over positions. When tombstones
// exceed VectorIndexConfig::hnsw_rebuild_fraction of the stored vectors, wants_optimize() says
// so and optimize() rebuilds the graph from the live vectors (taken from the index's own flat
// storage, never re-embedded). efSearch is a per-call SearchParametersHNSW, at least k.
//
// Pending buffer: add() does not touch the graph (an HNSW insert costs milliseconds per vector
// at 1024 dims). It appends to an exact FlatIndex of pending vectors, which every search scans
// too (results merged by distance), so a write is searchable at once, filters and removals
// included. absorb_pending() moves a batch of them into the graph (one parallel FAISS add);
// the owner calls it in short slices so that searches never wait long (CollectionStore's
// inserter thread). A label lives in the graph or in the pending buffer, never in both.
// serialize() writes the pending vectors after the graph, so a saved index loses nothing.
//
// Quantizers (VectorIndexConfig::quantizer): "sq8" and "fp16" store the graph's vectors as a
// faiss::IndexScalarQuantizer (1 or 2 bytes per component) instead of fp32; the graph is
// walked with approximate distances and the collection rescores the candidates exactly.
// sq8 learns each component's range from data: until kSqTrainMin vectors were added the index
// is exact (everything stays in the pending buffer, pending() reports 0 and type() "flat");
// the first absorb_pending() after that trains on the whole buffer (a min/max pass, cheap) and
// the graph fills as usual. A rebuild keeps the trained ranges. Rows the exact paths need
// (selective filters, export_live) are decoded from the codes.
// Thread-safety: see vector_index.h.
#pragma once

#include <faiss/IndexHNSW.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "index/flat_index.h"
#include "index/index_util.h"
#include "index/vector_index.h"

namespace qsearch {

class HnswIndex : public VectorIndex {
 public:
  explicit HnswIndex(const VectorIndexConfig& config);

  Status add(int64_t n, const int64_t* labels, const float* vectors) override;
  Status remove(int64_t n, const int64_t* labels) override;
  Status search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                const LabelFilter* filter, int64_t* out_labels,
                float* out_distances) const override;
  int64_t size() const override {
    return static_cast<int64_t>(positions_.size()) + pending_->size();
  }
  int64_t stored() const override {
    return static_cast<int64_t>(labels_.size()) + pending_->size();
  }
  bool contains(int64_t label) const override {
    return positions_.count(label) > 0 || pending_->contains(label);
  }
  std::string type() const override { return trained() ? "hnsw" : "flat"; }
  int dimension() const override { return config_.dimension; }
  Status serialize(std::string* out) const override;
  Status export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const override;
  bool wants_optimize() const override;
  Status optimize() override;
  int64_t pending() const override;
  bool lossy() const override { return config_.quantizer == "sq8" && trained(); }
  Status absorb_pending(int64_t max_vectors) override;
  int64_t memory_bytes() const override;

  static StatusOr<std::unique_ptr<HnswIndex>> read_payload(const VectorIndexConfig& config,
                                                           index_internal::ByteReader* r);
  int64_t tombstones() const {
    return static_cast<int64_t>(labels_.size() - positions_.size());
  }

 private:
  std::unique_ptr<faiss::IndexHNSW> new_graph() const;
  bool trained() const { return index_->is_trained; }
  // Trains an sq8 graph on the pending buffer (no-op when trained or too few vectors).
  Status train_if_due();
  const float* stored_vectors() const;  // the fp32 rows of an unquantized graph, else null
  void get_row(int64_t pos, float* out) const;  // one graph row, decoded when quantized
  Status search_graph(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                      const LabelFilter* filter, int64_t* out_labels, float* out_distances) const;

  VectorIndexConfig config_;
  std::unique_ptr<faiss::IndexHNSW> index_;
  std::vector<int64_t> labels_;                     // position -> label (also for dead ones)
  std::vector<uint8_t> dead_;                       // position -> tombstone flag
  std::unordered_map<int64_t, int64_t> positions_;  // live label -> position
  std::unique_ptr<FlatIndex> pending_;              // added, not yet in the graph
};

}  // namespace qsearch
