import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real `cairn gateway` in front of a real member, driven by the real
/// `etcdctl` with tenants' certificates: namespaces, refusals, limits and
/// reloads. (The etcdctl suites also run through a gateway: `Topology.gateway`.)
@Suite(.serialized) struct GatewayTests {
    @Test func tenantsSeeOnlyTheirNamespaceAndTheMemberSeesThePrefixes() throws {
        let gateway = try GatewayProcess()
        #expect(try gateway.run("put", "a", "1") == "OK\n")
        let bobPut = try gateway.etcdctl(["put", "a", "2"], as: gateway.bob)
        #expect(bobPut.status == 0 && bobPut.stdout == "OK\n", "\(bobPut)\n\(gateway.logs)")
        #expect(try gateway.run("get", "a") == "a\n1\n")
        #expect(try gateway.etcdctl(["get", "a"], as: gateway.bob).stdout == "a\n2\n")
        // Everything alice can name is hers: from-key and prefix reads stop at her namespace.
        #expect(try gateway.run("get", "", "--from-key") == "a\n1\n")
        #expect(try gateway.run("get", "", "--prefix", "--keys-only") == "a\n\n")
        // The member holds both under their tenants' prefixes.
        let direct = try gateway.memberEtcdctl("get", "tenants/", "--prefix")
        #expect(direct.stdout == "tenants/alice/a\n1\ntenants/bob/a\n2\n", "\(direct)")
        // Deleting everything alice sees leaves bob's key alone.
        #expect(try gateway.run("del", "", "--prefix") == "1\n")
        #expect(try gateway.etcdctl(["get", "a"], as: gateway.bob).stdout == "a\n2\n")
    }

    @Test func txnCompareAndWatchStayInsideTheNamespace() throws {
        let gateway = try GatewayProcess()
        #expect(try gateway.etcdctl(["put", "x", "bob"], as: gateway.bob).status == 0)
        // alice's compare on "x" reads her own (absent) x, never bob's.
        let txn = try gateway.etcdctl(["txn"], input: "value(\"x\") = \"bob\"\n\nput y yes\n\nput y no\n\n")
        #expect(txn.stdout == "FAILURE\n\nOK\n", "\(txn)\n\(gateway.logs)")
        #expect(try gateway.run("get", "y", "--print-value-only") == "no\n")
        // A watch of every key alice can name sees her writes, not bob's.
        let watcher = try BackgroundProcess(
            "etcdctl", gateway.connectionFlags + ["watch", "", "--prefix"], name: "gateway-watch")
        defer { watcher.stop() }
        for attempt in 0..<80 where !watcher.log.contains("ready") {
            _ = try gateway.run("put", "ready\(attempt)", "1")
            usleep(100_000)
        }
        #expect(try gateway.etcdctl(["put", "z", "bob"], as: gateway.bob).status == 0)
        #expect(try gateway.run("put", "z", "alice") == "OK\n")
        let deadline = Date().addingTimeInterval(8)
        while !watcher.log.contains("alice") && Date() < deadline { usleep(50_000) }
        let log = watcher.log
        #expect(log.contains("PUT\nz\nalice\n"), "\(log)")
        #expect(!log.contains("bob"), "\(log)")
        #expect(!log.contains("tenants/"), "\(log)")
        #expect(try gateway.metric("cairn_gateway_client_watches{tenant=\"alice\"}") == 1)
        #expect(try gateway.metric("cairn_gateway_upstream_watches{tenant=\"alice\"}") == 1)
    }

    @Test func leasesOfAnotherTenantDoNotExistForYou() throws {
        let gateway = try GatewayProcess()
        let granted = try gateway.run("lease", "grant", "60")
        let id = granted.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        #expect(granted.hasPrefix("lease \(id) granted with TTL(60s)"), "\(granted)")
        #expect(try gateway.run("put", "--lease=\(id)", "held", "1") == "OK\n")
        #expect(try gateway.run("lease", "timetolive", id, "--keys").contains("attached keys([held])"))
        // bob cannot see, use, keep alive or revoke alice's lease.
        let ttl = try gateway.etcdctl(["lease", "timetolive", id], as: gateway.bob)
        #expect(ttl.stdout.contains("already expired"), "\(ttl)")
        let attach = try gateway.etcdctl(["put", "--lease=\(id)", "k", "v"], as: gateway.bob)
        #expect(attach.stderr.contains("etcdserver: requested lease not found"), "\(attach)")
        let revoke = try gateway.etcdctl(["lease", "revoke", id], as: gateway.bob)
        #expect(revoke.stderr.contains("etcdserver: requested lease not found"), "\(revoke)")
        let list = try gateway.etcdctl(["lease", "list"], as: gateway.bob)
        #expect(list.status == 0 && !list.stdout.contains(id), "\(list)")
        #expect(try gateway.run("lease", "list").contains(id))
        #expect(try gateway.run("get", "held", "--print-value-only") == "1\n")
        // Keep-alives (coalesced per tenant upstream) renew alice's lease, not bob's view of it.
        let renewed = try gateway.run("lease", "keep-alive", "--once", id)
        #expect(renewed.contains("lease \(id) keepalived with TTL("), "\(renewed)")
        let foreign = try gateway.etcdctl(["lease", "keep-alive", "--once", id], as: gateway.bob)
        #expect(foreign.stderr.contains("etcdserver: requested lease not found"), "\(foreign)")
    }

