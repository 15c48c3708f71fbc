import CairnTestSupport
import Foundation
import Testing

/// `--max-request-bytes` and `--max-txn-ops` give etcd's errors, and the
/// member keeps serving after each.
@Suite struct MemberLimitsTests {
    @Test func oversizedRequestsAndTxnsAreRefusedWithEtcdErrors() throws {
        let member = try MemberProcess(extraArguments: ["--max-request-bytes", "1024", "--max-txn-ops", "2"])
        let large = try member.etcdctl("put", "big", String(repeating: "b", count: 2048))
        #expect(large.stderr.contains("Error: etcdserver: request is too large"), "\(large)")
        let txn = try member.etcdctl(["txn"], input: "\nput a 1\nput b 2\nput c 3\n\n\n")
        #expect(txn.stderr.contains("Error: etcdserver: too many operations in txn request"), "\(txn)")
        let sortOption = try member.etcdctl("get", "a", "--sort-by=NOPE")
        #expect(sortOption.status != 0)
        #expect(
            try member.etcdctl(["txn"], input: "\nput a 1\nput b 2\n\n\n").stdout == "SUCCESS\n\nOK\n\nOK\n")
        #expect(try member.run("get", "a", "-w", "json").contains("\"mod_revision\":2"))
    }
}

/// `--auto-compaction-mode periodic` compacts history older than the retention.
@Suite struct MemberAutoCompactionTests {
    @Test func periodicCompactionDropsHistoryOlderThanRetention() throws {
        let member = try MemberProcess(extraArguments: [
            "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s",
        ])
        #expect(try member.run("put", "k", "1") == "OK\n")
        #expect(try member.run("put", "k", "2") == "OK\n")
        #expect(try member.run("get", "k", "--rev", "2") == "k\n1\n")
        let deadline = Date().addingTimeInterval(8)
        var compacted = false
        while Date() < deadline && !compacted {
            usleep(200_000)
            compacted = try member.etcdctl("get", "k", "--rev", "2").stderr.contains("has been compacted")
        }
        #expect(compacted, "\(member.process.log)")
        #expect(member.process.log.contains("auto-compacted at revision 3"))
        #expect(try member.run("get", "k") == "k\n2\n")
    }

    @Test func badAutoCompactionFlagsAreRefused() throws {
        let output = try TestProcess.run(
            MemberProcess.binary,
            ["member", "--auto-compaction-mode", "weekly", "--auto-compaction-retention", "1"])
        #expect(
            output.status != 0 && output.stderr.contains("unknown --auto-compaction-mode weekly"), "\(output)"
        )
    }
}
