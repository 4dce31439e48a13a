// qsearch-bench-engine-cuda: throughput and latency of the CUDA engine on random bf16 weights of
// the exact Qwen3-Embedding shapes (drawn on the GPU: no checkpoint needed), with the workloads of
// ../shared/bench/hf_baseline.py, so the two can be compared side by side on one machine:
//   fixed512  1024 documents of exactly 512 tokens (512 documents for 8B, as HF's run)
//   mixed     4096 documents (1024 for 4B and 8B) of log-normal lengths, median 180, sigma 0.9,
//             clipped to 8..2048, sorted longest first and packed to the token budget
//   single    one request of 32 and of 512 tokens: latency mean and p50 over 50 calls
//   gemm      the cuBLASLt GEMM ceiling at the model's shapes (M = 16384), bf16 and/or FP8
//             (E4M3, per-row scales, as the FP8 engine calls it)
//   profile   one layer's kernels and GEMMs timed one by one (32 x 512 tokens): where time goes
// Every measurement times whole Backend::embed() calls (host packing, copies in and out, sync).
// --dtype bf16|fp8|both picks the engine's GEMM numerics (both: bf16 then fp8, one engine at a
// time); --fp8-fast-accum turns on cuBLASLt's fast FP8 accumulation.
// Output: one JSON line per measurement, then a table.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "attention.cuh"
#include "embed/engine/cuda/cuda_engine.h"
#include "embed/engine/cuda/gemm.h"
#include "embed/model/test_model.h"
#include "fill.cuh"
#include "qk_norm_rope.cuh"
#include "quant_fp8.cuh"
#include "rms_norm.cuh"
#include "swiglu.cuh"

using namespace qsearch;

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  std::string model, workload, dtype = "bf16";
  int64_t docs = 0, tokens = 0;
  double seconds = 0, tok_s = 0, docs_s = 0, tflops = 0, ms_mean = 0, ms_p50 = 0;
  double gpu_gib = 0;  // device memory in use after the run
};

std::vector<int> mixed_lengths(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<int> v(n);
  for (auto& x : v)
    x = static_cast<int>(std::min(2048.0, std::max(8.0, std::exp(z(rng) * 0.9 + std::log(180.0)))));
  return v;
}

std::vector<int32_t> random_ids(int len, std::mt19937& rng) {
  std::vector<int32_t> ids(len);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % 150000);
  ids.back() = 151643;
  return ids;
}

