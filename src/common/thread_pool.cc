#include "common/thread_pool.h"

#include <algorithm>
#include <exception>

namespace qsearch {

ThreadPool::ThreadPool(size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  workers_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
      if (stop_ && tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop();
    }
    task();
  }
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  size_t parts = std::min(n, workers_.size() + 1);
  size_t chunk = (n + parts - 1) / parts;
  std::vector<std::future<void>> futs;
  for (size_t p = 1; p < parts; ++p) {
    size_t b = p * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    futs.push_back(submit([&fn, b, e] { fn(b, e); }));
  }
  fn(0, std::min(n, chunk));
  for (auto& f : futs) f.get();
}

void ThreadPool::run_parts(size_t parts, const std::function<void(size_t)>& fn) {
  if (parts == 0) return;
  std::vector<std::future<void>> futs;
  futs.reserve(parts - 1);
  for (size_t p = 1; p < parts; ++p) futs.push_back(submit([&fn, p] { fn(p); }));
  std::exception_ptr error;
  try {
    fn(0);
  } catch (...) {
    error = std::current_exception();
  }
  for (auto& f : futs) f.wait();  // fn is referenced by every part: none may outlive this call
  if (error) std::rethrow_exception(error);
  for (auto& f : futs) f.get();
}

ThreadPool& search_pool() {
  static ThreadPool pool(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
  return pool;
}

}  // namespace qsearch
