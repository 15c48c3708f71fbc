import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Three real members on loopback, driven by the real etcdctl: membership,
/// status, leadership transfer, and no acknowledged write lost when the
/// leader is killed under load.
@Suite(.serialized) struct ClusterTests {
    /// `member list` lines, parsed: id, status, name, peer URL, client URL, learner.
    static func members(_ output: String) -> [[String]] {
        output.split(separator: "\n").map { line in
            line.split(separator: ",", omittingEmptySubsequences: false).map {
                String($0.filter { $0 != " " })
            }
        }
    }

    @Test func threeMembersElectOneLeaderAndListEachOther() throws {
        let cluster = try ClusterProcess(size: 3)
        let leader = try cluster.waitForLeader()
        let listed = Self.members(try cluster.run("member", "list"))
        #expect(listed.count == 3)
        #expect(listed.map { $0[1] } == ["started", "started", "started"])
        #expect(Set(listed.map { $0[2] }) == ["m1", "m2", "m3"])
        let ids = listed.map { UInt64($0[0], radix: 16) ?? 0 }
        #expect(ids == ids.sorted(), "etcd lists members by ID")
        #expect(listed.contains { $0[0] == leader })
        for member in cluster.members {
            let row = listed.first { $0[2] == member.name }
            #expect(row?[3] == member.peerURL)
            #expect(row?[4] == "http://\(member.endpoint)")
            #expect(row?[5] == "false")
        }
        // endpoint status --cluster: one row per member, exactly one leader,
        // all on the same term.
        let table = try cluster.run("endpoint", "status", "--cluster", "-w", "table")
        let rows = table.split(separator: "\n").filter { $0.hasPrefix("| http") }
        #expect(rows.count == 3, "\(table)")
        #expect(rows.filter { $0.contains("|      true |") }.count == 1, "\(table)")
    }

