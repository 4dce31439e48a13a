// Tensor-core similarity tiles with the threshold filter fused into the epilogue, and the
// stand-alone filter for tiles that cuBLAS wrote (see similarity.cuh for the contract).
//
// Fused kernel: one CTA of 4 warps computes a 128 x 128 tile of A.B^T, each warp 64 x 64 as
// 4 x 8 mma.sync.m16n8k16 (bf16 in, fp32 accumulate). K is walked in slices of 32 through a
// 4-stage cp.async ring in shared memory (16 KB a stage); rows of 64 bytes are stored with
// their four 16-byte chunks XOR-swizzled by (row / 2) % 4 so that ldmatrix reads are free of
// bank conflicts. CTAs are rasterised in groups of 8 row tiles so the column tiles a group
// walks stay in L2. The epilogue checks the 128 accumulators of each thread against the
// threshold and appends hits with one atomicAdd per warp (ballot + popc).
#include <cuda_bf16.h>

#include "similarity.cuh"

namespace qsearch {
namespace {

constexpr int kBM = 128;
constexpr int kBN = 128;
constexpr int kBK = 32;
constexpr int kStages = 4;
constexpr int kThreads = 128;
constexpr int kTileBytes = kBM * kBK * 2;             // one operand, one stage: 8 KB
constexpr int kSmemBytes = kStages * 2 * kTileBytes;  // 64 KB
constexpr int kGroupRows = 8;                         // raster group (row tiles)
static_assert(kBM == kSimilarityTileRows && kBN == kSimilarityTileRows, "tile rows");
static_assert(kBK == kSimilarityDimAlign, "dim alignment");

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16_16816(float* c, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Byte offset of 16-byte chunk c (0..3) of row r in a [rows x 32] bf16 tile (64 B a row).
__device__ __forceinline__ uint32_t swizzle(int r, int c) {
  return static_cast<uint32_t>(r * 64 + ((c ^ ((r >> 1) & 3)) << 4));
}

// Appends (i, j, s) for the lanes with hit set: one atomic per warp. All 32 lanes must call.
__device__ __forceinline__ void emit_hits(bool hit, uint32_t i, uint32_t j, float s, SimPair* out,
                                          unsigned long long capacity, unsigned long long* count) {
  const unsigned mask = __ballot_sync(0xffffffffu, hit);
  if (mask == 0) return;
  const int lane = threadIdx.x & 31;
  const int leader = __ffs(mask) - 1;
  unsigned long long base = 0;
  if (lane == leader) base = atomicAdd(count, static_cast<unsigned long long>(__popc(mask)));
  base = __shfl_sync(0xffffffffu, base, leader);
  if (hit) {
    const unsigned long long slot = base + __popc(mask & ((1u << lane) - 1u));
    if (slot < capacity) {
      SimPair p;
      p.i = i;
      p.j = j;
      p.score = s;
      out[slot] = p;
    }
  }
}

__global__ void __launch_bounds__(kThreads, 2)
    similarity_threshold_kernel(const __nv_bfloat16* __restrict__ a,
                                const __nv_bfloat16* __restrict__ b, int rows_a, int rows_b,
                                int ktiles, long long ld, float threshold, int triangular,
                                int tiles_m, int tiles_n, SimPair* __restrict__ out,
                                unsigned long long capacity, unsigned long long* count) {
  extern __shared__ __align__(128) unsigned char smem[];

  // Grouped rasterisation: kGroupRows row tiles advance together along the column tiles.
  const int bid = blockIdx.x;
  const int per_group = kGroupRows * tiles_n;
  const int group = bid / per_group;
  const int first_m = group * kGroupRows;
  const int group_m = min(tiles_m - first_m, kGroupRows);
  const int in_group = bid - group * per_group;
  const int tile_m = first_m + in_group % group_m;
  const int tile_n = in_group / group_m;
  const int row0 = tile_m * kBM;
  const int col0 = tile_n * kBN;
  if (triangular && col0 + kBN - 1 <= row0) return;  // every j <= i: nothing to emit

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wm = warp >> 1;  // warp row (0..1): rows wm*64 .. +63
  const int wn = warp & 1;   // warp col (0..1): cols wn*64 .. +63

  const uint32_t smem_base = smem_addr(smem);
  const __nv_bfloat16* a_tile = a + static_cast<long long>(row0) * ld;
  const __nv_bfloat16* b_tile = b + static_cast<long long>(col0) * ld;

  auto load_stage = [&](int stage, int kt) {
    const uint32_t sa = smem_base + stage * 2 * kTileBytes;
    const uint32_t sb = sa + kTileBytes;
    const int k0 = kt * kBK;
#pragma unroll
    for (int q = 0; q < (kBM * kBK / 8) / kThreads; ++q) {  // 4 chunks per thread and operand
      const int idx = tid + q * kThreads;
      const int r = idx >> 2;
      const int c = idx & 3;
      cp_async_16(sa + swizzle(r, c), a_tile + static_cast<long long>(r) * ld + k0 + c * 8);
      cp_async_16(sb + swizzle(r, c), b_tile + static_cast<long long>(r) * ld + k0 + c * 8);
    }
  };

  float acc[4][8][4];
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }

  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<kStages - 2>();  // slice kt has landed (for this thread) ...
    __syncthreads();               // ... for all threads; and slot (kt-1) % kStages is free
    const int next = kt + kStages - 1;
    if (next < ktiles) load_stage(next % kStages, next);
    cp_async_commit();

    const uint32_t sa = smem_base + (kt % kStages) * 2 * kTileBytes;
    const uint32_t sb = sa + kTileBytes;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      uint32_t af[4][4];
      uint32_t bfr[8][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        // x4: rows 0-7 / 8-15 of k 0-7, then rows 0-7 / 8-15 of k 8-15 (a0..a3 of the mma).
        const int r = wm * 64 + mt * 16 + (lane & 15);
        const int c = kk * 2 + (lane >> 4);
        ldmatrix_x4(sa + swizzle(r, c), af[mt][0], af[mt][1], af[mt][2], af[mt][3]);
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        // x4: n 0-7 k 0-7, n 0-7 k 8-15, n 8-15 k 0-7, n 8-15 k 8-15 (b0 b1 of two n-tiles).
        const int r = wn * 64 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int c = kk * 2 + ((lane >> 3) & 1);
        ldmatrix_x4(sb + swizzle(r, c), bfr[2 * np][0], bfr[2 * np][1], bfr[2 * np + 1][0],
                    bfr[2 * np + 1][1]);
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) mma_bf16_16816(acc[mt][nt], af[mt], bfr[nt]);
    }
  }
  cp_async_wait<0>();

