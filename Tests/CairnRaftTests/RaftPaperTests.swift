import Testing

@testable import CairnRaft

/// Tests named after the sentences of the Raft paper (Ongaro and Ousterhout, 2014) they check.
/// PreVote and CheckQuorum are off here: the paper's basic algorithm.
@Suite struct RaftPaperTests {
    /// A node persisted in memory; `drain` plays the application for one `Ready`.
    final class Harness {
        let node: RaftNode
        let storage: MemoryStorage

        init(
            id: NodeID, voters: Set<NodeID> = [1, 2, 3], terms: [UInt64] = [], term: UInt64 = 0,
            seed: UInt64 = 0
        ) {
            storage = MemoryStorage(voters: voters)
            storage.append(terms.enumerated().map { Entry(term: $1, index: UInt64($0) + 1) })
            storage.setHardState(HardState(term: max(term, terms.last ?? 0)))
            var config = RaftConfig(id: id, randomSeed: seed)
            config.preVote = false
            config.checkQuorum = false
            node = RaftNode(config: config, storage: storage)
        }

        @discardableResult
        func drain() -> [Message] {
            var messages: [Message] = []
            while let ready = node.ready() {
                if let snapshot = ready.snapshot { storage.applySnapshot(snapshot) }
                if let hard = ready.hardState { storage.setHardState(hard) }
                storage.append(ready.entries)
                messages += ready.messages
                node.advance(ready)
            }
            return messages
        }
    }

    func message(_ kind: MessageKind, from: NodeID, to: NodeID, term: UInt64) -> Message {
        Message(kind: kind, from: from, to: to, term: term)
    }

    func electLeader(_ harness: Harness) {
        harness.node.campaign()
        for voter: NodeID in [2, 3] where voter != harness.node.id {
            harness.node.step(
                message(.voteResponse, from: voter, to: harness.node.id, term: harness.node.term))
        }
        harness.drain()
    }

    @Test func whenServersStartUpTheyBeginAsFollowers() {
        let harness = Harness(id: 1)
        #expect(harness.node.role == .follower)
        #expect(harness.node.term == 0)
    }

    @Test func ifOneServersCurrentTermIsSmallerItUpdatesItsCurrentTermToTheLargerValue() {
        for role in [Role.follower, .candidate, .leader] {
            let harness = Harness(id: 1)
            if role == .candidate { harness.node.campaign() }
            if role == .leader { electLeader(harness) }
            harness.node.step(message(.append, from: 2, to: 1, term: 5))
            #expect(harness.node.term == 5)
            #expect(harness.node.role == .follower)
            #expect(harness.node.leader == 2)
        }
    }

    @Test func ifAServerReceivesARequestWithAStaleTermNumberItRejectsTheRequest() {
        let harness = Harness(id: 1, term: 3)
        var append = message(.append, from: 2, to: 1, term: 2)
        append.entries = [Entry(term: 2, index: 1)]
        harness.node.step(append)
        harness.drain()
        #expect(harness.node.lastIndex == 0)
        #expect(harness.node.term == 3)
    }

    @Test func leadersSendPeriodicHeartbeatsToAllFollowers() {
        let harness = Harness(id: 1)
        electLeader(harness)
        harness.node.tick()
        let heartbeats = harness.drain().filter { $0.kind == .heartbeat }
        #expect(Set(heartbeats.map(\.to)) == [2, 3])
    }

    @Test func ifAFollowerReceivesNoCommunicationOverTheElectionTimeoutItBeginsAnElection() {
        let harness = Harness(id: 1)
        for _ in 0..<20 { harness.node.tick() }
        #expect(harness.node.role == .candidate)
        #expect(harness.node.term == 1)
        #expect(harness.node.vote == 1)
        let votes = harness.drain().filter { $0.kind == .vote }
        #expect(Set(votes.map(\.to)) == [2, 3])
    }

    @Test func aCandidateWinsAnElectionIfItReceivesVotesFromAMajorityOfTheServers() {
        let harness = Harness(id: 1, voters: [1, 2, 3, 4, 5])
        harness.node.campaign()
        harness.node.step(message(.voteResponse, from: 2, to: 1, term: 1))
        #expect(harness.node.role == .candidate)
        harness.node.step(message(.voteResponse, from: 3, to: 1, term: 1))
        #expect(harness.node.role == .leader)
    }

    @Test func eachServerWillVoteForAtMostOneCandidateInAGivenTermFirstComeFirstServed() {
        let harness = Harness(id: 1)
        harness.node.step(message(.vote, from: 2, to: 1, term: 1))
        harness.node.step(message(.vote, from: 3, to: 1, term: 1))
        harness.node.step(message(.vote, from: 2, to: 1, term: 1))
        let responses = harness.drain().filter { $0.kind == .voteResponse }
        #expect(responses.map(\.to) == [2, 3, 2])
        #expect(responses.map(\.reject) == [false, true, false])
        #expect(harness.storage.hardState.vote == 2)
    }

    @Test func ifTheLeaderIsLegitimateTheCandidateRecognizesItAndReturnsToFollowerState() {
        let harness = Harness(id: 1)
        harness.node.campaign()
        harness.node.step(message(.heartbeat, from: 2, to: 1, term: 1))
        #expect(harness.node.role == .follower)
        #expect(harness.node.leader == 2)
    }

