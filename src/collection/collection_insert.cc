// The background HNSW inserter: writes leave their vectors in the index's pending buffer
// (searched exactly, so they are visible at once); this thread moves them into the graph in
// slices under the exclusive index lock. A slice's batch size adapts so that one slice takes
// about StoreOptions::index_insert_slice_ms: searches and writers wait at most that long, and
// FAISS inserts each batch in parallel over its OpenMP threads. Nothing here changes what the
// index holds, only where (pending or graph), so applied_seq and the change log are untouched.
#include <omp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "collection/collection_store.h"

namespace qsearch {

IndexMutex::IndexMutex() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&rw_, &attr);
  pthread_rwlockattr_destroy(&attr);
}
IndexMutex::~IndexMutex() { pthread_rwlock_destroy(&rw_); }
void IndexMutex::lock() { pthread_rwlock_wrlock(&rw_); }
bool IndexMutex::try_lock() { return pthread_rwlock_trywrlock(&rw_) == 0; }
void IndexMutex::unlock() { pthread_rwlock_unlock(&rw_); }
void IndexMutex::lock_shared() { pthread_rwlock_rdlock(&rw_); }
bool IndexMutex::try_lock_shared() { return pthread_rwlock_tryrdlock(&rw_) == 0; }
void IndexMutex::unlock_shared() { pthread_rwlock_unlock(&rw_); }

static int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void RocksCollectionStore::note_pending(CollectionState* c) {
  const int64_t pending = c->index->pending();
  c->pending = pending;
  if (pending > 0 && options_.background_insert) {
    {
      std::lock_guard<std::mutex> lock(inserter_mu_);
      insert_work_ = true;
    }
    inserter_cv_.notify_one();
  }
}

void RocksCollectionStore::settle_pending(CollectionState* c) {
  if (!options_.background_insert) {
    Status s;
    {
      std::unique_lock<IndexMutex> lock(c->index_mu);
      if (c->index->pending() == 0) return;
      s = c->index->absorb_pending(c->index->pending());
      c->pending = c->index->pending();
    }
    if (!s.is_ok()) {
      spdlog::error("store: graph insert in '{}' failed ({}); rebuilding", c->spec.name,
                    s.to_string());
      std::lock_guard<std::mutex> write_lock(c->write_mu);
      if (c->dropped) return;
      Status r = rebuild_index(c);
      if (!r.is_ok()) spdlog::error("store: rebuilding '{}': {}", c->spec.name, r.to_string());
    }
    return;
  }
  // Backpressure: the buffer is scanned exactly by every search, so it stays bounded.
  const int64_t limit = std::max<int64_t>(1, options_.index_pending_max);
  if (c->pending.load() <= limit) return;
  std::unique_lock<std::mutex> lock(inserter_mu_);
  while (!stop_inserter_ && !c->dropped_flag.load() && c->pending.load() > limit) {
    drained_cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

bool RocksCollectionStore::insert_slice(CollectionState* c) {
  if (c->pending.load() == 0 || c->dropped_flag.load()) return false;
  if (c->insert_batch <= 0) c->insert_batch = std::max(1, omp_get_max_threads());
  int64_t batch = c->insert_batch;
  int64_t took_us = 0;
  Status s;
  {
    std::unique_lock<IndexMutex> lock(c->index_mu);
    const int64_t pending = c->index->pending();
    if (pending == 0) {
      c->pending = 0;
      return false;
    }
    batch = std::min(batch, pending);
    const int64_t t0 = now_us();
    s = c->index->absorb_pending(batch);
    took_us = now_us() - t0;
    c->pending = c->index->pending();
  }
  {
    std::lock_guard<std::mutex> lock(inserter_mu_);  // no wake-up lost by a waiting writer
  }
  drained_cv_.notify_all();
  if (!s.is_ok()) {
    spdlog::error("store: background graph insert in '{}' failed ({}); rebuilding", c->spec.name,
                  s.to_string());
    std::lock_guard<std::mutex> write_lock(c->write_mu);
    if (c->dropped) return false;
    Status r = rebuild_index(c);
    if (!r.is_ok()) spdlog::error("store: rebuilding '{}': {}", c->spec.name, r.to_string());
    return true;
  }
  if (batch == c->insert_batch) {
    // A full batch was timed: aim the next one at the slice target (moving half-way there,
    // which damps the noise of single slices).
    const double target_us = std::max(1, options_.index_insert_slice_ms) * 1000.0;
    const double per_vector = std::max(1.0, static_cast<double>(took_us) / static_cast<double>(batch));
    const int64_t want = static_cast<int64_t>(target_us / per_vector);
    c->insert_batch = std::clamp<int64_t>((c->insert_batch + want) / 2, 1, 8192);
  }
  return true;
}

void RocksCollectionStore::inserter_loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(inserter_mu_);
      inserter_cv_.wait_for(lock, std::chrono::seconds(1),
                            [this] { return stop_inserter_ || insert_work_; });
      if (stop_inserter_) return;
      insert_work_ = false;
    }
    std::vector<std::shared_ptr<CollectionState>> all;
    {
      std::shared_lock<std::shared_mutex> lock(collections_mu_);
      for (const auto& [name, c] : collections_) all.push_back(c);
    }
    // Round robin over the collections, one slice each, until none has anything pending.
    for (bool any = true; any;) {
      any = false;
      for (const auto& c : all) {
        {
          std::lock_guard<std::mutex> lock(inserter_mu_);
          if (stop_inserter_) return;
        }
        any = insert_slice(c.get()) || any;
      }
    }
  }
}

}  // namespace qsearch
