// The jobs registry (common/jobs.h): counters, outcome, ordering, pruning of finished jobs and
// the handle that never leaves a job "running".
#include "common/jobs.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace qsearch {
namespace {

TEST(Jobs, CountersRateAndOutcome) {
  JobRegistry registry;
  JobHandle job = registry.start("import", "docs");
  const uint64_t id = job->id();
  job->add_done(10);
  job->add_done(5);
  job->add_errors(2);
  job->set_bytes(300);
  job->set_total_bytes(1000);
  job->set_phase("embedding");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  JobSnapshot s = registry.get(id).value();
  EXPECT_EQ(s.kind, "import");
  EXPECT_EQ(s.collection, "docs");
  EXPECT_EQ(s.state, "running");
  EXPECT_EQ(s.phase, "embedding");
  EXPECT_EQ(s.done, 15);
  EXPECT_EQ(s.total, -1);
  EXPECT_EQ(s.errors, 2);
  EXPECT_EQ(s.bytes, 300);
  EXPECT_EQ(s.total_bytes, 1000);
  EXPECT_GE(s.elapsed_s, 0.015);
  EXPECT_NEAR(s.rate, 15 / s.elapsed_s, 1e-6);
  EXPECT_EQ(s.finished_at, 0);
  ASSERT_EQ(registry.running_for("docs").size(), 1u);
  EXPECT_TRUE(registry.running_for("other").empty());

  job.finish(Status::ok());
  job.finish(invalid_argument("late"));  // ignored: the first outcome stays
  s = registry.get(id).value();
  EXPECT_EQ(s.state, "done");
  EXPECT_TRUE(s.error.empty());
  EXPECT_TRUE(s.phase.empty());
  EXPECT_GE(s.finished_at, s.started_at);
  const double elapsed = s.elapsed_s;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(registry.get(id)->elapsed_s, elapsed);  // frozen at the end
  EXPECT_TRUE(registry.running_for("docs").empty());
}

TEST(Jobs, FailedWithMessageAndInterruptedByTheHandle) {
  JobRegistry registry;
  uint64_t failed_id, dropped_id;
  {
    JobHandle failed = registry.start("index_rebuild", "c", 100);
    failed_id = failed->id();
    failed->set_phase("reading stored embeddings");
    failed.finish(corruption("stored embedding has the wrong dimension"));
    JobHandle dropped = registry.start("import", "c");
    dropped_id = dropped->id();
  }  // `dropped` goes out of scope unfinished (an exception, an early return)
  JobSnapshot f = registry.get(failed_id).value();
  EXPECT_EQ(f.state, "failed");
  EXPECT_EQ(f.total, 100);
  EXPECT_EQ(f.error, "stored embedding has the wrong dimension");
  EXPECT_EQ(f.phase, "reading stored embeddings");  // where it failed
  JobSnapshot d = registry.get(dropped_id).value();
  EXPECT_EQ(d.state, "failed");
  EXPECT_EQ(d.error, "interrupted");
  EXPECT_FALSE(registry.get(9999).has_value());
}

TEST(Jobs, ListsRunningFirstThenNewestFinishedAndPrunesOldFinished) {
  JobRegistry registry;
  JobHandle running = registry.start("import", "a");
  std::vector<uint64_t> finished;
  for (size_t i = 0; i < JobRegistry::kKeepFinished + 10; ++i) {
    JobHandle j = registry.start("index_optimize", "b");
    finished.push_back(j->id());
    j.finish(Status::ok());
  }
  std::vector<JobSnapshot> list = registry.list();
  ASSERT_EQ(list.size(), JobRegistry::kKeepFinished + 1);
  EXPECT_EQ(list[0].id, running->id());
  EXPECT_EQ(list[0].state, "running");
  EXPECT_EQ(list[1].id, finished.back());  // newest finished next
  EXPECT_EQ(list.back().id, finished[finished.size() - JobRegistry::kKeepFinished]);
  EXPECT_FALSE(registry.get(finished.front()).has_value());  // pruned
  EXPECT_TRUE(registry.get(running->id()).has_value());      // running jobs are never pruned
}

TEST(Jobs, ConcurrentUpdatesAreCounted) {
  JobRegistry registry;
  JobHandle job = registry.start("import", "x");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        job->add_done(1);
        if (i % 100 == 0) (void)registry.list();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(registry.get(job->id())->done, 40000);
}

}  // namespace
}  // namespace qsearch
