#include "index/gpu_index.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <stdexcept>
#include <unordered_set>

#include "index/index_util.h"

namespace qsearch {

namespace {

constexpr uint8_t kGpuMarker = 0x47;  // 'G': serialize()'s whole payload
constexpr int kMaxK = 4096;           // kTopkMaxK (kernels/topk.cuh)

// Higher key first; ties: lower shard, then lower row (the order one shard's kernel returns).
bool better(const index_internal::Candidate& a, const index_internal::Candidate& b) {
  if (a.key != b.key) return a.key > b.key;
  if (a.shard != b.shard) return a.shard < b.shard;
  return a.row < b.row;
}

// fn(i) for i in [0, n) on up to `threads` threads (this one included).
template <typename Fn>
void parallel_for(int n, int threads, Fn fn) {
  threads = std::max(1, std::min(threads, n));
  if (threads == 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = t; i < n; i += threads) fn(i);
    });
  for (int i = 0; i < n; i += threads) fn(i);
  for (auto& th : pool) th.join();
}

}  // namespace

namespace index_internal {

std::vector<int64_t> split_fresh_rows(const std::vector<int64_t>& stored, int64_t n) {
  const size_t s = stored.size();
  std::vector<int64_t> give(s, 0);
  if (s == 0) return give;
  int64_t left = n;
  while (left > 0) {
    int64_t lo = INT64_MAX, next = INT64_MAX;
    for (size_t i = 0; i < s; ++i) lo = std::min(lo, stored[i] + give[i]);
    int64_t at_lo = 0;
    for (size_t i = 0; i < s; ++i) {
      const int64_t level = stored[i] + give[i];
      if (level == lo)
        ++at_lo;
      else
        next = std::min(next, level);
    }
    // Raise the lowest shards to the next level, or share what is left among them.
    const bool share = next == INT64_MAX || (next - lo) * at_lo >= left;
    const int64_t each = share ? left / at_lo : next - lo;
    int64_t extra = share ? left % at_lo : 0;
    for (size_t i = 0; i < s; ++i) {
      if (stored[i] + give[i] != lo) continue;
      const int64_t g = each + (extra > 0 ? 1 : 0);
      if (extra > 0) --extra;
      give[i] += g;
      left -= g;
    }
  }
  return give;
}

std::vector<Candidate> merge_shard_lists(const std::vector<const float*>& keys,
                                         const std::vector<const int32_t*>& rows, int per_list,
                                         int take) {
  std::vector<Candidate> all;
  all.reserve(keys.size() * static_cast<size_t>(per_list));
  for (size_t s = 0; s < keys.size(); ++s)
    for (int i = 0; i < per_list; ++i)
      if (rows[s][i] >= 0) all.push_back({keys[s][i], static_cast<int>(s), rows[s][i]});
  const size_t n = std::min(all.size(), static_cast<size_t>(std::max(take, 0)));
  std::partial_sort(all.begin(), all.begin() + n, all.end(), better);
  all.resize(n);
  return all;
}

}  // namespace index_internal

using index_internal::Candidate;

void HostRows::append(int64_t n, const float* x) {
  for (int64_t i = 0; i < n;) {
    const int64_t in_block = rows_ % kBlockRows;
    if (in_block == 0 && rows_ / kBlockRows >= static_cast<int64_t>(blocks_.size()))
      blocks_.emplace_back(new float[static_cast<size_t>(kBlockRows) * d_]);
    const int64_t take = std::min(n - i, kBlockRows - in_block);
    std::memcpy(row(rows_), x + i * d_, static_cast<size_t>(take) * d_ * sizeof(float));
    rows_ += take;
    i += take;
  }
}

void HostRows::truncate(int64_t rows) {
  rows_ = std::min(rows_, rows);
  blocks_.resize(static_cast<size_t>((rows_ + kBlockRows - 1) / kBlockRows));
}