// Packs docs (in the given order) into batches of at most budget tokens and embeds them all.
Status run_docs(Backend& b, const ModelConfig& c, const std::string& model, const std::string& name,
                std::vector<int> lengths, bool sort_longest_first, Result* r) {
  if (sort_longest_first) std::sort(lengths.begin(), lengths.end(), std::greater<int>());
  std::mt19937 rng(1);
  std::vector<std::vector<int32_t>> docs;
  for (int l : lengths) docs.push_back(random_ids(l, rng));
  const int64_t budget = b.max_batch_tokens();
  std::vector<float> out(static_cast<size_t>(docs.size()) * b.hidden_size());
  auto embed_range = [&](size_t from, size_t to) -> Status {
    EngineBatch batch;
    for (size_t i = from; i < to; ++i) batch.add(docs[i], b.hidden_size());
    return b.embed(batch, out.data() + from * b.hidden_size());
  };
  // warm-up: the first batch (plans its GEMMs)
  {
    size_t to = 0;
    int64_t t = 0;
    while (to < docs.size() && t + static_cast<int64_t>(docs[to].size()) <= budget)
      t += docs[to++].size();
    QS_RETURN_IF_ERROR(embed_range(0, std::max<size_t>(to, 1)));
  }
  double flops = 0;
  int64_t tokens = 0;
  for (int l : lengths) {
    flops += c.flops_per_sequence(l);
    tokens += l;
  }
  auto t0 = Clock::now();
  size_t i = 0;
  while (i < docs.size()) {
    size_t j = i;
    int64_t t = 0;
    while (j < docs.size() && (j == i || t + static_cast<int64_t>(docs[j].size()) <= budget))
      t += docs[j++].size();
    QS_RETURN_IF_ERROR(embed_range(i, j));
    i = j;
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  r->model = model;
  r->workload = name;
  r->docs = static_cast<int64_t>(docs.size());
  r->tokens = tokens;
  r->seconds = s;
  r->tok_s = tokens / s;
  r->docs_s = docs.size() / s;
  r->tflops = flops / s / 1e12;
  return Status::ok();
}

Status run_single(Backend& b, const ModelConfig& c, const std::string& model, int len, Result* r) {
  std::mt19937 rng(len);
  std::vector<float> out(b.hidden_size());
  std::vector<double> ms;
  for (int it = 0; it < 60; ++it) {
    EngineBatch batch;
    batch.add(random_ids(len, rng), b.hidden_size());
    auto t0 = Clock::now();
    QS_RETURN_IF_ERROR(b.embed(batch, out.data()));
    if (it >= 10)
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  double sum = 0;
  for (double v : ms) sum += v;
  std::sort(ms.begin(), ms.end());
  r->model = model;
  r->workload = "single" + std::to_string(len);
  r->docs = 1;
  r->tokens = len;
  r->ms_mean = sum / ms.size();
  r->ms_p50 = ms[ms.size() / 2];
  r->seconds = r->ms_mean / 1e3;
  r->tok_s = len / r->seconds;
  r->docs_s = 1 / r->seconds;
  r->tflops = c.flops_per_sequence(len) / r->seconds / 1e12;
  return Status::ok();
}

// cuBLASLt ceiling at (M, K, N) shapes of one layer, as hf_baseline.py's gemm_tflops.
Status gemm_ceiling(const ModelConfig& c, const std::string& model, bool fp8, bool fast_accum) {
  GemmRunner g;
  QS_RETURN_IF_ERROR(g.init());
  g.set_fp8_fast_accum(fast_accum);
  const int m = 16384, h = c.hidden_size, inter = c.intermediate_size;
  struct Shape {
    const char* name;
    int k, n;
  } shapes[] = {{"qkv", h, c.q_width() + 2 * c.kv_width()},
                {"o", c.q_width(), h},
                {"mlp_up", h, 2 * inter},
                {"mlp_down", inter, h}};
  std::printf("{\"model\":\"%s\",\"dtype\":\"%s\",\"gemm_tflops\":{", model.c_str(),
              fp8 ? "fp8" : "bf16");
  bool first = true;
  for (const auto& s : shapes) {
    void *x = nullptr, *w = nullptr, *y = nullptr, *xq = nullptr, *wq = nullptr, *sc = nullptr;
    CUDA_CHECK(cudaMalloc(&x, static_cast<size_t>(m) * s.k * 2));
    CUDA_CHECK(cudaMalloc(&w, static_cast<size_t>(s.n) * s.k * 2));
    CUDA_CHECK(cudaMalloc(&y, static_cast<size_t>(m) * s.n * 2));
    QS_RETURN_IF_ERROR(
        launch_fill_random_bf16(static_cast<bf16*>(x), static_cast<int64_t>(m) * s.k, 1.0f, 1, 0));
    QS_RETURN_IF_ERROR(launch_fill_random_bf16(static_cast<bf16*>(w),
                                               static_cast<int64_t>(s.n) * s.k, 0.02f, 2, 0));
    if (fp8) {
      CUDA_CHECK(cudaMalloc(&xq, static_cast<size_t>(m) * s.k));
      CUDA_CHECK(cudaMalloc(&wq, static_cast<size_t>(s.n) * s.k));
      CUDA_CHECK(cudaMalloc(&sc, static_cast<size_t>(m + s.n) * 4));
      QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(
          static_cast<bf16*>(x), m, s.k, static_cast<fp8e4*>(xq), static_cast<float*>(sc), 0));
      QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(static_cast<bf16*>(w), s.n, s.k,
                                                  static_cast<fp8e4*>(wq),
                                                  static_cast<float*>(sc) + m, 0));
    }
    auto once = [&]() -> Status {
      if (!fp8)
        return g.gemm(static_cast<bf16*>(x), static_cast<bf16*>(w), static_cast<bf16*>(y), m, s.n,
                      s.k, 0);
      return g.gemm_fp8(static_cast<fp8e4*>(xq), static_cast<float*>(sc), static_cast<fp8e4*>(wq),
                        static_cast<float*>(sc) + m, static_cast<bf16*>(y), m, s.n, s.k, 0);
    };
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int it = 0; it < 3; ++it) QS_RETURN_IF_ERROR(once());
    cudaEventRecord(e0);
    const int iters = 20;
    for (int it = 0; it < iters; ++it) QS_RETURN_IF_ERROR(once());
    cudaEventRecord(e1);
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    const double tflops = 2.0 * m * s.k * static_cast<double>(s.n) / (ms / iters * 1e-3) / 1e12;
    std::printf("%s\"%s\":%.1f", first ? "" : ",", s.name, tflops);
    first = false;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
    if (xq) cudaFree(xq);
    if (wq) cudaFree(wq);
    if (sc) cudaFree(sc);
  }
  std::printf("}");
  if (fp8) std::printf(",\"outer_vector_scaling\":%s", g.fp8_outer_scaling() ? "true" : "false");
  std::printf("}\n");
  std::fflush(stdout);
  return Status::ok();
}

