import CairnMetrics
import CairnTestSupport
import NIOCore
import NIOPosix
import Prometheus
import Testing

/// The listener over a real socket (curl as the client), the gRPC
/// handled-call table and the heartbeat round-trip sampler.
@Suite struct MetricsServerTests {
    @Test func servesMetricsAndHealthOverHTTP() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let registry = PrometheusCollectorRegistry()
        registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "etcd_server_has_leader", unitName: "",
                helpText: "Whether or not a leader exists.")
        ).set(to: 1)
        let checks = HealthChecks(
            health: { _ in .failed("RAFT NO LEADER") },
            livez: [NamedHealthCheck(name: "serializable_read") { nil }],
            readyz: [NamedHealthCheck(name: "linearizable_read") { "etcdserver: no leader" }])
        let server = try await MetricsServer.start(
            host: "127.0.0.1", port: 0, responder: MetricsResponder(registry: registry, checks: checks),
            group: group)
        let base = "http://127.0.0.1:\(server.localAddress.port!)"
        // Two requests on one kept-alive connection, then the others.
        let metrics = try TestProcess.run(
            "curl", ["-sS", "-w", "|%{http_code}\n", "\(base)/metrics", "\(base)/livez"], timeoutSeconds: 20)
        #expect(metrics.status == 0, "\(metrics.stderr)")
        #expect(
            metrics.stdout.contains("# TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1.0\n|200\n")
        )
        #expect(metrics.stdout.hasSuffix("ok\n|200\n"))
        let health = try TestProcess.run("curl", ["-sS", "-w", "|%{http_code}", "\(base)/health"])
        #expect(health.stdout == "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n|503")
        let readyz = try TestProcess.run("curl", ["-sS", "-w", "|%{http_code}", "\(base)/readyz"])
        #expect(readyz.stdout == "[-]linearizable_read failed: etcdserver: no leader\n\n|503")
        let missing = try TestProcess.run("curl", ["-sS", "-w", "|%{http_code}", "\(base)/nope"])
        #expect(missing.stdout == "404 page not found\n|404")
        await server.shutdown()
        let refused = try TestProcess.run("curl", ["-sS", "\(base)/metrics"])
        #expect(refused.status != 0)
        try await group.shutdownGracefully()
    }

    @Test func parsesMetricsURLs() throws {
        let parsed = try MetricsServer.parse(urls: "http://127.0.0.1:2381,http://[::1]:2382/")
        #expect(parsed.map(\.host) == ["127.0.0.1", "::1"])
        #expect(parsed.map(\.port) == [2381, 2382])
        #expect(throws: MetricsURLError.self) { try MetricsServer.parse(urls: "https://127.0.0.1:2381") }
        #expect(throws: MetricsURLError.self) { try MetricsServer.parse(urls: "http://127.0.0.1") }
        #expect(throws: MetricsURLError.self) { try MetricsServer.parse(urls: "http://127.0.0.1:99999") }
    }

    @Test func countsHandledCallsPerMethodAndCode() {
        let registry = PrometheusCollectorRegistry()
        let handled = GRPCServerMetrics(registry: registry, methods: GRPCServerMetrics.etcdMethods)
        handled.handled(path: "/etcdserverpb.KV/Range", code: 0)
        handled.handled(path: "/etcdserverpb.KV/Range", code: 0)
        handled.handled(path: "/etcdserverpb.Watch/Watch", code: 1)
        handled.handled(path: "/etcdserverpb.KV/Nope", code: 0)
        handled.handled(path: "/etcdserverpb.KV/Put", code: 99)
        let text = registry.emitToString()
        #expect(
            text.contains(
                #"grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Range",grpc_code="OK"} 2"#
            ))
        #expect(
            text.contains(
                #"grpc_server_handled_total{grpc_type="bidi_stream",grpc_service="etcdserverpb.Watch",grpc_method="Watch",grpc_code="Canceled"} 1"#
            ))
        #expect(
            text.contains(
                #"grpc_server_handled_total{grpc_type="server_stream",grpc_service="etcdserverpb.Maintenance",grpc_method="Snapshot",grpc_code="Unavailable"} 0"#
            ))
        #expect(!text.contains("Nope"))
        let series = text.split(separator: "\n").filter { $0.hasPrefix("grpc_server_handled_total{") }
        #expect(series.count == GRPCServerMetrics.etcdMethods.count * 17)
    }

    @Test func roundTripsAreSampledOneAtATime() {
        var trips = PeerRoundTrips(staleAfter: .seconds(2))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        // One heartbeat answered: one sample.
        trips.sent(to: 2, at: start)
        #expect(trips.answered(by: 2, at: start + .milliseconds(3)) == .milliseconds(3))
        #expect(trips.outstandingPeers == 0)
        // Two outstanding: the first answer samples the first heartbeat,
        // the second answer (for a heartbeat sent later) does not.
        trips.sent(to: 2, at: start + .milliseconds(100))
        trips.sent(to: 2, at: start + .milliseconds(200))
        #expect(trips.answered(by: 2, at: start + .milliseconds(250)) == .milliseconds(150))
        #expect(trips.answered(by: 2, at: start + .milliseconds(251)) == nil)
        #expect(trips.outstandingPeers == 0)
        // An answer nobody waits for is ignored.
        #expect(trips.answered(by: 3, at: start) == nil)
        // A lost answer: the probe is abandoned after staleAfter.
        trips.sent(to: 3, at: start)
        trips.sent(to: 3, at: start + .seconds(3))
        #expect(trips.answered(by: 3, at: start + .seconds(3) + .milliseconds(1)) == .milliseconds(1))
        trips.sent(to: 2, at: start)
        trips.reset()
        #expect(trips.outstandingPeers == 0)
    }
}
