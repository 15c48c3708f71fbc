import CairnAPI
import CairnClient
import CairnTestSupport
import Foundation
import Testing

/// Cairn's own client against a real member: what etcdctl cannot drive
/// (watch filters, progress requests, many concurrent writes).
@Suite struct MemberClientTests {
    @Test func watchFiltersAndProgressRequests() async throws {
        let member = try MemberProcess()
        let client = try EtcdClient(endpoints: [member.endpoint])
        do {
            let stream = try await client.watch("f/", end: .prefix, filters: [.noput])
            try await client.put(key: "f/a", value: "1")
            try await client.delete("f/a")
            var iterator = stream.makeAsyncIterator()
            let deleted = try await iterator.next()
            #expect(deleted?.events.map(\.type) == [.delete])
            #expect(deleted?.events.first?.kv.key == Data("f/a".utf8))
            #expect(deleted?.header.revision == 3)
            try await client.put(key: "other", value: "x")
            client.requestProgress()
            let progress = try await iterator.next()
            #expect(progress?.isProgressNotify == true)
            #expect(progress?.header.revision == 4)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }

    @Test func concurrentWritesGetDistinctRevisionsAndAllPersist() async throws {
        let member = try MemberProcess()
        let client = try EtcdClient(endpoints: [member.endpoint])
        let writes = 300
        do {
            let revisions = try await withThrowingTaskGroup(of: Int64.self) { group in
                for index in 0..<writes {
                    group.addTask {
                        try await client.put(key: "c/\(index)", value: "\(index)").header.revision
                    }
                }
                var all: [Int64] = []
                for try await revision in group { all.append(revision) }
                return all
            }
            // One revision per put, none shared, none skipped.
            #expect(revisions.sorted() == Array(2...Int64(writes + 1)))
            let status = try await client.status()
            // Besides the puts: the membership entry, the leader's first entry
            // and the member's published name.
            #expect(status.raftIndex == UInt64(writes + 3) && status.header.revision == Int64(writes + 1))
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        member.process.stop(signal: SIGTERM)
        // Group commit: concurrent writes shared syncs.
        let log = member.process.log
        let figures =
            log.split(separator: "\n").first { $0.contains("group commit: ") }?
            .split(separator: " ").compactMap { Int($0) } ?? []
        #expect(
            figures.count == 2 && figures[0] >= writes && figures[1] < figures[0],
            "concurrent writes did not share syncs: \(log)")
        try member.restart(after: SIGTERM)
        let keys = try member.run("get", "c/", "--prefix", "--keys-only").split(separator: "\n")
        #expect(Set(keys) == Set((0..<writes).map { Substring("c/\($0)") }))
    }
}
