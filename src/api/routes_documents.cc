// Documents API v2 (issue 11), all with the filter language of collection/filter.h:
//   POST  /collections/{name}/count             {"filter"}              -> {"count"}
//   POST  /collections/{name}/documents/scroll  {"filter", "limit", "cursor", "include"}
//                                               -> {"documents": [...], "next_cursor"}
//   POST  /collections/{name}/documents/delete  {"ids": [...]} | {"filter": {...}} -> {"deleted"}
//   PATCH /collections/{name}/documents/{id}    {"metadata": {...}} -> {"id", "metadata"}
#include <set>

#include "api/errors.h"
#include "api/routes.h"

namespace qsearch::api {
namespace {

const char* kName = "([^/]+)";

void check_fields(const json& body, const std::set<std::string>& known, const char* what) {
  for (const auto& [key, value] : body.items())
    if (!known.count(key))
      throw StatusException(invalid_argument("unknown field \"" + key + "\" in " + what));
}

Filter filter_of(const json& body) {
  const json* f = get_field(body, "filter");
  if (!f) return Filter();
  return value_or_throw(Filter::parse(*f));
}

void count(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  json body = ctx.json_body();
  check_fields(body, {"filter"}, "a count request");
  Filter filter = filter_of(body);
  ctx.reply(200, {{"count", value_or_throw(ctx.service->store().count(collection, filter))}});
}

void scroll(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  json body = ctx.json_body();
  check_fields(body, {"filter", "limit", "cursor", "include"}, "a scroll request");
  ScrollRequest request;
  request.filter = filter_of(body);
  if (const json* l = get_field(body, "limit")) {
    const int64_t limit = get_int(body, "limit").value();
    if (l->is_number_unsigned() ? l->get<uint64_t>() > kMaxScrollLimit
                                : limit < 1 || limit > kMaxScrollLimit)
      throw StatusException(unprocessable("\"limit\" must be in 1..1000, got " + l->dump()));
    request.limit = static_cast<int>(limit);
  }
  request.cursor = get_string(body, "cursor").value_or("");
  if (const json* inc = get_field(body, "include")) {
    if (!inc->is_array()) throw StatusException(invalid_argument("\"include\" must be an array"));
    request.include_text = request.include_metadata = false;
    for (const auto& item : *inc) {
      if (item == "text")
        request.include_text = true;
      else if (item == "metadata")
        request.include_metadata = true;
      else if (item == "embedding")
        request.include_embedding = true;
      else
        throw StatusException(invalid_argument(
            "\"include\" may hold \"text\", \"metadata\" and \"embedding\", not " + item.dump()));
    }
  }
  ScrollPage page = value_or_throw(ctx.service->store().scroll(collection, request));
  json docs = json::array();
  for (const Document& d : page.documents)
    docs.push_back(document_json(d, request.include_text, request.include_metadata,
                                 request.include_embedding));
  ctx.reply(200,
            {{"documents", std::move(docs)},
             {"next_cursor", page.next_cursor.empty() ? json(nullptr) : json(page.next_cursor)}});
}

void delete_documents(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  json body = ctx.json_body();
  check_fields(body, {"ids", "filter"}, "a delete request");
  const json* ids = get_field(body, "ids");
  const json* filter = get_field(body, "filter");
  if ((ids == nullptr) == (filter == nullptr))
    throw StatusException(
        invalid_argument("a delete request names \"ids\" or \"filter\" (one of them)"));
  int64_t deleted = 0;
  if (ids) {
    if (!ids->is_array())
      throw StatusException(invalid_argument("\"ids\" must be an array of strings"));
    if (ids->size() > 100000)
      throw StatusException(payload_too_large("\"ids\" holds more than 100000 ids"));
    std::vector<std::string> list;
    for (size_t i = 0; i < ids->size(); ++i) {
      if (!(*ids)[i].is_string())
        throw StatusException(
            invalid_argument("\"ids\"[" + std::to_string(i) + "] must be a string"));
      list.push_back((*ids)[i].get<std::string>());
      check(check_document_id(list.back()).with_context("\"ids\"[" + std::to_string(i) + "]"));
    }
    deleted = value_or_throw(ctx.service->store().remove_documents(collection, list));
  } else {
    deleted = value_or_throw(ctx.service->store().remove_matching(collection, filter_of(body)));
  }
  ctx.reply(200, {{"deleted", deleted}});
}

void patch_document(RequestContext& ctx) {
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  std::string id = checked_path_id(ctx.param(2), "document id");
  json body = ctx.json_body();
  check_fields(body, {"metadata"},
               "a document patch (only \"metadata\" can change without "
               "re-embedding; PUT the document to change its text)");
  const json* m = get_field(body, "metadata");
  if (!m) throw StatusException(invalid_argument("a document patch needs \"metadata\""));
  require_object(*m, "\"metadata\"");
  Document doc = value_or_throw(ctx.service->store().patch_metadata(collection, id, *m));
  ctx.reply(200, {{"id", doc.id}, {"metadata", doc.metadata}});
}

}  // namespace

json document_json(const Document& doc, bool with_text, bool with_metadata, bool with_embedding) {
  json j = {{"id", doc.id}};
  if (with_text) j["text"] = doc.text;
  if (with_metadata) j["metadata"] = doc.metadata.is_null() ? json::object() : doc.metadata;
  j["tokens"] = doc.tokens;
  j["truncated"] = doc.truncated_tokens > 0;
  j["tokens_cut"] = doc.truncated_tokens;
  if (doc.chunks.empty()) {
    if (with_embedding) j["embedding"] = doc.embedding;
    return j;
  }
  // Chunked: each chunk with its code-point range, tokens and (when asked) its own vector.
  const size_t d = doc.embedding.size() / doc.chunks.size();
  json chunks = json::array();
  for (size_t i = 0; i < doc.chunks.size(); ++i) {
    const Chunk& c = doc.chunks[i];
    json cj = {{"index", i}, {"start", c.start}, {"end", c.end}, {"tokens", c.tokens}};
    if (with_embedding && d > 0)
      cj["embedding"] =
          std::vector<float>(doc.embedding.begin() + i * d, doc.embedding.begin() + (i + 1) * d);
    chunks.push_back(std::move(cj));
  }
  j["chunks"] = std::move(chunks);
  return j;
}

std::vector<Route> document_routes() {
  std::string c = std::string("/collections/") + kName;
  return {
      {"POST", "/collections/{name}/count", c + "/count", Access::kRead, Body::kBuffered, true,
       count},
      {"POST", "/collections/{name}/documents/scroll", c + "/documents/scroll", Access::kRead,
       Body::kBuffered, true, scroll},
      {"POST", "/collections/{name}/documents/delete", c + "/documents/delete", Access::kAdmin,
       Body::kBuffered, true, delete_documents},
      {"PATCH", "/collections/{name}/documents/{id}", c + "/documents/(.+)", Access::kAdmin,
       Body::kBuffered, true, patch_document},
  };
}

}  // namespace qsearch::api
