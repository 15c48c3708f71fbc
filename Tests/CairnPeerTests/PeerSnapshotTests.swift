import CairnPeer
import CairnTestSupport
import NIOCore
import NIOPosix
import Testing

@Suite("Peer snapshots over real sockets", .serialized)
struct PeerSnapshotTests {
    @Test("a 20 MiB snapshot goes in 1 MiB chunks and arrives intact with its metadata")
    func largeSnapshotArrivesIntact() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = try await PeerNode(memberID: 2, group: group)
        let a = try await PeerNode(memberID: 1, peers: [2: b.url], group: group)
        let data = seededBytes(count: 20 << 20, seed: 3)
        let metadata: [UInt8] = Array("term=5 index=1234".utf8)
        a.transport.sendSnapshot(to: 2, metadata: metadata, data: data)
        try await eventually { a.record.withLockedValue { !$0.snapshotOutcomes.isEmpty } }
        let outcomes = a.record.withLockedValue { $0.snapshotOutcomes }
        #expect(outcomes.count == 1)
        #expect(outcomes.first?.0 == 2)
        #expect(outcomes.first?.1 == .delivered)
        let snapshots = b.record.withLockedValue { $0.snapshots }
        #expect(snapshots.count == 1)
        #expect(snapshots.first?.from == 1)
        #expect(snapshots.first?.metadata == metadata)
        #expect(snapshots.first?.data == data)
        // Messages still flow on the message connection.
        a.transport.send(to: 2, payload: [7])
        try await eventually { b.record.withLockedValue { $0.count(from: 1) } == 1 }
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a snapshot above the receiver's limit is refused before its data is sent")
    func oversizeSnapshotRefused() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var limits = PeerNode.testLimits
        limits.snapshotBytesMax = 1 << 20
        let b = try await PeerNode(memberID: 2, limits: limits, group: group)
        let a = try await PeerNode(memberID: 1, peers: [2: b.url], group: group)
        a.transport.sendSnapshot(to: 2, metadata: [1], data: seededBytes(count: (1 << 20) + 1, seed: 4))
        try await eventually { a.record.withLockedValue { !$0.snapshotOutcomes.isEmpty } }
        let outcome = a.record.withLockedValue { $0.snapshotOutcomes.first?.1 }
        guard case .failed(let reason) = outcome else {
            Issue.record("expected a failed send, got \(String(describing: outcome))")
            return
        }
        #expect(reason.contains("exceeds the receiver's limit"))
        #expect(b.logsContain("refused snapshot from peer 1"))
        #expect(b.record.withLockedValue { $0.snapshots.isEmpty })
        // At the limit exactly, it is accepted.
        a.transport.sendSnapshot(to: 2, metadata: [1], data: seededBytes(count: 1 << 20, seed: 5))
        try await eventually { a.record.withLockedValue { $0.snapshotOutcomes.count } == 2 }
        #expect(a.record.withLockedValue { $0.snapshotOutcomes.last?.1 } == .delivered)
        #expect(b.record.withLockedValue { $0.snapshots.first?.data } == seededBytes(count: 1 << 20, seed: 5))
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a snapshot the receiver's member refuses, or to an unknown or unreachable peer, fails")
    func failedSends() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = try await PeerNode(memberID: 2, group: group, rejectSnapshots: true)
        let a = try await PeerNode(
            memberID: 1, peers: [2: b.url, 3: PeerURL(host: "127.0.0.1", port: TestPorts.allocate())],
            group: group)
        a.transport.sendSnapshot(to: 2, metadata: [], data: seededBytes(count: 3 << 20, seed: 6))
        a.transport.sendSnapshot(to: 3, metadata: [], data: [1, 2, 3])
        a.transport.sendSnapshot(to: 4, metadata: [], data: [1, 2, 3])
        try await eventually { a.record.withLockedValue { $0.snapshotOutcomes.count } == 3 }
        let outcomes = a.record.withLockedValue { $0.snapshotOutcomes }
        for memberID in [UInt64(2), 3, 4] {
            let outcome = outcomes.first { $0.0 == memberID }?.1
            guard case .failed(let reason) = outcome else {
                Issue.record("send to \(memberID): expected failure, got \(String(describing: outcome))")
                continue
            }
            if memberID == 2 { #expect(reason.contains("snapshot rejected")) }
            if memberID == 4 { #expect(reason.contains("not a known peer")) }
        }
        #expect(b.record.withLockedValue { $0.snapshots.isEmpty })
        await a.transport.shutdown()
        await b.transport.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("shutdown fails a snapshot send in flight")
    func shutdownFailsSend() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let b = try await PeerNode(memberID: 2, group: group)
        let a = try await PeerNode(memberID: 1, peers: [2: b.url], group: group)
        await b.transport.shutdown()
        a.transport.sendSnapshot(to: 2, metadata: [], data: seededBytes(count: 1 << 20, seed: 7))
        await a.transport.shutdown()
        try await eventually { a.record.withLockedValue { $0.snapshotOutcomes.count } == 1 }
        guard case .failed = a.record.withLockedValue({ $0.snapshotOutcomes.first?.1 }) else {
            Issue.record("a send during shutdown must fail")
            return
        }
        try await group.shutdownGracefully()
    }
}
