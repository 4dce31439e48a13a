// Helpers of the GPU kernel tests: device buffers, random data, bf16 rounding, comparisons.
// Every test calls QS_REQUIRE_GPU() first: without a visible GPU (or in a build without CUDA) it
// skips with a message, so the binary still builds and runs in CI.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "embed/embedder.h"
#include "embed/model/weights.h"

#define QS_REQUIRE_GPU()                                                         \
  do {                                                                           \
    if (::qsearch::cuda_device_count() == 0)                                     \
      GTEST_SKIP() << "no CUDA device visible (or built without CUDA): skipped"; \
  } while (0)

#if QSEARCH_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "common.cuh"

namespace qsearch::testing {

#define QS_ASSERT_OK(expr)                             \
  do {                                                 \
    ::qsearch::Status qs_st_ = (expr);                 \
    ASSERT_TRUE(qs_st_.is_ok()) << qs_st_.to_string(); \
  } while (0)
#define QS_ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// A device array of T; freed on scope exit.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)) !=
        cudaSuccess)
      p_ = nullptr;
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  bool upload(const std::vector<T>& host) {
    return cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) ==
           cudaSuccess;
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cudaDeviceSynchronize();
    if (cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) h.clear();
    return h;
  }
  // Fills with a byte pattern (0xff bytes: bf16 and fp32 NaN), to catch unwritten outputs.
  void poison() { cudaMemset(p_, 0xff, n_ * sizeof(T)); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

inline uint16_t to_bits(bf16 v) {
  uint16_t b;
  std::memcpy(&b, static_cast<const void*>(&v), 2);
  return b;
}
inline bf16 from_bits(uint16_t b) {
  bf16 v;
  std::memcpy(static_cast<void*>(&v), &b, 2);
  return v;
}
inline float to_float(bf16 v) { return bf16_to_float(to_bits(v)); }
inline bf16 to_bf16(float f) { return from_bits(float_to_bf16(f)); }
inline float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// n values ~ N(0, std), already rounded to bf16 so the host reference sees what the GPU sees.
inline std::vector<bf16> random_bf16(size_t n, float std, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<bf16> v(n);
  for (auto& x : v) x = to_bf16(d(rng));
  return v;
}
inline std::vector<float> random_f32(size_t n, float mean, float std, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// |got - want| <= abs_tol + rel_tol * |want| for every element; reports the first failures.
inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<double>& want, double rel_tol,
                                            double abs_tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  int bad = 0;
  ::testing::AssertionResult r = ::testing::AssertionFailure();
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= abs_tol + rel_tol * std::fabs(want[i]))) {
      if (bad < 5) r << "[" << i << "] got " << got[i] << " want " << want[i] << "; ";
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return r << bad << " of " << got.size() << " elements differ";
}

// ||got - want|| / ||want||
inline double rel_l2(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

inline std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = to_float(v[i]);
  return f;
}

}  // namespace qsearch::testing
#endif  // QSEARCH_HAVE_CUDA
