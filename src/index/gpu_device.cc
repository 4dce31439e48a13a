// The GPU index's device side (see gpu_device.h). Without CUDA (QSEARCH_HAVE_CUDA unset) open()
// answers kUnavailable and the index falls back to CPU flat search.
#include "index/gpu_device.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#ifdef QSEARCH_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common.cuh"
#include "copy_rows.cuh"
#include "scale_scores.cuh"
#include "topk.cuh"
#endif

namespace qsearch::index_internal {

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float quantize_int8(const float* x, int n, int8_t* out) {
  float amax = 0.f;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float scale = amax > 0.f && std::isfinite(amax) ? amax / 127.f : 1.f;
  const float inv = 1.f / scale;
  for (int j = 0; j < n; ++j) {
    const float v = std::nearbyint(x[j] * inv);
    out[j] = static_cast<int8_t>(std::max(-127.f, std::min(127.f, std::isnan(v) ? 0.f : v)));
  }
  return scale;
}

#ifndef QSEARCH_HAVE_CUDA

struct GpuDevice::Impl {};
GpuDevice::GpuDevice(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuDevice::~GpuDevice() = default;
StatusOr<std::unique_ptr<GpuDevice>> GpuDevice::open(const GpuDeviceOptions&) {
  return unavailable("this qsearch was built without CUDA (cmake -DQSEARCH_CUDA=OFF)");
}
Status GpuDevice::write_rows(int64_t, int64_t, const float*) { return unavailable("no CUDA"); }
Status GpuDevice::write_live(int64_t, int64_t, const uint32_t*) { return unavailable("no CUDA"); }
Status GpuDevice::move_rows(const int64_t*, const int64_t*, int64_t) {
  return unavailable("no CUDA");
}
Status GpuDevice::read_rows(int64_t, int64_t, float*) const { return unavailable("no CUDA"); }
Status GpuDevice::search(int64_t, int, const float*, const uint32_t* const*, int, float*,
                         int32_t*) {
  return unavailable("no CUDA");
}
Status GpuDevice::score_all(int64_t, int, const float*, float*) { return unavailable("no CUDA"); }
int64_t GpuDevice::bytes_reserved() const { return 0; }
std::string GpuDevice::device_name() const { return {}; }
int GpuDevice::device_count() { return 0; }

#else  // QSEARCH_HAVE_CUDA

namespace {

constexpr int64_t kSlice = 16384;       // score rows per selection CTA
constexpr int64_t kStagingRows = 8192;  // rows a host -> device transfer
constexpr int64_t kMaxRows = int64_t{1} << 31;

// A device allocation that only grows (grow()); freed by Impl.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
};

Status grow(DeviceBuffer* buf, size_t bytes, bool keep) {
  if (buf->bytes >= bytes) return Status::ok();
  void* fresh = nullptr;
  cudaError_t err = cudaMalloc(&fresh, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: out of memory is not sticky
    return cuda_status(err, "cudaMalloc", __FILE__, __LINE__);
  }
  if (keep && buf->bytes > 0)
    CUDA_CHECK(cudaMemcpy(fresh, buf->ptr, buf->bytes, cudaMemcpyDeviceToDevice));
  if (buf->ptr) cudaFree(buf->ptr);
  buf->ptr = fresh;
  buf->bytes = bytes;
  return Status::ok();
}

}  // namespace

struct GpuDevice::Impl {
  GpuDeviceOptions opt;
  int64_t ld = 0;  // elements a stored row (dimension rounded up to 8; int8: to 16)
  int64_t row_bytes = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::string name;

  std::vector<DeviceBuffer> chunks;  // bf16 rows
  DeviceBuffer chunk_ptrs;           // device copy of the chunk addresses (compaction kernel)
  DeviceBuffer live;                 // uint32 bitmap
  DeviceBuffer norms;                // fp32 per row (L2)
  DeviceBuffer row_scales;           // fp32 per row (int8)
  DeviceBuffer query_scales;         // fp32 [max_batch] (int8)
  DeviceBuffer queries;              // bf16 or int8 [max_batch x ld]
  DeviceBuffer scores;               // fp32 [max_batch x scores_ld]
  int64_t scores_ld = 0;
  DeviceBuffer cand_keys[2], cand_rows[2];
  DeviceBuffer filters;  // max_batch bitmaps of filter_words words
  int64_t filter_words = 0;
  DeviceBuffer filter_ptrs;     // max_batch device pointers
  DeviceBuffer pairs;           // compaction src/dst
  uint16_t* pinned = nullptr;   // staging: kStagingRows rows of row_bytes (bf16 or int8)
  float* pinned_out = nullptr;  // results: max_batch x kTopkMaxK keys + rows

