#include "loadgen/ledger.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace longlink::loadgen {
namespace {

constexpr uint64_t kMaxSeq = 0xffffffffu;

// Bits [lo, hi] of a word (0 <= lo <= hi <= 63).
uint64_t BitRange(uint64_t lo, uint64_t hi) {
  uint64_t upper = hi == 63 ? ~uint64_t{0} : (uint64_t{1} << (hi + 1)) - 1;
  return upper & ~((uint64_t{1} << lo) - 1);
}

template <typename Map>
size_t HashBytes(const Map& m) {
  // One control byte per slot, plus the sentinel and a cloned group.
  return m.capacity() * (sizeof(typename Map::value_type) + 1) + (m.capacity() ? 17 : 0);
}

template <typename T>
size_t DequeBytes(const std::deque<T>& d) {
  // libstdc++ stores deque elements in 512-byte blocks and keeps one pointer per block in its map.
  constexpr size_t kPerBlock = sizeof(T) < 512 ? 512 / sizeof(T) : 1;
  size_t blocks = d.size() / kPerBlock + 1;
  return blocks * (kPerBlock * sizeof(T) + sizeof(void*));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Sender side

bool LedgerShard::SetBit(SenderState& s, uint32_t seq, int which) {
  uint64_t b = seq - 1;
  uint64_t* word;
  if (b < 64) {
    word = which == 0 ? &s.sent0 : &s.acked0;
  } else {
    if (s.more == kNone) {
      s.more = static_cast<uint32_t>(bits_.size());
      bits_.emplace_back();
    }
    std::vector<uint64_t>& v = bits_[s.more];
    size_t index = 2 * (b / 64 - 1) + which;
    // Sized in {sent, acked} pairs; vector growth keeps this amortized O(1).
    if (index >= v.size()) v.resize(index + 2 - which, 0);
    word = &v[index];
  }
  uint64_t bit = uint64_t{1} << (b % 64);
  if (*word & bit) return false;
  *word |= bit;
  return true;
}

uint64_t LedgerShard::AckedWord(const SenderState& s, uint64_t word) const {
  if (word == 0) return s.acked0;
  if (s.more == kNone) return 0;
  const std::vector<uint64_t>& v = bits_[s.more];
  uint64_t index = 2 * (word - 1) + 1;
  return index < v.size() ? v[index] : 0;
}

bool LedgerShard::IsAcked(const SenderState& s, uint32_t seq) const {
  uint64_t b = seq - 1;
  return (AckedWord(s, b / 64) >> (b % 64)) & 1;
}

uint64_t LedgerShard::AckedWindow(const SenderState& s, uint64_t first_seq) const {
  uint64_t b = first_seq - 1;
  uint64_t off = b % 64;
  uint64_t w = AckedWord(s, b / 64) >> off;
  if (off != 0) w |= AckedWord(s, b / 64 + 1) << (64 - off);
  return w;
}

uint64_t LedgerShard::CountAcked(const SenderState& s, uint64_t lo, uint64_t hi) const {
  if (lo > hi) return 0;
  uint64_t w0 = (lo - 1) / 64;
  uint64_t w1 = (hi - 1) / 64;
  if (w0 == w1) return std::popcount(AckedWord(s, w0) & BitRange((lo - 1) % 64, (hi - 1) % 64));
  uint64_t n = std::popcount(AckedWord(s, w0) & BitRange((lo - 1) % 64, 63));
  // Words past the allocated ones are zero: stop there rather than walk a huge empty range.
  uint64_t allocated = s.more == kNone ? 1 : 1 + bits_[s.more].size() / 2;
  uint64_t mid_end = std::min(w1, allocated);
  for (uint64_t w = w0 + 1; w < mid_end; ++w) n += std::popcount(AckedWord(s, w));
  n += std::popcount(AckedWord(s, w1) & BitRange(0, (hi - 1) % 64));
  return n;
}

void LedgerShard::Sent(uint64_t msg_id) {
  uint32_t seq = MessageSeq(msg_id);
  if (seq == 0) {
    ++counters_.invalid_ids;
    return;
  }
  if (SetBit(senders_[MessageSender(msg_id)], seq, 0)) ++counters_.sent;
}

void LedgerShard::Acked(uint64_t msg_id, std::span<const uint32_t> recipients) {
  uint32_t sender = MessageSender(msg_id);
  uint32_t seq = MessageSeq(msg_id);
  if (seq == 0) {
    ++counters_.invalid_ids;
    return;
  }
  SenderState& s = senders_[sender];
  if (!SetBit(s, seq, 1)) {
    ++counters_.duplicate_acks;
    return;
  }
  ++counters_.acked;
  if (SetBit(s, seq, 0)) ++counters_.sent;

  scratch_.assign(recipients.begin(), recipients.end());
  std::sort(scratch_.begin(), scratch_.end());
  scratch_.erase(std::unique(scratch_.begin(), scratch_.end()), scratch_.end());
  size_t n = scratch_.size();
  counters_.expected_deliveries += n;
  if (n == 0) return;

  constexpr size_t kMaxField = 0xffff;
  if (n <= kMaxField && s.last_run != kNone) {
    AckRun& last = runs_[s.last_run];
    bool same = last.n == n &&
                (n == 1 ? last.recipients == scratch_[0]
                        : std::memcmp(&recipient_pool_[last.recipients], scratch_.data(), n * sizeof(uint32_t)) == 0);
    if (same && last.count < kMaxField && uint64_t{last.first_seq} + last.count == seq) {
      ++last.count;
      return;
    }
  }
  // A set wider than the 16-bit field is split into runs of disjoint recipients; such runs are never
  // extended (last_run forgets them).
  for (size_t begin = 0; begin < n; begin += kMaxField) {
    size_t width = std::min(kMaxField, n - begin);
    AckRun run{sender, seq, 0, 1, static_cast<uint16_t>(width)};
    if (width == 1) {
      run.recipients = scratch_[begin];
    } else {
      run.recipients = static_cast<uint32_t>(recipient_pool_.size());
      recipient_pool_.insert(recipient_pool_.end(), scratch_.begin() + begin, scratch_.begin() + begin + width);
    }
    runs_.push_back(run);
  }
  s.last_run = n <= kMaxField ? static_cast<uint32_t>(runs_.size() - 1) : kNone;
}

// ---------------------------------------------------------------------------------------------------
// Recipient side

bool LedgerShard::Delivered(uint32_t recipient, uint64_t msg_id) {
  uint32_t sender = MessageSender(msg_id);
  uint32_t seq = MessageSeq(msg_id);
  if (seq == 0) {
    ++counters_.invalid_ids;
    return false;
  }
  auto [it, inserted] = pairs_.try_emplace(PairKey(recipient, sender), PairState{seq, 0});
  if (inserted) {
    ++counters_.delivered_unique;
    return true;
  }
  PairState& pair = it->second;
  bool first = (pair.aux & kDenseFlag) != 0 ? DeliverDense(recipient, sender, pair, dense_[pair.aux & ~kDenseFlag], seq)
                                            : DeliverSparse(recipient, sender, pair, seq);
  if (!first) {
    ++counters_.duplicates;
    return false;
  }
  ++counters_.delivered_unique;
  if (seq < pair.highest) {
    ++counters_.out_of_order;
  } else {
    pair.highest = seq;
  }
  return true;
}

bool LedgerShard::DeliverSparse(uint32_t recipient, uint32_t sender, PairState& pair, uint32_t seq) {
  uint32_t highest = pair.highest;
  if (seq == highest) return false;
  uint32_t spilled = pair.aux;
  if (spilled > 0 && Spilled(recipient, sender, seq)) return false;
  uint32_t lo = std::min(seq, highest);
  uint32_t hi = std::max(seq, highest);
  if (hi - lo >= kWindow) {
    // Isolated seqs: the pair keeps its highest in place and everything else here.
    spill_.insert(SpillKey{recipient, sender, seq > highest ? highest : seq});
    pair.aux = spilled + 1;
    return true;
  }
  // Two seqs close together: this pair is a stream, its window starting at the lower one. Every spilled
  // seq lies below that: it was spilled for being at least kWindow below a highest of the pair.
  DenseState d;
  d.run_lo = lo;
  d.run_hi = lo - 1;
  d.window = 1 | uint64_t{1} << (hi - lo);
  d.below = spilled;
  pair.aux = kDenseFlag | static_cast<uint32_t>(dense_.size());
  dense_.push_back(d);
  PullBelow(recipient, sender, dense_.back());
  Advance(recipient, sender, dense_.back());
  return true;
}

bool LedgerShard::DeliverDense(uint32_t recipient, uint32_t sender, const PairState& pair, DenseState& d,
                               uint32_t seq) {
  if (seq < d.run_lo) {
    if (d.below > 0 && Spilled(recipient, sender, seq)) return false;
    if (seq + 1 == d.run_lo) {
      // Older seqs replayed in order (a SYNC after reconnect) grow the run downwards.
      d.run_lo = seq;
      PullBelow(recipient, sender, d);
      return true;
    }
    spill_.insert(SpillKey{recipient, sender, seq});
    ++d.below;
    return true;
  }
  if (seq <= d.run_hi) {
    // In the run a spilled seq is a hole: filling it is a (late) first delivery.
    if (d.holes > 0 && spill_.erase(SpillKey{recipient, sender, seq}) != 0) {
      --d.holes;
      return true;
    }
    return false;
  }
  uint64_t offset = uint64_t{seq} - d.run_hi - 1;
  if (offset < kWindow) {
    uint64_t bit = uint64_t{1} << offset;
    if (d.window & bit) return false;
    d.window |= bit;
    if (offset == 0) Advance(recipient, sender, d);
    return true;
  }
  if (d.ahead > 0 && Spilled(recipient, sender, seq)) return false;
  if (seq > pair.highest && TryJump(recipient, sender, d, seq)) return true;
  spill_.insert(SpillKey{recipient, sender, seq});
  ++d.ahead;
  return true;
}

void LedgerShard::Advance(uint32_t recipient, uint32_t sender, DenseState& d) {
  for (;;) {
    int n = std::countr_one(d.window);
    if (n == 0) return;
    uint64_t old_top = uint64_t{d.run_hi} + kWindow;
    d.run_hi += n;
    d.window = n == 64 ? 0 : d.window >> n;
    if (d.ahead == 0) return;
    PullAhead(recipient, sender, d, old_top);
  }
}

void LedgerShard::PullBelow(uint32_t recipient, uint32_t sender, DenseState& d) {
  while (d.below > 0 && d.run_lo > 1 && spill_.erase(SpillKey{recipient, sender, d.run_lo - 1}) != 0) {
    --d.run_lo;
    --d.below;
  }
}

void LedgerShard::PullAhead(uint32_t recipient, uint32_t sender, DenseState& d, uint64_t from) {
  uint64_t top = std::min(uint64_t{d.run_hi} + kWindow, kMaxSeq);
  for (uint64_t x = from + 1; x <= top && d.ahead > 0; ++x) {
    if (spill_.erase(SpillKey{recipient, sender, static_cast<uint32_t>(x)}) != 0) {
      d.window |= uint64_t{1} << (x - d.run_hi - 1);
      --d.ahead;
    }
  }
}

bool LedgerShard::TryJump(uint32_t recipient, uint32_t sender, DenseState& d, uint32_t seq) {
  // seq is above every delivered seq of the pair, so every spilled seq above the window lies below it:
  // either in the segment the run would absorb, or in the window's new range.
  uint64_t old_hi = d.run_hi;
  uint64_t old_top = old_hi + kWindow;
  uint64_t new_hi = uint64_t{seq} - kWindow;
  uint64_t len = new_hi - old_hi;  // the segment (old_hi, new_hi]
  uint64_t in_window = std::min<uint64_t>(len, kWindow);
  uint64_t delivered = std::popcount(d.window & BitRange(0, in_window - 1));
  // Absorbing costs one hole per undelivered seq in the segment; allow it while the holes are paid for by
  // the delivered seqs absorbed (plus this one), which bounds both the work and the spill memory. First
  // a bound that needs no lookups, assuming every spilled seq is in the segment: a pair that sees only
  // every few seqs of its sender fails it and stays cheap.
  if (len - delivered > delivered + 2 * uint64_t{d.ahead} + 1) return false;
  uint64_t new_range_from = std::max(old_top, new_hi);
  if (d.ahead > 0) {
    uint64_t ahead_in_segment = d.ahead;
    for (uint64_t x = new_range_from + 1; x < seq; ++x) ahead_in_segment -= Spilled(recipient, sender, x);
    delivered += ahead_in_segment;
  }
  if (len - delivered > delivered + 1) return false;
  for (uint64_t i = 0; i < in_window; ++i) {
    if (((d.window >> i) & 1) == 0) {
      spill_.insert(SpillKey{recipient, sender, static_cast<uint32_t>(old_hi + 1 + i)});
      ++d.holes;
    }
  }
  // Past the old window a spilled seq was delivered and an absent one was not; in the run it is the other
  // way round, so the segment's entries are toggled.
  for (uint64_t x = old_top + 1; x <= new_hi; ++x) {
    SpillKey key{recipient, sender, static_cast<uint32_t>(x)};
    if (d.ahead > 0 && spill_.erase(key) != 0) {
      --d.ahead;
    } else {
      spill_.insert(key);
      ++d.holes;
    }
  }
  d.window = len >= kWindow ? 0 : d.window >> len;
  d.run_hi = static_cast<uint32_t>(new_hi);
  if (d.ahead > 0) PullAhead(recipient, sender, d, new_range_from);
  d.window |= uint64_t{1} << (kWindow - 1);
  Advance(recipient, sender, d);
  return true;
}

uint64_t LedgerShard::CountDelivered(uint32_t recipient, uint32_t sender, const PairState& pair, uint64_t lo,
                                     uint64_t hi) const {
  auto count_spilled = [&](uint64_t a, uint64_t b) {
    uint64_t n = 0;
    for (uint64_t x = a; x <= b; ++x) n += Spilled(recipient, sender, x);
    return n;
  };
  if ((pair.aux & kDenseFlag) == 0) {
    uint64_t n = lo <= pair.highest && pair.highest <= hi;
    if (pair.aux > 0) n += count_spilled(lo, hi);
    return n;
  }
  const DenseState& d = dense_[pair.aux & ~kDenseFlag];
  uint64_t n = 0;
  uint64_t run_lo = d.run_lo;
  uint64_t run_hi = d.run_hi;
  uint64_t top = run_hi + kWindow;
  if (d.below > 0 && lo < run_lo) n += count_spilled(lo, std::min(hi, run_lo - 1));
  uint64_t a = std::max(lo, run_lo);
  uint64_t b = std::min(hi, run_hi);
  if (a <= b) {
    n += b - a + 1;
    if (d.holes > 0) n -= count_spilled(a, b);
  }
  a = std::max(lo, run_hi + 1);
  b = std::min(hi, top);
  if (a <= b) n += std::popcount(d.window & BitRange(a - run_hi - 1, b - run_hi - 1));
  if (d.ahead > 0 && hi > top) n += count_spilled(std::max(lo, top + 1), hi);
  return n;
}

size_t LedgerShard::MemoryBytes() const {
  size_t bytes = sizeof(*this) + HashBytes(senders_) + HashBytes(pairs_) + HashBytes(spill_);
  bytes += bits_.capacity() * sizeof(bits_[0]);
  for (const auto& v : bits_) bytes += v.capacity() * sizeof(uint64_t);
  bytes += DequeBytes(runs_) + DequeBytes(dense_);
  bytes += (recipient_pool_.capacity() + scratch_.capacity()) * sizeof(uint32_t);
  return bytes;
}

// ---------------------------------------------------------------------------------------------------
// Merge

class LedgerMerger {
 public:
  explicit LedgerMerger(std::span<const LedgerShard* const> shards) : shards_(shards) {}

  LedgerTotals Run() const {
    LedgerTotals t;
    for (const LedgerShard* s : shards_) {
      const LedgerCounters& c = s->counters_;
      t.sent += c.sent;
      t.acked += c.acked;
      t.expected_deliveries += c.expected_deliveries;
      t.delivered_unique += c.delivered_unique;
      t.duplicates += c.duplicates;
      t.out_of_order += c.out_of_order;
      t.duplicate_acks += c.duplicate_acks;
      t.invalid_ids += c.invalid_ids;
    }
    // Every acked message also counts as sent, so this never goes negative.
    t.inflight = t.sent - t.acked;
    uint64_t matched = Matched(&t.lost_sample);
    uint64_t delivered_acked = DeliveredAcked();
    t.lost = t.expected_deliveries - matched;
    t.delivered_to_non_recipient = delivered_acked - matched;
    t.delivered_unacked = t.delivered_unique - delivered_acked;
    return t;
  }

 private:
  using PairState = LedgerShard::PairState;
  using SenderState = LedgerShard::SenderState;

  // Deliveries that were expected: for every ack run and each of its recipients, the run's seqs that
  // reached that recipient.
  // The first lost ones go to *sample.
  uint64_t Matched(std::vector<LostDelivery>* sample) const {
    uint64_t matched = 0;
    for (const LedgerShard* shard : shards_) {
      for (const LedgerShard::AckRun& run : shard->runs_) {
        const uint32_t* recipients = run.n == 1 ? &run.recipients : &shard->recipient_pool_[run.recipients];
        const uint64_t last = uint64_t{run.first_seq} + run.count - 1;
        for (uint32_t i = 0; i < run.n; ++i) {
          auto [holder, pair] = FindPair(recipients[i], run.sender);
          uint64_t n = pair == nullptr ? 0 : holder->CountDelivered(recipients[i], run.sender, *pair, run.first_seq, last);
          matched += n;
          for (uint64_t seq = run.first_seq; n < run.count && seq <= last && sample->size() < LedgerTotals::kLostSample;
               ++seq) {
            if (pair == nullptr || holder->CountDelivered(recipients[i], run.sender, *pair, seq, seq) == 0) {
              sample->push_back(LostDelivery{run.sender, static_cast<uint32_t>(seq), recipients[i]});
            }
          }
        }
      }
    }
    return matched;
  }

  // Unique deliveries of messages that were acked (to anyone).
  uint64_t DeliveredAcked() const {
    uint64_t n = 0;
    uint64_t holes_acked = 0;
    for (const LedgerShard* shard : shards_) {
      for (const auto& [key, pair] : shard->pairs_) {
        auto [owner, sender] = FindSender(static_cast<uint32_t>(key));
        if (sender == nullptr) continue;
        if ((pair.aux & LedgerShard::kDenseFlag) == 0) {
          n += owner->IsAcked(*sender, pair.highest);
          continue;
        }
        const LedgerShard::DenseState& d = shard->dense_[pair.aux & ~LedgerShard::kDenseFlag];
        n += owner->CountAcked(*sender, d.run_lo, d.run_hi);
        n += std::popcount(d.window & owner->AckedWindow(*sender, uint64_t{d.run_hi} + 1));
      }
      for (const LedgerShard::SpillKey& k : shard->spill_) {
        auto [owner, sender] = FindSender(k.sender);
        if (sender == nullptr || !owner->IsAcked(*sender, k.seq)) continue;
        const PairState& pair = shard->pairs_.find(LedgerShard::PairKey(k.recipient, k.sender))->second;
        bool hole = false;
        if ((pair.aux & LedgerShard::kDenseFlag) != 0) {
          const LedgerShard::DenseState& d = shard->dense_[pair.aux & ~LedgerShard::kDenseFlag];
          hole = d.run_lo <= k.seq && k.seq <= d.run_hi;
        }
        if (hole) {
          ++holes_acked;
        } else {
          ++n;
        }
      }
    }
    return n - holes_acked;
  }

  // Shards are few, so probing each beats building an index of millions of clients.
  std::pair<const LedgerShard*, const PairState*> FindPair(uint32_t recipient, uint32_t sender) const {
    uint64_t key = LedgerShard::PairKey(recipient, sender);
    for (const LedgerShard* s : shards_) {
      auto it = s->pairs_.find(key);
      if (it != s->pairs_.end()) return {s, &it->second};
    }
    return {nullptr, nullptr};
  }

  std::pair<const LedgerShard*, const SenderState*> FindSender(uint32_t sender) const {
    for (const LedgerShard* s : shards_) {
      auto it = s->senders_.find(sender);
      if (it != s->senders_.end()) return {s, &it->second};
    }
    return {nullptr, nullptr};
  }

  std::span<const LedgerShard* const> shards_;
};

LedgerTotals Merge(std::span<const LedgerShard* const> shards) { return LedgerMerger(shards).Run(); }

LedgerTotals Merge(std::span<const LedgerShard> shards) {
  std::vector<const LedgerShard*> pointers;
  pointers.reserve(shards.size());
  for (const LedgerShard& s : shards) pointers.push_back(&s);
  return Merge(std::span<const LedgerShard* const>(pointers));
}

std::string LedgerTotals::ToString() const {
  return absl::StrCat("sent=", sent, " acked=", acked, " inflight=", inflight,
                      " expected_deliveries=", expected_deliveries, " delivered_unique=", delivered_unique,
                      " duplicates=", duplicates, " out_of_order=", out_of_order, " lost=", lost,
                      " delivered_unacked=", delivered_unacked,
                      " delivered_to_non_recipient=", delivered_to_non_recipient, " duplicate_acks=", duplicate_acks,
                      " invalid_ids=", invalid_ids);
}

}  // namespace longlink::loadgen
