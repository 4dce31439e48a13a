// Long-running work (NDJSON imports, index rebuilds and optimisations) registered while it runs,
// so that GET /jobs and GET /collections/{name} can show how far it got: items done (of total
// when known), errors, bytes read (of the announced body size), the rate and the phase. The
// last kKeepFinished finished jobs stay listed with their outcome.
//
// Usage: JobHandle job = JobRegistry::global().start("import", "docs"); job->add_done(n); ...
// job.finish(status). A handle destroyed without finish() marks its job failed ("interrupted"),
// so no job is left "running" by an early return or an exception.
//
// Thread safety: the registry and Job may be used from any thread; the counters are atomics
// (updated per chunk or per batch, never per item in a hot loop), state and phase take a mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace qsearch {

// A job as seen from outside at one moment.
struct JobSnapshot {
  uint64_t id = 0;
  std::string kind;          // "import", "index_rebuild", "index_optimize", ...
  std::string collection;    // empty when the job belongs to none
  std::string state;         // "running", "done" or "failed"
  std::string phase;         // what it is doing now (free text, may be empty; cleared when done)
  std::string error;         // why it failed (state "failed")
  int64_t done = 0;          // items (documents, vectors) processed so far
  int64_t total = -1;        // items expected; -1 unknown
  int64_t errors = 0;        // items that failed
  int64_t bytes = 0;         // input bytes read so far (imports)
  int64_t total_bytes = -1;  // input bytes announced; -1 unknown
  double started_at = 0;     // Unix time, seconds
  double finished_at = 0;    // Unix time, seconds; 0 while running
  double elapsed_s = 0;      // running: so far; finished: until the end
  double rate = 0;           // done per second over elapsed_s
};

class Job {
 public:
  Job(uint64_t id, std::string kind, std::string collection, int64_t total);

  void add_done(int64_t n) { done_.fetch_add(n, std::memory_order_relaxed); }
  void set_done(int64_t n) { done_.store(n, std::memory_order_relaxed); }
  void set_total(int64_t n) { total_.store(n, std::memory_order_relaxed); }
  void add_errors(int64_t n) { errors_.fetch_add(n, std::memory_order_relaxed); }
  void set_bytes(int64_t n) { bytes_.store(n, std::memory_order_relaxed); }
  void set_total_bytes(int64_t n) { total_bytes_.store(n, std::memory_order_relaxed); }
  void set_phase(std::string phase);
  // Marks the job done (ok) or failed (the status's message); later calls are ignored.
  void finish(const Status& status);

  uint64_t id() const { return id_; }
  bool running() const;
  int64_t done() const { return done_.load(std::memory_order_relaxed); }
  JobSnapshot snapshot() const;

 private:
  const uint64_t id_;
  const std::string kind_;
  const std::string collection_;
  const double started_at_;  // Unix seconds
  const int64_t started_steady_ns_;
  std::atomic<int64_t> done_{0}, total_{-1}, errors_{0}, bytes_{0}, total_bytes_{-1};
  mutable std::mutex mu_;
  std::string state_ = "running", phase_, error_;
  double finished_at_ = 0;
  double elapsed_at_finish_ = 0;
};

// Owns a running job: finishes it as failed ("interrupted") when destroyed unfinished.
class JobHandle {
 public:
  JobHandle() = default;
  explicit JobHandle(std::shared_ptr<Job> job) : job_(std::move(job)) {}
  JobHandle(JobHandle&&) noexcept = default;
  JobHandle& operator=(JobHandle&& other) noexcept;
  JobHandle(const JobHandle&) = delete;
  JobHandle& operator=(const JobHandle&) = delete;
  ~JobHandle();

  Job* operator->() const { return job_.get(); }
  Job* get() const { return job_.get(); }
  void finish(const Status& status);

 private:
  std::shared_ptr<Job> job_;
};

class JobRegistry {
 public:
  static constexpr size_t kKeepFinished = 32;

  JobRegistry() = default;
  // The process-wide registry that the server's routes show.
  static JobRegistry& global();

  JobHandle start(std::string kind, std::string collection, int64_t total = -1);
  // Running jobs (oldest first), then the finished ones kept (newest first).
  std::vector<JobSnapshot> list() const;
  std::optional<JobSnapshot> get(uint64_t id) const;
  // The running jobs of one collection, oldest first.
  std::vector<JobSnapshot> running_for(const std::string& collection) const;

 private:
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::vector<std::shared_ptr<Job>>
      jobs_;  // in start order; finished ones pruned past kKeepFinished
};

}  // namespace qsearch
