#include "gateway/login_guard.h"

#include <algorithm>
#include <vector>

namespace longlink::gateway {

bool LoginGuard::Blocked(const PeerAddress& a, uint64_t now_ms) const {
  auto it = entries_.find(a);
  return it != entries_.end() && it->second.blocked_until_ms > now_ms;
}

bool LoginGuard::Failed(const PeerAddress& a, uint64_t now_ms) {
  if (!enabled()) return false;
  if (entries_.size() >= o_.max_entries && !entries_.contains(a)) Prune(now_ms);
  Entry& e = entries_[a];
  if (now_ms - e.window_start_ms >= o_.window_ms) {
    e.window_start_ms = now_ms;
    e.failures = 0;
  }
  if (++e.failures <= o_.max_failures || e.blocked_until_ms > now_ms) return false;
  e.blocked_until_ms = now_ms + o_.block_ms;
  blocked_until_max_ = std::max(blocked_until_max_, e.blocked_until_ms);
  return true;
}

size_t LoginGuard::blocked(uint64_t now_ms) const {
  size_t n = 0;
  for (const auto& [a, e] : entries_) n += e.blocked_until_ms > now_ms ? 1 : 0;
  return n;
}

void LoginGuard::Prune(uint64_t now_ms) {
  // Drop what no longer matters (window over, not blocked); if that frees nothing, the oldest windows of
  // unblocked addresses. A blocked address is kept until its block ends.
  absl::erase_if(entries_, [&](const auto& kv) {
    return now_ms - kv.second.window_start_ms >= o_.window_ms && kv.second.blocked_until_ms <= now_ms;
  });
  if (entries_.size() < o_.max_entries) return;
  std::vector<std::pair<uint64_t, PeerAddress>> oldest;
  for (const auto& [a, e] : entries_) {
    if (e.blocked_until_ms <= now_ms) oldest.emplace_back(e.window_start_ms, a);
  }
  std::sort(oldest.begin(), oldest.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  for (size_t i = 0; i < oldest.size() / 2 + 1 && i < oldest.size(); ++i) entries_.erase(oldest[i].second);
  if (entries_.size() < o_.max_entries) return;
  // Full of blocked addresses (an attack from very many): let the half whose blocks end soonest go, so the
  // table stays bounded and a full table costs one pass per half of it, not one per failure.
  std::vector<std::pair<uint64_t, PeerAddress>> blocked;
  for (const auto& [a, e] : entries_) blocked.emplace_back(e.blocked_until_ms, a);
  std::sort(blocked.begin(), blocked.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (size_t i = 0; i < blocked.size() / 2 + 1 && i < blocked.size(); ++i) entries_.erase(blocked[i].second);
}

}  // namespace longlink::gateway
