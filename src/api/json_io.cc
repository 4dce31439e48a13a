#include "api/json_io.h"

#include "api/errors.h"
#include "embed/tokenizer/unicode.h"

namespace qsearch::api {
namespace {

// Depth of [ and { outside strings; stops early once over the limit.
Status check_depth(std::string_view text) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        return invalid_argument("JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                                " levels (at byte " + std::to_string(i) + ")");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return Status::ok();
}

const char* type_name(const json& j) { return j.type_name(); }

}  // namespace

size_t invalid_utf8_offset(std::string_view s) {
  return unicode::find_invalid_utf8(s).value_or(std::string_view::npos);
}

StatusOr<json> parse_json(std::string_view text) {
  QS_RETURN_IF_ERROR(check_depth(text));
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ..." -> keep the tail.
    auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    if (size_t bad = invalid_utf8_offset(text); bad != std::string_view::npos && bad < e.byte)
      return invalid_argument("invalid UTF-8 at byte " + std::to_string(bad) + " (" + what + ")");
    return invalid_argument("malformed JSON at byte " + std::to_string(e.byte) + ": " + what);
  } catch (const json::exception& e) {
    std::string what = e.what();  // without nlohmann's "[json.exception.x.n] " prefix
    auto pos = what.find("] ");
    if (pos != std::string::npos) what = what.substr(pos + 2);
    return invalid_argument("malformed JSON: " + what);
  }
}

const json* get_field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<std::string> get_string(const json& obj, const char* key) {
  const json* v = get_field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string())
    throw StatusException(
        invalid_argument(std::string("\"") + key + "\" must be a string, not " + type_name(*v)));
  return v->get<std::string>();
}

std::optional<int64_t> get_int(const json& obj, const char* key) {
  const json* v = get_field(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  throw StatusException(
      invalid_argument(std::string("\"") + key + "\" must be an integer, not " + type_name(*v)));
}

std::optional<bool> get_bool(const json& obj, const char* key) {
  const json* v = get_field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    throw StatusException(invalid_argument(std::string("\"") + key + "\" must be true or false"));
  return v->get<bool>();
}

void require_object(const json& j, const std::string& what) {
  if (!j.is_object())
    throw StatusException(invalid_argument(what + " must be a JSON object, not " + type_name(j)));
}

size_t json_size_estimate(const json& j) {
  switch (j.type()) {
    case json::value_t::string:
      return j.get_ref<const json::string_t&>().size() + 2;
    case json::value_t::object: {
      size_t n = 2;
      for (const auto& [k, v] : j.items()) n += k.size() + 4 + json_size_estimate(v);
      return n;
    }
    case json::value_t::array: {
      size_t n = 2;
      for (const auto& v : j) n += 1 + json_size_estimate(v);
      return n;
    }
    default:
      return 24;
  }
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string base64_encode(const void* data, size_t n) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == n) {
    uint32_t v = p[i] << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == n) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace qsearch::api
