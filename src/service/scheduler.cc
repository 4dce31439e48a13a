#include "service/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include <spdlog/spdlog.h>

#include "service/metrics.h"

namespace qsearch {

namespace {

int64_t budget_of(const Backend* b, const SchedulerOptions& options) {
  int64_t budget = b->max_batch_tokens();
  if (options.max_batch_tokens > 0) budget = std::min(budget, options.max_batch_tokens);
  return budget;
}

}  // namespace

Scheduler::Scheduler(std::vector<Backend*> backends, SchedulerOptions options, Metrics* metrics,
                     std::vector<Backend*> rerank)
    : options_(options), metrics_(metrics) {
  // A reranker runs on every replica or on none.
  const bool with_rerank = !rerank.empty() && rerank.size() == backends.size();
  for (size_t i = 0; i < backends.size(); ++i)
    replicas_.push_back({backends[i], with_rerank ? rerank[i] : nullptr});
  for (int t = 0; t < 2; ++t) {
    int64_t limit = INT64_MAX;
    bool any = false;
    for (const Replica& r : replicas_) {
      const Backend* b = t == 0 ? r.embed : r.rerank;
      if (!b) continue;
      any = true;
      hidden_size_[t] = b->hidden_size();
      limit = std::min({limit, b->max_sequence_tokens(), budget_of(b, options_)});
    }
    max_sequence_tokens_[t] = any ? limit : 0;
  }
  for (size_t i = 0; i < replicas_.size(); ++i) threads_.emplace_back([this, i] { run(i); });
}

Scheduler::~Scheduler() { stop(); }

StatusOr<std::shared_ptr<EmbedJob>> Scheduler::submit(std::vector<std::vector<int32_t>> sequences,
                                                      std::vector<int32_t> dims,
                                                      Priority priority, Task task) {
  if (dims.size() != sequences.size())
    return internal_error("submit: " + std::to_string(dims.size()) + " dims for " +
                          std::to_string(sequences.size()) + " sequences");
  const int t = static_cast<int>(task);
  if (!has_task(task))
    return task == Task::kRerank ? not_found("no reranker is loaded")
                                 : unavailable("no embedding engine is loaded");
  auto job = std::make_shared<EmbedJob>();
  job->priority = priority;
  job->task = task;
  const int hidden = hidden_size_[t];
  for (size_t i = 0; i < sequences.size(); ++i) {
    int64_t len = static_cast<int64_t>(sequences[i].size());
    if (len == 0) return invalid_argument("input " + std::to_string(i) + " has no tokens");
    if (len > max_sequence_tokens_[t])
      return unprocessable("input " + std::to_string(i) + " has " + std::to_string(len) +
                           " tokens, more than the engine accepts (" +
                           std::to_string(max_sequence_tokens_[t]) + ")");
    if (dims[i] < 0 || dims[i] > hidden)
      return unprocessable("dimension " + std::to_string(dims[i]) + " out of range 1.." +
                           std::to_string(hidden));
    if (dims[i] == 0 || task == Task::kRerank) dims[i] = hidden;
    job->tokens += len;
  }
  job->sequences = std::move(sequences);
  job->dims = std::move(dims);
  job->results.resize(job->sequences.size());
  job->remaining = job->sequences.size();
  job->future = job->promise.get_future();
  if (job->sequences.empty()) {
    job->finished = true;
    job->promise.set_value(Embeddings{});
    return job;
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return unavailable("the server is shutting down");
  int p = static_cast<int>(priority);
  // Bulk competes with everything queued; queries only with queued queries (they go first).
  const int64_t queries = queued_tokens_[0][0] + queued_tokens_[1][0];
  const int64_t queued =
      priority == Priority::kBulk ? queries + queued_tokens_[0][1] + queued_tokens_[1][1] : queries;
  if (queued > 0 && queued + job->tokens > options_.queue_limit_tokens) {
    if (metrics_) metrics_->add_rejected();
    return resource_exhausted("the embedding queue is full (" + std::to_string(queued) +
                              " tokens queued, limit " +
                              std::to_string(options_.queue_limit_tokens) + "); retry later");
  }
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < job->sequences.size(); ++i)
    queues_[t][p].push_back(Item{job, static_cast<uint32_t>(i),
                                 static_cast<int32_t>(job->sequences[i].size()), now});
  queued_tokens_[t][p] += job->tokens;
  queued_items_ += static_cast<int64_t>(job->sequences.size());
  cv_.notify_all();
  return job;
}

StatusOr<Embeddings> Scheduler::wait(const std::shared_ptr<EmbedJob>& job,
                                     const std::function<bool()>& client_gone, int poll_ms) {
  while (job->future.wait_for(std::chrono::milliseconds(poll_ms)) != std::future_status::ready) {
    if (client_gone && client_gone()) {
      cancel(job);
      break;
    }
  }
  return job->future.get();
}

void Scheduler::remove_queued(EmbedJob* job, bool count_dropped) {
  const int t = static_cast<int>(job->task), p = static_cast<int>(job->priority);
  auto& q = queues_[t][p];
  size_t before = q.size();
  int64_t tokens = 0;
  q.erase(std::remove_if(q.begin(), q.end(),
                         [&](const Item& it) {
                           if (it.job.get() != job) return false;
                           tokens += it.tokens;
                           return true;
                         }),
          q.end());
  int64_t removed = static_cast<int64_t>(before - q.size());
  queued_tokens_[t][p] -= tokens;
  queued_items_ -= removed;
  if (count_dropped && removed > 0 && metrics_) metrics_->add_dropped(removed);
}

void Scheduler::cancel(const std::shared_ptr<EmbedJob>& job) {
  job->cancelled = true;
  std::lock_guard<std::mutex> lock(mu_);
  if (job->finished) return;
  remove_queued(job.get(), /*count_dropped=*/true);
  finish(job, cancelled("the client disconnected"));
}

void Scheduler::finish(const std::shared_ptr<EmbedJob>& job, Status status) {
  if (job->finished) return;
  job->finished = true;
  if (status.is_ok())
    job->promise.set_value(std::move(job->results));
  else
    job->promise.set_value(std::move(status));
}

void Scheduler::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (int t = 0; t < 2; ++t)
        for (int p = 0; p < 2; ++p) {
          for (auto& item : queues_[t][p])
            finish(item.job, unavailable("the server is shutting down"));
          queues_[t][p].clear();
          queued_tokens_[t][p] = 0;
        }
      queued_items_ = 0;
    }
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

