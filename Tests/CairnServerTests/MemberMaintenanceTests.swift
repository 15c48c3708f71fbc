import CairnTestSupport
import Foundation
import Testing

/// Maintenance Snapshot and Alarm through `etcdctl`.
@Suite(.serialized) struct MemberMaintenanceTests {
    @Test func snapshotSaveStreamsTheState() throws {
        let member = try MemberProcess()
        // Enough data for several 32 KiB chunks.
        let value = String(repeating: "v", count: 20_000)
        for index in 0..<8 { #expect(try member.run("put", "big\(index)", value) == "OK\n") }
        let path = member.dataDirectory.path + "-snapshot.db"
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try member.run("snapshot", "save", path) == "Snapshot saved at \(path)\n")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.count > 8 * 20_000)
        #expect(Array(bytes.prefix(4)) == Array("CRNS".utf8))
    }

    @Test func quotaRaisesNoSpaceAlarmUntilDisarmed() throws {
        let member = try MemberProcess(extraArguments: ["--quota-backend-bytes", "4096"])
        #expect(try member.run("alarm", "list") == "")
        let value = String(repeating: "x", count: 3000)
        #expect(try member.run("put", "a", value) == "OK\n")
        #expect(try member.run("put", "b", value) == "OK\n")
        let refused = try member.etcdctl("put", "c", "small")
        #expect(refused.stderr.contains("Error: etcdserver: mvcc: database space exceeded"), "\(refused)")
        let list = try member.run("alarm", "list")
        #expect(list.hasPrefix("memberID:") && list.contains("alarm:NOSPACE"), "\(list)")
        // Deletes still work; growing writes stay refused until disarm.
        #expect(try member.run("del", "a") == "1\n")
        #expect(try member.run("compaction", "4") == "compacted revision 4\n")
        #expect(try member.etcdctl("put", "c", "small").stderr.contains("database space exceeded"))
        _ = try member.run("alarm", "disarm")
        #expect(try member.run("alarm", "list") == "")
        #expect(try member.run("put", "c", "small") == "OK\n")
    }
}
