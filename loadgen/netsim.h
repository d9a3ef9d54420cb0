// Weak-network simulation for one simulated client's connection, in process and seeded.
//
// A Link sits between a client and its socket. Bytes the client writes enter the uplink and reach the
// socket after the profile's one-way latency (plus uniform jitter), no faster than the uplink's token
// bucket allows, and not at all while the link is stalled; bytes the socket delivers go through the
// downlink the same way before the client parses them. Each direction stays in order, as TCP would keep
// it: a byte is never released before one written earlier. A link whose NAT mapping expired (no byte in
// either direction for nat_idle) black-holes everything from then on without telling anyone, and a
// half-open ("zombie") link does the same on purpose. The engine (workload.cc) turns the remaining events,
// flaps and zombies, into actions on the connection.
//
// Everything here is a pure function of the times passed in and the seed, so tests drive it with a
// virtual clock. Memory: about 200 bytes per weak client, plus the bytes in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace longlink::loadgen {

struct NetworkProfile;

constexpr uint64_t kNever = ~uint64_t{0};

// A profile in the units the engine works in (nanoseconds, bytes per second, events per second).
struct LinkParams {
  enum Dir : int { kUp = 0, kDown = 1 };
  uint64_t latency_ns[2] = {0, 0};
  uint64_t jitter_ns[2] = {0, 0};
  uint64_t bandwidth[2] = {0, 0};  // bytes per second; 0: unlimited
  double stalls_per_s = 0;
  uint64_t stall_ns = 0;
  uint32_t max_segment = 0;  // the engine cuts uplink writes into pieces of at most this size
  double flaps_per_s = 0;
  double zombies_per_s = 0;
  uint64_t nat_idle_ns = 0;

  static LinkParams From(const NetworkProfile& p);
  // False for the "none" profile: such clients get no Link at all.
  bool Any() const;
};

// Bytes queued in one direction with the time each chunk may leave. FIFO; memory only while non-empty.
class DelayLine {
 public:
  void Push(uint64_t release_ns, const uint8_t* data, uint32_t n);
  bool empty() const { return first_ == chunks_.size(); }
  // Release time of the first chunk, kNever when empty.
  uint64_t front_release() const { return empty() ? kNever : chunks_[first_].release_ns; }
  // The first chunk's unsent bytes.
  const uint8_t* front_data() const { return bytes_.data() + head_; }
  uint32_t front_len() const { return chunks_[first_].len; }
  // Drops n bytes from the first chunk (n <= front_len()).
  void Consume(uint32_t n);
  void Clear();
  size_t bytes() const { return bytes_.size() - head_; }

 private:
  struct Chunk {
    uint64_t release_ns;
    uint32_t len;
  };
  // Plain vectors with a read position (a deque allocates even when empty, and most links are idle).
  std::vector<uint8_t> bytes_;
  size_t head_ = 0;
  std::vector<Chunk> chunks_;
  size_t first_ = 0;
};

// A token bucket: `rate` bytes per second, holding at most `burst` bytes of credit.
class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(uint64_t rate, uint64_t now_ns);
  bool limited() const { return rate_ != 0; }
  // How many of `want` bytes may go at now_ns (and takes them).
  uint32_t Take(uint64_t now_ns, uint32_t want);
  // The earliest time at which `want` bytes (capped at the burst) would be available.
  uint64_t ReadyAt(uint64_t now_ns, uint32_t want) const;
  double burst() const { return burst_; }

 private:
  void Refill(uint64_t now_ns);
  uint64_t rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  uint64_t last_ns_ = 0;
};

class Link {
 public:
  using Dir = LinkParams::Dir;
  Link(const LinkParams* params, uint64_t now_ns, uint64_t seed);

  const LinkParams& params() const { return *p_; }

  // Bytes entering the link in direction d at now_ns. Dropped when the link is dead (black-holed or
  // half-open); a write after nat_idle of silence first kills it.
  void Push(Dir d, uint64_t now_ns, const uint8_t* data, uint32_t n);
  // Hands sink(data, n) every byte of direction d that may leave by now_ns, in order.
  template <class Sink>
  void Pop(Dir d, uint64_t now_ns, Sink&& sink);
  // When Pop has something to do next (a chunk's release, the end of a stall, tokens), kNever if idle.
  uint64_t NextDue(uint64_t now_ns) const;
  bool Pending() const { return !line_[0].empty() || !line_[1].empty(); }
  // Forgets every byte in flight (the connection is gone).
  void DropPending() {
    line_[0].Clear();
    line_[1].Clear();
  }

  // Whether the link passes nothing at now_ns because of a stall (advances the stall schedule).
  bool Stalled(uint64_t now_ns);
  uint64_t stalls() const { return stalls_; }

  // A NAT black hole or a half-open zombie: nothing passes, nothing is signalled.
  bool dead() const { return nat_dead_ || zombie_; }
  bool nat_dead() const { return nat_dead_; }
  bool zombie() const { return zombie_; }
  void BecomeZombie(uint64_t now_ns);
  uint64_t zombie_since() const { return zombie_since_; }
  // Touch for NAT purposes without bytes (for example the connect itself).
  void Activity(uint64_t now_ns) { last_activity_ = now_ns; }

  // Event times drawn from the profile's rates (exponential inter-arrival times), kNever when the rate is 0.
  uint64_t next_flap() const { return next_flap_; }
  uint64_t next_zombie() const { return next_zombie_; }
  void DrawFlap(uint64_t now_ns) { next_flap_ = Draw(now_ns, p_->flaps_per_s); }
  void DrawZombie(uint64_t now_ns) { next_zombie_ = Draw(now_ns, p_->zombies_per_s); }
  void NoMoreZombie() { next_zombie_ = kNever; }
  void NoMoreFlap() { next_flap_ = kNever; }

  // A fresh connection on the same network: nothing in flight, alive, new event times.
  void Reset(uint64_t now_ns);

  // Uniform in [0, 1) and exponential with the given rate per second, from the link's own generator.
  double Uniform();
  uint64_t Draw(uint64_t now_ns, double per_second);

 private:
  uint64_t Release(Dir d, uint64_t now_ns);

  const LinkParams* p_;
  uint64_t rng_;
  DelayLine line_[2];
  TokenBucket bucket_[2];
  uint64_t last_release_[2] = {0, 0};
  uint64_t last_activity_ = 0;
  uint64_t next_stall_ = kNever;
  uint64_t stall_until_ = 0;
  uint64_t stalls_ = 0;
  uint64_t next_flap_ = kNever;
  uint64_t next_zombie_ = kNever;
  uint64_t zombie_since_ = 0;
  bool nat_dead_ = false;
  bool zombie_ = false;
};

template <class Sink>
void Link::Pop(Dir d, uint64_t now_ns, Sink&& sink) {
  DelayLine& line = line_[d];
  if (dead()) {
    line.Clear();
    return;
  }
  while (!line.empty() && line.front_release() <= now_ns && !Stalled(now_ns)) {
    uint32_t n = line.front_len();
    if (bucket_[d].limited()) n = bucket_[d].Take(now_ns, n);
    if (n == 0) return;
    // The sink may push more bytes into this link; copy out of the line first.
    const uint8_t* data = line.front_data();
    sink(data, n);
    line.Consume(n);
  }
}

}  // namespace longlink::loadgen
