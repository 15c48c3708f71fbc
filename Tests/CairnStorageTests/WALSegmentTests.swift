import CairnStorage
import Testing

/// Segment life cycle: creation with directory fsync, snapshot markers and
/// release of covered segments.
@Suite struct WALSegmentTests {
    @Test func newSegmentsAreRenamedIntoPlaceAndTheirDirectoryFsynced() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        disk.clearOperations()
        try log.append(entryRecords(1...40))
        let created = Array(log.segmentFileNames.dropFirst())
        #expect(created.count >= 2)
        let operations = disk.operations
        for name in created {
            let path = walDirectory + "/" + name
            let rename = operations.firstIndex(of: .rename(source: path + ".tmp", destination: path))
            let firstAppend = operations.firstIndex {
                if case .write(path, _, _) = $0 { return true }
                return false
            }
            guard let rename else {
                Issue.record("no rename for \(name)")
                continue
            }
            // The header is synced before the rename, the directory right after.
            #expect(operations[rename - 1] == .sync(path: path + ".tmp"))
            #expect(operations[rename + 1] == .syncDirectory(path: walDirectory))
            // Records go into the segment only after its name is durable.
            if let firstAppend {
                #expect(firstAppend > rename + 1)
            } else {
                Issue.record("no write to \(name)")
            }
        }
        // A crash right after keeps every segment and every record in them
        // up to the last rollover.
        disk.crash()
        let (reopened, _) = try openWAL(disk, segmentBytesMax: 1024)
        #expect(reopened.segmentFileNames == log.segmentFileNames)
    }

    @Test func creatingTheWALDirectoryFsyncsItsParent() throws {
        let disk = try makeSimulatedDisk()
        _ = try openWAL(disk)
        #expect(disk.operations.contains(.syncDirectory(path: "/data")))
        #expect(disk.operations.contains(.syncDirectory(path: walDirectory)))
    }

    @Test func leftoverTemporarySegmentIsDeletedOnOpen() throws {
        let disk = try makeSimulatedDisk()
        try openWAL(disk).log.close()
        let stray = walDirectory + "/0000000000000001-0000000000000001.wal.tmp"
        let file = try disk.open(stray, mode: .createNew)
        try disk.append(file, [1, 2, 3])
        let (log, _) = try openWAL(disk)
        #expect(!disk.exists(stray))
        #expect(log.segmentFileNames.count == 1)
    }

    @Test func snapshotMarkerDropsCoveredEntriesOnReplay() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...20) + [.snapshotMarker(SnapshotMarker(index: 12, term: 1))])
        try log.append(entryRecords(21...22))
        try log.sync()
        try log.close()
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.snapshot == SnapshotMarker(index: 12, term: 1))
        #expect(recovery.entries == entries(13...22))
    }

    @Test func snapshotAheadOfTheLogEmptiesItAndFixesTheNextIndex() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...5) + [.snapshotMarker(SnapshotMarker(index: 50, term: 4))])
        #expect(log.lastIndex == nil)
        #expect(throws: StorageError.self) { try log.append(entryRecords(52...52, term: 4)) }
        #expect(throws: StorageError.self) { try log.append(entryRecords(50...50, term: 4)) }
        try log.append(entryRecords(51...53, term: 4))
        try log.sync()
        try log.close()
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.snapshot == SnapshotMarker(index: 50, term: 4))
        #expect(recovery.entries == entries(51...53, term: 4))
    }

    @Test func releaseDeletesCoveredSegmentsAndKeepsState() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append([.hardState(HardState(term: 3, vote: 1, commit: 90))])
        try log.append(entryRecords(1...120, term: 3))
        try log.append([.snapshotMarker(SnapshotMarker(index: 100, term: 3))])
        // Not durable yet: the marker does not cover anything.
        #expect {
            try log.releaseSegments(upTo: 100)
        } throws: { error in
            if case .releaseNotCoveredBySnapshot = error as? StorageError { return true }
            return false
        }
        try log.sync()
        #expect(throws: StorageError.self) { try log.releaseSegments(upTo: 101) }
        let before = log.segmentFileNames
        disk.clearOperations()
        let released = try log.releaseSegments(upTo: 100)
        #expect(!released.isEmpty)
        #expect(Array(before.prefix(released.count)) == released)
        #expect(log.segmentFileNames == Array(before.dropFirst(released.count)))
        #expect(disk.operations.last == .syncDirectory(path: walDirectory))
        for name in released { #expect(!disk.exists(walDirectory + "/" + name)) }
        try log.append(entryRecords(121...125, term: 3))
        try log.sync()
        try log.close()
        disk.crash()
        let (_, recovery) = try openWAL(disk, segmentBytesMax: 1024)
        #expect(recovery.hardState == HardState(term: 3, vote: 1, commit: 90))
        #expect(recovery.snapshot == SnapshotMarker(index: 100, term: 3))
        #expect(recovery.entries == entries(101...125, term: 3))
    }

    @Test func releaseKeepsTheTailSegment() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...10) + [.snapshotMarker(SnapshotMarker(index: 10, term: 1))])
        try log.sync()
        #expect(try log.releaseSegments(upTo: 10).isEmpty)
        #expect(log.segmentFileNames.count == 1)
    }

    @Test func closedLogRefusesWork() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.close()
        #expect(log.state == .closed)
        #expect {
            try log.append(entryRecords(1...1))
        } throws: { error in
            (error as? StorageError) == .closed
        }
    }

    @Test func failureWhileRollingOverPoisonsTheLogAndReopenRecovers() throws {
        // A fault-free run names the second segment.
        let dryRun = try openWAL(try makeSimulatedDisk(), segmentBytesMax: 1024).log
        try dryRun.append(entryRecords(1...40))
        let second = walDirectory + "/" + dryRun.segmentFileNames[1]
        let sealedEntries = UInt64(second.split(separator: "-").last!.prefix(16), radix: 16)! - 1

        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...5))
        try log.sync()
        // The fsync of the next segment's header fails.
        disk.failNextSync(path: second + ".tmp")
        #expect(throws: StorageError.self) { try log.append(entryRecords(6...40)) }
        guard case .failed = log.state else {
            Issue.record("expected failed state, got \(log.state)")
            return
        }
        try log.close()
        disk.crash()
        let (reopened, recovery) = try openWAL(disk, segmentBytesMax: 1024)
        // Records written before the rollover's fsync of the sealed segment
        // are durable; the failed segment never got its name.
        #expect(recovery.entries == entries(1...sealedEntries))
        #expect(reopened.segmentFileNames.count == 1)
        #expect(try disk.listDirectory(walDirectory).allSatisfy { $0.hasSuffix(".wal") || $0 == "LOCK" })
    }

    /// The marker that justified a release may sit in a released segment:
    /// the copy at the head of the next segment keeps it.
    @Test func markerInAReleasedSegmentSurvivesThroughTheNextSegmentsCopy() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...30) + [.snapshotMarker(SnapshotMarker(index: 30, term: 1))])
        try log.sync()
        let markerSegment = log.segmentFileNames.last!
        // An entry too big for what is left seals the marker's segment.
        try log.append([.entry(makeEntry(31, payloadBytes: 900))] + entryRecords(32...80))
        #expect(log.segmentFileNames.firstIndex(of: markerSegment)! < log.segmentFileNames.count - 1)
        try log.sync()
        let released = try log.releaseSegments(upTo: 30)
        #expect(released.contains(markerSegment))
        try log.close()
        let (_, recovery) = try openWAL(disk, segmentBytesMax: 1024)
        #expect(recovery.snapshot == SnapshotMarker(index: 30, term: 1))
        #expect(recovery.entries == [makeEntry(31, payloadBytes: 900)] + entries(32...80))
    }

    @Test func aSecondOpenOfTheSameDirectoryIsRefusedUntilClose() throws {
        let disk = try makeSimulatedDisk()
        let (first, _) = try openWAL(disk)
        #expect {
            _ = try openWAL(disk)
        } throws: { error in
            (error as? StorageError) == .directoryLocked(directory: walDirectory)
        }
        try first.close()
        let (second, _) = try openWAL(disk)
        // A crash releases the lock with the process.
        disk.crash()
        _ = second
        _ = try openWAL(disk)
    }

    @Test func preallocatedSegmentsAreAllocatedBeforeTheirNameAndCutWhenSealed() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024, preallocate: true)
        let first = walDirectory + "/" + log.segmentFileNames[0]
        #expect(disk.contents(of: first)?.count == 1024)
        disk.clearOperations()
        try log.append(entryRecords(1...40))
        try log.sync()
        let names = log.segmentFileNames
        #expect(names.count > 2)
        for name in names.dropFirst() {
            let path = walDirectory + "/" + name
            let operations = disk.operations
            let preallocation = operations.firstIndex(of: .preallocate(path: path + ".tmp", size: 1024))
            let rename = operations.firstIndex(of: .rename(source: path + ".tmp", destination: path))
            #expect(preallocation != nil && rename != nil && preallocation! < rename!)
        }
        for name in names.dropLast() {
            // Sealed: cut to its records, so no zeros are left at its end.
            let contents = disk.durableContents(of: walDirectory + "/" + name)!
            #expect(contents.count < 1024)
        }
        #expect(disk.durableContents(of: walDirectory + "/" + names.last!)?.count == 1024)
        disk.crash(tornTails: .seeded)
        let (_, recovery) = try openWAL(disk, segmentBytesMax: 1024, preallocate: true)
        #expect(recovery.entries == entries(1...40))
        #expect(recovery.tailRepair == nil)
    }

    /// A sealed segment keeps no preallocated zeros, so zeros at its end are
    /// damage, not the end of the log.
    @Test func zerosAtTheEndOfASealedSegmentAreCorruption() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024, preallocate: true)
        try log.append(entryRecords(1...40))
        try log.sync()
        try log.close()
        let sealed = walDirectory + "/" + log.segmentFileNames[0]
        disk.overwrite(path: sealed, with: disk.contents(of: sealed)! + [0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect {
            _ = try openWAL(disk, segmentBytesMax: 1024, preallocate: true)
        } throws: { error in
            if case .corruption = error as? StorageError { return true }
            return false
        }
    }
}