  // Epilogue. Accumulator e of (mt, nt): row g (+8 for e >= 2), column 2t (+1 for odd e).
  float best = -3.0e38f;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) best = fmaxf(best, acc[mt][nt][e]);
  if (!__any_sync(0xffffffffu, best >= threshold)) return;  // the common case

  const int g = lane >> 2;
  const int t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = row0 + wm * 64 + mt * 16 + g + ((e >> 1) << 3);
        const int j = col0 + wn * 64 + nt * 8 + 2 * t + (e & 1);
        const float s = acc[mt][nt][e];
        const bool hit = s >= threshold && i < rows_a && j < rows_b && (!triangular || j > i);
        emit_hits(hit, static_cast<uint32_t>(i), static_cast<uint32_t>(j), s, out, capacity, count);
      }
}

// Filter of a bf16 score tile: each thread tests 8 consecutive columns (one 16-byte load).
__global__ void __launch_bounds__(256)
    threshold_filter_kernel(const __nv_bfloat16* __restrict__ c, int rows, int cols, long long ldc,
                            float threshold, int triangular, SimPair* __restrict__ out,
                            unsigned long long capacity, unsigned long long* count) {
  const int vec_per_row = (cols + 7) >> 3;
  const long long total = static_cast<long long>(rows) * vec_per_row;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  // Every lane of a warp runs the same number of iterations (emit_hits needs all 32).
  const long long start = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long warp_start = start - (threadIdx.x & 31);
  for (long long base = warp_start; base < total; base += stride) {
    const long long v = base + (threadIdx.x & 31);
    const bool in_range = v < total;
    const int i = in_range ? static_cast<int>(v / vec_per_row) : 0;
    const int j0 = in_range ? static_cast<int>(v % vec_per_row) * 8 : 0;
    // Skip the load when no column of the vector can be emitted.
    const bool live = in_range && (!triangular || j0 + 7 > i);
    uint4 raw = make_uint4(0, 0, 0, 0);
    if (live) raw = *reinterpret_cast<const uint4*>(c + static_cast<long long>(i) * ldc + j0);
    const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&raw);
    float best = -3.0e38f;
#pragma unroll
    for (int e = 0; e < 8; ++e) best = fmaxf(best, __bfloat162float(h[e]));
    if (!__any_sync(0xffffffffu, live && best >= threshold)) continue;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float s = __bfloat162float(h[e]);
      const int j = j0 + e;
      const bool hit = live && s >= threshold && j < cols && (!triangular || j > i);
      emit_hits(hit, static_cast<uint32_t>(i), static_cast<uint32_t>(j), s, out, capacity, count);
    }
  }
}

}  // namespace

