import CairnTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A cluster of real `cairn member` processes on loopback, bootstrapped
/// with etcd's `--initial-cluster` flags, plus `etcdctl` against them.
final class ClusterProcess: @unchecked Sendable {
    private(set) var members: [MemberProcess]
    let token: String

    /// Starts `size` members `m1`…`mN` and waits until every client port
    /// listens (the first election may still be running).
    init(size: Int, extraArguments: [String] = [], peerScheme: String = "http") throws {
        let ports = (0..<size).map { _ in (client: TestPorts.allocate(), peer: TestPorts.allocate()) }
        let names = (1...size).map { "m\($0)" }
        let initialCluster = zip(names, ports).map { "\($0)=\(peerScheme)://127.0.0.1:\($1.peer)" }.joined(
            separator: ",")
        self.token = "cairn-test-\(getpid())-\(ports[0].client)"
        var members: [MemberProcess] = []
        for (name, port) in zip(names, ports) {
            members.append(
                try MemberProcess(
                    name: name, port: port.client, peerPort: port.peer,
                    clusterArguments: [
                        "--initial-cluster", initialCluster, "--initial-cluster-token", self.token,
                        "--initial-advertise-peer-urls", "\(peerScheme)://127.0.0.1:\(port.peer)",
                        "--listen-peer-urls", "\(peerScheme)://127.0.0.1:\(port.peer)",
                    ], extraArguments: extraArguments, waitUntilListening: false))
        }
        self.members = members
        for member in members { try TestPorts.waitUntilListening(member.port) }
    }

    /// Starts one more member that joins this cluster (`--initial-cluster-state
    /// existing`); call after `member add` announced it.
    func join(name: String, port: Int, peerPort: Int, initialCluster: String) throws -> MemberProcess {
        let member = try MemberProcess(
            name: name, port: port, peerPort: peerPort,
            clusterArguments: [
                "--initial-cluster", initialCluster, "--initial-cluster-state", "existing",
                "--initial-cluster-token", self.token, "--initial-advertise-peer-urls",
                "http://127.0.0.1:\(peerPort)",
            ])
        self.members.append(member)
        return member
    }

    var endpoints: String { self.members.map(\.endpoint).joined(separator: ",") }

    /// etcdctl against every member (it picks one and fails over).
    func etcdctl(_ arguments: [String]) throws -> TestProcess.Output {
        try TestProcess.run(
            "etcdctl",
            ["--endpoints=\(self.endpoints)", "--dial-timeout=5s", "--command-timeout=10s"] + arguments,
            environment: ["ETCDCTL_API": "3"], timeoutSeconds: 30)
    }

    /// etcdctl's stdout, requiring success (the logs of every member on failure).
    func run(_ arguments: String...) throws -> String {
        let output = try self.etcdctl(arguments)
        guard output.status == 0 else {
            throw TestFailure("etcdctl \(arguments) failed: \(output.stderr)\n\(self.logs)")
        }
        return output.stdout
    }

    var logs: String {
        self.members.map { "--- \($0.name) log:\n\($0.process.log)" }.joined(separator: "\n")
    }

    /// Waits until some member reports a leader in `endpoint status`, and
    /// returns that leader's member ID (hex, as etcdctl prints it).
    func waitForLeader(timeoutSeconds: Double = 30) throws -> String {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            // Members that are down are missing from the answer (and make
            // etcdctl exit non-zero); any live member's view counts.
            let output = try self.etcdctl(["endpoint", "status", "-w", "json"])
            if let data = output.stdout.data(using: .utf8),
                let statuses = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
                let leader = statuses.compactMap({ entry -> UInt64? in
                    let status = entry["Status"] as? [String: Any]
                    return (status?["leader"] as? NSNumber)?.uint64Value
                }).first(where: { $0 != 0 })
            {
                return String(leader, radix: 16)
            }
            usleep(100_000)
        }
        throw TestFailure("no leader within \(timeoutSeconds) s\n\(self.logs)")
    }
}

/// What the etcdctl suites need from "the server": one member or a cluster.
protocol EtcdctlTarget: AnyObject, Sendable {
    /// etcdctl's `--endpoints` value.
    var endpoint: String { get }
    /// etcdctl's flags to reach the target (endpoints, and TLS where needed),
    /// for long-running etcdctl processes started by tests.
    var connectionFlags: [String] { get }
    /// The server logs, shown when a command fails.
    var logs: String { get }
    func etcdctl(_ arguments: [String], input: String?) throws -> TestProcess.Output
}

extension EtcdctlTarget {
    var connectionFlags: [String] { ["--endpoints=\(self.endpoint)"] }

    func etcdctl(_ arguments: String...) throws -> TestProcess.Output {
        try self.etcdctl(arguments, input: nil)
    }

    /// etcdctl's stdout, requiring success.
    func run(_ arguments: String...) throws -> String {
        let output = try self.etcdctl(arguments, input: nil)
        guard output.status == 0 else {
            throw TestFailure("etcdctl \(arguments) failed: \(output.stderr)\n\(self.logs)")
        }
        return output.stdout
    }
}

extension MemberProcess: EtcdctlTarget {
    var logs: String { "member log:\n\(self.process.log)" }
}

extension ClusterProcess: EtcdctlTarget {
    var endpoint: String { self.endpoints }

    func etcdctl(_ arguments: [String], input: String?) throws -> TestProcess.Output {
        try TestProcess.run(
            "etcdctl",
            ["--endpoints=\(self.endpoints)", "--dial-timeout=5s", "--command-timeout=10s"] + arguments,
            environment: ["ETCDCTL_API": "3"], input: input.map { Data($0.utf8) }, timeoutSeconds: 30)
    }
}

/// The etcdctl suites run against one member and against three: the
/// answers must be the same.
enum Topology: String, CaseIterable, Sendable {
    case oneMember
    case threeMembers
    /// One member behind a gateway, as tenant alice: every answer must be
    /// the same as a member's own, keys shown without the tenant's prefix.
    case gateway

    /// The topologies where cluster-wide calls (compaction) are allowed:
    /// the gateway refuses them to tenants.
    static let members: [Topology] = [.oneMember, .threeMembers]

    func start(extraArguments: [String] = []) throws -> any EtcdctlTarget {
        switch self {
        case .oneMember: return try MemberProcess(extraArguments: extraArguments)
        case .threeMembers:
            let cluster = try ClusterProcess(size: 3, extraArguments: extraArguments)
            _ = try cluster.waitForLeader()
            return cluster
        case .gateway:
            return try GatewayProcess(memberArguments: extraArguments)
        }
    }
}
