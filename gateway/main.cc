// longlink-gateway: the command-line entry point.
//   longlink-gateway [flags]                 run the gateway
//   longlink-gateway mint-token --auth-secret=S --user=U --device=D [--ttl=24h]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/cli.h"
#include "protocol/token.h"
#include "gateway/backend/registry.h"
#include "gateway/config.h"
#include "gateway/server.h"

ABSL_FLAG(uint64_t, user, 0, "mint-token: user id");
ABSL_FLAG(uint32_t, device, 0, "mint-token: device id");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(24), "mint-token: how long the token stays valid");
ABSL_DECLARE_FLAG(std::string, auth_secret);
ABSL_DECLARE_FLAG(std::string, auth_secret_file);

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the longlink access gateway.\n"
      "  longlink-gateway [--port=7000 --shards=N --backend=NAME [its flags] --auth=none|token ...]\n"
      "  longlink-gateway mint-token --auth-secret=SECRET --user=ID --device=ID [--ttl=24h]\n"
      "Flag names may be written with dashes or underscores (--metrics-port or --metrics_port).");
  // --help lists the gateway's own flags and every backend's (each defined in its folder), without
  // Abseil's internal ones (--helpfull shows those too).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) { return absl::StrContains(file, "gateway/"); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  longlink::core::NormalizeFlagDashes(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::string cmd = args[1];
    if (cmd == "mint-token") {
      std::string secret = absl::GetFlag(FLAGS_auth_secret);
      if (secret.empty() && absl::GetFlag(FLAGS_auth_secret_file).empty()) {
        std::fprintf(stderr, "mint-token: --auth-secret or --auth-secret-file is required\n");
        return 2;
      }
      if (secret.empty()) {
        FILE* f = std::fopen(absl::GetFlag(FLAGS_auth_secret_file).c_str(), "r");
        if (f == nullptr) {
          std::fprintf(stderr, "mint-token: cannot read --auth-secret-file\n");
          return 2;
        }
        char buf[4096];
        size_t n = std::fread(buf, 1, sizeof(buf), f);
        std::fclose(f);
        secret.assign(buf, n);
        while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' || secret.back() == ' ')) secret.pop_back();
      }
      if (absl::GetFlag(FLAGS_ttl) <= absl::ZeroDuration()) {
        std::fprintf(stderr, "mint-token: --ttl must be positive (a token that is already expired is useless)\n");
        return 2;
      }
      uint64_t expiry = static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now() + absl::GetFlag(FLAGS_ttl)));
      std::printf("%s\n",
                  longlink::protocol::MintToken(secret, absl::GetFlag(FLAGS_user), absl::GetFlag(FLAGS_device), expiry).c_str());
      return 0;
    }
    std::fprintf(stderr, "longlink-gateway: unknown command '%s' (try --help)\n", cmd.c_str());
    return 2;
  }
  absl::StatusOr<longlink::gateway::Config> config = longlink::gateway::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "longlink-gateway: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  longlink::gateway::GatewayInfo info;
  info.shards = config->shards;
  info.max_pending_bytes = config->max_pending_bytes;
  info.max_frame_bytes = config->max_frame_bytes;
  info.port = config->port;
  absl::StatusOr<longlink::gateway::ChosenBackend> backend = longlink::gateway::ConfigureBackendFromFlags(info);
  if (!backend.ok()) {
    std::fprintf(stderr, "longlink-gateway: %s\n", std::string(backend.status().message()).c_str());
    return 2;
  }
  config->backend = backend->name;
  absl::Status st = longlink::gateway::RunGateway(*config, std::move(backend->factory));
  if (!st.ok()) {
    // Flags checked only at start-up (--bind, --backend) exit like the ones ConfigFromFlags rejects.
    if (st.code() == absl::StatusCode::kInvalidArgument || st.code() == absl::StatusCode::kFailedPrecondition) {
      std::fprintf(stderr, "longlink-gateway: %s\n", std::string(st.message()).c_str());
      return 2;
    }
    std::fprintf(stderr, "longlink-gateway: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
