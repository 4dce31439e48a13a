// Index type "gpu": exact search with the collection's vectors resident in GPU memory (bf16),
// concurrent searches batched into one matrix product (gpu_device.h, kernels/topk.cuh).
//
// Rows are appended on add (a label already present is overwritten in place), tombstoned on
// remove (a bit in the live bitmap) and compacted when tombstones pass a quarter of the rows
// (live rows from the end move into the holes). Scores are the fp32-accumulated products of the
// bf16-rounded vectors: within about 1e-3 of the fp32 scores of unit vectors at 1024 dims.
//
// Batching: search() of one query queues it; a worker thread takes up to max_batch queued
// queries at once and runs them as one product. While searches arrive concurrently (the last
// batch held more than one) the worker waits up to batch_wait_us after the first for company;
// a lone search starts at once. k above 4096 (kTopkMaxK) is rare (a chunked collection widening
// its fetch): such a search brings every score to the host and selects there.
//
// Fallback: without a usable GPU (none, built without CUDA, device ordinal absent) or when the
// rows stop fitting in device memory, the index becomes a CPU FlatIndex (type() "flat") and
// fallback_reason() says why; the log says so too ("stop fitting": growing them would leave
// less than 1 GiB of device memory free, the headroom of gpu_device.h). After an out-of-memory
// hand-over the CPU copy holds the bf16 values of the rows that were on the device (scores
// within the bf16 tolerance above) and fp32 for the rest; a restart tries the GPU again.
//
// Persistence: serialize() writes only a marker: the device copy is derived and rebuilt from
// the stored embeddings at every start (collection_recovery.cc).
//
// Concurrency: the VectorIndex contract (vector_index.h). Searches run concurrently (they meet
// in the batch queue); add/remove run alone. The worker only touches the device for queued
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

  int64_t device_bytes() const;  // device memory held (0 in fallback)

 private:
  struct Request {
    const float* query = nullptr;
    int k = 0;
    const uint32_t* filter = nullptr;  // bitmap over rows, or null
    int64_t* labels = nullptr;
    float* distances = nullptr;
    std::chrono::steady_clock::time_point arrived;
    Status status;
    bool done = false;
  };

  void start_fallback(const std::string& reason);
  void worker_loop();
  void run_batch(const std::vector<Request*>& batch) const;
  Status search_large_k(int64_t n, const float* queries, int k, const uint32_t* filter,
                        int64_t* out_labels, float* out_distances) const;
  void set_live(int64_t row, bool live);
  Status upload_live(int64_t first_row, int64_t last_row);
  Status compact();

  VectorIndexConfig config_;
  std::unique_ptr<FlatIndex> fallback_;
  std::string fallback_reason_;
  std::unique_ptr<index_internal::GpuDevice> device_;

  std::vector<int64_t> labels_;                     // row -> label, -1 for a tombstone
  std::unordered_map<int64_t, int64_t> positions_;  // label -> row
  std::vector<uint32_t> live_;                      // host mirror of the device bitmap
  int64_t dead_ = 0;

  mutable std::mutex device_mu_;  // one device user at a time (batches, export_live)
  mutable std::mutex queue_mu_;
  mutable std::condition_variable queue_cv_;  // worker: requests arrived / stop
  mutable std::condition_variable done_cv_;   // searchers: a batch finished
  mutable std::deque<Request*> queue_;
  mutable int last_batch_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace qsearch
