#include "embedding.cuh"

namespace qsearch {

// One block per token: 16-byte bf16 loads, two 16-byte fp32 stores per vector.
static __global__ void embedding_gather_kernel(const bf16* __restrict__ table,
                                               const int32_t* __restrict__ ids, int hidden,
                                               float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  const Bf16x8* src = reinterpret_cast<const Bf16x8*>(table + id * hidden);
  float4* dst = reinterpret_cast<float4*>(out + row * hidden);
  for (int v = threadIdx.x; v < hidden / 8; v += blockDim.x) {
    float f[8];
    unpack8(src[v], f);
    dst[2 * v] = make_float4(f[0], f[1], f[2], f[3]);
    dst[2 * v + 1] = make_float4(f[4], f[5], f[6], f[7]);
  }
}

Status launch_embedding_gather(const bf16* table, const int32_t* ids, int num_tokens, int hidden,
                               float* out, cudaStream_t stream) {
  if (hidden % 8 != 0) return invalid_argument("embedding gather: hidden must be a multiple of 8");
  if (num_tokens == 0) return Status::ok();
  embedding_gather_kernel<<<num_tokens, 128, 0, stream>>>(table, ids, hidden, out);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
