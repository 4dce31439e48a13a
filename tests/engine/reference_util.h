// An independent, deliberately naive Qwen3 forward for tests: double precision, no BLAS, no
// batching, one sequence at a time, written from modeling_qwen3.py. Only the RoPE angles follow
// torch's fp32 computation (inv_freq and pos * inv_freq in float), since that is part of the
// model's definition; everything else is double.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "embed/model/config.h"
#include "embed/model/weights.h"

namespace qsearch::testing {

class ReferenceModel {
 public:
  // Loads model_dir (config.json + weights) into doubles; nullptr with a test failure on error.
  static std::unique_ptr<ReferenceModel> load(const std::string& model_dir);

  const ModelConfig& config() const { return config_; }
  // The L2-normalised last-token embedding of one sequence (ids must end with EOS), truncated
  // to dim components (0: hidden) before normalising. The last layer is computed for the last
  // token only, so a 1-layer model costs O(n) (used for the 32k-token test).
  std::vector<double> embed(const std::vector<int32_t>& ids, int dim = 0) const;
  // The final-norm hidden state of the last token (what embed() normalises; the reranker's).
  std::vector<double> last_hidden(const std::vector<int32_t>& ids) const;
  const ModelWeights& weights() const { return *weights_; }

 private:
  struct Layer {
    std::vector<double> input_norm, post_norm, q_norm, k_norm;
    std::vector<double> wq, wk, wv, wo, wgate, wup, wdown;
  };
  ModelConfig config_;
  std::unique_ptr<ModelWeights> weights_;  // the embedding table is read from it
  std::vector<Layer> layers_;
  std::vector<double> final_norm_;
};

double cosine(const std::vector<float>& a, const std::vector<double>& b);
double cosine(const std::vector<float>& a, const std::vector<float>& b);
double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b);

}  // namespace qsearch::testing
