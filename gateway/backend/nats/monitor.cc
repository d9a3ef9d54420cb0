#include "gateway/backend/nats/monitor.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "httplib.h"
#include "metrics/http_endpoint.h"
#include "nlohmann/json.hpp"

namespace longlink::gateway::nats {
namespace {

nlohmann::json Get(httplib::Client& c, const char* path) {
  httplib::Result r = c.Get(path);
  if (!r || r->status != 200) return nlohmann::json();
  return nlohmann::json::parse(r->body, nullptr, false);
}

double Num(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->get<double>();
}

}  // namespace

void ServerMonitor::Collect(std::vector<prometheus::MetricFamily>* out) {
  struct Fam {
    const char* name;
    const char* help;
    bool counter;
  };
  static const Fam kFams[] = {
      {"up", "1 when the server's monitoring endpoint answered", false},
      {"connections", "Client connections", false},
      {"subscriptions", "Subscriptions", false},
      {"slow_consumers_total", "Clients the server cut off as slow consumers", true},
      {"in_msgs_total", "Messages received", true},
      {"out_msgs_total", "Messages sent", true},
      {"in_bytes_total", "Bytes received", true},
      {"out_bytes_total", "Bytes sent", true},
      {"mem_bytes", "Resident memory of the server", false},
      {"routes", "Cluster routes", false},
      {"jetstream_streams", "JetStream streams", false},
      {"jetstream_consumers", "JetStream consumers", false},
      {"jetstream_messages", "Messages held by JetStream", false},
      {"jetstream_bytes", "Bytes held by JetStream", false},
      {"jetstream_api_total", "JetStream API requests", true},
      {"jetstream_api_errors_total", "JetStream API requests that failed", true},
      {"jetstream_meta_leader", "1 when this server leads the JetStream meta group", false},
  };
  std::map<std::string, prometheus::MetricFamily> fams;
  for (const Fam& f : kFams) {
    std::string name = std::string("longlink_nats_server_") + f.name;
    fams.emplace(f.name, f.counter ? metrics::CounterFamily(name, f.help) : metrics::GaugeFamily(name, f.help));
  }
  for (const std::string& url : urls_) {
    absl::string_view hostport = url;
    absl::ConsumePrefix(&hostport, "http://");
    hostport = hostport.substr(0, hostport.find('/'));
    std::vector<prometheus::ClientMetric::Label> labels = {{"server", std::string(hostport)}};
    httplib::Client c(url);
    c.set_connection_timeout(1, 0);
    c.set_read_timeout(1, 0);
    nlohmann::json varz = Get(c, "/varz");
    bool up = varz.is_object();
    metrics::AddSample(&fams.at("up"), up ? 1 : 0, labels);
    if (!up) continue;
    nlohmann::json jsz = Get(c, "/jsz");
    metrics::AddSample(&fams.at("connections"), Num(varz, "connections"), labels);
    metrics::AddSample(&fams.at("subscriptions"), Num(varz, "subscriptions"), labels);
    metrics::AddSample(&fams.at("slow_consumers_total"), Num(varz, "slow_consumers"), labels);
    metrics::AddSample(&fams.at("in_msgs_total"), Num(varz, "in_msgs"), labels);
    metrics::AddSample(&fams.at("out_msgs_total"), Num(varz, "out_msgs"), labels);
    metrics::AddSample(&fams.at("in_bytes_total"), Num(varz, "in_bytes"), labels);
    metrics::AddSample(&fams.at("out_bytes_total"), Num(varz, "out_bytes"), labels);
    metrics::AddSample(&fams.at("mem_bytes"), Num(varz, "mem"), labels);
    metrics::AddSample(&fams.at("routes"), Num(varz, "routes"), labels);
    if (jsz.is_object()) {
      metrics::AddSample(&fams.at("jetstream_streams"), Num(jsz, "streams"), labels);
      metrics::AddSample(&fams.at("jetstream_consumers"), Num(jsz, "consumers"), labels);
      metrics::AddSample(&fams.at("jetstream_messages"), Num(jsz, "messages"), labels);
      metrics::AddSample(&fams.at("jetstream_bytes"), Num(jsz, "bytes"), labels);
      nlohmann::json api = jsz.value("api", nlohmann::json::object());
      metrics::AddSample(&fams.at("jetstream_api_total"), Num(api, "total"), labels);
      metrics::AddSample(&fams.at("jetstream_api_errors_total"), Num(api, "errors"), labels);
      nlohmann::json meta = jsz.value("meta_cluster", nlohmann::json::object());
      std::string leader = meta.value("leader", std::string());
      std::string name = varz.value("server_name", std::string());
      metrics::AddSample(&fams.at("jetstream_meta_leader"), !leader.empty() && leader == name ? 1 : 0, labels);
    }
  }
  for (auto& [k, f] : fams) out->push_back(std::move(f));
}

}  // namespace longlink::gateway::nats
