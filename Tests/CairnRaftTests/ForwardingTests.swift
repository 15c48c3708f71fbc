import Testing

@testable import CairnRaft

/// Proposal and ReadIndex forwarding at the level of single nodes and messages (the
/// scenario files `forwarding_*.txt` show whole clusters).
@Suite struct ForwardingTests {
    /// Node `id` of a 3-voter cluster (plus learner 4), drained like an application would.
    final class Member {
        let node: RaftNode
        let storage: MemoryStorage

        init(id: NodeID, configure: (inout RaftConfig) -> Void = { _ in }) {
            storage = MemoryStorage(voters: [1, 2, 3], learners: [4])
            var config = RaftConfig(id: id)
            configure(&config)
            node = RaftNode(config: config, storage: storage)
        }

        /// Persists and "sends" every pending `Ready`; returns messages and read states.
        @discardableResult
        func drain() -> (messages: [Message], reads: [ReadState]) {
            var messages: [Message] = []
            var reads: [ReadState] = []
            while let ready = node.ready() {
                if let hard = ready.hardState { storage.setHardState(hard) }
                storage.append(ready.entries)
                messages += ready.messages
                reads += ready.readStates
                node.advance(ready)
            }
            return (messages, reads)
        }
    }

    /// Node 1 as leader of term 1 (votes from 2), with nothing committed yet.
    func newLeader(configure: (inout RaftConfig) -> Void = { _ in }) -> Member {
        let leader = Member(id: 1, configure: configure)
        leader.node.campaign()
        leader.node.step(Message(kind: .preVoteResponse, from: 2, to: 1, term: 1))
        leader.node.step(Message(kind: .voteResponse, from: 2, to: 1, term: 1))
        #expect(leader.node.role == .leader)
        leader.drain()
        return leader
    }

    /// Acknowledges everything the leader has so its empty entry of term 1 commits.
    func commitTermEntry(_ leader: Member) {
        var response = Message(kind: .appendResponse, from: 2, to: 1, term: 1)
        response.index = leader.node.lastIndex
        leader.node.step(response)
        leader.drain()
        #expect(leader.node.committedIndex == leader.node.lastIndex)
    }

    func follower(_ id: NodeID, leader: NodeID = 1) -> Member {
        let member = Member(id: id)
        member.node.step(Message(kind: .heartbeat, from: leader, to: id, term: 1))
        member.drain()
        #expect(member.node.leader == leader)
        return member
    }

    @Test func withNoKnownLeaderProposalsAndReadsAreRefused() {
        let member = Member(id: 2)
        #expect(throws: RaftError.notLeader(leader: noNode)) { try member.node.propose([1]) }
        #expect(throws: RaftError.notLeader(leader: noNode)) { try member.node.propose(batch: [[1]]) }
        #expect(throws: RaftError.notLeader(leader: noNode)) { try member.node.readIndex(context: [1]) }
        #expect(member.drain().messages.isEmpty)
    }

    @Test func aFollowerForwardsABatchAsOneMessageAndTheLeaderAppendsIt() throws {
        let member = follower(2)
        try member.node.propose(batch: [[1], [2, 2]])
        try member.node.propose(batch: [])  // nothing to forward, nothing sent
        let sent = member.drain().messages
        #expect(sent.count == 1)
        let forwarded = try #require(sent.first)
        #expect(forwarded.kind == .propose && forwarded.to == 1 && forwarded.term == 1)
        #expect(forwarded.entries.map(\.data) == [[1], [2, 2]])
        #expect(member.node.lastIndex == 0, "a follower never appends its own proposal")

        let leader = newLeader()
        let before = leader.node.lastIndex
        // Through the wire format, as the transport would deliver it.
        leader.node.step(try Message(decoding: forwarded.encoded()))
        leader.drain()
        #expect(leader.node.lastIndex == before + 2)
        #expect(leader.node.term(at: before + 1) == 1)
        #expect(leader.node.droppedProposals == 0)
    }

    @Test func theLeaderDropsForwardedProposalsOverTheByteBoundDuringTransferOrForMembership() {
        let leader = newLeader { $0.uncommittedBytesMax = 60 }
        commitTermEntry(leader)
        var proposal = Message(kind: .propose, from: 2, to: 1, term: 1)
        proposal.entries = [Entry(term: 0, index: 0, data: [1, 2, 3, 4])]  // 28 bytes
        leader.node.step(proposal)
        leader.node.step(proposal)  // 56 <= 60
        leader.node.step(proposal)  // 84 > 60: dropped
        let appended = leader.node.lastIndex
        #expect(leader.node.droppedProposals == 1)
        var membership = Message(kind: .propose, from: 2, to: 1, term: 1)
        membership.entries = [
            Entry(term: 0, index: 0, kind: .confChange, data: ConfChange(.remove, node: 3).encoded())
        ]
        leader.node.step(membership)
        #expect(leader.node.droppedProposals == 2)
        #expect(leader.node.lastIndex == appended)
        leader.drain()
        var response = Message(kind: .appendResponse, from: 2, to: 1, term: 1)
        response.index = appended
        leader.node.step(response)
        leader.drain()
        #expect(leader.node.committedIndex == appended)
        try? leader.node.transferLeadership(to: 3)
        #expect(leader.node.leadTransferee == 3)
        leader.node.step(proposal)
        #expect(leader.node.droppedProposals == 3)
        #expect(leader.node.lastIndex == appended)
    }

