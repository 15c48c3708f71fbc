import CairnCore
import CairnMVCC
import CairnRaft
import CairnStateMachine
import Testing

@testable import CairnReplica

/// The ordering rules of `Replica.nextEffects()`, each checked where it could break.
@Suite struct ReplicaOrderingTests {
    @Test func noMessageLeavesBeforeItsPersistenceIsConfirmed() throws {
        // Without PreVote the campaign changes term and vote at once (a pre-vote persists nothing).
        let cluster = try LocalCluster(ids: [1, 2, 3]) { $0.raft.preVote = false }
        cluster.settle()
        let candidate = cluster.replica(1)
        candidate.campaign()
        let first = try #require(candidate.nextEffects())
        // The campaign raised the term and voted: that must be durable before any vote request.
        let persist = try #require(first.persist)
        #expect(persist.hardState?.vote == 1)
        #expect(persist.mustSync)
        #expect(first.messages.isEmpty)
        // Still unconfirmed: asking again gives nothing to send.
        #expect(candidate.nextEffects()?.messages.isEmpty ?? true)
        candidate.persisted()
        let second = try #require(candidate.nextEffects())
        #expect(second.messages.count == 2)
        #expect(second.messages.allSatisfy { $0.kind == .vote })
    }

    @Test func aLeaderSendsItsAppendsWhileItPersistsButAppliesOnlyAfter() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let leader = cluster.replica(1)
        try leader.propose(LocalCluster.put("a", "1"), requestID: 9)
        let effects = try #require(leader.nextEffects())
        let persist = try #require(effects.persist)
        #expect(persist.entries.count == 1 && persist.mustSync)
        // The appends leave with the persist (thesis 10.2.1), not after it.
        #expect(effects.messages.filter { $0.kind == .append && !$0.entries.isEmpty }.count == 2)
        #expect(effects.applied.isEmpty && effects.responses.isEmpty)
        // The followers persist and acknowledge while the leader's write is still running.
        for message in effects.messages { cluster.replicas[MemberID(message.to)]!.receive(message) }
        for id in [UInt64(2), 3] {
            while let follower = cluster.replica(id).nextEffects() {
                cluster.record(follower, of: MemberID(id))
            }
        }
        let acknowledgements = cluster.inbox.filter { $0.to == 1 }
        #expect(acknowledgements.count == 2)
        for message in acknowledgements { leader.receive(message) }
        cluster.inbox = []
        // Nothing is applied or answered on the leader before its own write is durable.
        #expect(leader.nextEffects().map { $0.applied.isEmpty && $0.responses.isEmpty } ?? true)
        leader.persisted()
        var answered = false
        while let next = leader.nextEffects() {
            if next.persist != nil { leader.persisted() }
            answered = answered || next.responses.contains { $0.requestID == 9 }
        }
        #expect(answered)
    }

    @Test func aFollowerAcknowledgesOnlyAfterItsWrite() throws {
        // Early sends are a leader's alone: a follower's acknowledgement promises its disk.
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        try cluster.replica(1).propose(LocalCluster.put("b", "2"), requestID: 10)
        let effects = try #require(cluster.replica(1).nextEffects())
        cluster.replica(1).persisted()
        for message in effects.messages where message.to == 2 { cluster.replica(2).receive(message) }
        let follower = try #require(cluster.replica(2).nextEffects())
        #expect(follower.persist?.entries.isEmpty == false)
        #expect(follower.messages.isEmpty)
    }

    @Test func onlyCommittedEntriesAreAppliedAndAnsweredAfterApply() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let leader = cluster.replica(1)
        #expect(leader.role == .leader)
        cluster.isolated = [MemberID(2), MemberID(3)]  // followers cut off: nothing can commit
        try leader.propose(LocalCluster.put("a", "1"), requestID: 42)
        cluster.settle()
        let index = leader.lastIndex
        #expect(leader.durableStorage.lastIndex() == index)  // persisted locally...
        #expect(leader.committedIndex < index)  // ...but not committed
        #expect(!(cluster.applied[MemberID(1)] ?? []).contains { $0.index == index })
        #expect(!(cluster.responses[MemberID(1)] ?? []).contains { $0.requestID == 42 })
        cluster.isolated = []
        cluster.tick(3)
        #expect(leader.committedIndex >= index)
        let applied = try #require(cluster.applied[MemberID(1)]?.first { $0.index == index })
        guard case .put = applied.response else {
            Issue.record("expected a put result, got \(applied.response)")
            return
        }
        let response = try #require(cluster.responses[MemberID(1)]?.first { $0.requestID == 42 })
        guard case .applied(let result) = response.outcome else {
            Issue.record("expected applied, got \(response.outcome)")
            return
        }
        #expect(result.index == index)
        // Followers apply the same entry but answer nobody (the requester is member 1).
        #expect(cluster.applied[MemberID(2)]?.contains { $0.index == index } == true)
        #expect(!(cluster.responses[MemberID(2)] ?? []).contains { $0.requestID == 42 })
    }

    @Test func theResponseComesInTheSameBatchAsTheApplyNeverBefore() throws {
        let cluster = try LocalCluster(ids: [1])
        cluster.elect(1)
        let leader = cluster.replica(1)
        try leader.propose(LocalCluster.put("k", "v"), requestID: 7)
        let effects = try #require(leader.nextEffects())
        #expect(effects.persist != nil)
        #expect(effects.responses.isEmpty && effects.applied.isEmpty)
        leader.persisted()
        var sawResponse = false
        while let next = leader.nextEffects() {
            if next.persist != nil { leader.persisted() }
            for response in next.responses where response.requestID == 7 {
                sawResponse = true
                #expect(next.applied.contains { $0.requester?.id == 7 })
            }
        }
        #expect(sawResponse)
        #expect(leader.stateMachine.store.currentRevision == 2)
    }

    @Test func aLeaderSnapshotIsInstalledBeforeAnyLaterEntryIsApplied() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3]) { config in
            config.snapshotEntriesInterval = 4
            config.catchUpEntries = 0
        }
        cluster.elect(1)
        cluster.isolated = [MemberID(3)]
        for value in 0..<12 {
            try cluster.replica(1).propose(LocalCluster.put("k", "\(value)"), requestID: UInt64(value))
        }
        cluster.tick(2)
        #expect(cluster.replica(1).durableStorage.firstIndex() > 2)  // compacted past what 3 has
        cluster.applied[MemberID(3)] = []
        let follower = cluster.replica(3)
        let appliedBefore = follower.appliedIndex
        cluster.isolated = []
        // Deliver until member 3 is handed the snapshot; check the batch order by hand.
        var snapshotIndex: UInt64?
        for _ in 0..<50 where snapshotIndex == nil {
            cluster.tick()
            if follower.appliedIndex > appliedBefore {
                snapshotIndex = follower.durableStorage.latestSnapshot.index
            }
        }
        let installed = try #require(snapshotIndex)
        #expect(installed > appliedBefore)
        let applied = cluster.applied[MemberID(3)] ?? []
        #expect(applied.allSatisfy { $0.index > follower.durableStorage.latestSnapshot.index })
        cluster.tick(3)
        #expect(follower.stateMachine.appliedIndex == cluster.replica(1).stateMachine.appliedIndex)
        #expect(try follower.stateMachine.hash() == cluster.replica(1).stateMachine.hash())
    }

    @Test func aSnapshotPersistRequestComesBeforeItsEntriesInOneBatch() throws {
        let storage = MemoryStorage(voters: [2])
        let leaderState = try LocalCluster(ids: [1])
        leaderState.elect(1)
        try leaderState.replica(1).propose(LocalCluster.put("x", "y"), requestID: 1)
        leaderState.settle()
        _ = storage
        let source = leaderState.replica(1)
        let snapshot = Snapshot(
            index: source.appliedIndex, term: source.term, confState: ConfState(voters: [1, 9]),
            data: source.stateMachine.snapshot())
        let joiner = try Replica(
            config: LocalCluster.config(9), recovered: RecoveredState(), now: leaderState.now)
        var message = Message(kind: .snapshot, from: 1, to: 9, term: source.term)
        message.snapshot = snapshot
        joiner.receive(message)
        let effects = try #require(joiner.nextEffects())
        let persist = try #require(effects.persist)
        #expect(persist.snapshot?.index == snapshot.index)
        #expect(effects.applied.isEmpty && effects.restoredSnapshotIndex == nil && effects.messages.isEmpty)
        joiner.persisted()
        let after = try #require(joiner.nextEffects())
        #expect(after.restoredSnapshotIndex == snapshot.index)
        #expect(joiner.stateMachine.appliedIndex == snapshot.index)
        #expect(after.messages.contains { $0.kind == .appendResponse && $0.index == snapshot.index })
    }
}

@Suite struct ReplicaBatchTests {
    @Test func aBatchFromAFollowerIsForwardedAndEveryRequestAnswered() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let follower = cluster.replica(3)
        try follower.propose(batch: (10..<15).map { (LocalCluster.put("k\($0)", "v"), UInt64($0)) })
        cluster.settle()
        let answered = (cluster.responses[MemberID(3)] ?? []).map(\.requestID)
        #expect(answered == [10, 11, 12, 13, 14])
        #expect(cluster.replica(2).stateMachine.status.keyCount == 5)
        #expect((cluster.responses[MemberID(1)] ?? []).isEmpty)
    }
}
