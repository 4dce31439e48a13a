#include <algorithm>
#include <atomic>

#include "attention.cuh"

namespace qsearch {
namespace {

constexpr int kD = 128;                // head_dim
constexpr int kBM = kAttentionBlockM;  // query rows per block (16 per warp)
constexpr int kBN = 64;                // key rows per iteration
constexpr int kWarps = kBM / 16;
constexpr int kThreads = kWarps * 32;
constexpr int kTileElems = kBN * kD;                // one K or V tile
constexpr int kSmemBytes = 2 * 2 * kTileElems * 2;  // 2 stages x (K, V), bf16
static_assert(kBM == kBN, "the causal loop bound assumes square blocks");

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Rows of 128 bf16 = 16 chunks of 16 bytes; chunk c of row r is stored at chunk c ^ (r & 7), so
// the 8 rows an ldmatrix reads at one logical chunk fall in 8 different bank groups.
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * kD + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c[16x8] += a[16x16] * b[16x8], bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Copies rows row0..row0+63 (clamped to last_row) of one head (128 columns at base) into a
// swizzled shared tile, asynchronously.
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* base, int ld, int row0,
                                          int last_row, int tid) {
#pragma unroll
  for (int i = 0; i < kTileElems / 8 / kThreads; ++i) {
    const int id = tid + i * kThreads;
    const int r = id >> 4, c = id & 15;
    const int gr = min(row0 + r, last_row);
    cp_async16(smem_addr(tile + swz(r, c)), base + static_cast<int64_t>(gr) * ld + c * 8);
  }
}

__global__ void __launch_bounds__(kThreads, 3)
    attention_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ out,
                     const AttentionTile* __restrict__ tiles, const int32_t* __restrict__ num_tiles,
                     int num_q_heads, int num_kv_heads, float scale_log2) {
  const int tile_idx = blockIdx.x / num_q_heads;
  const int head = blockIdx.x % num_q_heads;
  if (tile_idx >= *num_tiles) return;
  const AttentionTile tile = tiles[tile_idx];

  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* smem = reinterpret_cast<bf16*>(smem_raw);
  // stage s: K at smem + 2*s*tile, V right after it
  auto k_tile = [&](int s) { return smem + (2 * s) * kTileElems; };
  auto v_tile = [&](int s) { return smem + (2 * s + 1) * kTileElems; };

  const int ld = (num_q_heads + 2 * num_kv_heads) * kD;
  const int ld_out = num_q_heads * kD;
  const int kvh = head / (num_q_heads / num_kv_heads);
  const bf16* seq_base = qkv + static_cast<int64_t>(tile.seq_start) * ld;
  const bf16* q_base = seq_base + head * kD;
  const bf16* k_base = seq_base + (num_q_heads + kvh) * kD;
  const bf16* v_base = seq_base + (num_q_heads + num_kv_heads + kvh) * kD;
  const int len = tile.seq_len, q0 = tile.q_start, last = len - 1;
  const int n_blocks = q0 / kBN + 1;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  // Q goes to stage 1's K slot (read into registers, then the slot is reused); K0, V0 to stage 0.
  load_tile(k_tile(1), q_base, ld, q0, last, tid);
  load_tile(k_tile(0), k_base, ld, 0, last, tid);
  load_tile(v_tile(0), v_base, ld, 0, last, tid);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[8][4];  // A fragments of this warp's 16 query rows, 8 chunks of 16 dims
  {
    const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int kk = 0; kk < 8; ++kk)
      ldmatrix_x4(qf[kk], smem_addr(k_tile(1) + swz(r, 2 * kk + (lane >> 4))));
  }
  __syncthreads();

  float o[16][4];
#pragma unroll
  for (int i = 0; i < 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int row_g = q0 + warp * 16 + (lane >> 2);  // position of this thread's first row
  // ldmatrix source addresses in stage 0 (rows are 256 bytes, tiles 256-byte aligned)
  const uint32_t k_addr0 = smem_addr(k_tile(0) + swz(lane & 7, lane >> 3));
  const uint32_t v_addr0 =
      smem_addr(v_tile(0) + swz((lane & 7) + ((lane >> 3) & 1) * 8, lane >> 4));

  for (int nb = 0; nb < n_blocks; ++nb) {
    const int st = nb & 1;
    if (nb + 1 < n_blocks) {
      load_tile(k_tile(st ^ 1), k_base, ld, (nb + 1) * kBN, last, tid);
      load_tile(v_tile(st ^ 1), v_base, ld, (nb + 1) * kBN, last, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // S = Q K^T (16 x 64 per warp)
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    // chunk (4p + lane/8) of row 8j + lane%8, swizzled: the XOR only touches address bits 6-7
    const uint32_t k_addr = k_addr0 + st * (2 * kTileElems * 2);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        uint32_t b[4];
        ldmatrix_x4(b, (k_addr ^ (p << 6)) + j * 8 * kD * 2);
        mma_bf16(s[j], qf[2 * p], b[0], b[1]);
        mma_bf16(s[j], qf[2 * p + 1], b[2], b[3]);
      }
    }

    // causal mask, only where this block reaches past the warp's first row
    if (nb * kBN + kBN - 1 > q0 + warp * 16) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nb * kBN + 8 * j + 2 * (lane & 3) + (e & 1);
          const int row = row_g + (e >= 2 ? 8 : 0);
          if (col > row) s[j][e] = -INFINITY;
        }
      }
    }

    // online softmax, rows g (h = 0) and g + 8 (h = 1)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * h], s[j][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[h], mx * scale_log2);
      const float alpha = exp2f(m[h] - m_new);  // 0 on the first block (m = -inf)
      m[h] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float p0 = exp2f(fmaf(s[j][2 * h], scale_log2, -m_new));
        const float p1 = exp2f(fmaf(s[j][2 * h + 1], scale_log2, -m_new));
        s[j][2 * h] = p0;
        s[j][2 * h + 1] = p1;
        sum += p0 + p1;
      }
      l[h] = l[h] * alpha + sum;
