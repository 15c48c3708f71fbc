import CairnMetrics
import CairnRPC
import Prometheus

/// The gateway's Prometheus series (issue 7's names) and its health checks,
/// served on `--listen-metrics-urls` by `CairnMetrics.MetricsServer`.
///
/// Per-tenant counters are created once per tenant (`counters(tenant:)`)
/// and incremented directly on the request path (atomic adds); the watch
/// gauges are read from the coalescer when scraped.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// `grpc_server_handled_total`, for the RPC server's `callFinished` hook.
    public let handled: GRPCServerMetrics

    static let cacheHitsHelp = "Reads answered from the gateway's watch-fed cache."
    static let cacheMissesHelp = "Reads of a cached prefix the cache could not answer (forwarded)."
    static let rateLimitedHelp = "Requests refused with ResourceExhausted by a tenant's limits."
    static let clientWatchesHelp = "Watches clients hold open on the gateway (and its read cache's feeds)."
    static let upstreamWatchesHelp = "Watches the gateway holds open on the cluster for its clients."
    static let cacheKeysHelp = "Keys a read cache holds (0 while it loads or reloads)."
    static let cacheRevisionHelp =
        "The revision a read cache holds its prefix at (0 while it loads or reloads)."

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.handled = GRPCServerMetrics(registry: registry, methods: GRPCServerMetrics.etcdMethods)
    }

    /// Sets the read caches' gauges (run when scraped).
    func collectCaches(_ caches: [GatewayReadCache.CacheStatus]) {
        for cache in caches {
            let labels = [("tenant", cache.tenant), ("prefix", cache.prefix)]
            self.registry.makeGauge(
                descriptor: Self.gateway("cache_keys", help: Self.cacheKeysHelp), labels: labels
            )
            .set(Double(cache.keys))
            self.registry.makeGauge(
                descriptor: Self.gateway("cache_revision", help: Self.cacheRevisionHelp), labels: labels
            ).set(Double(cache.revision ?? 0))
        }
    }

    /// `cairn_gateway_<name>[_<unit>]`.
    static func gateway(_ name: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "cairn", subsystem: "gateway", metricName: name, unitName: unit, helpText: help)
    }

    /// The counters of one tenant (the same objects for the same name).
    func counters(tenant: String) -> TenantCounters {
        let labels = [("tenant", tenant)]
        return TenantCounters(
            cacheHits: self.registry.makeCounter(
                descriptor: Self.gateway("cache_hits", unit: "total", help: Self.cacheHitsHelp),
                labels: labels),
            cacheMisses: self.registry.makeCounter(
                descriptor: Self.gateway("cache_misses", unit: "total", help: Self.cacheMissesHelp),
                labels: labels),
            rateLimited: self.registry.makeCounter(
                descriptor: Self.gateway("rate_limited", unit: "total", help: Self.rateLimitedHelp),
                labels: labels))
    }

    /// Sets the watch gauges of every tenant from the coalescer's counts
    /// (run when scraped); tenants that have none read 0.
    func collectWatches(_ gauges: [String: WatchTenantGauges], tenants: [String]) {
        for tenant in Set(tenants).union(gauges.keys) {
            let labels = [("tenant", tenant)]
            let counts = gauges[tenant] ?? WatchTenantGauges()
            self.registry.makeGauge(
                descriptor: Self.gateway("client_watches", help: Self.clientWatchesHelp), labels: labels
            ).set(Double(counts.clientWatches))
            self.registry.makeGauge(
                descriptor: Self.gateway("upstream_watches", help: Self.upstreamWatchesHelp), labels: labels
            ).set(Double(counts.upstreamWatches))
        }
    }
}

/// The series the gateway counts per tenant.
public struct TenantCounters: Sendable {
    public let cacheHits: Counter
    public let cacheMisses: Counter
    public let rateLimited: Counter
}

extension Gateway {
    /// `/metrics`, `/health`, `/livez` and `/readyz` of the gateway:
    /// healthy and ready while a member answers and the cluster has a
    /// leader; live while the process runs.
    public func metricsResponder() -> MetricsResponder {
        let checks = HealthChecks(
            health: { _ in
                guard self.upstream.hasReadyConnection else { return .failed("NO UPSTREAM") }
                guard self.upstream.leaderEndpoint != nil else { return .failed("RAFT NO LEADER") }
                return .ok
            },
            livez: [NamedHealthCheck(name: "serving") { nil }],
            readyz: [
                NamedHealthCheck(name: "upstream") {
                    self.upstream.hasReadyConnection ? nil : "no member of the cluster answers"
                },
                NamedHealthCheck(name: "leader") {
                    self.upstream.leaderEndpoint == nil ? "the cluster has no known leader" : nil
                },
            ])
        return MetricsResponder(registry: self.metrics.registry, checks: checks) {
            let tenants = self.tenants.withLockedValue { $0.directory.tenants.map(\.name) }
            self.metrics.collectWatches(self.watches.gauges(), tenants: tenants)
            self.metrics.collectCaches(self.readCache.status)
        }
    }
}