GpuIndex::GpuIndex(const VectorIndexConfig& config)
    : config_(config), int8_(config.gpu_precision == "int8") {
  std::vector<int> devices = config.gpu_devices;
  if (devices.empty()) {  // every visible device; none: device 0, whose open() says why not
    const int count = index_internal::GpuDevice::device_count();
    for (int i = 0; i < std::max(count, 1); ++i) devices.push_back(i);
  }
  index_internal::GpuDeviceOptions opt;
  opt.dimension = config.dimension;
  opt.l2 = config.metric == IndexMetric::kL2;
  opt.chunk_rows = config.gpu_chunk_rows;
  opt.max_batch = config.gpu_max_batch;
  opt.int8 = int8_;
  for (size_t s = 0; s < devices.size(); ++s) {
    opt.device = devices[s];
    auto device = index_internal::GpuDevice::open(opt);
    if (!device.is_ok()) {
      shards_.clear();
      const std::string where = devices.size() > 1 ? "shard " + std::to_string(s) + " (device " +
                                                         std::to_string(devices[s]) + "): "
                                                   : "";
      start_fallback(where + device.status().message());
      return;
    }
    auto shard = std::make_unique<Shard>();
    shard->device = devices[s];
    shard->host_rows = HostRows(config.dimension);
    shard->dev = std::move(device).value();
    shards_.push_back(std::move(shard));
  }
  std::string where;
  for (const auto& sh : shards_)
    where += (where.empty() ? "" : ", ") + sh->dev->device_name() + " (device " +
             std::to_string(sh->device) + ")";
  spdlog::info("index: gpu index, {} shard(s) on {}, dimension {}, {} rows{}", shards_.size(),
               where, config.dimension, int8_ ? "int8" : "bf16",
               int8_ ? ", rescoring the best " + std::to_string(config.gpu_rescore) : "");
  worker_ = std::thread([this] { worker_loop(); });
}

GpuIndex::~GpuIndex() { stop_worker(); }

void GpuIndex::stop_worker() {
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
  if (fallback_) return fallback_->stored();
  int64_t rows = 0;
  for (const auto& sh : shards_) rows += static_cast<int64_t>(sh->labels.size());
  return rows;
}

bool GpuIndex::contains(int64_t label) const {
  return fallback_ ? fallback_->contains(label) : positions_.count(label) > 0;
}

int64_t GpuIndex::memory_bytes() const {
  if (fallback_) return fallback_->memory_bytes();
  int64_t bytes = static_cast<int64_t>(positions_.size()) * index_internal::kHashEntryBytes;
  for (const auto& sh : shards_)
    bytes += static_cast<int64_t>(sh->labels.capacity() * sizeof(int64_t) +
                                  sh->live.capacity() * sizeof(uint32_t)) +
             sh->host_rows.bytes();
  return bytes;
}

int64_t GpuIndex::device_bytes() const {
  int64_t bytes = 0;
  for (const auto& sh : shards_) {
    std::lock_guard<std::mutex> lock(sh->mu);
    bytes += sh->dev->bytes_reserved();
  }
  return bytes;
}

std::vector<VectorIndex::DeviceShardInfo> GpuIndex::device_shards() const {
  std::vector<DeviceShardInfo> out;
  for (const auto& sh : shards_) {
    DeviceShardInfo info;
    info.device = sh->device;
    info.name = sh->dev->device_name();
    info.rows = static_cast<int64_t>(sh->labels.size());
    info.live = info.rows - sh->dead;
    {
      std::lock_guard<std::mutex> lock(sh->mu);
      info.bytes = sh->dev->bytes_reserved();
    }
    out.push_back(std::move(info));
  }
  return out;
}

int GpuIndex::candidates(int k) const { return int8_ ? std::max(k, config_.gpu_rescore) : k; }

Status GpuIndex::upload_live(Shard& sh, int64_t first_row, int64_t last_row) {
  if (last_row < first_row) return Status::ok();
  const int64_t w0 = first_row >> 5, w1 = last_row >> 5;
  std::lock_guard<std::mutex> lock(sh.mu);
  return sh.dev->write_live(w0, w1 - w0 + 1, sh.live.data() + w0);
}

namespace {

void set_bit(std::vector<uint32_t>* bits, int64_t row, bool on) {
  const size_t w = static_cast<size_t>(row >> 5);
  if (bits->size() <= w) bits->resize(w + 1, 0);
  if (on)
    (*bits)[w] |= 1u << (row & 31);
  else
    (*bits)[w] &= ~(1u << (row & 31));
}

}  // namespace

