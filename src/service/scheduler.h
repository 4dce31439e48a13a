// The embedding scheduler: requests' token sequences wait in one queue; one scheduler thread
// per engine replica (Backend) takes unpadded batches off it by token budget (EngineBatch) and
// delivers each sequence's vector to its job's promise.
//
//  - Two tasks share it (one batcher, STYLE lesson 18): embeddings, and the reranker's raw
//    hidden states (Task::kRerank, a second model beside the embedding model on the same
//    devices). A replica is one device with its backend of each model; its thread runs one batch
//    at a time of either model, so the models never compete for a GPU. A batch holds one task's
//    sequences only; which task goes next follows the policy below across both tasks (overdue
//    bulk first, then the oldest query, then the oldest bulk). The token limit and the 429 are
//    shared.
//
//  - Two priorities: queries (search, /v1/embeddings) are taken before bulk ingestion, and bulk
//    fills what a batch has left. Bulk cannot starve: once the oldest queued bulk sequence has
//    waited bulk_max_wait_ms, a batch takes bulk first, up to half its budget (at least one
//    sequence), then queries. A query flood thus leaves ingestion at least half the engine
//    while bulk is overdue; an ingestion backlog never holds queries back by more than half.
//  - The queue is bounded by tokens: bulk work is admitted while all queued tokens stay within
//    queue_limit_tokens, queries while queued query tokens do; otherwise submit() fails with
//    kResourceExhausted (the HTTP layer answers 429 with retry_after_seconds()). A single job
//    larger than the limit is admitted only into an empty queue. Memory stays bounded.
//  - A job whose client went away is cancelled: its queued sequences are removed at once and
//    never reach the engine; a batch never contains a cancelled job's sequence.
//
// Thread safety: every public method is safe from any thread. Each Backend is driven by
// exactly one scheduler thread (Backend::embed is not reentrant).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "embed/engine/backend.h"

namespace qsearch {

class Metrics;

enum class Priority { kQuery = 0, kBulk = 1 };
// What a job computes: embeddings (MRL + L2, by the embedding model) or the reranker's raw
// final-norm hidden states (backend.h raw_hidden, by the reranker model).
enum class Task { kEmbed = 0, kRerank = 1 };
inline const char* task_name(Task t) { return t == Task::kEmbed ? "embed" : "rerank"; }

struct SchedulerOptions {
  int64_t max_batch_tokens = 0;      // per batch; 0: each backend's max_batch_tokens()
  int64_t queue_limit_tokens = 262144;
  int bulk_max_wait_ms = 1000;       // bulk older than this is taken first (up to half a batch)
  int debug_batch_delay_ms = 0;      // testing: sleep before each batch
};

using Embeddings = std::vector<std::vector<float>>;

// One submitted request. Results arrive through the promise in submission order.
struct EmbedJob {
  std::vector<std::vector<int32_t>> sequences;  // embeddings: each ends with <|endoftext|>
  std::vector<int32_t> dims;                    // output dimension per sequence
  Priority priority = Priority::kQuery;
  Task task = Task::kEmbed;
  int64_t tokens = 0;

  std::atomic<bool> cancelled{false};
  std::future<StatusOr<Embeddings>> future;

  // Below: owned by the scheduler (guarded by its mutex).
  Embeddings results;
  size_t remaining = 0;
  bool finished = false;
  std::promise<StatusOr<Embeddings>> promise;
};

class Scheduler {
 public:
  // One replica per embedding backend; rerank (empty, or one per replica: the reranker's
  // backend on the same device) adds Task::kRerank. Backends are not owned and must outlive the
  // scheduler. metrics may be null.
  Scheduler(std::vector<Backend*> backends, SchedulerOptions options, Metrics* metrics,
            std::vector<Backend*> rerank = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues sequences (non-empty, each within max_sequence_tokens(task)) with their output
  // dimensions (0: hidden size; kRerank rows are always the reranker's hidden size).
  // kResourceExhausted when the queue is full, kUnprocessable for a sequence too long,
  // kNotFound for kRerank without a reranker, kUnavailable after stop().
  StatusOr<std::shared_ptr<EmbedJob>> submit(std::vector<std::vector<int32_t>> sequences,
                                             std::vector<int32_t> dims, Priority priority,
                                             Task task = Task::kEmbed);

  // Waits for a job, calling client_gone (if given) every poll_ms; when it returns true the job
  // is cancelled and kCancelled returned.
  StatusOr<Embeddings> wait(const std::shared_ptr<EmbedJob>& job,
                            const std::function<bool()>& client_gone, int poll_ms = 20);

  // Removes a job's queued sequences and fails it with kCancelled (no-op once finished).
  void cancel(const std::shared_ptr<EmbedJob>& job);

  // Fails all queued work with kUnavailable and joins the scheduler threads. Idempotent.
  void stop();

  int64_t queued_tokens() const;
  int64_t queued_sequences() const;
  // Longest sequence accepted (min over the task's backends of their limits; 0 without them).
  int64_t max_sequence_tokens(Task task = Task::kEmbed) const {
    return max_sequence_tokens_[static_cast<int>(task)];
  }
  int hidden_size(Task task = Task::kEmbed) const { return hidden_size_[static_cast<int>(task)]; }
  bool has_task(Task task) const { return max_sequence_tokens(task) > 0; }
  // Seconds a refused client should wait: queued tokens over recent throughput, 1..60.
  int retry_after_seconds() const;

 private:
  struct Item {
    std::shared_ptr<EmbedJob> job;
    uint32_t index;
    int32_t tokens;
    std::chrono::steady_clock::time_point queued_at;
  };

  void run(size_t replica);
  // Picks the task of the next batch and takes up to that task's budget[task] tokens off its
  // queues (see the policy above). Requires mu_.
  std::vector<Item> take_batch(const int64_t budget[2], Task* task);
  // Drops finished or cancelled items from the front of queue (t, p). Requires mu_.
  void prune_front(int t, int p);
  // Moves items from the front of queue (t, p) into batch while they fit within limit tokens
  // (the first item of an empty batch always does); stops at the first that does not.
  // Requires mu_.
  void take_from(int t, int p, int64_t limit, std::vector<Item>* batch, int64_t* tokens);
  void finish(const std::shared_ptr<EmbedJob>& job, Status status);  // requires mu_
  void remove_queued(EmbedJob* job, bool count_dropped);             // requires mu_

  // One device: its embedding backend, and its reranker backend when a reranker is loaded
  // (then every replica has one).
  struct Replica {
    Backend* embed = nullptr;
    Backend* rerank = nullptr;
  };
  std::vector<Replica> replicas_;
  SchedulerOptions options_;
  Metrics* metrics_;
  int hidden_size_[2] = {0, 0};              // by Task
  int64_t max_sequence_tokens_[2] = {0, 0};  // by Task

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queues_[2][2];            // by Task, then Priority
  int64_t queued_tokens_[2][2] = {{0, 0}, {0, 0}};
  int64_t queued_items_ = 0;
  bool stopping_ = false;
  double tokens_per_second_ = 0;       // exponential moving average over batches
  std::vector<std::thread> threads_;
};

}  // namespace qsearch
