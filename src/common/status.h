// Status / StatusOr: the one error type of qsearch. Storage, index, engine and loaders return
// these; the HTTP layer maps codes to statuses in exactly one place (src/api).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace qsearch {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // bad input from the caller (HTTP 400)
  kNotFound,            // unknown collection, document, file (404)
  kAlreadyExists,       // conflict (409)
  kPayloadTooLarge,     // body or text over a configured limit (413)
  kUnprocessable,       // well-formed but invalid content, e.g. k or dimension range (422)
  kResourceExhausted,   // queue full, out of GPU memory (429 for queues)
  kUnavailable,         // not ready (503)
  kCorruption,          // a file or stored record is damaged
  kIOError,             // the OS refused a read or write
  kInternal,            // a bug or an unexpected library failure (500)
  kCancelled,           // the client went away or the job was interrupted
  kConflict,            // the resource's state forbids it now: a job already running, the
                        // collection deleted or re-created under a running write (409)
  kModelMismatch,       // the collection's vectors come from another model than the one
                        // served: writes and text queries wait for a re-embed (409)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: message"
  std::string to_string() const;
  // Prefixes context: "loading config.json: " + message. No-op on OK.
  Status with_context(const std::string& context) const;
  void ignore() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status already_exists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status payload_too_large(std::string m) { return {StatusCode::kPayloadTooLarge, std::move(m)}; }
inline Status unprocessable(std::string m) { return {StatusCode::kUnprocessable, std::move(m)}; }
inline Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status io_error(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status conflict(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
inline Status model_mismatch(std::string m) { return {StatusCode::kModelMismatch, std::move(m)}; }

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) { assert(!status_.is_ok()); }  // NOLINT
  StatusOr(T value) : value_(std::move(value)) {}                                      // NOLINT

  bool is_ok() const { return status_.is_ok(); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(is_ok()); return *value_; }
  const T& value() const& { assert(is_ok()); return *value_; }
  T&& value() && { assert(is_ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace qsearch

// Propagates a non-OK Status out of the calling function.
#define QS_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::qsearch::Status qs_status_ = (expr);       \
    if (!qs_status_.is_ok()) return qs_status_;  \
  } while (0)

#define QS_CONCAT_INNER(a, b) a##b
#define QS_CONCAT(a, b) QS_CONCAT_INNER(a, b)
// QS_ASSIGN_OR_RETURN(auto x, make_x()); returns the Status if make_x() failed.
#define QS_ASSIGN_OR_RETURN(lhs, expr) \
  QS_ASSIGN_OR_RETURN_IMPL(QS_CONCAT(qs_statusor_, __LINE__), lhs, expr)
#define QS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.is_ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
