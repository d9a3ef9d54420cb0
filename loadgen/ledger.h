// The delivery ledger: the load generator's proof that every message the server acknowledged reached
// each of its recipients exactly once, and an account of everything else (losses, duplicates,
// reordering, deliveries nobody should have received).
//
// Each loadgen shard owns one LedgerShard and records only the events of its own clients, on its own
// thread, with no atomics and no locks:
//  - Sent / Acked for messages its clients sent (the sender's shard);
//  - Delivered for PUSHes its clients received (the recipient's shard), which also answers the client's
//    own question "have I shown this message already?".
// Merge then joins all shards in one linear pass. It only reads, but it must not run while any shard is
// recording (run it after the shards stop, or while they are paused). For a cheap progress line, sum
// each shard's counters() instead: they are exact for everything but lost and unexpected.
//
// Identities: a client index (uint32) names one device for the whole run. A message id packs the
// sender's client index and a per-sender sequence number that starts at 1 and is assigned at send time:
// id = sender << 32 | seq. Sequence 0 is reserved; ids carrying it are counted as invalid_ids.
//
// Memory. Sender side, per shard:
//  - per sending client 32 bytes in a hash map slot (about 38-75 bytes with the map's load factor),
//    holding the sent and acked bits of seqs 1..64; seqs above 64 cost 2 bits each;
//  - per ack run 16 bytes: a run is a stretch of consecutive seqs acked in order with the same recipient
//    set, so an echo or group stream costs a few runs in all, while 1:1 chat with random targets costs
//    one run (16 bytes) per message; a set of more than one recipient adds 4 bytes per recipient per run.
// Recipient side, per shard:
//  - per (sender, recipient) pair with any delivery 16 bytes in a hash map slot (about 19-39 bytes with
//    the load factor). While the pair has seen only isolated seqs, the slot holds the highest and the
//    others are spilled (below).
//  - once a pair sees two seqs less than 64 apart it becomes a stream and adds 32 bytes: a run of seqs
//    that are all delivered except for recorded holes, plus a 64-seq bitmap window above the run. In-order
//    or slightly reordered delivery then costs nothing per message; a lost seq costs one hole entry; a
//    backlog delivered late (beyond the window, or older seqs replayed after newer ones) is spilled while
//    it is out of place and folds back into the run as the gap fills.
//  - the sparse fallback: a shared hash set of (recipient, sender, seq) entries, 12 bytes each (about
//    15-30 bytes with the load factor), for seqs outside a stream's run and window (reordered by more
//    than the window, or delivered before the stream began) and for the extra seqs of an isolated pair.
//    Its entries are bounded by the number of deliveries plus the holes a jump may create (at most one
//    per delivered seq it absorbs), so memory never grows without deliveries.
// Measured (tests/bench/ledger_benchmark.cc, 4 shards, heap in use after the run):
//  - 1,000,000 clients x 5 messages to random clients: 283 MiB (59 B per message: 5 M pairs, 5 M runs,
//    1 M senders); with two devices per user (3 deliveries per message) 548 MiB;
//  - 10,000 clients x 100 msg/s x 60 s echo: 21 MiB (0.4 B per message); in groups of 10 (600 M
//    deliveries): 27 MiB;
//  - 10,000 clients chatting with random clients at 100 msg/s for 60 s is the expensive case: 60 M
//    messages reach 45 M distinct pairs and take 2.3 GiB (40 B per message; the benchmark runs 6 s of it
//    in 241 MiB). Exact state for every pair that exchanged a message is the floor of this design, so
//    such a run wants fewer, denser peers, fewer clients, or a shorter window.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace longlink::loadgen {

constexpr uint64_t MakeMessageId(uint32_t sender, uint32_t seq) { return uint64_t{sender} << 32 | seq; }
constexpr uint32_t MessageSender(uint64_t msg_id) { return static_cast<uint32_t>(msg_id >> 32); }
constexpr uint32_t MessageSeq(uint64_t msg_id) { return static_cast<uint32_t>(msg_id); }

