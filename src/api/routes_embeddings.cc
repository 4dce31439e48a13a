// POST /v1/embeddings, compatible with OpenAI's API (the official clients work unchanged):
// input as a string, an array of strings, an array of token ids or an array of such arrays;
// "model" is echoed back (this server serves one model, another name is not an error);
// "dimensions" (MRL truncation, then L2 normalisation); "encoding_format" "float" or "base64"
// (little-endian float32 bytes); "usage". Extension: "instruction" formats every text input as
// a query ("Instruct: {instruction}\nQuery:{text}"); token-id inputs are used as given.
#include <bit>
#include <charconv>

#include "api/errors.h"
#include "api/routes.h"

namespace qsearch::api {
namespace {

static_assert(std::endian::native == std::endian::little,
              "base64 embeddings are little-endian float32");

constexpr size_t kMaxInputs = 2048;  // as OpenAI

std::vector<int32_t> token_ids(const json& arr, const std::string& where) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const auto& t : arr) {
    if (!t.is_number_integer())
      throw StatusException(invalid_argument(where + " must hold only integer token ids"));
    int64_t v = t.get<int64_t>();
    if (v < 0 || v > INT32_MAX)
      throw StatusException(invalid_argument(where + ": token id " + std::to_string(v) +
                                             " out of range"));
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

std::vector<EmbedInput> parse_input(const json* input) {
  if (!input) throw StatusException(invalid_argument("\"input\" is required"));
  std::vector<EmbedInput> out;
  if (input->is_string()) {
    out.push_back({false, input->get<std::string>(), {}});
    return out;
  }
  if (!input->is_array())
    throw StatusException(invalid_argument(
        "\"input\" must be a string, an array of strings, an array of token ids or an array of "
        "token-id arrays"));
  if (input->empty()) throw StatusException(unprocessable("\"input\" must not be empty"));
  const json& first = input->front();
  if (first.is_number_integer()) {  // one token-id sequence
    out.push_back({true, {}, token_ids(*input, "\"input\"")});
    if (out[0].ids.empty()) throw StatusException(unprocessable("\"input\" has no tokens"));
    return out;
  }
  if (input->size() > kMaxInputs)
    throw StatusException(unprocessable("\"input\" has " + std::to_string(input->size()) +
                                        " items, at most " + std::to_string(kMaxInputs) +
                                        " are accepted"));
  for (size_t i = 0; i < input->size(); ++i) {
    const json& item = (*input)[i];
    std::string where = "\"input[" + std::to_string(i) + "]\"";
    if (first.is_string() && item.is_string()) {
      out.push_back({false, item.get<std::string>(), {}});
    } else if (first.is_array() && item.is_array()) {
      if (item.empty()) throw StatusException(unprocessable(where + " has no tokens"));
      out.push_back({true, {}, token_ids(item, where)});
    } else {
      throw StatusException(invalid_argument(
          where + " must be " + (first.is_array() ? "an array of token ids" : "a string") +
          " like the first item"));
    }
  }
  return out;
}

void append_float(std::string* out, float v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  if (ec != std::errc()) {
    *out += "0";
    return;
  }
  out->append(buf, end);
}

void embeddings(RequestContext& ctx) {
  json body = ctx.json_body();
  std::vector<EmbedInput> inputs = parse_input(get_field(body, "input"));
  std::string model = get_string(body, "model").value_or(ctx.service->model_name());
  int64_t dim = get_int(body, "dimensions").value_or(0);
  if (get_field(body, "dimensions") && (dim < 1 || dim > ctx.service->hidden_size()))
    throw StatusException(unprocessable("\"dimensions\" must be in " +
                                        std::to_string(ctx.service->min_dimension()) + ".." +
                                        std::to_string(ctx.service->hidden_size())));
  std::string format = get_string(body, "encoding_format").value_or("float");
  if (format != "float" && format != "base64")
    throw StatusException(
        unprocessable("\"encoding_format\" must be \"float\" or \"base64\", not \"" + format + "\""));
  std::string instruction = get_string(body, "instruction").value_or("");

  EmbedOutput result = value_or_throw(ctx.service->embed_inputs(
      inputs, instruction, static_cast<int>(dim), ctx.client_gone()));

  // Written by hand: floats in their shortest round-trip form, base64 straight from memory.
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < result.vectors.size(); ++i) {
    const auto& v = result.vectors[i];
    if (i) out += ',';
    out += "{\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":";
    if (format == "base64") {
      out += '"';
      out += base64_encode(v.data(), v.size() * sizeof(float));
      out += '"';
    } else {
      out += '[';
      for (size_t j = 0; j < v.size(); ++j) {
        if (j) out += ',';
        append_float(&out, v[j]);
      }
      out += ']';
    }
    out += '}';
  }
  out += "],\"model\":" + dump(json(model)) + ",\"usage\":{\"prompt_tokens\":" +
         std::to_string(result.prompt_tokens) +
         ",\"total_tokens\":" + std::to_string(result.prompt_tokens) + "}}";
  ctx.res.status = 200;
  ctx.res.set_content(out, "application/json");
}

}  // namespace

std::vector<Route> embedding_routes() {
  return {{"POST", "/v1/embeddings", "/v1/embeddings", Access::kRead, Body::kBuffered, true,
           embeddings}};
}

}  // namespace qsearch::api