int64_t Scheduler::queued_tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_tokens_[0][0] + queued_tokens_[0][1] + queued_tokens_[1][0] + queued_tokens_[1][1];
}

int64_t Scheduler::queued_sequences() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_items_;
}

int Scheduler::retry_after_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  double queued = static_cast<double>(queued_tokens_[0][0] + queued_tokens_[0][1] +
                                      queued_tokens_[1][0] + queued_tokens_[1][1]);
  if (tokens_per_second_ <= 0) return 1;
  return static_cast<int>(std::clamp(std::ceil(queued / tokens_per_second_), 1.0, 60.0));
}

void Scheduler::prune_front(int t, int p) {
  auto& q = queues_[t][p];
  while (!q.empty() && (q.front().job->finished || q.front().job->cancelled)) {
    queued_tokens_[t][p] -= q.front().tokens;  // failed or cancelled meanwhile
    --queued_items_;
    if (q.front().job->cancelled && metrics_) metrics_->add_dropped(1);
    q.pop_front();
  }
}

void Scheduler::take_from(int t, int p, int64_t limit, std::vector<Item>* batch, int64_t* tokens) {
  auto& q = queues_[t][p];
  for (prune_front(t, p); !q.empty(); prune_front(t, p)) {
    Item& front = q.front();
    if (!batch->empty() && *tokens + front.tokens > limit) return;
    queued_tokens_[t][p] -= front.tokens;
    --queued_items_;
    *tokens += front.tokens;
    batch->push_back(std::move(front));
    q.pop_front();
  }
}

