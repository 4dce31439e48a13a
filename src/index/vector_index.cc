#include "index/vector_index.h"

#include "index/flat_index.h"
#include "index/gpu_index.h"
#include "index/hnsw_index.h"
#include "index/index_util.h"
#include "index/ivf_index.h"

namespace qsearch {

using index_internal::ByteReader;
using index_internal::IndexKind;

static Status validate(const VectorIndexConfig& c) {
  if (c.dimension < 1) return invalid_argument("index dimension must be >= 1");
  if (c.quantizer != "none") {
    const bool ok = (c.type == "hnsw" && (c.quantizer == "sq8" || c.quantizer == "fp16")) ||
                    (c.type == "ivf" && c.quantizer == "pq");
    if (!ok) return invalid_argument("quantizer '" + c.quantizer + "' is not available for index type " + c.type);
    if (c.quantizer == "pq") {
      if (c.pq_m < 1 || c.dimension % c.pq_m != 0) return invalid_argument("pq m must divide the dimension");
      if (c.pq_nbits < 4 || c.pq_nbits > 12) return invalid_argument("pq nbits must be in 4..12");
    }
  }
  if (c.type == "flat") return Status::ok();
  if (c.type == "hnsw") {
    if (c.hnsw_m < 2 || c.hnsw_m > 512) return invalid_argument("hnsw m must be in 2..512");
    if (c.hnsw_ef_construction < 1) return invalid_argument("hnsw ef_construction must be >= 1");
    if (c.hnsw_ef_search < 1) return invalid_argument("hnsw ef_search must be >= 1");
    if (!(c.hnsw_rebuild_fraction > 0 && c.hnsw_rebuild_fraction <= 1)) {
      return invalid_argument("hnsw rebuild fraction must be in (0, 1]");
    }
    return Status::ok();
  }
  if (c.type == "ivf") {
    if (c.ivf_nlist < 0) return invalid_argument("ivf nlist must be >= 0");
    if (c.ivf_nprobe < 1) return invalid_argument("ivf nprobe must be >= 1");
    if (c.ivf_train_min < 0) return invalid_argument("ivf train_min must be >= 0");
    return Status::ok();
  }
  if (c.type == "gpu") {
    if (c.gpu_max_batch < 1 || c.gpu_max_batch > 1024) return invalid_argument("gpu max batch must be in 1..1024");
    if (c.gpu_chunk_rows < 0 || c.gpu_batch_wait_us < 0) return invalid_argument("gpu chunk rows and batch wait must be >= 0");
    if (c.gpu_precision != "bf16" && c.gpu_precision != "int8")
      return invalid_argument("gpu precision must be \"bf16\" or \"int8\", got \"" + c.gpu_precision + "\"");
    if (c.gpu_rescore < 1 || c.gpu_rescore > 4096) return invalid_argument("gpu rescore must be in 1..4096");
    if (c.gpu_devices.size() > 64) return invalid_argument("a gpu index has at most 64 shards");
    for (int d : c.gpu_devices)
      if (d < 0) return invalid_argument("gpu device ordinals must be >= 0");
    return Status::ok();
  }
  return invalid_argument("unknown index type '" + c.type + "' (flat, hnsw, ivf, gpu)");
}

StatusOr<std::unique_ptr<VectorIndex>> make_vector_index(const VectorIndexConfig& config) {
  QS_RETURN_IF_ERROR(validate(config));
  if (config.type == "hnsw") return std::unique_ptr<VectorIndex>(new HnswIndex(config));
  if (config.type == "ivf") return std::unique_ptr<VectorIndex>(new IvfIndex(config));
  if (config.type == "gpu") return std::unique_ptr<VectorIndex>(new GpuIndex(config));
  return std::unique_ptr<VectorIndex>(new FlatIndex(config.dimension, config.metric));
}

StatusOr<std::unique_ptr<VectorIndex>> make_vector_index_from(const VectorIndexConfig& config,
                                                              std::string_view bytes) {
  QS_RETURN_IF_ERROR(validate(config));
  // The gpu index is derived: its device copy is rebuilt from the stored embeddings.
  if (config.type == "gpu") return not_found("a gpu index is rebuilt from the store, not loaded");
  ByteReader r(bytes);
  uint8_t kind = 0;
  if (!r.get(&kind)) return corruption("empty index bytes");
  std::unique_ptr<VectorIndex> index;
  switch (static_cast<IndexKind>(kind)) {
    case IndexKind::kFlat: {
      if (config.type != "flat") return corruption("index bytes hold a flat index, expected " + config.type);
      QS_ASSIGN_OR_RETURN(index, FlatIndex::read_payload(config.dimension, config.metric, &r));
      break;
    }
    case IndexKind::kHnsw: {
      if (config.type != "hnsw") return corruption("index bytes hold an HNSW index, expected " + config.type);
      QS_ASSIGN_OR_RETURN(index, HnswIndex::read_payload(config, &r));
      break;
    }
    case IndexKind::kIvfUntrained:
    case IndexKind::kIvfTrained: {
      if (config.type != "ivf") return corruption("index bytes hold an IVF index, expected " + config.type);
      QS_ASSIGN_OR_RETURN(index, IvfIndex::read_payload(config, static_cast<IndexKind>(kind), &r));
      break;
    }
    default:
      return corruption("unknown index kind " + std::to_string(kind));
  }
  if (!r.done()) return corruption("index bytes have trailing data");
  if (index->dimension() != config.dimension) return corruption("index dimension mismatch");
  return index;
}

}  // namespace qsearch
