// The GPU candidate pass. Vectors are cut into blocks of B rows; the unit of work is a block
// pair (a, b), b >= a, a B x B tile of the score matrix computed by one kernel launch (the
// fused kernel, or cuBLAS into a bf16 tile plus the filter kernel) whose hits land in a
// device buffer. One host thread per GPU worker takes whole row blocks a from a shared
// counter (largest first, so the tail balances) and walks b = a .. nb-1.
//
// Memory: when all vectors fit (bf16) each GPU holds them all ("resident"); otherwise it holds
// the row block and two column blocks and streams column blocks from host memory, copying
// the next one on a second stream while the current tile computes. Hits are copied back
// after each block pair; a pair that overflowed the buffer is run again with a larger one.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "dedup/join_internal.h"

#ifdef QSEARCH_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "similarity.cuh"
#endif

namespace qsearch {

#ifndef QSEARCH_HAVE_CUDA

int similarity_gpu_count() { return 0; }

Status gpu_join_candidates(const Bf16Matrix&, float, const std::vector<int>&,
                           const SimilarityJoinOptions&, CandidateSink*, JoinStats*) {
  return unavailable("this qsearch was built without CUDA (cmake -DQSEARCH_CUDA=OFF)");
}

#else  // QSEARCH_HAVE_CUDA

namespace {

Status cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  std::string msg = std::string(what) + " failed: " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line);
  if (err == cudaErrorMemoryAllocation) return resource_exhausted(msg);
  return internal_error(msg);
}