  ~Impl() {
    if (stream) cudaStreamSynchronize(stream);
    for (auto* b :
         {&chunk_ptrs, &live, &norms, &row_scales, &query_scales, &queries, &scores, &cand_keys[0],
          &cand_keys[1], &cand_rows[0], &cand_rows[1], &filters, &filter_ptrs, &pairs})
      if (b->ptr) cudaFree(b->ptr);
    for (auto& c : chunks)
      if (c.ptr) cudaFree(c.ptr);
    if (pinned) cudaFreeHost(pinned);
    if (pinned_out) cudaFreeHost(pinned_out);
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }

  int64_t chunk_of(int64_t row) const { return row / opt.chunk_rows; }

  // Storage for rows [0, rows): chunks, live bitmap, norms.
  Status reserve(int64_t rows) {
    if (rows > kMaxRows) return resource_exhausted("the gpu index holds at most 2^31 rows");
    const int64_t need_chunks = ceil_div(rows, opt.chunk_rows);
    bool ptrs_changed = false;
    for (int64_t c = 0; c < need_chunks; ++c) {
      if (c >= static_cast<int64_t>(chunks.size())) chunks.emplace_back();
      int64_t in_chunk = std::min(opt.chunk_rows, rows - c * opt.chunk_rows);
      if (opt.int8) in_chunk = round_up(in_chunk, 4);  // the GEMM's m (chunk_rows % 4 == 0)
      const size_t need = static_cast<size_t>(in_chunk) * row_bytes;
      if (chunks[c].bytes >= need) continue;
      size_t cap = std::max<size_t>(need, std::max<size_t>(chunks[c].bytes * 2, 1024 * row_bytes));
      cap = std::min<size_t>(cap, static_cast<size_t>(opt.chunk_rows) * row_bytes);
      size_t free_b = 0, total_b = 0;
      CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
      if (static_cast<int64_t>(free_b) - static_cast<int64_t>(cap) < opt.headroom_bytes)
        return resource_exhausted("growing the rows by " + std::to_string(cap >> 20) +
                                  " MiB would leave less than " +
                                  std::to_string(opt.headroom_bytes >> 20) + " MiB of the " +
                                  std::to_string(free_b >> 20) + " MiB free on the device");
      QS_RETURN_IF_ERROR(grow(&chunks[c], cap, true));
      ptrs_changed = true;
    }
    if (ptrs_changed) {
      std::vector<void*> ptrs;
      for (auto& c : chunks) ptrs.push_back(c.ptr);
      QS_RETURN_IF_ERROR(
          grow(&chunk_ptrs, std::max<size_t>(ptrs.size(), 64) * sizeof(void*), false));
      CUDA_CHECK(cudaMemcpy(chunk_ptrs.ptr, ptrs.data(), ptrs.size() * sizeof(void*),
                            cudaMemcpyHostToDevice));
    }
    const size_t words = static_cast<size_t>(ceil_div(rows, 32));
    if (live.bytes < words * 4) {
      const size_t old = live.bytes;
      QS_RETURN_IF_ERROR(grow(&live, std::max(words * 4, old * 2), true));
      CUDA_CHECK(cudaMemset(static_cast<char*>(live.ptr) + old, 0, live.bytes - old));
    }
    if (opt.l2 && norms.bytes < static_cast<size_t>(rows) * 4)
      QS_RETURN_IF_ERROR(grow(&norms, std::max<size_t>(rows * 4, norms.bytes * 2), true));
    if (opt.int8 && row_scales.bytes < static_cast<size_t>(rows) * 4)
      QS_RETURN_IF_ERROR(grow(&row_scales, std::max<size_t>(rows * 4, row_scales.bytes * 2), true));
    return Status::ok();
  }

