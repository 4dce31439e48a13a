// Causal self-attention over variable-length sequences packed without padding (FlashAttention-2
// style, tensor cores through mma.sync m16n8k16 bf16, online softmax).
//
// Layout: qkv [num_tokens, (Hq + 2 * Hkv) * 128] bf16 row-major as the fused QKV GEMM writes it
// (q heads, then k heads, then v heads), q and k already normed and rotated; out
// [num_tokens, Hq * 128] bf16 row-major. Sequence i occupies rows cu_seqlens[i]..cu_seqlens[i+1]-1
// and attends causally to itself only. GQA: q head h reads kv head h / (Hq / Hkv).
// Work list: one AttentionTile per block of 64 query rows of one sequence (build_attention_tiles,
// on the host, heaviest first); num_tiles lives in device memory so a captured CUDA graph can be
// replayed for another batch of the same shape bucket (grid_tiles is then an upper bound and the
// surplus blocks exit at once).
// Limits: head_dim 128 only; any sequence length (positions are int32); Hq a multiple of Hkv.
// Numerics: scores and softmax statistics (max, sum) in fp32, exp2 with the scale folded in; the
// probabilities are rounded to bf16 for the P.V product, accumulated in fp32; one bf16 rounding
// of the output.
#pragma once

#include <vector>

#include "common.cuh"

namespace qsearch {

constexpr int kAttentionBlockM = 64;  // query rows per tile

struct AttentionTile {
  int32_t seq_start;  // first row of the sequence in the packed batch
  int32_t seq_len;
  int32_t q_start;  // first query row of the tile, relative to seq_start (multiple of 64)
  int32_t unused;
};

// Upper bound of the number of tiles of a batch.
constexpr int64_t max_attention_tiles(int64_t num_tokens, int64_t num_seqs) {
  return num_tokens / kAttentionBlockM + num_seqs;
}

// Appends the tiles of the batch (cu_seqlens: n + 1 offsets) to tiles, longest-running first.
void build_attention_tiles(const int32_t* cu_seqlens, int n, std::vector<AttentionTile>* tiles);

// softmax scale: 1 / sqrt(head_dim) for Qwen3.
Status launch_attention(const bf16* qkv, int num_q_heads, int num_kv_heads,
                        const AttentionTile* tiles, const int32_t* num_tiles, int grid_tiles,
                        float softmax_scale, bf16* out, cudaStream_t stream);

}  // namespace qsearch
