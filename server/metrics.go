package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// Inventory is what the metrics need to count: pods and containers per
// handler (containers also per state) and running shims.
type Inventory interface {
	Inventory() (pods map[string]int, containers map[string]map[string]int, shims int)
}

// Metrics are berthd's Prometheus metrics.
type Metrics struct {
	mu        sync.Mutex
	inv       Inventory
	reg       *prometheus.Registry
	calls     *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	pulls     *prometheus.CounterVec
	pullBytes prometheus.Counter
	pullTime  prometheus.Histogram
}

// NewMetrics registers berth's metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cri_requests_total", Help: "CRI calls by method and gRPC code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_cri_request_duration_seconds", Help: "CRI call latency by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_image_pulls_total", Help: "Image pulls by result.",
		}, []string{"result"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_image_pull_bytes_total", Help: "Compressed bytes downloaded by pulls.",
		}),
		pullTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_image_pull_duration_seconds", Help: "Duration of image pulls.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
	}
	m.reg.MustRegister(m.calls, m.latency, m.pulls, m.pullBytes, m.pullTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		inventoryCollector{m})
	return m
}

// SetInventory names what is asked for pods, containers and shims at
// every scrape (the pod manager, which exists after the image store).
func (m *Metrics) SetInventory(inv Inventory) {
	m.mu.Lock()
	m.inv = inv
	m.mu.Unlock()
}

// Observe records one CRI call (the interceptor's Observer).
func (m *Metrics) Observe(method string, code codes.Code, d time.Duration) {
	m.calls.WithLabelValues(method, code.String()).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

// ObservePull records one pull.
func (m *Metrics) ObservePull(bytes int64, d time.Duration, err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.pulls.WithLabelValues(result).Inc()
	if err == nil {
		m.pullBytes.Add(float64(bytes))
		m.pullTime.Observe(d.Seconds())
	}
}

// Serve serves /metrics on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return lis.Addr(), nil
}

var (
	podsDesc       = prometheus.NewDesc("berth_pods", "Pod sandboxes by handler.", []string{"handler"}, nil)
	containersDesc = prometheus.NewDesc("berth_containers", "Containers by handler and state.", []string{"handler", "state"}, nil)
	shimsDesc      = prometheus.NewDesc("berth_shims", "Shims berthd is connected to.", nil, nil)
)

// inventoryCollector counts pods, containers and shims at scrape time.
type inventoryCollector struct{ m *Metrics }

func (c inventoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- containersDesc
	ch <- shimsDesc
}

func (c inventoryCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	inv := c.m.inv
	c.m.mu.Unlock()
	if inv == nil {
		return
	}
	pods, containers, shims := inv.Inventory()
	for h, n := range pods {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n), h)
	}
	for h, states := range containers {
		for st, n := range states {
			ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n), h, st)
		}
	}
	ch <- prometheus.MustNewConstMetric(shimsDesc, prometheus.GaugeValue, float64(shims))
}
