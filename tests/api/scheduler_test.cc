// The embedding scheduler against a fake engine: token budgets, query priority, the bounded
// queue, cancellation, failures and shutdown; and the reranker's task beside embeddings.
#include "service/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "service/metrics.h"

namespace qsearch {
namespace {

// Row i of a batch: component j = first token of sequence i + j (j < dims[i]), then zeros.
// A gate can hold embed() until released, to stage what is queued meanwhile.
std::atomic<int> g_batch_counter{0};  // orders batches across backends

class FakeBackend : public Backend {
 public:
  explicit FakeBackend(int64_t budget, int hidden = 8) : budget_(budget), hidden_(hidden) {}
  std::string name() const override { return "fake"; }
  int hidden_size() const override { return hidden_; }
  int64_t max_batch_tokens() const override { return budget_; }
  int64_t max_sequence_tokens() const override { return budget_; }
  EngineMemory memory() const override { return {}; }

  Status embed(const EngineBatch& batch, float* out) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      batches_.push_back(batch);
      order_.push_back(g_batch_counter++);
      ++started_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
      if (fail_) return internal_error("fake failure");
    }
    for (size_t i = 0; i < batch.num_sequences(); ++i) {
      float first = static_cast<float>(batch.tokens[batch.cu_seqlens[i]]);
      for (int j = 0; j < hidden_; ++j)
        out[i * hidden_ + j] = j < batch.dims[i] ? first + static_cast<float>(j) : 0.0f;
    }
    return Status::ok();
  }

  void close_gate() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  void open_gate() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void set_fail(bool f) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = f;
  }
  // Waits until n batches have entered embed().
  void wait_started(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return started_ >= n; });
  }
  std::vector<EngineBatch> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  // Global sequence numbers of this backend's batches (g_batch_counter).
  std::vector<int> order() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }

 private:
  int64_t budget_;
  int hidden_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  bool fail_ = false;
  int started_ = 0;
  std::vector<EngineBatch> batches_;
  std::vector<int> order_;
};

std::vector<int32_t> seq(int32_t first, int len) {
  std::vector<int32_t> s(len, 7);
  s[0] = first;
  return s;
}

TEST(Scheduler, ResultsInOrderWithPerSequenceDims) {
  FakeBackend backend(100);
  Scheduler sched({&backend}, {}, nullptr);
  auto job = sched.submit({seq(10, 3), seq(20, 5), seq(30, 1)}, {2, 0, 4}, Priority::kQuery);
  ASSERT_TRUE(job.is_ok()) << job.status().to_string();
  auto out = sched.wait(*job, nullptr);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  ASSERT_EQ(out->size(), 3u);
  EXPECT_EQ((*out)[0], (std::vector<float>{10, 11}));
  EXPECT_EQ((*out)[1].size(), 8u);  // 0 means the hidden size
  EXPECT_EQ((*out)[1][7], 27);
  EXPECT_EQ((*out)[2], (std::vector<float>{30, 31, 32, 33}));
}

TEST(Scheduler, BatchesNeverExceedTheTokenBudgetAndAreUnpadded) {
  FakeBackend backend(64);
  Metrics metrics;
  SchedulerOptions options;
  options.max_batch_tokens = 20;  // lower than the engine's own budget: the smaller one wins
  Scheduler sched({&backend}, options, &metrics);
  backend.close_gate();
  auto first = sched.submit({seq(1, 5)}, {0}, Priority::kBulk);  // taken at once, held
  ASSERT_TRUE(first.is_ok());
  backend.wait_started(1);
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 10; ++i) seqs.push_back(seq(100 + i, 7));  // 70 tokens queued
  auto job = sched.submit(seqs, std::vector<int32_t>(10, 0), Priority::kBulk);
  ASSERT_TRUE(job.is_ok());
  EXPECT_EQ(sched.queued_tokens(), 70);
  EXPECT_EQ(sched.queued_sequences(), 10);
  backend.open_gate();
  auto out = sched.wait(*job, nullptr);
  ASSERT_TRUE(out.is_ok());
  for (int i = 0; i < 10; ++i) EXPECT_EQ((*out)[i][0], 100 + i);
  auto batches = backend.batches();
  ASSERT_EQ(batches.size(), 1u + 5u);  // 5 tokens, then 70 in batches of two (14 <= 20 < 21)
  int64_t total = 0;
  for (size_t b = 1; b < batches.size(); ++b) {
    EXPECT_LE(batches[b].num_tokens(), 20u);
    EXPECT_EQ(static_cast<size_t>(batches[b].cu_seqlens.back()), batches[b].tokens.size());
    total += static_cast<int64_t>(batches[b].num_tokens());
  }
  EXPECT_EQ(total, 70);
  EXPECT_EQ(sched.queued_tokens(), 0);
  EXPECT_EQ(metrics.tokens_embedded(), 75);
}

