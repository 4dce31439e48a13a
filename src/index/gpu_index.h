// Index type "gpu": exact search with the collection's vectors resident in GPU memory (bf16, or
// int8 with exact rescoring), concurrent searches batched into one matrix product
// (gpu_device.h, kernels/topk.cuh), the rows sharded over one or more GPUs.
//
// Shards: one GpuDevice per entry of gpu_devices (an ordinal may repeat, e.g. "0,0": two shards
// on one GPU, which is how a one-GPU machine tests the merge). Each shard has its own dense row
// space: a label lives on one shard at one row. Fresh labels go to the shards holding the
// fewest rows (split_fresh_rows below: water-filling, so shards stay balanced after removals)
// as one contiguous run per shard; a replaced label is rewritten where it lives; removal
// tombstones a bit in its shard's live bitmap and compaction runs per shard (when its
// tombstones pass a quarter of its rows: live rows from the end move into the holes), so rows
// never move between devices. A search runs on every shard concurrently (one thread each, each
// shard with its own stream, cuBLAS handle and buffers) and the per-shard best lists are
// merged on the host; a filter becomes one bitmap per shard.
//
// Scores (bf16): the fp32-accumulated products of the bf16-rounded vectors: within about 1e-3
// of the fp32 scores of unit vectors at 1024 dims. int8 (gpu_precision "int8"): rows and
// queries are int8 with one symmetric scale each (absmax / 127); the device ranks by the
// scaled int32 products, the best max(k, gpu_rescore) rows of all shards are rescored exactly
// in fp32 (vector_index.h says where the fp32 vectors come from) and the best k of those are
// the answer: distances then equal CPU flat's up to fp32 summation order. A row outside the
// best max(k, gpu_rescore) by its int8 score is never found: rescore trades time for recall.
//
// Batching: search() of one query queues it; a worker thread takes up to max_batch queued
// queries at once and runs them as one product per shard. While searches arrive concurrently
// (the last batch held more than one) the worker waits up to batch_wait_us after the first for
// company; a lone search starts at once. k above 4096 (kTopkMaxK; or max(k, rescore) above it)
// is rare (a chunked collection widening its fetch): such a search brings every score to the
// host and selects there.
//
// Fallback: without a usable GPU (none, built without CUDA, a listed ordinal absent) or when
// the rows stop fitting in device memory on any shard, the whole index becomes a CPU FlatIndex
// (type() "flat") and fallback_reason() says why; the log says so too ("stop fitting": growing
// them would leave less than 1 GiB of device memory free, the headroom of gpu_device.h). After
// an out-of-memory hand-over the CPU copy holds the device's values of the rows that were
// there (bf16: within the tolerance above; int8: the exact fp32 vectors when the index has
// them) and fp32 for the rest; a restart tries the GPU again.
//
// Memory: memory_bytes() counts the host side (label maps, live bitmaps, the fp32 rescoring
// copy when int8 keeps one); device_bytes() the device side (device_shards() per shard).
//
// Persistence: serialize() writes only a marker: the device copy is derived and rebuilt from
// the stored embeddings at every start (collection_recovery.cc).
//
// Concurrency: the VectorIndex contract (vector_index.h). Searches run concurrently (they meet
// in the batch queue); add/remove run alone. The worker only touches the devices for queued
// searches, whose callers hold the owner's shared lock, so a mutation never overlaps a batch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "index/flat_index.h"
#include "index/gpu_device.h"
#include "index/vector_index.h"

namespace qsearch {

namespace index_internal {

// How many of n fresh rows each shard takes, given the rows each holds now: the least filled
// shards first (water-filling), ties to the lower shard index; the result sums to n.
std::vector<int64_t> split_fresh_rows(const std::vector<int64_t>& stored, int64_t n);

// The candidates of several shards' best lists, merged: the best `take` (key, shard, row) by
// key (higher is better; ties: lower shard, then lower row), rows < 0 skipped. lists[s] holds
// per_list entries: keys[s][i], rows[s][i].
struct Candidate {
  float key;
  int shard;
  int64_t row;
};
std::vector<Candidate> merge_shard_lists(const std::vector<const float*>& keys,
                                         const std::vector<const int32_t*>& rows, int per_list,
                                         int take);

}  // namespace index_internal

// fp32 rows on the host (int8's rescoring copy) in blocks of kBlockRows rows: growth never
// copies what is there (a 10M x 1024 copy is 40 GB; doubling a vector would need three times
// that for a moment).
class HostRows {
 public:
  static constexpr int64_t kBlockRows = 16384;
  explicit HostRows(int dimension = 0) : d_(dimension) {}
  int64_t rows() const { return rows_; }
  float* row(int64_t r) { return blocks_[r / kBlockRows].get() + (r % kBlockRows) * d_; }
  const float* row(int64_t r) const {
    return blocks_[r / kBlockRows].get() + (r % kBlockRows) * d_;
  }
  void append(int64_t n, const float* x);
  void truncate(int64_t rows);  // drops rows past `rows` (and the blocks they leave empty)
  int64_t bytes() const {
    return static_cast<int64_t>(blocks_.size()) * kBlockRows * d_ *
           static_cast<int64_t>(sizeof(float));
  }