    @Test func clusterWideCallsAreRefusedToTenants() throws {
        let gateway = try GatewayProcess()
        #expect(try gateway.run("put", "k", "v") == "OK\n")
        for command in [
            ["compaction", "1"], ["member", "add", "x", "--peer-urls=http://127.0.0.1:1"], ["defrag"],
            ["alarm", "list"], ["auth", "enable"], ["user", "list"], ["role", "list"],
            ["endpoint", "hashkv"],
        ] {
            let output = try gateway.etcdctl(command, as: gateway.alice)
            #expect(
                output.status != 0 && output.stderr.contains("permission denied"), "\(command): \(output)")
        }
        let snapshot = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(getpid()).db").path
        let save = try gateway.etcdctl(["snapshot", "save", snapshot], as: gateway.alice)
        #expect(save.status != 0 && save.stderr.contains("permission denied"), "\(save)")
        // MemberList answers with the gateway alone, so clients keep using it.
        let list = try gateway.run("member", "list")
        #expect(list.contains("cairn-gateway") && list.contains(gateway.endpoint), "\(list)")
        #expect(!list.contains(gateway.upstreamEndpoint), "\(list)")
    }

    @Test func clientsThatAreNoTenantAreRefused() throws {
        let gateway = try GatewayProcess()
        let stranger = try gateway.etcdctl(["get", "a"], as: gateway.stranger)
        #expect(stranger.status != 0, "\(stranger)")
        #expect(stranger.stderr.contains("certificate identity stranger is not a tenant"), "\(stranger)")
        let other = try TestCertificateAuthority(commonName: "Other CA")
        let mallory = try other.client("alice")
        let foreign = try gateway.etcdctl(
            ["--dial-timeout=2s", "--command-timeout=4s", "get", "a"], as: mallory)
        #expect(foreign.status != 0, "\(foreign)")
        let anonymous = try gateway.etcdctl(
            ["--dial-timeout=2s", "--command-timeout=4s", "get", "a"], as: nil)
        #expect(anonymous.status != 0, "\(anonymous)")
        // The gateway logged the refusals and still serves alice.
        #expect(gateway.process.log.contains("TLS handshake failed"), "\(gateway.logs)")
        #expect(try gateway.run("put", "still", "here") == "OK\n")
    }

    @Test func rateLimitsAnswerResourceExhaustedAndReloadChangesThem() throws {
        let tight = GatewayProcess.tenants.replacingOccurrences(
            of: "requests_per_second: 100000, burst: 100000", with: "requests_per_second: 1, burst: 2")
        let gateway = try GatewayProcess(tenants: tight)
        var refusals: [String] = []
        for index in 0..<6 {
            let output = try gateway.etcdctl(["put", "k\(index)", "v"], as: gateway.alice)
            if output.status != 0 { refusals.append(output.stderr) }
        }
        #expect(!refusals.isEmpty, "six puts within a burst of 2 at 1/s were all admitted")
        #expect(
            refusals.allSatisfy { $0.contains("tenant alice exceeded its limit of 1 requests/s (burst 2)") },
            "\(refusals)")
        #expect(
            try gateway.metric("cairn_gateway_rate_limited_total{tenant=\"alice\"}") >= Double(refusals.count)
        )
        // A new tenants file, read on SIGHUP without a restart, lifts the limit.
        try GatewayProcess.tenants.write(to: gateway.tenantsFile, atomically: true, encoding: .utf8)
        gateway.reload()
        var lifted = false
        for _ in 0..<100 where !lifted {
            usleep(100_000)
            lifted = gateway.process.log.contains("reloaded the tenants file")
        }
        #expect(lifted, "\(gateway.logs)")
        for index in 0..<6 { #expect(try gateway.run("put", "after\(index)", "v") == "OK\n") }
    }

    @Test func aBrokenTenantsFileOnReloadKeepsTheOldTenants() throws {
        let gateway = try GatewayProcess()
        try "tenants: [ {name: }".write(to: gateway.tenantsFile, atomically: true, encoding: .utf8)
        gateway.reload()
        var logged = false
        for _ in 0..<100 where !logged {
            usleep(100_000)
            logged = gateway.process.log.contains("reload failed, keeping the previous tenants")
        }
        #expect(logged, "\(gateway.logs)")
        #expect(try gateway.run("put", "k", "v") == "OK\n")
    }

    @Test func cachedReadsAreLinearizableWithWritesMadeElsewhere() throws {
        let cached = GatewayProcess.tenants.replacingOccurrences(
            of: "permissions: readwrite\n    limits:",
            with: "permissions: readwrite\n    cache: [\"config/\"]\n    limits:")
        #expect(cached.contains("cache: [\"config/\"]"))
        let gateway = try GatewayProcess(tenants: cached)
        #expect(try gateway.run("put", "config/a", "0") == "OK\n")
        for round in 1...30 {
            // Written straight to the member: the gateway learns of it only
            // through its watch, yet a linearizable read right after must see it.
            let direct = try gateway.memberEtcdctl("put", "tenants/alice/config/a", "v\(round)")
            #expect(direct.status == 0, "\(direct)")
            let read = try gateway.run("get", "config/a", "--print-value-only")
            #expect(read == "v\(round)\n", "round \(round): \(read)\n\(gateway.logs)")
            if read != "v\(round)\n" { break }
        }
        // Prefix reads, counts and deletes made elsewhere, through the cache too.
        _ = try gateway.memberEtcdctl("put", "tenants/alice/config/b", "2")
        #expect(try gateway.run("get", "config/", "--prefix", "--keys-only") == "config/a\n\nconfig/b\n\n")
        _ = try gateway.memberEtcdctl("del", "tenants/alice/config/a")
        #expect(try gateway.run("get", "config/", "--prefix", "-w", "json").contains("\"count\":1"))
        #expect(try gateway.run("get", "config/a") == "")
        // Serializable reads never go back in revision within a session; eventually current.
        var serializable = ""
        for _ in 0..<50 where serializable != "config/b\n2\n" {
            serializable = try gateway.run("get", "config/b", "--consistency=s")
            usleep(50_000)
        }
        #expect(serializable == "config/b\n2\n")
        // Those reads were answered by the cache (its metrics say so), and
        // reads outside the cached prefix are not counted as misses.
        let metrics = try gateway.metrics()
        #expect(try gateway.metric("cairn_gateway_cache_hits_total{tenant=\"alice\"}") >= 25, "\(metrics)")
        #expect(try gateway.metrics("/readyz").contains("ok"))
    }

    @Test func theGatewayWorksInFrontOfPlainEtcd() throws {
        let cached = GatewayProcess.tenants.replacingOccurrences(
            of: "permissions: readwrite\n    limits:",
            with: "permissions: readwrite\n    cache: [\"config/\"]\n    limits:")
        let gateway = try GatewayProcess(
            tenants: cached, gatewayArguments: ["--upstream-progress-unsynced"], inFrontOfEtcd: true)
        #expect(try gateway.run("put", "a", "1") == "OK\n")
        #expect(try gateway.etcdctl(["put", "a", "2"], as: gateway.bob).stdout == "OK\n")
        #expect(try gateway.run("get", "", "--prefix") == "a\n1\n")
        let direct = try gateway.memberEtcdctl("get", "tenants/", "--prefix")
        #expect(direct.stdout == "tenants/alice/a\n1\ntenants/bob/a\n2\n", "\(direct)\n\(gateway.logs)")
        let txn = try gateway.etcdctl(["txn"], input: "value(\"a\") = \"1\"\n\nput b yes\n\n\n")
        #expect(txn.stdout == "SUCCESS\n\nOK\n", "\(txn)")
        let lease = try gateway.run("lease", "grant", "30")
        #expect(lease.contains("granted with TTL(30s)"), "\(lease)")
        // Cached reads stay correct in front of etcd (linearizable ones are forwarded).
        for round in 1...5 {
            _ = try gateway.memberEtcdctl("put", "tenants/alice/config/k", "v\(round)")
            #expect(try gateway.run("get", "config/k", "--print-value-only") == "v\(round)\n")
        }
    }

    /// Three TLS members behind one gateway that knows only the first: it
    /// learns the others from MemberList, writes go to the leader, and when
    /// the leader is killed the gateway finds the new one and keeps serving.
    @Test func writesFollowTheLeaderThroughAFailover() throws {
        let authority = try TestCertificateAuthority()
        let memberCertificate = try authority.member("member")
        let gatewayCertificate = try authority.gateway("gateway1")
        let alice = try authority.client("alice")
        let ports = (0..<3).map { _ in (client: TestPorts.allocate(), peer: TestPorts.allocate()) }
        let cluster = ports.enumerated().map { "m\($0.offset)=http://127.0.0.1:\($0.element.peer)" }.joined(
            separator: ",")
        let members = try ports.enumerated().map { index, port in
            try MemberProcess(
                name: "m\(index)", port: port.client, peerPort: port.peer,
                clusterArguments: [
                    "--initial-cluster", cluster, "--initial-advertise-peer-urls",
                    "http://127.0.0.1:\(port.peer)",
                ],
                extraArguments: [
                    "--listen-client-urls", "https://127.0.0.1:\(port.client)", "--cert-file",
                    memberCertificate.certificateFile, "--key-file", memberCertificate.keyFile,
                    "--trusted-ca-file",
                    authority.certificateFile, "--gateway-identities", "gateway1",
                ], waitUntilListening: false)
        }
        for member in members { try TestPorts.waitUntilListening(member.port) }
        let tenants = URL(fileURLWithPath: authority.directory).appendingPathComponent("tenants.yaml")
        try GatewayProcess.tenants.write(to: tenants, atomically: true, encoding: .utf8)
        let port = TestPorts.allocate()
        let gateway = try BackgroundProcess(
            MemberProcess.binary,
            [
                "gateway", "--listen-addr", "127.0.0.1:\(port)", "--endpoints",
                "https://127.0.0.1:\(ports[0].client)",
                "--cert-file", gatewayCertificate.certificateFile, "--key-file", gatewayCertificate.keyFile,
                "--trusted-ca-file", authority.certificateFile, "--cert", gatewayCertificate.certificateFile,
                "--key", gatewayCertificate.keyFile, "--cacert", authority.certificateFile, "--tenants",
                tenants.path,
                "--threads", "2",
            ], name: "failover-gateway")
        try TestPorts.waitUntilListening(port)
        func etcdctl(_ arguments: String...) throws -> TestProcess.Output {
            try TestProcess.run(
                "etcdctl",
                [
                    "--endpoints=https://127.0.0.1:\(port)", "--dial-timeout=5s", "--command-timeout=20s",
                    "--cacert=\(authority.certificateFile)", "--cert=\(alice.certificateFile)",
                    "--key=\(alice.keyFile)",
                ] + arguments, environment: ["ETCDCTL_API": "3"], timeoutSeconds: 40)
        }
        let logs = {
            "gateway:\n\(gateway.log)\n" + members.map { "\($0.name):\n\($0.process.log)" }.joined()
        }
        let first = try etcdctl("put", "before", "1")
        #expect(first.stdout == "OK\n", "\(first)\n\(logs())")
        // The leader, as the members see it (endpoint status straight to each).
        var leaderIndex: Int?
        for _ in 0..<100 where leaderIndex == nil {
            for (index, member) in members.enumerated() {
                let status = try TestProcess.run(
                    "etcdctl",
                    [
                        "--endpoints=https://127.0.0.1:\(member.port)",
                        "--cacert=\(authority.certificateFile)",
                        "--cert=\(gatewayCertificate.certificateFile)", "--key=\(gatewayCertificate.keyFile)",
                        "endpoint", "status",
                    ], environment: ["ETCDCTL_API": "3"], timeoutSeconds: 20)
                if status.stdout.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
                    .dropFirst(4)
                    .first == "true"
                {
                    leaderIndex = index
                }
            }
            if leaderIndex == nil { usleep(100_000) }
        }
        let leader = try #require(leaderIndex, "no leader\n\(logs())")
        members[leader].process.stop(signal: SIGKILL)
        // Writes keep working through the same gateway once a new leader is
        // elected. A write caught in flight by the crash may get etcd's
        // "request timed out" (it may or may not have applied, so the gateway
        // does not retry it), as a client of etcd would; the client retries.
        var after = try etcdctl("put", "after", "2")
        for _ in 0..<10 where after.status != 0 {
            usleep(500_000)
            after = try etcdctl("put", "after", "2")
        }
        #expect(after.stdout == "OK\n", "\(after)\n\(logs())")
        #expect(try etcdctl("get", "", "--prefix").stdout == "after\n2\nbefore\n1\n")
        gateway.stop()
    }
}