#pragma unroll
      for (int dn = 0; dn < 16; ++dn) {
        o[dn][2 * h] *= alpha;
        o[dn][2 * h + 1] *= alpha;
      }
    }

    // O += P V
    const uint32_t v_addr = v_addr0 + st * (2 * kTileElems * 2);
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
      uint32_t pa[4];
      pa[0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
      pa[1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
      pa[2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pa[3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
      for (int dp = 0; dp < 8; ++dp) {
        uint32_t b[4];
        // chunk (2dp + lane/16) of row 16kc + lane%16: the XOR touches address bits 5-7
        ldmatrix_x4_trans(b, (v_addr ^ (dp << 5)) + kc * 16 * kD * 2);
        mma_bf16(o[2 * dp], pa, b[0], b[1]);
        mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }

  // normalise and write through shared memory (16-byte coalesced stores)
  float inv_l[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float t = l[h];
    t += __shfl_xor_sync(0xffffffffu, t, 1);
    t += __shfl_xor_sync(0xffffffffu, t, 2);
    inv_l[h] = 1.0f / t;
  }
  bf16* so = smem;  // rows 0..63; each warp touches only its own 16 rows
#pragma unroll
  for (int dn = 0; dn < 16; ++dn) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = warp * 16 + (lane >> 2) + 8 * h;
      *reinterpret_cast<uint32_t*>(so + swz(row, dn) + 2 * (lane & 3)) =
          pack_bf16(o[dn][2 * h] * inv_l[h], o[dn][2 * h + 1] * inv_l[h]);
    }
  }
  __syncwarp();
  bf16* out_base = out + static_cast<int64_t>(tile.seq_start) * ld_out + head * kD;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int id = lane + 32 * i;
    const int r = id >> 4, c = id & 15;
    const int row = warp * 16 + r;
    const int qpos = q0 + row;
    if (qpos < len)
      *reinterpret_cast<int4*>(out_base + static_cast<int64_t>(qpos) * ld_out + c * 8) =
          *reinterpret_cast<const int4*>(so + swz(row, c));
  }
}

}  // namespace

void build_attention_tiles(const int32_t* cu_seqlens, int n, std::vector<AttentionTile>* tiles) {
  const size_t first = tiles->size();
  for (int i = 0; i < n; ++i) {
    const int32_t start = cu_seqlens[i], len = cu_seqlens[i + 1] - cu_seqlens[i];
    for (int32_t q = 0; q < len; q += kAttentionBlockM) tiles->push_back({start, len, q, 0});
  }
  // a tile's work grows with q_start (causal): schedule the long ones first
  std::stable_sort(
      tiles->begin() + static_cast<std::ptrdiff_t>(first), tiles->end(),
      [](const AttentionTile& a, const AttentionTile& b) { return a.q_start > b.q_start; });
}

Status launch_attention(const bf16* qkv, int num_q_heads, int num_kv_heads,
                        const AttentionTile* tiles, const int32_t* num_tiles, int grid_tiles,
                        float softmax_scale, bf16* out, cudaStream_t stream) {
  if (num_kv_heads <= 0 || num_q_heads % num_kv_heads != 0)
    return invalid_argument("attention: q heads must be a multiple of kv heads");
  if (grid_tiles == 0) return Status::ok();
  // the 64 KB of dynamic shared memory must be allowed once per device
  static std::atomic<uint64_t> configured{0};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = 1ull << (dev & 63);
  if (!(configured.load() & bit)) {
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    kSmemBytes));
    configured.fetch_or(bit);
  }
  const int64_t blocks = static_cast<int64_t>(grid_tiles) * num_q_heads;
  const float scale_log2 = softmax_scale * 1.4426950408889634f;
  attention_kernel<<<static_cast<unsigned>(blocks), kThreads, kSmemBytes, stream>>>(
      qkv, out, tiles, num_tiles, num_q_heads, num_kv_heads, scale_log2);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