// One shard's running counts: exact, maintained as events happen.
struct LedgerCounters {
  uint64_t sent = 0;                 // distinct messages sent (an Acked without a Sent counts as sent)
  uint64_t acked = 0;                // distinct messages acknowledged
  uint64_t expected_deliveries = 0;  // sum over acked messages of their distinct recipients
  uint64_t delivered_unique = 0;     // first deliveries of a message to a client
  uint64_t duplicates = 0;           // repeated deliveries of a message to the same client
  uint64_t out_of_order = 0;         // first deliveries below the highest seq seen on that pair
  uint64_t duplicate_acks = 0;       // Acked for a message already acknowledged (ignored otherwise)
  uint64_t invalid_ids = 0;          // events carrying sequence number 0 (ignored otherwise)
};

// One (acked message, recipient) pair the ledger found undelivered: client indices and the sender's seq.
struct LostDelivery {
  uint32_t sender = 0;
  uint32_t seq = 0;
  uint32_t recipient = 0;
  bool operator==(const LostDelivery&) const = default;
};

struct LedgerTotals {
  // How many lost deliveries Merge names in lost_sample (the first ones in ack order per shard).
  static constexpr size_t kLostSample = 20;
  uint64_t sent = 0;
  uint64_t acked = 0;
  uint64_t inflight = 0;  // sent but not (yet) acknowledged
  uint64_t expected_deliveries = 0;
  uint64_t delivered_unique = 0;
  uint64_t duplicates = 0;
  uint64_t out_of_order = 0;
  uint64_t lost = 0;  // (acked message, recipient) pairs never delivered
  // Deliveries of messages never acked. Legitimate while acks are in flight, or when the connection that
  // would have carried the SEND_ACK died.
  uint64_t delivered_unacked = 0;
  // Deliveries of acked messages to a client outside their recipient set: always a server bug.
  uint64_t delivered_to_non_recipient = 0;
  uint64_t duplicate_acks = 0;
  uint64_t invalid_ids = 0;
  // Up to kLostSample of the lost deliveries, so a run that lost messages says which (to look them up on
  // the server).
  std::vector<LostDelivery> lost_sample;

  uint64_t unexpected() const { return delivered_unacked + delivered_to_non_recipient; }
  // True when every acked message reached each recipient exactly once and nobody else.
  bool Clean() const { return lost == 0 && duplicates == 0 && delivered_to_non_recipient == 0; }
  std::string ToString() const;
};

class LedgerShard {
 public:
  LedgerShard() = default;
  LedgerShard(LedgerShard&&) = default;
  LedgerShard& operator=(LedgerShard&&) = default;
  // Copying a ledger of millions of messages is never what a caller means.
  LedgerShard(const LedgerShard&) = delete;
  LedgerShard& operator=(const LedgerShard&) = delete;

  // A SEND left the sender (again, for a retransmit: counted once).
  void Sent(uint64_t msg_id);
  // The server acknowledged msg_id; each client in recipients (duplicates ignored) must receive it exactly
  // once. The first Acked of a message counts; later ones only bump duplicate_acks.
  void Acked(uint64_t msg_id, std::span<const uint32_t> recipients);
  // A PUSH carrying msg_id reached recipient. True for the first delivery of that message to that client
  // (the client shows it), false for a duplicate or an invalid id.
  bool Delivered(uint32_t recipient, uint64_t msg_id);

  const LedgerCounters& counters() const { return counters_; }
  // Shape of the recipient side, for memory reports: (sender, recipient) pairs with a delivery, pairs
  // tracked as streams, and entries in the sparse fallback.
  size_t pair_count() const { return pairs_.size(); }
  size_t stream_count() const { return dense_.size(); }
  size_t spilled_count() const { return spill_.size(); }
  // Bytes held by this shard's containers (capacity, not size).
  size_t MemoryBytes() const;

 private:
  friend class LedgerMerger;

  static constexpr uint32_t kWindow = 64;
  static constexpr uint32_t kNone = 0xffffffffu;
  // PairState::aux: with this bit, the low bits index dense_; without, they count the pair's spill entries.
  static constexpr uint32_t kDenseFlag = 0x80000000u;