cudaError_t launch_similarity_threshold(const void* a, int64_t rows_a, const void* b,
                                        int64_t rows_b, int dim_pad, int64_t ld, float threshold,
                                        bool triangular, SimPair* out, uint64_t capacity,
                                        unsigned long long* count, cudaStream_t stream) {
  if (rows_a <= 0 || rows_b <= 0) return cudaSuccess;
  if (rows_a > 0x7fffffff || rows_b > 0x7fffffff || dim_pad <= 0 || dim_pad % kBK != 0 ||
      ld < dim_pad || ld % 8 != 0)
    return cudaErrorInvalidValue;
  // Per device (a function attribute belongs to the current device's context); cheap.
  cudaError_t err = cudaFuncSetAttribute(similarity_threshold_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  if (err != cudaSuccess) return err;
  const long long tiles_m = (rows_a + kBM - 1) / kBM;
  const long long tiles_n = (rows_b + kBN - 1) / kBN;
  const long long blocks = tiles_m * tiles_n;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  similarity_threshold_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, stream>>>(
      static_cast<const __nv_bfloat16*>(a), static_cast<const __nv_bfloat16*>(b),
      static_cast<int>(rows_a), static_cast<int>(rows_b), dim_pad / kBK, ld, threshold,
      triangular ? 1 : 0, static_cast<int>(tiles_m), static_cast<int>(tiles_n), out, capacity,
      count);
  return cudaGetLastError();
}

cudaError_t launch_threshold_filter_bf16(const void* c, int64_t rows, int64_t cols, int64_t ldc,
                                         float threshold, bool triangular, SimPair* out,
                                         uint64_t capacity, unsigned long long* count,
                                         cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  if (rows > 0x7fffffff || cols > 0x7fffffff || ldc % 8 != 0 || ldc < ((cols + 7) / 8) * 8)
    return cudaErrorInvalidValue;
  int device = 0;
  int sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  const long long vectors = rows * ((cols + 7) / 8);
  long long blocks = (vectors + 255) / 256;
  const long long max_blocks = static_cast<long long>(sms) * 16;
  if (blocks > max_blocks) blocks = max_blocks;
  threshold_filter_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(c), static_cast<int>(rows), static_cast<int>(cols), ldc,
      threshold, triangular ? 1 : 0, out, capacity, count);
  return cudaGetLastError();
}

}  // namespace qsearch