std::vector<Scheduler::Item> Scheduler::take_batch(const int64_t budget[2], Task* task) {
  constexpr int kQuery = static_cast<int>(Priority::kQuery);
  constexpr int kBulk = static_cast<int>(Priority::kBulk);
  const auto now = std::chrono::steady_clock::now();
  // The task whose front item of priority p is oldest (-1: none queued), among tasks this
  // replica runs (budget > 0).
  auto oldest = [&](int p) {
    int best = -1;
    for (int t = 0; t < 2; ++t) {
      if (budget[t] <= 0) continue;
      prune_front(t, p);
      if (queues_[t][p].empty()) continue;
      if (best < 0 || queues_[t][p].front().queued_at < queues_[best][p].front().queued_at)
        best = t;
    }
    return best;
  };
  std::vector<Item> batch;
  int64_t tokens = 0;
  const int bulk_task = oldest(kBulk);
  if (bulk_task >= 0 && now - queues_[bulk_task][kBulk].front().queued_at >=
                            std::chrono::milliseconds(options_.bulk_max_wait_ms)) {
    *task = static_cast<Task>(bulk_task);
    take_from(bulk_task, kBulk, budget[bulk_task] / 2, &batch, &tokens);  // overdue: half a batch
  } else {
    const int query_task = oldest(kQuery);
    const int t = query_task >= 0 ? query_task : bulk_task;
    if (t < 0) return batch;
    *task = static_cast<Task>(t);
  }
  const int t = static_cast<int>(*task);
  take_from(t, kQuery, budget[t], &batch, &tokens);
  take_from(t, kBulk, budget[t], &batch, &tokens);  // bulk fills what is left
  return batch;
}

void Scheduler::run(size_t replica) {
  const Replica& r = replicas_[replica];
  Backend* backends[2] = {r.embed, r.rerank};
  int64_t budget[2] = {0, 0};
  for (int t = 0; t < 2; ++t)
    if (backends[t]) budget[t] = budget_of(backends[t], options_);
  std::vector<float> out;
  for (;;) {
    std::vector<Item> items;
    Task task = Task::kEmbed;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || queued_items_ > 0; });
      if (stopping_) return;
      items = take_batch(budget, &task);
    }
    if (items.empty()) continue;
    if (options_.debug_batch_delay_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.debug_batch_delay_ms));

    Backend* backend = backends[static_cast<int>(task)];
    const int hidden = backend->hidden_size();
    const std::string name = backend->name();
    EngineBatch batch;
    batch.raw_hidden = task == Task::kRerank;
    for (const Item& it : items) batch.add(it.job->sequences[it.index], it.job->dims[it.index]);
    out.assign(items.size() * static_cast<size_t>(hidden), 0.0f);
    auto t0 = std::chrono::steady_clock::now();
    Status st;
    try {
      st = backend->embed(batch, out.data());
    } catch (const std::exception& e) {
      st = internal_error(std::string("engine threw: ") + e.what());
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!st.is_ok()) spdlog::error("engine {}: batch of {} tokens failed: {}", name,
                                   batch.num_tokens(), st.to_string());
    else if (metrics_)
      metrics_->observe_batch(name, task_name(task), static_cast<int64_t>(batch.num_tokens()),
                              static_cast<int64_t>(items.size()), seconds);

    std::lock_guard<std::mutex> lock(mu_);
    if (st.is_ok() && seconds > 0) {
      double rate = static_cast<double>(batch.num_tokens()) / seconds;
      tokens_per_second_ =
          tokens_per_second_ <= 0 ? rate : 0.8 * tokens_per_second_ + 0.2 * rate;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      auto& job = items[i].job;
      if (job->finished) continue;
      if (!st.is_ok()) {
        remove_queued(job.get(), /*count_dropped=*/false);
        finish(job, st);
        continue;
      }
      const float* row = out.data() + i * static_cast<size_t>(hidden);
      job->results[items[i].index].assign(row, row + job->dims[items[i].index]);
      if (--job->remaining == 0) finish(job, Status::ok());
    }
  }
}

}  // namespace qsearch