Status GpuIndex::add_to_shard(int s, int64_t n, const int64_t* labels, const float* rows) {
  Shard& sh = *shards_[s];
  const int64_t first = static_cast<int64_t>(sh.labels.size());
  {
    std::lock_guard<std::mutex> lock(sh.mu);
    QS_RETURN_IF_ERROR(sh.dev->write_rows(first, n, rows));
  }
  const bool keep_host = int8_ && !config_.gpu_vector_source;
  if (keep_host) sh.host_rows.append(n, rows);
  for (int64_t i = 0; i < n; ++i) {
    positions_[labels[i]] = slot(s, first + i);
    sh.labels.push_back(labels[i]);
    set_bit(&sh.live, first + i, true);
  }
  return upload_live(sh, first, first + n - 1);
}

Status GpuIndex::add(int64_t n, const int64_t* labels, const float* vectors) {
  if (fallback_) return fallback_->add(n, labels, vectors);
  const int d = config_.dimension;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0) return invalid_argument("index labels must be >= 0");
  }
  const bool keep_host = int8_ && !config_.gpu_vector_source;
  // The common bulk case (only new labels, no duplicates): the rows go down as they are.
  bool all_fresh = true;
  {
    std::unordered_set<int64_t> seen;
    seen.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n && all_fresh; ++i)
      all_fresh = positions_.count(labels[i]) == 0 && seen.insert(labels[i]).second;
  }
  std::vector<float> fresh;
  std::vector<int64_t> fresh_labels;
  std::unordered_map<int64_t, size_t> fresh_slot;  // duplicates inside one call: the last wins
  Status st;
  for (int64_t i = 0; i < n && st.is_ok() && !all_fresh; ++i) {
    const float* row = vectors + i * d;
    if (auto it = positions_.find(labels[i]); it != positions_.end()) {
      Shard& sh = *shards_[shard_of(it->second)];
      const int64_t r = row_of(it->second);
      {
        std::lock_guard<std::mutex> lock(sh.mu);
        st = sh.dev->write_rows(r, 1, row);  // replace in place
      }
      if (st.is_ok() && keep_host) std::memcpy(sh.host_rows.row(r), row, d * sizeof(float));
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
  const int64_t fresh_n = all_fresh ? n : static_cast<int64_t>(fresh_labels.size());
  const int64_t* fresh_l = all_fresh ? labels : fresh_labels.data();
  const float* fresh_x = all_fresh ? vectors : fresh.data();
  if (st.is_ok() && fresh_n > 0) {
    std::vector<int64_t> stored_rows;
    for (const auto& sh : shards_) stored_rows.push_back(static_cast<int64_t>(sh->labels.size()));
    const std::vector<int64_t> give = index_internal::split_fresh_rows(stored_rows, fresh_n);
    int64_t offset = 0;
    for (size_t s = 0; s < shards_.size() && st.is_ok(); ++s) {
      if (give[s] == 0) continue;
      st = add_to_shard(static_cast<int>(s), give[s], fresh_l + offset, fresh_x + offset * d);
      offset += give[s];
    }
  }
  if (st.code() == StatusCode::kResourceExhausted) {
    // A shard is out of device memory: hand every row over to a CPU flat index, then add there
    // (the rows this call placed on other shards are replaced by the same values).
    std::vector<int64_t> live_labels;
    std::vector<float> live_rows;
    QS_RETURN_IF_ERROR(export_live(&live_labels, &live_rows));
    const std::string reason = "out of GPU memory at " + std::to_string(stored()) +
                               " rows of dimension " + std::to_string(d) + " over " +
                               std::to_string(shards_.size()) + " shard(s) (" + st.message() + ")";
    stop_worker();
    shards_.clear();
    positions_.clear();
    start_fallback(reason);
    QS_RETURN_IF_ERROR(fallback_->add(static_cast<int64_t>(live_labels.size()), live_labels.data(),
                                      live_rows.data()));
    return fallback_->add(n, labels, vectors);
  }
  return st;
}

Status GpuIndex::remove(int64_t n, const int64_t* labels) {
  if (fallback_) return fallback_->remove(n, labels);
  std::vector<int64_t> lo(shards_.size(), INT64_MAX), hi(shards_.size(), -1);
  for (int64_t i = 0; i < n; ++i) {
    auto it = positions_.find(labels[i]);
    if (it == positions_.end()) continue;
    const int s = shard_of(it->second);
    const int64_t row = row_of(it->second);
    positions_.erase(it);
    Shard& sh = *shards_[s];
    sh.labels[row] = -1;
    set_bit(&sh.live, row, false);
    ++sh.dead;
    lo[s] = std::min(lo[s], row);
    hi[s] = std::max(hi[s], row);
  }
  for (size_t s = 0; s < shards_.size(); ++s) {
    Shard& sh = *shards_[s];
    QS_RETURN_IF_ERROR(upload_live(sh, lo[s], hi[s]));
    const int64_t rows = static_cast<int64_t>(sh.labels.size());
    if (sh.dead >= 1024 && sh.dead * 4 > rows) QS_RETURN_IF_ERROR(compact(sh));
  }
  return Status::ok();
}

Status GpuIndex::compact(Shard& sh) {
  int s = 0;
  while (shards_[s].get() != &sh) ++s;
  const int d = config_.dimension;
  std::vector<int64_t> src, dst;
  int64_t lo = 0, hi = static_cast<int64_t>(sh.labels.size()) - 1;
  for (;;) {
    while (lo < hi && sh.labels[lo] >= 0) ++lo;
    while (hi > lo && sh.labels[hi] < 0) --hi;
    if (lo >= hi) break;
    src.push_back(hi);
    dst.push_back(lo);
    sh.labels[lo] = sh.labels[hi];
    positions_[sh.labels[lo]] = slot(s, lo);
    if (sh.host_rows.rows() > 0)
      std::memcpy(sh.host_rows.row(lo), sh.host_rows.row(hi), d * sizeof(float));
    sh.labels[hi] = -1;
    ++lo;
    --hi;
  }
  const int64_t old_rows = static_cast<int64_t>(sh.labels.size());
  const int64_t live = old_rows - sh.dead;
  sh.labels.resize(live);
  sh.host_rows.truncate(live);
  std::fill(sh.live.begin(), sh.live.end(), 0u);
  for (int64_t r = 0; r < live; ++r) set_bit(&sh.live, r, true);
  {
    std::lock_guard<std::mutex> lock(sh.mu);
    QS_RETURN_IF_ERROR(sh.dev->move_rows(src.data(), dst.data(), static_cast<int64_t>(src.size())));
  }
  sh.dead = 0;
  QS_RETURN_IF_ERROR(upload_live(sh, 0, old_rows - 1));
  spdlog::debug("index: gpu index shard {} compacted {} rows into {} ({} moved)", s, old_rows, live,
                src.size());
  return Status::ok();
}

Status GpuIndex::search(int64_t n, const float* queries, int k, const IndexSearchParams& params,
                        const LabelFilter* filter, int64_t* out_labels,
                        float* out_distances) const {
  if (fallback_) return fallback_->search(n, queries, k, params, filter, out_labels, out_distances);
  if (k < 1) return invalid_argument("k must be >= 1");
  if (n <= 0) return Status::ok();
  // The filter as one bitmap over each shard's rows (shared by the n queries of this call).
  std::vector<std::vector<uint32_t>> bits;
  if (filter) {
    bits.resize(shards_.size());
    for (size_t s = 0; s < shards_.size(); ++s)
      bits[s].assign((shards_[s]->labels.size() + 31) / 32, 0u);
    if (const std::vector<int64_t>* set = filter->sorted_labels()) {
      for (int64_t label : *set) {
        auto it = positions_.find(label);
        if (it == positions_.end()) continue;
        const int64_t r = row_of(it->second);
        bits[shard_of(it->second)][r >> 5] |= 1u << (r & 31);
      }
    } else {
      for (size_t s = 0; s < shards_.size(); ++s) {
        const std::vector<int64_t>& labels = shards_[s]->labels;
        for (size_t r = 0; r < labels.size(); ++r)
          if (labels[r] >= 0 && filter->accepts(labels[r])) bits[s][r >> 5] |= 1u << (r & 31);
      }
    }
  }
  if (candidates(k) > kMaxK)
    return search_large_k(n, queries, k, filter ? &bits : nullptr, out_labels, out_distances);
  std::vector<Request> requests(static_cast<size_t>(n));
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stop_) return unavailable("gpu index is shutting down");
    for (int64_t i = 0; i < n; ++i) {
      Request& r = requests[i];
      r.query = queries + i * config_.dimension;
      r.k = k;
      r.filter = filter ? &bits : nullptr;
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

// k (or max(k, rescore)) past the device selection's limit (a chunked collection widening its
// fetch): every shard's keys come back to the host, which keeps the best live rows that pass
// the filter.
Status GpuIndex::search_large_k(int64_t n, const float* queries, int k,
                                const std::vector<std::vector<uint32_t>>* filter,
                                int64_t* out_labels, float* out_distances) const {
  const int d = config_.dimension;
  const size_t take = static_cast<size_t>(candidates(k));
  std::vector<float> keys;
  std::vector<Candidate> cand;
  for (int64_t qi = 0; qi < n; ++qi) {
    const float* q = queries + qi * d;
    cand.clear();
    for (size_t s = 0; s < shards_.size(); ++s) {
      const Shard& sh = *shards_[s];
      const int64_t rows = static_cast<int64_t>(sh.labels.size());
      keys.resize(static_cast<size_t>(rows));
      {
        std::lock_guard<std::mutex> lock(sh.mu);
        QS_RETURN_IF_ERROR(sh.dev->score_all(rows, 1, q, keys.data()));
      }
      const uint32_t* f = filter ? (*filter)[s].data() : nullptr;
      for (int64_t r = 0; r < rows; ++r) {
        if (sh.labels[r] < 0 || (f && !((f[r >> 5] >> (r & 31)) & 1u))) continue;
        cand.push_back({keys[r], static_cast<int>(s), r});
      }
    }
    const size_t keep = std::min(cand.size(), take);
    std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), better);
    cand.resize(keep);
    QS_RETURN_IF_ERROR(finish(q, cand, k, out_labels + qi * k, out_distances + qi * k));
  }
  return Status::ok();
}

