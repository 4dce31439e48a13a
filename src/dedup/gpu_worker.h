// One GPU worker of the similarity join (see gpu_join.cc). Internal; CUDA builds only.
//
// A worker takes whole row blocks a from a shared counter and runs the block pairs (a, b),
// b = a .. nb-1, through two slots, so the GPU always has the next block pair queued while
// the host collects the previous one:
//   fused:  count reset + fused kernel + count copy on the compute stream;
//   cuBLAS: GEMM into the slot's bf16 tile on the compute stream, then the filter and the
//           count copy on a second stream, so block pair k's filter (memory-bound) overlaps
//           block pair k+1's GEMM (tensor cores).
// Collecting a slot waits for its event; a result buffer that overflowed is grown and only
// the filter (cuBLAS: the tile is still intact) or the fused kernel (its inputs are still
// there) runs again. Hits are copied back on a third stream.
//
// Streaming (vectors larger than the memory budget): the row block is uploaded on the compute
// stream; column blocks go through two buffers on a copy stream, the next one uploaded once
// the block pair that last read its buffer has been collected.
#pragma once

#ifdef QSEARCH_HAVE_CUDA

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <vector>

#include "dedup/join_internal.h"
#include "similarity.cuh"

namespace qsearch {

// What every worker agrees on.
struct GpuJoinPlan {
  const Bf16Matrix* m = nullptr;
  float threshold_lo = 0;
  GpuJoinKernel kernel = GpuJoinKernel::kFused;
  int64_t block = 0;  // rows per block (multiple of 128)
  int64_t nblocks = 0;
  bool resident = true;
  int64_t pair_capacity = 0;                    // first size of each slot's result buffer
  std::vector<std::vector<int64_t>> row_items;  // row block a -> column blocks b (b >= a)
  int64_t rows_in(int64_t blk) const { return std::min(block, m->n - blk * block); }
  int64_t pair_work(int64_t a, int64_t b) const {
    const int64_t ra = rows_in(a), rb = rows_in(b);
    return a == b ? ra * (ra - 1) / 2 : ra * rb;
  }
};

struct GpuJoinShared {
  const GpuJoinPlan* plan = nullptr;
  CandidateSink* sink = nullptr;
  int64_t max_pairs = 0;
  std::atomic<int64_t> next_row{0};
  std::atomic<int64_t> reruns{0};
  std::atomic<int64_t> block_pairs{0};
};

class GpuWorker {
 public:
  GpuWorker(int device, GpuJoinShared* shared) : device_(device), shared_(shared) {}
  ~GpuWorker() { release(); }
  GpuWorker(const GpuWorker&) = delete;
  GpuWorker& operator=(const GpuWorker&) = delete;

  Status run();
  double upload_seconds() const { return upload_seconds_; }

 private:
  struct Slot {
    int64_t a = -1, b = -1;
    const uint16_t* pa = nullptr;
    const uint16_t* pb = nullptr;
    uint16_t* d_tile = nullptr;  // cuBLAS only
    SimPair* d_pairs = nullptr;
    SimPair* h_pairs = nullptr;  // pinned
    int64_t capacity = 0;
    unsigned long long* d_count = nullptr;
    unsigned long long* h_count = nullptr;  // pinned
    cudaEvent_t gemm_done = nullptr;        // cuBLAS: the tile is written
    cudaEvent_t done = nullptr;             // the hits and their count are final
  };

  Status init();
  Status run_row(int64_t a);
  Status upload_rows(uint16_t* dst, int64_t first_row, int64_t rows, cudaStream_t stream);
  Status launch(Slot& s);
  Status launch_filter(Slot& s, cudaStream_t stream);  // count reset + filter/fused + count copy
  Status collect(Slot& s);
  Status grow(Slot& s, int64_t capacity);
  void release();

  const GpuJoinPlan& plan() const { return *shared_->plan; }

  int device_;
  GpuJoinShared* shared_;
  cudaStream_t compute_ = nullptr;  // GEMMs and fused kernels
  cudaStream_t filter_ = nullptr;   // cuBLAS path: filters
  cudaStream_t copy_ = nullptr;     // streaming uploads
  cudaStream_t d2h_ = nullptr;      // hits back to the host
  cudaEvent_t copied_[2] = {nullptr, nullptr};
  cublasHandle_t cublas_ = nullptr;
  uint16_t* d_all_ = nullptr;                // resident: all rows
  uint16_t* d_row_ = nullptr;                // streaming: the row block
  uint16_t* d_col_[2] = {nullptr, nullptr};  // streaming: column blocks
  Slot slots_[2];
  double upload_seconds_ = 0;
  std::vector<SimilarPair> global_;
};

}  // namespace qsearch

#endif  // QSEARCH_HAVE_CUDA