  int8_t* pinned8() const { return reinterpret_cast<int8_t*>(pinned); }

  // Queries -> the device (bf16, or int8 with their scales), through the pinned staging.
  Status upload_queries(int nq, const float* query_rows) {
    const int d = opt.dimension;
    std::vector<float> scales(opt.int8 ? nq : 0);
    for (int b = 0; b < nq; ++b) {
      const float* q = query_rows + static_cast<int64_t>(b) * d;
      if (opt.int8) {
        int8_t* dst = pinned8() + b * ld;
        scales[b] = quantize_int8(q, d, dst);
        std::memset(dst + d, 0, ld - d);
      } else {
        for (int j = 0; j < d; ++j) pinned[b * ld + j] = to_bf16(q[j]);
        for (int64_t j = d; j < ld; ++j) pinned[b * ld + j] = 0;
      }
    }
    CUDA_CHECK(
        cudaMemcpyAsync(queries.ptr, pinned, nq * row_bytes, cudaMemcpyHostToDevice, stream));
    if (opt.int8) {
      CUDA_CHECK(
          cudaMemcpyAsync(query_scales.ptr, scales.data(), nq * 4, cudaMemcpyHostToDevice, stream));
      CUDA_CHECK(cudaStreamSynchronize(stream));  // `scales` is pageable and goes out of scope
    }
    return Status::ok();
  }

  // scores[b * scores_ld + r] = row (base + r) . query b for the n rows of chunk c, fp32
  // (column-major: rows x queries). int8: an int32 GEMM over the padded row (zeros past the
  // dimension add nothing), then the scales, in place.
  Status score_chunk(int64_t c, int64_t base, int64_t n, int nq) {
    if (!opt.int8) {
      const float one = 1.0f, zero = 0.0f;
      CUBLAS_CHECK(
          cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), nq, opt.dimension,
                       &one, chunks[c].ptr, CUDA_R_16BF, static_cast<int>(ld), queries.ptr,
                       CUDA_R_16BF, static_cast<int>(ld), &zero, scores.ptr, CUDA_R_32F,
                       static_cast<int>(scores_ld), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      return Status::ok();
    }
    // m and n rounded up to 4 (the buffers hold the extra rows and columns; their products are
    // never read): cuBLAS's int8 kernels want every dimension a multiple of 4.
    const int32_t one = 1, zero = 0;
    CUBLAS_CHECK(cublasGemmEx(
        cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(round_up(n, 4)),
        static_cast<int>(round_up(nq, 4)), static_cast<int>(ld), &one, chunks[c].ptr, CUDA_R_8I,
        static_cast<int>(ld), queries.ptr, CUDA_R_8I, static_cast<int>(ld), &zero, scores.ptr,
        CUDA_R_32I, static_cast<int>(scores_ld), CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT));
    CUDA_CHECK(launch_scale_scores(scores.ptr, scores_ld, n, nq, base,
                                   static_cast<const float*>(row_scales.ptr),
                                   static_cast<const float*>(query_scales.ptr), stream));
    return Status::ok();
  }

  // The score buffer holds max_batch (rounded up to 4) x min(chunk_rows, rows rounded to 1024)
  // (a multiple of 4).
  Status reserve_scores(int64_t rows) {
    const int64_t score_rows = std::min(opt.chunk_rows, round_up(rows, 1024));
    if (scores_ld < score_rows) {
      QS_RETURN_IF_ERROR(
          grow(&scores, static_cast<size_t>(round_up(opt.max_batch, 4)) * score_rows * 4, false));
      scores_ld = score_rows;
    }
    return Status::ok();
  }