  struct SenderState {
    uint64_t sent0 = 0;  // seqs 1..64
    uint64_t acked0 = 0;
    uint32_t more = kNone;      // index into bits_ for seqs above 64
    uint32_t last_run = kNone;  // this sender's newest run in runs_, the one an in-order ack may extend
  };
  // Consecutive seqs [first_seq, first_seq + count) acked with the same recipients: the recipient itself
  // when n == 1, else n entries of recipient_pool_ from recipients.
  struct AckRun {
    uint32_t sender;
    uint32_t first_seq;
    uint32_t recipients;
    uint16_t count;
    uint16_t n;
  };
  struct PairState {
    uint32_t highest;  // highest seq delivered on this pair
    uint32_t aux;      // see kDenseFlag
  };
  // A stream: seqs in [run_lo, run_hi] are delivered unless spilled (a hole); bit i of window stands for
  // seq run_hi + 1 + i; every other seq is delivered only if spilled. run_lo >= 1; the run is empty while
  // run_hi == run_lo - 1.
  struct DenseState {
    uint32_t run_lo;
    uint32_t run_hi;
    uint32_t below = 0;  // spilled seqs < run_lo
    uint32_t ahead = 0;  // spilled seqs > run_hi + kWindow
    uint32_t holes = 0;  // spilled seqs in the run
    uint64_t window = 0;
  };
  struct SpillKey {
    uint32_t recipient;
    uint32_t sender;
    uint32_t seq;
    bool operator==(const SpillKey&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const SpillKey& k) {
      return H::combine(std::move(h), k.recipient, k.sender, k.seq);
    }
  };

  static uint64_t PairKey(uint32_t recipient, uint32_t sender) { return uint64_t{recipient} << 32 | sender; }

  // Sets the sent (which == 0) or acked (which == 1) bit of seq; false if it was already set.
  bool SetBit(SenderState& s, uint32_t seq, int which);
  bool IsAcked(const SenderState& s, uint32_t seq) const;
  // The acked bits of seqs [first_seq, first_seq + 64), bit i for first_seq + i.
  uint64_t AckedWindow(const SenderState& s, uint64_t first_seq) const;
  // Acked seqs in [lo, hi].
  uint64_t CountAcked(const SenderState& s, uint64_t lo, uint64_t hi) const;
  uint64_t AckedWord(const SenderState& s, uint64_t word) const;

  bool DeliverSparse(uint32_t recipient, uint32_t sender, PairState& pair, uint32_t seq);
  bool DeliverDense(uint32_t recipient, uint32_t sender, const PairState& pair, DenseState& d, uint32_t seq);
  // Moves run_hi over the window's delivered prefix, pulling spilled seqs into the window as it passes.
  void Advance(uint32_t recipient, uint32_t sender, DenseState& d);
  // Grows the run downwards over spilled seqs that continue it.
  void PullBelow(uint32_t recipient, uint32_t sender, DenseState& d);
  // Pulls spilled seqs in (from, d.run_hi + kWindow] into the window.
  void PullAhead(uint32_t recipient, uint32_t sender, DenseState& d, uint64_t from);
  // For seq beyond the window and above every delivered seq: slides the run up to seq - kWindow if that
  // records at most one hole more than the delivered seqs it absorbs. True if it did.
  bool TryJump(uint32_t recipient, uint32_t sender, DenseState& d, uint32_t seq);
  // Delivered seqs of the pair in [lo, hi] (Merge).
  uint64_t CountDelivered(uint32_t recipient, uint32_t sender, const PairState& pair, uint64_t lo, uint64_t hi) const;
  bool Spilled(uint32_t recipient, uint32_t sender, uint64_t seq) const {
    return spill_.contains(SpillKey{recipient, sender, static_cast<uint32_t>(seq)});
  }

  LedgerCounters counters_;
  absl::flat_hash_map<uint32_t, SenderState> senders_;
  std::vector<std::vector<uint64_t>> bits_;  // per sender past seq 64: {sent, acked} word pairs
  // Deques: no doubling, so a ledger of millions of runs never holds twice its size while growing, and
  // indices stay valid.
  std::deque<AckRun> runs_;
  std::vector<uint32_t> recipient_pool_;
  std::vector<uint32_t> scratch_;  // Acked's sorted recipient set; sized once to the largest set
  absl::flat_hash_map<uint64_t, PairState> pairs_;
  std::deque<DenseState> dense_;
  absl::flat_hash_set<SpillKey> spill_;
};

// Joins every shard's records into run totals in one pass over ack runs, pairs and spilled entries (a
// pair with holes or spilled seqs is probed seq by seq over the runs acked to it). All Sent/Acked of one
// sender must be on one shard, and all Delivered to one recipient on one shard.
LedgerTotals Merge(std::span<const LedgerShard* const> shards);
LedgerTotals Merge(std::span<const LedgerShard> shards);

}  // namespace longlink::loadgen
