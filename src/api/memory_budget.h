// The server-wide budget for memory held by in-flight requests (max_inflight_bytes): request
// bodies while they are read and handled, response bodies until they are written, and what a
// route reserves before it builds a large answer (search hits, duplicate pairs). A request
// that would go over it is answered 503 with Retry-After instead of allocating.
//
// Thread-safe (one atomic counter). A Reservation gives its bytes back when destroyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

namespace qsearch::api {

class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t limit) : limit_(limit) {}
  // Takes n bytes if they fit under the limit.
  bool try_take(int64_t n) {
    int64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (n > 0 && used + n > limit_) return false;
    } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
    return true;
  }
  void give(int64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  int64_t used() const { return used_.load(std::memory_order_relaxed); }
  int64_t limit() const { return limit_; }

 private:
  const int64_t limit_;
  std::atomic<int64_t> used_{0};
};

// Bytes held from a budget; given back on destruction (movable, not copyable).
class Reservation {
 public:
  Reservation() = default;
  explicit Reservation(MemoryBudget* budget) : budget_(budget) {}
  Reservation(Reservation&& o) noexcept
      : budget_(std::exchange(o.budget_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Reservation& operator=(Reservation&& o) noexcept {
    if (this != &o) {
      reset();
      budget_ = std::exchange(o.budget_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { reset(); }

  // Adds n bytes; false (nothing taken) when the budget has no room.
  bool grow(int64_t n) {
    if (!budget_ || n <= 0) return true;
    if (!budget_->try_take(n)) return false;
    bytes_ += n;
    return true;
  }
  // Adds n bytes even past the limit (memory already allocated that must be kept).
  void force_grow(int64_t n) {
    if (!budget_ || n <= 0) return;
    budget_->give(-n);
    bytes_ += n;
  }
  void reset() {
    if (budget_ && bytes_) budget_->give(bytes_);
    bytes_ = 0;
  }
  int64_t bytes() const { return bytes_; }

 private:
  MemoryBudget* budget_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace qsearch::api
