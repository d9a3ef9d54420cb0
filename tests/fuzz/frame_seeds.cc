// Writes the seed corpus for frame_fuzz: one valid frame of every opcode, a few streams of several frames,
// and the inputs a reader must refuse (truncated, oversize, too small, wrong version, malformed bodies).
//
// The seeds are generated once and committed under corpus/frame; this program is kept so they can be
// regenerated after a protocol change:
//
//   frame_fuzz_seeds tests/fuzz/corpus/frame
//
// It builds the frames with the codec itself, except the invalid ones, which the codec refuses to write.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "protocol/frame.h"

namespace {

namespace proto = longlink::protocol;

using Bytes = std::vector<uint8_t>;

template <typename B>
Bytes Frame(uint32_t request_id, const B& body) {
  Bytes out(proto::FrameSize(body));
  out.resize(proto::Encode(request_id, body, out));
  return out;
}

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

Bytes Header(uint32_t length, uint8_t version, uint8_t opcode, uint16_t flags, uint32_t request_id) {
  return {static_cast<uint8_t>(length >> 24),
          static_cast<uint8_t>(length >> 16),
          static_cast<uint8_t>(length >> 8),
          static_cast<uint8_t>(length),
          version,
          opcode,
          static_cast<uint8_t>(flags >> 8),
          static_cast<uint8_t>(flags),
          static_cast<uint8_t>(request_id >> 24),
          static_cast<uint8_t>(request_id >> 16),
          static_cast<uint8_t>(request_id >> 8),
          static_cast<uint8_t>(request_id)};
}

bool Write(const std::string& dir, const std::string& name, const Bytes& data) {
  std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const Bytes payload = {'h', 'e', 'l', 'l', 'o'};

  const Bytes login =
      Frame(1, proto::LoginBody{.user_id = 1001, .device_id = 1, .platform = 2, .token = "tok"});
  const Bytes login_ack = Frame(1, proto::LoginAckBody{.status = 0,
                                                       .heartbeat_interval_ms = 30000,
                                                       .heartbeat_timeout_ms = 90000,
                                                       .session_id = 77,
                                                       .server_time_ms = 1700000000000,
                                                       .message = "ok"});
  const Bytes ping = Frame(2, proto::PingBody{.timestamp = 1700000000123});
  const Bytes pong = Frame(2, proto::PongBody{.timestamp = 1700000000123});
  const Bytes send =
      Frame(3, proto::SendBody{.target_kind = 0, .target_id = 1002, .client_msg_id = 11, .payload = payload});
  const Bytes send_ack =
      Frame(3, proto::SendAckBody{
                   .status = 0, .client_msg_id = 11, .server_msg_id = 5001, .server_time_ms = 1700000000200});
  const Bytes push = Frame(0, proto::PushBody{.seq = 1,
                                              .server_msg_id = 5001,
                                              .from_user = 1001,
                                              .from_device = 1,
                                              .conv_kind = 0,
                                              .conv_id = 1001,
                                              .client_msg_id = 11,
                                              .server_time_ms = 1700000000200,
                                              .payload = payload});
  const Bytes push_ack = Frame(4, proto::PushAckBody{.seq = 1});
  const Bytes sync = Frame(5, proto::SyncBody{.after_seq = 0, .limit = 100});
  const Bytes sync_done = Frame(5, proto::SyncDoneBody{.max_seq = 1, .has_more = 0});
  const Bytes kick = Frame(0, proto::KickBody{.reason = 1, .message = "duplicate device"});
  const Bytes goaway = Frame(0, proto::GoawayBody{.reconnect_delay_ms = 5000, .reason = "drain"});
  const Bytes logout = Frame(6, proto::LogoutBody{});
  const Bytes error = Frame(7, proto::ErrorBody{.code = 1, .message = "unknown opcode"});

  const uint8_t ids[16] = {0, 0, 0, 0, 0, 0, 0x03, 0xe9, 0, 0, 0, 0, 0, 0, 0x03, 0xea};
  const Bytes group_create = Frame(8, proto::GroupCreateBody{.group_id = 77});
  const Bytes group_join = Frame(9, proto::GroupJoinBody{.group_id = 77});
  const Bytes group_leave = Frame(10, proto::GroupLeaveBody{.group_id = 77});
  const Bytes group_members = Frame(11, proto::GroupMembersBody{.group_id = 77, .after_user = 0});
  const Bytes group_reply =
      Frame(11, proto::GroupReplyBody{.status = 0, .group_id = 77, .has_more = 0, .members = ids});
  const Bytes presence_subscribe = Frame(12, proto::PresenceSubscribeBody{.subscribe = 1, .user_ids = ids});
  const Bytes presence =
      Frame(0, proto::PresenceBody{.user_id = 1001, .online = 1, .devices = 1, .time_ms = 1700000000300});
  // A member list that is not a whole number of ids.
  Bytes group_reply_partial_id = group_reply;
  group_reply_partial_id.pop_back();
  group_reply_partial_id[3] -= 1;
  group_reply_partial_id[12 + 2 + 8 + 1 + 3] -= 1;

  Bytes unknown_opcode = Header(16, proto::kVersion, 0x63, 0, 8);
  unknown_opcode.insert(unknown_opcode.end(), {1, 2, 3, 4});
  Bytes flags_set = ping;
  flags_set[6] = 0x80;
  flags_set[7] = 0x01;
  // KICK whose message claims one byte more than follows.
  Bytes kick_overlong = kick;
  kick_overlong[15] += 1;
  Bytes ping_trailing = Header(21, proto::kVersion, 3, 0, 2);
  ping_trailing.insert(ping_trailing.end(), {0, 0, 0, 0, 0, 0, 0, 1, 0xff});

  const std::vector<std::pair<std::string, Bytes>> seeds = {
      {"op01_login", login},
      {"op02_login_ack", login_ack},
      {"op03_ping", ping},
      {"op04_pong", pong},
      {"op05_send", send},
      {"op06_send_ack", send_ack},
      {"op07_push", push},
      {"op08_push_ack", push_ack},
      {"op09_sync", sync},
      {"op10_sync_done", sync_done},
      {"op11_kick", kick},
      {"op12_goaway", goaway},
      {"op13_logout", logout},
      {"op14_error", error},
      {"op16_group_create", group_create},
      {"op17_group_join", group_join},
      {"op18_group_leave", group_leave},
      {"op19_group_members", group_members},
      {"op20_group_reply", group_reply},
      {"op21_presence_subscribe", presence_subscribe},
      {"op22_presence", presence},
      {"op15_reserved_unknown", Cat({Header(12, proto::kVersion, 15, 0, 3)})},
      {"stream_groups_and_presence",
       Cat({login, group_create, group_join, group_members, presence_subscribe, group_leave})},
      {"malformed_partial_id", group_reply_partial_id},
      {"stream_client_session", Cat({login, ping, send, push_ack, sync, logout})},
      {"stream_server_session", Cat({login_ack, pong, send_ack, push, sync_done, goaway})},
      {"stream_unknown_then_valid", Cat({unknown_opcode, ping, error})},
      {"stream_ends_mid_frame", Cat({ping, Bytes(send.begin(), send.end() - 3)})},
      {"truncated_header", Bytes(login.begin(), login.begin() + 7)},
      {"flags_set", flags_set},
      {"bad_version", Cat({Header(20, 2, 3, 0, 2), Bytes(8, 0)})},
      {"too_small", Header(4, proto::kVersion, 3, 0, 2)},
      {"too_large", Cat({Header(proto::kDefaultMaxFrame + 1, proto::kVersion, 5, 0, 3), Bytes(32, 0)})},
      {"too_large_max", Header(0xffffffff, proto::kVersion, 5, 0, 3)},
      {"malformed_string_past_end", kick_overlong},
      {"malformed_trailing_byte", ping_trailing},
  };
  for (const auto& [name, data] : seeds) {
    if (!Write(dir, name, data)) {
      std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
      return 1;
    }
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}
