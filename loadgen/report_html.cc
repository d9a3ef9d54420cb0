// The HTML report: one self-contained page (inline CSS and SVG, no scripts, no fetches) that opens from a
// file on any machine. The charts are drawn here as SVG paths rather than by a charting library: the page
// stays a few hundred kilobytes for a week-long run (the timeline is bounded), prints, and needs nothing
// at view time.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loadgen/report.h"

namespace longlink::loadgen {
namespace {

std::string Escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// 1234567 -> "1.23M"; 0.5 -> "0.5"; keeps three significant digits.
std::string Short(double v) {
  double a = std::fabs(v);
  if (a >= 1e9) return absl::StrFormat("%.3gG", v / 1e9);
  if (a >= 1e6) return absl::StrFormat("%.3gM", v / 1e6);
  if (a >= 1e4) return absl::StrFormat("%.3gk", v / 1e3);
  if (a >= 100 || v == std::floor(v)) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.3g", v);
}

// Whole numbers with thousands separators: 56164 -> "56,164".
std::string Count(double v) {
  std::string digits = absl::StrFormat("%.0f", std::fabs(v));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string Millis(double ms) {
  if (ms >= 1000) return absl::StrFormat("%.2f s", ms / 1000);
  if (ms >= 100) return absl::StrFormat("%.0f ms", ms);
  if (ms >= 10) return absl::StrFormat("%.1f ms", ms);
  return absl::StrFormat("%.2f ms", ms);
}

// Ticks at 1, 2 or 5 times a power of ten, about `want` of them over [0, hi]; returns the step and
// raises *hi to the last tick.
double NiceStep(double* hi, int want) {
  if (!(*hi > 0)) *hi = 1;
  double raw = *hi / want;
  double mag = std::pow(10, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  *hi = std::ceil(*hi / step - 1e-9) * step;
  return step;
}

const char* const kColors[] = {"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"};

struct Series {
  Series(std::string n, std::vector<double> v, bool dash = false) : name(std::move(n)), y(std::move(v)), dashed(dash) {}
  std::string name;
  std::vector<double> y;
  bool dashed = false;
  std::vector<double> x;  // empty: the chart's shared x
};

// The x axis: seconds of the run, or the percentile spectrum (x = -log10(1 - p/100)).
enum class XAxis { kTime, kPercentile };

constexpr double kW = 920, kH = 250, kLeft = 64, kRight = 14, kTop = 12, kBottom = 30;

std::string TimeLabel(double s, double step) {
  if (step >= 3600) return absl::StrFormat("%.0fh", s / 3600);
  if (step >= 60) return s >= 3600 ? absl::StrFormat("%dh%02d", static_cast<int>(s / 3600),
                                                     static_cast<int>(std::fmod(s, 3600) / 60))
                                   : absl::StrFormat("%.0fm", s / 60);
  return absl::StrFormat("%.0fs", s);
}

// One chart as a <figure>: caption with legend, then the SVG. Every series becomes one <path
// class="series">; points with a NaN y are gaps.
std::string Chart(const std::string& title, const std::string& unit, XAxis axis, const std::vector<double>& x,
                  const std::vector<Series>& series, const std::string& note = "") {
  std::ostringstream o;
  o << "<figure class=\"chart\" data-title=\"" << Escape(title) << "\"><figcaption><b>" << Escape(title) << "</b>";
  if (!unit.empty()) o << " <span class=\"unit\">(" << Escape(unit) << ")</span>";
  for (size_t i = 0; i < series.size(); ++i) {
    o << "<span class=\"key\"><i style=\"background:" << kColors[i % 7] << "\"></i>" << Escape(series[i].name)
      << "</span>";
  }
  o << "</figcaption>";
  double x_lo = 0, x_hi = x.empty() ? 0 : x.back();
  for (const Series& s : series) {
    if (!s.x.empty()) x_hi = std::max(x_hi, s.x.back());
  }
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  double y_hi = 0;
  for (const Series& s : series) {
    for (double v : s.y) {
      if (std::isfinite(v)) y_hi = std::max(y_hi, v);
    }
  }
  const double pw = kW - kLeft - kRight, ph = kH - kTop - kBottom;
  auto px = [&](double v) { return kLeft + (v - x_lo) / (x_hi - x_lo) * pw; };
  // The percentile spectrum has a log y axis (decades of milliseconds), so a fast latency stays readable
  // next to a slow one; time charts are linear from 0.
  bool log_y = axis == XAxis::kPercentile;
  double y_lo = 0, y_step = 0;
  if (log_y) {
    double lo = y_hi;
    for (const Series& s : series) {
      for (double v : s.y) {
        if (std::isfinite(v) && v > 0) lo = std::min(lo, v);
      }
    }
    y_lo = std::floor(std::log10(std::max(lo, 0.001)));
    y_hi = std::max(y_lo + 1, std::ceil(std::log10(std::max(y_hi, 0.001))));
    y_step = 1;
  } else {
    y_hi *= 1.05;
    y_step = NiceStep(&y_hi, 5);
  }
  auto py = [&](double v) {
    if (log_y) v = std::log10(std::max(v, std::pow(10.0, y_lo)));
    return kTop + ph - (v - y_lo) / (y_hi - y_lo) * ph;
  };
  o << absl::StrFormat("<svg viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"%s\">", kW, kH, Escape(title));
  o << "<g class=\"grid\">";
  for (double e = y_lo; e <= y_hi + y_step / 2; e += y_step) {
    double v = log_y ? std::pow(10.0, e) : e;
    o << absl::StrFormat("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", kLeft, kW - kRight, py(v), py(v));
    o << absl::StrFormat("<text class=\"yl\" x=\"%.1f\" y=\"%.1f\">%s</text>", kLeft - 6, py(v) + 4,
                         v < 1 ? absl::StrFormat("%g", v) : Short(v));
  }
  if (axis == XAxis::kTime) {
    double span = x_hi - x_lo, unit_s = span > 3 * 3600 ? 3600 : span > 600 ? 60 : 1;
    double hi = span / unit_s;
    double step = NiceStep(&hi, 8) * unit_s;
    for (double v = 0; v <= x_hi + 1e-9; v += step) {
      o << absl::StrFormat("<line class=\"v\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", px(v), px(v), kTop,
                           kTop + ph);
      o << absl::StrFormat("<text class=\"xl\" x=\"%.1f\" y=\"%.1f\">%s</text>", px(v), kH - 10, TimeLabel(v, step));
    }
  } else {
    static const char* const kLabels[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"};
    for (int k = 0; k <= 6 && k <= x_hi; ++k) {
      o << absl::StrFormat("<line class=\"v\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", px(k), px(k), kTop,
                           kTop + ph);
      o << absl::StrFormat("<text class=\"xl\" x=\"%.1f\" y=\"%.1f\">%s</text>", px(k), kH - 10, kLabels[k]);
    }
  }
  o << "</g>";
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const std::vector<double>& sx = s.x.empty() ? x : s.x;
    std::string d;
    bool pen_down = false;
    size_t n = std::min(s.y.size(), sx.size());
    for (size_t j = 0; j < n; ++j) {
      if (!std::isfinite(s.y[j])) {
        pen_down = false;
        continue;
      }
      absl::StrAppendFormat(&d, "%s%.1f %.1f", pen_down ? "L" : "M", px(sx[j]), py(s.y[j]));
      pen_down = true;
    }
    o << absl::StrFormat("<path class=\"series\" d=\"%s\" stroke=\"%s\"%s><title>%s</title></path>", d,
                         kColors[i % 7], s.dashed ? " stroke-dasharray=\"6 4\"" : "", Escape(s.name));
  }
  o << absl::StrFormat("<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", kLeft, kTop,
                       pw, ph);
  o << "</svg>";
  if (!note.empty()) o << "<p class=\"note\">" << Escape(note) << "</p>";
  o << "</figure>\n";
  return o.str();
}

std::string Tile(const std::string& label, const std::string& value, const std::string& sub, const char* tone = "") {
  return absl::StrFormat("<div class=\"tile %s\"><div class=\"v\">%s</div><div class=\"l\">%s</div><div class=\"s\">%s</div></div>",
                         tone, Escape(value), Escape(label), Escape(sub));
}

double Metric(const Report& r, const std::string& name) {
  auto it = r.metrics.find(name);
  return it == r.metrics.end() ? 0 : it->second;
}

const char* const kStyle = R"(
:root{--fg:#111827;--mute:#6b7280;--line:#e5e7eb;--ok:#15803d;--bad:#b91c1c;--warn:#b45309}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;background:#f9fafb}
main{max-width:980px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
.facts{color:var(--mute);margin:0 0 14px}
.verdict{display:inline-block;padding:3px 10px;border-radius:4px;color:#fff;font-weight:600;margin-left:8px;font-size:13px;vertical-align:3px}
.verdict.ok{background:var(--ok)}.verdict.bad{background:var(--bad)}.verdict.warn{background:var(--warn)}
.invalid{border-left:4px solid var(--warn);background:#fffbeb;padding:8px 12px;margin:10px 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.tile{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.tile .v{font-size:22px;font-weight:600}.tile .l{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--mute)}
.tile .s{font-size:12px;color:var(--mute)}.tile.bad .v{color:var(--bad)}.tile.good .v{color:var(--ok)}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}th{background:#f3f4f6;font-weight:600}
td.ok{color:var(--ok);font-weight:600}td.bad{color:var(--bad);font-weight:600}td.na{color:var(--warn);font-weight:600}
figure.chart{margin:0 0 14px;background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 10px 4px}
figcaption{font-size:13px;margin-bottom:2px}.unit{color:var(--mute)}
.key{margin-left:14px;color:#374151;white-space:nowrap}.key i{display:inline-block;width:14px;height:3px;margin-right:5px;vertical-align:middle}
svg{width:100%;height:auto;display:block}
svg .grid line{stroke:var(--line);stroke-width:1}svg .grid line.v{stroke:#f3f4f6}
svg text{font-size:11px;fill:var(--mute)}svg text.yl{text-anchor:end}svg text.xl{text-anchor:middle}
svg path.series{fill:none;stroke-width:1.6;stroke-linejoin:round}svg rect.frame{fill:none;stroke:#d1d5db}
.note{color:var(--mute);font-size:12px;margin:2px 0 4px}
pre{background:#fff;border:1px solid var(--line);padding:10px;overflow:auto;font-size:12px}
footer{color:var(--mute);font-size:12px;margin-top:30px}
)";

}  // namespace

std::string RenderHtml(const Report& r, const Scenario& s) {
  std::ostringstream o;
  const LedgerTotals& l = r.ledger;
  int code = ReportExitCode(r);
  std::string name = s.name.empty() ? "(flags)" : s.name;
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
    << "<title>longlink-loadgen report: " << Escape(name) << "</title><style>" << kStyle << "</style></head><body><main>\n";
  const char* verdict_class = code == kExitOk ? "ok" : code == kExitSaturated ? "warn" : "bad";
  const char* verdict = code == kExitOk ? "PASS" : code == kExitSaturated ? "INVALID RUN" : "THRESHOLDS VIOLATED";
  o << "<h1>Capacity test " << Escape(name) << "<span class=\"verdict " << verdict_class << "\" id=\"verdict\">"
    << verdict << "</span></h1>\n";
  char when[64] = "";
  time_t now = time(nullptr);
  tm utc{};
  gmtime_r(&now, &utc);
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &utc);
  std::string targets;
  for (const Endpoint& e : s.target.addresses) absl::StrAppend(&targets, targets.empty() ? "" : ", ", e.host, ":", e.port);
  const char* transport = s.target.protocol == Transport::kTcp         ? "TCP"
                          : s.target.protocol == Transport::kWebSocket ? "WebSocket"
                                                                       : "WebSocket echo";
  o << "<p class=\"facts\">" << Escape(absl::StrFormat(
                                    "%s clients over %s against %s; %.1f s; %d generator shards; seed %d. Finished %s "
                                    "on %s.",
                                    Count(static_cast<double>(s.clients)), transport, targets, r.elapsed_s, s.shards,
                                    s.seed, when, MachineDescription()))
    << "</p>\n";
  if (!r.valid) o << "<div class=\"invalid\"><b>Run invalid.</b> " << Escape(r.invalid_reason) << "</div>\n";

  // Headline tiles.
  double peak_connects = 0, peak_delivered = 0;
  for (const TimelinePoint& p : r.timeline) {
    peak_connects = std::max(peak_connects, p.connects);
    peak_delivered = std::max(peak_delivered, p.delivered);
  }
  auto latency = [&r](const char* n) -> const Report::Latency* {
    for (const Report::Latency& lat : r.latencies) {
      if (lat.name == n && lat.count > 0) return &lat;
    }
    return nullptr;
  };
  o << "<h2>Headlines</h2><div class=\"tiles\">";
  o << Tile("peak online", Count(Metric(r, "connected_peak")), "of " + Count(static_cast<double>(s.clients)) + " clients");
  o << Tile("connect rate", Short(peak_connects) + "/s", "peak second; " + Short(s.connect_rate) + "/s planned");
  o << Tile("messages sent", Count(static_cast<double>(l.sent)), Count(static_cast<double>(l.acked)) + " acknowledged");
  o << Tile("delivered", Count(static_cast<double>(l.delivered_unique)),
            "peak " + Short(peak_delivered) + "/s; " + Count(static_cast<double>(l.expected_deliveries)) + " expected");
  if (const Report::Latency* e2e = latency("end_to_end")) {
    o << Tile("end-to-end p99", Millis(e2e->p99), "p50 " + Millis(e2e->p50) + ", max " + Millis(e2e->max));
  }
  if (const Report::Latency* hb = latency("heartbeat_rtt")) {
    o << Tile("heartbeat p99", Millis(hb->p99), "p50 " + Millis(hb->p50));
  }
  if (const Report::Latency* login = latency("login")) {
    o << Tile("login p99", Millis(login->p99), "p50 " + Millis(login->p50));
  }
  o << Tile("lost", Count(static_cast<double>(l.lost)), "acknowledged, never delivered", l.lost ? "bad" : "good");
  o << Tile("duplicated", Count(static_cast<double>(l.duplicates)), Count(static_cast<double>(l.out_of_order)) + " out of order",
            l.duplicates ? "bad" : "good");
  o << Tile("reconnects", Count(Metric(r, "reconnects")),
            Count(Metric(r, "connect_errors")) + " connect errors, " + Count(Metric(r, "login_errors")) + " login errors");
  if (!s.network.mix.empty()) {
    o << Tile("zombies reaped", Count(Metric(r, "zombies_reaped")) + " / " + Count(Metric(r, "zombies")),
              Metric(r, "zombie_reap_p99_ms") > 0 ? "p99 reap " + Millis(Metric(r, "zombie_reap_p99_ms")) : "");
  }
  o << Tile("generator lag p99", Millis(Metric(r, "generator_lag_p99_ms")), r.valid ? "below the 100 ms bound" : "over the 100 ms bound",
            r.valid ? "" : "bad");
  o << "</div>\n";

  // Thresholds.
  o << "<h2>Thresholds</h2>";
  if (r.thresholds.empty()) {
    o << "<p class=\"note\">The scenario sets no thresholds.</p>";
  } else {
    o << "<table id=\"thresholds\"><tr><th>threshold</th><th>observed</th><th>result</th></tr>";
    for (const ThresholdResult& t : r.thresholds) {
      o << "<tr><td>" << Escape(t.text) << "</td><td>" << (t.measured ? absl::StrFormat("%.3f", t.observed) : "-")
        << "</td><td class=\"" << (!t.measured ? "na\">not measured" : t.held ? "ok\">pass" : "bad\">fail")
        << "</td></tr>";
    }
    o << "</table>\n";
  }

  // Charts over time.
  o << "<h2>Over time</h2>";
  auto column = [&r](double TimelinePoint::* field) {
    std::vector<double> v;
    v.reserve(r.timeline.size());
    for (const TimelinePoint& p : r.timeline) v.push_back(p.*field);
    return v;
  };
  // Percentiles of a second without samples are gaps, not zeros.
  auto latency_column = [&column](double TimelinePoint::* field) {
    std::vector<double> v = column(field);
    for (double& d : v) {
      if (d == 0) d = NAN;
    }
    return v;
  };
  std::vector<double> x = column(&TimelinePoint::t_s);
  std::string step_note = r.timeline_spacing_s > 1
                              ? absl::StrFormat("One point per %d s (long run: rates averaged, latencies the worst "
                                                "second of each step).",
                                                r.timeline_spacing_s)
                              : "";
  if (r.timeline.size() < 2) {
    o << "<p class=\"note\">The run was too short for charts over time (one point a second).</p>";
  } else {
    o << Chart("Clients online vs target", "clients", XAxis::kTime, x,
               {{"online (logged in)", column(&TimelinePoint::online)},
                {"connected", column(&TimelinePoint::connected)},
                {"target", column(&TimelinePoint::target), true}},
               step_note);
    o << Chart("Connects and logins", "per second", XAxis::kTime, x,
               {{"connects", column(&TimelinePoint::connects)}, {"logins", column(&TimelinePoint::logins)}});
    o << Chart("Messages", "per second", XAxis::kTime, x,
               {{"sent", column(&TimelinePoint::sent)},
                {"acknowledged", column(&TimelinePoint::acked)},
                {"delivered", column(&TimelinePoint::delivered)}});
    o << Chart("Latency percentiles of each second", "ms", XAxis::kTime, x,
               {{"end-to-end p50", latency_column(&TimelinePoint::e2e_p50)},
                {"end-to-end p99", latency_column(&TimelinePoint::e2e_p99)},
                {"heartbeat p99", latency_column(&TimelinePoint::heartbeat_p99)},
                {"generator lag p99", latency_column(&TimelinePoint::lag_p99)}});
    o << Chart("Errors and reconnects", "per second", XAxis::kTime, x,
               {{"connect and login errors", column(&TimelinePoint::connect_errors)},
                {"connections lost", column(&TimelinePoint::disconnects)},
                {"reconnects", column(&TimelinePoint::reconnects)},
                {"protocol errors", column(&TimelinePoint::protocol_errors)}});
    o << Chart("Weak-network events", "per second", XAxis::kTime, x,
               {{"flaps", column(&TimelinePoint::flaps)},
                {"zombies (half-open)", column(&TimelinePoint::zombies)},
                {"NAT black holes", column(&TimelinePoint::nat_blackholes)}},
               s.network.mix.empty() ? "The scenario simulates no weak networks." : "");
  }

  // Latency distributions: the percentile spectrum of each measured latency.
  o << "<h2>Latency distributions</h2>";
  std::vector<Series> spectra;
  const char* const kShown[] = {"end_to_end", "send_ack", "heartbeat_rtt", "login", "connect", "reconnect", "sync"};
  for (const char* n : kShown) {
    const Report::Latency* lat = latency(n);
    if (lat == nullptr || lat->spectrum.empty()) continue;
    Series se{lat->name, {}};
    // x = -log10(1 - p/100): 90% at 1, 99% at 2, ...; the maximum sits 0.3 past the last percentile.
    for (size_t k = 0; k + 1 < lat->spectrum.size(); ++k) {
      se.x.push_back(-std::log10(1.0 - lat->spectrum[k].first / 100.0));
      se.y.push_back(lat->spectrum[k].second);
    }
    se.x.push_back((se.x.empty() ? 0 : se.x.back()) + 0.3);
    se.y.push_back(lat->max);
    spectra.push_back(std::move(se));
  }
  if (spectra.empty()) {
    o << "<p class=\"note\">No latency was measured.</p>";
  } else {
    o << Chart("Percentile spectrum", "ms, log scale", XAxis::kPercentile, {}, spectra,
               "x: the share of samples at or below the latency, on a log scale towards the tail; the last point "
               "of each line is its maximum.");
  }
  o << "<table id=\"timings\"><tr><th>latency</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th>"
       "<th>max</th></tr>";
  for (const Report::Latency& lat : r.latencies) {
    if (lat.count == 0) continue;
    o << "<tr><td>" << Escape(lat.name) << "</td><td>" << Count(static_cast<double>(lat.count)) << "</td><td>"
      << Millis(lat.p50) << "</td><td>" << Millis(lat.p90) << "</td><td>" << Millis(lat.p99) << "</td><td>"
      << Millis(lat.p999) << "</td><td>" << Millis(lat.max) << "</td></tr>";
  }
  o << "</table>\n";

  // The ledger.
  o << "<h2>Ledger</h2><table id=\"ledger\"><tr><th>entry</th><th>count</th></tr>";
  const std::pair<const char*, uint64_t> rows[] = {
      {"messages sent", l.sent},
      {"acknowledged by the server", l.acked},
      {"unacknowledged at the end (in flight or refused)", l.inflight},
      {"deliveries expected (acknowledged x recipients)", l.expected_deliveries},
      {"delivered once", l.delivered_unique},
      {"lost (acknowledged, never delivered)", l.lost},
      {"duplicated", l.duplicates},
      {"out of order", l.out_of_order},
      {"delivered before their acknowledgement arrived", l.delivered_unacked},
      {"delivered to a client outside the recipients", l.delivered_to_non_recipient},
  };
  for (const auto& [label, v] : rows) {
    o << "<tr><td>" << label << "</td><td>" << Count(static_cast<double>(v)) << "</td></tr>";
  }
  o << "</table><p class=\"note\">"
    << (l.Clean() ? "Every acknowledged message reached each of its recipients exactly once."
                  : "The ledger found acknowledged messages lost, duplicated or misdelivered.")
    << "</p>\n";

  o << "<h2>Scenario</h2><details><summary>the scenario as run (YAML)</summary><pre>"
    << Escape(ScenarioToYaml(s, /*redact_secret=*/true)) << "</pre></details>\n";
  o << "<footer>longlink-loadgen; exit code " << code << ".</footer>\n</main></body></html>\n";
  return o.str();
}

}  // namespace longlink::loadgen
