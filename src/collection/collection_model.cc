// The model identity of a collection and its re-embed record (collection_store.h): which model
// the stored vectors come from, changed only when a re-embed finishes (set_model) or when an
// identity of the older formula is recognised at open (upgrade_model_identity).
#include <spdlog/spdlog.h>

#include "collection/collection_store.h"
#include "store/keys.h"

namespace qsearch {

Status collection_replaced(const std::string& name) {
  return conflict("collection '" + name +
                  "' was deleted (or deleted and re-created) while this write ran; the write is "
                  "bound to the collection it started on, so nothing more was written");
}

StatusOr<std::shared_ptr<CollectionState>> RocksCollectionStore::find_instance(
    const std::string& name, uint64_t instance) const {
  auto c = find(name);
  if (instance != 0 && (!c || c->id != instance)) return collection_replaced(name);
  if (!c) return not_found("collection '" + name + "' not found");
  return c;
}

StatusOr<std::optional<std::string>> RocksCollectionStore::reembed_record(
    const std::string& collection) {
  QS_ASSIGN_OR_RETURN(auto c, find_instance(collection, 0));
  std::string value;
  Status s = kv_->get(store::reembed_key(c->id), &value);
  if (s.code() == StatusCode::kNotFound) return std::optional<std::string>();
  QS_RETURN_IF_ERROR(s);
  return std::optional<std::string>(std::move(value));
}

Status RocksCollectionStore::set_reembed_record(const std::string& collection, uint64_t instance,
                                                const std::optional<std::string>& record) {
  QS_ASSIGN_OR_RETURN(auto c, find_instance(collection, instance));
  std::lock_guard<std::mutex> write_lock(c->write_mu);
  if (c->dropped) return collection_replaced(collection);
  store::WriteBatch batch;
  if (record)
    batch.put(store::reembed_key(c->id), *record);
  else
    batch.del(store::reembed_key(c->id));
  return kv_->write(&batch);
}

Status RocksCollectionStore::set_model(const std::string& collection, uint64_t instance,
                                       const std::string& model) {
  QS_ASSIGN_OR_RETURN(auto c, find_instance(collection, instance));
  std::lock_guard<std::mutex> write_lock(c->write_mu);
  if (c->dropped) return collection_replaced(collection);
  CollectionSpec spec = c->spec;
  spec.model = model;
  store::WriteBatch batch;
  batch.put(store::spec_key(c->id), spec.to_json().dump());
  batch.del(store::reembed_key(c->id));
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  c->set_model(model);
  return Status::ok();
}

Status RocksCollectionStore::upgrade_model_identity(CollectionState* c) {
  const std::string& legacy = options_.legacy_model;
  if (legacy.empty() || options_.model.empty() || legacy == options_.model) return Status::ok();
  if (c->model() != legacy) return Status::ok();
  CollectionSpec spec = c->spec;
  spec.model = options_.model;
  store::WriteBatch batch;
  batch.put(store::spec_key(c->id), spec.to_json().dump());
  QS_RETURN_IF_ERROR(kv_->write(&batch).with_context("upgrading the model identity"));
  c->spec.model = options_.model;
  c->set_model(options_.model);
  spdlog::info("store: collection '{}': model identity {} (older formula: file names and sizes) "
               "upgraded to {} (the weights' contents)",
               c->spec.name, legacy, options_.model);
  return Status::ok();
}

}  // namespace qsearch
