#include "metrics/stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "core/process.h"
#include "metrics/http_endpoint.h"
#include "prometheus/metric_family.h"

namespace longlink::metrics {
namespace {

enum FamilyType { kCounter, kGauge, kHistogram };

std::string LabelKey(const Labels& labels) {
  std::string k;
  for (const auto& [n, v] : labels) {
    k += n;
    k += '\x1f';
    k += v;
    k += '\x1e';
  }
  return k;
}

// The process's start, from /proc/self/stat (field 22, in clock ticks since boot) and the boot time.
double ProcessStartSeconds() {
  static const double kStart = [] {
    FILE* f = std::fopen("/proc/self/stat", "re");
    if (f == nullptr) return 0.0;
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // Fields after the command name, which is in parentheses and may hold spaces.
    const char* p = std::strrchr(buf, ')');
    if (p == nullptr) return 0.0;
    unsigned long long start_ticks = 0;
    // state(3) ... starttime(22): 19 fields after ')' before it.
    if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                    &start_ticks) != 1) {
      return 0.0;
    }
    timespec now_boot{};
    timespec now_real{};
    clock_gettime(CLOCK_BOOTTIME, &now_boot);
    clock_gettime(CLOCK_REALTIME, &now_real);
    double boot = static_cast<double>(now_real.tv_sec) + now_real.tv_nsec * 1e-9 -
                  (static_cast<double>(now_boot.tv_sec) + now_boot.tv_nsec * 1e-9);
    return boot + static_cast<double>(start_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }();
  return kStart;
}

}  // namespace

struct PrometheusStats::Family {
  std::string name;
  std::string help;
  int type = kCounter;
  std::vector<Labels> order;
  std::map<std::string, size_t> index;  // label key -> position in order/values
  std::vector<double> values;
  // Histograms (unlabelled): merged bucket counts and sum.
  std::vector<uint64_t> counts;
  double sum = 0;
  const Buckets* buckets = nullptr;
};

PrometheusStats::PrometheusStats(std::string prefix) : prefix_(std::move(prefix)) {}
PrometheusStats::~PrometheusStats() = default;

PrometheusStats::Family& PrometheusStats::Get(std::string_view name, std::string_view help, int type) {
  std::string full = prefix_ + std::string(name);
  for (auto& f : families_) {
    if (f->name == full) return *f;
  }
  auto f = std::make_unique<Family>();
  f->name = std::move(full);
  f->help = std::string(help);
  f->type = type;
  families_.push_back(std::move(f));
  return *families_.back();
}

void PrometheusStats::Add(Family& f, const Labels& labels, double v) {
  std::string key = LabelKey(labels);
  auto [it, inserted] = f.index.try_emplace(key, f.values.size());
  if (inserted) {
    f.order.push_back(labels);
    f.values.push_back(0);
  }
  f.values[it->second] += v;
}

void PrometheusStats::Counter(std::string_view name, std::string_view help, const metrics::Counter& c) {
  Add(Get(name, help, kCounter), {}, static_cast<double>(c.Get()));
}
void PrometheusStats::Gauge(std::string_view name, std::string_view help, const metrics::Gauge& g) {
  Add(Get(name, help, kGauge), {}, static_cast<double>(g.Get()));
}
void PrometheusStats::Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h) {
  Family& f = Get(name, help, kHistogram);
  f.buckets = &h.buckets();
  h.AddTo(&f.counts, &f.sum);
}
void PrometheusStats::Counters(std::string_view name, std::string_view help, const metrics::Counter* cells, size_t n,
                               const LabelFn& labels) {
  Family& f = Get(name, help, kCounter);
  Labels l;
  for (size_t i = 0; i < n; ++i) {
    l.clear();
    if (labels(i, &l)) Add(f, l, static_cast<double>(cells[i].Get()));
  }
}
void PrometheusStats::ShardGauge(std::string_view name, std::string_view help, const metrics::Gauge& g) {
  Add(Get(name, help, kGauge), {{"shard", shard_}}, static_cast<double>(g.Get()));
}
void PrometheusStats::ShardGauges(std::string_view name, std::string_view help, const metrics::Gauge* cells,
                                  size_t n, const LabelFn& labels) {
  Family& f = Get(name, help, kGauge);
  Labels l;
  for (size_t i = 0; i < n; ++i) {
    l.assign({{"shard", shard_}});
    if (labels(i, &l)) Add(f, l, static_cast<double>(cells[i].Get()));
  }
}