 private:
  int d_ = 0;
  int64_t rows_ = 0;
  std::vector<std::unique_ptr<float[]>> blocks_;
};

class GpuIndex : public VectorIndex {
 public:
  // Never fails for a valid config: without a device it starts in fallback.
  explicit GpuIndex(const VectorIndexConfig& config);
  ~GpuIndex() override;

  Status add(int64_t n, const int64_t* labels, const float* vectors) override;
  Status remove(int64_t n, const int64_t* labels) override;
  Status search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                const LabelFilter* filter, int64_t* out_labels,
                float* out_distances) const override;
  int64_t size() const override;
  int64_t stored() const override;
  bool contains(int64_t label) const override;
  std::string type() const override { return fallback_ ? "flat" : "gpu"; }
  int dimension() const override { return config_.dimension; }
  std::string fallback_reason() const override { return fallback_reason_; }
  Status serialize(std::string* out) const override;
  Status export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const override;
  int64_t memory_bytes() const override;
  int64_t device_bytes() const override;  // device memory held (0 in fallback)
  std::vector<DeviceShardInfo> device_shards() const override;

  int shards() const { return static_cast<int>(shards_.size()); }
  bool int8() const { return int8_; }

 private:
  struct Shard {
    int device = 0;  // CUDA ordinal
    std::unique_ptr<index_internal::GpuDevice> dev;
    std::vector<int64_t> labels;  // row -> label, -1 for a tombstone
    std::vector<uint32_t> live;   // host mirror of the device bitmap
    HostRows host_rows;           // int8 without a vector source: the fp32 rows
    int64_t dead = 0;
    mutable std::mutex mu;  // one device user at a time (batches, export_live)
  };
  struct Request {
    const float* query = nullptr;
    int k = 0;
    const std::vector<std::vector<uint32_t>>* filter = nullptr;  // a bitmap per shard, or null
    int64_t* labels = nullptr;
    float* distances = nullptr;
    std::chrono::steady_clock::time_point arrived;
    Status status;
    bool done = false;
  };

  // label -> (shard, row), packed into one int64 (a shard's rows stay below 2^31).
  static int64_t slot(int shard, int64_t row) { return (int64_t{shard} << 32) | row; }
  static int shard_of(int64_t s) { return static_cast<int>(s >> 32); }
  static int64_t row_of(int64_t s) { return s & 0xffffffffLL; }

  void start_fallback(const std::string& reason);
  void stop_worker();
  void worker_loop();
  void run_batch(const std::vector<Request*>& batch) const;
  Status search_large_k(int64_t n, const float* queries, int k,
                        const std::vector<std::vector<uint32_t>>* filter, int64_t* out_labels,
                        float* out_distances) const;
  // Candidates (best first by device key) -> the query's k results: labels and distances
  // (int8: rescored exactly, re-sorted).
  Status finish(const float* query, const std::vector<index_internal::Candidate>& cands, int k,
                int64_t* out_labels, float* out_distances) const;
  // fp32 vectors of n (shard, row) candidates into out (n x dimension).
  Status exact_rows(const std::vector<index_internal::Candidate>& cands, float* out) const;
  int candidates(int k) const;  // rows a query takes from the device: k, or max(k, rescore)
  Status add_to_shard(int s, int64_t n, const int64_t* labels, const float* rows);
  Status upload_live(Shard& sh, int64_t first_row, int64_t last_row);
  Status compact(Shard& sh);

  VectorIndexConfig config_;
  bool int8_ = false;
  std::unique_ptr<FlatIndex> fallback_;
  std::string fallback_reason_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unordered_map<int64_t, int64_t> positions_;  // label -> slot(shard, row)

  mutable std::mutex queue_mu_;
  mutable std::condition_variable queue_cv_;  // worker: requests arrived / stop
  mutable std::condition_variable done_cv_;   // searchers: a batch finished
  mutable std::deque<Request*> queue_;
  mutable int last_batch_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace qsearch
