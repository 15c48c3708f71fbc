import CairnAPI
import CairnClient
import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Disaster recovery as an etcd operator does it: `etcdctl snapshot save`
/// from a running cluster, then `cairnctl snapshot status` and `cairnctl
/// snapshot restore` into new data directories with a new membership, and
/// the real `cairn member` started from them.
@Suite(.serialized) struct DisasterRecoveryTests {
    /// Keys written before the snapshot; every tenth has the lease.
    static let keyCount = 300

    @Test func restoreIntoANewThreeMemberCluster() async throws {
        let saved = try await Self.savedClusterSnapshot()
        defer { try? FileManager.default.removeItem(atPath: saved.path) }

        let status = try Self.cairnctl(["snapshot", "status", saved.path, "-w", "json"])
        try #require(status.status == 0, "\(status.stderr)")
        let figures = try #require(
            JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect((figures["revision"] as? NSNumber)?.int64Value == saved.revision)
        #expect((figures["totalKey"] as? NSNumber)?.intValue == Self.keyCount)
        #expect(((figures["totalSize"] as? NSNumber)?.intValue ?? 0) > 0)
        let table = try Self.cairnctl(["snapshot", "status", saved.path, "-w", "table"])
        // The HASH column is as wide as the hash's hex digits (no zero
        // padding, as etcdctl prints it), so only the other headers are fixed.
        #expect(
            table.stdout.range(
                of: #"\|\s+HASH\s+\| REVISION \| TOTAL KEYS \| TOTAL SIZE \|"#, options: .regularExpression)
                != nil, "\(table.stdout)")

        let restored = try RestoredCluster(snapshot: saved.path, size: 3)
        defer { restored.remove() }
        let client = try EtcdClient(endpoints: restored.members.map(\.endpoint))
        do {
            try await Self.checkRestoredState(client, saved: saved)
            // Writes work and continue the saved revisions.
            let put = try await client.put(key: "after-restore", value: "yes")
            #expect(put.header.revision == saved.revision + 1)
            #expect(put.header.clusterID == restored.clusterID)
        } catch {
            await client.shutdown()
            throw TestFailure("\(error)\n\(restored.logs)")
        }
        await client.shutdown()

        // etcdctl sees the new membership: new names, peer URLs and IDs.
        let list = try restored.etcdctl(["member", "list"])
        try #require(list.status == 0, "\(list.stderr)\n\(restored.logs)")
        let rows = list.stdout.split(separator: "\n").map { $0.components(separatedBy: ", ") }
        #expect(Set(rows.map { $0[0] }) == Set(restored.memberIDs.values))
        #expect(Set(rows.map { $0[2] }) == Set(restored.members.map(\.name)))
        #expect(Set(rows.map { $0[3] }) == Set(restored.members.map(\.peerURL)))
        #expect(Set(restored.memberIDs.values).isDisjoint(with: saved.oldMemberIDs))
    }

