#include <algorithm>
#include <atomic>

#include "attention.cuh"

namespace qsearch {
namespace {

constexpr int kD = 128;    // head_dim
constexpr int kBN = 64;    // key rows per iteration
constexpr int kWarps = 4;  // 16 or 32 query rows each
constexpr int kThreads = kWarps * 32;
constexpr int kTileElems = kBN * kD;                // one K or V tile
constexpr int kSmemBytes = 2 * 2 * kTileElems * 2;  // 2 stages x (K, V), bf16

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

// 2^x on the special-function unit (flush-to-zero; 2^-inf = 0)
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
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

// MT = m16 tiles per warp. MT 1: 64 query rows per block, Q kept in registers (fewer registers,
// 3 blocks per SM). MT 2: 128 query rows per block, each K/V fragment read from shared memory
// feeds two MMAs (half the shared-memory traffic per FLOP), Q re-read from shared memory.
template <int MT>
struct AttnShape {
  static constexpr int kBlockM = 64 * MT;
  static constexpr int kQBytes = MT == 1 ? 0 : kBlockM * kD * 2;  // MT 1 aliases Q into stage 1
  static constexpr int kSmem = kSmemBytes + kQBytes;
  static constexpr int kMinBlocks = MT == 1 ? 3 : 2;
};

template <int MT>
__global__ void __launch_bounds__(kThreads, AttnShape<MT>::kMinBlocks)
    attention_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ out,
                     const AttentionTile* __restrict__ tiles, const int32_t* __restrict__ num_tiles,
                     int num_q_heads, int num_kv_heads, float scale_log2) {
  constexpr int kBlockM = AttnShape<MT>::kBlockM;
  constexpr int kRowsPerWarp = 16 * MT;
  const int tile_idx = blockIdx.x / num_q_heads;
  const int head = blockIdx.x % num_q_heads;
  if (tile_idx >= *num_tiles) return;
  const AttentionTile tile = tiles[tile_idx];

  // the XOR addressing below needs 256-byte aligned tiles
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  bf16* smem = reinterpret_cast<bf16*>(smem_raw);
  // stage s: K at smem + 2*s*tile, V right after it; MT 2: Q (128 rows) after both stages
  auto k_tile = [&](int s) { return smem + (2 * s) * kTileElems; };
  auto v_tile = [&](int s) { return smem + (2 * s + 1) * kTileElems; };
  bf16* q_tile = MT == 1 ? k_tile(1) : smem + 4 * kTileElems;

  const int ld = (num_q_heads + 2 * num_kv_heads) * kD;
  const int ld_out = num_q_heads * kD;
  const int kvh = head / (num_q_heads / num_kv_heads);
  const bf16* seq_base = qkv + static_cast<int64_t>(tile.seq_start) * ld;
  const bf16* q_base = seq_base + head * kD;
  const bf16* k_base = seq_base + (num_q_heads + kvh) * kD;
  const bf16* v_base = seq_base + (num_q_heads + num_kv_heads + kvh) * kD;
  const int len = tile.seq_len, q0 = tile.q_start, last = len - 1;
  const int n_blocks = (min(q0 + kBlockM, len) + kBN - 1) / kBN;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

#pragma unroll
  for (int h = 0; h < MT; ++h)
    load_tile(q_tile + h * kTileElems, q_base, ld, q0 + 64 * h, last, tid);
  load_tile(k_tile(0), k_base, ld, 0, last, tid);
  cp_async_commit();  // group: Q, K0
  load_tile(v_tile(0), v_base, ld, 0, last, tid);
  cp_async_commit();  // group: V0 (lands while S0 is computed)

  // ldmatrix source addresses (rows are 256 bytes, tiles 256-byte aligned): the swizzled chunk of
  // logical chunk c is c ^ (row & 7), and for the rows a lane addresses row & 7 == lane & 7, so a
  // chunk offset added to chunk (lane-dependent) is an XOR on the address bits 4-7.
  const int ra = (lane & 7) + ((lane >> 3) & 1) * 8;  // A / trans-B row pattern (16 rows)
  uint32_t q_addr[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
    q_addr[mt] = smem_addr(q_tile + swz(warp * kRowsPerWarp + mt * 16 + ra, lane >> 4));
  const uint32_t k_addr0 = smem_addr(k_tile(0) + swz(lane & 7, lane >> 3));
  const uint32_t v_addr0 = smem_addr(v_tile(0) + swz(ra, lane >> 4));

  uint32_t qf[MT == 1 ? 8 : 1][4];  // MT 1: the warp's Q fragments, 8 chunks of 16 dims
  if constexpr (MT == 1) {
    cp_async_wait<1>();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) ldmatrix_x4(qf[kk], q_addr[0] ^ (kk << 5));
    // stage 1's K slot (Q) is refilled only after the loop's first barrier
  }

  float o[MT][16][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < 16; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
  const int warp_row0 = q0 + warp * kRowsPerWarp;  // position of the warp's first row

  // Pipeline (FlashAttention-2): K(nb+1) loads during S(nb) and the softmax, V(nb+1) during
  // P.V(nb); cp.async groups alternate K, V (an empty group when there is no next block).
  for (int nb = 0; nb < n_blocks; ++nb) {
    const int st = nb & 1;
    const bool has_next = nb + 1 < n_blocks;
    cp_async_wait<1>();  // K(nb) landed (V(nb) may still be in flight)
    __syncthreads();     // ... for all threads; everyone is past S(nb-1) and P.V(nb-1)
    if (has_next) load_tile(k_tile(st ^ 1), k_base, ld, (nb + 1) * kBN, last, tid);
    cp_async_commit();

    // (MT 2: the last block is fully masked for warps 0-1; they compute p = 0 there rather than
    // branch around it, which costs registers and saves no time: the block waits at the barrier)
    float s[MT][8][4];
    {
      // S = Q K^T (16*MT x 64 per warp)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < 8; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
      const uint32_t k_addr = k_addr0 + st * (2 * kTileElems * 2);
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        uint32_t qa[MT][2][4];
        if constexpr (MT > 1) {
#pragma unroll
          for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int k2 = 0; k2 < 2; ++k2)
              ldmatrix_x4(qa[mt][k2], q_addr[mt] ^ ((2 * p + k2) << 5));
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          uint32_t b[4];
          // chunks 4p..4p+3 of rows 8j..8j+7
          ldmatrix_x4(b, (k_addr ^ (p << 6)) + j * 8 * kD * 2);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            const uint32_t* a0 = MT == 1 ? qf[2 * p] : qa[mt][0];
            const uint32_t* a1 = MT == 1 ? qf[2 * p + 1] : qa[mt][1];
            mma_bf16(s[mt][j], a0, b[0], b[1]);
            mma_bf16(s[mt][j], a1, b[2], b[3]);
          }
        }
      }

      // causal mask where the block reaches past the warp's first row
      if (nb * kBN + kBN - 1 > warp_row0) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int col = nb * kBN + 8 * j + 2 * (lane & 3) + (e & 1);
              const int row = warp_row0 + mt * 16 + (lane >> 2) + (e >= 2 ? 8 : 0);
              if (col > row) s[mt][j][e] = -INFINITY;
            }
      }

      // online softmax with lazy rescaling (as FlashAttention-4): the running max m moves only
      // when some row of the warp would exceed it by more than 8 (log2 units), so probabilities
      // stay <= 2^8 and the O rescale is skipped in most blocks of long rows. Block 0 always has
      // column 0 unmasked for every row, so m is finite from the first block on.
      float mx[MT][2];
      bool grow = false;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float v = -INFINITY;
