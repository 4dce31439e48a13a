#include "common/jobs.h"

#include <algorithm>
#include <chrono>

namespace qsearch {
namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Job::Job(uint64_t id, std::string kind, std::string collection, int64_t total)
    : id_(id),
      kind_(std::move(kind)),
      collection_(std::move(collection)),
      started_at_(unix_now()),
      started_steady_ns_(steady_ns()),
      total_(total) {}

void Job::set_phase(std::string phase) {
  std::lock_guard<std::mutex> lock(mu_);
  phase_ = std::move(phase);
}

void Job::finish(const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != "running") return;
  state_ = status.is_ok() ? "done" : "failed";
  if (status.is_ok()) phase_.clear();  // a failed job keeps the phase it failed in
  if (!status.is_ok()) error_ = status.message().empty() ? status.to_string() : status.message();
  finished_at_ = unix_now();
  elapsed_at_finish_ = static_cast<double>(steady_ns() - started_steady_ns_) * 1e-9;
}

bool Job::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == "running";
}

JobSnapshot Job::snapshot() const {
  JobSnapshot s;
  s.id = id_;
  s.kind = kind_;
  s.collection = collection_;
  s.done = done_.load(std::memory_order_relaxed);
  s.total = total_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.bytes = bytes_.load(std::memory_order_relaxed);
  s.total_bytes = total_bytes_.load(std::memory_order_relaxed);
  s.started_at = started_at_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.state = state_;
    s.phase = phase_;
    s.error = error_;
    s.finished_at = finished_at_;
    s.elapsed_s = state_ == "running" ? static_cast<double>(steady_ns() - started_steady_ns_) * 1e-9
                                      : elapsed_at_finish_;
  }
  s.rate = s.elapsed_s > 0 ? static_cast<double>(s.done) / s.elapsed_s : 0;
  return s;
}

JobHandle& JobHandle::operator=(JobHandle&& other) noexcept {
  if (this != &other) {
    if (job_) job_->finish(cancelled("interrupted"));
    job_ = std::move(other.job_);
  }
  return *this;
}

JobHandle::~JobHandle() {
  if (job_) job_->finish(cancelled("interrupted"));
}

void JobHandle::finish(const Status& status) {
  if (job_) job_->finish(status);
}

JobRegistry& JobRegistry::global() {
  static JobRegistry* registry = new JobRegistry();  // never destroyed: used until exit
  return *registry;
}

JobHandle JobRegistry::start(std::string kind, std::string collection, int64_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  auto job = std::make_shared<Job>(next_id_++, std::move(kind), std::move(collection), total);
  jobs_.push_back(job);
  // Keep every running job and the newest kKeepFinished finished ones.
  size_t finished = 0;
  for (const auto& j : jobs_) finished += j->running() ? 0 : 1;
  for (auto it = jobs_.begin(); finished > kKeepFinished && it != jobs_.end();) {
    if (!(*it)->running()) {
      it = jobs_.erase(it);
      --finished;
    } else {
      ++it;
    }
  }
  return JobHandle(std::move(job));
}

std::vector<JobSnapshot> JobRegistry::list() const {
  std::vector<JobSnapshot> running, finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& j : jobs_) {
      JobSnapshot s = j->snapshot();
      (s.state == "running" ? running : finished).push_back(std::move(s));
    }
  }
  std::reverse(finished.begin(), finished.end());
  if (finished.size() > kKeepFinished) finished.resize(kKeepFinished);
  running.insert(running.end(), finished.begin(), finished.end());
  return running;
}

std::optional<JobSnapshot> JobRegistry::get(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& j : jobs_)
    if (j->id() == id) return j->snapshot();
  return std::nullopt;
}

std::vector<JobSnapshot> JobRegistry::running_for(const std::string& collection) const {
  std::vector<JobSnapshot> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& j : jobs_) {
    JobSnapshot s = j->snapshot();
    if (s.state == "running" && s.collection == collection) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace qsearch
