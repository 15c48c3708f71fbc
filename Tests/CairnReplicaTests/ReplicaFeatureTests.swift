import CairnCore
import CairnMVCC
import CairnRaft
import CairnStateMachine
import Testing

@testable import CairnReplica

/// Reads, leases, membership, bootstrap and restart of the member core.
@Suite struct ReplicaFeatureTests {
    @Test func concurrentReadsShareOneReadIndexRound() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let leader = cluster.replica(1)
        try leader.read(readID: 1)
        try leader.read(readID: 2)
        try leader.read(readID: 3)
        // One round: one heartbeat per follower carrying a read context.
        let effects = try #require(leader.nextEffects())
        let heartbeats = effects.messages.filter { $0.kind == .heartbeat && !$0.context.isEmpty }
        #expect(heartbeats.count == 2)
        cluster.record(effects, of: MemberID(1))
        cluster.settle()
        let answers = cluster.reads[MemberID(1)] ?? []
        #expect(answers.map(\.readID).sorted() == [1, 2, 3])
        #expect(answers.allSatisfy { (try? $0.result.get()) == leader.committedIndex })
    }

    @Test func aReadWaitsForALaterRoundWhenOneIsInFlight() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let leader = cluster.replica(1)
        try leader.read(readID: 1)
        cluster.record(try #require(leader.nextEffects()), of: MemberID(1))
        try leader.propose(LocalCluster.put("a", "b"), requestID: 5)
        try leader.read(readID: 2)  // arrives after round 1 started: must see the put
        cluster.settle()
        let answers = cluster.reads[MemberID(1)] ?? []
        let first = try #require(answers.first { $0.readID == 1 })
        let second = try #require(answers.first { $0.readID == 2 })
        let putIndex = try #require(cluster.applied[MemberID(1)]?.first { $0.requester?.id == 5 }?.index)
        #expect(try second.result.get() >= putIndex)
        #expect(try first.result.get() < putIndex)
    }

    @Test func aFollowerWithoutForwardingOrALeaderlessMemberRefusesReads() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.settle()
        let lonely = cluster.replica(2)
        try lonely.read(readID: 9)
        let effects = try #require(lonely.nextEffects())
        #expect(effects.reads.map(\.readID) == [9])
        #expect(throws: ReplicaError.self) { try effects.reads[0].result.get() }
    }

    @Test func anExpiredLeaseIsRevokedByTheLeaderThroughTheLog() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let leader = cluster.replica(1)
        try leader.propose(.leaseGrant(id: LeaseID(77), ttlSeconds: 5), requestID: 1)
        cluster.settle()
        try leader.propose(LocalCluster.put("held", "x", lease: LeaseID(77)), requestID: 2)
        cluster.settle()
        #expect(cluster.replica(2).stateMachine.lessor.isGranted(LeaseID(77)))
        #expect(try leader.renewLease(LeaseID(77)) == 5)
        #expect(throws: ReplicaError.self) { try cluster.replica(2).renewLease(LeaseID(77)) }
        cluster.tick(30)  // 3 s: still alive after the renewal
        #expect(cluster.replica(3).stateMachine.lessor.isGranted(LeaseID(77)))
        cluster.tick(40)  // 7 s in total: expired, revoke proposed, committed, applied everywhere
        for id: UInt64 in [1, 2, 3] {
            #expect(!cluster.replica(id).stateMachine.lessor.isGranted(LeaseID(77)))
            #expect(cluster.replica(id).stateMachine.status.keyCount == 0)
        }
    }

    @Test func membershipAddPromoteRemoveUpdateTheReplicatedMemberList() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3])
        cluster.elect(1)
        let leader = cluster.replica(1)
        #expect(leader.members.map(\.name) == ["m1", "m2", "m3"])
        let learner = MemberRecord(
            id: MemberID(4), name: "", peerURLs: ["http://127.0.0.1:2390"], isLearner: true)
        #expect(throws: ReplicaError.notLeader(leader: MemberID(1))) {
            try cluster.replica(2).addMember(learner, requestID: 1)
        }
        #expect(throws: ReplicaError.peerURLExists) {
            try leader.addMember(
                MemberRecord(id: MemberID(5), name: "", peerURLs: ["http://127.0.0.1:2380"]), requestID: 1)
        }
        try leader.addMember(learner, requestID: 1)
        cluster.settle()
        let added = try #require(cluster.responses[MemberID(1)]?.first { $0.requestID == 1 })
        guard case .membership(let list) = added.outcome else {
            Issue.record("expected a member list, got \(added.outcome)")
            return
        }
        #expect(list.map(\.id.rawValue) == [1, 2, 3, 4])
        #expect(cluster.replica(3).members.last == learner)
        #expect(leader.confState.learners == [4])
        // Member 4 does not run: it cannot be in sync, so it cannot be promoted.
        #expect(throws: ReplicaError.learnerNotReady) { try leader.promoteMember(MemberID(4), requestID: 2) }
        #expect(throws: ReplicaError.memberNotLearner) { try leader.promoteMember(MemberID(2), requestID: 2) }
        var updated = cluster.replica(2).members[1]
        updated.clientURLs = ["http://127.0.0.1:12379"]
        try cluster.replica(1).updateMember(updated, requestID: 3)
        try leader.removeMember(MemberID(3), requestID: 4)
        cluster.settle()
        #expect(cluster.removed == [MemberID(3)])
        #expect(cluster.replica(3).state == .stopped(.stopped))
        #expect(leader.members.map(\.id.rawValue) == [1, 2, 4])
        #expect(cluster.replica(2).members[1].clientURLs == ["http://127.0.0.1:12379"])
        #expect(throws: ReplicaError.memberRemoved) {
            try leader.addMember(
                MemberRecord(id: MemberID(3), name: "", peerURLs: ["http://x:1"]), requestID: 5)
        }
        #expect(leader.confState.voters == [1, 2])
    }

    @Test func sha1AndEtcdStyleIDsAreDeterministic() {
        #expect(SHA1.prefix64(Array("abc".utf8)) == 0xA999_3E36_4706_816A)
        #expect(SHA1.prefix64([]) == 0xDA39_A3EE_5E6B_4B0D)
        let long = Array(repeating: UInt8(ascii: "a"), count: 1000)
        #expect(SHA1.hash(long)[0] == 0x291E_9A6C)
        let a = Bootstrap.memberID(peerURLs: ["http://b:2380", "http://a:2380"], token: "t")
        let b = Bootstrap.memberID(peerURLs: ["http://a:2380", "http://b:2380"], token: "t")
        #expect(a == b)
        #expect(a != Bootstrap.memberID(peerURLs: ["http://a:2380", "http://b:2380"], token: "u"))
        #expect(
            Bootstrap.clusterID(memberIDs: [MemberID(2), MemberID(1)])
                == Bootstrap.clusterID(memberIDs: [MemberID(1), MemberID(2)]))
    }

    @Test func everyInitialMemberWritesTheSameBootstrapEntries() throws {
        let one = Bootstrap.initialMembers(
            [(name: "b", peerURLs: ["http://b:2380"]), (name: "a", peerURLs: ["http://a:2380"])], token: "tok"
        )
        let two = Bootstrap.initialMembers(
            [(name: "a", peerURLs: ["http://a:2380"]), (name: "b", peerURLs: ["http://b:2380"])], token: "tok"
        )
        let first = Bootstrap.newCluster(members: one)
        let second = Bootstrap.newCluster(members: two)
        #expect(first.entries == second.entries)
        #expect(first.entries.map(\.index) == [1, 2])
        #expect(first.entries.allSatisfy { $0.term == 1 && $0.kind == .confChange })
        #expect(first.hardState == HardState(term: 1, vote: noNode, commit: 2))
        let decoded = try #require(MembershipEntry(decoding: first.entries[0].data))
        #expect(decoded.record == one[0])
        #expect(MembershipEntry(decoding: [1, 2, 3]) == nil)
    }

    @Test func aRestartFromTheDurableStateRebuildsTheSameState() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3]) { config in
            config.snapshotEntriesInterval = 3
            config.catchUpEntries = 1
        }
        cluster.elect(2)
        for value in 0..<10 {
            try cluster.replica(2).propose(
                LocalCluster.put("k\(value % 3)", "\(value)"), requestID: UInt64(value))
        }
        cluster.tick(2)
        let old = cluster.replica(1)
        let storage = old.durableStorage
        let recovered = RecoveredState(
            snapshot: storage.latestSnapshot, hardState: storage.hardState,
            entries: try storage.entries(
                from: storage.firstIndex(), to: storage.lastIndex() + 1, bytesMax: .max))
        #expect(storage.latestSnapshot.index > 0)
        let restarted = try Replica(config: LocalCluster.config(1), recovered: recovered, now: cluster.now)
        cluster.replicas[MemberID(1)] = restarted
        cluster.tick(3)
        #expect(restarted.appliedIndex == old.appliedIndex)
        #expect(try restarted.stateMachine.hash() == old.stateMachine.hash())
        #expect(restarted.members.map(\.name) == ["m1", "m2", "m3"])
    }

    @Test func aCorruptSnapshotIsAnErrorNotACrash() {
        let recovered = RecoveredState(
            snapshot: Snapshot(
                index: 5, term: 1, confState: ConfState(voters: [1]), data: [1, 2, 3, 4, 5, 6, 7, 8, 9]),
            hardState: HardState(term: 1, commit: 5))
        #expect(throws: ReplicaError.self) {
            _ = try Replica(
                config: LocalCluster.config(1), recovered: recovered, now: MonotonicInstant(milliseconds: 0))
        }
    }
}

