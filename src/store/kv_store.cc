#include "store/kv_store.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <filesystem>

namespace qsearch::store {
namespace {

Status from_rocksdb(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::ok();
  std::string msg = what + ": rocksdb: " + s.ToString();
  if (s.IsNotFound()) return not_found(msg);
  if (s.IsCorruption()) return corruption(msg);
  if (s.IsIOError()) return io_error(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return unavailable(msg);
  if (s.IsInvalidArgument()) return invalid_argument(msg);
  return internal_error(msg);
}

rocksdb::Slice slice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

}  // namespace

WriteBatch::WriteBatch() : batch_(std::make_unique<rocksdb::WriteBatch>()) {}
WriteBatch::~WriteBatch() = default;
WriteBatch::WriteBatch(WriteBatch&&) noexcept = default;
WriteBatch& WriteBatch::operator=(WriteBatch&&) noexcept = default;

void WriteBatch::put(std::string_view key, std::string_view value) {
  batch_->Put(slice(key), slice(value)).PermitUncheckedError();
}
void WriteBatch::del(std::string_view key) { batch_->Delete(slice(key)).PermitUncheckedError(); }
void WriteBatch::delete_range(std::string_view begin, std::string_view end) {
  batch_->DeleteRange(slice(begin), slice(end)).PermitUncheckedError();
}
int WriteBatch::count() const { return static_cast<int>(batch_->Count()); }
void WriteBatch::clear() { batch_->Clear(); }

KvStore::KvStore(KvOptions options, rocksdb::DB* db) : options_(std::move(options)), db_(db) {}

KvStore::~KvStore() {
  if (db_) {
    // Closing flushes nothing we rely on (the WAL already has every acknowledged write), but
    // Close() reports errors that the destructor would swallow silently.
    db_->Close().PermitUncheckedError();
  }
}

StatusOr<std::unique_ptr<KvStore>> KvStore::open(const KvOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) return io_error("creating " + options.path + ": " + ec.message());
  rocksdb::Options opts;
  opts.create_if_missing = options.create_if_missing;
  opts.paranoid_checks = true;
  // Point-in-time recovery: after a crash replay the WAL up to the first damaged record; the
  // default mode would refuse to open on a torn final record of an unsynced WAL.
  opts.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  opts.keep_log_file_num = 10;
  // Upserts look up every id first (replace or insert); new ids are misses, which bloom
  // filters answer without reading data blocks.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(opts, options.path, &db);
  if (!s.ok()) return from_rocksdb(s, "opening RocksDB at " + options.path);
  return std::unique_ptr<KvStore>(new KvStore(options, db));
}

Status KvStore::get(std::string_view key, std::string* value) const {
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), slice(key), value);
  if (s.IsNotFound()) return not_found("key not found");
  return from_rocksdb(s, "get");
}

Status KvStore::multi_get(const std::vector<std::string>& keys,
                          std::vector<std::optional<std::string>>* values) const {
  values->assign(keys.size(), std::nullopt);
  if (keys.empty()) return Status::ok();
  std::vector<rocksdb::Slice> slices;
  slices.reserve(keys.size());
  for (const auto& k : keys) slices.emplace_back(k);
  std::vector<std::string> out;
  std::vector<rocksdb::Status> statuses = db_->MultiGet(rocksdb::ReadOptions(), slices, &out);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      (*values)[i] = std::move(out[i]);
    } else if (!statuses[i].IsNotFound()) {
      return from_rocksdb(statuses[i], "multi_get");
    }
  }
  return Status::ok();
}

Status KvStore::write(WriteBatch* batch) { return write(batch, options_.sync); }

Status KvStore::write(WriteBatch* batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  wo.disableWAL = false;
  return from_rocksdb(db_->Write(wo, batch->batch_.get()), "write");
}

Status KvStore::scan(std::string_view begin, std::string_view end,
                     const std::function<bool(std::string_view, std::string_view)>& fn) const {
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper = slice(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(slice(begin)); it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key(), v = it->value();
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
  }
  return from_rocksdb(it->status(), "scan");
}

uint64_t KvStore::latest_sequence() const { return db_->GetLatestSequenceNumber(); }

}  // namespace qsearch::store
