// A small RocksDB wrapper: the only place qsearch talks to RocksDB directly, so RocksDB headers
// stay out of every other header (pimpl).
//
// Durability: the write-ahead log is always on. write() returns OK once RocksDB has the batch in
// its WAL (in the OS page cache; a process kill loses nothing); with KvOptions::sync the WAL is
// also fsync'd before write() returns (a power loss loses nothing either).
// Atomicity: one WriteBatch is applied entirely or not at all, also across a crash.
// Concurrency: KvStore is safe for concurrent use from many threads (as rocksdb::DB is).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace qsearch::store {

struct KvOptions {
  std::string path;               // directory of the RocksDB database (created when missing)
  bool sync = false;              // fsync the WAL before write() returns (WriteOptions::sync)
  bool create_if_missing = true;  // create an empty database when `path` has none
};

// A set of changes applied atomically by KvStore::write(). Not thread-safe.
class WriteBatch {
 public:
  WriteBatch();
  ~WriteBatch();
  WriteBatch(WriteBatch&&) noexcept;
  WriteBatch& operator=(WriteBatch&&) noexcept;

  void put(std::string_view key, std::string_view value);
  void del(std::string_view key);
  // Removes every key in [begin, end).
  void delete_range(std::string_view begin, std::string_view end);
  int count() const;  // operations so far
  void clear();

 private:
  friend class KvStore;
  std::unique_ptr<rocksdb::WriteBatch> batch_;
};

class KvStore {
 public:
  static StatusOr<std::unique_ptr<KvStore>> open(const KvOptions& options);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  // kNotFound when the key is absent.
  Status get(std::string_view key, std::string* value) const;
  // One lookup per key; (*values)[i] is nullopt where keys[i] is absent.
  Status multi_get(const std::vector<std::string>& keys,
                   std::vector<std::optional<std::string>>* values) const;
  // Applies the batch atomically; acknowledged once it is in the WAL (fsync'd when sync).
  Status write(WriteBatch* batch);
  // As write(), with an explicit sync choice (e.g. unsynced housekeeping like log trimming).
  Status write(WriteBatch* batch, bool sync);
  // Visits keys in [begin, end) in order; fn returns false to stop early.
  Status scan(std::string_view begin, std::string_view end,
              const std::function<bool(std::string_view key, std::string_view value)>& fn) const;
  // RocksDB's latest sequence number (for logs and diagnostics).
  uint64_t latest_sequence() const;
  const KvOptions& options() const { return options_; }

 private:
  KvStore(KvOptions options, rocksdb::DB* db);
  KvOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace qsearch::store
