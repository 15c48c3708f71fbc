import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `--listen-metrics-urls` on a real three-member cluster: the series
/// operators alert on, `/health`, `/livez` and `/readyz` as etcd answers
/// them, and the leader-change counter after the leader is killed.
@Suite(.serialized) struct MemberMetricsTests {
    /// Three members, each with its own metrics listener.
    final class MeteredCluster: @unchecked Sendable {
        let members: [MemberProcess]
        let metricsPorts: [Int]

        init() throws {
            let ports = (0..<3).map { _ in (client: TestPorts.allocate(), peer: TestPorts.allocate()) }
            let metricsPorts = (0..<3).map { _ in TestPorts.allocate() }
            let names = ["m1", "m2", "m3"]
            let initialCluster = zip(names, ports).map { "\($0)=http://127.0.0.1:\($1.peer)" }.joined(
                separator: ",")
            let token = "cairn-metrics-\(getpid())-\(ports[0].client)"
            var members: [MemberProcess] = []
            for index in 0..<3 {
                members.append(
                    try MemberProcess(
                        name: names[index], port: ports[index].client, peerPort: ports[index].peer,
                        clusterArguments: [
                            "--initial-cluster", initialCluster, "--initial-cluster-token", token,
                            "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[index].peer)",
                        ],
                        extraArguments: ["--listen-metrics-urls", "http://127.0.0.1:\(metricsPorts[index])"],
                        waitUntilListening: false))
            }
            self.members = members
            self.metricsPorts = metricsPorts
            for port in metricsPorts { try TestPorts.waitUntilListening(port) }
        }

        var logs: String {
            self.members.map { "--- \($0.name) log:\n\($0.process.log)" }.joined(separator: "\n")
        }

        /// GET `path` of member `index`'s listener: (HTTP status, body).
        func get(_ index: Int, _ path: String) throws -> (status: Int, body: String) {
            let output = try TestProcess.run(
                "curl",
                [
                    "-sS", "-m", "10", "-w", "\n%{http_code}",
                    "http://127.0.0.1:\(self.metricsPorts[index])\(path)",
                ],
                timeoutSeconds: 20)
            guard output.status == 0, let split = output.stdout.lastIndex(of: "\n") else {
                throw TestFailure("curl \(path) failed: \(output.stderr)\n\(self.logs)")
            }
            return (
                Int(output.stdout[output.stdout.index(after: split)...]) ?? 0, String(output.stdout[..<split])
            )
        }

        /// The value of one series (name plus labels, exactly as exposed).
        func value(_ index: Int, _ series: String) throws -> Double? {
            let body = try self.get(index, "/metrics").body
            for line in body.split(separator: "\n") where line.hasPrefix(series + " ") {
                return Double(line.dropFirst(series.count + 1))
            }
            return nil
        }

        /// Polls `condition` until it holds; fails with the logs after `timeoutSeconds`.
        func waitUntil(
            _ what: String, timeoutSeconds: Double = 30, _ condition: () throws -> Bool
        ) throws {
            let deadline = Date().addingTimeInterval(timeoutSeconds)
            while Date() < deadline {
                if try condition() { return }
                usleep(200_000)
            }
            throw TestFailure("\(what) did not happen within \(timeoutSeconds) s\n\(self.logs)")
        }

        func etcdctl(_ arguments: String...) throws -> String {
            let endpoints = self.members.map(\.endpoint).joined(separator: ",")
            let output = try TestProcess.run(
                "etcdctl",
                ["--endpoints=\(endpoints)", "--dial-timeout=5s", "--command-timeout=10s"] + arguments,
                environment: ["ETCDCTL_API": "3"], timeoutSeconds: 30)
            guard output.status == 0 else {
                throw TestFailure("etcdctl \(arguments): \(output.stderr)\n\(self.logs)")
            }
            return output.stdout
        }
    }

    static let namedSeries = [
        "etcd_server_has_leader", "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_disk_wal_fsync_duration_seconds", "etcd_mvcc_db_total_size_in_bytes",
        "grpc_server_handled_total",
    ]

