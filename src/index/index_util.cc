#include "index/index_util.h"

#include <faiss/index_io.h>
#include <faiss/impl/io.h>

#include <exception>

namespace qsearch::index_internal {

faiss::MetricType to_faiss(IndexMetric metric) {
  return metric == IndexMetric::kL2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
}

Status guard_faiss(const char* what, const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return internal_error(std::string(what) + ": " + e.what());
  }
  return Status::ok();
}

Status faiss_to_bytes(const faiss::Index* index, std::string* out) {
  faiss::VectorIOWriter writer;
  QS_RETURN_IF_ERROR(guard_faiss("faiss::write_index", [&] { faiss::write_index(index, &writer); }));
  out->assign(reinterpret_cast<const char*>(writer.data.data()), writer.data.size());
  return Status::ok();
}

StatusOr<std::unique_ptr<faiss::Index>> faiss_from_bytes(std::string_view bytes) {
  faiss::VectorIOReader reader;
  reader.data.assign(reinterpret_cast<const uint8_t*>(bytes.data()),
                     reinterpret_cast<const uint8_t*>(bytes.data()) + bytes.size());
  try {
    return std::unique_ptr<faiss::Index>(faiss::read_index(&reader));
  } catch (const std::exception& e) {
    return corruption(std::string("faiss::read_index: ") + e.what());
  }
}

}  // namespace qsearch::index_internal
