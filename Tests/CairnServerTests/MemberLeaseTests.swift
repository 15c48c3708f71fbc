import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `etcdctl lease` against a real member, with etcd 3.4's exact output.
@Suite(.serialized) struct MemberLeaseTests {
    /// The lease ID (hex) from "lease <id> granted with TTL(<n>s)".
    private func grantedID(_ output: String) -> String {
        output.split(separator: " ").dropFirst().first.map(String.init) ?? ""
    }

    @Test func grantAttachKeepAliveTimeToLiveListRevoke() throws {
        let member = try MemberProcess()
        let granted = try member.run("lease", "grant", "100")
        let id = grantedID(granted)
        #expect(granted == "lease \(id) granted with TTL(100s)\n")
        #expect(try member.run("put", "--lease=\(id)", "lk", "v") == "OK\n")
        #expect(try member.run("get", "lk", "-w", "json").contains("\"lease\":\(UInt64(id, radix: 16) ?? 0)"))
        let ttl = try member.run("lease", "timetolive", id, "--keys")
        #expect(
            ttl == "lease \(id) granted with TTL(100s), remaining(99s), attached keys([lk])\n"
                || ttl == "lease \(id) granted with TTL(100s), remaining(100s), attached keys([lk])\n",
            "\(ttl)")
        #expect(
            try member.run("lease", "keep-alive", "--once", id) == "lease \(id) keepalived with TTL(100)\n")
        let other = grantedID(try member.run("lease", "grant", "50"))
        #expect(
            try member.run("lease", "list") == "found 2 leases\n"
                + [id, other].sorted().map { "\($0)\n" }.joined())
        #expect(try member.run("lease", "revoke", id) == "lease \(id) revoked\n")
        #expect(try member.run("get", "lk") == "")
        #expect(try member.run("lease", "timetolive", id) == "lease \(id) already expired\n")
        let again = try member.etcdctl("lease", "revoke", id)
        #expect(again.stderr.contains("etcdserver: requested lease not found"), "\(again)")
        let gone = try member.etcdctl("lease", "keep-alive", "--once", id)
        #expect(gone.status != 0 && gone.stderr.contains("etcdserver: requested lease not found"), "\(gone)")
        let unknown = try member.etcdctl("put", "--lease=1234", "x", "y")
        #expect(unknown.stderr.contains("Error: etcdserver: requested lease not found"), "\(unknown)")
        // A chosen ID survives a restart, and so does the attachment.
        #expect(try member.run("put", "--lease=\(other)", "ok", "1") == "OK\n")
        try member.restart(after: SIGKILL)
        #expect(try member.run("lease", "timetolive", other, "--keys").contains("attached keys([ok])"))
    }

    @Test(arguments: Topology.allCases) func expiredLeaseDeletesItsKeys(_ topology: Topology) throws {
        let member = try topology.start()
        let id = grantedID(try member.run("lease", "grant", "2"))
        #expect(try member.run("put", "--lease=\(id)", "short/a", "1") == "OK\n")
        #expect(try member.run("put", "--lease=\(id)", "short/b", "2") == "OK\n")
        #expect(try member.run("get", "short/", "--prefix", "--keys-only") == "short/a\n\nshort/b\n\n")
        let deadline = Date().addingTimeInterval(6)
        var remaining = "?"
        while Date() < deadline {
            remaining = try member.run("get", "short/", "--prefix", "--keys-only")
            if remaining.isEmpty { break }
            usleep(200_000)
        }
        #expect(remaining == "", "keys of an expired lease still there")
        #expect(try member.run("lease", "timetolive", id) == "lease \(id) already expired\n")
        // Both keys went in one revision (revisions 2, 3, then the revoke at 4).
        #expect(try member.run("put", "after", "x") == "OK\n")
        #expect(try member.run("get", "after", "-w", "json").contains("\"mod_revision\":5"))
    }
}