#pragma unroll
          for (int j = 0; j < 8; ++j) v = fmaxf(v, fmaxf(s[mt][j][2 * h], s[mt][j][2 * h + 1]));
          v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
          v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
          mx[mt][h] = v * scale_log2;
          grow |= mx[mt][h] > m[mt][h] + 8.0f;  // always true on the first block (m = -inf)
        }
      }
      if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float m_new = fmaxf(m[mt][h], mx[mt][h]);
            const float alpha = fast_exp2(m[mt][h] - m_new);  // 0 when m was -inf
            m[mt][h] = m_new;
            l[mt][h] *= alpha;
#pragma unroll
            for (int dn = 0; dn < 16; ++dn) {
              o[mt][dn][2 * h] *= alpha;
              o[mt][dn][2 * h + 1] *= alpha;
            }
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float sum = 0.0f;
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            const float p0 = fast_exp2(fmaf(s[mt][j][2 * h], scale_log2, -m[mt][h]));
            const float p1 = fast_exp2(fmaf(s[mt][j][2 * h + 1], scale_log2, -m[mt][h]));
            s[mt][j][2 * h] = p0;
            s[mt][j][2 * h + 1] = p1;
            sum += p0 + p1;
          }
          l[mt][h] += sum;
        }
      }
    }

    cp_async_wait<1>();  // V(nb) landed (K(nb+1) may still be in flight)
    __syncthreads();
    if (has_next) load_tile(v_tile(st ^ 1), v_base, ld, (nb + 1) * kBN, last, tid);
    cp_async_commit();

    {
      // O += P V
      const uint32_t v_addr = v_addr0 + st * (2 * kTileElems * 2);
#pragma unroll
      for (int kc = 0; kc < 4; ++kc) {
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          pa[mt][0] = pack_bf16(s[mt][2 * kc][0], s[mt][2 * kc][1]);
          pa[mt][1] = pack_bf16(s[mt][2 * kc][2], s[mt][2 * kc][3]);
          pa[mt][2] = pack_bf16(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
          pa[mt][3] = pack_bf16(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < 8; ++dp) {
          uint32_t b[4];
          // chunks 2dp, 2dp+1 of rows 16kc..16kc+15, transposed
          ldmatrix_x4_trans(b, (v_addr ^ (dp << 5)) + kc * 16 * kD * 2);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma_bf16(o[mt][2 * dp], pa[mt], b[0], b[1]);
            mma_bf16(o[mt][2 * dp + 1], pa[mt], b[2], b[3]);
          }
        }
      }
    }
  }
  __syncthreads();  // the output staging below reuses shared memory

  // normalise and write through shared memory (16-byte coalesced stores); each warp touches
  // only its own rows of the staging tile (stage 0's K for MT 1, the Q tile for MT 2)
  bf16* so = MT == 1 ? smem : q_tile;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float t = l[mt][h];
      t += __shfl_xor_sync(0xffffffffu, t, 1);
      t += __shfl_xor_sync(0xffffffffu, t, 2);
      const float inv_l = 1.0f / t;
      const int row = warp * kRowsPerWarp + mt * 16 + (lane >> 2) + 8 * h;
