// What is running and how far long work got:
//   GET /info                 version, build, model (id, digest, dimensions, dtype, devices),
//                             reranker, limits in force
//   GET /v1/models            the OpenAI model list: the embedding model and the reranker
//   GET /v1/models/{model}    one of them (404 for any other id)
//   GET /jobs, GET /jobs/{id} imports, index rebuilds and optimisations (common/jobs.h)
// /info and /jobs answer before the model is loaded (a rebuild at start-up is a job too).
#include <chrono>

#include "api/errors.h"
#include "api/routes.h"
#include "common/build_info.h"
#include "common/jobs.h"

namespace qsearch::api {
namespace {

// Must stay in step with the limits where they are enforced (collection_search.cc: k,
// routes_embeddings.cc: inputs, options.h: ids, service.h: rerank documents).
constexpr int kMaxK = 1000;
constexpr int kMaxEmbeddingInputs = 2048;

const double kProcessStart =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

// "name@0123456789abcdef" -> "0123456789abcdef".
std::string digest_of(const std::string& identity) {
  size_t at = identity.rfind('@');
  return at == std::string::npos ? "" : identity.substr(at + 1);
}

// Numerics of an engine by its name and the server's dtype option: the CPU engine is fp32, the
// CUDA engine bf16 (or, with dtype fp8, E4M3 GEMMs) with fp32 accumulation
// (embed/engine/cuda/cuda_engine.h).
std::string compute_dtype(const std::string& backend, const std::string& engine_dtype) {
  if (backend.rfind("cuda", 0) != 0) return "float32";
  return engine_dtype == "fp8" ? "float8_e4m3fn" : "bfloat16";
}

json model_json(const std::string& name, const std::string& identity, const ModelConfig& config,
                std::vector<std::string> backends, const std::string& engine_dtype) {
  json devices = json::array();
  std::string dtype;
  for (const auto& b : backends) {
    devices.push_back(b);
    if (dtype.empty()) dtype = compute_dtype(b, engine_dtype);
  }
  return {{"id", name},
          {"identity", identity},
          {"digest", digest_of(identity)},
          {"hidden_size", config.hidden_size},
          {"layers", config.num_layers},
          {"parameters", config.num_parameters()},
          {"max_position_embeddings", config.max_position_embeddings},
          {"checkpoint_dtype", config.dtype},
          {"dtype", dtype},
          {"devices", devices}};
}

void info(RequestContext& ctx) {
  const ServerConfig& c = ctx.config;
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  json j = {{"name", "qsearch"},
            {"version", version()},
            {"commit", build_commit()},
            {"build_type", build_type()},
#ifdef QSEARCH_HAVE_CUDA
            {"cuda", true},
#else
            {"cuda", false},
#endif
            {"ready", ctx.service != nullptr},
            {"started_at", kProcessStart},
            {"uptime_s", now - kProcessStart},
            {"auth", c.auth_enabled()},
            {"model", nullptr},
            {"reranker", nullptr}};
  int64_t max_tokens = c.max_tokens_per_text;
  int64_t batch_tokens = c.max_batch_tokens;
  if (Service* s = ctx.service) {
    Embedder& e = s->embedder();
    std::vector<std::string> backends;
    for (size_t i = 0; i < e.num_backends(); ++i) backends.push_back(e.backend(i).name());
    json m = model_json(s->model_name(), s->model_identity(), e.config(), backends, c.dtype);
    m["dimensions"] = {{"min", s->min_dimension()}, {"max", s->hidden_size()}};
    max_tokens = std::min<int64_t>(max_tokens, e.max_input_tokens());
    m["max_tokens"] = max_tokens;
    m["engine"] = e.device_name();
    j["model"] = m;
    if (e.num_backends() > 0) batch_tokens = e.backend(0).max_batch_tokens();
    if (Reranker* r = s->reranker()) {
      std::vector<std::string> rb;
      for (size_t i = 0; i < r->num_backends(); ++i) rb.push_back(r->backend(i).name());
      j["reranker"] =
          model_json(s->reranker_name(), s->reranker_identity(), r->config(), rb, c.dtype);
    }
  }
  j["limits"] = {{"max_request_bytes", c.max_request_bytes},
                 {"max_import_line_bytes", c.max_request_bytes},
                 {"max_tokens_per_text", max_tokens},
                 {"truncate", c.truncate},
                 {"max_batch_tokens", batch_tokens},
                 {"queue_limit_tokens", c.queue_limit_tokens},
                 {"max_embedding_inputs", kMaxEmbeddingInputs},
                 {"max_k", kMaxK},
                 {"max_rerank_documents", kMaxRerankDocuments},
                 {"max_id_bytes", kMaxIdBytes},
                 {"max_dimension", kMaxDimension},
                 {"http_threads", c.http_threads},
                 {"read_timeout_s", c.read_timeout}};
  ctx.reply(200, j);
}

// The OpenAI model object; "created" is when the server loaded it.
json openai_model(const std::string& id, int64_t created, const char* kind) {
  return {{"id", id},
          {"object", "model"},
          {"created", created},
          {"owned_by", "qsearch"},
          {"type", kind}};
}

json model_list(Service& s) {
  json data = json::array();
  data.push_back(openai_model(s.model_name(), s.loaded_at(), "embedding"));
  if (s.reranker()) data.push_back(openai_model(s.reranker_name(), s.loaded_at(), "reranker"));
  return data;
}

void list_models(RequestContext& ctx) {
  ctx.reply(200, {{"object", "list"}, {"data", model_list(*ctx.service)}});
}

void get_model(RequestContext& ctx) {
  std::string id = checked_path_id(ctx.param(1), "model id");
  for (const auto& m : model_list(*ctx.service))
    if (m["id"] == id) {
      ctx.reply(200, m);
      return;
    }
  throw StatusException(not_found("model '" + id + "' is not served here (GET /v1/models)"));
}

void list_jobs(RequestContext& ctx) {
  json list = json::array();
  for (const auto& s : JobRegistry::global().list()) list.push_back(job_json(s));
  ctx.reply(200, {{"jobs", list}});
}

void get_job(RequestContext& ctx) {
  const std::string text = ctx.param(1);
  uint64_t id = 0;
  bool ok = !text.empty() && text.size() <= 18;
  for (char ch : text) ok = ok && ch >= '0' && ch <= '9';
  if (ok) id = std::stoull(text);
  auto s = ok ? JobRegistry::global().get(id) : std::nullopt;
  if (!s)
    throw StatusException(not_found("job '" + text + "' not found (finished jobs are kept for " +
                                    std::to_string(JobRegistry::kKeepFinished) + " jobs)"));
  ctx.reply(200, job_json(*s));
}

}  // namespace

json job_json(const JobSnapshot& s) {
  json j = {{"id", s.id},
            {"kind", s.kind},
            {"state", s.state},
            {"done", s.done},
            {"errors", s.errors},
            {"started_at", s.started_at},
            {"elapsed_s", s.elapsed_s},
            {"rate", s.rate}};
  j["collection"] = s.collection.empty() ? json(nullptr) : json(s.collection);
  j["total"] = s.total >= 0 ? json(s.total) : json(nullptr);
  if (!s.phase.empty()) j["phase"] = s.phase;
  if (s.bytes > 0 || s.total_bytes >= 0) {
    j["bytes"] = s.bytes;
    j["total_bytes"] = s.total_bytes >= 0 ? json(s.total_bytes) : json(nullptr);
  }
  if (s.state != "running") j["finished_at"] = s.finished_at;
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

std::vector<Route> info_routes() {
  return {
      {"GET", "/info", "/info", Access::kRead, Body::kNone, false, info},
      {"GET", "/v1/models", "/v1/models", Access::kRead, Body::kNone, true, list_models},
      {"GET", "/v1/models/{model}", "/v1/models/([^/]+)", Access::kRead, Body::kNone, true,
       get_model},
      {"GET", "/jobs", "/jobs", Access::kRead, Body::kNone, false, list_jobs},
      {"GET", "/jobs/{id}", "/jobs/([^/]+)", Access::kRead, Body::kNone, false, get_job},
  };
}

}  // namespace qsearch::api