  // A per-row fp32 device array follows a compaction's moves (host round trip: compaction is
  // rare and the array is 4 bytes a row).
  Status move_floats(DeviceBuffer* buf, const int64_t* src, const int64_t* dst, int64_t n) {
    std::vector<float> v(buf->bytes / 4);
    CUDA_CHECK(cudaMemcpyAsync(v.data(), buf->ptr, buf->bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int64_t i = 0; i < n; ++i) v[dst[i]] = v[src[i]];
    CUDA_CHECK(cudaMemcpy(buf->ptr, v.data(), buf->bytes, cudaMemcpyHostToDevice));
    return Status::ok();
  }

  char* row_ptr(int64_t row) const {
    return static_cast<char*>(chunks[chunk_of(row)].ptr) + (row % opt.chunk_rows) * row_bytes;
  }
};

GpuDevice::GpuDevice(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuDevice::~GpuDevice() {
  if (impl_) cudaSetDevice(impl_->opt.device);
}

StatusOr<std::unique_ptr<GpuDevice>> GpuDevice::open(const GpuDeviceOptions& options) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return unavailable("no CUDA device");
  }
  if (options.device < 0 || options.device >= count)
    return unavailable("CUDA device " + std::to_string(options.device) + " not present (" +
                       std::to_string(count) + " devices)");
  if (options.dimension < 1 || options.max_batch < 1 || options.max_batch > 1024)
    return invalid_argument("gpu index: bad dimension or batch size");
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  impl->ld = round_up(options.dimension, options.int8 ? 16 : 8);
  impl->row_bytes = impl->ld * (options.int8 ? 1 : 2);
  if (impl->opt.chunk_rows <= 0)
    impl->opt.chunk_rows =
        std::max<int64_t>(1024, ((int64_t{1} << 30) / impl->row_bytes) / 1024 * 1024);
  if (options.int8) impl->opt.chunk_rows = round_up(impl->opt.chunk_rows, 4);
  CUDA_CHECK(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device));
  impl->name = prop.name;
  CUDA_CHECK(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&impl->cublas));
  CUBLAS_CHECK(cublasSetStream(impl->cublas, impl->stream));
  CUDA_CHECK(cudaMallocHost(&impl->pinned, kStagingRows * impl->row_bytes));
  CUDA_CHECK(
      cudaMallocHost(&impl->pinned_out, static_cast<size_t>(options.max_batch) * kTopkMaxK * 8));
  QS_RETURN_IF_ERROR(grow(&impl->queries,
                          static_cast<size_t>(round_up(options.max_batch, 4)) * impl->row_bytes,
                          false));
  QS_RETURN_IF_ERROR(
      grow(&impl->filter_ptrs, static_cast<size_t>(options.max_batch) * sizeof(void*), false));
  if (options.int8)
    QS_RETURN_IF_ERROR(
        grow(&impl->query_scales, static_cast<size_t>(options.max_batch) * 4, false));
  return std::unique_ptr<GpuDevice>(new GpuDevice(std::move(impl)));
}

Status GpuDevice::write_rows(int64_t first, int64_t n, const float* rows) {
  Impl& m = *impl_;
  if (n <= 0) return Status::ok();
  CUDA_CHECK(cudaSetDevice(m.opt.device));
  QS_RETURN_IF_ERROR(m.reserve(first + n));
  const int d = m.opt.dimension;
  std::vector<float> norms, scales;
  for (int64_t done = 0; done < n;) {
    // A piece never crosses a chunk boundary and fits the staging buffer.
    const int64_t row = first + done;
    const int64_t left_in_chunk = m.opt.chunk_rows - row % m.opt.chunk_rows;
    const int64_t count = std::min({n - done, kStagingRows, left_in_chunk});
    // Round to bf16 on a few threads (a rebuild moves gigabytes through here).
    const unsigned parts = count * d >= (1 << 20)
                               ? std::min(8u, std::max(1u, std::thread::hardware_concurrency()))
                               : 1u;
    if (m.opt.l2) norms.assign(count, 0.f);
    if (m.opt.int8) scales.assign(count, 0.f);
    auto convert = [&](unsigned part) {
      for (int64_t i = part * count / parts; i < (part + 1) * count / parts; ++i) {
        const float* src = rows + (done + i) * d;
        if (m.opt.int8) {
          int8_t* dst = m.pinned8() + i * m.ld;
          const float scale = quantize_int8(src, d, dst);
          std::memset(dst + d, 0, m.ld - d);
          scales[i] = scale;
          if (m.opt.l2) {
            double sq = 0;
            for (int j = 0; j < d; ++j) {
              const double v = static_cast<double>(dst[j]) * scale;
              sq += v * v;
            }
            norms[i] = static_cast<float>(sq);
          }
          continue;
        }
        uint16_t* dst = m.pinned + i * m.ld;
        double sq = 0;
        for (int j = 0; j < d; ++j) {
          dst[j] = to_bf16(src[j]);
          if (m.opt.l2) {
            const double v = from_bf16(dst[j]);
            sq += v * v;
          }
        }
        for (int64_t j = d; j < m.ld; ++j) dst[j] = 0;
        if (m.opt.l2) norms[i] = static_cast<float>(sq);
      }
    };
    if (parts == 1) {
      convert(0);
    } else {
      std::vector<std::thread> threads;
      for (unsigned p = 1; p < parts; ++p) threads.emplace_back(convert, p);
      convert(0);
      for (auto& t : threads) t.join();
    }
    CUDA_CHECK(cudaMemcpyAsync(m.row_ptr(row), m.pinned, count * m.row_bytes,
                               cudaMemcpyHostToDevice, m.stream));
    if (m.opt.l2)
      CUDA_CHECK(cudaMemcpyAsync(static_cast<float*>(m.norms.ptr) + row, norms.data(), count * 4,
                                 cudaMemcpyHostToDevice, m.stream));
    if (m.opt.int8)
      CUDA_CHECK(cudaMemcpyAsync(static_cast<float*>(m.row_scales.ptr) + row, scales.data(),
                                 count * 4, cudaMemcpyHostToDevice, m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));  // the staging buffer is reused
    done += count;
  }
  return Status::ok();
}

