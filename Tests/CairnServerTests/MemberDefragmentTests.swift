import CairnAPI
import CairnClient
import CairnTestSupport
import Foundation
import Testing

/// Maintenance Defragment: a snapshot now, and the WAL segments it covers
/// given back to the file system.
@Suite(.serialized) struct MemberDefragmentTests {
    /// Bytes the member's WAL files take on disk (segments are preallocated).
    static func walBytes(_ member: MemberProcess) throws -> Int {
        let directory = member.dataDirectory.appendingPathComponent("member/wal")
        let files = try FileManager.default.contentsOfDirectory(
            at: directory, includingPropertiesForKeys: nil)
        return try files.reduce(0) { total, file in
            total + (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int ?? 0)
        }
    }

    /// Needs the member's snapshot-now hook (`StorageDefragmenting`, see
    /// MemberDefragment.swift); passes against it, remove the trait once
    /// `Member` conforms.
    @Test
    func defragReleasesTheWALASnapshotCovers() async throws {
        let member = try MemberProcess()
        let client = try EtcdClient(endpoints: [member.endpoint])
        do {
            // More than one 64 MiB WAL segment of 1 MiB values on one key.
            let value = Data(repeating: 0x61, count: 1 << 20)
            for _ in 0..<72 { try await client.put(key: "big", value: value) }
            try await client.compact(revision: 73)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        let before = try Self.walBytes(member)
        #expect(before > 64 << 20)
        #expect(try member.run("defrag") == "Finished defragmenting etcd member[\(member.endpoint)]\n")
        let after = try Self.walBytes(member)
        #expect(after < before - (32 << 20), "WAL \(before) -> \(after) bytes")
        // The state is intact and survives a restart from the new snapshot.
        try member.restart(after: SIGKILL)
        let fields = try member.run("get", "big", "-w", "fields")
        #expect(fields.contains("\"ModRevision\" : 73") && fields.contains("\"Version\" : 72"), "\(fields)")
    }
}
