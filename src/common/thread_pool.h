// A fixed-size thread pool. submit() is safe from any thread; parallel_for() blocks until done.
// Used by the tokenizer's batch API, the CPU engine and the service's tokenize stage.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace qsearch {

class ThreadPool {
 public:
  // threads == 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(size_t threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size(); }

  template <typename F>
  auto submit(F&& f) -> std::future<decltype(f())> {
    using R = decltype(f());
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
    std::future<R> fut = task->get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.emplace([task] { (*task)(); });
    }
    cv_.notify_one();
    return fut;
  }

  // Runs fn(begin, end) over [0, n) split into contiguous chunks, on the pool and the caller.
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn);
  // Runs fn(part) for part in [0, parts): parts 1.. on the pool, part 0 on the caller; returns
  // when all have run. The caller must not be one of this pool's workers.
  void run_parts(size_t parts, const std::function<void(size_t)>& fn);

 private:
  void worker_loop();
  std::vector<std::thread> workers_;
  std::queue<std::function<void()>> tasks_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// The process-wide pool for the fan-out inside one search request (a filtered search's exact
// scan of its matches, the metadata index's sliced reads): min(hardware threads, 16) workers
// started once, so a search does not pay for thread start-ups (tens of microseconds each) and
// concurrent searches queue their parts instead of oversubscribing the CPU. Never use it for
// long jobs (imports, rebuilds): a search's parts would wait behind them.
ThreadPool& search_pool();

}  // namespace qsearch
