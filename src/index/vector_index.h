// Vector indexes over FAISS: one per collection, keyed by int64 labels (>= 0) that the store
// hands out and never reuses.
//
// Data contract (as FAISS Index.h): n vectors of d floats, row-major, component j of vector i at
// x[i*d + j]; search results are n*k labels and distances, row i for query i, best first, padded
// with label -1 where fewer than k vectors qualify. Cosine is inner product on L2-normalised
// vectors: the caller normalises (the index sees only kInnerProduct or kL2). Distances are what
// FAISS returns: inner product (higher is better) or squared L2 (lower is better).
//
// Concurrency contract: search(), size() and serialize() are const and may run concurrently
// with each other. add(), remove() and anything non-const must not run concurrently with any
// other call (FAISS CPU indexes allow concurrent searches but not a search during an add; HNSW
// and IVF rebuild and train inside add/remove). The owner guards each index with a
// std::shared_mutex: searches and saves take it shared, mutations take it exclusively
// (CollectionStore does this per collection). Per-call knobs (efSearch, nprobe) travel in
// IndexSearchParams, never in shared index fields, so concurrent searches cannot race on them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "index/label_filter.h"

namespace qsearch {

enum class IndexMetric { kInnerProduct, kL2 };

struct VectorIndexConfig {
  std::string type = "flat";       // "flat" (exact), "hnsw", "ivf", "gpu" (exact, on the GPU)
  int dimension = 0;               // >= 1
  IndexMetric metric = IndexMetric::kInnerProduct;
  int hnsw_m = 32;                 // HNSW graph degree
  int hnsw_ef_construction = 200;  // HNSW build-time beam width
  int hnsw_ef_search = 128;        // default search beam width (raised to k when k is larger)
  double hnsw_rebuild_fraction = 0.25;  // rebuild when tombstones exceed this share of vectors
  int ivf_nlist = 0;               // 0: chosen at training time, about 4*sqrt(n) (>= 1)
  int ivf_nprobe = 16;             // default lists probed per query
  int ivf_train_min = 0;           // vectors needed before training (0: 39*nlist); flat until then
  // "gpu" (gpu_index.h): the CUDA devices the rows are sharded over, one shard per entry (an
  // ordinal may repeat: several shards on one GPU; empty: one shard on every visible device),
  // rows a device chunk (0: about 1 GiB of rows), most queries one batched product takes, and
  // how long a search waits for company while searches arrive concurrently.
  std::vector<int> gpu_devices;
  int64_t gpu_chunk_rows = 0;
  int gpu_max_batch = 64;
  int gpu_batch_wait_us = 200;
  // "bf16" (default) or "int8": rows held on the device as int8 with a per-row scale; a search
  // then takes the best max(k, gpu_rescore) rows by their int8 scores and rescores them exactly
  // from fp32 vectors, which come from gpu_vector_source when set (labels -> n x dimension
  // floats; called from the index's search worker, possibly from several threads at once,
  // while searches hold the owner's shared lock) and otherwise from a host fp32 copy the index keeps (4 * dimension bytes a row,
  // counted in memory_bytes()).
  std::string gpu_precision = "bf16";
  int gpu_rescore = 64;
  std::function<Status(int64_t n, const int64_t* labels, float* out)> gpu_vector_source;
  // A trained IVF index retrains (optimize(), in the background) once it holds this many times
  // the vectors it was trained on: its centroids (and an nlist chosen from n) then fit the
  // collection again. 0: never.
  double ivf_retrain_factor = 4.0;
  // Compressed storage (issue 14). "none": fp32. hnsw: "sq8" (faiss::IndexHNSWSQ, QT_8bit:
  // per-component min/max trained on the first kSqTrainMin vectors, which stay in the exact
  // pending buffer until then) or "fp16" (QT_fp16, no training). ivf: "pq" (faiss::IndexIVFPQ,
  // pq_m codes of pq_nbits bits, trained with the coarse centroids). Distances of a quantized
  // index are approximate: the collection rescores its candidates with the stored vectors.
  std::string quantizer = "none";
  int pq_m = 8;      // must divide dimension
  int pq_nbits = 8;  // 4..12
};

// Vectors an sq8 HNSW index holds (exactly, in its pending buffer) before it trains its
// quantizer on them (a min/max pass, in the first absorb_pending() after that, i.e. on the
// inserter thread) and starts filling the graph.
inline constexpr int64_t kSqTrainMin = 10000;

// Per-call search knobs; 0 means the index's configured default.
struct IndexSearchParams {
  int ef_search = 0;  // HNSW
  int nprobe = 0;     // IVF
};

// Optional per-search selector (index/label_filter.h): only labels it accepts are results.
// Evaluated inside the FAISS scan (an IDSelector), possibly from several threads at once.

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;

