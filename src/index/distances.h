// Vector distance kernels for the indexes, with runtime dispatch to AVX2+FMA where the CPU has
// it. Why our own: Debian's libfaiss is built for baseline x86-64, where fvec_inner_product /
// fvec_L2sqr are scalar reference loops (about 8x slower at 1024 dims). The HNSW storage, the
// IVF list scanner and the flat scan use these instead.
#pragma once

#include <faiss/IndexFlat.h>
#include <faiss/impl/DistanceComputer.h>

#include <cstddef>
#include <cstdint>

#include "index/vector_index.h"

namespace qsearch::index_internal {

float dot_product(const float* a, const float* b, size_t d);
float l2_squared(const float* a, const float* b, size_t d);
bool simd_available();  // AVX2+FMA in use

// scores[j] = <q, x_j> for n rows of x (row-major, d columns), via BLAS (multi-threaded sgemv).
void inner_products(const float* x, size_t n, size_t d, const float* q, float* scores);

// An IndexFlat whose distance computer uses the kernels above; a drop-in storage for
// IndexHNSW (FAISS serialises it as a plain IndexFlat; adopt() swaps it back in after loading).
struct FastFlatStorage : faiss::IndexFlat {
  FastFlatStorage(int d, faiss::MetricType metric) : faiss::IndexFlat(d, metric) {}
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override;
  // Takes over the vectors of `flat` (which is left empty).
  static FastFlatStorage* adopt(faiss::IndexFlat* flat);
};

}  // namespace qsearch::index_internal