Status GpuDevice::write_live(int64_t first_word, int64_t n, const uint32_t* words) {
  Impl& m = *impl_;
  if (n <= 0) return Status::ok();
  if (static_cast<size_t>(first_word + n) * 4 > m.live.bytes)
    return internal_error("gpu index: live bitmap write past its storage");
  CUDA_CHECK(cudaSetDevice(m.opt.device));
  CUDA_CHECK(cudaMemcpy(static_cast<uint32_t*>(m.live.ptr) + first_word, words, n * 4,
                        cudaMemcpyHostToDevice));
  return Status::ok();
}

Status GpuDevice::move_rows(const int64_t* src, const int64_t* dst, int64_t n) {
  Impl& m = *impl_;
  if (n <= 0) return Status::ok();
  CUDA_CHECK(cudaSetDevice(m.opt.device));
  QS_RETURN_IF_ERROR(grow(&m.pairs, static_cast<size_t>(n) * 16, false));
  int64_t* d_src = static_cast<int64_t*>(m.pairs.ptr);
  int64_t* d_dst = d_src + n;
  CUDA_CHECK(cudaMemcpy(d_src, src, n * 8, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_dst, dst, n * 8, cudaMemcpyHostToDevice));
  CUDA_CHECK(launch_copy_rows(static_cast<void* const*>(m.chunk_ptrs.ptr), m.opt.chunk_rows,
                              m.row_bytes, d_src, d_dst, n, m.stream));
  if (m.opt.l2) QS_RETURN_IF_ERROR(m.move_floats(&m.norms, src, dst, n));
  if (m.opt.int8) QS_RETURN_IF_ERROR(m.move_floats(&m.row_scales, src, dst, n));
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
  return Status::ok();
}

Status GpuDevice::read_rows(int64_t first, int64_t n, float* out) const {
  const Impl& m = *impl_;
  CUDA_CHECK(cudaSetDevice(m.opt.device));
  const int d = m.opt.dimension;
  for (int64_t done = 0; done < n;) {
    const int64_t row = first + done;
    const int64_t count =
        std::min({n - done, kStagingRows, m.opt.chunk_rows - row % m.opt.chunk_rows});
    CUDA_CHECK(cudaMemcpyAsync(m.pinned, m.row_ptr(row), count * m.row_bytes,
                               cudaMemcpyDeviceToHost, m.stream));
    std::vector<float> scales(m.opt.int8 ? count : 0);
    if (m.opt.int8)
      CUDA_CHECK(cudaMemcpyAsync(scales.data(), static_cast<const float*>(m.row_scales.ptr) + row,
                                 count * 4, cudaMemcpyDeviceToHost, m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));
    for (int64_t i = 0; i < count; ++i) {
      float* o = out + (done + i) * d;
      if (m.opt.int8) {
        const int8_t* src = m.pinned8() + i * m.ld;
        for (int j = 0; j < d; ++j) o[j] = static_cast<float>(src[j]) * scales[i];
      } else {
        for (int j = 0; j < d; ++j) o[j] = from_bf16(m.pinned[i * m.ld + j]);
      }
    }
    done += count;
  }
  return Status::ok();
}