void PrometheusStats::AppendTo(std::vector<prometheus::MetricFamily>* out) {
  for (auto& f : families_) {
    prometheus::MetricFamily mf;
    switch (f->type) {
      case kCounter:
        mf = CounterFamily(f->name, f->help);
        break;
      case kGauge:
        mf = GaugeFamily(f->name, f->help);
        break;
      default:
        mf = HistogramFamily(f->name, f->help);
        AddHistogram(&mf, f->buckets->upper_bounds, f->counts, f->sum);
        out->push_back(std::move(mf));
        continue;
    }
    for (size_t i = 0; i < f->values.size(); ++i) {
      std::vector<prometheus::ClientMetric::Label> labels;
      for (const auto& [n, v] : f->order[i]) labels.push_back({n, v});
      AddSample(&mf, f->values[i], std::move(labels));
    }
    out->push_back(std::move(mf));
  }
}

namespace {
std::string FlatName(std::string_view name) {
  std::string s(name);
  if (s.size() > 6 && s.compare(s.size() - 6, 6, "_total") == 0) s.resize(s.size() - 6);
  return s;
}
std::string FlatLabelled(std::string_view name, const Labels& labels) {
  std::string s = FlatName(name);
  for (const auto& [n, v] : labels) {
    if (n == "shard") continue;
    s += '_';
    s += v;
  }
  return s;
}
}  // namespace

void FlatStats::Counter(std::string_view name, std::string_view, const metrics::Counter& c) {
  values.emplace_back(FlatName(name), static_cast<double>(c.Get()));
}
void FlatStats::Gauge(std::string_view name, std::string_view, const metrics::Gauge& g) {
  values.emplace_back(FlatName(name), static_cast<double>(g.Get()));
}
void FlatStats::Histogram(std::string_view name, std::string_view, const metrics::Histogram& h) {
  std::vector<uint64_t> counts;
  double sum = 0;
  h.AddTo(&counts, &sum);
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  values.emplace_back(std::string(name) + "_count", static_cast<double>(n));
}
void FlatStats::Counters(std::string_view name, std::string_view, const metrics::Counter* cells, size_t n,
                         const LabelFn& labels) {
  Labels l;
  for (size_t i = 0; i < n; ++i) {
    l.clear();
    if (labels(i, &l)) values.emplace_back(FlatLabelled(name, l), static_cast<double>(cells[i].Get()));
  }
}
void FlatStats::ShardGauge(std::string_view name, std::string_view, const metrics::Gauge& g) {
  values.emplace_back(FlatName(name), static_cast<double>(g.Get()));
}
void FlatStats::ShardGauges(std::string_view name, std::string_view, const metrics::Gauge* cells, size_t n,
                            const LabelFn& labels) {
  Labels l;
  for (size_t i = 0; i < n; ++i) {
    l.clear();
    if (labels(i, &l)) values.emplace_back(FlatLabelled(name, l), static_cast<double>(cells[i].Get()));
  }
}

void CollectProcess(std::vector<prometheus::MetricFamily>* out) {
  auto rss = GaugeFamily("process_resident_memory_bytes", "Resident memory size in bytes.");
  AddSample(&rss, static_cast<double>(core::ResidentBytes()));
  out->push_back(std::move(rss));
  auto open = GaugeFamily("process_open_fds", "Number of open file descriptors.");
  AddSample(&open, static_cast<double>(core::OpenFds()));
  out->push_back(std::move(open));
  auto max = GaugeFamily("process_max_fds", "Maximum number of open file descriptors.");
  AddSample(&max, static_cast<double>(core::MaxFds()));
  out->push_back(std::move(max));
  auto cpu = CounterFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.");
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  AddSample(&cpu, static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                      static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6);
  out->push_back(std::move(cpu));
  auto start = GaugeFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.");
  AddSample(&start, ProcessStartSeconds());
  out->push_back(std::move(start));
}

}  // namespace longlink::metrics
