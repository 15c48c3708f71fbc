import CairnStorage
import Testing

@Suite struct WriteAheadLogTests {
    @Test func freshLogIsEmptyAndDurable() throws {
        let disk = try makeSimulatedDisk()
        let (log, recovery) = try openWAL(disk)
        #expect(recovery.entries.isEmpty)
        #expect(recovery.hardState == nil)
        #expect(recovery.snapshot == nil)
        #expect(recovery.tailRepair == nil)
        #expect(log.segmentFileNames == ["0000000000000000-0000000000000001.wal"])
        // The first segment and the new directory survive a crash at once.
        disk.crash()
        let (_, again) = try openWAL(disk)
        #expect(again.segmentCount == 1)
    }

    @Test func roundTripAcrossManySegments() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 2048)
        var expected: [LogEntry] = []
        var index: UInt64 = 1
        for batch in 0..<60 {
            let records = entryRecords(index...(index + UInt64(batch % 7)))
            expected += records.compactMap { if case .entry(let entry) = $0 { entry } else { nil } }
            index += UInt64(batch % 7) + 1
            try log.append(records + [.hardState(HardState(term: 1, vote: 2, commit: index - 1))])
            try log.sync()
        }
        #expect(log.segmentFileNames.count > 5)
        try log.close()
        let (reopened, recovery) = try openWAL(disk, segmentBytesMax: 2048)
        #expect(recovery.entries == expected)
        #expect(recovery.hardState == HardState(term: 1, vote: 2, commit: index - 1))
        #expect(recovery.tailRepair == nil)
        #expect(recovery.segmentCount == log.segmentFileNames.count)
        #expect(reopened.lastIndex == index - 1)
        // Segment names carry increasing sequences and first indexes.
        let names = reopened.segmentFileNames
        #expect(names == names.sorted())
        #expect(names.first == "0000000000000000-0000000000000001.wal")
    }

    @Test func groupCommitIsOneFsyncPerSync() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        let before = disk.fileSyncCount
        var position = WALPosition(records: 0)
        for index in UInt64(1)...100 {
            position = try log.append([.entry(makeEntry(index))])
            #expect(log.durablePosition < position)
        }
        #expect(disk.fileSyncCount == before)
        let durable = try log.sync()
        #expect(durable == position)
        #expect(disk.fileSyncCount == before + 1)
        // Nothing pending: no further fsync.
        try log.sync()
        #expect(disk.fileSyncCount == before + 1)
    }

    @Test func crashLosesExactlyTheUnsyncedRecords() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...40) + [.hardState(HardState(term: 1, vote: 1, commit: 30))])
        try log.sync()
        try log.append(entryRecords(41...45) + [.hardState(HardState(term: 2, vote: 0, commit: 40))])
        disk.crash()
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.entries == entries(1...40))
        #expect(recovery.hardState == HardState(term: 1, vote: 1, commit: 30))
    }

    /// Sealing a segment fsyncs it, so records before a rollover are durable
    /// even without `sync`, and `durablePosition` says so.
    @Test func rolloverMakesEarlierRecordsDurable() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 2048)
        try log.append(entryRecords(1...60))
        #expect(log.segmentFileNames.count > 1)
        let durable = log.durablePosition
        #expect(durable.records > 0 && durable < log.writtenPosition)
        disk.crash()
        let (_, recovery) = try openWAL(disk, segmentBytesMax: 2048)
        #expect(UInt64(recovery.entries.count) == durable.records)
        #expect(recovery.entries == entries(1...durable.records))
    }

    /// With seeded torn tails a crash keeps any prefix of the unsynced bytes:
    /// every synced record survives, and what else survives is a prefix of
    /// the unsynced batch, never a hole.
    @Test(arguments: 0..<40)
    func seededCrashKeepsSyncedRecordsAndAPrefixOfTheRest(seed: Int) throws {
        let disk = try makeSimulatedDisk(seed: UInt64(seed))
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...20))
        try log.sync()
        try log.append(entryRecords(21...30))
        disk.crash(tornTails: .seeded)
        let (reopened, recovery) = try openWAL(disk)
        #expect(recovery.entries.count >= 20)
        #expect(recovery.entries == entries(1...UInt64(recovery.entries.count)))
        // The repaired log accepts new writes and replays cleanly.
        try reopened.append([.entry(makeEntry(UInt64(recovery.entries.count) + 1, term: 2))])
        try reopened.sync()
        try reopened.close()
        let (_, final) = try openWAL(disk)
        #expect(final.tailRepair == nil)
        #expect(final.entries.count == recovery.entries.count + 1)
    }

    /// A crash that left the new file size but zeros for part of the data.
    @Test(arguments: 0..<20)
    func zeroFilledCrashTailIsRepaired(seed: Int) throws {
        let disk = try makeSimulatedDisk(seed: UInt64(seed))
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...20))
        try log.sync()
        try log.append(entryRecords(21...30))
        disk.crash(tornTails: .seededZeroFilled)
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.entries.count >= 20)
        #expect(recovery.entries == entries(1...UInt64(recovery.entries.count)))
    }

    @Test func openCreatesMissingParentDirectoriesDurably() throws {
        let disk = try makeSimulatedDisk()
        let options = WALOptions(segmentBytesMax: 4096)
        let (log, _) = try WriteAheadLog.open(
            directory: "/data/default.cairn/member/wal", fileSystem: disk, options: options)
        try log.append(entryRecords(1...3))
        try log.sync()
        disk.crash()
        let (_, recovery) = try WriteAheadLog.open(
            directory: "/data/default.cairn/member/wal", fileSystem: disk, options: options)
        #expect(recovery.entries == entries(1...3))
    }

    /// Cuts the last record at every byte, in a plain and in a preallocated
    /// segment (where the cut-off part reads as zeros): each cut is repaired
    /// to exactly the earlier records, and reported unless only zeros were
    /// left (which is the clean end of the log).
    @Test(arguments: [false, true])
    func tornTailAtEveryOffsetOfTheLastRecordIsRepaired(preallocate: Bool) throws {
        // A plain twin run gives the exact bytes of the records.
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...9))
        try log.sync()
        let path = try lastSegmentPath(disk)
        let before = disk.contents(of: path)!
        try log.append([.entry(makeEntry(10, payloadBytes: 40))])
        try log.sync()
        try log.close()
        let full = disk.contents(of: path)!
        #expect(full.count == before.count + 8 + 1 + 16 + 40)
        let segmentBytes = 4096
        for cut in before.count..<full.count {
            let torn = try makeSimulatedDisk()
            _ = try openWAL(torn, segmentBytesMax: segmentBytes, preallocate: preallocate).log.close()
            let padding = preallocate ? segmentBytes - cut : 0
            torn.overwrite(path: path, with: Array(full[..<cut]) + repeatElement(0, count: padding))
            let (repaired, recovery) = try openWAL(
                torn, segmentBytesMax: segmentBytes, preallocate: preallocate)
            #expect(recovery.entries == entries(1...9))
            let dropped = meaningfulBytes(full[before.count..<cut])
            if dropped == 0 {
                #expect(recovery.tailRepair == nil)
            } else {
                #expect(recovery.tailRepair?.offset == before.count)
                #expect(recovery.tailRepair?.bytesDropped == dropped)
            }
            #expect(torn.durableContents(of: path)?.prefix(before.count).elementsEqual(before) == true)
            let expectedSize = preallocate ? segmentBytes : (dropped > 0 ? before.count : cut)
            #expect(torn.durableContents(of: path)?.count == expectedSize)
            try repaired.append([.entry(makeEntry(10, term: 3))])
            try repaired.sync()
            try repaired.close()
            let final = try openWAL(torn, segmentBytesMax: segmentBytes, preallocate: preallocate).recovery
            #expect(final.entries == entries(1...9) + [makeEntry(10, term: 3)])
            #expect(final.tailRepair == nil)
        }
    }

    /// Zeros after the last record (a file size that reached the disk before
    /// its data, or preallocated space) end the log: nothing to report.
    @Test func zeroFilledTailIsTheEndOfTheLog() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...5))
        try log.sync()
        try log.close()
        let path = try lastSegmentPath(disk)
        let good = disk.contents(of: path)!
        disk.overwrite(path: path, with: good + [UInt8](repeating: 0, count: 4096))
        let (reopened, recovery) = try openWAL(disk)
        #expect(recovery.entries == entries(1...5))
        #expect(recovery.tailRepair == nil)
        try reopened.append(entryRecords(6...7))
        try reopened.sync()
        try reopened.close()
        #expect(try openWAL(disk).recovery.entries == entries(1...7))
    }

    @Test func corruptedMiddleRecordIsAHardError() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...10))
        try log.sync()
        try log.close()
        let path = try lastSegmentPath(disk)
        // Flip a bit inside the third entry's payload area (well before the end).
        let bytes = disk.contents(of: path)!
        disk.flipBit(path: path, byteOffset: bytes.count / 3, bit: 3)
        #expect {
            _ = try openWAL(disk)
        } throws: { error in
            guard case .corruption(let file, _, let detail) = error as? StorageError else { return false }
            return file == path && detail.contains("followed by valid records")
        }
    }

    @Test func corruptionInASealedSegmentIsAHardError() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...60))
        try log.sync()
        try log.close()
        let first = walDirectory + "/" + log.segmentFileNames[0]
        let size = disk.contents(of: first)!.count
        // Even the last byte of a sealed segment is not a torn tail.
        disk.flipBit(path: first, byteOffset: size - 1)
        #expect {
            _ = try openWAL(disk, segmentBytesMax: 1024)
        } throws: { error in
            guard case .corruption(let file, _, let detail) = error as? StorageError else { return false }
            return file == first && detail.contains("sealed segment")
        }
    }

    @Test func damagedHeaderIsAHardError() throws {
        let disk = try makeSimulatedDisk()
        _ = try openWAL(disk).log.close()
        disk.flipBit(path: try lastSegmentPath(disk), byteOffset: 12)
        #expect(throws: StorageError.self) { _ = try openWAL(disk) }
    }

    @Test func missingSegmentIsAHardError() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...60))
        try log.sync()
        try log.close()
        #expect(log.segmentFileNames.count >= 3)
        try disk.remove(walDirectory + "/" + log.segmentFileNames[1])
        #expect {
            _ = try openWAL(disk, segmentBytesMax: 1024)
        } throws: { error in
            if case .missingSegment = error as? StorageError { return true }
            return false
        }
    }

    @Test func conflictingEntriesSupersedeTheRestOfTheLog() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, segmentBytesMax: 1024)
        try log.append(entryRecords(1...30))
        try log.append(entryRecords(21...23, term: 2))
        #expect(log.lastIndex == 23)
        try log.append(entryRecords(24...25, term: 2))
        try log.sync()
        try log.close()
        let (_, recovery) = try openWAL(disk, segmentBytesMax: 1024)
        #expect(recovery.entries == entries(1...20) + entries(21...25, term: 2))
    }

    @Test func invalidIndexesAreRejectedWithoutWriting() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...3))
        let written = log.writtenPosition
        for bad: UInt64 in [0, 6, 100] {
            #expect {
                try log.append([.entry(makeEntry(4)), .entry(makeEntry(bad))])
            } throws: { error in
                if case .invalidEntryIndex(let index, _) = error as? StorageError { return index == bad }
                return false
            }
        }
        #expect(log.writtenPosition == written)
        #expect(log.state == .open)
        try log.append([.entry(makeEntry(4))])
        try log.sync()
        try log.close()
        #expect(try openWAL(disk).recovery.entries == entries(1...4))
    }

    @Test func oversizedRecordIsRejectedAndLogStaysUsable() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk, recordBytesMax: 1000)
        #expect {
            try log.append([.entry(makeEntry(1, payloadBytes: 1000))])
        } throws: { error in
            if case .recordTooLarge(let bytes, let limit) = error as? StorageError {
                return bytes == 1000 + 8 + 1 + 16 && limit == 1000
            }
            return false
        }
        try log.append([.entry(makeEntry(1, payloadBytes: 1000 - 25))])
        try log.sync()
        try log.close()
        #expect(try openWAL(disk, recordBytesMax: 1000).recovery.entries.count == 1)
    }

    @Test func failedFsyncPoisonsTheLogUntilReopened() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...5))
        try log.sync()
        try log.append(entryRecords(6...8))
        disk.failNextSync()
        #expect(throws: StorageError.self) { try log.sync() }
        guard case .failed = log.state else {
            Issue.record("expected failed state, got \(log.state)")
            return
        }
        #expect {
            try log.append(entryRecords(9...9))
        } throws: { error in
            if case .failed = error as? StorageError { return true }
            return false
        }
        #expect(throws: StorageError.self) { try log.sync() }
        disk.crash()
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.entries == entries(1...5))
    }

    @Test func tornWriteIsRepairedOnReopen() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        try log.append(entryRecords(1...5))
        try log.sync()
        disk.tearNextAppend(keptBytes: 13)
        #expect(throws: StorageError.self) { try log.append(entryRecords(6...8)) }
        #expect(throws: StorageError.self) { try log.sync() }
        try log.close()
        let (_, recovery) = try openWAL(disk)
        #expect(recovery.entries == entries(1...5))
        // The 13 bytes that landed, up to their last non-zero byte.
        #expect((1...13).contains(recovery.tailRepair?.bytesDropped ?? 0))
        #expect(recovery.tailRepair?.offset == disk.contents(of: try lastSegmentPath(disk))!.count)
    }
}
