import CairnAPI
import CairnClient
import CairnRPC
import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `--log-format json`: every record is one JSON object with etcd's fields,
/// the member's identity in metadata, and no keys, values, passwords or
/// tokens, even at `--log-level debug`.
@Suite(.serialized) struct MemberLogTests {
    /// The process's log lines. Every one must be ours: a stray line (such
    /// as SwiftNIO's warning about work scheduled on an event loop that has
    /// shut down, which a shutdown race once printed) fails these tests.
    static func ourLines(_ log: String) -> [Substring] {
        log.split(separator: "\n")
    }

    static let key = "logtest-key-7f3a9c"
    static let value = "logtest-value-b81e44"
    static let password = "logtest-secret-5d2c17"
    static let wrongPassword = "logtest-wrong-93be0a"
    static let authKey = "logtest-authkey-c40d21"
    static let authValue = "logtest-authvalue-e6f812"

    @Test func jsonRecordsCarryIdentityAndNoSecrets() async throws {
        let member = try MemberProcess(
            extraArguments: ["--log-format", "json", "--log-level", "debug"] + MemberAuthTests.arguments)
        #expect(try member.run("put", Self.key, Self.value) == "OK\n")
        #expect(try member.run("get", Self.key) == "\(Self.key)\n\(Self.value)\n")
        _ = try member.run("user", "add", "root", "--new-user-password=\(Self.password)")
        _ = try member.run("role", "add", "root")
        _ = try member.run("user", "grant-role", "root", "root")
        #expect(try member.run("auth", "enable") == "Authentication Enabled\n")
        #expect(
            try member.run("--user", "root:\(Self.password)", "put", Self.authKey, Self.authValue) == "OK\n")
        let refused = try member.etcdctl("--user", "root:\(Self.wrongPassword)", "get", Self.authKey)
        #expect(refused.status != 0)
        let client = try EtcdClient(endpoints: [member.endpoint])
        let token: String
        do {
            token = try await ClusterAuthTests.token("root", Self.password, at: client)
            var get = Etcdserverpb_RangeRequest()
            get.key = Data(Self.authKey.utf8)
            let read = try await client.rpc.unary(
                EtcdKV.range, get, options: ClusterAuthTests.options(token: token))
            #expect(read.kvs.first?.value == Data(Self.authValue.utf8))
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        #expect(!token.isEmpty)
        member.process.stop(signal: SIGTERM)

        let log = member.process.log
        let lines = Self.ourLines(log)
        #expect(lines.count >= 4, "\(log)")
        var records: [[String: Any]] = []
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let object else {
                Issue.record("not a JSON object: \(line)")
                continue
            }
            records.append(object)
        }
        for record in records {
            #expect(
                ["debug", "info", "warn", "error", "fatal"].contains(record["level"] as? String), "\(record)")
            let timestamp = record["ts"] as? String ?? ""
            #expect(
                timestamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(record)")
            #expect(record["component"] as? String == "member", "\(record)")
            #expect(!(record["msg"] as? String ?? "").isEmpty, "\(record)")
            #expect(record["name"] as? String == "default", "\(record)")
        }
        // From the first client listener on, every record names the member
        // and its cluster; the member ID is the one `serving clients` shows.
        let serving = try #require(
            records.firstIndex { ($0["msg"] as? String ?? "").contains("serving clients on") }, "\(log)")
        let memberID = try #require(records[serving]["member-id"] as? String, "\(records[serving])")
        #expect((records[serving]["msg"] as? String ?? "").contains("(\(memberID))"))
        for record in records[serving...] {
            #expect(record["member-id"] as? String == memberID, "\(record)")
            #expect(!(record["cluster-id"] as? String ?? "").isEmpty, "\(record)")
        }
        // Role changes carry the term and the leader as fields.
        let leaderLine = try #require(
            records.first { ($0["msg"] as? String ?? "").hasPrefix("raft: leader") }, "\(log)")
        #expect(Int(leaderLine["term"] as? String ?? "") ?? 0 >= 1, "\(leaderLine)")
        #expect(leaderLine["leader"] as? String == memberID, "\(leaderLine)")
        #expect(records.last?["msg"] as? String == "stopped", "\(log)")
        for secret in [
            Self.key, Self.value, Self.password, Self.wrongPassword, Self.authKey, Self.authValue, token,
        ] {
            #expect(!log.contains(secret), "the log shows \(secret)")
        }
    }

    /// A refused plaintext connection on a TLS port is logged as a record
    /// whose quoted address survives JSON escaping.
    @Test func refusedConnectionsAreValidJSON() throws {
        let fixture = try MemberTLSTests.Fixture()
        let member = try TLSMemberProcess(
            tlsArguments: fixture.memberArguments() + ["--log-format", "json"])
        let plaintext = try TestProcess.run(
            "etcdctl", ["--endpoints=http://127.0.0.1:\(member.port)", "--dial-timeout=2s", "put", "a", "1"],
            environment: ["ETCDCTL_API": "3"], timeoutSeconds: 20)
        #expect(plaintext.status != 0)
        let log = member.log(waitingFor: "rejected client connection from")
        var refusals: [[String: Any]] = []
        for line in Self.ourLines(log) {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let object else {
                Issue.record("not a JSON object: \(line)")
                continue
            }
            if (object["msg"] as? String ?? "").hasPrefix("rejected client connection from \"127.0.0.1:") {
                refusals.append(object)
            }
        }
        #expect(!refusals.isEmpty, "\(log)")
        #expect(refusals.allSatisfy { $0["member-id"] is String }, "\(refusals)")
    }

    /// The default stays the historical text lines, and an unknown level is
    /// refused before the member starts.
    @Test func textIsTheDefaultAndBadLevelsAreRefused() throws {
        let member = try MemberProcess()
        _ = try member.run("put", "a", "1")
        member.process.stop(signal: SIGTERM)
        let lines = Self.ourLines(member.process.log)
        #expect(!lines.isEmpty)
        for line in lines { #expect(line.hasPrefix("cairn member: "), "\(line)") }

        let refused = try TestProcess.run(
            MemberProcess.binary, ["member", "--log-level", "verbose"], timeoutSeconds: 20)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("verbose"), "\(refused.stderr)")
    }
}
