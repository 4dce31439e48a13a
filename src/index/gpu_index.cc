#include "index/gpu_index.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <stdexcept>

namespace qsearch {

namespace {

constexpr uint8_t kGpuMarker = 0x47;  // 'G': serialize()'s whole payload
constexpr int kMaxK = 4096;           // kTopkMaxK (kernels/topk.cuh)

}  // namespace

GpuIndex::GpuIndex(const VectorIndexConfig& config) : config_(config) {
  index_internal::GpuDeviceOptions opt;
  opt.device = config.gpu_device;
  opt.dimension = config.dimension;
  opt.l2 = config.metric == IndexMetric::kL2;
  opt.chunk_rows = config.gpu_chunk_rows;
  opt.max_batch = config.gpu_max_batch;
  auto device = index_internal::GpuDevice::open(opt);
  if (!device.is_ok()) {
    start_fallback(device.status().message());
    return;
  }
  device_ = std::move(device).value();
  spdlog::info("index: gpu index on {} (device {}), dimension {}", device_->device_name(),
               config.gpu_device, config.dimension);
  worker_ = std::thread([this] { worker_loop(); });
}

GpuIndex::~GpuIndex() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stop_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void GpuIndex::start_fallback(const std::string& reason) {
  fallback_reason_ = reason;
  fallback_ = std::make_unique<FlatIndex>(config_.dimension, config_.metric);
  spdlog::warn("index: gpu index falls back to CPU flat search: {}", reason);
}

int64_t GpuIndex::size() const {
  return fallback_ ? fallback_->size() : static_cast<int64_t>(positions_.size());
}

int64_t GpuIndex::stored() const {
  return fallback_ ? fallback_->stored() : static_cast<int64_t>(labels_.size());
}

bool GpuIndex::contains(int64_t label) const {
  return fallback_ ? fallback_->contains(label) : positions_.count(label) > 0;
}

int64_t GpuIndex::device_bytes() const {
  if (!device_) return 0;
  std::lock_guard<std::mutex> lock(device_mu_);
  return device_->bytes_reserved();
}

void GpuIndex::set_live(int64_t row, bool live) {
  const size_t w = static_cast<size_t>(row >> 5);
  if (live_.size() <= w) live_.resize(w + 1, 0);
  if (live)
    live_[w] |= 1u << (row & 31);
  else
    live_[w] &= ~(1u << (row & 31));
}

Status GpuIndex::upload_live(int64_t first_row, int64_t last_row) {
  if (last_row < first_row) return Status::ok();
  const int64_t w0 = first_row >> 5, w1 = last_row >> 5;
  std::lock_guard<std::mutex> lock(device_mu_);
  return device_->write_live(w0, w1 - w0 + 1, live_.data() + w0);
}

Status GpuIndex::add(int64_t n, const int64_t* labels, const float* vectors) {
  if (fallback_) return fallback_->add(n, labels, vectors);
  const int d = config_.dimension;
  std::vector<float> fresh;
  std::vector<int64_t> fresh_labels;
  std::unordered_map<int64_t, size_t> fresh_slot;  // duplicates inside one call: the last wins
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0) return invalid_argument("index labels must be >= 0");
  }
  Status st;
  {
    std::lock_guard<std::mutex> lock(device_mu_);
    for (int64_t i = 0; i < n && st.is_ok(); ++i) {
      const float* row = vectors + i * d;
      if (auto it = positions_.find(labels[i]); it != positions_.end()) {
        st = device_->write_rows(it->second, 1, row);  // replace in place
        continue;
      }
      if (auto f = fresh_slot.find(labels[i]); f != fresh_slot.end()) {
        std::memcpy(fresh.data() + f->second * d, row, d * sizeof(float));
        continue;
      }
      fresh_slot[labels[i]] = fresh_labels.size();
      fresh_labels.push_back(labels[i]);
      fresh.insert(fresh.end(), row, row + d);
    }
    if (st.is_ok() && !fresh_labels.empty())
      st = device_->write_rows(static_cast<int64_t>(labels_.size()),
                               static_cast<int64_t>(fresh_labels.size()), fresh.data());
  }
  if (st.code() == StatusCode::kResourceExhausted) {
    // Out of device memory: hand every row over to a CPU flat index, then add there.
    std::vector<int64_t> live_labels;
    std::vector<float> live_rows;
    QS_RETURN_IF_ERROR(export_live(&live_labels, &live_rows));
    const std::string reason = "out of GPU memory at " + std::to_string(labels_.size()) +
                               " rows of dimension " + std::to_string(d) + " (" + st.message() +
                               ")";
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      stop_ = true;
    }
    queue_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    {
      std::lock_guard<std::mutex> lock(device_mu_);
      device_.reset();
    }
    labels_.clear();
    positions_.clear();
    live_.clear();
    dead_ = 0;
    start_fallback(reason);
    QS_RETURN_IF_ERROR(fallback_->add(static_cast<int64_t>(live_labels.size()), live_labels.data(),
                                      live_rows.data()));
    return fallback_->add(n, labels, vectors);
  }
  QS_RETURN_IF_ERROR(st);
  const int64_t first = static_cast<int64_t>(labels_.size());
  for (size_t i = 0; i < fresh_labels.size(); ++i) {
    const int64_t row = first + static_cast<int64_t>(i);
    positions_[fresh_labels[i]] = row;
    labels_.push_back(fresh_labels[i]);
    set_live(row, true);
  }
  return upload_live(first, static_cast<int64_t>(labels_.size()) - 1);
}