    @Test func writesOnAnyMemberAreReadOnEveryMember() throws {
        let cluster = try ClusterProcess(size: 3)
        _ = try cluster.waitForLeader()
        for (index, member) in cluster.members.enumerated() {
            #expect(try member.run("put", "k\(index)", "v\(index)") == "OK\n")
        }
        for member in cluster.members {
            #expect(try member.run("get", "k", "--prefix", "--print-value-only") == "v0\nv1\nv2\n")
            #expect(
                try member.run("get", "k", "--prefix", "--print-value-only", "--consistency=s")
                    .split(separator: "\n").count <= 3)
        }
        for member in cluster.members {
            // A txn of reads is answered as a linearizable read on every member.
            let txn = try member.etcdctl(["txn"], input: "value(\"k2\") = \"v2\"\n\nget k --prefix\n\n\n")
            #expect(txn.status == 0 && txn.stdout == "SUCCESS\n\nk0\nv0\nk1\nv1\nk2\nv2\n", "\(txn)")
        }
        // First put on an empty store is revision 2, as in etcd; reads make none.
        #expect(try cluster.members[0].run("get", "k0", "-w", "json").contains("\"mod_revision\":2"))
        #expect(try cluster.members[1].run("get", "k0", "-w", "json").contains("\"revision\":4"))
        try Self.expectEqualHashes(cluster)
    }

    @Test func moveLeaderTransfersLeadership() throws {
        let cluster = try ClusterProcess(size: 3)
        let leader = try cluster.waitForLeader()
        let listed = Self.members(try cluster.run("member", "list"))
        let target = listed.first { $0[0] != leader }![0]
        let leaderMember = cluster.members.first { member in
            listed.first { $0[2] == member.name }?[0] == leader
        }!
        let output = try leaderMember.run("move-leader", target)
        #expect(output == "Leadership transferred from \(leader) to \(target)\n")
        #expect(try cluster.waitForLeader() == target)
    }

    @Test func learnerJoinsCatchesUpByStreamIsPromotedAndRemoved() throws {
        let cluster = try ClusterProcess(size: 3, extraArguments: ["--snapshot-count", "50"])
        _ = try cluster.waitForLeader()
        // Enough writes that the log is compacted: the learner needs a snapshot.
        for index in 0..<120 { _ = try cluster.members[index % 3].run("put", "pre\(index)", "\(index)") }
        let port = TestPorts.allocate()
        let peerPort = TestPorts.allocate()
        let added = try cluster.run(
            "member", "add", "m4", "--learner", "--peer-urls", "http://127.0.0.1:\(peerPort)")
        #expect(added.hasPrefix("Member "))
        let initialCluster = added.split(separator: "\n").first { $0.hasPrefix("ETCD_INITIAL_CLUSTER=") }
            .map { String($0.dropFirst("ETCD_INITIAL_CLUSTER=\"".count).dropLast()) }
        #expect(initialCluster?.contains("m4=http://127.0.0.1:\(peerPort)") == true)
        let newID = String(added.split(separator: " ")[1])
        let learner = try cluster.join(
            name: "m4", port: port, peerPort: peerPort, initialCluster: initialCluster ?? "")
        // The learner serves the data it received (serializable reads are local).
        var caughtUp = false
        for _ in 0..<100 {
            if (try? learner.run("get", "pre119", "--print-value-only", "--consistency=s")) == "119\n" {
                caughtUp = true
                break
            }
            usleep(100_000)
        }
        #expect(caughtUp, "learner never caught up\n\(cluster.logs)")
        #expect(
            learner.process.log.contains("snapshot"),
            "learner should install a snapshot\n\(learner.process.log)")
        var promoted = ""
        for _ in 0..<50 {
            if let output = try? cluster.etcdctl(["member", "promote", newID]), output.status == 0 {
                promoted = output.stdout
                break
            }
            usleep(200_000)
        }
        // etcdctl prints IDs with %16x: a short one is padded with spaces.
        let paddedID = String(repeating: " ", count: max(0, 16 - newID.count)) + newID
        #expect(promoted.hasPrefix("Member \(paddedID) promoted in cluster "), "\(promoted)")
        let listed = Self.members(try cluster.run("member", "list"))
        #expect(listed.first { $0[0] == newID }?[5] == "false")
        #expect(listed.first { $0[0] == newID }?[2] == "m4")
        let removed = try cluster.run("member", "remove", newID)
        #expect(removed.hasPrefix("Member \(paddedID) removed from cluster "), "\(removed)")
        // The others list three members once they applied the removal (a
        // member may answer from its applied state a moment before).
        var remaining = 0
        for _ in 0..<50 {
            remaining = Self.members(try cluster.members[0].run("member", "list")).count
            if remaining == 3 { break }
            usleep(100_000)
        }
        #expect(remaining == 3)
    }

    @Test func killingTheLeaderUnderLoadLosesNoAcknowledgedWrite() throws {
        let cluster = try ClusterProcess(size: 3)
        let leader = try cluster.waitForLeader()
        let listed = Self.members(try cluster.run("member", "list"))
        let acknowledged = AcknowledgedKeys()
        let writers = DispatchGroup()
        for writer in 0..<4 {
            writers.enter()
            Thread.detachNewThread {
                defer { writers.leave() }
                var sequence = 0
                while !acknowledged.isStopped {
                    let key = "load/\(writer)-\(sequence)"
                    sequence += 1
                    guard let output = try? cluster.etcdctl(["put", key, "v"]), output.status == 0,
                        output.stdout == "OK\n"
                    else { continue }
                    acknowledged.record(key)
                }
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while acknowledged.count < 30 && Date() < deadline { usleep(20_000) }
        let leaderMember = cluster.members.first { member in
            listed.first { $0[2] == member.name }?[0] == leader
        }!
        leaderMember.process.stop(signal: SIGKILL)
        // The survivors elect a new leader and keep taking writes.
        let before = acknowledged.count
        let resumed = Date().addingTimeInterval(20)
        while acknowledged.count < before + 20 && Date() < resumed { usleep(50_000) }
        acknowledged.stop()
        writers.wait()
        #expect(
            acknowledged.count >= before + 20, "writes did not resume after the leader died\n\(cluster.logs)")
        try leaderMember.start()
        for member in cluster.members {
            var stored: Set<String> = []
            for _ in 0..<100 {
                stored = Set(
                    (try? member.run("get", "load/", "--prefix", "--keys-only", "--consistency=s"))?
                        .split(separator: "\n").map(String.init) ?? [])
                if acknowledged.all.allSatisfy(stored.contains) { break }
                usleep(100_000)
            }
            let lost = acknowledged.all.filter { !stored.contains($0) }
            #expect(lost.isEmpty, "\(member.name) lacks acknowledged puts \(lost.prefix(5))\n\(cluster.logs)")
        }
        try Self.expectEqualHashes(cluster)
    }

    @Test func keepAlivesThroughFollowersReachTheLeader() throws {
        let cluster = try ClusterProcess(size: 3)
        _ = try cluster.waitForLeader()
        let granted = try cluster.members[1].run("lease", "grant", "30")
        let id = String(granted.split(separator: " ")[1])
        #expect(granted == "lease \(id) granted with TTL(30s)\n")
        for member in cluster.members {
            #expect(
                try member.run("lease", "keep-alive", "--once", id) == "lease \(id) keepalived with TTL(30)\n"
            )
            #expect(try member.run("put", "--lease=\(id)", "held-\(member.name)", "x") == "OK\n")
        }
        let ttl = try cluster.members[2].run("lease", "timetolive", id, "--keys")
        #expect(ttl.contains("attached keys([held-m1 held-m2 held-m3])"), "\(ttl)")
        #expect(try cluster.members[0].run("lease", "revoke", id) == "lease \(id) revoked\n")
        #expect(try cluster.members[2].run("get", "held-", "--prefix", "--keys-only") == "")
    }

    @Test func aLeaderStoppedWithSIGTERMHandsLeadershipOver() throws {
        let cluster = try ClusterProcess(size: 3)
        let leader = try cluster.waitForLeader()
        let listed = Self.members(try cluster.run("member", "list"))
        let leaderMember = cluster.members.first { member in
            listed.first { $0[2] == member.name }?[0] == leader
        }!
        leaderMember.process.stop(signal: SIGTERM)
        #expect(
            leaderMember.process.log.contains("handing leadership over to"), "\(leaderMember.process.log)")
        #expect(leaderMember.process.process.terminationStatus == 0)
        let next = try cluster.waitForLeader()
        #expect(next != leader)
        #expect(try cluster.run("put", "after-handover", "1") == "OK\n")
    }

    @Test func peersTalkMutualTLSAndRefuseAStrangerCertificate() throws {
        let authority = try TestCertificateAuthority()
        let member = try authority.member("member")
        let cluster = try ClusterProcess(
            size: 3,
            extraArguments: [
                "--peer-cert-file", member.certificateFile, "--peer-key-file", member.keyFile,
                "--peer-trusted-ca-file", authority.certificateFile, "--peer-client-cert-auth",
            ], peerScheme: "https")
        _ = try cluster.waitForLeader()
        #expect(try cluster.members[0].run("put", "over-tls", "1") == "OK\n")
        #expect(try cluster.members[2].run("get", "over-tls", "--print-value-only") == "1\n")
        #expect(Self.members(try cluster.run("member", "list")).allSatisfy { $0[3].hasPrefix("https://") })
        // A peer with a certificate from another CA is refused at the handshake.
        let stranger = try TestCertificateAuthority(commonName: "Stranger CA")
        let strangerPair = try stranger.member("member")
        let peerPort = cluster.members[1].peerPort
        _ = try TestProcess.run(
            "openssl",
            [
                "s_client", "-connect", "127.0.0.1:\(peerPort)", "-cert", strangerPair.certificateFile,
                "-key",
                strangerPair.keyFile, "-CAfile", authority.certificateFile, "-alpn", "cairn-peer",
            ], input: Data("hello\n".utf8), timeoutSeconds: 20)
        let log = cluster.members[1].process.log
        #expect(log.contains("rejected peer connection from"), "\(log)")
        // The cluster is unharmed.
        #expect(try cluster.members[1].run("put", "after-stranger", "1") == "OK\n")
    }

    /// `endpoint hashkv --cluster` at one revision: every member's hash is equal.
    static func expectEqualHashes(_ cluster: ClusterProcess) throws {
        let revision =
            try cluster.members[0].run("get", "x", "-w", "json")
            .split(separator: "\"revision\":").dropFirst().first.map { $0.prefix { $0.isNumber } } ?? ""
        var hashes: Set<String> = []
        for _ in 0..<50 {
            hashes = []
            for member in cluster.members {
                let output = try member.etcdctl(["endpoint", "hashkv", "--rev", String(revision)])
                hashes.insert(output.stdout.split(separator: ",").last.map(String.init) ?? output.stderr)
            }
            if hashes.count == 1 { return }
            usleep(100_000)
        }
        Issue.record("HashKV differs across members: \(hashes)\n\(cluster.logs)")
    }
}
