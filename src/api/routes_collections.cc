// Collections, documents and search:
//   POST /collections, GET /collections, GET|DELETE /collections/{name}
//   PUT|GET|DELETE /collections/{name}/documents/{id}, POST /collections/{name}/documents
//   POST /collections/{name}/search
// Document ids may contain any character (URL-encoded in the path, '/' included): the id is
// everything after "/documents/", decoded.
#include <chrono>
#include <set>

#include "api/errors.h"
#include "api/routes.h"
#include "service/chunking.h"  // code_point_slice

namespace qsearch::api {
namespace {

const char* kName = "([^/]+)";

// The collection's running jobs (imports, index rebuilds), as GET /jobs shows them.
json running_jobs(const std::string& collection) {
  json list = json::array();
  for (const auto& s : JobRegistry::global().running_for(collection)) list.push_back(job_json(s));
  return list;
}

json collection_json(const CollectionInfo& info) {
  const CollectionSpec& s = info.spec;
  json j = {{"name", s.name},
          {"dimension", s.dimension},
          {"metric", metric_name(s.metric)},
          {"index", s.index.to_json()},
          {"query_instruction", s.query_instruction},
          {"max_tokens", s.max_tokens},
          {"model", s.model},
          {"document_count", info.document_count},
          {"index_type", info.index_type},
          {"index_size", info.index_vectors},
          {"index_pending", info.index_pending},
          {"index_trained_on", info.index_trained_on},
          {"index_bytes", info.index_bytes},
          {"bytes_per_vector", info.index_vectors > 0 ? info.index_bytes / info.index_vectors : 0},
          {"options", s.options_json()},
          {"jobs", running_jobs(s.name)}};
  if (!info.index_fallback_reason.empty()) j["fallback_reason"] = info.index_fallback_reason;
  if (!info.index_devices.empty()) {
    // The gpu index: device memory apart from index_bytes (host), and its shards.
    j["device_bytes"] = info.index_device_bytes;
    json devices = json::array();
    for (const auto& d : info.index_devices)
      devices.push_back({{"device", d.device}, {"name", d.name}, {"rows", d.rows},
                         {"live", d.live}, {"device_bytes", d.bytes}});
    j["devices"] = std::move(devices);
  }
  return j;
}

// A collection with the model rule's view (service.h check_model): "model_matches" and, when a
// re-embed job ran or was interrupted, "reembed" with its progress.
json collection_view(Service& service, const CollectionInfo& info) {
  json j = collection_json(info);
  j["model_matches"] = info.spec.model == service.model_identity();
  if (auto p = service.reembed_progress(info)) {
    json r = {{"state", p->state}, {"done", p->done}, {"total", p->total},
              {"started_at", p->started_at}};
    if (p->job != 0) r["job"] = p->job;
    if (!p->error.empty()) r["error"] = p->error;
    j["reembed"] = std::move(r);
  }
  return j;
}

void check_known_fields(const json& body, const std::set<std::string>& known, const char* what) {
  for (const auto& [key, value] : body.items())
    if (!known.count(key))
      throw StatusException(invalid_argument(std::string("unknown field \"") + key + "\" in " + what));
}

void create_collection(RequestContext& ctx) {
  json body = ctx.json_body();
  check_known_fields(body, {"name", "dimension", "metric", "index", "query_instruction", "max_tokens",
                            "dedup", "chunking", "lexical"},
                     "a collection");
  // The request's top-level "dedup", "chunking" and "lexical" are the spec's options; the spec
  // parser (collection/options.h) checks every field once.
  json spec_json = body;
  spec_json.erase("dedup");
  spec_json.erase("chunking");
  spec_json.erase("lexical");
  json options = json::object();
  for (const char* option : {"dedup", "chunking", "lexical"})
    if (const json* o = get_field(body, option)) options[option] = *o;
  spec_json["options"] = options;
  CollectionSpec spec = value_or_throw(CollectionSpec::from_json(spec_json));
  check(ctx.service->create_collection(spec));
  ctx.reply(201, collection_view(*ctx.service,
                                 value_or_throw(ctx.service->store().get_collection(spec.name))));
}

void list_collections(RequestContext& ctx) {
  json list = json::array();
  for (const auto& info : ctx.service->store().list_collections())
    list.push_back(collection_view(*ctx.service, info));
  ctx.reply(200, {{"collections", list}});
}

void get_collection(RequestContext& ctx) {
  std::string name = checked_path_id(ctx.param(1), "collection name");
  ctx.reply(200, collection_view(*ctx.service,
                                 value_or_throw(ctx.service->store().get_collection(name))));
}

// POST /collections/{name}/reembed: 202 {"job"}; the body is empty or {}.
void reembed_collection(RequestContext& ctx) {
  std::string name = checked_path_id(ctx.param(1), "collection name");
  if (ctx.body.find_first_not_of(" \t\r\n") != std::string::npos)
    check_known_fields(ctx.json_body(), {}, "a reembed request");
  const uint64_t job = value_or_throw(ctx.service->start_reembed(name));
  ctx.reply(202, {{"job", job}, {"collection", name}});
}

void delete_collection(RequestContext& ctx) {
  std::string name = checked_path_id(ctx.param(1), "collection name");
  check(ctx.service->store().delete_collection(name));
  ctx.reply(200, {{"name", name}, {"deleted", true}});
}

void put_document(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  std::string id = checked_path_id(ctx.param(2), "document id");
  json body = ctx.json_body();
  DocumentInput doc;
  json with_id = body;
  with_id["id"] = id;
  check(parse_document(with_id, &doc));
  std::vector<DocumentInput> docs;
  docs.push_back(std::move(doc));
  auto results = value_or_throw(
      ctx.service->upsert_documents(collection, std::move(docs), false, ctx.client_gone()));
  check(results[0].status);
  ctx.reply(200, document_result_json(results[0]));
}

void post_documents(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  json body = ctx.json_body();
  const json* list = get_field(body, "documents");
  if (!list || !list->is_array())
    throw StatusException(invalid_argument("\"documents\" must be an array of documents"));
  std::vector<DocumentInput> docs;
  std::vector<Status> parse_errors;
  std::vector<size_t> positions;  // index in the request of each parsed document
  std::vector<DocumentResult> results(list->size());
  for (size_t i = 0; i < list->size(); ++i) {
    DocumentInput doc;
    Status st = parse_document((*list)[i], &doc);
    if ((*list)[i].is_object() && (*list)[i].contains("id") && (*list)[i]["id"].is_string())
      results[i].id = (*list)[i]["id"].get<std::string>();
    if (!st.is_ok()) {
      results[i].status = st.with_context("documents[" + std::to_string(i) + "]");
      continue;
    }
    positions.push_back(i);
    docs.push_back(std::move(doc));
  }
  auto done = value_or_throw(
      ctx.service->upsert_documents(collection, std::move(docs), false, ctx.client_gone()));
  for (size_t k = 0; k < done.size(); ++k) results[positions[k]] = std::move(done[k]);
  json items = json::array();
  int64_t ok = 0, failed = 0, duplicates = 0;
  for (const auto& r : results) {
    if (!r.status.is_ok()) {
      ++failed;
    } else if (!r.skipped) {
      ++ok;  // stored ("dedup": "skip" leaves a duplicate out: counted below, not here)
    }
    if (r.status.is_ok() && !r.duplicate_of.empty()) ++duplicates;
    items.push_back(document_result_json(r));
  }
  ctx.reply(200, {{"results", items}, {"upserted", ok}, {"duplicates", duplicates}, {"failed", failed}});
}

void get_document(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  std::string id = checked_path_id(ctx.param(2), "document id");
  bool with_embedding = false;
  if (ctx.req.has_param("include")) {
    std::string include = ctx.req.get_param_value("include");
    size_t start = 0;
    while (start <= include.size()) {
      size_t comma = include.find(',', start);
      std::string item = include.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (item == "embedding") with_embedding = true;
      else if (!item.empty())
        throw StatusException(invalid_argument("include=" + item + ": only \"embedding\" can be included"));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  Document doc = value_or_throw(ctx.service->store().get(collection, id, with_embedding));
  ctx.reply(200, document_json(doc, true, true, with_embedding));
}

void delete_document(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  std::string id = checked_path_id(ctx.param(2), "document id");
  check(ctx.service->store().remove(collection, id));
  ctx.reply(200, {{"id", id}, {"deleted", true}});
}

void search(RequestContext& ctx) {
  auto t0 = std::chrono::steady_clock::now();
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  json body = ctx.json_body();
  check_known_fields(body,
                     {"query", "vector", "id", "k", "instruction", "filter", "include", "rerank", "mode",
                      "fusion", "offset", "score_threshold", "ef_search", "nprobe"},
                     "a search");
  SearchRequest request;
  request.query = get_string(body, "query");
  request.id = get_string(body, "id");
  request.instruction = get_string(body, "instruction");
  if (const json* v = get_field(body, "vector")) {
    if (!v->is_array()) throw StatusException(invalid_argument("\"vector\" must be an array of numbers"));
    std::vector<float> vec;
    vec.reserve(v->size());
    for (const auto& x : *v) {
      if (!x.is_number()) throw StatusException(invalid_argument("\"vector\" must be an array of numbers"));
      vec.push_back(x.get<float>());
    }
    request.vector = std::move(vec);
  }
  request.params.k = static_cast<int>(std::clamp<int64_t>(get_int(body, "k").value_or(10), -1, 1 << 30));
  auto clamp_int = [](int64_t v) { return static_cast<int>(std::clamp<int64_t>(v, -1, 1 << 30)); };
  // "offset" is applied by the service over every mode (request.offset, below); the store's own
  // params.offset stays 0 here.
  request.params.ef_search = clamp_int(get_int(body, "ef_search").value_or(0));
  request.params.nprobe = clamp_int(get_int(body, "nprobe").value_or(0));
  if (const json* e = get_field(body, "ef_search"); e && request.params.ef_search == 0)
    throw StatusException(unprocessable("\"ef_search\" must be in 1..100000, got " + e->dump()));
  if (const json* e = get_field(body, "nprobe"); e && request.params.nprobe == 0)
    throw StatusException(unprocessable("\"nprobe\" must be in 1..65536, got " + e->dump()));
  if (const json* t = get_field(body, "score_threshold")) {
    if (!t->is_number()) throw StatusException(invalid_argument("\"score_threshold\" must be a number"));
    request.params.score_threshold = t->get<float>();
  }
  if (const json* f = get_field(body, "filter")) {
    // Checked here, before the query is embedded (collection/filter.h owns the rules).
    value_or_throw(Filter::parse(*f));
    request.params.filter = *f;
  }
  request.params.include_text = request.params.include_metadata = true;
  if (const json* inc = get_field(body, "include")) {
    if (!inc->is_array()) throw StatusException(invalid_argument("\"include\" must be an array"));
    request.params.include_text = request.params.include_metadata = false;
    for (const auto& item : *inc) {
      if (item == "text") request.params.include_text = true;
      else if (item == "metadata") request.params.include_metadata = true;
      else throw StatusException(invalid_argument("\"include\" may hold \"text\" and \"metadata\""));
    }
  }
  if (const json* rr = get_field(body, "rerank")) {
    require_object(*rr, "\"rerank\"");
    check_known_fields(*rr, {"top_n", "instruction"}, "\"rerank\"");
    request.rerank = SearchRerank{get_int(*rr, "top_n"), get_string(*rr, "instruction")};
  }
  if (const json* m = get_field(body, "mode")) {
    if (!m->is_string()) throw StatusException(invalid_argument("\"mode\" must be a string"));
    request.mode = value_or_throw(parse_search_mode(m->get<std::string>()));
  }
  if (const json* f = get_field(body, "fusion")) request.fusion = value_or_throw(FusionOptions::from_json(*f));
  request.offset = std::clamp<int64_t>(get_int(body, "offset").value_or(0), -1, 1 << 30);
  auto hits = value_or_throw(ctx.service->search(collection, request, ctx.client_gone()));
  // The answer's size before it is built: refused past max_response_bytes, else held in the
  // in-flight budget three times over (the hits, the JSON tree, its text).
  int64_t estimate = 64;
  for (const auto& h : hits) {
    estimate += 160 + static_cast<int64_t>(h.id.size());
    if (request.params.include_text)
      estimate += static_cast<int64_t>(h.text.size()) * (h.chunk >= 0 ? 2 : 1);
    if (request.params.include_metadata)
      estimate += static_cast<int64_t>(json_size_estimate(h.metadata));
  }
  ctx.check_response_size(estimate,
                          "lower \"k\", or leave the texts out with \"include\": [\"metadata\"] "
                          "and fetch the documents you need by id");
  ctx.reserve(3 * estimate);
  json results = json::array();
  for (const auto& h : hits) {
    json r = {{"id", h.id}, {"score", h.score}};
    if (h.rerank_score) r["rerank_score"] = *h.rerank_score;
    if (h.dense_score) r["dense_score"] = *h.dense_score;
    if (h.lexical_score) r["lexical_score"] = *h.lexical_score;
    if (h.highlights) {
      json spans = json::array();
      for (const auto& [start, end] : *h.highlights) spans.push_back({{"start", start}, {"end", end}});
      r["highlights"] = std::move(spans);
    }
    if (h.chunk >= 0) {
      // The best chunk of a chunked document: code-point range (and its text when asked).
      r["chunk"] = {{"index", h.chunk}, {"start", h.chunk_span.start}, {"end", h.chunk_span.end}};
      if (request.params.include_text)
        r["chunk"]["text"] = std::string(code_point_slice(h.text, h.chunk_span.start, h.chunk_span.end));
    }
    if (request.params.include_text) r["text"] = h.text;
    if (request.params.include_metadata) r["metadata"] = h.metadata.is_null() ? json::object() : h.metadata;
    results.push_back(std::move(r));
  }
  double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ctx.reply(200, {{"results", results}, {"took_ms", took}});
}

}  // namespace

Status parse_document(const json& j, DocumentInput* out) {
  if (!j.is_object()) return invalid_argument("a document must be a JSON object");
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) return invalid_argument("\"id\" must be a string");
  out->id = id->get<std::string>();
  QS_RETURN_IF_ERROR(check_document_id(out->id));
  auto text = j.find("text");
  if (text == j.end() || !text->is_string()) return invalid_argument("\"text\" must be a string");
  out->text = text->get<std::string>();
  auto meta = j.find("metadata");
  if (meta != j.end() && !meta->is_null()) {
    if (!meta->is_object()) return invalid_argument("\"metadata\" must be an object");
    out->metadata = *meta;
  } else {
    out->metadata = json::object();
  }
  return Status::ok();
}

json document_result_json(const DocumentResult& r) {
  if (!r.status.is_ok()) {
    HttpError he = http_error_for(r.status.code());
    return {{"id", r.id}, {"error", {{"code", he.code}, {"status", he.status}, {"message", r.status.message()}}}};
  }
  // tokens: kept (embedded, EOS included); tokens_cut: dropped from the end by truncation.
  json j = {{"id", r.id},
            {"tokens", r.tokens},
            {"truncated", r.truncated_tokens > 0},
            {"tokens_cut", r.truncated_tokens}};
  if (r.chunks > 0) j["chunks"] = r.chunks;
  if (!r.duplicate_of.empty()) {
    j["duplicate_of"] = r.duplicate_of;
    j["stored"] = !r.skipped;
  }
  return j;
}

std::vector<Route> collection_routes() {
  std::string c = std::string("/collections/") + kName;
  std::vector<Route> routes = {
      {"POST", "/collections", "/collections", Access::kAdmin, Body::kBuffered, true, create_collection},
      {"GET", "/collections", "/collections", Access::kRead, Body::kNone, true, list_collections},
      {"GET", "/collections/{name}", c, Access::kRead, Body::kNone, true, get_collection},
      {"DELETE", "/collections/{name}", c, Access::kAdmin, Body::kNone, true, delete_collection},
      {"POST", "/collections/{name}/documents", c + "/documents", Access::kAdmin, Body::kBuffered,
       true, post_documents},
      {"PUT", "/collections/{name}/documents/{id}", c + "/documents/(.+)", Access::kAdmin,
       Body::kBuffered, true, put_document},
      {"GET", "/collections/{name}/documents/{id}", c + "/documents/(.+)", Access::kRead,
       Body::kNone, true, get_document},
      {"DELETE", "/collections/{name}/documents/{id}", c + "/documents/(.+)", Access::kAdmin,
       Body::kNone, true, delete_document},
      {"POST", "/collections/{name}/search", c + "/search", Access::kRead, Body::kBuffered, true,
       search},
      {"POST", "/collections/{name}/reembed", c + "/reembed", Access::kAdmin, Body::kBuffered,
       true, reembed_collection},
  };
  for (Route& r : document_routes()) routes.push_back(std::move(r));
  return routes;
}

}  // namespace qsearch::api