Status GpuIndex::remove(int64_t n, const int64_t* labels) {
  if (fallback_) return fallback_->remove(n, labels);
  int64_t lo = INT64_MAX, hi = -1;
  for (int64_t i = 0; i < n; ++i) {
    auto it = positions_.find(labels[i]);
    if (it == positions_.end()) continue;
    const int64_t row = it->second;
    positions_.erase(it);
    labels_[row] = -1;
    set_live(row, false);
    ++dead_;
    lo = std::min(lo, row);
    hi = std::max(hi, row);
  }
  QS_RETURN_IF_ERROR(upload_live(lo, hi));
  const int64_t rows = static_cast<int64_t>(labels_.size());
  if (dead_ >= 1024 && dead_ * 4 > rows) return compact();
  return Status::ok();
}

Status GpuIndex::compact() {
  std::vector<int64_t> src, dst;
  int64_t lo = 0, hi = static_cast<int64_t>(labels_.size()) - 1;
  for (;;) {
    while (lo < hi && labels_[lo] >= 0) ++lo;
    while (hi > lo && labels_[hi] < 0) --hi;
    if (lo >= hi) break;
    src.push_back(hi);
    dst.push_back(lo);
    labels_[lo] = labels_[hi];
    positions_[labels_[lo]] = lo;
    labels_[hi] = -1;
    ++lo;
    --hi;
  }
  const int64_t live = static_cast<int64_t>(positions_.size());
  const int64_t old_rows = static_cast<int64_t>(labels_.size());
  labels_.resize(live);
  std::fill(live_.begin(), live_.end(), 0u);
  for (int64_t r = 0; r < live; ++r) set_live(r, true);
  {
    std::lock_guard<std::mutex> lock(device_mu_);
    QS_RETURN_IF_ERROR(
        device_->move_rows(src.data(), dst.data(), static_cast<int64_t>(src.size())));
  }
  dead_ = 0;
  QS_RETURN_IF_ERROR(upload_live(0, old_rows - 1));
  spdlog::debug("index: gpu index compacted {} rows into {} ({} moved)", old_rows, live,
                src.size());
  return Status::ok();
}

