import CairnMetrics
import NIOConcurrencyHelpers
import Prometheus
import Testing

/// The answers of the metrics listener, as etcd's etcdhttp package gives them.
@Suite struct MetricsResponderTests {
    /// A responder whose checks answer what the test sets, recording the
    /// `/health` requests it got.
    final class Fixture: Sendable {
        let registry = PrometheusCollectorRegistry()
        let healthAnswer = NIOLockedValueBox(HealthStatus.ok)
        let failingChecks = NIOLockedValueBox<[String: String]>([:])
        let requests = NIOLockedValueBox<[HealthRequest]>([])
        let collected = NIOLockedValueBox(0)

        var responder: MetricsResponder {
            let check = { (name: String) in
                NamedHealthCheck(name: name) { self.failingChecks.withLockedValue { $0[name] } }
            }
            return MetricsResponder(
                registry: self.registry,
                checks: HealthChecks(
                    health: { request in
                        self.requests.withLockedValue { $0.append(request) }
                        return self.healthAnswer.withLockedValue { $0 }
                    },
                    livez: [check("serializable_read")],
                    readyz: [
                        check("data_corruption"), check("serializable_read"), check("linearizable_read"),
                    ]),
                collect: { self.collected.withLockedValue { $0 += 1 } })
        }
    }

    @Test func metricsAreThePrometheusTextFormatWithHelpAndType() async {
        let fixture = Fixture()
        let counter = fixture.registry.makeCounter(
            descriptor: MetricNameDescriptor(
                namespace: "etcd", subsystem: "server", metricName: "leader_changes_seen", unitName: "total",
                helpText: "The number of leader changes seen."))
        counter.increment(by: Int64(3))
        let answer = await fixture.responder.answer(method: "GET", uri: "/metrics")
        #expect(answer.status == 200)
        #expect(answer.headers.contains { $0 == ("Content-Type", MetricsResponder.metricsContentType) })
        #expect(
            answer.bodyText.contains(
                "# HELP etcd_server_leader_changes_seen_total The number of leader changes seen.\n"))
        #expect(answer.bodyText.contains("# TYPE etcd_server_leader_changes_seen_total counter\n"))
        #expect(answer.bodyText.contains("etcd_server_leader_changes_seen_total 3\n"))
        #expect(fixture.collected.withLockedValue { $0 } == 1)
    }

    @Test func healthIsEtcdsJSON() async {
        let fixture = Fixture()
        let answer = await fixture.responder.answer(method: "GET", uri: "/health")
        #expect(answer.status == 200)
        #expect(answer.bodyText == #"{"health":"true","reason":""}"#)
        #expect(fixture.requests.withLockedValue { $0 } == [HealthRequest()])
    }

    @Test func unhealthyIs503WithTheReason() async {
        let fixture = Fixture()
        fixture.healthAnswer.withLockedValue { $0 = .failed("RAFT NO LEADER") }
        let answer = await fixture.responder.answer(method: "GET", uri: "/health")
        #expect(answer.status == 503)
        #expect(answer.bodyText == "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n")
    }

    @Test func healthPassesSerializableAndExcludedAlarms() async {
        let fixture = Fixture()
        _ = await fixture.responder.answer(
            method: "GET", uri: "/health?serializable=true&exclude=NOSPACE&exclude=CORRUPT")
        _ = await fixture.responder.answer(method: "GET", uri: "/health?serializable=false&exclude=")
        #expect(
            fixture.requests.withLockedValue { $0 } == [
                HealthRequest(serializable: true, excluded: ["NOSPACE", "CORRUPT"]), HealthRequest(),
            ])
    }

    @Test func healthReasonsAreJSONEscaped() async {
        let fixture = Fixture()
        fixture.healthAnswer.withLockedValue { $0 = .failed("RANGE ERROR:a \"quoted\" <b>\n") }
        let answer = await fixture.responder.answer(method: "GET", uri: "/health")
        #expect(
            answer.bodyText == #"{"health":"false","reason":"RANGE ERROR:a \"quoted\" \u003cb\u003e\n"}"#
                + "\n")
    }

    @Test func livezAndReadyzSayOk() async {
        let fixture = Fixture()
        for path in ["/livez", "/readyz", "/readyz/linearizable_read"] {
            let answer = await fixture.responder.answer(method: "GET", uri: path)
            #expect(answer.status == 200, "\(path)")
            #expect(answer.bodyText == "ok\n", "\(path)")
        }
        let verbose = await fixture.responder.answer(method: "GET", uri: "/readyz?verbose")
        #expect(
            verbose.bodyText
                == "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n")
    }

    @Test func readyzFailsWithEveryChecksLine() async {
        let fixture = Fixture()
        fixture.failingChecks.withLockedValue { $0 = ["linearizable_read": "etcdserver: no leader"] }
        let answer = await fixture.responder.answer(method: "GET", uri: "/readyz")
        #expect(answer.status == 503)
        #expect(
            answer.bodyText
                == "[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed: etcdserver: no leader\n\n"
        )
        let livez = await fixture.responder.answer(method: "GET", uri: "/livez")
        #expect(livez.status == 200)
        let excluded = await fixture.responder.answer(method: "GET", uri: "/readyz?exclude=linearizable_read")
        #expect(excluded.status == 200)
        let single = await fixture.responder.answer(method: "GET", uri: "/readyz/linearizable_read")
        #expect(single.status == 503)
        #expect(single.bodyText == "[-]linearizable_read failed: etcdserver: no leader\n\n")
    }

    @Test func unknownPathsAre404AndOtherMethods405() async {
        let fixture = Fixture()
        for path in ["/", "/metricsx", "/readyz/nosuch", "/v3/kv/range"] {
            let answer = await fixture.responder.answer(method: "GET", uri: path)
            #expect(answer.status == 404, "\(path)")
            #expect(answer.bodyText == "404 page not found\n")
        }
        let post = await fixture.responder.answer(method: "POST", uri: "/health")
        #expect(post.status == 405)
        #expect(post.headers.contains { $0 == ("Allow", "GET") })
        #expect(post.bodyText == "Method Not Allowed\n")
    }

    @Test func bucketsAreClientGolangsExponentialBuckets() {
        #expect(
            exponentialBuckets(start: 0.001, factor: 2, count: 14).map { "\($0)" }.prefix(4) == [
                "0.001", "0.002", "0.004", "0.008",
            ])
        #expect(exponentialBuckets(start: 0.001, factor: 2, count: 14).last == 8.192)
        #expect(exponentialBuckets(start: 0.0001, factor: 2, count: 16).last == 3.2768)
    }
}