// Per-kernel profile of one layer at the engine's own kernels and GEMMs (the sequence of
// enqueue_forward), for a batch of `seqs` sequences of `len` tokens: each step timed alone with
// CUDA events (median of 20), times the number of layers. Shows where the time goes.
// fp8: the FP8 engine's sequence (E4M3 GEMM inputs written by the norms / SwiGLU / a quantization
// pass of the attention output; FP8 GEMMs with per-row scales).
Status layer_profile(const ModelConfig& c, const std::string& model, int seqs, int len, bool fp8,
                     bool fast_accum) {
  const int t = seqs * len, h = c.hidden_size, inter = c.intermediate_size;
  const int qkv_w = c.q_width() + 2 * c.kv_width();
  GemmRunner g;
  QS_RETURN_IF_ERROR(g.init());
  g.set_fp8_fast_accum(fast_accum);
  std::vector<void*> bufs;
  auto alloc = [&bufs](size_t bytes, void** p) -> Status {
    CUDA_CHECK(cudaMalloc(p, bytes));
    bufs.push_back(*p);
    return Status::ok();
  };
  void *resid, *normed, *qkv, *attn, *delta, *gu, *act, *w_qkv, *w_o, *w_gu, *w_down, *vec, *meta;
  QS_RETURN_IF_ERROR(alloc(size_t(t) * h * 4, &resid));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * h * 2, &normed));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * qkv_w * 2, &qkv));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * c.q_width() * 2, &attn));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * h * 2, &delta));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * 2 * inter * 2, &gu));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * inter * 2, &act));
  QS_RETURN_IF_ERROR(alloc(size_t(qkv_w) * h * 2, &w_qkv));
  QS_RETURN_IF_ERROR(alloc(size_t(h) * c.q_width() * 2, &w_o));
  QS_RETURN_IF_ERROR(alloc(size_t(2) * inter * h * 2, &w_gu));
  QS_RETURN_IF_ERROR(alloc(size_t(h) * inter * 2, &w_down));
  QS_RETURN_IF_ERROR(alloc(size_t(h + 256) * 4, &vec));
  auto rnd = [](void* p, size_t n, float std, uint64_t seed) {
    return launch_fill_random_bf16(static_cast<bf16*>(p), static_cast<int64_t>(n), std, seed, 0);
  };
  QS_RETURN_IF_ERROR(rnd(normed, size_t(t) * h, 1.0f, 1));
  QS_RETURN_IF_ERROR(rnd(qkv, size_t(t) * qkv_w, 1.0f, 2));
  QS_RETURN_IF_ERROR(rnd(attn, size_t(t) * c.q_width(), 1.0f, 3));
  QS_RETURN_IF_ERROR(rnd(delta, size_t(t) * h, 1.0f, 4));
  QS_RETURN_IF_ERROR(rnd(gu, size_t(t) * 2 * inter, 1.0f, 5));
  QS_RETURN_IF_ERROR(rnd(act, size_t(t) * inter, 1.0f, 6));
  QS_RETURN_IF_ERROR(rnd(w_qkv, size_t(qkv_w) * h, 0.02f, 7));
  QS_RETURN_IF_ERROR(rnd(w_o, size_t(h) * c.q_width(), 0.02f, 8));
  QS_RETURN_IF_ERROR(rnd(w_gu, size_t(2) * inter * h, 0.02f, 9));
  QS_RETURN_IF_ERROR(rnd(w_down, size_t(h) * inter, 0.02f, 10));
  // fp8: quantized copies of the weights, the E4M3 activation buffer and the scales
  void *q_qkv, *q_o, *q_gu, *q_down, *q_act, *scales;
  const int act_cols = std::max({h, c.q_width(), inter});
  QS_RETURN_IF_ERROR(alloc(size_t(qkv_w) * h, &q_qkv));
  QS_RETURN_IF_ERROR(alloc(size_t(h) * c.q_width(), &q_o));
  QS_RETURN_IF_ERROR(alloc(size_t(2) * inter * h, &q_gu));
  QS_RETURN_IF_ERROR(alloc(size_t(h) * inter, &q_down));
  QS_RETURN_IF_ERROR(alloc(size_t(t) * act_cols, &q_act));
  QS_RETURN_IF_ERROR(alloc(size_t(t + qkv_w + 2 * h + 2 * inter) * 4, &scales));
  auto Q = [](void* p) { return static_cast<fp8e4*>(p); };
  float* s_act = static_cast<float*>(scales);
  float* s_qkv = s_act + t;
  float* s_o = s_qkv + qkv_w;
  float* s_gu = s_o + h;
  float* s_down = s_gu + 2 * inter;
  if (fp8) {
    auto bp = [](void* p) { return static_cast<bf16*>(p); };
    QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(bp(w_qkv), qkv_w, h, Q(q_qkv), s_qkv, 0));
    QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(bp(w_o), h, c.q_width(), Q(q_o), s_o, 0));
    QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(bp(w_gu), 2 * inter, h, Q(q_gu), s_gu, 0));
    QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(bp(w_down), h, inter, Q(q_down), s_down, 0));
    QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(bp(act), t, inter, Q(q_act), s_act, 0));
  }
  QS_RETURN_IF_ERROR(launch_fill_f32(static_cast<float*>(resid), int64_t(t) * h, 0.5f, 0));
  QS_RETURN_IF_ERROR(launch_fill_f32(static_cast<float*>(vec), h + 256, 1.0f, 0));
  std::vector<int32_t> cu(seqs + 1), pos(t);
  for (int i = 0; i <= seqs; ++i) cu[i] = i * len;
  for (int i = 0; i < t; ++i) pos[i] = i % len;
  const int block_m = attention_block_m(cu.data(), seqs);
  std::vector<AttentionTile> tiles;
  build_attention_tiles(cu.data(), seqs, block_m, &tiles);
  const int num_tiles = static_cast<int>(tiles.size());
  QS_RETURN_IF_ERROR(alloc(16 + tiles.size() * 16 + size_t(t) * 4, &meta));
  int32_t* m = static_cast<int32_t*>(meta);
  CUDA_CHECK(cudaMemcpy(m, &num_tiles, 4, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(m + 4, tiles.data(), tiles.size() * 16, cudaMemcpyHostToDevice));
  int32_t* d_pos = m + 4 + 4 * num_tiles;
  CUDA_CHECK(cudaMemcpy(d_pos, pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
  const auto* d_tiles = reinterpret_cast<const AttentionTile*>(m + 4);
  float* fv = static_cast<float*>(vec);
  auto B = [](void* p) { return static_cast<bf16*>(p); };

  struct Step {
    const char* name;
    double flops;
    std::function<Status()> run;
  };
  const double attn_flops = 2.0 * 2.0 * double(len) * len / 2.0 * c.head_dim * c.num_heads * seqs;
  std::vector<Step> bf16_steps = {
      {"add_rms_norm", 0,
       [&] {
         return launch_add_rms_norm(static_cast<float*>(resid), B(delta), fv, B(normed), t, h,
                                    1e-6f, 0);
       }},
      {"gemm_qkv", 2.0 * t * h * qkv_w,
       [&] { return g.gemm(B(normed), B(w_qkv), B(qkv), t, qkv_w, h, 0); }},
      {"qk_norm_rope", 0,
       [&] {
         return launch_qk_norm_rope(B(qkv), t, c.num_heads, c.num_kv_heads, d_pos, fv + h, fv, fv,
                                    1e-6f, 0);
       }},
      {"attention", attn_flops,
       [&] {
         return launch_attention(B(qkv), c.num_heads, c.num_kv_heads, block_m, d_tiles, m,
                                 num_tiles, 0.0883883f, B(attn), 0);
       }},
      {"gemm_o", 2.0 * t * c.q_width() * h,
       [&] { return g.gemm(B(attn), B(w_o), B(delta), t, h, c.q_width(), 0); }},
      {"add_rms_norm", 0,
       [&] {
         return launch_add_rms_norm(static_cast<float*>(resid), B(delta), fv, B(normed), t, h,
                                    1e-6f, 0);
       }},
      {"gemm_gate_up", 2.0 * t * h * 2.0 * inter,
       [&] { return g.gemm(B(normed), B(w_gu), B(gu), t, 2 * inter, h, 0); }},
      {"swiglu", 0, [&] { return launch_swiglu(B(gu), t, inter, B(act), 0); }},
      {"gemm_down", 2.0 * t * inter * h,
       [&] { return g.gemm(B(act), B(w_down), B(delta), t, h, inter, 0); }},
  };
  std::vector<Step> fp8_steps = {
      {"add_rms_norm8", 0,
       [&] {
         return launch_add_rms_norm_fp8(static_cast<float*>(resid), B(delta), fv, Q(q_act), s_act,
                                        t, h, 1e-6f, 0);
       }},
      {"gemm_qkv8", 2.0 * t * h * qkv_w,
       [&] { return g.gemm_fp8(Q(q_act), s_act, Q(q_qkv), s_qkv, B(qkv), t, qkv_w, h, 0); }},
      bf16_steps[2],
      bf16_steps[3],
      {"quantize_attn", 0,
       [&] { return launch_quantize_rows_fp8(B(attn), t, c.q_width(), Q(q_act), s_act, 0); }},
      {"gemm_o8", 2.0 * t * c.q_width() * h,
       [&] { return g.gemm_fp8(Q(q_act), s_act, Q(q_o), s_o, B(delta), t, h, c.q_width(), 0); }},
      {"add_rms_norm8", 0,
       [&] {
         return launch_add_rms_norm_fp8(static_cast<float*>(resid), B(delta), fv, Q(q_act), s_act,
                                        t, h, 1e-6f, 0);
       }},
      {"gemm_gate_up8", 2.0 * t * h * 2.0 * inter,
       [&] { return g.gemm_fp8(Q(q_act), s_act, Q(q_gu), s_gu, B(gu), t, 2 * inter, h, 0); }},
      {"swiglu8", 0, [&] { return launch_swiglu_fp8(B(gu), t, inter, Q(q_act), s_act, 0); }},
      {"gemm_down8", 2.0 * t * inter * h,
       [&] { return g.gemm_fp8(Q(q_act), s_act, Q(q_down), s_down, B(delta), t, h, inter, 0); }},
  };
  const std::vector<Step>& steps = fp8 ? fp8_steps : bf16_steps;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  double total = 0;
  std::printf("\nlayer profile: %s %s, %d x %d tokens (block_m %d), times x %d layers\n",
              model.c_str(), fp8 ? "fp8" : "bf16", seqs, len, block_m, c.num_layers);
  std::printf("%-14s %10s %8s %9s\n", "step", "us/layer", "share", "TFLOP/s");
  std::vector<double> us(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    std::vector<float> times;
    for (int it = 0; it < 25; ++it) {
      CUDA_CHECK(cudaEventRecord(e0));
      QS_RETURN_IF_ERROR(steps[i].run());
      CUDA_CHECK(cudaEventRecord(e1));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      if (it >= 5) times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    us[i] = times[times.size() / 2] * 1e3;
    total += us[i];
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const double tf = steps[i].flops > 0 ? steps[i].flops / (us[i] * 1e-6) / 1e12 : 0;
    std::printf("%-14s %10.1f %7.1f%% %9.1f\n", steps[i].name, us[i], 100 * us[i] / total, tf);
    std::printf(
        "{\"model\":\"%s\",\"dtype\":\"%s\",\"profile_step\":\"%s\",\"tokens\":%d,\"seq_len\":%d,"
        "\"us_per_layer\":%.1f,\"tflops\":%.1f}\n",
        model.c_str(), fp8 ? "fp8" : "bf16", steps[i].name, t, len, us[i], tf);
  }
  const double tok_s = t / (total * 1e-6 * c.num_layers);
  std::printf("%-14s %10.1f  -> %.0f tok/s for the layers alone (%d layers)\n", "sum", total, tok_s,
              c.num_layers);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  for (void* p : bufs) cudaFree(p);
  return Status::ok();
}

void print_json(const Result& r, const EngineMemory& m, int64_t budget) {
  std::printf(
      "{\"engine\":\"qsearch-cuda\",\"model\":\"%s\",\"dtype\":\"%s\",\"workload\":\"%s\","
      "\"docs\":%lld,"
      "\"tokens\":%lld,\"batch_tokens\":%lld,\"seconds\":%.4f,\"tok_per_s\":%.0f,"
      "\"docs_per_s\":%.1f,\"tflops\":%.1f,\"ms_mean\":%.3f,\"ms_p50\":%.3f,"
      "\"weights_gib\":%.2f,\"workspace_gib\":%.2f,\"gpu_used_gib\":%.2f}\n",
      r.model.c_str(), r.dtype.c_str(), r.workload.c_str(), static_cast<long long>(r.docs),
      static_cast<long long>(r.tokens), static_cast<long long>(budget), r.seconds, r.tok_s,
      r.docs_s, r.tflops, r.ms_mean, r.ms_p50, m.weights_bytes / 1073741824.0,
      m.workspace_bytes / 1073741824.0,
      (m.device_total_bytes - m.device_free_bytes) / 1073741824.0);
  std::fflush(stdout);
}

int usage(int code) {
  std::printf(
      "usage: qsearch-bench-engine-cuda [--model 0.6B|4B|8B|all] [--workload all|fixed512|mixed|"
      "single|gemm|profile]\n"
      "                                 [--max-batch-tokens N] [--layers N] [--device N]\n"
      "                                 [--dtype bf16|fp8|both] [--fp8-fast-accum]\n");
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models = {"0.6B"};
  std::string workload = "all";
  int64_t budget = 0;
  int layers = 0, device = 0;
  std::vector<EngineDType> dtypes = {EngineDType::kBF16};
  bool fast_accum = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--help" || a == "-h") return usage(0);
    if (a == "--model") {
      std::string m = next();
      models =
          m == "all" ? std::vector<std::string>{"0.6B", "4B", "8B"} : std::vector<std::string>{m};
    } else if (a == "--workload") {
      workload = next();
    } else if (a == "--max-batch-tokens") {
      budget = std::stoll(next());
    } else if (a == "--layers") {
      layers = std::stoi(next());
    } else if (a == "--device") {
      device = std::stoi(next());
    } else if (a == "--dtype") {
      std::string d = next();
      if (d == "both") {
        dtypes = {EngineDType::kBF16, EngineDType::kFP8};
      } else {
        auto p = parse_engine_dtype(d);
        if (!p.is_ok()) {
          std::fprintf(stderr, "--dtype: %s (or both)\n", p.status().message().c_str());
          return usage(2);
        }
        dtypes = {*p};
      }
    } else if (a == "--fp8-fast-accum") {
      fast_accum = true;
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return usage(2);
    }
  }
  auto want = [&](const char* w) { return workload == "all" || workload == w; };
  std::vector<Result> results;
  for (const auto& model : models) {
    auto cfg = test_model_config(model, layers);
    if (!cfg.is_ok()) {
      std::fprintf(stderr, "%s\n", cfg.status().to_string().c_str());
      return 2;
    }
    if (want("gemm")) {
      for (EngineDType d : dtypes) {
        Status st = gemm_ceiling(*cfg, model, d == EngineDType::kFP8, fast_accum);
        if (!st.is_ok()) std::fprintf(stderr, "gemm: %s\n", st.to_string().c_str());
      }
    }
    if (want("profile")) {
      for (EngineDType d : dtypes) {
        Status st = layer_profile(*cfg, model, 32, 512, d == EngineDType::kFP8, fast_accum);
        if (!st.is_ok()) std::fprintf(stderr, "profile: %s\n", st.to_string().c_str());
      }
    }
    if (workload == "gemm" || workload == "profile") continue;
    for (EngineDType dtype : dtypes) {
      CudaEngineOptions o;
      o.device = device;
      o.max_batch_tokens = budget;
      o.dtype = dtype;
      o.fp8_fast_accum = fast_accum;
      auto t0 = Clock::now();
      auto eng = make_random_cuda_engine(*cfg, o, 1);
      if (!eng.is_ok()) {
        std::fprintf(stderr, "%s %s: %s\n", model.c_str(), engine_dtype_name(dtype),
                     eng.status().to_string().c_str());
        return 1;
      }
      Backend& b = **eng;
      std::fprintf(stderr, "%s %s: engine ready in %.1f s\n", model.c_str(),
                   engine_dtype_name(dtype),
                   std::chrono::duration<double>(Clock::now() - t0).count());
      auto report = [&](const Status& st, const Result& r) {
        if (!st.is_ok()) {
          std::fprintf(stderr, "%s %s: %s\n", model.c_str(), r.workload.c_str(),
                       st.to_string().c_str());
          return false;
        }
        const EngineMemory mem = b.memory();
        print_json(r, mem, b.max_batch_tokens());
        Result kept = r;
        kept.gpu_gib = (mem.device_total_bytes - mem.device_free_bytes) / 1073741824.0;
        results.push_back(kept);
        return true;
      };
      Result r;
      r.dtype = engine_dtype_name(dtype);
      if (want("fixed512")) {
        std::vector<int> lens(model == "8B" ? 512 : 1024, 512);
        r.workload = "fixed512";
        if (!report(run_docs(b, *cfg, model, "fixed512", lens, false, &r), r)) return 1;
      }
      if (want("mixed")) {
        r.workload = "mixed";
        if (!report(run_docs(b, *cfg, model, "mixed-lognormal180",
                             mixed_lengths(model == "0.6B" ? 4096 : 1024, 0), true, &r),
                    r))
          return 1;
      }
      if (want("single")) {
        for (int len : {32, 512}) {
          r.workload = "single";
          if (!report(run_single(b, *cfg, model, len, &r), r)) return 1;
        }
      }
    }
  }
  std::printf("\n%-6s %-5s %-20s %7s %9s %10s %9s %8s %9s %9s %8s\n", "model", "dtype", "workload",
              "docs", "tokens", "tok/s", "docs/s", "TFLOP/s", "ms mean", "ms p50", "GPU GiB");
  for (const auto& r : results)
    std::printf("%-6s %-5s %-20s %7lld %9lld %10.0f %9.1f %8.1f %9.3f %9.3f %8.2f\n",
                r.model.c_str(), r.dtype.c_str(), r.workload.c_str(),
                static_cast<long long>(r.docs), static_cast<long long>(r.tokens), r.tok_s, r.docs_s,
                r.tflops, r.ms_mean, r.ms_p50, r.gpu_gib);
  return 0;
}
