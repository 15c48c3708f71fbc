import Testing

@testable import CairnRaft

@Suite struct StorageAndTypesTests {
    func entries(_ terms: [UInt64], from start: UInt64 = 1) -> [Entry] {
        terms.enumerated().map { Entry(term: $1, index: start + UInt64($0)) }
    }

    @Test func appendReplacesAConflictingSuffix() throws {
        let storage = MemoryStorage()
        storage.append(entries([1, 1, 1, 2]))
        storage.append(entries([3, 3], from: 3))
        #expect(storage.lastIndex() == 4)
        #expect(try storage.term(at: 2) == 1)
        #expect(try storage.term(at: 3) == 3)
    }

    @Test func compactionKeepsTermOfTheLastCompactedEntryAndRefusesOlderReads() throws {
        let storage = MemoryStorage()
        storage.append(entries([1, 1, 2, 2, 3]))
        try storage.createSnapshot(index: 3, confState: ConfState(voters: [1]), data: [7])
        try storage.compact(upTo: 3)
        #expect(storage.firstIndex() == 4)
        #expect(try storage.term(at: 3) == 2)
        #expect(throws: StorageError.compacted) { try storage.term(at: 2) }
        #expect(throws: StorageError.compacted) { try storage.entries(from: 3, to: 5, bytesMax: .max) }
        #expect(throws: StorageError.unavailable) { try storage.entries(from: 4, to: 7, bytesMax: .max) }
        #expect(try storage.snapshot().index == 3)
    }

    @Test func entriesStopAtTheByteLimitButReturnAtLeastOne() throws {
        let storage = MemoryStorage()
        storage.append((1...5).map { Entry(term: 1, index: $0, data: [UInt8](repeating: 0, count: 100)) })
        #expect(try storage.entries(from: 1, to: 6, bytesMax: 1).count == 1)
        #expect(try storage.entries(from: 1, to: 6, bytesMax: 300).count == 2)
    }

    @Test func confChangeRoundTripsAndMalformedDataIsAnErrorValueNotACrash() {
        for change in [
            ConfChange(.addVoter, node: 4), ConfChange(.addLearner, node: .max), ConfChange(.remove, node: 1),
        ] {
            #expect(ConfChange(decoding: change.encoded()) == change)
        }
        #expect(ConfChange(decoding: []) == nil)
        #expect(ConfChange(decoding: [9, 0, 0, 0, 0, 0, 0, 0, 0]) == nil)
        #expect(ConfChange(decoding: [1, 2, 3]) == nil)
    }

    @Test func aRestartedNodeResumesFromWhatWasPersisted() throws {
        let storage = MemoryStorage(voters: [1])
        let node = RaftNode(config: RaftConfig(id: 1), storage: storage)
        node.campaign()
        func drain() {
            while let ready = node.ready() {
                if let hard = ready.hardState { storage.setHardState(hard) }
                storage.append(ready.entries)
                node.advance(ready)
            }
        }
        drain()
        try node.propose([1])
        drain()
        #expect(node.role == .leader)
        #expect(node.committedIndex == 2)
        let restarted = RaftNode(config: RaftConfig(id: 1), storage: storage)
        #expect(restarted.term == node.term)
        #expect(restarted.vote == 1)
        #expect(restarted.committedIndex == 2)
        #expect(restarted.role == .follower)
        let replay = restarted.ready()
        #expect(
            replay?.committedEntries.map(\.index) == [1, 2],
            "committed entries are applied again after a restart")
    }

    @Test func proposalsBeyondTheUncommittedByteBoundAreRefused() throws {
        let storage = MemoryStorage(voters: [1, 2, 3])
        var config = RaftConfig(id: 1)
        config.uncommittedBytesMax = 100
        let node = RaftNode(config: config, storage: storage)
        node.campaign()
        node.step(Message(kind: .preVoteResponse, from: 2, to: 1, term: 1))
        node.step(Message(kind: .voteResponse, from: 2, to: 1, term: 1))
        #expect(node.role == .leader)
        try node.propose([UInt8](repeating: 0, count: 40))
        #expect(throws: RaftError.uncommittedBytesMax) { try node.propose([UInt8](repeating: 0, count: 40)) }
    }

    @Test func withoutForwardingFollowersRefuseProposalsNamingTheLeader() {
        var config = RaftConfig(id: 2)
        config.proposalForwarding = false
        let node = RaftNode(config: config, storage: MemoryStorage(voters: [1, 2, 3]))
        node.step(Message(kind: .heartbeat, from: 1, to: 2, term: 1))
        #expect(throws: RaftError.notLeader(leader: 1)) { try node.propose([1]) }
        #expect(throws: RaftError.notLeader(leader: 1)) { try node.propose(batch: [[1], [2]]) }
        #expect(node.ready()?.messages.contains { $0.kind == .propose } == false)
    }
}
