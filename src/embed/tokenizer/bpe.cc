#include "embed/tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>

#include "embed/tokenizer/unicode.h"

namespace qsearch {
namespace {

// Pieces of up to this many bytes go through the word cache; longer ones (CJK sentences,
// long identifiers) rarely repeat.
constexpr size_t kMaxCachedBytes = 96;

}  // namespace

uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (s.size() * 0xFF51AFD7ED558CCDULL);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
  }
  h ^= h >> 32;
  h *= 0x94D049BB133111EBULL;
  h ^= h >> 29;
  return h ? h : 1;
}

namespace {

// A per-thread cache of piece -> ids for one model. Cleared when full.
struct WordCache {
  static constexpr size_t kSlots = 1 << 13;  // ~200 KB per thread and tokenizer
  static constexpr size_t kMaxUsed = kSlots / 2;
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t key_off = 0, key_len = 0, ids_off = 0, ids_len = 0;
  };
  uint64_t owner = 0;
  std::vector<Slot> slots;
  std::string keys;
  std::vector<int32_t> ids;
  size_t used = 0;

  void reset(uint64_t new_owner) {
    owner = new_owner;
    slots.assign(kSlots, Slot{});
    keys.clear();
    ids.clear();
    used = 0;
  }
  // Appends the cached ids of `piece` to out; false on a miss (slot left in *where).
  bool lookup(std::string_view piece, uint64_t h, std::vector<int32_t>* out, size_t* where) const {
    size_t i = h & (kSlots - 1);
    for (;;) {
      const Slot& s = slots[i];
      if (s.hash == 0) {
        *where = i;
        return false;
      }
      if (s.hash == h && s.key_len == piece.size() &&
          std::memcmp(keys.data() + s.key_off, piece.data(), piece.size()) == 0) {
        out->insert(out->end(), ids.begin() + s.ids_off, ids.begin() + s.ids_off + s.ids_len);
        return true;
      }
      i = (i + 1) & (kSlots - 1);
    }
  }
  void insert(size_t where, std::string_view piece, uint64_t h, const int32_t* v, size_t nv) {
    if (used >= kMaxUsed) return;  // full: the caller resets before the next lookup
    Slot& s = slots[where];
    s.hash = h;
    s.key_off = static_cast<uint32_t>(keys.size());
    s.key_len = static_cast<uint32_t>(piece.size());
    s.ids_off = static_cast<uint32_t>(ids.size());
    s.ids_len = static_cast<uint32_t>(nv);
    keys.append(piece);
    ids.insert(ids.end(), v, v + nv);
    ++used;
  }
};

WordCache& cache_for(uint64_t owner) {
  // A few caches per thread, so threads alternating between tokenizers do not thrash.
  thread_local WordCache caches[4];
  thread_local size_t next_victim = 0;
  for (auto& c : caches)
    if (c.owner == owner) {
      if (c.used >= WordCache::kMaxUsed) c.reset(owner);
      return c;
    }
  WordCache& c = caches[next_victim];
  next_victim = (next_victim + 1) % 4;
  c.reset(owner);
  return c;
}

std::atomic<uint64_t> g_next_owner{1};

}  // namespace

const ByteLevelTable& ByteLevelTable::get() {
  static const ByteLevelTable table = [] {
    ByteLevelTable t{};
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t.byte_to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
      t.char_to_byte[t.byte_to_char[b]] = static_cast<uint16_t>(b + 1);
    }
    return t;
  }();
  return table;
}

bool byte_level_decode(std::string_view token, std::string* bytes) {
  const ByteLevelTable& t = ByteLevelTable::get();
  bytes->clear();
  size_t i = 0;
  while (i < token.size()) {
    size_t len;
    char32_t cp = unicode::decode_utf8(token.data(), i, &len);
    if (cp >= 0x144 || t.char_to_byte[cp] == 0) return false;
    bytes->push_back(static_cast<char>(t.char_to_byte[cp] - 1));
    i += len;
  }
  return true;
}

std::string byte_level_encode(std::string_view bytes) {
  const ByteLevelTable& t = ByteLevelTable::get();
  std::string out;
  for (unsigned char b : bytes) unicode::append_utf8(t.byte_to_char[b], &out);
  return out;
}

void StringIdMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap > slots_.size()) rehash(cap);
}

void StringIdMap::rehash(size_t cap) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  for (const Slot& s : old) {
    if (s.hash == 0) continue;
    size_t i = s.hash & mask_;
    while (slots_[i].hash != 0) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void StringIdMap::insert(std::string_view key, int32_t id) {
  if ((size_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(16, slots_.size() * 2));
  uint64_t h = hash_bytes(key);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.hash == h && s.len == key.size() && arena_.compare(s.off, s.len, key) == 0) {
      s.id = id;
      return;
    }
    if (s.hash == 0) {
      s = {h, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), id};
      arena_.append(key);
      ++size_;
      return;
    }
  }
}

void MergeMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64 - __builtin_ctzll(cap);
  size_ = 0;
  for (const Slot& s : old)
    if (s.key != kEmpty) insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key), s.value);
}

void MergeMap::grow() { reserve(std::max<size_t>(16, slots_.size())); }

void MergeMap::insert(int32_t left, int32_t right, Value v) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  uint64_t key = make_key(left, right);
  size_t i = hash(key);
  for (;;) {
    Slot& s = slots_[i];
    if (s.key == key) {
      s.value = v;
      return;
    }
    if (s.key == kEmpty) {
      s.key = key;
      s.value = v;
      ++size_;
      return;
    }
    i = (i + 1) & mask_;
  }
}

BpeModel::BpeModel() : cache_owner_(g_next_owner.fetch_add(1)) {
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), 0);
}

void BpeModel::set_byte_ids(const int32_t ids[256]) { std::copy(ids, ids + 256, byte_ids_); }

void BpeModel::merge_linear(std::string_view piece, std::vector<int32_t>* out) const {
  const size_t n = piece.size();
  int32_t ids[kLinearMaxBytes], rank[kLinearMaxBytes], merged[kLinearMaxBytes];
  if (n > BpeModel::kLinearMaxBytes) {
    merge_heap(piece, out);
    return;
  }
  for (size_t i = 0; i < n; ++i) ids[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
  auto pair_rank = [&](size_t i) {
    const MergeMap::Value* v = merges_.find(ids[i], ids[i + 1]);
    if (v) {
      rank[i] = v->rank;
      merged[i] = v->id;
    } else {
      rank[i] = INT32_MAX;
    }
  };
  size_t m = n;
  for (size_t i = 0; i + 1 < m; ++i) pair_rank(i);
  while (m > 1) {
    int32_t best = INT32_MAX;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < m; ++i)
      if (rank[i] < best) {
        best = rank[i];
        bi = i;
      }
    if (best == INT32_MAX) break;
    ids[bi] = merged[bi];
    for (size_t i = bi + 1; i + 1 < m; ++i) {
      ids[i] = ids[i + 1];
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --m;
    if (bi > 0) pair_rank(bi - 1);
    if (bi + 1 < m) pair_rank(bi);
  }
  out->insert(out->end(), ids, ids + m);
}

void BpeModel::merge_heap(std::string_view piece, std::vector<int32_t>* out) const {
  struct Sym {
    int32_t id, prev, next, alive;
  };
  struct Item {
    int32_t rank, pos, id;
  };
  // Min-heap on (rank, pos): the comparator says "a after b".
  auto later = [](const Item& a, const Item& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Item> heap;
  const int32_t n = static_cast<int32_t>(piece.size());
  syms.resize(static_cast<size_t>(n));
  heap.clear();
  for (int32_t i = 0; i < n; ++i)
    syms[i] = {byte_ids_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, 1};
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const MergeMap::Value* v = merges_.find(syms[i].id, syms[i + 1].id))
      heap.push_back({v->rank, i, v->id});
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Item top = heap.back();
    heap.pop_back();
    Sym& s = syms[top.pos];
    if (!s.alive || s.next < 0) continue;
    Sym& r = syms[s.next];
    const MergeMap::Value* cur = merges_.find(s.id, r.id);
    if (!cur || cur->id != top.id) continue;  // stale entry: the pair has changed since
    s.id = top.id;
    r.alive = 0;
    s.next = r.next;
    if (s.next >= 0) syms[s.next].prev = top.pos;
    if (s.prev >= 0)
      if (const MergeMap::Value* v = merges_.find(syms[s.prev].id, s.id)) {
        heap.push_back({v->rank, s.prev, v->id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    if (s.next >= 0)
      if (const MergeMap::Value* v = merges_.find(s.id, syms[s.next].id)) {
        heap.push_back({v->rank, top.pos, v->id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
  }
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) out->push_back(syms[i].id);
}

void BpeModel::encode_word(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.size() == 1) {
    out->push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedBytes) {
    merge_heap(piece, out);
    return;
  }
  WordCache& cache = cache_for(cache_owner_);
  uint64_t h = hash_bytes(piece);
  size_t where;
  if (cache.lookup(piece, h, out, &where)) return;
  size_t before = out->size();
  if (piece.size() <= BpeModel::kLinearMaxBytes)
    merge_linear(piece, out);
  else
    merge_heap(piece, out);
  cache.insert(where, piece, h, out->data() + before, out->size() - before);
}

}  // namespace qsearch