TEST(Scheduler, QueriesGoAheadOfBulk) {
  FakeBackend backend(10);
  Scheduler sched({&backend}, {}, nullptr);
  backend.close_gate();
  auto busy = sched.submit({seq(1, 10)}, {0}, Priority::kBulk);
  backend.wait_started(1);
  auto bulk = sched.submit({seq(2, 10), seq(3, 10)}, {0, 0}, Priority::kBulk);
  auto query = sched.submit({seq(4, 10)}, {0}, Priority::kQuery);  // submitted last
  ASSERT_TRUE(bulk.is_ok() && query.is_ok());
  backend.open_gate();
  ASSERT_TRUE(sched.wait(*bulk, nullptr).is_ok());
  ASSERT_TRUE(sched.wait(*query, nullptr).is_ok());
  auto batches = backend.batches();
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[1].tokens[0], 4);  // the query ran first
  EXPECT_EQ(batches[2].tokens[0], 2);
  EXPECT_EQ(batches[3].tokens[0], 3);
}

// Bulk fills what queries leave of a batch.
TEST(Scheduler, BulkFillsTheRestOfAQueryBatch) {
  FakeBackend backend(10);
  Scheduler sched({&backend}, {}, nullptr);
  backend.close_gate();
  auto busy = sched.submit({seq(1, 10)}, {0}, Priority::kQuery);
  backend.wait_started(1);
  auto bulk = sched.submit({seq(2, 5)}, {0}, Priority::kBulk);
  auto query = sched.submit({seq(3, 4)}, {0}, Priority::kQuery);
  ASSERT_TRUE(bulk.is_ok() && query.is_ok());
  backend.open_gate();
  ASSERT_TRUE(sched.wait(*bulk, nullptr).is_ok());
  ASSERT_TRUE(sched.wait(*query, nullptr).is_ok());
  auto batches = backend.batches();
  ASSERT_EQ(batches.size(), 2u);
  ASSERT_EQ(batches[1].num_sequences(), 2u);
  EXPECT_EQ(batches[1].tokens[0], 3);  // the query first, the bulk sequence in the rest
  EXPECT_EQ(batches[1].tokens[4], 2);
}

// A flood of queries cannot starve ingestion: overdue bulk takes up to half of each batch,
// and the queries keep the other half.
TEST(Scheduler, OverdueBulkIsNotStarvedByQueries) {
  FakeBackend backend(10);
  SchedulerOptions options;
  options.bulk_max_wait_ms = 50;
  Scheduler sched({&backend}, options, nullptr);
  backend.close_gate();
  auto busy = sched.submit({seq(1, 10)}, {0}, Priority::kQuery);
  backend.wait_started(1);
  std::vector<std::vector<int32_t>> bulk_seqs, query_seqs;
  for (int i = 0; i < 4; ++i) bulk_seqs.push_back(seq(100 + i, 5));
  for (int i = 0; i < 20; ++i) query_seqs.push_back(seq(200 + i, 5));
  auto bulk = sched.submit(bulk_seqs, std::vector<int32_t>(4, 0), Priority::kBulk);
  auto queries = sched.submit(query_seqs, std::vector<int32_t>(20, 0), Priority::kQuery);
  ASSERT_TRUE(bulk.is_ok() && queries.is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(120));  // the bulk is now overdue
  backend.open_gate();
  ASSERT_TRUE(sched.wait(*bulk, nullptr).is_ok());
  ASSERT_TRUE(sched.wait(*queries, nullptr).is_ok());
  auto batches = backend.batches();
  // Batches 1..4: one bulk sequence (half the budget) first, then one query.
  ASSERT_GE(batches.size(), 5u);
  for (size_t b = 1; b <= 4; ++b) {
    ASSERT_EQ(batches[b].num_sequences(), 2u) << "batch " << b;
    EXPECT_EQ(batches[b].tokens[0], static_cast<int32_t>(100 + b - 1)) << "batch " << b;
    EXPECT_EQ(batches[b].tokens[5], static_cast<int32_t>(200 + b - 1)) << "batch " << b;
  }
  // Then the queries alone.
  for (size_t b = 5; b < batches.size(); ++b) EXPECT_GE(batches[b].tokens[0], 200);
}

