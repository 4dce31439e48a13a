// The independent GPU reference of gpu_reference.h (no tests of its own: gpu_join_test.cc
// uses it). 64 x 64 output tiles per block of 256 threads, 4 x 4 outputs per thread, fp32.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "dedup_test_util.h"
#include "gpu_reference.h"

namespace qsearch::dedup_test {
namespace {

__global__ void reference_pairs_kernel(const float* __restrict__ x, int n, int dim, float lo,
                                       long long* out, unsigned long long capacity,
                                       unsigned long long* count) {
  const int tile_i = blockIdx.y * 64;
  const int tile_j = blockIdx.x * 64;
  if (tile_j + 63 <= tile_i) return;
  __shared__ float as[32][65];
  __shared__ float bs[32][65];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < dim; k0 += 32) {
    for (int e = threadIdx.x; e < 64 * 32; e += 256) {
      const int r = e / 32, k = e % 32;
      const int gi = tile_i + r, gj = tile_j + r;
      as[k][r] = (gi < n && k0 + k < dim) ? x[static_cast<long long>(gi) * dim + k0 + k] : 0.f;
      bs[k][r] = (gj < n && k0 + k < dim) ? x[static_cast<long long>(gj) * dim + k0 + k] : 0.f;
    }
    __syncthreads();
    for (int k = 0; k < 32; ++k) {
      float a[4], b[4];
      for (int q = 0; q < 4; ++q) {
        a[q] = as[k][ty + 16 * q];
        b[q] = bs[k][tx + 16 * q];
      }
      for (int p = 0; p < 4; ++p)
        for (int q = 0; q < 4; ++q) acc[p][q] = fmaf(a[p], b[q], acc[p][q]);
    }
    __syncthreads();
  }
  for (int p = 0; p < 4; ++p)
    for (int q = 0; q < 4; ++q) {
      const int i = tile_i + ty + 16 * p, j = tile_j + tx + 16 * q;
      if (i < n && j < n && j > i && acc[p][q] > lo) {
        const unsigned long long slot = atomicAdd(count, 1ULL);
        if (slot < capacity) out[slot] = static_cast<long long>(i) * n + j;
      }
    }
}

}  // namespace

std::string gpu_brute_force_pairs(const float* x, int64_t n, int dim, double threshold,
                                  std::vector<SimilarPair>* out) {
  out->clear();
  std::vector<float> xn(static_cast<size_t>(n) * dim);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int k = 0; k < dim; ++k) ss += static_cast<double>(x[i * dim + k]) * x[i * dim + k];
    const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
    for (int k = 0; k < dim; ++k) xn[i * dim + k] = static_cast<float>(x[i * dim + k] * inv);
  }
  float* d_x = nullptr;
  long long* d_out = nullptr;
  unsigned long long* d_count = nullptr;
  const unsigned long long capacity = 1ULL << 24;
  auto check = [](cudaError_t e, const char* what) -> std::string {
    return e == cudaSuccess ? "" : std::string(what) + ": " + cudaGetErrorString(e);
  };
  std::string err = check(cudaMalloc(&d_x, xn.size() * sizeof(float)), "cudaMalloc");
  if (err.empty()) err = check(cudaMalloc(&d_out, capacity * sizeof(long long)), "cudaMalloc");
  if (err.empty()) err = check(cudaMalloc(&d_count, sizeof(unsigned long long)), "cudaMalloc");
  if (err.empty())
    err = check(cudaMemcpy(d_x, xn.data(), xn.size() * sizeof(float), cudaMemcpyHostToDevice),
                "cudaMemcpy");
  if (err.empty()) err = check(cudaMemset(d_count, 0, sizeof(unsigned long long)), "cudaMemset");
  unsigned long long count = 0;
  if (err.empty()) {
    const unsigned tiles = static_cast<unsigned>((n + 63) / 64);
    reference_pairs_kernel<<<dim3(tiles, tiles), 256>>>(d_x, static_cast<int>(n), dim,
                                                        static_cast<float>(threshold - 1e-3), d_out,
                                                        capacity, d_count);
    err = check(cudaGetLastError(), "reference kernel launch");
  }
  if (err.empty()) err = check(cudaDeviceSynchronize(), "reference kernel");
  if (err.empty())
    err = check(cudaMemcpy(&count, d_count, sizeof(count), cudaMemcpyDeviceToHost), "cudaMemcpy");
  if (err.empty() && count > capacity) err = "reference: too many candidates";
  std::vector<long long> keys(count);
  if (err.empty() && count > 0)
    err = check(cudaMemcpy(keys.data(), d_out, count * sizeof(long long), cudaMemcpyDeviceToHost),
                "cudaMemcpy");
  cudaFree(d_x);
  cudaFree(d_out);
  cudaFree(d_count);
  if (!err.empty()) return err;
  for (long long key : keys) {
    const int64_t i = key / n, j = key % n;
    const double s = reference_cosine(x + i * dim, x + j * dim, dim);
    if (s >= threshold - 1e-12) out->push_back(SimilarPair{i, j, static_cast<float>(s)});
  }
  std::sort(out->begin(), out->end(), [](const SimilarPair& a, const SimilarPair& b) {
    return a.i != b.i ? a.i < b.i : a.j < b.j;
  });
  return "";
}

}  // namespace qsearch::dedup_test
