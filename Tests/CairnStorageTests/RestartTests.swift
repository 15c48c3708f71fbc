import CairnStorage
import Testing

/// The member's restart path: snapshot store and WAL together.
@Suite struct RestartTests {
    private func state(_ index: UInt64) -> [UInt8] {
        Array("state at \(index)".utf8)
    }

    /// Saves a snapshot, writes its marker and releases up to the oldest
    /// retained snapshot, as the member shell is meant to.
    private func compact(_ log: WriteAheadLog, _ store: SnapshotStore, at index: UInt64) throws {
        try store.save(index: index, term: 1, bytes: state(index))
        try log.append([.snapshotMarker(SnapshotMarker(index: index, term: 1))])
        try log.sync()
        try log.releaseSegments(upTo: try store.oldestRetainedIndex()!)
    }

    @Test func damagedNewestSnapshotFallsBackAndTheWALStillHasTheEntriesAfterIt() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...40))
        try compact(log, store, at: 30)
        try log.append(entryRecords(41...80))
        try compact(log, store, at: 70)
        try log.append(entryRecords(81...90))
        try compact(log, store, at: 85)
        try log.append(entryRecords(91...95))
        try log.sync()
        try log.close()
        #expect(try store.snapshots().map(\.index) == [70, 85])

        // Normal restart: newest snapshot, entries after the newest marker.
        let newest = try #require(try store.loadLatest())
        #expect(newest.index == 85 && newest.skipped.isEmpty)
        let normal = try openWAL(disk, segmentBytesMax: 1024)
        #expect(normal.recovery.entries == entries(86...95))
        try normal.log.close()

        // The newest snapshot is damaged: restart from 70 with entries 71...
        let newestPath = snapshotDirectory + "/" + (try store.snapshots().last!.file)
        disk.flipBit(path: newestPath, byteOffset: 40)
        let fallback = try #require(try store.loadLatest())
        #expect(fallback.index == 70 && fallback.bytes == state(70) && fallback.skipped.count == 1)
        let (_, recovery) = try WriteAheadLog.open(
            directory: walDirectory, fileSystem: disk, options: WALOptions(segmentBytesMax: 1024),
            snapshotIndex: fallback.index)
        #expect(recovery.snapshot == SnapshotMarker(index: 85, term: 1))
        #expect(recovery.entries == entries(71...95))
    }

    @Test func aSnapshotOlderThanTheReleasedSegmentsIsReported() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...60) + [.snapshotMarker(SnapshotMarker(index: 50, term: 1))])
        try log.sync()
        #expect(try !log.releaseSegments(upTo: 50).isEmpty)
        try log.close()
        #expect {
            _ = try WriteAheadLog.open(
                directory: walDirectory, fileSystem: disk, options: WALOptions(segmentBytesMax: 1024),
                snapshotIndex: 10)
        } throws: { error in
            if case .missingEntries(_, let after, let first) = error as? StorageError {
                return after == 10 && (first ?? 0) > 11
            }
            return false
        }
    }

    @Test func installedSnapshotBeyondTheLogReplacesIt() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...10) + [.snapshotMarker(SnapshotMarker(index: 100, term: 5))])
        try log.append(entryRecords(101...103, term: 5))
        try log.sync()
        try log.close()
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.entries == entries(101...103, term: 5))
        // Falling back below an installed snapshot cannot work: the entries
        // between were never in this log.
        #expect(throws: StorageError.self) {
            _ = try WriteAheadLog.open(
                directory: walDirectory, fileSystem: disk, options: WALOptions(segmentBytesMax: 4096),
                snapshotIndex: 5)
        }
    }
}