TEST(Scheduler, FullQueueRefusesBulkButStillAdmitsQueries) {
  FakeBackend backend(100);
  Metrics metrics;
  SchedulerOptions options;
  options.queue_limit_tokens = 30;
  Scheduler sched({&backend}, options, &metrics);
  backend.close_gate();
  auto busy = sched.submit({seq(1, 5)}, {0}, Priority::kBulk);
  backend.wait_started(1);
  auto a = sched.submit({seq(2, 20)}, {0}, Priority::kBulk);
  ASSERT_TRUE(a.is_ok());
  auto b = sched.submit({seq(3, 20)}, {0}, Priority::kBulk);  // 40 > 30
  ASSERT_FALSE(b.is_ok());
  EXPECT_EQ(b.status().code(), StatusCode::kResourceExhausted);
  auto q = sched.submit({seq(4, 20)}, {0}, Priority::kQuery);  // queries compete only with queries
  EXPECT_TRUE(q.is_ok());
  auto q2 = sched.submit({seq(5, 20)}, {0}, Priority::kQuery);
  EXPECT_EQ(q2.status().code(), StatusCode::kResourceExhausted);
  EXPECT_GE(sched.retry_after_seconds(), 1);
  EXPECT_NE(metrics.render().find("qsearch_rejected_requests_total 2"), std::string::npos);
  backend.open_gate();
  EXPECT_TRUE(sched.wait(*a, nullptr).is_ok());
  EXPECT_TRUE(sched.wait(*q, nullptr).is_ok());
}

TEST(Scheduler, AJobLargerThanTheLimitIsAdmittedIntoAnEmptyQueue) {
  FakeBackend backend(100);
  SchedulerOptions options;
  options.queue_limit_tokens = 10;
  Scheduler sched({&backend}, options, nullptr);
  auto job = sched.submit({seq(1, 8), seq(2, 8)}, {0, 0}, Priority::kBulk);
  ASSERT_TRUE(job.is_ok());
  EXPECT_TRUE(sched.wait(*job, nullptr).is_ok());
}

