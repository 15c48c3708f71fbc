import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

@Suite struct StateMachineTests {
    @Test func putAnswersItsProposerWithRevisionAndEvents() {
        var machine = StateMachine()
        let put = command(.put(PutRequest(key: "foo", value: Array("bar".utf8))), id: 7)
        let result = machine.apply(index: 1, entry: put.encoded(), now: epoch)
        #expect(result.requester == RequestIdentity(member: MemberID(1), id: 7))
        #expect(result.response == .put(PutResponse(revision: 2)))
        #expect(result.revision == 2)
        #expect(result.events.map(\.keyValue.key) == ["foo"])
        #expect(machine.appliedIndex == 1)
    }

    @Test func replayingAnAppliedIndexChangesNothing() {
        var machine = StateMachine()
        let put = command(.put(PutRequest(key: "foo", value: [1])))
        _ = machine.apply(index: 1, command: put, now: epoch)
        _ = machine.apply(index: 2, command: put, now: epoch)
        let before = machine.snapshot()
        for index: UInt64 in [0, 1, 2] {
            let again = machine.apply(index: index, entry: put.encoded(), now: epoch)
            #expect(again.response == .alreadyApplied)
            #expect(again.events.isEmpty)
        }
        #expect(machine.snapshot() == before)
        #expect(machine.store.currentRevision == 3)
    }

    @Test func undecodableEntryAdvancesTheIndexOnly() {
        var machine = StateMachine()
        let result = machine.apply(index: 5, entry: [9, 9, 9], now: epoch)
        #expect(result.response == .undecodable(.unsupportedVersion(9)))
        #expect(result.requester == nil)
        #expect(machine.appliedIndex == 5)
        #expect(machine.store.currentRevision == 1)
    }

    @Test func failuresCarryEtcdsMessagesAndAdvanceTheIndex() {
        var machine = StateMachine()
        let cases: [(Command.Operation, String)] = [
            (
                .put(PutRequest(key: "a", value: [], lease: LeaseID(42))),
                "etcdserver: requested lease not found"
            ),
            (.put(PutRequest(key: "", value: [])), "etcdserver: key is not provided"),
            (.compact(revision: 5), "etcdserver: mvcc: required revision is a future revision"),
            (.leaseRevoke(LeaseID(3)), "etcdserver: requested lease not found"),
            (.leaseGrant(id: LeaseID(1), ttlSeconds: 9_000_000_001), "etcdserver: too large lease TTL"),
            (
                .txn(
                    TxnRequest(success: [
                        .put(PutRequest(key: "a", value: [])), .put(PutRequest(key: "a", value: [])),
                    ])),
                "etcdserver: duplicate key given in txn request"
            ),
        ]
        for (offset, (operation, message)) in cases.enumerated() {
            let result = machine.apply(index: UInt64(offset + 1), command: command(operation), now: epoch)
            guard case .failed(let error) = result.response else {
                Issue.record("expected a failure for \(operation), got \(result.response)")
                continue
            }
            #expect(error.message == message)
            #expect(machine.appliedIndex == UInt64(offset + 1))
        }
        #expect(machine.store.currentRevision == 1)
    }

    @Test func compactionAnswersWithTheCurrentRevisionAndAnEffect() {
        var machine = StateMachine()
        for index: UInt64 in 1...3 {
            _ = machine.apply(
                index: index, command: command(.put(PutRequest(key: "k", value: [UInt8(index)]))), now: epoch)
        }
        let result = machine.apply(index: 4, command: command(.compact(revision: 3)), now: epoch)
        #expect(result.response == .compact(revision: 4))
        #expect(result.effects == [.compacted(revision: 3)])
        let again = machine.apply(index: 5, command: command(.compact(revision: 3)), now: epoch)
        #expect(again.response == .failed(.compacted))
        #expect(machine.status.compactRevision == 3)
    }

    @Test func statusCountsKeysAndSizeAndCompactionShrinksIt() throws {
        var machine = StateMachine()
        #expect(
            machine.status
                == StateStatus(
                    revision: 1, compactRevision: -1, appliedIndex: 0, keyCount: 0, leaseCount: 0,
                    approximateSizeBytes: 0))
        for index: UInt64 in 1...10 {
            _ = machine.apply(
                index: index,
                command: command(.put(PutRequest(key: "key", value: [UInt8](repeating: 1, count: 100)))),
                now: epoch)
        }
        _ = machine.apply(index: 11, command: command(.put(PutRequest(key: "other", value: []))), now: epoch)
        let before = machine.status
        #expect(before.keyCount == 2)
        #expect(before.approximateSizeBytes == 10 * (64 + 3 + 100) + (64 + 5))
        _ = machine.apply(index: 12, command: command(.compact(revision: 12)), now: epoch)
        #expect(machine.status.approximateSizeBytes == (64 + 3 + 100) + (64 + 5))
        #expect(machine.status.appliedIndex == 12)
        #expect(try machine.hash() == machine.store.hashKeySpace())
        #expect(throws: CairnError.futureRevision) { try machine.hash(revision: 99) }
        #expect(throws: CairnError.compacted) { try machine.hash(revision: 5) }
    }

    /// `now` and the lessor's role touch only leader-local state: a primary
    /// and a secondary with different clocks answer alike and hold the same
    /// replicated state.
    @Test(arguments: [UInt64(31), 32, 33])
    func clocksAndRolesDoNotChangeReplicatedState(seed: UInt64) throws {
        var generator = CommandGenerator(seed: seed)
        var leader = StateMachine()
        var follower = StateMachine()
        leader.promote(now: epoch)
        for index: UInt64 in 1...300 {
            let entry = generator.command(revisionHint: leader.store.currentRevision).encoded()
            let leaderResult = leader.apply(index: index, entry: entry, now: .seconds(Int64(index)))
            let followerResult = follower.apply(
                index: index, entry: entry, now: .seconds(5000 - Int64(index)))
            #expect(leaderResult == followerResult)
            if index % 10 == 0 {
                // Keep-alives and expiry checks are leader-local.
                _ = leader.expiredLeases(now: .seconds(Int64(index)))
                _ = leader.leaseCheckpointsDue(now: .seconds(Int64(index)))
                for id in leader.lessor.leaseIDs() { _ = try? leader.renew(id, now: .seconds(Int64(index))) }
            }
        }
        #expect(leader.snapshot() == follower.snapshot())
        #expect(try leader.hash() == follower.hash())
    }

    @Test func emptyRaftEntryIsANoOp() {
        var machine = StateMachine()
        let result = machine.apply(index: 2, entry: [], now: epoch)
        #expect(result.response == .noOp)
        #expect(result.requester == nil)
        #expect(machine.appliedIndex == 2)
    }

    @Test func noOpChangesOnlyTheIndex() {
        var machine = StateMachine()
        let result = machine.apply(index: 3, command: command(.noOp), now: epoch)
        #expect(result.response == .noOp)
        #expect(machine.appliedIndex == 3)
        #expect(machine.store.currentRevision == 1)
    }
}
