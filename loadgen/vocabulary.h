// The words the scenario and the engine share for what a simulated client does: how it talks to its target,
// how it leaves when the scenario takes it down, whom it sends messages to and how big they are. Each is
// defined once, here, so a validated Scenario hands its values to the engine unchanged (no mapping from one
// set of names to another). How users spell each value in YAML and flags is the scenario's business
// (scenario.cc); the engine only sees the enums.
#pragma once

#include <cstdint>

namespace longlink::loadgen {

// How a client talks to its target: the longlink protocol over plain TCP ("longlink"), longlink frames
// carried one per binary WebSocket message, subprotocol longlink.v1 ("ws"), or generic WebSocket echo
// ("ws-echo": upgrade, WebSocket pings, binary messages whose echo is timed) against any echo server.
enum class Transport : uint8_t { kTcp, kWebSocket, kWebSocketEcho };

// How a client leaves when the scenario takes it down (a storm, churn, a drain, the end of a spike): LOGOUT
// then close ("logout"), a plain close that sends FIN without LOGOUT ("close"), or an abortive close that
// sends RST ("reset").
enum class Leave : uint8_t { kLogout, kClose, kReset };

// Whom a SEND goes to: the sender's own user, what the echo backend delivers ("self"), a random user
// ("random_user"), or a random group the sender belongs to ("groups").
enum class TargetSelection : uint8_t { kSelf, kRandomUser, kGroups };

// How payload sizes are drawn: one fixed size, uniform between a minimum and a maximum, or lognormal around
// a median, clamped to the minimum and maximum.
enum class PayloadDistribution : uint8_t { kFixed, kUniform, kLognormal };

}  // namespace longlink::loadgen