Status GpuIndex::exact_rows(const std::vector<Candidate>& cands, float* out) const {
  const int d = config_.dimension;
  if (config_.gpu_vector_source) {
    std::vector<int64_t> labels;
    labels.reserve(cands.size());
    for (const Candidate& c : cands) labels.push_back(shards_[c.shard]->labels[c.row]);
    return config_.gpu_vector_source(static_cast<int64_t>(labels.size()), labels.data(), out);
  }
  for (size_t i = 0; i < cands.size(); ++i) {
    const Shard& sh = *shards_[cands[i].shard];
    std::memcpy(out + i * d, sh.host_rows.row(cands[i].row), d * sizeof(float));
  }
  return Status::ok();
}

Status GpuIndex::finish(const float* query, const std::vector<Candidate>& cands, int k,
                        int64_t* out_labels, float* out_distances) const {
  const int d = config_.dimension;
  const bool l2 = config_.metric == IndexMetric::kL2;
  // (distance, label), best first.
  std::vector<std::pair<float, int64_t>> results;
  results.reserve(cands.size());
  if (!int8_) {
    float qn = 0.f;
    if (l2)
      for (int j = 0; j < d; ++j) qn += query[j] * query[j];
    for (const Candidate& c : cands) {
      const int64_t label = shards_[c.shard]->labels[c.row];
      if (label < 0) continue;
      results.emplace_back(l2 ? std::max(0.f, qn - c.key) : c.key, label);
    }
  } else {
    // Exact rescoring in fp32 of the candidates the int8 scores chose.
    std::vector<float> rows(cands.size() * static_cast<size_t>(d));
    QS_RETURN_IF_ERROR(exact_rows(cands, rows.data()));
    for (size_t i = 0; i < cands.size(); ++i) {
      const int64_t label = shards_[cands[i].shard]->labels[cands[i].row];
      if (label < 0) continue;
      const float* x = rows.data() + i * d;
      float v = 0.f;
      if (l2) {
        for (int j = 0; j < d; ++j) {
          const float diff = query[j] - x[j];
          v += diff * diff;
        }
      } else {
        for (int j = 0; j < d; ++j) v += query[j] * x[j];
      }
      results.emplace_back(v, label);
    }
    std::stable_sort(results.begin(), results.end(), [l2](const auto& a, const auto& b) {
      return l2 ? a.first < b.first : a.first > b.first;
    });
  }
  for (int i = 0; i < k; ++i) {
    if (i < static_cast<int>(results.size())) {
      out_labels[i] = results[i].second;
      out_distances[i] = results[i].first;
    } else {
      out_labels[i] = -1;
      out_distances[i] = l2 ? FLT_MAX : -FLT_MAX;
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
  const int shards = static_cast<int>(shards_.size());
  int kc = 0;  // candidates per query and shard
  bool any_filter = false;
  for (const Request* r : batch) {
    kc = std::max(kc, candidates(r->k));
    any_filter = any_filter || r->filter != nullptr;
  }
  std::vector<float> q(static_cast<size_t>(nq) * d);
  for (int b = 0; b < nq; ++b)
    std::memcpy(q.data() + static_cast<size_t>(b) * d, batch[b]->query, d * sizeof(float));
  std::vector<std::vector<float>> keys(shards);
  std::vector<std::vector<int32_t>> rows(shards);
  std::vector<Status> status(shards);
  // Every shard searches the whole batch at once, each on its own thread (and device stream).
  auto run_shard = [&](int s) {
    try {
      const Shard& sh = *shards_[s];
      std::vector<const uint32_t*> filters(nq, nullptr);
      for (int b = 0; b < nq; ++b)
        if (batch[b]->filter) filters[b] = (*batch[b]->filter)[s].data();
      keys[s].resize(static_cast<size_t>(nq) * kc);
      rows[s].resize(static_cast<size_t>(nq) * kc);
      std::lock_guard<std::mutex> lock(sh.mu);
      status[s] =
          sh.dev->search(static_cast<int64_t>(sh.labels.size()), nq, q.data(),
                         any_filter ? filters.data() : nullptr, kc, keys[s].data(), rows[s].data());
    } catch (const std::exception& e) {
      status[s] = internal_error(std::string("gpu search: ") + e.what());
    }
  };
  parallel_for(shards, shards, run_shard);
  Status st;
  for (const Status& s : status)
    if (st.is_ok() && !s.is_ok()) st = s;
  // Merge the shards' lists per query (and rescore, int8: on a few threads, it reads
  // max(k, rescore) fp32 rows a query).
  auto answer = [&](int b) {
    Request* r = batch[b];
    r->status = st;
    if (!st.is_ok()) return;
    std::vector<const float*> k_ptrs(shards);
    std::vector<const int32_t*> r_ptrs(shards);
    for (int s = 0; s < shards; ++s) {
      k_ptrs[s] = keys[s].data() + static_cast<size_t>(b) * kc;
      r_ptrs[s] = rows[s].data() + static_cast<size_t>(b) * kc;
    }
    const std::vector<Candidate> cands =
        index_internal::merge_shard_lists(k_ptrs, r_ptrs, kc, candidates(r->k));
    r->status = finish(r->query, cands, r->k, r->labels, r->distances);
  };
  const int threads = int8_ && nq >= 4 ? 8 : 1;
  parallel_for(nq, threads, answer);
}

Status GpuIndex::export_live(std::vector<int64_t>* labels, std::vector<float>* vectors) const {
  if (fallback_) return fallback_->export_live(labels, vectors);
  const int d = config_.dimension;
  labels->clear();
  vectors->clear();
  labels->reserve(positions_.size());
  vectors->reserve(positions_.size() * d);
  for (size_t s = 0; s < shards_.size(); ++s) {
    const Shard& sh = *shards_[s];
    const int64_t rows = static_cast<int64_t>(sh.labels.size());
    // int8 keeps (or can fetch) the exact vectors; otherwise the device's values come back.
    std::vector<Candidate> live;
    for (int64_t r = 0; r < rows; ++r)
      if (sh.labels[r] >= 0) live.push_back({0.f, static_cast<int>(s), r});
    const size_t at = vectors->size();
    vectors->resize(at + live.size() * d);
    if (int8_) {
      QS_RETURN_IF_ERROR(exact_rows(live, vectors->data() + at));
    } else {
      std::vector<float> all(static_cast<size_t>(rows) * d);
      {
        std::lock_guard<std::mutex> lock(sh.mu);
        QS_RETURN_IF_ERROR(sh.dev->read_rows(0, rows, all.data()));
      }
      for (size_t i = 0; i < live.size(); ++i)
        std::memcpy(vectors->data() + at + i * d, all.data() + live[i].row * d, d * sizeof(float));
    }
    for (const Candidate& c : live) labels->push_back(sh.labels[c.row]);
  }
  return Status::ok();
}

Status GpuIndex::serialize(std::string* out) const {
  out->assign(1, static_cast<char>(kGpuMarker));
  return Status::ok();
}

}  // namespace qsearch