Status GpuDevice::search(int64_t rows, int nq, const float* query_rows,
                         const uint32_t* const* filters, int k, float* out_keys,
                         int32_t* out_rows) {
  Impl& m = *impl_;
  if (nq < 1 || nq > m.opt.max_batch) return invalid_argument("gpu index: bad batch size");
  if (k < 1 || k > kTopkMaxK)
    return invalid_argument("gpu index: k must be in 1.." + std::to_string(kTopkMaxK));
  if (rows <= 0) {
    std::fill(out_keys, out_keys + static_cast<int64_t>(nq) * k, -INFINITY);
    std::fill(out_rows, out_rows + static_cast<int64_t>(nq) * k, -1);
    return Status::ok();
  }
  CUDA_CHECK(cudaSetDevice(m.opt.device));
  QS_RETURN_IF_ERROR(m.upload_queries(nq, query_rows));

  // Filters: one bitmap per filtered query.
  const uint32_t* const* d_filter_ptrs = nullptr;
  bool any_filter = false;
  for (int b = 0; filters && b < nq; ++b) any_filter = any_filter || filters[b] != nullptr;
  const int64_t words = ceil_div(rows, 32);
  if (any_filter) {
    if (m.filter_words < words) {
      QS_RETURN_IF_ERROR(grow(&m.filters, static_cast<size_t>(m.opt.max_batch) * words * 4, false));
      m.filter_words = words;
    }
    std::vector<const uint32_t*> ptrs(nq, nullptr);
    for (int b = 0; b < nq; ++b) {
      if (!filters[b]) continue;
      uint32_t* dst = static_cast<uint32_t*>(m.filters.ptr) + b * m.filter_words;
      CUDA_CHECK(cudaMemcpyAsync(dst, filters[b], words * 4, cudaMemcpyHostToDevice, m.stream));
      ptrs[b] = dst;
    }
    CUDA_CHECK(cudaMemcpyAsync(m.filter_ptrs.ptr, ptrs.data(), nq * sizeof(void*),
                               cudaMemcpyHostToDevice, m.stream));
    d_filter_ptrs = static_cast<const uint32_t* const*>(m.filter_ptrs.ptr);
  }

  // Candidates: per query, the best k of every slice of every chunk, side by side.
  const int64_t nchunks = ceil_div(rows, m.opt.chunk_rows);
  int64_t per_query = 0;
  for (int64_t c = 0; c < nchunks; ++c)
    per_query += topk_slices(std::min(m.opt.chunk_rows, rows - c * m.opt.chunk_rows), kSlice) * k;
  QS_RETURN_IF_ERROR(m.reserve_scores(rows));
  const size_t cand_bytes = static_cast<size_t>(nq) * per_query * 4;
  for (int i = 0; i < 2; ++i) {
    QS_RETURN_IF_ERROR(grow(&m.cand_keys[i], cand_bytes, false));
    QS_RETURN_IF_ERROR(grow(&m.cand_rows[i], cand_bytes, false));
  }
  int64_t out_col = 0;
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t base = c * m.opt.chunk_rows;
    const int64_t n = std::min(m.opt.chunk_rows, rows - base);
    QS_RETURN_IF_ERROR(m.score_chunk(c, base, n, nq));
    CUDA_CHECK(launch_topk_scores(static_cast<const float*>(m.scores.ptr), m.scores_ld, n, nq, base,
                                  static_cast<const uint32_t*>(m.live.ptr), d_filter_ptrs,
                                  m.opt.l2 ? static_cast<const float*>(m.norms.ptr) : nullptr, k,
                                  kSlice, static_cast<float*>(m.cand_keys[0].ptr) + out_col,
                                  static_cast<int32_t*>(m.cand_rows[0].ptr) + out_col, per_query,
                                  m.stream));
    out_col += topk_slices(n, kSlice) * k;
  }
  // Merge rounds until one slice (k candidates) per query is left.
  int cur = 0;
  int64_t m_per_query = per_query;
  const int64_t merge_slice = std::max<int64_t>(kSlice, 4 * static_cast<int64_t>(k));
  while (m_per_query > k) {
    const int64_t slices = topk_slices(m_per_query, merge_slice);
    CUDA_CHECK(launch_topk_merge(static_cast<const float*>(m.cand_keys[cur].ptr),
                                 static_cast<const int32_t*>(m.cand_rows[cur].ptr), m_per_query, nq,
                                 k, merge_slice, static_cast<float*>(m.cand_keys[1 - cur].ptr),
                                 static_cast<int32_t*>(m.cand_rows[1 - cur].ptr), slices * k,
                                 m.stream));
    cur = 1 - cur;
    m_per_query = slices * k;
  }
  float* h_keys = m.pinned_out;
  int32_t* h_rows = reinterpret_cast<int32_t*>(m.pinned_out + static_cast<size_t>(nq) * k);
  CUDA_CHECK(cudaMemcpyAsync(h_keys, m.cand_keys[cur].ptr, static_cast<size_t>(nq) * k * 4,
                             cudaMemcpyDeviceToHost, m.stream));
  CUDA_CHECK(cudaMemcpyAsync(h_rows, m.cand_rows[cur].ptr, static_cast<size_t>(nq) * k * 4,
                             cudaMemcpyDeviceToHost, m.stream));
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
  std::memcpy(out_keys, h_keys, static_cast<size_t>(nq) * k * 4);
  std::memcpy(out_rows, h_rows, static_cast<size_t>(nq) * k * 4);
  return Status::ok();
}