    @Test func proposalsFromNonMembersOrStaleTermsAreIgnored() {
        let leader = newLeader()
        commitTermEntry(leader)
        let last = leader.node.lastIndex
        var stranger = Message(kind: .propose, from: 9, to: 1, term: 1)
        stranger.entries = [Entry(term: 0, index: 0, data: [1])]
        leader.node.step(stranger)
        var stale = Message(kind: .propose, from: 2, to: 1, term: 0)
        stale.entries = [Entry(term: 0, index: 0, data: [1])]
        leader.node.step(stale)
        #expect(leader.node.lastIndex == last)
    }

    @Test func aNewLeaderHoldsAForwardedReadUntilItCommitsInItsTermThenAnswersTheFollower() throws {
        let leader = newLeader()
        var request = Message(kind: .readIndex, from: 3, to: 1, term: 1)
        request.context = [7, 7]
        leader.node.step(request)
        let early = leader.drain().messages
        #expect(
            !early.contains { $0.kind == .heartbeat && !$0.context.isEmpty },
            "no confirmation before the first commit")
        var response = Message(kind: .appendResponse, from: 2, to: 1, term: 1)
        response.index = leader.node.lastIndex
        leader.node.step(response)
        let confirming = leader.drain().messages.filter { $0.kind == .heartbeat && !$0.context.isEmpty }
        #expect(confirming.count == 3, "heartbeats to 2, 3 and learner 4")
        let heartbeatTo2 = try #require(confirming.first { $0.to == 2 })
        var acknowledgement = Message(kind: .heartbeatResponse, from: 2, to: 1, term: 1)
        acknowledgement.context = heartbeatTo2.context
        leader.node.step(acknowledgement)
        let (messages, reads) = leader.drain()
        #expect(reads.isEmpty, "a forwarded read is not the leader's own")
        let answer = try #require(messages.first { $0.kind == .readIndexResponse })
        #expect(answer.to == 3 && answer.index == leader.node.committedIndex && answer.context == [7, 7])

        let member = follower(3)
        member.node.step(try Message(decoding: answer.encoded()))
        #expect(member.drain().reads == [ReadState(index: answer.index, context: [7, 7])])
    }

    @Test func aLearnerReadIsNotConfirmedByTheLearnerItself() throws {
        let leader = newLeader()
        commitTermEntry(leader)
        var request = Message(kind: .readIndex, from: 4, to: 1, term: 1)
        request.context = [4]
        leader.node.step(request)
        let heartbeat = try #require(leader.drain().messages.first { $0.kind == .heartbeat && $0.to == 4 })
        var acknowledgement = Message(kind: .heartbeatResponse, from: 4, to: 1, term: 1)
        acknowledgement.context = heartbeat.context
        leader.node.step(acknowledgement)
        #expect(!leader.drain().messages.contains { $0.kind == .readIndexResponse })
        acknowledgement.from = 3
        leader.node.step(acknowledgement)
        #expect(leader.drain().messages.contains { $0.kind == .readIndexResponse && $0.to == 4 })
    }

    @Test func aReadForwardedToALeaderThatStepsDownIsDropped() {
        let leader = newLeader()
        commitTermEntry(leader)
        var request = Message(kind: .readIndex, from: 2, to: 1, term: 1)
        request.context = [1]
        leader.node.step(request)
        leader.drain()
        leader.node.step(Message(kind: .append, from: 3, to: 1, term: 2))  // a newer leader
        #expect(leader.node.role == .follower)
        var late = Message(kind: .heartbeatResponse, from: 2, to: 1, term: 1)
        late.context = PendingReads.encode(1)
        leader.node.step(late)
        #expect(!leader.drain().messages.contains { $0.kind == .readIndexResponse })
    }

    @Test func answersFromAnOlderTermAndBeyondTheBoundAreDropped() {
        let member = Member(id: 2) { $0.readIndexPendingMax = 2 }
        member.node.step(Message(kind: .heartbeat, from: 1, to: 2, term: 3))
        member.drain()
        var old = Message(kind: .readIndexResponse, from: 1, to: 2, term: 2)
        old.index = 5
        member.node.step(old)
        #expect(member.drain().reads.isEmpty)
        var answer = Message(kind: .readIndexResponse, from: 1, to: 2, term: 3)
        for index: UInt64 in 1...3 {
            answer.index = index
            member.node.step(answer)
        }
        #expect(member.drain().reads.map(\.index) == [1, 2])
        #expect(member.node.droppedReads == 1)
    }

    /// Not forwarding, but the same concern (messages come off a network): an
    /// acknowledgement of entries the leader does not have is ignored, never committed.
    @Test func anAcknowledgementBeyondTheLeadersLogIsIgnored() {
        let leader = newLeader()
        var bogus = Message(kind: .appendResponse, from: 2, to: 1, term: 1)
        bogus.index = leader.node.lastIndex + 5
        leader.node.step(bogus)
        leader.drain()
        #expect(leader.node.committedIndex == 0)
        #expect(leader.node.progress(of: 2)?.match == 0)
    }

    @Test func aSingleVoterLeaderAnswersAForwardedReadAtOnce() throws {
        let storage = MemoryStorage(voters: [1], learners: [2])
        let node = RaftNode(config: RaftConfig(id: 1), storage: storage)
        node.campaign()
        while let ready = node.ready() {
            storage.append(ready.entries)
            node.advance(ready)
        }
        #expect(node.role == .leader && node.committedIndex == 1)
        var request = Message(kind: .readIndex, from: 2, to: 1, term: 1)
        request.context = [2]
        node.step(request)
        let answer = try #require(node.ready()?.messages.first)
        #expect(answer.kind == .readIndexResponse && answer.index == 1 && answer.to == 2)
    }
}