/// Leases across a leader change (MoveLeader): the checkpointed remaining TTL carries over.
@Suite struct ReplicaLeaseHandoverTests {
    @Test func aNewLeaderNeitherExtendsNorCutsALeaseAfterMoveLeader() throws {
        let cluster = try LocalCluster(ids: [1, 2, 3]) { config in
            config.stateMachine.lessor.checkpointIntervalSeconds = 5
        }
        cluster.elect(1)
        try cluster.replica(1).propose(.leaseGrant(id: LeaseID(9), ttlSeconds: 30), requestID: 1)
        cluster.settle()
        cluster.tick(120)  // 12 s: checkpoints at 5 s and 10 s replicated the remaining TTL
        try cluster.replica(1).transferLeadership(to: MemberID(2))
        cluster.settle()
        cluster.tick(5)
        #expect(cluster.replica(2).role == .leader)
        #expect(cluster.replica(1).stateMachine.lessor.state == .secondary)
        cluster.tick(150)  // 27.5 s: the remaining ~20 s (+1 s grace) has not run out
        #expect(cluster.replica(3).stateMachine.lessor.isGranted(LeaseID(9)))
        cluster.tick(100)  // 37.5 s: well past it; a full 30 s restart would still hold it
        for id: UInt64 in [1, 2, 3] {
            #expect(!cluster.replica(id).stateMachine.lessor.isGranted(LeaseID(9)))
        }
    }
}