    @Test func damagedSnapshotIsRefusedWithAClearMessage() throws {
        let member = try MemberProcess()
        // Over 4 MiB, so the digest is computed over several read chunks.
        let value = String(repeating: "v", count: 1_200_000)
        for index in 0..<4 {
            let put = try member.etcdctl(["put", "k\(index)"], input: value)
            #expect(put.stdout == "OK\n", "\(put.stderr)")
        }
        let path = member.dataDirectory.path + "-saved.db"
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try member.run("snapshot", "save", path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(try Self.cairnctl(["snapshot", "status", path]).status == 0)

        // A changed byte: the SHA-256 trailer no longer matches.
        var flipped = good
        flipped[100] ^= 0xFF
        try flipped.write(to: URL(fileURLWithPath: path))
        let status = try Self.cairnctl(["snapshot", "status", path])
        #expect(status.status == 1)
        #expect(status.stderr.hasPrefix("Error: expected sha256 "), "\(status.stderr)")
        #expect(status.stderr.contains("is damaged"))
        let target = path + ".restored"
        defer { try? FileManager.default.removeItem(atPath: target) }
        let restore = try Self.cairnctl(["snapshot", "restore", path, "--data-dir", target])
        #expect(restore.status == 1 && restore.stderr.contains("expected sha256"), "\(restore.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target))

        // Skipping the digest still meets the state's own checksum.
        let skipped = try Self.cairnctl([
            "snapshot", "restore", path, "--data-dir", target, "--skip-hash-check",
        ])
        #expect(skipped.status == 1)
        #expect(skipped.stderr.contains("is damaged: its CRC-32C does not match"), "\(skipped.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target + "/member"))

        // Cut short: no digest where `snapshot save` puts one.
        try good.dropLast(100).write(to: URL(fileURLWithPath: path))
        let cut = try Self.cairnctl(["snapshot", "status", path])
        #expect(cut.status == 1)
        #expect(cut.stderr.contains("snapshot missing hash but --skip-hash-check=false"), "\(cut.stderr)")
    }

    @Test func restoreRefusesANonEmptyDataDirectoryAndBadMembership() throws {
        let member = try MemberProcess()
        #expect(try member.run("put", "k", "v") == "OK\n")
        let path = member.dataDirectory.path + "-saved.db"
        let target = member.dataDirectory.path + "-target"
        defer {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: target)
        }
        _ = try member.run("snapshot", "save", path)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: target + "/precious"))

        let refused = try Self.cairnctl(["snapshot", "restore", path, "--data-dir", target])
        #expect(refused.status == 1)
        #expect(refused.stderr == "Error: data-dir \"\(target)\" not empty or could not be read\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: target) == ["precious"])

        let unknownName = try Self.cairnctl([
            "snapshot", "restore", path, "--data-dir", target + "/x", "--name", "nobody",
        ])
        #expect(unknownName.stderr.contains("couldn't find local name \"nobody\" in the initial cluster"))

        // An empty directory is fine (etcdutl's rule), once.
        try FileManager.default.removeItem(atPath: target + "/precious")
        let first = try Self.cairnctl(["snapshot", "restore", path, "--data-dir", target])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: target) == ["member"])
        let second = try Self.cairnctl(["snapshot", "restore", path, "--data-dir", target])
        #expect(second.status == 1 && second.stderr.contains("not empty"))
    }

    // MARK: helpers

    struct Saved {
        var path: String
        var revision: Int64
        var keys: [Mvccpb_KeyValue]
        var lease: Int64
        var oldMemberIDs: Set<String>
    }

    /// A three-member cluster with `keyCount` keys (some rewritten, some
    /// with a lease), saved with `etcdctl snapshot save` and then killed.
    static func savedClusterSnapshot() async throws -> Saved {
        let cluster = try ClusterProcess(size: 3)
        _ = try cluster.waitForLeader()
        let client = try EtcdClient(endpoints: cluster.members.map(\.endpoint))
        let lease: Int64
        do {
            lease = try await client.grantLease(ttl: 900).id
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<10 {
                    group.addTask {
                        for index in stride(from: worker, to: Self.keyCount, by: 10) {
                            let key = String(format: "dr/%03d", index)
                            try await client.put(key: key, value: "first-\(index)")
                            if index % 10 == 0 {
                                try await client.put(key: key, value: "leased-\(index)", lease: lease)
                            } else if index % 7 == 0 {
                                try await client.put(key: key, value: "second-\(index)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            await client.shutdown()
            throw error
        }
        let all = try await client.get("dr/", end: .prefix)
        await client.shutdown()
        let first = cluster.members[0]
        // A linearizable read through the member that streams the
        // snapshot: it has applied every write above.
        _ = try first.run("get", "dr/299")
        let path = first.dataDirectory.path + "-cluster.db"
        _ = try first.run("snapshot", "save", path)
        let oldIDs = try cluster.run("member", "list").split(separator: "\n").map {
            String($0.prefix { $0 != "," })
        }
        for member in cluster.members { member.process.stop(signal: SIGKILL) }
        return Saved(
            path: path, revision: all.header.revision, keys: all.kvs, lease: lease, oldMemberIDs: Set(oldIDs))
    }

    /// Every saved key with its value and revisions, the lease with its
    /// keys, after the restored cluster elected a leader.
    static func checkRestoredState(_ client: EtcdClient, saved: Saved) async throws {
        let deadline = Date().addingTimeInterval(30)
        var restored: Etcdserverpb_RangeResponse?
        while restored == nil {
            do {
                restored = try await client.get("dr/", end: .prefix)
            } catch {
                guard Date() < deadline else { throw error }
                try await Task.sleep(nanoseconds: 200_000_000)
            }
        }
        let answer = try #require(restored)
        #expect(answer.header.revision == saved.revision)
        #expect(answer.kvs.count == Self.keyCount)
        #expect(answer.kvs == saved.keys)
        let leased = saved.keys.filter { $0.lease == saved.lease }.map(\.key)
        #expect(leased.count == Self.keyCount / 10)
        let lease = try await client.leaseTimeToLive(saved.lease, keys: true)
        #expect(lease.grantedTtl == 900)
        #expect(lease.ttl > 800)
        #expect(Set(lease.keys) == Set(leased))
    }

    static var cairnctlBinary: String {
        URL(fileURLWithPath: MemberProcess.binary).deletingLastPathComponent().appendingPathComponent(
            "cairnctl"
        )
        .path
    }

    static func cairnctl(_ arguments: [String]) throws -> TestProcess.Output {
        try TestProcess.run(Self.cairnctlBinary, arguments, timeoutSeconds: 120)
    }
}

/// Three members restored with `cairnctl snapshot restore` into new data
/// directories, with new names, ports and token, then started.
final class RestoredCluster: @unchecked Sendable {
    let members: [MemberProcess]
    /// Member name to ID (hex), as `cairnctl` reported them.
    let memberIDs: [String: String]
    let clusterID: UInt64
    private let directories: [URL]

    init(snapshot: String, size: Int) throws {
        let names = (1...size).map { "restored\($0)" }
        let ports = names.map { _ in (client: TestPorts.allocate(), peer: TestPorts.allocate()) }
        let initialCluster = zip(names, ports).map { "\($0)=http://127.0.0.1:\($1.peer)" }.joined(
            separator: ",")
        let token = "restored-\(getpid())-\(ports[0].client)"
        let directories = ports.map {
            FileManager.default.temporaryDirectory.appendingPathComponent(
                "cairn-restored-\(getpid())-\($0.client)")
        }
        self.directories = directories
        var memberIDs: [String: String] = [:]
        var clusterIDs: Set<String> = []
        for (index, name) in names.enumerated() {
            let output = try DisasterRecoveryTests.cairnctl([
                "snapshot", "restore", snapshot, "--name", name, "--data-dir", directories[index].path,
                "--initial-cluster", initialCluster, "--initial-cluster-token", token,
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[index].peer)",
            ])
            guard output.status == 0 else { throw TestFailure("cairnctl restore \(name): \(output.stderr)") }
            // "member <id> of cluster <id>; members ..."
            let words = output.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == ";" })
            guard let at = words.firstIndex(of: "member"), words.count > at + 4 else {
                throw TestFailure("unexpected cairnctl output: \(output.stdout)")
            }
            memberIDs[name] = String(words[at + 1])
            clusterIDs.insert(String(words[at + 4]))
        }
        guard clusterIDs.count == 1, let cluster = UInt64(clusterIDs.first!, radix: 16) else {
            throw TestFailure("restored members disagree on the cluster ID: \(clusterIDs)")
        }
        self.memberIDs = memberIDs
        self.clusterID = cluster
        var members: [MemberProcess] = []
        for (index, name) in names.enumerated() {
            members.append(
                try MemberProcess(
                    name: name, port: ports[index].client, peerPort: ports[index].peer,
                    dataDirectory: directories[index],
                    clusterArguments: [
                        "--initial-cluster", initialCluster, "--initial-cluster-token", token,
                        "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[index].peer)",
                    ], waitUntilListening: false))
        }
        self.members = members
        for member in members { try TestPorts.waitUntilListening(member.port) }
    }

    func etcdctl(_ arguments: [String]) throws -> TestProcess.Output {
        try TestProcess.run(
            "etcdctl",
            ["--endpoints=\(self.members.map(\.endpoint).joined(separator: ","))", "--command-timeout=10s"]
                + arguments,
            environment: ["ETCDCTL_API": "3"], timeoutSeconds: 30)
    }

    var logs: String {
        self.members.map { "--- \($0.name) log:\n\($0.process.log)" }.joined(separator: "\n")
    }

    /// Stops the members and deletes their data directories.
    func remove() {
        for member in self.members { member.process.stop() }
        for directory in self.directories { try? FileManager.default.removeItem(at: directory) }
    }
}
