// int32 dot products -> fp32 scores, in place (the GPU index's int8 rows, src/index/gpu_device.cc).
//
// Layout: as kernels/topk.cuh: query b's product with database row r at buf[b * ld + r], r in
// [0, n), written by cuBLAS as int32 (CUDA_R_32I). Each becomes the fp32 value
// int * query_scales[b] * row_scales[row_base + r] at the same address: rows and queries are
// int8 with one symmetric scale each (absmax / 127), so this is their dequantized dot product.
// Numerics: the int32 sum is exact (|sum| <= 127 * 127 * dims < 2^31 for dims < 133,000); the
// two multiplications round to fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qsearch {

cudaError_t launch_scale_scores(void* buf, int64_t ld, int64_t n, int queries, int64_t row_base,
                                const float* row_scales, const float* query_scales,
                                cudaStream_t stream);

}  // namespace qsearch
