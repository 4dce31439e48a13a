// Collection settings <-> JSON: parsed once, validated here (see options.h for the rules).
#include "collection/options.h"

#include <algorithm>

namespace qsearch {

const char* metric_name(Metric m) {
  switch (m) {
    case Metric::kCosine: return "cosine";
    case Metric::kInnerProduct: return "ip";
    case Metric::kL2: return "l2";
  }
  return "cosine";
}

StatusOr<Metric> parse_metric(const std::string& name) {
  if (name == "cosine") return Metric::kCosine;
  if (name == "ip") return Metric::kInnerProduct;
  if (name == "l2") return Metric::kL2;
  return unprocessable("unknown metric '" + name + "' (cosine, ip, l2)");
}

Status check_document_id(const std::string& id) {
  if (id.empty()) return invalid_argument("document id must not be empty");
  if (id.size() > kMaxIdBytes)
    return unprocessable("document id is " + std::to_string(id.size()) + " bytes, more than " +
                         std::to_string(kMaxIdBytes));
  return Status::ok();
}

bool valid_collection_name(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
  });
}

namespace {

// An optional integer field into *out, checked against [lo, hi]. A non-integer is `type_code`
// (the top level answers 400, the nested option objects 422 as they always have).
Status read_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi, int* out,
                const std::string& where, StatusCode type_code = StatusCode::kUnprocessable) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_number_integer()) return Status(type_code, where + key + " must be an integer");
  // Unsigned values above INT64_MAX compare as out of range rather than wrapping.
  const bool too_big = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi);
  const int64_t v = too_big ? hi : it->get<int64_t>();
  if (too_big || v < lo || v > hi) {
    return unprocessable(where + key + " must be in " + std::to_string(lo) + ".." +
                         std::to_string(hi) + ", got " + it->dump());
  }
  *out = static_cast<int>(v);
  return Status::ok();
}

Status read_string(const nlohmann::json& j, const char* key, std::string* out,
                   const std::string& where, StatusCode type_code = StatusCode::kUnprocessable) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_string()) return Status(type_code, where + key + " must be a string");
  *out = it->get<std::string>();
  return Status::ok();
}

}  // namespace

nlohmann::json IndexSpec::to_json() const {
  nlohmann::json j = {{"type", type}};
  if (type == "hnsw") {
    j["m"] = hnsw_m;
    j["ef_construction"] = hnsw_ef_construction;
    j["ef_search"] = hnsw_ef_search;
  } else if (type == "ivf") {
    j["nlist"] = ivf_nlist;
    j["nprobe"] = ivf_nprobe;
    j["train_min"] = ivf_train_min;
  } else if (type == "gpu") {
    j["precision"] = gpu_precision;
    if (gpu_precision == "int8") j["rescore"] = gpu_rescore;
  }
  // Only when set: a spec stored before quantizers existed serialises as it always did.
  if (quantized()) j["quantizer"] = quantizer;
  if (quantizer == "pq") {
    j["pq_m"] = pq_m;
    j["pq_nbits"] = pq_nbits;
  }
  if (quantized() || rescore != 0) j["rescore"] = rescore;
  return j;
}

int IndexSpec::default_pq_m(int dimension) {
  for (int m = std::max(1, dimension / 4); m > 1; --m) {
    if (dimension % m == 0) return m;
  }
  return 1;
}

Status IndexSpec::check_dimension(int dimension) const {
  if (quantizer != "pq" || dimension <= 0 || pq_m == 0) return Status::ok();
  if (dimension % pq_m != 0) {
    return unprocessable("index.pq_m must divide the dimension " + std::to_string(dimension) +
                         ", got " + std::to_string(pq_m));
  }
  return Status::ok();
}

