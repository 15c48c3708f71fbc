import CairnTestSupport
import Foundation
import Testing

/// `etcdctl snapshot save` output carries a SHA-256 of the stream; check the
/// member's digest against the system's `sha256sum` on the saved file.
@Suite struct SnapshotChecksumTests {
    @Test func savedSnapshotEndsWithSHA256OfItsBody() throws {
        let member = try MemberProcess()
        #expect(try member.run("put", "k", String(repeating: "z", count: 70_000)) == "OK\n")
        let path = member.dataDirectory.path + "-digest.db"
        let bodyPath = path + ".body"
        defer {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: bodyPath)
        }
        _ = try member.run("snapshot", "save", path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.count % 512 == 32)
        try bytes.dropLast(32).write(to: URL(fileURLWithPath: bodyPath))
        let sum = try TestProcess.run("sha256sum", [bodyPath])
        let expected = bytes.suffix(32).map { String(format: "%02x", $0) }.joined()
        #expect(sum.stdout.hasPrefix(expected), "\(sum.stdout) vs \(expected)")
    }
}
