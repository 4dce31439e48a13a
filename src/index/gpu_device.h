// The device side of the "gpu" index (gpu_index.h): a collection's rows resident in GPU memory
// as bf16 or int8, scored by cuBLAS chunk by chunk (bf16 x bf16 -> fp32 accumulate; or int8 x
// int8 -> int32, scaled to fp32 by kernels/scale_scores.cuh), the best k per query chosen by
// our own kernels (kernels/topk.cuh). One GpuDevice is one shard: the index may open several,
// on different ordinals or on the same one. No CUDA header here: built without CUDA
// (or without a device) open() says why and the index falls back to CPU flat search.
//
// Rows: global row r is at chunk r / chunk_rows, row r % chunk_rows; a row holds `dimension`
// bf16 values padded with zeros to a multiple of 8, or (int8) `dimension` int8 values padded
// to a multiple of 16 plus one fp32 scale a row (absmax / 127, symmetric: value = q * scale).
// int8 queries get the same per-query quantization; cuBLAS's int8 GEMM takes the rows as the
// transposed operand (TN) with every leading dimension a multiple of 4, and m is rounded up to
// 4 (chunk_rows is rounded to a multiple of 4 for int8, so that stays inside a chunk).
// Chunks are allocated as rows arrive (the last one grows by doubling up to chunk_rows), so
// storage never moves wholesale. A bitmap over rows (one bit a row) says which rows are live;
// removal clears a bit (the host mirror lives in GpuIndex), compaction moves rows (move_rows).
//
// Thread safety: none; GpuIndex calls each GpuDevice from one thread at a time (its shard's
// device mutex). Two GpuDevices (two shards, even on one ordinal) may run concurrently: each
// has its own stream, cuBLAS handle and buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace qsearch::index_internal {

struct GpuDeviceOptions {
  int device = 0;  // CUDA device ordinal
  int dimension = 0;
  bool l2 = false;         // squared L2 (keeps row norms) instead of inner product
  int64_t chunk_rows = 0;  // rows a chunk (0: about 1 GiB of bf16 rows, a multiple of 1024)
  int max_batch = 64;      // most queries one search() takes
  // Row storage never grows into the last `headroom_bytes` of free device memory (left to the
  // embedding engine and to cuBLAS); past that write_rows answers kResourceExhausted.
  int64_t headroom_bytes = int64_t{1} << 30;
  bool int8 = false;  // rows (and queries) as int8 with a per-row scale instead of bf16
};

class GpuDevice {
 public:
  // kUnavailable naming the reason when there is no usable device (or no CUDA in this build).
  static StatusOr<std::unique_ptr<GpuDevice>> open(const GpuDeviceOptions& options);
  ~GpuDevice();
  GpuDevice(const GpuDevice&) = delete;
  GpuDevice& operator=(const GpuDevice&) = delete;

  // Writes n rows (fp32, row-major, rounded to bf16 here) at global rows [first, first + n),
  // allocating storage as needed. kResourceExhausted when device memory runs out; rows below
  // `first` are untouched then.
  Status write_rows(int64_t first, int64_t n, const float* rows);
  // Uploads live-bitmap words [first_word, first_word + n) (storage covers every written row).
  Status write_live(int64_t first_word, int64_t n, const uint32_t* words);
  // Copies row src[i] over row dst[i] (pairs must not chain); norms follow.
  Status move_rows(const int64_t* src, const int64_t* dst, int64_t n);
  // Reads n rows from `first` back as fp32 (the bf16 values, or the dequantized int8 ones).
  Status read_rows(int64_t first, int64_t n, float* out) const;

  // Exact search over rows [0, rows): for each of `queries` (<= max_batch) query vectors
  // (fp32, row-major) the best k (1..kTopkMaxK) live rows that pass filters[b] (a host bitmap
  // over rows, or null; `filters` itself may be null). out_keys / out_rows: queries * k, best
  // first; key = inner product, or 2 q.x - |x|^2 for L2; row -1 where fewer than k qualify.
  Status search(int64_t rows, int queries, const float* query_rows, const uint32_t* const* filters,
                int k, float* out_keys, int32_t* out_rows);

  // Every row's key (as search() defines it) for `queries` (<= max_batch) query vectors, into
  // out (queries x rows, row-major), tombstones included: the path for k > kTopkMaxK, where the
  // caller selects on the host.
  Status score_all(int64_t rows, int queries, const float* query_rows, float* out);

  int64_t bytes_reserved() const;  // device memory held now
  std::string device_name() const;

  // CUDA devices visible to this process (0 without CUDA).
  static int device_count();

 private:
  struct Impl;
  explicit GpuDevice(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// fp32 <-> bf16 (round to nearest even; NaN stays NaN), as the device stores rows.
uint16_t to_bf16(float f);
float from_bf16(uint16_t h);

// fp32 -> int8 as the device stores an int8 row: scale = absmax / 127 (1 for an all-zero row),
// out[j] = round(x[j] / scale) in [-127, 127]. Returns the scale.
float quantize_int8(const float* x, int n, int8_t* out);

}  // namespace qsearch::index_internal
