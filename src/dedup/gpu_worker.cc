// The GPU worker of the similarity join: see gpu_worker.h.
#include "dedup/gpu_worker.h"

#ifdef QSEARCH_HAVE_CUDA

#include <chrono>
#include <string>

namespace qsearch {
namespace {

Status cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  std::string msg = std::string(what) + " failed: " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line);
  if (err == cudaErrorMemoryAllocation) return resource_exhausted(msg);
  return internal_error(msg);
}

#define DEDUP_CUDA_CHECK(expr)                                                               \
  do {                                                                                       \
    cudaError_t dedup_err_ = (expr);                                                         \
    if (dedup_err_ != cudaSuccess) return cuda_error(dedup_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define DEDUP_CUBLAS_CHECK(expr)                                                              \
  do {                                                                                        \
    cublasStatus_t dedup_st_ = (expr);                                                        \
    if (dedup_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
      return internal_error(std::string(#expr) + " failed: cuBLAS status " +                  \
                            std::to_string(static_cast<int>(dedup_st_)) + " at " + __FILE__ + \
                            ":" + std::to_string(__LINE__));                                  \
  } while (0)

}  // namespace

void GpuWorker::release() {
  if (compute_ == nullptr) return;  // init never got as far as a stream
  cudaSetDevice(device_);
  for (cudaStream_t s : {compute_, filter_, copy_, d2h_})
    if (s) cudaStreamSynchronize(s);
  cudaFree(d_all_);
  cudaFree(d_row_);
  cudaFree(d_col_[0]);
  cudaFree(d_col_[1]);
  for (Slot& s : slots_) {
    cudaFree(s.d_tile);
    cudaFree(s.d_pairs);
    cudaFree(s.d_count);
    cudaFreeHost(s.h_pairs);
    cudaFreeHost(s.h_count);
    if (s.gemm_done) cudaEventDestroy(s.gemm_done);
    if (s.done) cudaEventDestroy(s.done);
    s = Slot{};
  }
  if (cublas_) cublasDestroy(cublas_);
  for (cudaEvent_t& e : copied_)
    if (e) cudaEventDestroy(e);
  for (cudaStream_t* s : {&compute_, &filter_, &copy_, &d2h_}) {
    if (*s) cudaStreamDestroy(*s);
    *s = nullptr;
  }
  d_all_ = d_row_ = d_col_[0] = d_col_[1] = nullptr;
  cublas_ = nullptr;
  copied_[0] = copied_[1] = nullptr;
}

Status GpuWorker::grow(Slot& s, int64_t capacity) {
  cudaFree(s.d_pairs);
  cudaFreeHost(s.h_pairs);
  s.d_pairs = nullptr;
  s.h_pairs = nullptr;
  s.capacity = 0;
  DEDUP_CUDA_CHECK(cudaMalloc(&s.d_pairs, static_cast<size_t>(capacity) * sizeof(SimPair)));
  DEDUP_CUDA_CHECK(cudaMallocHost(&s.h_pairs, static_cast<size_t>(capacity) * sizeof(SimPair)));
  s.capacity = capacity;
  return Status::ok();
}

Status GpuWorker::upload_rows(uint16_t* dst, int64_t first_row, int64_t rows, cudaStream_t stream) {
  const Bf16Matrix& m = *plan().m;
  const int64_t padded = std::min(round_up_to(rows, 128), m.n_pad - first_row);
  const size_t bytes = static_cast<size_t>(padded) * m.dim_pad * sizeof(uint16_t);
  DEDUP_CUDA_CHECK(cudaMemcpyAsync(dst, m.data.data() + first_row * m.dim_pad, bytes,
                                   cudaMemcpyHostToDevice, stream));
  return Status::ok();
}

Status GpuWorker::init() {
  const auto t0 = std::chrono::steady_clock::now();
  const GpuJoinPlan& p = plan();
  const Bf16Matrix& m = *p.m;
  DEDUP_CUDA_CHECK(cudaSetDevice(device_));
  for (cudaStream_t* s : {&compute_, &filter_, &copy_, &d2h_})
    DEDUP_CUDA_CHECK(cudaStreamCreateWithFlags(s, cudaStreamNonBlocking));
  for (cudaEvent_t& e : copied_)
    DEDUP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  const bool cublas = p.kernel == GpuJoinKernel::kCublas;
  if (cublas) {
    DEDUP_CUBLAS_CHECK(cublasCreate(&cublas_));
    DEDUP_CUBLAS_CHECK(cublasSetStream(cublas_, compute_));
  }
  for (Slot& s : slots_) {
    DEDUP_CUDA_CHECK(cudaEventCreateWithFlags(&s.gemm_done, cudaEventDisableTiming));
    DEDUP_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    DEDUP_CUDA_CHECK(cudaMalloc(&s.d_count, sizeof(unsigned long long)));
    DEDUP_CUDA_CHECK(cudaMallocHost(&s.h_count, sizeof(unsigned long long)));
    QS_RETURN_IF_ERROR(grow(s, p.pair_capacity));
    if (cublas)
      DEDUP_CUDA_CHECK(cudaMalloc(
          &s.d_tile, static_cast<size_t>(p.block) * round_up_to(p.block, 8) * sizeof(uint16_t)));
  }
  if (p.resident) {
    DEDUP_CUDA_CHECK(
        cudaMalloc(&d_all_, static_cast<size_t>(m.n_pad) * m.dim_pad * sizeof(uint16_t)));
    // In pieces, so a cancel does not wait for tens of GB.
    const int64_t piece =
        std::max<int64_t>(128, (int64_t{256} << 20) / (m.dim_pad * 2) / 128 * 128);
    for (int64_t r = 0; r < m.n_pad; r += piece) {
      if (shared_->sink->should_stop()) break;
      QS_RETURN_IF_ERROR(
          upload_rows(d_all_ + r * m.dim_pad, r, std::min(piece, m.n_pad - r), compute_));
    }
  } else {
    const size_t block_bytes = static_cast<size_t>(p.block) * m.dim_pad * sizeof(uint16_t);
    DEDUP_CUDA_CHECK(cudaMalloc(&d_row_, block_bytes));
    DEDUP_CUDA_CHECK(cudaMalloc(&d_col_[0], block_bytes));
    DEDUP_CUDA_CHECK(cudaMalloc(&d_col_[1], block_bytes));
  }
  DEDUP_CUDA_CHECK(cudaStreamSynchronize(compute_));
  upload_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Status::ok();
}

Status GpuWorker::launch_filter(Slot& s, cudaStream_t stream) {
  const GpuJoinPlan& p = plan();
  const int64_t rows_a = p.rows_in(s.a), rows_b = p.rows_in(s.b);
  const bool triangular = s.a == s.b;
  DEDUP_CUDA_CHECK(cudaMemsetAsync(s.d_count, 0, sizeof(unsigned long long), stream));
  if (p.kernel == GpuJoinKernel::kCublas) {
    DEDUP_CUDA_CHECK(launch_threshold_filter_bf16(s.d_tile, rows_a, rows_b, round_up_to(rows_b, 8),
                                                  p.threshold_lo, triangular, s.d_pairs, s.capacity,
                                                  s.d_count, stream));
  } else {
    DEDUP_CUDA_CHECK(launch_similarity_threshold(s.pa, rows_a, s.pb, rows_b, p.m->dim_pad,
                                                 p.m->dim_pad, p.threshold_lo, triangular,
                                                 s.d_pairs, s.capacity, s.d_count, stream));
  }
  DEDUP_CUDA_CHECK(cudaMemcpyAsync(s.h_count, s.d_count, sizeof(unsigned long long),
                                   cudaMemcpyDeviceToHost, stream));
  DEDUP_CUDA_CHECK(cudaEventRecord(s.done, stream));
  return Status::ok();
}

Status GpuWorker::launch(Slot& s) {
  const GpuJoinPlan& p = plan();
  if (p.kernel != GpuJoinKernel::kCublas) return launch_filter(s, compute_);
  // Row-major tile[r][c] = <a_r, b_c> as the column-major product (cols x rows) B^T-op A.
  const int64_t rows_a = p.rows_in(s.a), ldc = round_up_to(p.rows_in(s.b), 8);
  const int dim_pad = p.m->dim_pad;
  const float one = 1.0f, zero = 0.0f;
  DEDUP_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(ldc),
                                  static_cast<int>(rows_a), dim_pad, &one, s.pb, CUDA_R_16BF,
                                  dim_pad, s.pa, CUDA_R_16BF, dim_pad, &zero, s.d_tile, CUDA_R_16BF,
                                  static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  DEDUP_CUDA_CHECK(cudaEventRecord(s.gemm_done, compute_));
  DEDUP_CUDA_CHECK(cudaStreamWaitEvent(filter_, s.gemm_done, 0));
  return launch_filter(s, filter_);
}

Status GpuWorker::collect(Slot& s) {
  const GpuJoinPlan& p = plan();
  DEDUP_CUDA_CHECK(cudaEventSynchronize(s.done));
  int64_t count = static_cast<int64_t>(*s.h_count);
  while (count > s.capacity) {
    // Overflow: every hit was counted; grow and run the filter (the cuBLAS tile is intact)
    // or the fused kernel (its inputs are intact) again.
    if (count > shared_->max_pairs)
      return resource_exhausted("a block pair has " + std::to_string(count) +
                                " pairs near the threshold: raise the threshold");
    shared_->reruns.fetch_add(1);
    QS_RETURN_IF_ERROR(grow(s, count + count / 4 + 1024));
    QS_RETURN_IF_ERROR(launch_filter(s, p.kernel == GpuJoinKernel::kCublas ? filter_ : compute_));
    DEDUP_CUDA_CHECK(cudaEventSynchronize(s.done));
    count = static_cast<int64_t>(*s.h_count);
  }
  if (count > 0) {
    DEDUP_CUDA_CHECK(cudaMemcpyAsync(s.h_pairs, s.d_pairs,
                                     static_cast<size_t>(count) * sizeof(SimPair),
                                     cudaMemcpyDeviceToHost, d2h_));
    DEDUP_CUDA_CHECK(cudaStreamSynchronize(d2h_));
  }
  global_.resize(static_cast<size_t>(count));
  const int64_t row0 = s.a * p.block, col0 = s.b * p.block;
  for (int64_t c = 0; c < count; ++c)
    global_[c] = SimilarPair{row0 + s.h_pairs[c].i, col0 + s.h_pairs[c].j, s.h_pairs[c].score};
  shared_->block_pairs.fetch_add(1);
  return shared_->sink->add(global_.data(), global_.size(), p.pair_work(s.a, s.b));
}

Status GpuWorker::run_row(int64_t a) {
  const GpuJoinPlan& p = plan();
  const std::vector<int64_t>& items = p.row_items[a];
  if (items.empty()) return Status::ok();
  const int64_t dim_pad = p.m->dim_pad;
  const uint16_t* pa = nullptr;
  std::vector<int64_t> cols;  // streaming: the column blocks other than a, in order
  if (p.resident) {
    pa = d_all_ + a * p.block * dim_pad;
  } else {
    QS_RETURN_IF_ERROR(upload_rows(d_row_, a * p.block, p.rows_in(a), compute_));
    pa = d_row_;
    for (int64_t b : items)
      if (b != a) cols.push_back(b);
    if (!cols.empty()) {
      QS_RETURN_IF_ERROR(upload_rows(d_col_[0], cols[0] * p.block, p.rows_in(cols[0]), copy_));
      DEDUP_CUDA_CHECK(cudaEventRecord(copied_[0], copy_));
    }
  }
  size_t next_col = 0;
  int cur = 0;
  bool pending = false;  // slots_[cur ^ 1] holds a launched, uncollected block pair
  for (int64_t b : items) {
    if (shared_->sink->should_stop()) return Status::ok();  // release() waits for the GPU
    Slot& s = slots_[cur];
    s.a = a;
    s.b = b;
    s.pa = pa;
    int64_t col_index = -1;
    if (p.resident) {
      s.pb = d_all_ + b * p.block * dim_pad;
    } else if (b == a) {
      s.pb = d_row_;
    } else {
      col_index = static_cast<int64_t>(next_col++);
      s.pb = d_col_[col_index % 2];
      DEDUP_CUDA_CHECK(cudaStreamWaitEvent(compute_, copied_[col_index % 2], 0));
    }
    QS_RETURN_IF_ERROR(launch(s));
    if (pending) QS_RETURN_IF_ERROR(collect(slots_[cur ^ 1]));
    pending = true;
    // The buffer of the next column block was last read by the column block before this
    // one, whose block pair has been collected by now: upload into it while this one runs.
    if (col_index >= 0 && col_index + 1 < static_cast<int64_t>(cols.size())) {
      const int64_t nb = cols[col_index + 1];
      const int buf = static_cast<int>((col_index + 1) % 2);
      QS_RETURN_IF_ERROR(upload_rows(d_col_[buf], nb * p.block, p.rows_in(nb), copy_));
      DEDUP_CUDA_CHECK(cudaEventRecord(copied_[buf], copy_));
    }
    cur ^= 1;
  }
  if (pending) QS_RETURN_IF_ERROR(collect(slots_[cur ^ 1]));
  return Status::ok();
}

Status GpuWorker::run() {
  QS_RETURN_IF_ERROR(init());
  const GpuJoinPlan& p = plan();
  for (;;) {
    if (shared_->sink->should_stop()) return Status::ok();
    const int64_t a = shared_->next_row.fetch_add(1);
    if (a >= p.nblocks) return Status::ok();
    QS_RETURN_IF_ERROR(run_row(a));
  }
}

}  // namespace qsearch

#endif  // QSEARCH_HAVE_CUDA
