// Causal self-attention over variable-length sequences packed without padding (FlashAttention-2
// style, tensor cores through mma.sync m16n8k16 bf16, online softmax).
//
// Layout: qkv [num_tokens, (Hq + 2 * Hkv) * 128] bf16 row-major as the fused QKV GEMM writes it
// (q heads, then k heads, then v heads), q and k already normed and rotated; out
// [num_tokens, Hq * 128] bf16 row-major. Sequence i occupies rows cu_seqlens[i]..cu_seqlens[i+1]-1
// and attends causally to itself only. GQA: q head h reads kv head h / (Hq / Hkv).
// Work list: one AttentionTile per block of block_m (64 or 128) query rows of one sequence
// (build_attention_tiles, on the host, heaviest first; attention_block_m picks block_m: 128 when
// a sequence reaches kAttentionLongSequence tokens, where halving the shared-memory traffic per
// FLOP pays, 64 for batches of short sequences, which waste less of a tile); num_tiles lives in
// device memory so a captured CUDA graph can be replayed for another batch of the same shape bucket
// (grid_tiles is then an upper bound and the surplus blocks exit at once). Limits: head_dim 128
// only; any sequence length (positions are int32); Hq a multiple of Hkv. Numerics: scores and
// softmax statistics (max, sum) in fp32, exp2 with the scale folded in; the probabilities are
// rounded to bf16 for the P.V product, accumulated in fp32; one bf16 rounding of the output.
#pragma once

#include <vector>

#include "common.cuh"

namespace qsearch {

constexpr int kAttentionBlockM = 64;  // the smallest tile (query rows); 128 is the other
constexpr int kAttentionLongSequence = 512;

struct AttentionTile {
  int32_t seq_start;  // first row of the sequence in the packed batch
  int32_t seq_len;
  int32_t q_start;  // first query row of the tile, relative to seq_start (multiple of 64)
  int32_t unused;
};

// Upper bound of the number of tiles of a batch (either block_m).
constexpr int64_t max_attention_tiles(int64_t num_tokens, int64_t num_seqs) {
  return num_tokens / kAttentionBlockM + num_seqs;
}

// The tile height for a batch (cu_seqlens: n + 1 offsets): 64 or 128.
int attention_block_m(const int32_t* cu_seqlens, int n);

// Appends the tiles of the batch to tiles, longest-running first.
void build_attention_tiles(const int32_t* cu_seqlens, int n, int block_m,
                           std::vector<AttentionTile>* tiles);

// softmax scale: 1 / sqrt(head_dim) for Qwen3.
Status launch_attention(const bf16* qkv, int num_q_heads, int num_kv_heads, int block_m,
                        const AttentionTile* tiles, const int32_t* num_tiles, int grid_tiles,
                        float softmax_scale, bf16* out, cudaStream_t stream);

}  // namespace qsearch
