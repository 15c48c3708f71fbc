import CairnTestSupport
import Foundation
import Testing

/// `etcdctl` 3.4 against a real `cairn member`: exact output of the KV,
/// Cluster and Maintenance commands, checked against etcd 3.4's output for
/// the same operations on an empty store.
@Suite(.serialized) struct MemberKVTests {
    @Test(arguments: Topology.allCases) func putAndGetMatchEtcd(_ topology: Topology) throws {
        let member = try topology.start()
        #expect(try member.run("put", "a", "1") == "OK\n")
        // The first put on an empty store is revision 2, as in etcd.
        let first = try member.run("get", "a", "-w", "json")
        // etcd 3.4 shows term 2 too: term 1 bootstraps, the first election makes 2.
        #expect(first.contains("\"revision\":2,\"raft_term\":2}"), "\(first)")
        #expect(first.contains("\"create_revision\":2,\"mod_revision\":2,\"version\":1"), "\(first)")
        #expect(try member.run("put", "b", "2") == "OK\n")
        #expect(try member.run("put", "c", "3") == "OK\n")
        #expect(try member.run("put", "a", "11") == "OK\n")
        let json = try member.run("get", "a", "-w", "json")
        #expect(
            json.contains("\"revision\":5")
                && json.contains("\"create_revision\":2,\"mod_revision\":5,\"version\":2"))
        #expect(try member.run("get", "a") == "a\n11\n")
        #expect(try member.run("get", "a", "--prefix") == "a\n11\n")
        #expect(try member.run("get", "", "--from-key", "--keys-only") == "a\n\nb\n\nc\n\n")
        #expect(try member.run("get", "a", "--rev", "2") == "a\n1\n")
        #expect(
            try member.run("get", "a", "d", "--limit", "2", "--sort-by=MODIFY", "--order=DESCEND")
                == "a\n11\nc\n3\n")
        #expect(try member.run("get", "b", "--print-value-only") == "2\n")
        #expect(try member.run("get", "nothing") == "")
        let empty = try member.etcdctl("put", "", "x")
        #expect(empty.status != 0 && empty.stderr.contains("Error: etcdserver: key is not provided"))
        let future = try member.etcdctl("get", "a", "--rev", "100")
        #expect(future.stderr.contains("Error: etcdserver: mvcc: required revision is a future revision"))
    }

    @Test(arguments: Topology.allCases) func deleteAndTxnMatchEtcd(_ topology: Topology) throws {
        let member = try topology.start()
        for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("a", "11")] {
            #expect(try member.run("put", key, value) == "OK\n")
        }
        let success = try member.etcdctl(
            ["txn"], input: "value(\"a\") = \"11\"\n\nput x yes\nget a\n\nput x no\n\n")
        #expect(success.status == 0 && success.stdout == "SUCCESS\n\nOK\n\na\n11\n", "\(success)")
        let failure = try member.etcdctl(
            ["txn"], input: "value(\"a\") = \"nope\"\n\nput x yes\n\nput x no\ndel b\n\n")
        #expect(failure.stdout == "FAILURE\n\nOK\n\n1\n", "\(failure)")
        #expect(try member.run("get", "x", "--print-value-only") == "no\n")
        let versions = try member.etcdctl(
            ["txn"], input: "ver(\"a\") = \"2\"\nmod(\"x\") > \"6\"\n\nget x\n\n\n")
        #expect(versions.stdout == "SUCCESS\n\nx\nno\n", "\(versions)")
        #expect(try member.run("del", "c", "--prev-kv") == "1\nc\n3\n")
        #expect(try member.run("del", "", "--prefix") == "2\n")
        #expect(try member.run("get", "", "--prefix") == "")
        #expect(try member.run("del", "gone") == "0\n")
        let duplicate = try member.etcdctl(["txn"], input: "\nput k 1\nput k 2\n\n\n")
        #expect(
            duplicate.stderr.contains("Error: etcdserver: duplicate key given in txn request"), "\(duplicate)"
        )
    }

    @Test(arguments: Topology.members) func compactionErrorsMatchEtcd(_ topology: Topology) throws {
        let member = try topology.start()
        for value in ["1", "2", "3", "4"] { #expect(try member.run("put", "k", value) == "OK\n") }
        #expect(try member.run("compaction", "3") == "compacted revision 3\n")
        #expect(try member.run("get", "k", "--rev", "3") == "k\n2\n")
        let compacted = try member.etcdctl("get", "k", "--rev", "2")
        #expect(compacted.stderr.contains("Error: etcdserver: mvcc: required revision has been compacted"))
        let again = try member.etcdctl("compaction", "3")
        #expect(again.stderr.contains("Error: etcdserver: mvcc: required revision has been compacted"))
        let future = try member.etcdctl("compaction", "50")
        #expect(future.stderr.contains("Error: etcdserver: mvcc: required revision is a future revision"))
        #expect(try member.run("get", "k") == "k\n4\n")
    }

    @Test func statusHealthMemberListAndUnbuiltRPCs() throws {
        let member = try MemberProcess()
        #expect(try member.run("put", "k", "v") == "OK\n")
        let list = try member.run("member", "list")
        let fields = list.trimmingCharacters(in: .newlines).components(separatedBy: ", ")
        #expect(fields.count == 6, "\(list)")
        let memberID = fields.first ?? ""
        #expect(
            Array(fields.dropFirst()) == [
                "started", "default", member.peerURL, "http://127.0.0.1:\(member.port)", "false",
            ])
        let status = try member.run("endpoint", "status")
        // endpoint, ID, version, size, is leader, is learner, term, index, applied index
        let statusFields = status.split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(statusFields.count >= 9, "\(status)")
        if statusFields.count >= 9 {
            #expect(statusFields[0] == member.endpoint && statusFields[1] == memberID)
            #expect(statusFields[4] == "true" && statusFields[5] == "false" && statusFields[6] == "2")
            // Index 4 at least: membership, the leader's entry, the published name, the put.
            #expect((Int(statusFields[7]) ?? 0) >= 4 && statusFields[7] == statusFields[8], "\(status)")
        }
        let health = try member.etcdctl("endpoint", "health")
        #expect(
            health.status == 0 && (health.stdout + health.stderr).contains("\(member.endpoint) is healthy"))
        let hash = try member.run("endpoint", "hashkv")
        #expect(hash.hasPrefix("\(member.endpoint), "))
        // Auth is built: enabling it first needs a root user, as in etcd.
        let noRoot = try member.etcdctl("auth", "enable")
        #expect(
            noRoot.status != 0 && noRoot.stderr.contains("etcdserver: root user does not exist"), "\(noRoot)")
        // The IDs survive a restart (persisted in the data directory).
        try member.restart(after: SIGTERM)
        #expect(try member.run("member", "list").hasPrefix(memberID + ", "))
    }
}
