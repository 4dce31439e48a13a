// The naive double-precision Qwen3 reference (see reference_util.h).
#include "engine/reference_util.h"

#include <gtest/gtest.h>

#include <cmath>

namespace qsearch::testing {
namespace {

std::vector<double> to_double(const TensorView& t) {
  std::vector<float> f = t.to_float();
  return std::vector<double>(f.begin(), f.end());
}

// y = w * x / sqrt(mean(x^2) + eps)
std::vector<double> rms_norm(const double* x, const std::vector<double>& w, double eps) {
  size_t n = w.size();
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  double r = 1.0 / std::sqrt(ss / n + eps);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
  return y;
}

// y[o] = sum_i W[o, i] x[i], W row-major [out, in]
std::vector<double> linear(const std::vector<double>& w, const std::vector<double>& x, size_t out) {
  size_t in = x.size();
  std::vector<double> y(out, 0.0);
  for (size_t o = 0; o < out; ++o) {
    double s = 0;
    for (size_t i = 0; i < in; ++i) s += w[o * in + i] * x[i];
    y[o] = s;
  }
  return y;
}

}  // namespace

std::unique_ptr<ReferenceModel> ReferenceModel::load(const std::string& model_dir) {
  auto config = ModelConfig::from_file(model_dir + "/config.json");
  if (!config.is_ok()) {
    ADD_FAILURE() << config.status().to_string();
    return nullptr;
  }
  auto weights = ModelWeights::open(model_dir, *config);
  if (!weights.is_ok()) {
    ADD_FAILURE() << weights.status().to_string();
    return nullptr;
  }
  std::unique_ptr<ReferenceModel> m(new ReferenceModel());
  m->config_ = *config;
  for (int i = 0; i < config->num_layers; ++i) {
    const LayerWeights& w = (*weights)->layer(i);
    Layer l;
    l.input_norm = to_double(w.input_layernorm);
    l.post_norm = to_double(w.post_attention_layernorm);
    l.q_norm = to_double(w.q_norm);
    l.k_norm = to_double(w.k_norm);
    l.wq = to_double(w.q_proj);
    l.wk = to_double(w.k_proj);
    l.wv = to_double(w.v_proj);
    l.wo = to_double(w.o_proj);
    l.wgate = to_double(w.gate_proj);
    l.wup = to_double(w.up_proj);
    l.wdown = to_double(w.down_proj);
    m->layers_.push_back(std::move(l));
  }
  m->final_norm_ = to_double((*weights)->norm());
  m->weights_ = std::move(weights).value();
  return m;
}

std::vector<double> ReferenceModel::embed(const std::vector<int32_t>& ids, int dim) const {
  std::vector<double> out = last_hidden(ids);
  size_t keep = dim > 0 ? static_cast<size_t>(dim) : out.size();
  out.resize(keep);
  double ss = 0;
  for (double e : out) ss += e * e;
  for (double& e : out) e /= std::max(std::sqrt(ss), 1e-12);
  return out;
}

std::vector<double> ReferenceModel::last_hidden(const std::vector<int32_t>& ids) const {
  const ModelConfig& c = config_;
  const size_t n = ids.size(), H = c.hidden_size, D = c.head_dim, half = D / 2;
  const size_t heads = c.num_heads, kv_heads = c.num_kv_heads, group = heads / kv_heads;
  const double eps = c.rms_norm_eps;

  // Embedding rows (converted from the stored dtype).
  const TensorView& table = weights_->embed_tokens();
  std::vector<std::vector<double>> x(n, std::vector<double>(H));
  for (size_t t = 0; t < n; ++t) {
    TensorView row = table;
    row.shape = {static_cast<int64_t>(H)};
    row.data = static_cast<const uint8_t*>(table.data) + ids[t] * H * dtype_size(table.dtype);
    std::vector<float> f = row.to_float();
    for (size_t j = 0; j < H; ++j) x[t][j] = f[j];
  }

  // RoPE: inv_freq and angles in fp32 as torch computes them; cos/sin in double.
  std::vector<float> inv_freq(half);
  for (size_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta),
                                  static_cast<float>(2 * i) / static_cast<float>(D));
  auto rope = [&](double* v, size_t pos) {
    for (size_t i = 0; i < half; ++i) {
      double a = static_cast<double>(static_cast<float>(pos) * inv_freq[i]);
      double cs = std::cos(a), sn = std::sin(a);
      double x1 = v[i], x2 = v[i + half];
      v[i] = x1 * cs - x2 * sn;         // first half: x1 cos - x2 sin
      v[i + half] = x2 * cs + x1 * sn;  // second half: x2 cos + x1 sin
    }
  };

  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    const bool last_layer = li + 1 == layers_.size();
    const size_t first_query = last_layer ? n - 1 : 0;  // later rows are never needed
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (size_t t = 0; t < n; ++t) {
      std::vector<double> h = rms_norm(x[t].data(), l.input_norm, eps);
      k[t] = linear(l.wk, h, kv_heads * D);
      v[t] = linear(l.wv, h, kv_heads * D);
      for (size_t g = 0; g < kv_heads; ++g) {
        std::vector<double> kn = rms_norm(&k[t][g * D], l.k_norm, eps);
        std::copy(kn.begin(), kn.end(), &k[t][g * D]);
        rope(&k[t][g * D], t);
      }
      if (t < first_query) continue;
      q[t] = linear(l.wq, h, heads * D);
      for (size_t hd = 0; hd < heads; ++hd) {
        std::vector<double> qn = rms_norm(&q[t][hd * D], l.q_norm, eps);
        std::copy(qn.begin(), qn.end(), &q[t][hd * D]);
        rope(&q[t][hd * D], t);
      }
    }
    for (size_t t = first_query; t < n; ++t) {
      std::vector<double> attn(heads * D, 0.0);
      for (size_t hd = 0; hd < heads; ++hd) {
        size_t g = hd / group;
        std::vector<double> s(t + 1);
        double m = -1e300;
        for (size_t j = 0; j <= t; ++j) {
          double d = 0;
          for (size_t e = 0; e < D; ++e) d += q[t][hd * D + e] * k[j][g * D + e];
          s[j] = d / std::sqrt(static_cast<double>(D));
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (size_t j = 0; j <= t; ++j) sum += (s[j] = std::exp(s[j] - m));
        for (size_t j = 0; j <= t; ++j)
          for (size_t e = 0; e < D; ++e) attn[hd * D + e] += s[j] / sum * v[j][g * D + e];
      }
      std::vector<double> o = linear(l.wo, attn, H);
      for (size_t j = 0; j < H; ++j) x[t][j] += o[j];
      std::vector<double> h = rms_norm(x[t].data(), l.post_norm, eps);
      std::vector<double> gate = linear(l.wgate, h, c.intermediate_size);
      std::vector<double> up = linear(l.wup, h, c.intermediate_size);
      for (size_t j = 0; j < gate.size(); ++j)
        gate[j] = gate[j] / (1.0 + std::exp(-gate[j])) * up[j];
      std::vector<double> down = linear(l.wdown, gate, H);
      for (size_t j = 0; j < H; ++j) x[t][j] += down[j];
    }
  }
  return rms_norm(x[n - 1].data(), final_norm_, eps);
}

double cosine(const std::vector<float>& a, const std::vector<double>& b) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    d += a[i] * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += b[i] * b[i];
  }
  return d / std::sqrt(na * nb);
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  return cosine(a, std::vector<double>(b.begin(), b.end()));
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = a.size() == b.size() ? 0.0 : 1e9;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace qsearch::testing
