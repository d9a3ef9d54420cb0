#include "gateway/backend/echo/echo_backend.h"

#include <array>

#include "core/clock.h"

namespace longlink::gateway {
namespace {

class EchoBackend final : public Backend {
 public:
  explicit EchoBackend(GatewayPort* port) : port_(port) {}

  LoginVerdict OnLogin(const Session&) override { return LoginVerdict::kAllow; }

  void OnSend(const Session& s, uint32_t request_id, const protocol::SendBody& body) override {
    uint64_t start = core::MonoNanos();
    uint64_t server_msg_id = (static_cast<uint64_t>(port_->shard_id()) << 48) | ++next_msg_id_;
    uint64_t now_ms = core::UnixMillis();
    protocol::SendAckBody ack;
    ack.status = static_cast<uint16_t>(protocol::SendStatus::kOk);
    ack.client_msg_id = body.client_msg_id;
    ack.server_msg_id = server_msg_id;
    ack.server_time_ms = now_ms;
    std::array<uint8_t, 64> ack_buf;
    size_t n = protocol::Encode(request_id, ack, ack_buf);
    port_->SendTo(s.conn, std::span<const uint8_t>(ack_buf.data(), n));

    protocol::PushBody push;
    push.server_msg_id = server_msg_id;
    push.from_user = s.user_id;
    push.from_device = s.device_id;
    push.conv_kind = body.target_kind;
    push.conv_id = body.target_id;
    push.client_msg_id = body.client_msg_id;
    push.server_time_ms = now_ms;
    push.payload = body.payload;
    // The payload is bounded by --max-frame-bytes, so the push fits a buffer of that size plus headers.
    size_t size = protocol::FrameSize(push);
    if (size > scratch_.size()) scratch_.resize(size);
    n = protocol::Encode(0, push, scratch_);
    port_->PushToUser(s.user_id, 0, std::span<const uint8_t>(scratch_.data(), n));
    port_->ObserveBackendLatency(static_cast<double>(core::MonoNanos() - start) * 1e-9);
  }

  void OnSync(const Session& s, uint32_t request_id, const protocol::SyncBody&) override {
    // Echo keeps no inbox: there is never anything to sync.
    protocol::SyncDoneBody done;
    std::array<uint8_t, 32> buf;
    size_t n = protocol::Encode(request_id, done, buf);
    port_->SendTo(s.conn, std::span<const uint8_t>(buf.data(), n));
  }
  void OnPushAck(const Session&, const protocol::PushAckBody&) override {}
  void OnDisconnect(const Session&) override {}

 private:
  GatewayPort* port_;
  uint64_t next_msg_id_ = 0;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(1024);
};

class EchoFactory final : public BackendFactory {
 public:
  std::unique_ptr<Backend> ForShard(GatewayPort* port) override { return std::make_unique<EchoBackend>(port); }
};

}  // namespace

std::unique_ptr<BackendFactory> MakeEchoBackendFactory() { return std::make_unique<EchoFactory>(); }

}  // namespace longlink::gateway
