#include "swiglu.cuh"

namespace qsearch {

// Grid-stride over 8-element vectors of the output.
static __global__ void swiglu_kernel(const bf16* __restrict__ gate_up, int64_t num_vecs,
                                     int inter_vecs, bf16* __restrict__ out) {
  const Bf16x8* in = reinterpret_cast<const Bf16x8*>(gate_up);
  Bf16x8* o = reinterpret_cast<Bf16x8*>(out);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_vecs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / inter_vecs, col = i % inter_vecs;
    float g[8], u[8], r[8];
    unpack8(in[row * 2 * inter_vecs + col], g);
    unpack8(in[row * 2 * inter_vecs + inter_vecs + col], u);
#pragma unroll
    for (int k = 0; k < 8; ++k) r[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    o[i] = pack8(r);
  }
}

Status launch_swiglu(const bf16* gate_up, int num_tokens, int inter, bf16* out,
                     cudaStream_t stream) {
  if (inter % 8 != 0) return invalid_argument("swiglu: intermediate size must be a multiple of 8");
  if (num_tokens == 0) return Status::ok();
  const int64_t vecs = static_cast<int64_t>(num_tokens) * (inter / 8);
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(vecs, threads), 132 * 16);
  swiglu_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(gate_up, vecs, inter / 8,
                                                                       out);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
