#include "api/errors.h"

#include <nlohmann/json.hpp>

namespace qsearch::api {

HttpError http_error_for(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return {200, "ok"};
    case StatusCode::kInvalidArgument: return {400, "invalid_request"};
    case StatusCode::kNotFound: return {404, "not_found"};
    case StatusCode::kAlreadyExists: return {409, "already_exists"};
    case StatusCode::kPayloadTooLarge: return {413, "payload_too_large"};
    case StatusCode::kUnprocessable: return {422, "unprocessable"};
    case StatusCode::kResourceExhausted: return {429, "overloaded"};
    case StatusCode::kCancelled: return {499, "cancelled"};
    case StatusCode::kConflict: return {409, "conflict"};
    case StatusCode::kModelMismatch: return {409, "model_mismatch"};
    case StatusCode::kUnavailable: return {503, "unavailable"};
    case StatusCode::kCorruption:
    case StatusCode::kIOError:
    case StatusCode::kInternal: return {500, "internal"};
  }
  return {500, "internal"};
}

std::string error_body(const std::string& code, const std::string& message) {
  nlohmann::json j = {{"error", {{"code", code}, {"message", message}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace qsearch::api
