import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

@Suite struct SnapshotTests {
    /// Random command sequences; snapshot at a random point, restore into a
    /// fresh state machine, continue both with the same commands: every
    /// answer, the final hash and the final snapshot bytes are identical.
    @Test(arguments: [UInt64(11), 12, 13, 14, 15, 16])
    func restoredMachineBehavesIdentically(seed: UInt64) throws {
        var generator = CommandGenerator(seed: seed)
        var random = SeededGenerator(seed: seed &* 31)
        let total = 400
        let cut = Int.random(in: 0..<(total - 100), using: &random)
        var original = StateMachine()
        var index: UInt64 = 0
        for _ in 0..<cut {
            index += 1
            let next = generator.command(revisionHint: original.store.currentRevision)
            _ = original.apply(index: index, entry: next.encoded(), now: epoch)
        }
        var restored = StateMachine()
        try restored.restore(original.snapshot(), now: epoch)
        #expect(restored.appliedIndex == original.appliedIndex)
        #expect(restored.status == original.status)
        #expect(restored.store.exportState() == original.store.exportState())
        // Replayed entries are no-ops on the restored machine too.
        if index > 0 {
            #expect(
                restored.apply(index: index, entry: command(.noOp).encoded(), now: epoch).response
                    == .alreadyApplied)
        }
        var kinds = Set<String>()
        for _ in cut..<total {
            index += 1
            let entry = generator.command(revisionHint: original.store.currentRevision).encoded()
            let expected = original.apply(index: index, entry: entry, now: epoch)
            let actual = restored.apply(index: index, entry: entry, now: epoch)
            #expect(actual == expected)
            kinds.insert(Self.kind(of: actual.response))
        }
        // The sequence exercised the state the snapshot must carry.
        #expect(kinds.isSuperset(of: ["put", "txn", "leaseGrant", "failed"]))
        #expect(try restored.hash() == original.hash())
        #expect(restored.snapshot() == original.snapshot())
        #expect(restored.store.exportState() == original.store.exportState())
        #expect(restored.status == original.status)
        let everything = RangeRequest(key: Key([0]), rangeEnd: Key([0]))
        #expect(try restored.store.range(everything) == original.store.range(everything))
    }

    static func kind(of response: ApplyResult.Response) -> String {
        switch response {
        case .put: "put"
        case .deleteRange: "deleteRange"
        case .txn: "txn"
        case .compact: "compact"
        case .leaseGrant: "leaseGrant"
        case .leaseRevoke: "leaseRevoke"
        case .leaseCheckpoint: "leaseCheckpoint"
        case .noOp: "noOp"
        case .alarm: "alarm"
        case .auth: "auth"
        case .failed: "failed"
        case .undecodable: "undecodable"
        case .alreadyApplied: "alreadyApplied"
        }
    }

    @Test func historyAndCompactionSurviveRestore() throws {
        var driver = Driver()
        for value: UInt8 in 1...5 { driver.apply(.put(PutRequest(key: "k", value: [value]))) }
        driver.apply(.deleteRange(DeleteRangeRequest(key: "k")))
        driver.apply(.compact(revision: 3))
        var restored = StateMachine()
        try restored.restore(driver.machine.snapshot(), now: epoch)
        // The event at 3 has no previous version: it was at 2, which compaction
        // removed (etcd reads it at revision - 1 too, and finds nothing).
        #expect(restored.store.exportState() == driver.machine.store.exportState())
        #expect(restored.store.exportState().history.first?.first?.previous == nil)
        #expect(restored.store.exportState().history.first?.first?.keyValue.value == [2])
        let old = try restored.store.range(RangeRequest(key: "k", revision: 4))
        #expect(old.keyValues.map(\.value) == [[3]])
        #expect(throws: CairnError.compacted) {
            try restored.store.range(RangeRequest(key: "k", revision: 2))
        }
        let events = restored.store.events(in: .all, from: 3, through: 7, eventsMax: 100).events
        #expect(events == driver.machine.store.events(in: .all, from: 3, through: 7, eventsMax: 100).events)
        #expect(events.count == 5)
    }

    @Test func leasesAndAttachmentsSurviveRestoreAndPrimaryRestartsClocks() throws {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 30))
        driver.apply(.leaseGrant(id: LeaseID(2), ttlSeconds: 100))
        driver.apply(.leaseCheckpoint([LeaseCheckpoint(id: LeaseID(2), remainingTTLSeconds: 40)]))
        driver.put("a", lease: LeaseID(1))
        driver.put("b", lease: LeaseID(2))
        var restored = StateMachine()
        restored.promote(now: .seconds(1000))
        try restored.restore(driver.machine.snapshot(), now: .seconds(1000))
        #expect(try restored.lessor.timeToLive(LeaseID(1), keys: true, now: .seconds(1000)).keys == ["a"])
        // Lease 1 restarts with its TTL (30 s), lease 2 with its checkpointed 40 s.
        #expect(restored.expiredLeases(now: .seconds(1029)) == [])
        #expect(restored.expiredLeases(now: .seconds(1030)) == [LeaseID(1)])
        #expect(restored.expiredLeases(now: .seconds(1039)) == [LeaseID(1)])  // retried
        #expect(restored.expiredLeases(now: .seconds(1040)) == [LeaseID(2)])
    }

    @Test func everyCorruptionIsRejectedAndLeavesStateUnchanged() {
        var driver = Driver()
        driver.apply(.leaseGrant(id: LeaseID(1), ttlSeconds: 30))
        driver.put("a", lease: LeaseID(1))
        driver.put("b")
        let snapshot = driver.machine.snapshot()
        var target = StateMachine()
        _ = target.apply(index: 1, command: command(.put(PutRequest(key: "mine", value: []))), now: epoch)
        let before = target.snapshot()
        for position in snapshot.indices {
            for bit in [0, 3, 7] {
                var corrupted = snapshot
                corrupted[position] ^= 1 << bit
                #expect(throws: DecodeError.self) { try target.restore(corrupted, now: epoch) }
            }
        }
        for length in [0, 3, 8, snapshot.count - 1] {
            #expect(throws: DecodeError.self) { try target.restore(Array(snapshot[..<length]), now: epoch) }
        }
        #expect(target.snapshot() == before)
    }

    /// A checksum-valid snapshot whose content breaks the store's properties
    /// is still refused.
    @Test func checksumValidButInconsistentContentIsRejected() {
        var writer = ByteWriter()
        writer.bytes = StateMachine.snapshotMagic
        writer.byte(StateMachine.snapshotFormatVersion)
        writer.unsigned(1)
        var state = StateMachine().store.exportState()
        state.currentRevision = 5  // history says 1
        writer.store(state)
        writer.count(0)
        let checksum = CRC32C.checksum(writer.bytes[...])
        for shift in stride(from: 0, to: 32, by: 8) {
            writer.byte(UInt8(truncatingIfNeeded: checksum >> shift))
        }
        var target = StateMachine()
        #expect(throws: DecodeError.malformed("store: revisions and history disagree")) {
            try target.restore(writer.bytes, now: epoch)
        }
    }

    /// Changes inside a snapshot with its checksum recomputed (what a bug or
    /// a hostile peer could send): restore refuses it or yields a state
    /// machine that keeps working; it never traps.
    @Test func resealedCorruptionsNeverTrap() throws {
        var driver = Driver()
        var generator = CommandGenerator(seed: 77)
        for _ in 0..<120 {
            driver.apply(generator.command(revisionHint: driver.machine.store.currentRevision).operation)
        }
        let snapshot = driver.machine.snapshot()
        var random = SeededGenerator(seed: 78)
        var accepted = 0
        for _ in 0..<1500 {
            var body = Array(snapshot.dropLast(4))
            for _ in 0..<Int.random(in: 1...2, using: &random) {
                body[Int.random(in: 5..<body.count, using: &random)] = UInt8.random(
                    in: 0...255, using: &random)
            }
            let checksum = CRC32C.checksum(body[...])
            for shift in stride(from: 0, to: 32, by: 8) {
                body.append(UInt8(truncatingIfNeeded: checksum >> shift))
            }
            var target = StateMachine()
            guard (try? target.restore(body, now: epoch)) != nil else { continue }
            accepted += 1
            var index = target.appliedIndex
            for _ in 0..<10 {
                index += 1
                _ = target.apply(
                    index: index, command: generator.command(revisionHint: target.store.currentRevision),
                    now: epoch)
            }
            _ = try? target.store.range(RangeRequest(key: Key([0]), rangeEnd: Key([0])))
            _ = try? target.hash()
            _ = target.snapshot()
        }
        #expect(accepted > 0)
    }

    @Test func randomBytesNeverTrapRestore() {
        var random = SeededGenerator(seed: 99)
        var target = StateMachine()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...80, using: &random)).map { _ in
                UInt8.random(in: 0...255, using: &random)
            }
            #expect(throws: DecodeError.self) { try target.restore(bytes, now: epoch) }
        }
    }
}
