#include "loadgen/netsim.h"

#include <algorithm>
#include <cmath>

#include "absl/time/time.h"
#include "loadgen/scenario.h"

namespace longlink::loadgen {
namespace {

uint64_t Nanos(absl::Duration d) { return static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Nanoseconds(d))); }

// splitmix64: a tiny, well-mixed generator; one 8-byte state per link.
uint64_t Next(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

LinkParams LinkParams::From(const NetworkProfile& p) {
  LinkParams l;
  l.latency_ns[kUp] = Nanos(p.latency_up);
  l.jitter_ns[kUp] = std::min(Nanos(p.jitter_up), l.latency_ns[kUp]);
  l.latency_ns[kDown] = Nanos(p.latency_down);
  l.jitter_ns[kDown] = std::min(Nanos(p.jitter_down), l.latency_ns[kDown]);
  l.bandwidth[kUp] = p.bandwidth_up;
  l.bandwidth[kDown] = p.bandwidth_down;
  l.stalls_per_s = p.stall_probability;
  l.stall_ns = Nanos(p.stall_duration);
  l.max_segment = p.max_segment;
  l.flaps_per_s = p.flaps_per_hour / 3600.0;
  l.zombies_per_s = p.zombies_per_hour / 3600.0;
  l.nat_idle_ns = Nanos(p.nat_idle_timeout);
  return l;
}

bool LinkParams::Any() const {
  return latency_ns[kUp] || latency_ns[kDown] || bandwidth[kUp] || bandwidth[kDown] ||
         (stalls_per_s > 0 && stall_ns > 0) || nat_idle_ns != 0 || zombies_per_s > 0 || max_segment != 0 ||
         flaps_per_s > 0;
}

void DelayLine::Push(uint64_t release_ns, const uint8_t* data, uint32_t n) {
  if (n == 0) return;
  if (head_ > 0 && head_ >= bytes_.size() / 2) {
    bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  if (first_ > 0 && first_ >= chunks_.size() / 2) {
    chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(first_));
    first_ = 0;
  }
  bytes_.insert(bytes_.end(), data, data + n);
  chunks_.push_back(Chunk{release_ns, n});
}

void DelayLine::Consume(uint32_t n) {
  if (empty()) return;
  Chunk& c = chunks_[first_];
  n = std::min(n, c.len);
  c.len -= n;
  head_ += n;
  if (c.len == 0) ++first_;
  if (empty()) Clear();
}

void DelayLine::Clear() {
  chunks_.clear();
  first_ = 0;
  bytes_.clear();
  head_ = 0;
  // Give back what a burst grew, so a million mostly idle links stay small.
  if (bytes_.capacity() > 16 * 1024) std::vector<uint8_t>().swap(bytes_);
  if (chunks_.capacity() > 256) std::vector<Chunk>().swap(chunks_);
}

TokenBucket::TokenBucket(uint64_t rate, uint64_t now_ns) : rate_(rate), last_ns_(now_ns) {
  // 20 ms of credit, at least one full-size segment, so a thin link still passes whole packets.
  burst_ = std::max<double>(1500.0, static_cast<double>(rate) * 0.02);
  tokens_ = burst_;
}

void TokenBucket::Refill(uint64_t now_ns) {
  if (now_ns <= last_ns_) return;
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_ns - last_ns_) * 1e-9 * static_cast<double>(rate_));
  last_ns_ = now_ns;
}

uint32_t TokenBucket::Take(uint64_t now_ns, uint32_t want) {
  if (rate_ == 0) return want;
  Refill(now_ns);
  uint32_t n = static_cast<uint32_t>(std::min<double>(want, std::floor(tokens_)));
  tokens_ -= n;
  return n;
}

uint64_t TokenBucket::ReadyAt(uint64_t now_ns, uint32_t want) const {
  if (rate_ == 0) return now_ns;
  double need = std::min<double>(want, std::floor(burst_));
  double have = std::min(burst_, tokens_ + static_cast<double>(now_ns > last_ns_ ? now_ns - last_ns_ : 0) * 1e-9 *
                                               static_cast<double>(rate_));
  if (have >= need) return now_ns;
  return now_ns + static_cast<uint64_t>(std::ceil((need - have) / static_cast<double>(rate_) * 1e9));
}

Link::Link(const LinkParams* params, uint64_t now_ns, uint64_t seed) : p_(params), rng_(seed) { Reset(now_ns); }

void Link::Reset(uint64_t now_ns) {
  line_[0].Clear();
  line_[1].Clear();
  for (int d = 0; d < 2; ++d) {
    bucket_[d] = TokenBucket(p_->bandwidth[d], now_ns);
    last_release_[d] = 0;
  }
  last_activity_ = now_ns;
  stall_until_ = 0;
  next_stall_ = p_->stall_ns > 0 ? Draw(now_ns, p_->stalls_per_s) : kNever;
  next_flap_ = Draw(now_ns, p_->flaps_per_s);
  next_zombie_ = Draw(now_ns, p_->zombies_per_s);
  nat_dead_ = false;
  zombie_ = false;
  zombie_since_ = 0;
}

double Link::Uniform() { return static_cast<double>(Next(rng_) >> 11) * 0x1.0p-53; }

uint64_t Link::Draw(uint64_t now_ns, double per_second) {
  if (!(per_second > 0)) return kNever;
  double u = Uniform();
  double seconds = -std::log1p(-u) / per_second;
  if (seconds > 1e7) return kNever;
  return now_ns + static_cast<uint64_t>(seconds * 1e9);
}

uint64_t Link::Release(Dir d, uint64_t now_ns) {
  uint64_t at = now_ns + p_->latency_ns[d];
  if (p_->jitter_ns[d] != 0) {
    double j = (Uniform() * 2.0 - 1.0) * static_cast<double>(p_->jitter_ns[d]);
    at = static_cast<uint64_t>(static_cast<double>(at) + j);
  }
  // In order, as over TCP: never before what was written earlier.
  at = std::max(at, last_release_[d]);
  last_release_[d] = at;
  return at;
}

void Link::Push(Dir d, uint64_t now_ns, const uint8_t* data, uint32_t n) {
  if (!dead() && p_->nat_idle_ns != 0 && now_ns > last_activity_ + p_->nat_idle_ns) nat_dead_ = true;
  if (dead()) return;
  last_activity_ = now_ns;
  line_[d].Push(Release(d, now_ns), data, n);
}

bool Link::Stalled(uint64_t now_ns) {
  if (now_ns < stall_until_) return true;
  if (now_ns < next_stall_) return false;
  // Stalls that began and ended while nothing was moving are counted but change nothing.
  while (next_stall_ <= now_ns) {
    ++stalls_;
    stall_until_ = next_stall_ + p_->stall_ns;
    next_stall_ = Draw(stall_until_, p_->stalls_per_s);
    if (stall_until_ > now_ns) return true;
  }
  return false;
}

uint64_t Link::NextDue(uint64_t now_ns) const {
  if (dead()) return kNever;
  uint64_t due = kNever;
  for (int d = 0; d < 2; ++d) {
    const DelayLine& line = line_[d];
    if (line.empty()) continue;
    uint64_t t = std::max(line.front_release(), now_ns);
    if (bucket_[d].limited()) t = std::max(t, bucket_[d].ReadyAt(t, line.front_len()));
    if (t < stall_until_) t = stall_until_;
    due = std::min(due, t);
  }
  return due;
}

void Link::BecomeZombie(uint64_t now_ns) {
  if (zombie_) return;
  zombie_ = true;
  zombie_since_ = now_ns;
  line_[0].Clear();
  line_[1].Clear();
}

}  // namespace longlink::loadgen
