// Errors at the HTTP boundary. Status codes become HTTP statuses in exactly one place,
// http_error_for(); every error body is {"error": {"code": "...", "message": "..."}}.
// Inside route handlers a failed Status may be thrown as a StatusException; the route wrapper
// (server.cc) is the only place that catches exceptions and turns them into responses.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "common/status.h"

namespace qsearch::api {

class StatusException : public std::exception {
 public:
  explicit StatusException(Status status) : status_(std::move(status)) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return status_.message().c_str(); }

 private:
  Status status_;
};

inline void check(Status status) {
  if (!status.is_ok()) throw StatusException(std::move(status));
}

template <typename T>
T value_or_throw(StatusOr<T>&& s) {
  if (!s.is_ok()) throw StatusException(s.status());
  return std::move(s).value();
}

struct HttpError {
  int status;        // HTTP status
  const char* code;  // machine-readable "code" of the error body
};

// The mapping: kInvalidArgument 400, kNotFound 404, kAlreadyExists 409 ("already_exists"),
// kConflict 409 ("conflict"), kModelMismatch 409 ("model_mismatch"), kPayloadTooLarge 413,
// kUnprocessable 422, kResourceExhausted 429, kCancelled 499, kUnavailable 503, others 500.
HttpError http_error_for(StatusCode code);

// {"error":{"code":code,"message":message}}
std::string error_body(const std::string& code, const std::string& message);

}  // namespace qsearch::api
