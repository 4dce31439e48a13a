// Keys (ordering, ranges, parsing), record codecs, and the RocksDB wrapper.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "store/keys.h"
#include "store/kv_store.h"
#include "store/record.h"

namespace qsearch::store {
namespace {

std::string temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "qsearch-store-XXXXXX").string();
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

TEST(Keys, BigEndianRoundTripAndOrder) {
  std::vector<uint64_t> values = {0, 1, 255, 256, 65535, 1ULL << 32, (1ULL << 63) - 1, UINT64_MAX};
  std::string prev;
  for (uint64_t v : values) {
    std::string s;
    put_u64_be(&s, v);
    ASSERT_EQ(s.size(), 8u);
    EXPECT_EQ(get_u64_be(s), v);
    if (!prev.empty()) {
      EXPECT_LT(prev, s) << v;  // byte order == numeric order
    }
    prev = s;
  }
  std::string s;
  put_i64_be(&s, 123456789012345);
  EXPECT_EQ(get_i64_be(s), 123456789012345);
}

TEST(Keys, LabelsAndSequencesSortNumerically) {
  std::vector<int64_t> labels = {0, 1, 2, 255, 256, 70000, 1LL << 40};
  for (size_t i = 1; i < labels.size(); ++i) {
    EXPECT_LT(label_key(7, labels[i - 1]), label_key(7, labels[i]));
    EXPECT_LT(changelog_key(7, labels[i - 1]), changelog_key(7, labels[i]));
  }
  // Collection id dominates: every key of collection 7 sorts before any of collection 8.
  EXPECT_LT(label_key(7, 1LL << 40), label_key(8, 0));
  EXPECT_LT(document_key(255, "\xff\xff\xff"), document_key(256, ""));
}

TEST(Keys, CollectionRangesContainExactlyTheirKeys) {
  const std::string b = collection_range_begin(KeyPrefix::kDocument, 5);
  const std::string e = collection_range_end(KeyPrefix::kDocument, 5);
  for (const char* id : {"", "a", "zzz", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"}) {
    const std::string k = document_key(5, id);
    EXPECT_LE(b, k);
    EXPECT_LT(k, e);
  }
  EXPECT_LT(document_key(4, "\xff\xff"), b);
  EXPECT_GE(document_key(6, ""), e);
  EXPECT_GE(label_key(5, 0), e);  // another prefix is outside the range
  EXPECT_LT(spec_key(UINT64_MAX), prefix_end(KeyPrefix::kSpec));
  EXPECT_LE(prefix_begin(KeyPrefix::kSpec), spec_key(0));
  EXPECT_LT(counter_key(1, CounterKind::kNextLabel), counter_key(1, CounterKind::kDocuments));
}

TEST(Keys, ParsersReadBackAndRejectOtherShapes) {
  uint64_t cid = 0, seq = 0;
  std::string id;
  ASSERT_TRUE(parse_document_key(document_key(42, "doc/1"), &cid, &id));
  EXPECT_EQ(cid, 42u);
  EXPECT_EQ(id, "doc/1");
  ASSERT_TRUE(parse_changelog_key(changelog_key(9, 77), &cid, &seq));
  EXPECT_EQ(cid, 9u);
  EXPECT_EQ(seq, 77u);
  ASSERT_TRUE(parse_spec_key(spec_key(3), &cid));
  EXPECT_EQ(cid, 3u);
  EXPECT_FALSE(parse_document_key(label_key(1, 2), &cid, &id));
  EXPECT_FALSE(parse_changelog_key(changelog_key(1, 2).substr(0, 10), &cid, &seq));
  EXPECT_FALSE(parse_spec_key(document_key(1, "x"), &cid));
}

DocumentRecord sample_record() {
  DocumentRecord r;
  r.label = 1234567890123;
  r.tokens = 77;
  r.truncated_tokens = 5;
  r.text = std::string("h\xc3\xa9llo\0world", 12);
  r.metadata_json = R"({"a":1,"b":"x"})";
  r.embedding = {0.5f, -1.25f, 3e-8f, 1e30f};
  return r;
}

TEST(Record, DocumentRoundTrip) {
  const DocumentRecord r = sample_record();
  const std::string bytes = encode_document(r);
  DocumentRecord out;
  ASSERT_TRUE(decode_document(bytes, &out).is_ok());
  EXPECT_EQ(out.label, r.label);
  EXPECT_EQ(out.tokens, r.tokens);
  EXPECT_EQ(out.truncated_tokens, r.truncated_tokens);
  EXPECT_EQ(out.text, r.text);
  EXPECT_EQ(out.metadata_json, r.metadata_json);
  EXPECT_EQ(out.embedding, r.embedding);
}

TEST(Record, PartialDecodeSkipsParts) {
  const std::string bytes = encode_document(sample_record());
  DocumentRecord out;
  out.text = "untouched";
  ASSERT_TRUE(decode_document(bytes, &out, kPartEmbedding).is_ok());
  EXPECT_EQ(out.label, 1234567890123);
  EXPECT_EQ(out.text, "untouched");
  EXPECT_EQ(out.embedding.size(), 4u);
}

TEST(Record, DamagedRecordsAreCorruption) {
  const std::string bytes = encode_document(sample_record());
  DocumentRecord out;
  for (size_t cut : {size_t{0}, size_t{1}, size_t{9}, bytes.size() / 2, bytes.size() - 1}) {
    Status s = decode_document(bytes.substr(0, cut), &out);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << "cut at " << cut;
  }
  EXPECT_EQ(decode_document(bytes + "x", &out).code(), StatusCode::kCorruption);
  std::string bad_version = bytes;
  bad_version[0] = 9;
  EXPECT_EQ(decode_document(bad_version, &out).code(), StatusCode::kCorruption);
}

TEST(Record, ChunkedDocumentRoundTripAndDamage) {
  DocumentRecord r = sample_record();
  r.embedding = {1, 2, 3, 4, 5, 6};  // three chunks of dimension 2
  r.chunks = {{0, 10, 5}, {8, 20, 6}, {18, 25, 3}};
  const std::string bytes = encode_document(r);
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]), kChunkedDocumentRecordVersion);
  EXPECT_EQ(static_cast<uint8_t>(encode_document(sample_record())[0]), kDocumentRecordVersion);
  DocumentRecord out;
  ASSERT_TRUE(decode_document(bytes, &out).is_ok());
  EXPECT_EQ(out.embedding, r.embedding);
  ASSERT_EQ(out.chunks.size(), 3u);
  EXPECT_EQ(out.chunks[1].start, 8);
  EXPECT_EQ(out.chunks[1].end, 20);
  EXPECT_EQ(out.chunks[2].tokens, 3);
  EXPECT_EQ(out.label_count(), 3);
  EXPECT_TRUE(out.owns(r.label + 2));
  EXPECT_FALSE(out.owns(r.label + 3));
  // The chunks are decoded with the label alone (search needs them without the text).
  DocumentRecord label_only;
  ASSERT_TRUE(decode_document(bytes, &label_only, kPartLabel).is_ok());
  EXPECT_EQ(label_only.chunks.size(), 3u);
  EXPECT_TRUE(label_only.embedding.empty());
  // A record read after a plain one does not keep the old chunks.
  ASSERT_TRUE(decode_document(encode_document(sample_record()), &label_only).is_ok());
  EXPECT_TRUE(label_only.chunks.empty());
  for (size_t cut : {bytes.size() - 1, bytes.size() - 12, bytes.size() - 16}) {
    EXPECT_EQ(decode_document(bytes.substr(0, cut), &out).code(), StatusCode::kCorruption) << cut;
  }
  DocumentRecord mismatch = r;
  mismatch.chunks.push_back({25, 30, 1});  // 4 chunks for 6 values
  EXPECT_EQ(decode_document(encode_document(mismatch), &out).code(), StatusCode::kCorruption);
  std::string zero_chunks = encode_document(sample_record());
  zero_chunks[0] = static_cast<char>(kChunkedDocumentRecordVersion);
  zero_chunks.append(4, '\0');
  EXPECT_EQ(decode_document(zero_chunks, &out).code(), StatusCode::kCorruption);
}