Status GpuIndex::search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                        const LabelFilter* filter, int64_t* out_labels,
                        float* out_distances) const {
  if (fallback_) return fallback_->search(n, queries, k, params, filter, out_labels, out_distances);
  if (k < 1) return invalid_argument("k must be >= 1");
  if (n <= 0) return Status::ok();
  // The filter as a bitmap over rows (shared by the n queries of this call).
  std::vector<uint32_t> bits;
  if (filter) {
    const int64_t rows = static_cast<int64_t>(labels_.size());
    bits.assign(static_cast<size_t>((rows + 31) / 32), 0u);
    if (const std::vector<int64_t>* set = filter->sorted_labels()) {
      for (int64_t label : *set) {
        auto it = positions_.find(label);
        if (it != positions_.end()) bits[it->second >> 5] |= 1u << (it->second & 31);
      }
    } else {
      for (int64_t r = 0; r < rows; ++r)
        if (labels_[r] >= 0 && filter->accepts(labels_[r])) bits[r >> 5] |= 1u << (r & 31);
    }
  }
  if (k > kMaxK)
    return search_large_k(n, queries, k, filter ? bits.data() : nullptr, out_labels, out_distances);
  std::vector<Request> requests(static_cast<size_t>(n));
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stop_) return unavailable("gpu index is shutting down");
    for (int64_t i = 0; i < n; ++i) {
      Request& r = requests[i];
      r.query = queries + i * config_.dimension;
      r.k = k;
      r.filter = filter ? bits.data() : nullptr;
      r.labels = out_labels + i * k;
      r.distances = out_distances + i * k;
      r.arrived = now;
      queue_.push_back(&r);
    }
  }
  queue_cv_.notify_one();
  std::unique_lock<std::mutex> lock(queue_mu_);
  done_cv_.wait(lock, [&] {
    return std::all_of(requests.begin(), requests.end(), [](const Request& r) { return r.done; });
  });
  for (const Request& r : requests) QS_RETURN_IF_ERROR(r.status);
  return Status::ok();
}

// k past the device selection's limit (a chunked collection widening its fetch): every key
// comes back to the host, which keeps the best k live rows that pass the filter.
Status GpuIndex::search_large_k(int64_t n, const float* queries, int k, const uint32_t* filter,
                                int64_t* out_labels, float* out_distances) const {
  const int d = config_.dimension;
  const bool l2 = config_.metric == IndexMetric::kL2;
  const int64_t rows = static_cast<int64_t>(labels_.size());
  std::vector<float> keys(static_cast<size_t>(rows));
  std::vector<std::pair<float, int64_t>> cand;
  for (int64_t qi = 0; qi < n; ++qi) {
    const float* q = queries + qi * d;
    {
      std::lock_guard<std::mutex> lock(device_mu_);
      QS_RETURN_IF_ERROR(device_->score_all(rows, 1, q, keys.data()));
    }
    cand.clear();
    for (int64_t r = 0; r < rows; ++r) {
      if (labels_[r] < 0 || (filter && !((filter[r >> 5] >> (r & 31)) & 1u))) continue;
      cand.emplace_back(-keys[r], r);
    }
    const size_t take = std::min(cand.size(), static_cast<size_t>(k));
    std::partial_sort(cand.begin(), cand.begin() + take, cand.end());
    float qn = 0.f;
    if (l2)
      for (int j = 0; j < d; ++j) qn += q[j] * q[j];
    for (int i = 0; i < k; ++i) {
      int64_t* lab = out_labels + qi * k;
      float* dis = out_distances + qi * k;
      if (i < static_cast<int>(take)) {
        lab[i] = labels_[cand[i].second];
        dis[i] = l2 ? std::max(0.f, qn + cand[i].first) : -cand[i].first;
      } else {
        lab[i] = -1;
        dis[i] = l2 ? FLT_MAX : -FLT_MAX;
      }
    }
  }
  return Status::ok();
}