Status GpuDevice::score_all(int64_t rows, int nq, const float* query_rows, float* out) {
  Impl& m = *impl_;
  if (nq < 1 || nq > m.opt.max_batch) return invalid_argument("gpu index: bad batch size");
  if (rows <= 0) return Status::ok();
  CUDA_CHECK(cudaSetDevice(m.opt.device));
  QS_RETURN_IF_ERROR(m.upload_queries(nq, query_rows));
  QS_RETURN_IF_ERROR(m.reserve_scores(rows));
  for (int64_t base = 0, c = 0; base < rows; base += m.opt.chunk_rows, ++c) {
    const int64_t n = std::min(m.opt.chunk_rows, rows - base);
    QS_RETURN_IF_ERROR(m.score_chunk(c, base, n, nq));
    for (int b = 0; b < nq; ++b)
      CUDA_CHECK(cudaMemcpyAsync(out + b * rows + base,
                                 static_cast<const float*>(m.scores.ptr) + b * m.scores_ld, n * 4,
                                 cudaMemcpyDeviceToHost, m.stream));
    CUDA_CHECK(cudaStreamSynchronize(m.stream));  // the score buffer is reused by the next chunk
  }
  if (m.opt.l2) {
    std::vector<float> norms(rows);
    CUDA_CHECK(cudaMemcpy(norms.data(), m.norms.ptr, rows * 4, cudaMemcpyDeviceToHost));
    for (int b = 0; b < nq; ++b)
      for (int64_t r = 0; r < rows; ++r) out[b * rows + r] = 2.0f * out[b * rows + r] - norms[r];
  }
  return Status::ok();
}

int64_t GpuDevice::bytes_reserved() const {
  int64_t total = 0;
  for (const auto& c : impl_->chunks) total += static_cast<int64_t>(c.bytes);
  for (const auto* b :
       {&impl_->live, &impl_->norms, &impl_->row_scales, &impl_->query_scales, &impl_->scores,
        &impl_->cand_keys[0], &impl_->cand_keys[1], &impl_->cand_rows[0], &impl_->cand_rows[1],
        &impl_->filters, &impl_->queries})
    total += static_cast<int64_t>(b->bytes);
  return total;
}

std::string GpuDevice::device_name() const { return impl_->name; }

int GpuDevice::device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

#endif  // QSEARCH_HAVE_CUDA

}  // namespace qsearch::index_internal