TEST(Record, ChangeRoundTripAndValidation) {
  ChangeRecord c{ChangeOp::kRemove, 99};
  ChangeRecord out;
  ASSERT_TRUE(decode_change(encode_change(c), &out).is_ok());
  EXPECT_EQ(out.op, ChangeOp::kRemove);
  EXPECT_EQ(out.label, 99);
  std::string bad = encode_change(c);
  bad[0] = 3;
  EXPECT_EQ(decode_change(bad, &out).code(), StatusCode::kCorruption);
  EXPECT_EQ(decode_change(bad.substr(0, 5), &out).code(), StatusCode::kCorruption);
}

TEST(KvStore, BatchesGetsScansAndRangeDeletesPersist) {
  const std::string dir = temp_dir();
  {
    auto kv = KvStore::open({dir, false, true});
    ASSERT_TRUE(kv.is_ok()) << kv.status().to_string();
    WriteBatch b;
    for (int i = 0; i < 10; ++i) b.put(label_key(1, i), "id" + std::to_string(i));
    b.put(label_key(2, 0), "other");
    EXPECT_EQ(b.count(), 11);
    ASSERT_TRUE((*kv)->write(&b).is_ok());
    std::string v;
    ASSERT_TRUE((*kv)->get(label_key(1, 3), &v).is_ok());
    EXPECT_EQ(v, "id3");
    EXPECT_EQ((*kv)->get(label_key(1, 10), &v).code(), StatusCode::kNotFound);
    std::vector<std::optional<std::string>> values;
    ASSERT_TRUE((*kv)->multi_get({label_key(1, 9), label_key(3, 0), label_key(2, 0)}, &values).is_ok());
    ASSERT_EQ(values.size(), 3u);
    EXPECT_EQ(values[0].value_or(""), "id9");
    EXPECT_FALSE(values[1].has_value());
    EXPECT_EQ(values[2].value_or(""), "other");
    // Range delete of collection 1's labels 3..5, in one batch with a put.
    WriteBatch d;
    d.delete_range(label_key(1, 3), label_key(1, 6));
    d.put(label_key(1, 100), "id100");
    ASSERT_TRUE((*kv)->write(&d, true).is_ok());
  }
  auto kv = KvStore::open({dir, true, false});
  ASSERT_TRUE(kv.is_ok()) << kv.status().to_string();
  std::vector<std::string> seen;
  ASSERT_TRUE((*kv)->scan(collection_range_begin(KeyPrefix::kLabel, 1),
                          collection_range_end(KeyPrefix::kLabel, 1),
                          [&](std::string_view, std::string_view v) {
                            seen.emplace_back(v);
                            return true;
                          })
                  .is_ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"id0", "id1", "id2", "id6", "id7", "id8", "id9", "id100"}));
  // Early stop.
  int visited = 0;
  ASSERT_TRUE((*kv)->scan(prefix_begin(KeyPrefix::kLabel), prefix_end(KeyPrefix::kLabel),
                          [&](std::string_view, std::string_view) { return ++visited < 2; })
                  .is_ok());
  EXPECT_EQ(visited, 2);
  std::filesystem::remove_all(dir);
}

TEST(KvStore, OpenErrorsAreClear) {
  const std::string dir = temp_dir();
  auto missing = KvStore::open({dir + "/none", false, false});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("opening RocksDB"), std::string::npos);
  auto first = KvStore::open({dir + "/db", false, true});
  ASSERT_TRUE(first.is_ok());
  auto second = KvStore::open({dir + "/db", false, true});  // LOCK held by the first
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIOError) << second.status().to_string();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch::store