    @Test func seriesHealthAndLeaderChanges() throws {
        let cluster = try MeteredCluster()
        for index in 0..<3 {
            try cluster.waitUntil("m\(index + 1) healthy") { try cluster.get(index, "/health").status == 200 }
            #expect(try cluster.get(index, "/health").body == #"{"health":"true","reason":""}"#)
            let readyz = try cluster.get(index, "/readyz")
            #expect(readyz.status == 200 && readyz.body == "ok\n")
            #expect(try cluster.get(index, "/livez").body == "ok\n")
            #expect(try cluster.get(index, "/nope").status == 404)
            let metrics = try cluster.get(index, "/metrics").body
            for name in Self.namedSeries {
                #expect(metrics.contains("# TYPE \(name) "), "m\(index + 1) lacks \(name)")
            }
            #expect(try cluster.value(index, "etcd_server_has_leader") == 1)
            #expect(try cluster.value(index, "etcd_server_leader_changes_seen_total") ?? 0 >= 1)
            #expect(try cluster.value(index, "etcd_mvcc_db_total_size_in_bytes") ?? 0 > 0)
            #expect(try cluster.value(index, #"etcd_disk_wal_fsync_duration_seconds_count"#) ?? 0 > 0)
        }

        // A put: committed and applied rise on every member, one Put is counted OK.
        let committedBefore = try (0..<3).map {
            try cluster.value($0, "etcd_server_proposals_committed_total") ?? 0
        }
        _ = try cluster.etcdctl("put", "metrics-key", "v")
        for index in 0..<3 {
            try cluster.waitUntil("m\(index + 1) commits the put") {
                try cluster.value(index, "etcd_server_proposals_committed_total") ?? 0
                    > committedBefore[index]
                    && cluster.value(index, "etcd_server_proposals_applied_total") ?? 0
                        > committedBefore[index]
            }
        }
        let putSeries =
            #"grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"}"#
        let puts = try (0..<3).map { try cluster.value($0, putSeries) ?? 0 }.reduce(0, +)
        #expect(puts == 1)

        // The leader measures heartbeat round trips to both peers.
        guard let leader = try (0..<3).first(where: { try cluster.value($0, "etcd_server_is_leader") == 1 })
        else {
            throw TestFailure("no member says it leads\n\(cluster.logs)")
        }
        try cluster.waitUntil("round trips measured") {
            let body = try cluster.get(leader, "/metrics").body
            return body.split(separator: "\n").filter {
                $0.hasPrefix("etcd_network_peer_round_trip_time_seconds_count{To=") && !$0.hasSuffix(" 0")
            }.count == 2
        }

        // SIGKILL the leader: the survivors see a new leader.
        let survivors = (0..<3).filter { $0 != leader }
        let changesBefore = try survivors.map {
            try cluster.value($0, "etcd_server_leader_changes_seen_total") ?? 0
        }
        cluster.members[leader].process.stop(signal: SIGKILL)
        for (survivor, before) in zip(survivors, changesBefore) {
            try cluster.waitUntil("m\(survivor + 1) sees a new leader") {
                try cluster.value(survivor, "etcd_server_leader_changes_seen_total") ?? 0 > before
                    && cluster.value(survivor, "etcd_server_has_leader") == 1
            }
            try cluster.waitUntil("m\(survivor + 1) ready again") {
                try cluster.get(survivor, "/readyz").status == 200
            }
        }

        // Quorum lost: the last member has no leader, and says so.
        cluster.members[survivors[0]].process.stop(signal: SIGKILL)
        let last = survivors[1]
        try cluster.waitUntil("m\(last + 1) loses its leader") {
            try cluster.value(last, "etcd_server_has_leader") == 0
        }
        let health = try cluster.get(last, "/health")
        #expect(health.status == 503)
        #expect(health.body == "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n")
        let readyz = try cluster.get(last, "/readyz")
        #expect(readyz.status == 503)
        #expect(readyz.body.contains("[-]linearizable_read failed: etcdserver: no leader\n"))
        #expect(try cluster.get(last, "/livez").status == 200)
    }
}