#define DEDUP_CUDA_CHECK(expr)                                          \
  do {                                                                  \
    cudaError_t dedup_err_ = (expr);                                    \
    if (dedup_err_ != cudaSuccess)                                      \
      return cuda_error(dedup_err_, #expr, __FILE__, __LINE__);         \
  } while (0)

#define DEDUP_CUBLAS_CHECK(expr)                                                         \
  do {                                                                                   \
    cublasStatus_t dedup_st_ = (expr);                                                   \
    if (dedup_st_ != CUBLAS_STATUS_SUCCESS)                                              \
      return internal_error(std::string(#expr) + " failed: cuBLAS status " +            \
                            std::to_string(static_cast<int>(dedup_st_)) + " at " +       \
                            __FILE__ + ":" + std::to_string(__LINE__));                  \
  } while (0)

using Clock = std::chrono::steady_clock;
constexpr int64_t kGiB = int64_t{1} << 30;

// What every worker agrees on.
struct JoinPlan {
  const Bf16Matrix* m = nullptr;
  float threshold_lo = 0;
  GpuJoinKernel kernel = GpuJoinKernel::kFused;
  int64_t block = 0;     // rows per block (multiple of 128)
  int64_t nblocks = 0;
  bool resident = true;
  int64_t pair_capacity = 0;
  std::vector<std::vector<int64_t>> row_items;  // row block a -> column blocks b (b >= a)
  int64_t rows_in(int64_t blk) const { return std::min(block, m->n - blk * block); }
};

int64_t pair_work(const JoinPlan& plan, int64_t a, int64_t b) {
  const int64_t ra = plan.rows_in(a), rb = plan.rows_in(b);
  return a == b ? ra * (ra - 1) / 2 : ra * rb;
}

struct SharedState {
  const JoinPlan* plan = nullptr;
  CandidateSink* sink = nullptr;
  std::atomic<int64_t> next_row{0};
  std::atomic<int64_t> reruns{0};
  std::atomic<int64_t> block_pairs{0};
  int64_t max_pairs = 0;
};

class GpuWorker {
 public:
  GpuWorker(int device, SharedState* shared) : device_(device), shared_(shared) {}
  ~GpuWorker() { release(); }
  Status run();
  double upload_seconds() const { return upload_seconds_; }

 private:
  Status init();
  Status upload_rows(uint16_t* dst, int64_t first_row, int64_t rows, cudaStream_t stream);
  Status run_block_pair(int64_t a, int64_t b, const uint16_t* pa, const uint16_t* pb);
  Status grow_pairs(int64_t capacity);
  void release();

  const JoinPlan& plan() const { return *shared_->plan; }

  int device_;
  SharedState* shared_;
  cudaStream_t compute_ = nullptr;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t copied_[2] = {nullptr, nullptr};
  cublasHandle_t cublas_ = nullptr;
  uint16_t* d_all_ = nullptr;     // resident: all rows
  uint16_t* d_row_ = nullptr;     // streaming: the row block
  uint16_t* d_col_[2] = {nullptr, nullptr};  // streaming: column blocks (double buffer)
  uint16_t* d_tile_ = nullptr;    // cuBLAS: the bf16 score tile
  SimPair* d_pairs_ = nullptr;
  SimPair* h_pairs_ = nullptr;    // pinned
  unsigned long long* d_count_ = nullptr;
  unsigned long long* h_count_ = nullptr;  // pinned
  int64_t capacity_ = 0;
  double upload_seconds_ = 0;
  std::vector<SimilarPair> global_;
};

void GpuWorker::release() {
  if (compute_ == nullptr && d_pairs_ == nullptr && h_count_ == nullptr) return;
  cudaSetDevice(device_);
  if (compute_) cudaStreamSynchronize(compute_);
  if (copy_) cudaStreamSynchronize(copy_);
  cudaFree(d_all_);
  cudaFree(d_row_);
  cudaFree(d_col_[0]);
  cudaFree(d_col_[1]);
  cudaFree(d_tile_);
  cudaFree(d_pairs_);
  cudaFree(d_count_);
  cudaFreeHost(h_pairs_);
  cudaFreeHost(h_count_);
  if (cublas_) cublasDestroy(cublas_);
  for (cudaEvent_t& e : copied_)
    if (e) cudaEventDestroy(e);
  if (compute_) cudaStreamDestroy(compute_);
  if (copy_) cudaStreamDestroy(copy_);
  d_all_ = d_row_ = d_col_[0] = d_col_[1] = d_tile_ = nullptr;
  d_pairs_ = nullptr;
  h_pairs_ = nullptr;
  d_count_ = h_count_ = nullptr;
  cublas_ = nullptr;
  compute_ = copy_ = nullptr;
  copied_[0] = copied_[1] = nullptr;
}

Status GpuWorker::grow_pairs(int64_t capacity) {
  cudaFree(d_pairs_);
  cudaFreeHost(h_pairs_);
  d_pairs_ = nullptr;
  h_pairs_ = nullptr;
  capacity_ = 0;
  DEDUP_CUDA_CHECK(cudaMalloc(&d_pairs_, static_cast<size_t>(capacity) * sizeof(SimPair)));
  DEDUP_CUDA_CHECK(cudaMallocHost(&h_pairs_, static_cast<size_t>(capacity) * sizeof(SimPair)));
  capacity_ = capacity;
  return Status::ok();
}

Status GpuWorker::upload_rows(uint16_t* dst, int64_t first_row, int64_t rows,
                              cudaStream_t stream) {
  const Bf16Matrix& m = *plan().m;
  const int64_t padded = std::min(round_up_to(rows, 128), m.n_pad - first_row);
  const size_t bytes = static_cast<size_t>(padded) * m.dim_pad * sizeof(uint16_t);
  DEDUP_CUDA_CHECK(cudaMemcpyAsync(dst, m.data.data() + first_row * m.dim_pad, bytes,
                                   cudaMemcpyHostToDevice, stream));
  return Status::ok();
}

Status GpuWorker::init() {
  const auto t0 = Clock::now();
  const JoinPlan& p = plan();
  const Bf16Matrix& m = *p.m;
  DEDUP_CUDA_CHECK(cudaSetDevice(device_));
  DEDUP_CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
  DEDUP_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
  for (cudaEvent_t& e : copied_)
    DEDUP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  DEDUP_CUDA_CHECK(cudaMalloc(&d_count_, sizeof(unsigned long long)));
  DEDUP_CUDA_CHECK(cudaMallocHost(&h_count_, sizeof(unsigned long long)));
  QS_RETURN_IF_ERROR(grow_pairs(p.pair_capacity));
  const size_t block_bytes = static_cast<size_t>(p.block) * m.dim_pad * sizeof(uint16_t);
  if (p.kernel == GpuJoinKernel::kCublas) {
    DEDUP_CUBLAS_CHECK(cublasCreate(&cublas_));
    DEDUP_CUBLAS_CHECK(cublasSetStream(cublas_, compute_));
    DEDUP_CUDA_CHECK(cudaMalloc(&d_tile_, static_cast<size_t>(p.block) *
                                              round_up_to(p.block, 8) * sizeof(uint16_t)));
  }
  if (p.resident) {
    const size_t bytes = static_cast<size_t>(m.n_pad) * m.dim_pad * sizeof(uint16_t);
    DEDUP_CUDA_CHECK(cudaMalloc(&d_all_, bytes));
    // In pieces, so a cancel does not wait for tens of GB.
    const int64_t piece = std::max<int64_t>(128, (256 << 20) / (m.dim_pad * 2) / 128 * 128);
    for (int64_t r = 0; r < m.n_pad; r += piece) {
      if (shared_->sink->should_stop()) break;
      QS_RETURN_IF_ERROR(upload_rows(d_all_ + r * m.dim_pad, r, std::min(piece, m.n_pad - r),
                                     compute_));
    }
  } else {
    DEDUP_CUDA_CHECK(cudaMalloc(&d_row_, block_bytes));
    DEDUP_CUDA_CHECK(cudaMalloc(&d_col_[0], block_bytes));
    DEDUP_CUDA_CHECK(cudaMalloc(&d_col_[1], block_bytes));
  }
  DEDUP_CUDA_CHECK(cudaStreamSynchronize(compute_));
  upload_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
  return Status::ok();
}

Status GpuWorker::run_block_pair(int64_t a, int64_t b, const uint16_t* pa, const uint16_t* pb) {
  const JoinPlan& p = plan();
  const int dim_pad = p.m->dim_pad;
  const int64_t rows_a = p.rows_in(a);
  const int64_t rows_b = p.rows_in(b);
  const bool triangular = a == b;
  for (;;) {
    DEDUP_CUDA_CHECK(cudaMemsetAsync(d_count_, 0, sizeof(unsigned long long), compute_));
    if (p.kernel == GpuJoinKernel::kCublas) {
      // Column-major view: C' (cols x rows) = B_blk^T-op . A_blk, i.e. row-major C = A B^T.
      const int64_t ldc = round_up_to(rows_b, 8);
      const float one = 1.0f, zero = 0.0f;
      DEDUP_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(ldc),
                                      static_cast<int>(rows_a), dim_pad, &one, pb, CUDA_R_16BF,
                                      dim_pad, pa, CUDA_R_16BF, dim_pad, &zero, d_tile_,
                                      CUDA_R_16BF, static_cast<int>(ldc), CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
      DEDUP_CUDA_CHECK(launch_threshold_filter_bf16(d_tile_, rows_a, rows_b, ldc, p.threshold_lo,
                                                    triangular, d_pairs_, capacity_, d_count_,
                                                    compute_));
    } else {
      DEDUP_CUDA_CHECK(launch_similarity_threshold(pa, rows_a, pb, rows_b, dim_pad, dim_pad,
                                                   p.threshold_lo, triangular, d_pairs_,
                                                   capacity_, d_count_, compute_));
    }
    DEDUP_CUDA_CHECK(cudaMemcpyAsync(h_count_, d_count_, sizeof(unsigned long long),
                                     cudaMemcpyDeviceToHost, compute_));
    DEDUP_CUDA_CHECK(cudaStreamSynchronize(compute_));
    const int64_t count = static_cast<int64_t>(*h_count_);
    if (count > capacity_) {
      // Overflow: the kernel counted every hit; run again with room for all of them.
      if (count > shared_->max_pairs)
        return resource_exhausted("a block pair has " + std::to_string(count) +
                                  " pairs near the threshold: raise the threshold");
      shared_->reruns.fetch_add(1);
      QS_RETURN_IF_ERROR(grow_pairs(count + count / 4 + 1024));
      continue;
    }
    if (count > 0) {
      DEDUP_CUDA_CHECK(cudaMemcpyAsync(h_pairs_, d_pairs_,
                                       static_cast<size_t>(count) * sizeof(SimPair),
                                       cudaMemcpyDeviceToHost, compute_));
      DEDUP_CUDA_CHECK(cudaStreamSynchronize(compute_));
    }
    global_.resize(static_cast<size_t>(count));
    const int64_t row0 = a * p.block, col0 = b * p.block;
    for (int64_t c = 0; c < count; ++c)
      global_[c] = SimilarPair{row0 + h_pairs_[c].i, col0 + h_pairs_[c].j, h_pairs_[c].score};
    shared_->block_pairs.fetch_add(1);
    return shared_->sink->add(global_.data(), global_.size(), pair_work(p, a, b));
  }
}

Status GpuWorker::run() {
  Status st = init();
  if (!st.is_ok()) return st;
  const JoinPlan& p = plan();
  const Bf16Matrix& m = *p.m;
  for (;;) {
    if (shared_->sink->should_stop()) return Status::ok();
    const int64_t a = shared_->next_row.fetch_add(1);
    if (a >= p.nblocks) return Status::ok();
    const std::vector<int64_t>& items = p.row_items[a];
    if (items.empty()) continue;
    if (p.resident) {
      const uint16_t* pa = d_all_ + a * p.block * m.dim_pad;
      for (int64_t b : items) {
        if (shared_->sink->should_stop()) return Status::ok();
        QS_RETURN_IF_ERROR(run_block_pair(a, b, pa, d_all_ + b * p.block * m.dim_pad));
      }
      continue;
    }
    // Streaming: the row block on the compute stream (ordered before its kernels); column
    // blocks other than a through the two buffers, the next one copied while this one runs.
    QS_RETURN_IF_ERROR(upload_rows(d_row_, a * p.block, p.rows_in(a), compute_));
    std::vector<int64_t> cols;
    for (int64_t b : items)
      if (b != a) cols.push_back(b);
    if (!cols.empty()) {
      QS_RETURN_IF_ERROR(upload_rows(d_col_[0], cols[0] * p.block, p.rows_in(cols[0]), copy_));
      DEDUP_CUDA_CHECK(cudaEventRecord(copied_[0], copy_));
    }
    size_t next_col = 0;
    for (int64_t b : items) {
      if (shared_->sink->should_stop()) return Status::ok();
      if (b == a) {
        QS_RETURN_IF_ERROR(run_block_pair(a, b, d_row_, d_row_));
        continue;
      }
      const int slot = static_cast<int>(next_col % 2);
      DEDUP_CUDA_CHECK(cudaStreamWaitEvent(compute_, copied_[slot], 0));
      // The other buffer was last read by the previous block pair, which has finished
      // (run_block_pair synchronises), so the next column block can go there now. The copy
      // is issued before this pair's kernel is waited on, so the two overlap.
      if (next_col + 1 < cols.size()) {
        const int64_t nb = cols[next_col + 1];
        QS_RETURN_IF_ERROR(upload_rows(d_col_[1 - slot], nb * p.block, p.rows_in(nb), copy_));
        DEDUP_CUDA_CHECK(cudaEventRecord(copied_[1 - slot], copy_));
      }
      QS_RETURN_IF_ERROR(run_block_pair(a, b, d_row_, d_col_[slot]));
      ++next_col;
    }
  }
}

}  // namespace

int similarity_gpu_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

Status gpu_join_candidates(const Bf16Matrix& m, float threshold_lo,
                           const std::vector<int>& devices, const SimilarityJoinOptions& options,
                           CandidateSink* sink, JoinStats* stats) {
  JoinPlan plan;
  plan.m = &m;
  plan.threshold_lo = threshold_lo;
  plan.kernel = options.gpu_kernel == GpuJoinKernel::kCublas ? GpuJoinKernel::kCublas
                                                             : GpuJoinKernel::kFused;
  const bool cublas = plan.kernel == GpuJoinKernel::kCublas;

  // Memory: the smallest budget over the devices in use.
  int64_t limit = INT64_MAX;
  for (int d : devices) {
    size_t free_b = 0, total_b = 0;
    DEDUP_CUDA_CHECK(cudaSetDevice(d));
    DEDUP_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    // Workers sharing a device share its memory.
    const int64_t sharing = std::count(devices.begin(), devices.end(), d);
    limit = std::min(limit, (static_cast<int64_t>(free_b) - kGiB) / sharing);
  }
  if (options.gpu_memory_limit > 0) limit = std::min(limit, options.gpu_memory_limit);
  if (limit <= 0) return resource_exhausted("no free GPU memory for the similarity join");

  const int64_t row_bytes = static_cast<int64_t>(m.dim_pad) * 2;
  plan.pair_capacity = options.gpu_pair_capacity > 0
                           ? options.gpu_pair_capacity
                           : std::clamp<int64_t>(limit / 32 / 12, 1 << 16, 1 << 24);
  int64_t block = options.block_rows > 0 ? options.block_rows : (cublas ? 32768 : 65536);
  block = std::min(round_up_to(std::max<int64_t>(block, 128), 128), m.n_pad);
  auto fixed_bytes = [&](int64_t blk) {
    int64_t bytes = plan.pair_capacity * static_cast<int64_t>(sizeof(SimPair)) + (64 << 20);
    if (cublas) bytes += blk * round_up_to(blk, 8) * 2 + (256 << 20);  // tile + cuBLAS workspace
    return bytes;
  };
  plan.resident = m.n_pad * row_bytes + fixed_bytes(block) <= limit;
  if (!plan.resident) {
    while (block > 128 && 3 * block * row_bytes + fixed_bytes(block) > limit)
      block = round_up_to(block / 2, 128);
    if (3 * block * row_bytes + fixed_bytes(block) > limit)
      return resource_exhausted("GPU memory budget of " + std::to_string(limit >> 20) +
                                " MiB is too small for the similarity join");
  }
  plan.block = block;
  plan.nblocks = (m.n + block - 1) / block;
  plan.row_items.resize(static_cast<size_t>(plan.nblocks));
  int64_t k = 0, work = 0;
  const double f = options.work_fraction;
  for (int64_t a = 0; a < plan.nblocks; ++a)
    for (int64_t b = a; b < plan.nblocks; ++b, ++k) {
      if (f < 1.0 && static_cast<int64_t>((k + 1) * f) == static_cast<int64_t>(k * f)) continue;
      plan.row_items[a].push_back(b);
      work += pair_work(plan, a, b);
    }

  SharedState shared;
  shared.plan = &plan;
  shared.sink = sink;
  shared.max_pairs = options.max_pairs;
  std::vector<std::unique_ptr<GpuWorker>> workers;
  std::vector<Status> results(devices.size());
  for (int d : devices) workers.push_back(std::make_unique<GpuWorker>(d, &shared));
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers.size(); ++w)
    threads.emplace_back([&, w] {
      results[w] = workers[w]->run();
      if (!results[w].is_ok()) sink->fail();
    });
  for (std::thread& t : threads) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  double upload = 0;
  for (const auto& w : workers) upload = std::max(upload, w->upload_seconds());
  workers.clear();  // frees device memory

  for (const Status& s : results)
    if (!s.is_ok()) return s;
  if (sink->cancelled()) return cancelled("similarity join cancelled");

  const int64_t all = m.n * (m.n - 1) / 2;
  std::string name = "cuda:";
  for (size_t i = 0; i < devices.size(); ++i) {
    if (i > 0) name.push_back(',');
    name.append(std::to_string(devices[i]));
  }
  name.append(cublas ? " (cuBLAS + filter)" : " (fused)");
  stats->device = name;
  stats->block_rows = plan.block;
  stats->block_pairs = shared.block_pairs.load();
  stats->streamed = !plan.resident;
  stats->reruns = shared.reruns.load();
  stats->work_done = all > 0 ? static_cast<double>(work) / all : 1.0;
  stats->prepare_seconds += upload;
  stats->compare_seconds = wall - upload;
  return Status::ok();
}

#endif  // QSEARCH_HAVE_CUDA

}  // namespace qsearch
