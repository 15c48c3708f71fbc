import CairnTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Keys acknowledged by concurrent writers, shared across threads.
final class AcknowledgedKeys: @unchecked Sendable {
    private let lock = NSLock()
    private var keys: [String] = []
    private var stopped = false

    func record(_ key: String) { self.lock.withLock { self.keys.append(key) } }
    var all: [String] { self.lock.withLock { self.keys } }
    var count: Int { self.lock.withLock { self.keys.count } }
    func stop() { self.lock.withLock { self.stopped = true } }
    var isStopped: Bool { self.lock.withLock { self.stopped } }
}

/// A member loses no acknowledged write: not when killed mid-load, not
/// across a clean stop, not across snapshots and WAL segment release.
@Suite(.serialized) struct MemberDurabilityTests {
    @Test func killDuringConcurrentPutsKeepsEveryAcknowledgedPut() throws {
        let member = try MemberProcess()
        let acknowledged = AcknowledgedKeys()
        let writers = DispatchGroup()
        for writer in 0..<4 {
            writers.enter()
            Thread.detachNewThread {
                defer { writers.leave() }
                var sequence = 0
                while !acknowledged.isStopped {
                    let key = "load/\(writer)-\(sequence)"
                    guard let output = try? member.etcdctl("put", key, "value-\(sequence)"),
                        output.status == 0, output.stdout == "OK\n"
                    else { return }
                    acknowledged.record(key)
                    sequence += 1
                }
            }
        }
        let deadline = Date().addingTimeInterval(6)
        while acknowledged.count < 24 && Date() < deadline { usleep(20_000) }
        // Killed while the writers are still sending.
        member.process.stop(signal: SIGKILL)
        acknowledged.stop()
        let acknowledgedBeforeKill = acknowledged.count
        // Restart at once: a put in flight at the kill is retried by etcdctl
        // against the new process, and every put it acknowledges must stay.
        try member.restart(after: SIGKILL)
        writers.wait()
        let keys = acknowledged.all
        #expect(
            acknowledgedBeforeKill >= 20,
            "too few acknowledged puts before the kill: \(acknowledgedBeforeKill)")
        let stored = Set(
            try member.run("get", "load/", "--prefix", "--keys-only").split(separator: "\n").map(String.init))
        let lost = keys.filter { !stored.contains($0) }
        #expect(lost.isEmpty, "acknowledged puts lost after kill -9: \(lost)\n\(member.process.log)")
    }

    @Test func cleanStopKeepsEverything() throws {
        let member = try MemberProcess()
        for index in 0..<5 { #expect(try member.run("put", "k\(index)", "v\(index)") == "OK\n") }
        #expect(try member.run("del", "k2") == "1\n")
        #expect(try member.run("compaction", "4") == "compacted revision 4\n")
        // The term grows with the restart's election; everything else is equal.
        func withoutTerm(_ json: String) -> String {
            json.replacingOccurrences(of: #""raft_term":[0-9]+"#, with: "", options: .regularExpression)
        }
        let before = withoutTerm(try member.run("get", "", "--from-key", "-w", "json"))
        try member.restart(after: SIGTERM)
        #expect(withoutTerm(try member.run("get", "", "--from-key", "-w", "json")) == before)
        #expect(try member.run("get", "k", "--prefix", "--keys-only") == "k0\n\nk1\n\nk3\n\nk4\n\n")
        let compacted = try member.etcdctl("get", "k0", "--rev", "3")
        #expect(compacted.stderr.contains("required revision has been compacted"))
        // The next write continues the revision sequence.
        #expect(try member.run("put", "next", "x") == "OK\n")
        #expect(try member.run("get", "next", "-w", "json").contains("\"mod_revision\":8"))
    }

    /// The end of the last record of a WAL segment: frames are a 4-byte
    /// little-endian length, a 4-byte CRC and `length` bytes; the
    /// preallocated rest of the file is zeros.
    private func endOfRecords(_ bytes: [UInt8]) -> Int {
        var offset = 0
        while offset + 8 <= bytes.count {
            let length = (0..<4).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
            if length == 0 { break }
            offset += 8 + length
        }
        return offset
    }

    @Test func tornWALTailIsCutAndLoggedWithEveryAcknowledgedWriteKept() throws {
        let member = try MemberProcess()
        for index in 0..<5 { #expect(try member.run("put", "t\(index)", "v\(index)") == "OK\n") }
        member.process.stop(signal: SIGKILL)
        let walDirectory = member.dataDirectory.appendingPathComponent("member/wal")
        let segments = try FileManager.default.contentsOfDirectory(atPath: walDirectory.path)
            .filter { $0.hasSuffix(".wal") }.sorted()
        let segment = walDirectory.appendingPathComponent(try #require(segments.last))
        // The records of five small puts sit in the segment's first KiBs.
        let handle = try FileHandle(forUpdating: segment)
        let end = endOfRecords([UInt8](try handle.read(upToCount: 64 * 1024) ?? Data()))
        // A torn write: a frame header promising 64 bytes, a wrong CRC and
        // only part of its body.
        try handle.seek(toOffset: UInt64(end))
        try handle.write(contentsOf: Data([64, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF, 2, 1, 2, 3, 4, 5]))
        try handle.close()
        try member.restart(after: SIGKILL)
        #expect(member.process.log.contains("WAL tail repaired"), "\(member.process.log)")
        #expect(
            try member.run("get", "t", "--prefix", "--print-value-only")
                == (0..<5).map { "v\($0)\n" }.joined())
        #expect(try member.run("put", "after", "x") == "OK\n")
        #expect(try member.run("get", "after", "-w", "json").contains("\"mod_revision\":7"))
    }

    @Test func restartFromSnapshotAndLaterEntries() throws {
        let member = try MemberProcess(extraArguments: ["--snapshot-count", "5"])
        for index in 0..<13 { #expect(try member.run("put", "s\(index)", "\(index)") == "OK\n") }
        try member.restart(after: SIGKILL)
        let log = member.process.log
        // 16 entries (the membership entry, the leader's first entry, the
        // member's published name, 13 puts): the snapshot at 15, then the WAL.
        #expect(log.contains("loaded snapshot at index 15"), "\(log)")
        #expect(log.contains("replaying 1 WAL entries after snapshot 15"), "\(log)")
        #expect(
            try member.run("get", "s", "--prefix", "--print-value-only", "--sort-by=CREATE")
                == (0..<13).map { "\($0)\n" }.joined())
        #expect(try member.run("get", "s12", "-w", "json").contains("\"mod_revision\":14"))
    }
}
