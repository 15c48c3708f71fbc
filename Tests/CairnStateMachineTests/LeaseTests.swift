import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

/// A state machine driven through commands at increasing indexes.
struct Driver {
    var machine: StateMachine
    var index: UInt64 = 0

    init(config: StateMachine.Config = StateMachine.Config()) { machine = StateMachine(config: config) }

    @discardableResult
    mutating func apply(_ operation: Command.Operation, now: MonotonicInstant = epoch) -> ApplyResult {
        index += 1
        return machine.apply(index: index, command: command(operation, id: index), now: now)
    }

    mutating func put(_ key: Key, lease: LeaseID = .none) {
        let result = apply(.put(PutRequest(key: key, value: Array("v".utf8), lease: lease)))
        guard case .put = result.response else {
            Issue.record("put \(key) failed: \(result.response)")
            return
        }
    }
}

@Suite struct LeaseTests {
    @Test func grantRaisesShortTTLsToTheMinimumAndRejectsHugeOnes() {
        var driver = Driver()
        #expect(
            driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 1)).response
                == .leaseGrant(id: LeaseID(1), ttlSeconds: 2))
        #expect(
            driver.apply(.leaseGrant(id: LeaseID(9), ttlSeconds: 0)).response
                == .leaseGrant(id: LeaseID(9), ttlSeconds: 2))
        driver.apply(.leaseRevoke(LeaseID(9)))
        #expect(
            driver.apply(.leaseGrant(id: LeaseID(2), ttlSeconds: 60)).response
                == .leaseGrant(id: LeaseID(2), ttlSeconds: 60))
        let existing = driver.apply(.leaseGrant(id: LeaseID(2), ttlSeconds: 60))
        #expect(existing.response == .failed(.leaseExists))
        #expect(CairnError.leaseExists.message == "etcdserver: lease already exists")
        let huge = driver.apply(.leaseGrant(id: LeaseID(3), ttlSeconds: 9_000_000_001))
        #expect(huge.response == .failed(.leaseTTLTooLarge))
        #expect(driver.machine.lessor.leaseIDs() == [LeaseID(1), LeaseID(2)])
    }

    @Test func generatedIDsArePositiveDeterministicAndDependOnSeed() {
        func grantTwice(seed: UInt64) -> [LeaseID] {
            var driver = Driver(config: StateMachine.Config(lessor: Lessor.Config(idSeed: seed)))
            return (0..<2).compactMap { _ in
                if case .leaseGrant(let id, _) = driver.apply(.leaseGrant(id: .none, ttlSeconds: 10)).response
                {
                    id
                } else {
                    nil
                }
            }
        }
        let first = grantTwice(seed: 7)
        #expect(first.count == 2)
        #expect(first.allSatisfy { $0.rawValue > 0 })
        #expect(first[0] != first[1])
        #expect(grantTwice(seed: 7) == first)
        #expect(grantTwice(seed: 8) != first)
    }

    @Test func generatedIDsSkipIDsInUse() {
        var first = StateMachine()
        let drawn = first.apply(
            index: 5, command: command(.leaseGrant(id: .none, ttlSeconds: 10)), now: epoch)
        guard case .leaseGrant(let taken, _) = drawn.response else {
            Issue.record("grant failed: \(drawn.response)")
            return
        }
        var second = StateMachine()
        _ = second.apply(index: 1, command: command(.leaseGrant(id: taken, ttlSeconds: 10)), now: epoch)
        let next = second.apply(
            index: 5, command: command(.leaseGrant(id: .none, ttlSeconds: 10)), now: epoch)
        guard case .leaseGrant(let other, _) = next.response else {
            Issue.record("grant failed: \(next.response)")
            return
        }
        #expect(other != taken)
        #expect(other.rawValue > 0)
        #expect(second.lessor.leaseIDs().count == 2)
    }

    @Test func leasesMaxBoundsGrants() {
        var driver = Driver(config: StateMachine.Config(lessor: Lessor.Config(leasesMax: 2)))
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 10))
        driver.apply(.leaseGrant(id: LeaseID(2), ttlSeconds: 10))
        #expect(
            driver.apply(.leaseGrant(id: LeaseID(3), ttlSeconds: 10)).response == .failed(.tooManyRequests))
        driver.apply(.leaseRevoke(LeaseID(1)))
        #expect(
            driver.apply(.leaseGrant(id: LeaseID(3), ttlSeconds: 10)).response
                == .leaseGrant(id: LeaseID(3), ttlSeconds: 10))
    }

    @Test func putsAttachAndOverwritesAndDeletesDetach() throws {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 10))
        driver.apply(.leaseGrant(id: LeaseID(2), ttlSeconds: 10))
        driver.put("a", lease: LeaseID(1))
        driver.put("b", lease: LeaseID(1))
        driver.put("c", lease: LeaseID(1))
        driver.put("b", lease: LeaseID(2))  // moves b to lease 2
        driver.put("c")  // detaches c
        driver.apply(.deleteRange(DeleteRangeRequest(key: "a")))  // detaches a
        driver.put("d", lease: LeaseID(1))
        let lessor = driver.machine.lessor
        #expect(try lessor.timeToLive(LeaseID(1), keys: true, now: epoch).keys == ["d"])
        #expect(try lessor.timeToLive(LeaseID(2), keys: true, now: epoch).keys == ["b"])
        #expect(try lessor.timeToLive(LeaseID(2), keys: false, now: epoch).keys == [])
    }

    @Test func txnPutThenDeleteOfOneKeyLeavesItDetached() throws {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 10))
        driver.put("x")
        // etcd's duplicate-key rule allows a put in one nested txn and a
        // delete of the same key in a later one.
        let putting = TxnRequest(success: [.put(PutRequest(key: "x", value: [], lease: LeaseID(1)))])
        let deleting = TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: "x"))])
        let txn = TxnRequest(success: [.txn(putting), .txn(deleting)])
        let result = driver.apply(.txn(txn))
        guard case .txn = result.response else {
            Issue.record("txn failed: \(result.response)")
            return
        }
        #expect(result.events.map(\.kind) == [.put, .delete])
        #expect(try driver.machine.lessor.timeToLive(LeaseID(1), keys: true, now: epoch).keys == [])
        #expect(driver.machine.lessor.lease(of: "x") == nil)
    }

    @Test func revokeDeletesEveryAttachedKeyInOneRevision() {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(5), ttlSeconds: 10))
        for key: Key in ["a", "b", "c"] { driver.put(key, lease: LeaseID(5)) }
        driver.put("keep")
        let result = driver.apply(.leaseRevoke(LeaseID(5)))
        #expect(result.response == .leaseRevoke(revision: 6))
        #expect(result.events.map(\.keyValue.key) == ["a", "b", "c"])
        #expect(Set(result.events.map(\.revision)) == [6])
        #expect(result.effects == [.leaseRevoked(LeaseID(5))])
        #expect(driver.machine.status.keyCount == 1)
        #expect(driver.machine.lessor.isGranted(LeaseID(5)) == false)
        #expect(
            driver.apply(.put(PutRequest(key: "a", value: [], lease: LeaseID(5)))).response
                == .failed(.leaseNotFound))
    }

    @Test func revokingALeaseWithoutKeysMakesNoRevision() {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(5), ttlSeconds: 10))
        #expect(driver.apply(.leaseRevoke(LeaseID(5))).response == .leaseRevoke(revision: 1))
    }

    @Test func onlyAPrimaryHasExpiries() throws {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 10), now: .seconds(0))
        #expect(driver.machine.expiredLeases(now: .seconds(1000)) == [])
        #expect(throws: CairnError.notLeader) { try driver.machine.renew(LeaseID(1), now: .seconds(1)) }
        #expect(
            try driver.machine.lessor.timeToLive(LeaseID(1), keys: false, now: .seconds(500))
                .remainingTTLSeconds == 10)
        driver.machine.promote(now: .seconds(100))
        #expect(driver.machine.expiredLeases(now: .seconds(109)) == [])
        let status = try driver.machine.lessor.timeToLive(
            LeaseID(1), keys: false, now: MonotonicInstant(milliseconds: 103_500))
        #expect(status.remainingTTLSeconds == 6)
        #expect(status.grantedTTLSeconds == 10)
        #expect(driver.machine.expiredLeases(now: .seconds(110)) == [LeaseID(1)])
        driver.machine.demote()
        #expect(driver.machine.expiredLeases(now: .seconds(200)) == [])
    }

    @Test func expiredLeasesAreProposedNotRevokedAndRetriedAfterTheInterval() {
        var driver = Driver()
        driver.machine.promote(now: epoch)
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 5), now: epoch)
        driver.put("a", lease: LeaseID(1))
        #expect(driver.machine.expiredLeases(now: .seconds(5)) == [LeaseID(1)])
        #expect(driver.machine.lessor.isGranted(LeaseID(1)))
        #expect(driver.machine.expiredLeases(now: .seconds(6)) == [])
        #expect(driver.machine.expiredLeases(now: .seconds(8)) == [LeaseID(1)])
        let revoke = driver.apply(.leaseRevoke(LeaseID(1)), now: .seconds(8))
        #expect(revoke.events.count == 1)
        #expect(driver.machine.expiredLeases(now: .seconds(20)) == [])
    }

    @Test func expiredLeasesPerCallIsBounded() {
        var driver = Driver(config: StateMachine.Config(lessor: Lessor.Config(expiredLeasesPerCallMax: 2)))
        driver.machine.promote(now: epoch)
        for id in 1...5 { driver.apply(.leaseGrant(id: LeaseID(Int64(id)), ttlSeconds: 5)) }
        #expect(driver.machine.expiredLeases(now: .seconds(10)) == [LeaseID(1), LeaseID(2)])
        #expect(driver.machine.expiredLeases(now: .seconds(10)) == [LeaseID(3), LeaseID(4)])
        #expect(driver.machine.expiredLeases(now: .seconds(10)) == [LeaseID(5)])
    }

    @Test func renewRestartsTheClockAndExpiredLeasesCannotBeRenewed() throws {
        var driver = Driver()
        driver.machine.promote(now: epoch)
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 10))
        let renewal = try driver.machine.renew(LeaseID(1), now: .seconds(8))
        #expect(renewal == Lessor.Renewal(ttlSeconds: 10, checkpointToPropose: nil))
        #expect(driver.machine.expiredLeases(now: .seconds(17)) == [])
        #expect(driver.machine.expiredLeases(now: .seconds(18)) == [LeaseID(1)])
        #expect(throws: CairnError.leaseNotFound) { try driver.machine.renew(LeaseID(1), now: .seconds(18)) }
        #expect(throws: CairnError.leaseNotFound) { try driver.machine.renew(LeaseID(9), now: .seconds(1)) }
        #expect(throws: CairnError.leaseNotFound) {
            try driver.machine.lessor.timeToLive(LeaseID(9), keys: true, now: epoch)
        }
    }

    /// A new leader restarts a lease from its checkpointed remaining TTL,
    /// so leadership changes neither extend nor cut it.
    @Test func checkpointsCarryRemainingTTLToTheNextLeader() throws {
        let config = StateMachine.Config(lessor: Lessor.Config(checkpointIntervalSeconds: 60))
        var leader = Driver(config: config)
        var follower = Driver(config: config)
        leader.machine.promote(now: epoch)
        for driver in [0, 1] {
            let operation = Command.Operation.leaseGrant(id: LeaseID(1), ttlSeconds: 300)
            if driver == 0 { leader.apply(operation) } else { follower.apply(operation) }
        }
        #expect(leader.machine.leaseCheckpointsDue(now: .seconds(59)) == [])
        let due = leader.machine.leaseCheckpointsDue(now: .seconds(60))
        #expect(due == [LeaseCheckpoint(id: LeaseID(1), remainingTTLSeconds: 240)])
        #expect(leader.machine.leaseCheckpointsDue(now: .seconds(61)) == [])
        leader.apply(.leaseCheckpoint(due), now: .seconds(60))
        follower.apply(.leaseCheckpoint(due), now: .seconds(60))
        #expect(leader.machine.leaseCheckpointsDue(now: .seconds(120)).first?.remainingTTLSeconds == 180)
        // The follower becomes leader at t=1000 and restarts the lease with 240 s.
        follower.machine.promote(now: .seconds(1000))
        #expect(follower.machine.expiredLeases(now: .seconds(1239)) == [])
        #expect(follower.machine.expiredLeases(now: .seconds(1240)) == [LeaseID(1)])
        // A renewal clears the remainder everywhere through a checkpoint of 0.
        let renewal = try follower.machine.renew(LeaseID(1), now: .seconds(1100))
        #expect(renewal.checkpointToPropose == LeaseCheckpoint(id: LeaseID(1), remainingTTLSeconds: 0))
        // The renewal runs the full TTL; the remainder stays until the
        // checkpoint is applied, so replicated state is unchanged.
        #expect(follower.machine.expiredLeases(now: .seconds(1399)) == [])
        #expect(follower.machine.expiredLeases(now: .seconds(1400)) == [LeaseID(1)])
        #expect(follower.machine.snapshot() == leader.machine.snapshot())
        follower.apply(.leaseCheckpoint([renewal.checkpointToPropose!]), now: .seconds(1100))
        follower.machine.demote()
        #expect(
            try follower.machine.lessor.timeToLive(LeaseID(1), keys: false, now: epoch).remainingTTLSeconds
                == 300)
    }

    @Test func lessorTracksAttachmentsLikeTheStoreUnderRandomCommands() throws {
        for seed: UInt64 in 1...5 {
            var generator = CommandGenerator(seed: seed)
            var driver = Driver()
            for _ in 0..<400 {
                driver.apply(generator.command(revisionHint: driver.machine.store.currentRevision).operation)
            }
            let live = try driver.machine.store.range(RangeRequest(key: Key([0]), rangeEnd: Key([0])))
            var expected: [LeaseID: [Key]] = [:]
            for keyValue in live.keyValues where keyValue.lease != .none {
                expected[keyValue.lease, default: []].append(keyValue.key)
            }
            for id in driver.machine.lessor.leaseIDs() {
                #expect(
                    try driver.machine.lessor.timeToLive(id, keys: true, now: epoch).keys == expected[id]
                        ?? [])
            }
            #expect(Set(expected.keys).isSubset(of: Set(driver.machine.lessor.leaseIDs())))
        }
    }
}