void GpuIndex::worker_loop() {
  const int max_batch = std::max(1, config_.gpu_max_batch);
  const auto window = std::chrono::microseconds(std::max(0, config_.gpu_batch_wait_us));
  std::unique_lock<std::mutex> lock(queue_mu_);
  for (;;) {
    queue_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left to answer
    if (static_cast<int>(queue_.size()) < max_batch && last_batch_ > 1 && window.count() > 0) {
      queue_cv_.wait_until(lock, queue_.front()->arrived + window,
                           [&] { return stop_ || static_cast<int>(queue_.size()) >= max_batch; });
    }
    std::vector<Request*> batch;
    while (!queue_.empty() && static_cast<int>(batch.size()) < max_batch) {
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    last_batch_ = static_cast<int>(batch.size());
    lock.unlock();
    try {
      run_batch(batch);
    } catch (const std::exception& e) {  // e.g. bad_alloc: answer, never leave searches waiting
      for (Request* r : batch) r->status = internal_error(std::string("gpu search: ") + e.what());
    }
    lock.lock();
    for (Request* r : batch) r->done = true;
    done_cv_.notify_all();
  }
}

void GpuIndex::run_batch(const std::vector<Request*>& batch) const {
  const int nq = static_cast<int>(batch.size());
  const int d = config_.dimension;
  int k = 0;
  bool any_filter = false;
  for (const Request* r : batch) {
    k = std::max(k, r->k);
    any_filter = any_filter || r->filter != nullptr;
  }
  std::vector<float> q(static_cast<size_t>(nq) * d);
  std::vector<const uint32_t*> filters(nq, nullptr);
  for (int b = 0; b < nq; ++b) {
    std::memcpy(q.data() + static_cast<size_t>(b) * d, batch[b]->query, d * sizeof(float));
    filters[b] = batch[b]->filter;
  }
  std::vector<float> keys(static_cast<size_t>(nq) * k);
  std::vector<int32_t> rows(static_cast<size_t>(nq) * k);
  Status st;
  {
    std::lock_guard<std::mutex> lock(device_mu_);
    st = device_->search(static_cast<int64_t>(labels_.size()), nq, q.data(),
                         any_filter ? filters.data() : nullptr, k, keys.data(), rows.data());
  }
  const bool l2 = config_.metric == IndexMetric::kL2;
  for (int b = 0; b < nq; ++b) {
    Request* r = batch[b];
    r->status = st;
    if (!st.is_ok()) continue;
    float qn = 0.f;
    if (l2)
      for (int j = 0; j < d; ++j) qn += r->query[j] * r->query[j];
    for (int i = 0; i < r->k; ++i) {
      const int32_t row = rows[static_cast<size_t>(b) * k + i];
      const float key = keys[static_cast<size_t>(b) * k + i];
      const int64_t label =
          row >= 0 && row < static_cast<int32_t>(labels_.size()) ? labels_[row] : -1;
      if (label < 0) {
        r->labels[i] = -1;
        r->distances[i] = l2 ? FLT_MAX : -FLT_MAX;
      } else {
        r->labels[i] = label;
        r->distances[i] = l2 ? std::max(0.f, qn - key) : key;
      }
    }
  }
}

Status GpuIndex::export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const {
  if (fallback_) return fallback_->export_live(labels, vectors);
  const int d = config_.dimension;
  const int64_t rows = static_cast<int64_t>(labels_.size());
  std::vector<float> all(static_cast<size_t>(rows) * d);
  {
    std::lock_guard<std::mutex> lock(device_mu_);
    QS_RETURN_IF_ERROR(device_->read_rows(0, rows, all.data()));
  }
  labels->clear();
  vectors->clear();
  labels->reserve(positions_.size());
  vectors->reserve(positions_.size() * d);
  for (int64_t r = 0; r < rows; ++r) {
    if (labels_[r] < 0) continue;
    labels->push_back(labels_[r]);
    vectors->insert(vectors->end(), all.begin() + r * d, all.begin() + (r + 1) * d);
  }
  return Status::ok();
}

Status GpuIndex::serialize(std::string* out) const {
  out->assign(1, static_cast<char>(kGpuMarker));
  return Status::ok();
}

}  // namespace qsearch
