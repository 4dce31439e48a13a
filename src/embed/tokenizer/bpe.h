// Byte-level BPE by merge rank, as the BPE model of Hugging Face tokenizers applies it: start
// from one token per byte, repeatedly merge the adjacent pair of lowest merge rank (leftmost
// first among equal ranks) until no adjacent pair has a merge.
//
// Works on raw bytes: the ByteLevel byte->unicode mapping is folded into the tables at load
// time (each vocabulary token is stored as the bytes it stands for).
//
// Thread safety: immutable after load; encode_word() may be called from many threads (each
// thread has its own word cache).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace qsearch {

// The GPT-2 byte <-> unicode table of the ByteLevel pre-tokenizer/decoder.
struct ByteLevelTable {
  char32_t byte_to_char[256];
  // Code points 0..0x143 -> byte + 1, 0 where the code point is not a byte-level character.
  uint16_t char_to_byte[0x144];
  static const ByteLevelTable& get();
};

// Raw bytes of a byte-level token string; false when a character is not byte-level.
bool byte_level_decode(std::string_view token, std::string* bytes);
// Byte-level string of raw bytes.
std::string byte_level_encode(std::string_view bytes);

// A fast 64-bit hash of a byte string (never 0).
uint64_t hash_bytes(std::string_view s);

// string -> id, open addressing over an arena of the keys; far faster to build and probe than
// std::unordered_map for the 151k-token vocabulary.
class StringIdMap {
 public:
  void reserve(size_t n);
  // Later inserts of the same key replace the id.
  void insert(std::string_view key, int32_t id);
  // -1 when absent.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    uint64_t h = hash_bytes(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return -1;
      if (s.hash == h && s.len == key.size() && arena_.compare(s.off, s.len, key) == 0) return s.id;
    }
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t off = 0, len = 0;
    int32_t id = 0;
  };
  void rehash(size_t cap);
  std::string arena_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// pair (left id, right id) -> (rank, merged id), open addressing.
class MergeMap {
 public:
  struct Value {
    int32_t rank;
    int32_t id;
  };
  void reserve(size_t n);
  // Later entries for the same pair replace earlier ones (as HF's HashMap collect does).
  void insert(int32_t left, int32_t right, Value v);
  // nullptr when the pair has no merge.
  const Value* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    uint64_t key = make_key(left, right);
    size_t i = hash(key);
    for (;;) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ULL;
  struct Slot {
    uint64_t key = kEmpty;
    Value value{0, 0};
  };
  static uint64_t make_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t hash(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ULL) >> shift_; }
  void grow();
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

class BpeModel {
 public:
  BpeModel();
  // id of the token for each single byte (all 256 must exist).
  void set_byte_ids(const int32_t ids[256]);
  MergeMap& merges() { return merges_; }
  const MergeMap& merges() const { return merges_; }

  // Appends the ids of one pre-tokenized piece (raw bytes, non-empty), using the thread's
  // word cache for short pieces.
  void encode_word(std::string_view piece, std::vector<int32_t>* out) const;

  // The two merge loops, exposed for tests (they must agree): a linear scan for words of up
  // to kLinearMaxBytes bytes and a heap over a linked list for longer ones (n log n:
  // 3000-byte words stay fast).
  static constexpr size_t kLinearMaxBytes = 32;
  void merge_linear(std::string_view piece, std::vector<int32_t>* out) const;
  void merge_heap(std::string_view piece, std::vector<int32_t>* out) const;

 private:
  int32_t byte_ids_[256];
  MergeMap merges_;
  uint64_t cache_owner_;  // unique per model: keys the thread-local word caches
};

}  // namespace qsearch
