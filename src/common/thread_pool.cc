#include "common/thread_pool.h"

#include <algorithm>

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

}  // namespace qsearch
