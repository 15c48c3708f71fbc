import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

/// `MVCCStore.exportState()` / `init(importing:)`, added to CairnMVCC for
/// snapshots.
@Suite struct StoreExportTests {
    func randomStore(seed: UInt64) -> MVCCStore {
        var driver = Driver()
        var generator = CommandGenerator(seed: seed)
        for _ in 0..<300 {
            driver.apply(generator.command(revisionHint: driver.machine.store.currentRevision).operation)
        }
        return driver.machine.store
    }

    @Test(arguments: [UInt64(21), 22, 23])
    func exportImportRoundTrips(seed: UInt64) throws {
        let store = randomStore(seed: seed)
        let imported = try MVCCStore(importing: store.exportState())
        #expect(imported.exportState() == store.exportState())
        #expect(try imported.hashKeySpace() == store.hashKeySpace())
        #expect(imported.liveKeyCount == store.liveKeyCount)
        #expect(
            Int64(store.liveKeyCount)
                == (try store.range(RangeRequest(key: Key([0]), rangeEnd: Key([0])))).count)
        let from = max(store.compactedRevision, 1)
        #expect(
            imported.events(in: .all, from: from, through: .max, eventsMax: .max).events
                == store.events(in: .all, from: from, through: .max, eventsMax: .max).events)
    }

    @Test func importRefusesBrokenProperties() {
        var store = MVCCStore()
        for value: UInt8 in 1...3 {
            _ = try? store.put(PutRequest(key: "a", value: [value]), isLeaseGranted: { _ in false })
        }
        _ = try? store.put(PutRequest(key: "b", value: []), isLeaseGranted: { _ in false })
        _ = try? store.deleteRange(DeleteRangeRequest(key: "a"))
        let good = store.exportState()
        #expect(throws: Never.self) { try MVCCStore(importing: good) }

        var swapped = good
        swapped.keys.reverse()
        #expect(throws: MVCCStore.ImportError(reason: "keys out of order")) {
            try MVCCStore(importing: swapped)
        }

        var tombstoneWithValue = good
        let lastRevision = tombstoneWithValue.keys[0].generations[0].revisions.count - 1
        tombstoneWithValue.keys[0].generations[0].revisions[lastRevision].keyValue = KeyValue(
            key: "a", createRevision: 2, modRevision: 6, version: 4, value: [])
        #expect(throws: MVCCStore.ImportError(reason: "misplaced tombstone")) {
            try MVCCStore(importing: tombstoneWithValue)
        }

        var reordered = good
        reordered.keys[0].generations[0].revisions.swapAt(0, 1)
        #expect(throws: MVCCStore.ImportError(reason: "revisions out of order")) {
            try MVCCStore(importing: reordered)
        }

        var shortHistory = good
        shortHistory.history.removeLast()
        #expect(throws: MVCCStore.ImportError(reason: "revisions and history disagree")) {
            try MVCCStore(importing: shortHistory)
        }
    }
}