#pragma unroll
      for (int dn = 0; dn < 16; ++dn)
        *reinterpret_cast<uint32_t*>(so + swz(row, dn) + 2 * (lane & 3)) =
            pack_bf16(o[mt][dn][2 * h] * inv_l, o[mt][dn][2 * h + 1] * inv_l);
    }
  }
  __syncwarp();
  bf16* out_base = out + static_cast<int64_t>(tile.seq_start) * ld_out + head * kD;
#pragma unroll
  for (int i = 0; i < 8 * MT; ++i) {
    const int id = lane + 32 * i;
    const int r = id >> 4, c = id & 15;
    const int row = warp * kRowsPerWarp + r;
    const int qpos = q0 + row;
    if (qpos < len)
      *reinterpret_cast<int4*>(out_base + static_cast<int64_t>(qpos) * ld_out + c * 8) =
          *reinterpret_cast<const int4*>(so + swz(row, c));
  }
}

template <int MT>
Status launch_mt(const bf16* qkv, int num_q_heads, int num_kv_heads, const AttentionTile* tiles,
                 const int32_t* num_tiles, int grid_tiles, float softmax_scale, bf16* out,
                 cudaStream_t stream) {
  // the dynamic shared memory beyond 48 KB must be allowed once per device
  static std::atomic<uint64_t> configured{0};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = 1ull << (dev & 63);
  if (!(configured.load() & bit)) {
    CUDA_CHECK(cudaFuncSetAttribute(
        attention_kernel<MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, AttnShape<MT>::kSmem));
    configured.fetch_or(bit);
  }
  const int64_t blocks = static_cast<int64_t>(grid_tiles) * num_q_heads;
  const float scale_log2 = softmax_scale * 1.4426950408889634f;
  attention_kernel<MT><<<static_cast<unsigned>(blocks), kThreads, AttnShape<MT>::kSmem, stream>>>(
      qkv, out, tiles, num_tiles, num_q_heads, num_kv_heads, scale_log2);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace

void build_attention_tiles(const int32_t* cu_seqlens, int n, int block_m,
                           std::vector<AttentionTile>* tiles) {
  const size_t first = tiles->size();
  for (int i = 0; i < n; ++i) {
    const int32_t start = cu_seqlens[i], len = cu_seqlens[i + 1] - cu_seqlens[i];
    for (int32_t q = 0; q < len; q += block_m) tiles->push_back({start, len, q, 0});
  }
  // a tile's work grows with q_start (causal): schedule the long ones first
  std::stable_sort(
      tiles->begin() + static_cast<std::ptrdiff_t>(first), tiles->end(),
      [](const AttentionTile& a, const AttentionTile& b) { return a.q_start > b.q_start; });
}

int attention_block_m(const int32_t* cu_seqlens, int n) {
  int64_t longest = 0;
  for (int i = 0; i < n; ++i)
    longest = std::max<int64_t>(longest, cu_seqlens[i + 1] - cu_seqlens[i]);
  return longest >= kAttentionLongSequence ? 128 : 64;
}

Status launch_attention(const bf16* qkv, int num_q_heads, int num_kv_heads, int block_m,
                        const AttentionTile* tiles, const int32_t* num_tiles, int grid_tiles,
                        float softmax_scale, bf16* out, cudaStream_t stream) {
  if (num_kv_heads <= 0 || num_q_heads % num_kv_heads != 0)
    return invalid_argument("attention: q heads must be a multiple of kv heads");
  if (block_m != 64 && block_m != 128)
    return invalid_argument("attention: block_m must be 64 or 128");
  if (grid_tiles == 0) return Status::ok();
  if (block_m == 64)
    return launch_mt<1>(qkv, num_q_heads, num_kv_heads, tiles, num_tiles, grid_tiles, softmax_scale,
                        out, stream);
  return launch_mt<2>(qkv, num_q_heads, num_kv_heads, tiles, num_tiles, grid_tiles, softmax_scale,
                      out, stream);
}

}  // namespace qsearch