TEST(Scheduler, CancelledWorkNeverReachesTheEngine) {
  FakeBackend backend(10);
  Metrics metrics;
  Scheduler sched({&backend}, {}, &metrics);
  backend.close_gate();
  auto busy = sched.submit({seq(1, 10)}, {0}, Priority::kBulk);
  backend.wait_started(1);
  auto doomed = sched.submit({seq(2, 10), seq(3, 10)}, {0, 0}, Priority::kQuery);
  auto kept = sched.submit({seq(4, 10)}, {0}, Priority::kQuery);
  ASSERT_TRUE(doomed.is_ok() && kept.is_ok());
  // The waiting client goes away: wait() sees it and cancels.
  auto out = sched.wait(*doomed, [] { return true; }, 1);
  EXPECT_EQ(out.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(sched.queued_sequences(), 1);
  EXPECT_EQ(metrics.dropped(), 2);
  backend.open_gate();
  EXPECT_TRUE(sched.wait(*kept, nullptr).is_ok());
  for (const auto& b : backend.batches())
    for (int32_t t : b.tokens) EXPECT_TRUE(t != 2 && t != 3) << "a cancelled sequence ran";
}

TEST(Scheduler, EngineFailureFailsTheJobsOfThatBatch) {
  FakeBackend backend(100);
  Scheduler sched({&backend}, {}, nullptr);
  backend.set_fail(true);
  auto job = sched.submit({seq(1, 3)}, {0}, Priority::kQuery);
  ASSERT_TRUE(job.is_ok());
  auto out = sched.wait(*job, nullptr);
  EXPECT_EQ(out.status().code(), StatusCode::kInternal);
  backend.set_fail(false);
  auto again = sched.submit({seq(1, 3)}, {0}, Priority::kQuery);
  EXPECT_TRUE(sched.wait(*again, nullptr).is_ok());  // the scheduler keeps going
}

TEST(Scheduler, RejectsBadInputAndFailsQueuedWorkOnStop) {
  FakeBackend backend(10);
  Scheduler sched({&backend}, {}, nullptr);
  EXPECT_EQ(sched.submit({seq(1, 11)}, {0}, Priority::kQuery).status().code(),
            StatusCode::kUnprocessable);
  EXPECT_EQ(sched.submit({{}}, {0}, Priority::kQuery).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.submit({seq(1, 2)}, {9}, Priority::kQuery).status().code(),
            StatusCode::kUnprocessable);
  backend.close_gate();
  auto busy = sched.submit({seq(1, 10)}, {0}, Priority::kBulk);
  backend.wait_started(1);
  auto queued = sched.submit({seq(2, 5)}, {0}, Priority::kBulk);
  ASSERT_TRUE(queued.is_ok());
  std::thread stopper([&] { sched.stop(); });
  auto out = (*queued)->future.wait_for(std::chrono::seconds(10));
  EXPECT_EQ(out, std::future_status::ready);
  EXPECT_EQ((*queued)->future.get().status().code(), StatusCode::kUnavailable);
  backend.open_gate();
  stopper.join();
  EXPECT_EQ(sched.submit({seq(3, 2)}, {0}, Priority::kQuery).status().code(),
            StatusCode::kUnavailable);
}

TEST(Scheduler, SeveralReplicasShareTheQueue) {
  FakeBackend a(16), b(16);
  Scheduler sched({&a, &b}, {}, nullptr);
  a.close_gate();
  b.close_gate();
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 200; ++i) seqs.push_back(seq(i, 1 + i % 16));
  auto job = sched.submit(seqs, std::vector<int32_t>(200, 3), Priority::kBulk);
  ASSERT_TRUE(job.is_ok());
  // While one replica holds a batch, the next batch must go to the other one.
  for (int i = 0; i < 1000 && a.batches().size() + b.batches().size() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(a.batches().size(), 1u);
  EXPECT_EQ(b.batches().size(), 1u);
  a.open_gate();
  b.open_gate();
  auto out = sched.wait(*job, nullptr);
  ASSERT_TRUE(out.is_ok());
  for (int i = 0; i < 200; ++i) EXPECT_EQ((*out)[i], (std::vector<float>{float(i), i + 1.f, i + 2.f}));
}

// The reranker's task: its own backend, raw hidden-state batches, rows of its hidden size, never
// mixed with embedding sequences in one batch.
TEST(SchedulerRerank, RunsOnTheRerankBackendWithRawBatches) {
  FakeBackend embed(100, 8), rerank(100, 16);
  Metrics metrics;
  Scheduler sched({&embed}, {}, &metrics, {&rerank});
  EXPECT_TRUE(sched.has_task(Task::kRerank));
  EXPECT_EQ(sched.hidden_size(Task::kRerank), 16);
  auto r = sched.submit({seq(10, 3), seq(20, 4)}, {0, 0}, Priority::kQuery, Task::kRerank);
  auto e = sched.submit({seq(30, 2)}, {4}, Priority::kQuery);
  ASSERT_TRUE(r.is_ok() && e.is_ok());
  auto rout = sched.wait(*r, nullptr);
  auto eout = sched.wait(*e, nullptr);
  ASSERT_TRUE(rout.is_ok() && eout.is_ok());
  ASSERT_EQ((*rout)[0].size(), 16u);
  EXPECT_EQ((*rout)[1][15], 35);
  EXPECT_EQ((*eout)[0], (std::vector<float>{30, 31, 32, 33}));
  for (const auto& b : rerank.batches()) {
    EXPECT_TRUE(b.raw_hidden);
    for (int32_t t : b.tokens) EXPECT_NE(t, 30) << "an embedding sequence in a rerank batch";
  }
  for (const auto& b : embed.batches()) {
    EXPECT_FALSE(b.raw_hidden);
    for (int32_t t : b.tokens) EXPECT_TRUE(t != 10 && t != 20) << "a rerank sequence embedded";
  }
  EXPECT_EQ(metrics.tokens_reranked(), 7);
  EXPECT_EQ(metrics.tokens_embedded(), 2);
  EXPECT_NE(metrics.render().find("qsearch_batches_total{backend=\"fake\",task=\"rerank\"} 1"),
            std::string::npos);
}

TEST(SchedulerRerank, WithoutARerankerTheTaskIsNotFound) {
  FakeBackend embed(100);
  Scheduler sched({&embed}, {}, nullptr);
  EXPECT_FALSE(sched.has_task(Task::kRerank));
  EXPECT_EQ(sched.submit({seq(1, 3)}, {0}, Priority::kQuery, Task::kRerank).status().code(),
            StatusCode::kNotFound);
}

// One queue: a rerank query goes ahead of queued bulk embeddings, and the next batch after it
// is the bulk (the replica runs one batch at a time, of either model).
TEST(SchedulerRerank, QueriesOfEitherTaskGoAheadOfBulk) {
  FakeBackend embed(10), rerank(10);
  Scheduler sched({&embed}, {}, nullptr, {&rerank});
  embed.close_gate();
  auto busy = sched.submit({seq(1, 10)}, {0}, Priority::kBulk);
  embed.wait_started(1);
  auto bulk = sched.submit({seq(2, 10)}, {0}, Priority::kBulk);
  auto rq = sched.submit({seq(3, 10)}, {0}, Priority::kQuery, Task::kRerank);  // last
  ASSERT_TRUE(bulk.is_ok() && rq.is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(rerank.batches().empty()) << "the replica's thread is busy with the embed batch";
  embed.open_gate();
  ASSERT_TRUE(sched.wait(*bulk, nullptr).is_ok());
  ASSERT_TRUE(sched.wait(*rq, nullptr).is_ok());
  ASSERT_EQ(rerank.order().size(), 1u);
  ASSERT_EQ(embed.order().size(), 2u);
  EXPECT_LT(rerank.order()[0], embed.order()[1]) << "the rerank query ran before the bulk";
}

// The token limit and the 429 are shared by both tasks.
TEST(SchedulerRerank, SharesTheQueueLimit) {
  FakeBackend embed(100), rerank(100);
  SchedulerOptions options;
  options.queue_limit_tokens = 30;
  Scheduler sched({&embed}, options, nullptr, {&rerank});
  embed.close_gate();
  auto busy = sched.submit({seq(1, 5)}, {0}, Priority::kBulk);
  embed.wait_started(1);
  auto r = sched.submit({seq(2, 20)}, {0}, Priority::kQuery, Task::kRerank);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(sched.queued_tokens(), 20);
  EXPECT_EQ(sched.submit({seq(3, 20)}, {0}, Priority::kQuery).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(sched.submit({seq(4, 20)}, {0}, Priority::kBulk).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(sched.submit({seq(5, 20)}, {0}, Priority::kQuery, Task::kRerank).status().code(),
            StatusCode::kResourceExhausted);
  embed.open_gate();
  EXPECT_TRUE(sched.wait(*r, nullptr).is_ok());
  EXPECT_EQ(sched.queued_tokens(), 0);
}

}  // namespace
}  // namespace qsearch
