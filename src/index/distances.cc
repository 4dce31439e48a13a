#include "index/distances.h"

#include <cblas.h>
#include <immintrin.h>

namespace qsearch::index_internal {
namespace {

float dot_scalar(const float* a, const float* b, size_t d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  }
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

float l2_scalar(const float* a, const float* b, size_t d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const float t = a[i + j] - b[i + j];
      s[j] += t * t;
    }
  }
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < d; ++i) r += (a[i] - b[i]) * (a[i] - b[i]);
  return r;
}

__attribute__((target("avx2,fma"))) float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= d; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float r = hsum256(_mm256_add_ps(s0, s1));
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

__attribute__((target("avx2,fma"))) float l2_avx2(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    s0 = _mm256_fmadd_ps(t0, t0, s0);
    s1 = _mm256_fmadd_ps(t1, t1, s1);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 t = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    s0 = _mm256_fmadd_ps(t, t, s0);
  }
  float r = hsum256(_mm256_add_ps(s0, s1));
  for (; i < d; ++i) r += (a[i] - b[i]) * (a[i] - b[i]);
  return r;
}

using Kernel = float (*)(const float*, const float*, size_t);

bool detect_simd() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
const bool kSimd = detect_simd();
const Kernel kDot = kSimd ? dot_avx2 : dot_scalar;
const Kernel kL2 = kSimd ? l2_avx2 : l2_scalar;

struct FastDistanceComputer : faiss::FlatCodesDistanceComputer {
  FastDistanceComputer(const faiss::IndexFlat& storage)
      : faiss::FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
        d(static_cast<size_t>(storage.d)),
        ip(storage.metric_type == faiss::METRIC_INNER_PRODUCT) {}
  void set_query(const float* x) override { q = x; }
  float distance_to_code(const uint8_t* code) final {
    return ip ? kDot(q, reinterpret_cast<const float*>(code), d)
              : kL2(q, reinterpret_cast<const float*>(code), d);
  }
  float symmetric_dis(idx_t i, idx_t j) override {
    const float* a = reinterpret_cast<const float*>(codes + i * code_size);
    const float* b = reinterpret_cast<const float*>(codes + j * code_size);
    return ip ? kDot(a, b, d) : kL2(a, b, d);
  }
  size_t d;
  bool ip;
  const float* q = nullptr;
};

}  // namespace

float dot_product(const float* a, const float* b, size_t d) { return kDot(a, b, d); }
float l2_squared(const float* a, const float* b, size_t d) { return kL2(a, b, d); }
bool simd_available() { return kSimd; }

void inner_products(const float* x, size_t n, size_t d, const float* q, float* scores) {
  if (n == 0) return;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(d), 1.0f,
              x, static_cast<blasint>(d), q, 1, 0.0f, scores, 1);
}

faiss::FlatCodesDistanceComputer* FastFlatStorage::get_FlatCodesDistanceComputer() const {
  return new FastDistanceComputer(*this);
}

FastFlatStorage* FastFlatStorage::adopt(faiss::IndexFlat* flat) {
  auto* fast = new FastFlatStorage(flat->d, flat->metric_type);
  fast->codes = std::move(flat->codes);
  fast->ntotal = flat->ntotal;
  flat->codes.clear();
  flat->ntotal = 0;
  return fast;
}

}  // namespace qsearch::index_internal
