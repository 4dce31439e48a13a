// JSON at the HTTP boundary: parsing request bodies safely and typed field access.
// nlohmann's parser is recursive, so nesting depth is checked by a linear scan first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace qsearch::api {

using json = nlohmann::json;

inline constexpr int kMaxJsonDepth = 64;

// Parses a request body. Nesting deeper than kMaxJsonDepth, malformed JSON (the message gives
// line, column and byte) and invalid UTF-8 inside strings are kInvalidArgument.
StatusOr<json> parse_json(std::string_view text);

// Byte offset of the first invalid UTF-8 sequence in s, or npos when s is valid.
size_t invalid_utf8_offset(std::string_view s);

// Typed access to an object's fields. Absent or null fields give nullopt / nullptr; a field of
// the wrong type throws StatusException(kInvalidArgument) naming the field.
const json* get_field(const json& obj, const char* key);
std::optional<std::string> get_string(const json& obj, const char* key);
std::optional<int64_t> get_int(const json& obj, const char* key);
std::optional<bool> get_bool(const json& obj, const char* key);
// Throws kInvalidArgument unless j is an object.
void require_object(const json& j, const std::string& what);

// About how many bytes dump(j) takes (strings by their length, numbers as 24), without
// serialising: for checking a response's size before building it.
size_t json_size_estimate(const json& j);

// Serialises a response (invalid UTF-8 is replaced, never thrown).
std::string dump(const json& j);

// Standard base64 (RFC 4648) with padding.
std::string base64_encode(const void* data, size_t n);

}  // namespace qsearch::api