  // Adds n vectors under the given labels. A label already present is replaced.
  virtual Status add(int64_t n, const int64_t* labels, const float* vectors) = 0;
  // Removes the labels; labels not present are ignored (so change-log replays are idempotent).
  virtual Status remove(int64_t n, const int64_t* labels) = 0;
  // k >= 1; out_labels and out_distances hold n*k entries.
  virtual Status search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                        const LabelFilter* filter, int64_t* out_labels,
                        float* out_distances) const = 0;

  virtual int64_t size() const = 0;        // live vectors
  virtual int64_t stored() const = 0;      // vectors held, incl. tombstones not yet compacted
  virtual bool contains(int64_t label) const = 0;
  virtual std::string type() const = 0;    // effective type now: "flat", "hnsw", "ivf", "gpu"
  // Why the index runs as another type than configured ("gpu" without a usable GPU runs as
  // "flat"); empty when it does not.
  virtual std::string fallback_reason() const { return {}; }
  virtual int dimension() const = 0;

  // Serialised form (FAISS index bytes plus our label maps); see make_vector_index_from().
  virtual Status serialize(std::string* out) const = 0;
  // Live labels and their vectors (row-major), e.g. to build a replacement index.
  virtual Status export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const = 0;

  // True when optimize() is due: HNSW tombstones above hnsw_rebuild_fraction of the stored
  // vectors, an untrained IVF holding enough vectors to train, or a trained one holding
  // ivf_retrain_factor times the vectors it was trained on. add() and remove() never do
  // this work themselves: it takes seconds to minutes at 1024 dims, so the owner runs it off the
  // hot path (CollectionStore builds a replacement in the background and swaps it in).
  virtual bool wants_optimize() const { return false; }
  // HNSW: rebuilds the graph from the live vectors (no tombstones) and inserts every pending
  // vector; IVF: trains (when due) on the vectors it holds and moves them into the inverted
  // lists; flat: nothing.
  virtual Status optimize() { return Status::ok(); }

  // Vectors accepted by add() but not yet in the approximate structure (HNSW: the pending
  // buffer, searched exactly until then, so a write is visible to the next search).
  virtual int64_t pending() const { return 0; }
  // IVF: the number of vectors its centroids were trained on (0 while untrained, other types).
  virtual int64_t trained_size() const { return 0; }
  // True when the vectors export_live() returns are decoded approximations (a quantizer), so
  // a replacement index should be built from the stored embeddings instead.
  virtual bool lossy() const { return false; }
  // Bytes the index holds in memory: FAISS codes (vectors), graph links or inverted lists,
  // centroids, and our label maps (hash tables counted at index_internal::kHashEntryBytes per
  // entry, an estimate). 0 where unknown.
  virtual int64_t memory_bytes() const { return 0; }
  // Device memory the index holds (the gpu index: every shard's rows, bitmaps and buffers), not
  // part of memory_bytes(); 0 for CPU indexes.
  virtual int64_t device_bytes() const { return 0; }
  // The gpu index's shards: device ordinal, device name, rows stored (incl. tombstones), live
  // rows and device bytes, one entry per shard; empty for CPU indexes and in fallback.
  struct DeviceShardInfo {
    int device = 0;
    std::string name;
    int64_t rows = 0;
    int64_t live = 0;
    int64_t bytes = 0;
  };
  virtual std::vector<DeviceShardInfo> device_shards() const { return {}; }
  // Moves up to max_vectors pending vectors into the approximate structure (HNSW: one FAISS
  // batch insert, parallel over OpenMP threads). A mutation: the owner holds it exclusively, and
  // bounds the time it holds the lock through max_vectors (CollectionStore's inserter thread).
  virtual Status absorb_pending(int64_t /*max_vectors*/) { return Status::ok(); }
};

// A new empty index. kInvalidArgument on an unknown type or bad parameters.
StatusOr<std::unique_ptr<VectorIndex>> make_vector_index(const VectorIndexConfig& config);
// Restores an index written by serialize() (config must match the one it was made with; the
// type may have advanced, e.g. IVF trained). kCorruption when the bytes do not parse.
StatusOr<std::unique_ptr<VectorIndex>> make_vector_index_from(const VectorIndexConfig& config,
                                                              std::string_view bytes);

}  // namespace qsearch
