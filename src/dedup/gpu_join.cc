// The GPU candidate pass: the plan. Vectors are cut into blocks of B rows; the unit of work is
// a block pair (a, b), b >= a: a B x B tile of the score matrix (the fused kernel, or cuBLAS
// into a bf16 tile plus the filter kernel) whose hits land in a device buffer. One host
// thread per GPU worker (gpu_worker.h) takes whole row blocks a from a shared counter (the
// largest first, so the tail balances) and walks b = a .. nb-1.
//
// Memory: when all vectors fit (bf16) in the budget each GPU holds them all ("resident");
// otherwise it holds the row block and two column blocks and streams column blocks from host
// memory. Only one or two tiles of the n x n score matrix ever exist (cuBLAS path).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "dedup/join_internal.h"

#ifdef QSEARCH_HAVE_CUDA
#include "dedup/gpu_worker.h"
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

#define DEDUP_CUDA_CHECK(expr)                                                               \
  do {                                                                                       \
    cudaError_t dedup_err_ = (expr);                                                         \
    if (dedup_err_ != cudaSuccess) return cuda_error(dedup_err_, #expr, __FILE__, __LINE__); \
  } while (0)

using Clock = std::chrono::steady_clock;
constexpr int64_t kGiB = int64_t{1} << 30;

}  // namespace

int similarity_gpu_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

Status gpu_join_candidates(const Bf16Matrix& m, float threshold_lo, const std::vector<int>& devices,
                           const SimilarityJoinOptions& options, CandidateSink* sink,
                           JoinStats* stats) {
  GpuJoinPlan plan;
  plan.m = &m;
  plan.threshold_lo = threshold_lo;
  plan.kernel =
      options.gpu_kernel == GpuJoinKernel::kFused ? GpuJoinKernel::kFused : GpuJoinKernel::kCublas;
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
                           : std::clamp<int64_t>(limit / 64 / 12, 1 << 16, 1 << 22);
  int64_t block = options.block_rows > 0 ? options.block_rows : (cublas ? 32768 : 65536);
  block = std::min(round_up_to(std::max<int64_t>(block, 128), 128), m.n_pad);
  // Two slots, each with a result buffer (and a bf16 tile for cuBLAS, plus its workspace).
  auto fixed_bytes = [&](int64_t blk) {
    int64_t bytes = 2 * plan.pair_capacity * static_cast<int64_t>(sizeof(SimPair)) + (64 << 20);
    if (cublas) bytes += 2 * blk * round_up_to(blk, 8) * 2 + (128 << 20);
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
      work += plan.pair_work(a, b);
    }

  GpuJoinShared shared;
  shared.plan = &plan;
  shared.sink = sink;
  shared.max_pairs = options.max_pairs;
  std::vector<std::unique_ptr<GpuWorker> > workers;
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