StatusOr<IndexSpec> IndexSpec::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return invalid_argument("\"index\" must be an object");
  IndexSpec s;
  QS_RETURN_IF_ERROR(read_string(j, "type", &s.type, "index."));
  static const char* kHnswKeys[] = {"m", "ef_construction", "ef_search", "quantizer", "rescore"};
  static const char* kIvfKeys[] = {"nlist",   "nprobe",   "train_min", "quantizer",
                                   "pq_m",    "pq_nbits", "rescore"};
  static const char* kGpuKeys[] = {"precision", "rescore"};
  for (const auto& [key, value] : j.items()) {
    (void)value;
    bool known = key == "type";
    if (s.type == "hnsw") for (const char* k : kHnswKeys) known = known || key == k;
    if (s.type == "ivf") for (const char* k : kIvfKeys) known = known || key == k;
    if (s.type == "gpu") for (const char* k : kGpuKeys) known = known || key == k;
    if (!known && (key == "quantizer" || key == "rescore")) {
      return unprocessable("index." + key + " is not available for type " + s.type +
                           " (an exact index; use hnsw or ivf)");
    }
    if (!known) return unprocessable("unknown index parameter '" + key + "' for type " + s.type);
  }
  if (s.type == "hnsw") {
    QS_RETURN_IF_ERROR(read_int(j, "m", 2, 512, &s.hnsw_m, "index."));
    QS_RETURN_IF_ERROR(read_int(j, "ef_construction", 1, 100000, &s.hnsw_ef_construction, "index."));
    QS_RETURN_IF_ERROR(read_int(j, "ef_search", 1, 100000, &s.hnsw_ef_search, "index."));
  } else if (s.type == "ivf") {
    QS_RETURN_IF_ERROR(read_int(j, "nlist", 0, 1 << 20, &s.ivf_nlist, "index."));
    QS_RETURN_IF_ERROR(read_int(j, "nprobe", 1, 1 << 20, &s.ivf_nprobe, "index."));
    QS_RETURN_IF_ERROR(read_int(j, "train_min", 0, 1 << 30, &s.ivf_train_min, "index."));
  } else if (s.type == "gpu") {
    QS_RETURN_IF_ERROR(read_string(j, "precision", &s.gpu_precision, "index."));
    if (s.gpu_precision != "bf16" && s.gpu_precision != "int8")
      return unprocessable("index.precision must be \"bf16\" or \"int8\", got \"" +
                           s.gpu_precision + "\"");
    QS_RETURN_IF_ERROR(read_int(j, "rescore", 1, 4096, &s.gpu_rescore, "index."));
  } else if (s.type != "flat") {
    return unprocessable("unknown index type '" + s.type + "' (flat, hnsw, ivf, gpu)");
  }
  QS_RETURN_IF_ERROR(read_string(j, "quantizer", &s.quantizer, "index."));
  const bool ok_quantizer = s.quantizer == "none" ||
                            (s.type == "hnsw" && (s.quantizer == "sq8" || s.quantizer == "fp16")) ||
                            (s.type == "ivf" && s.quantizer == "pq");
  if (!ok_quantizer) {
    return unprocessable("unknown index.quantizer '" + s.quantizer + "' for type " + s.type +
                         (s.type == "hnsw" ? " (none, sq8, fp16)" : " (none, pq)"));
  }
  if (s.quantizer != "pq" && (j.contains("pq_m") || j.contains("pq_nbits"))) {
    return unprocessable("index.pq_m and index.pq_nbits need \"quantizer\": \"pq\"");
  }
  QS_RETURN_IF_ERROR(read_int(j, "pq_m", 1, 4096, &s.pq_m, "index."));
  QS_RETURN_IF_ERROR(read_int(j, "pq_nbits", 4, 12, &s.pq_nbits, "index."));
  // hnsw/ivf: the collection's rescoring from the stored vectors. (gpu's "rescore" is the gpu
  // index's own, read into gpu_rescore above.)
  s.rescore = s.quantized() ? kDefaultRescore : 0;
  if (s.type == "hnsw" || s.type == "ivf")
    QS_RETURN_IF_ERROR(read_int(j, "rescore", 0, kMaxRescore, &s.rescore, "index."));
  return s;
}

nlohmann::json ChunkingOptions::to_json() const {
  return {{"max_tokens", max_tokens}, {"overlap", overlap}};
}

StatusOr<ChunkingOptions> ChunkingOptions::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    return unprocessable("\"chunking\" must be an object {\"max_tokens\", \"overlap\"}");
  ChunkingOptions o;
  for (const auto& [key, value] : j.items()) {
    if (key != "max_tokens" && key != "overlap")
      return unprocessable("unknown field \"" + key + "\" in \"chunking\"");
    if (!value.is_number_integer())
      return unprocessable("\"chunking\".\"" + key + "\" must be an integer");
  }
  if (j.contains("max_tokens")) {
    const int64_t v = j["max_tokens"].get<int64_t>();
    if (v < 16 || v > 32768)
      return unprocessable("\"chunking\".\"max_tokens\" must be in 16..32768, got " + std::to_string(v));
    o.max_tokens = static_cast<int>(v);
  }
  if (j.contains("overlap")) {
    const int64_t v = j["overlap"].get<int64_t>();
    if (v < 0 || v > o.max_tokens / 2)
      return unprocessable("\"chunking\".\"overlap\" must be in 0.." + std::to_string(o.max_tokens / 2) +
                           " (half of max_tokens), got " + std::to_string(v));
    o.overlap = static_cast<int>(v);
  } else {
    o.overlap = std::min(o.overlap, o.max_tokens / 2);
  }
  return o;
}

nlohmann::json DedupOptions::to_json() const {
  return {{"threshold", threshold}, {"action", skip ? "skip" : "flag"}};
}

