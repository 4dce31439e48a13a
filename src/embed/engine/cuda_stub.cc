// Stands in for the CUDA engine in builds without CUDA (cmake -DQSEARCH_CUDA=OFF).
#include "embed/embedder.h"

namespace qsearch {

StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const std::string&, const ModelConfig&,
                                                     int64_t, int, EngineDType) {
  return unavailable("this qsearch was built without CUDA (cmake -DQSEARCH_CUDA=OFF)");
}

int cuda_device_count() { return 0; }

}  // namespace qsearch
