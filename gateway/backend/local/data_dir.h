// The local backend's data directory as a whole (each shard keeps its own log in shard-<k>/): created if
// missing, locked against a second gateway (LOCK, flock), checked for its format (FORMAT) and shard count
// (SHARDS), and given a new boot epoch (EPOCH) at every start, which forms the top 16 bits of every
// server_msg_id so ids never repeat across restarts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace longlink::gateway::local {

class DataDir {
 public:
  // Prepares `dir` for `shards` shards. Errors name the flag to change (--data-dir or --shards).
  static absl::StatusOr<std::unique_ptr<DataDir>> Open(const std::string& dir, uint32_t shards);
  ~DataDir();
  DataDir(const DataDir&) = delete;
  DataDir& operator=(const DataDir&) = delete;

  uint16_t epoch() const { return epoch_; }
  const std::string& path() const { return path_; }

 private:
  DataDir(std::string path, uint16_t epoch, int lock_fd) : path_(std::move(path)), epoch_(epoch), lock_fd_(lock_fd) {}
  std::string path_;
  uint16_t epoch_;
  int lock_fd_;  // holds LOCK while the DataDir lives
};

}  // namespace longlink::gateway::local