StatusOr<DedupOptions> DedupOptions::from_json(const nlohmann::json& d) {
  if (!d.is_object()) return unprocessable("\"dedup\" must be an object");
  DedupOptions o;
  for (const auto& [key, value] : d.items())
    if (key != "threshold" && key != "action")
      return unprocessable("unknown field \"" + key + "\" in \"dedup\"");
  if (d.contains("threshold")) {
    const auto& t = d["threshold"];
    if (!t.is_number() || !(t.get<double>() > 0.0 && t.get<double>() <= 1.0))
      return unprocessable("\"dedup\".\"threshold\" must be a number in (0, 1]");
    o.threshold = t.get<double>();
  }
  if (d.contains("action")) {
    if (d["action"] != "skip" && d["action"] != "flag")
      return unprocessable("\"dedup\".\"action\" must be \"skip\" or \"flag\"");
    o.skip = d["action"] == "skip";
  }
  return o;
}

nlohmann::json CollectionSpec::options_json() const {
  nlohmann::json o = nlohmann::json::object();
  if (chunking) o["chunking"] = chunking->to_json();
  if (dedup) o["dedup"] = dedup->to_json();
  o["lexical"] = lexical;
  return o;
}

nlohmann::json CollectionSpec::to_json() const {
  return {{"name", name},
          {"dimension", dimension},
          {"metric", metric_name(metric)},
          {"index", index.to_json()},
          {"query_instruction", query_instruction},
          {"max_tokens", max_tokens},
          {"model", model},
          {"options", options_json()}};
}

StatusOr<CollectionSpec> CollectionSpec::from_json(const nlohmann::json& j, bool stored) {
  if (!j.is_object()) return invalid_argument("collection settings must be an object");
  constexpr StatusCode kType = StatusCode::kInvalidArgument;
  CollectionSpec s;
  auto name = j.find("name");
  if (name == j.end() || name->is_null()) return invalid_argument("\"name\" is required");
  if (!name->is_string()) return invalid_argument("\"name\" must be a string");
  s.name = name->get<std::string>();
  if (!valid_collection_name(s.name))
    return invalid_argument("collection name must be 1..128 characters of A-Z a-z 0-9 _ . -, got \"" +
                            s.name + "\"");
  if (j.contains("dimension") && !j["dimension"].is_null()) {
    QS_RETURN_IF_ERROR(read_int(j, "dimension", 1, kMaxDimension, &s.dimension, "", kType));
  }
  std::string metric = metric_name(s.metric);
  QS_RETURN_IF_ERROR(read_string(j, "metric", &metric, "", kType));
  QS_ASSIGN_OR_RETURN(s.metric, parse_metric(metric));
  if (auto it = j.find("index"); it != j.end() && !it->is_null()) {
    QS_ASSIGN_OR_RETURN(s.index, IndexSpec::from_json(*it));
  }
  // A dimension of 0 is the model's: the service checks pq_m once it has resolved it.
  QS_RETURN_IF_ERROR(s.index.check_dimension(s.dimension));
  if (s.index.quantizer == "pq" && s.index.pq_m == 0 && s.dimension > 0)
    s.index.pq_m = IndexSpec::default_pq_m(s.dimension);
  QS_RETURN_IF_ERROR(read_string(j, "query_instruction", &s.query_instruction, "", kType));
  QS_RETURN_IF_ERROR(
      read_int(j, "max_tokens", stored ? 1 : kMinMaxTokens, kMaxMaxTokens, &s.max_tokens, "", kType));
  QS_RETURN_IF_ERROR(read_string(j, "model", &s.model, "", kType));
  if (auto it = j.find("options"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return unprocessable("collection options must be an object");
    for (const auto& [key, value] : it->items()) {
      if (key == "chunking") {
        QS_ASSIGN_OR_RETURN(ChunkingOptions c, ChunkingOptions::from_json(value));
        s.chunking = c;
      } else if (key == "dedup") {
        QS_ASSIGN_OR_RETURN(DedupOptions d, DedupOptions::from_json(value));
        s.dedup = d;
      } else if (key == "lexical") {
        if (!value.is_boolean()) return unprocessable("\"lexical\" must be true or false");
        s.lexical = value.get<bool>();
      } else {
        return unprocessable("unknown collection option \"" + key + "\"");
      }
    }
  }
  if (s.chunking && s.dedup)
    return unprocessable("\"dedup\" compares whole-document embeddings and cannot be combined "
                         "with \"chunking\" (use POST /collections/{name}/duplicates instead)");
  if (s.dedup && s.metric != Metric::kCosine)
    return unprocessable("\"dedup\" needs the cosine metric (its threshold is a cosine)");
  return s;
}

}  // namespace qsearch