    @Test func raftUsesRandomizedElectionTimeoutsToEnsureThatSplitVotesAreRare() {
        var timeouts: Set<Int> = []
        for seed: UInt64 in 0..<50 {
            let harness = Harness(id: 1, seed: seed)
            var ticks = 0
            while harness.node.role == .follower {
                harness.node.tick()
                ticks += 1
            }
            #expect(ticks >= 10 && ticks < 20)
            timeouts.insert(ticks)
        }
        #expect(timeouts.count > 5)
    }

    @Test func theLeaderAppendsTheCommandToItsLogThenIssuesAppendEntriesInParallel() throws {
        let harness = Harness(id: 1)
        electLeader(harness)
        for follower: NodeID in [2, 3] {
            var response = message(.appendResponse, from: follower, to: 1, term: 1)
            response.index = 1
            harness.node.step(response)
        }
        harness.drain()
        try harness.node.propose(Array("x".utf8))
        let appends = harness.drain().filter { $0.kind == .append }
        #expect(Set(appends.map(\.to)) == [2, 3])
        #expect(appends.allSatisfy { $0.entries.map(\.data) == [Array("x".utf8)] })
        #expect(harness.storage.lastIndex() == 2)
    }

    @Test func aLogEntryIsCommittedOnceTheLeaderHasReplicatedItOnAMajority() throws {
        let harness = Harness(id: 1, voters: [1, 2, 3, 4, 5])
        harness.node.campaign()
        for voter: NodeID in [2, 3] { harness.node.step(message(.voteResponse, from: voter, to: 1, term: 1)) }
        harness.drain()
        var response = message(.appendResponse, from: 2, to: 1, term: 1)
        response.index = 1
        harness.node.step(response)
        #expect(harness.node.committedIndex == 0)
        response.from = 3
        harness.node.step(response)
        #expect(harness.node.committedIndex == 1)
    }

    @Test func ifTheFollowerDoesNotFindAnEntryWithTheSameIndexAndTermItRefusesTheNewEntries() {
        let harness = Harness(id: 2, terms: [1, 2])
        var append = message(.append, from: 1, to: 2, term: 3)
        append.index = 2
        append.logTerm = 3
        append.entries = [Entry(term: 3, index: 3)]
        harness.node.step(append)
        let response = harness.drain().first { $0.kind == .appendResponse }
        #expect(response?.reject == true)
        #expect(harness.node.lastIndex == 2)
    }

    @Test func ifAnExistingEntryConflictsWithANewOneDeleteTheExistingEntryAndAllThatFollowIt() {
        let harness = Harness(id: 2, terms: [1, 2, 2, 2])
        var append = message(.append, from: 1, to: 2, term: 3)
        append.index = 2
        append.logTerm = 2
        append.entries = [Entry(term: 3, index: 3)]
        harness.node.step(append)
        harness.drain()
        #expect(harness.node.lastIndex == 3)
        #expect(harness.node.term(at: 3) == 3)
        #expect(harness.storage.lastIndex() == 3)
    }

    @Test func theVoterDeniesItsVoteIfItsOwnLogIsMoreUpToDateThanThatOfTheCandidate() {
        let cases: [(candidateIndex: UInt64, candidateTerm: UInt64, granted: Bool)] = [
            (2, 1, false), (3, 1, false), (1, 2, false), (2, 2, true), (3, 2, true), (1, 3, true),
        ]
        for (candidateIndex, candidateTerm, granted) in cases {
            let harness = Harness(id: 1, terms: [1, 2], term: 2)
            var vote = message(.vote, from: 2, to: 1, term: 3)
            vote.index = candidateIndex
            vote.logTerm = candidateTerm
            harness.node.step(vote)
            let response = harness.drain().first { $0.kind == .voteResponse }
            #expect(response?.reject == !granted, "candidate \(candidateTerm)/\(candidateIndex)")
        }
    }

    @Test func raftNeverCommitsLogEntriesFromPreviousTermsByCountingReplicas() {
        let harness = Harness(id: 1, terms: [1, 2], term: 2)
        harness.node.campaign()
        harness.node.step(message(.voteResponse, from: 2, to: 1, term: 3))
        harness.drain()
        #expect(harness.node.role == .leader)
        var response = message(.appendResponse, from: 2, to: 1, term: 3)
        response.index = 2
        harness.node.step(response)
        #expect(harness.node.committedIndex == 0, "index 2 is from term 2: replicas do not commit it")
        response.index = 3
        harness.node.step(response)
        #expect(harness.node.committedIndex == 3, "the term-3 entry commits, and index 2 with it")
    }

    @Test func aLeaderStepsDownWhenItHasNotHeardFromAMajorityWithinAnElectionTimeout() {
        let storage = MemoryStorage(voters: [1, 2, 3])
        var config = RaftConfig(id: 1)
        config.preVote = true
        config.checkQuorum = true
        let node = RaftNode(config: config, storage: storage)
        node.campaign()
        node.step(message(.preVoteResponse, from: 2, to: 1, term: 1))
        node.step(message(.voteResponse, from: 2, to: 1, term: 1))
        #expect(node.role == .leader)
        var ticks = 0
        while node.role == .leader && ticks < 100 {
            node.tick()
            ticks += 1
        }
        // No follower answered since it became leader: the first quorum check fails.
        #expect(ticks == config.electionTimeoutTicks)
        #expect(node.role == .follower)
    }
}
