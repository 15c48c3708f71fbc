import CairnStorage
import Testing

/// Random damage to the WAL's files: open must never trap and never return
/// wrong data. It either fails with a `StorageError` or returns a prefix of
/// what was written (when the damage could be a torn tail).
@Suite struct WALCorruptionTests {
    @Test(arguments: 0..<12)
    func randomBitFlipsNeverYieldWrongEntries(seed: Int) throws {
        var random = WALModelTests.Generator(state: UInt64(seed) &* 7919)
        for _ in 0..<25 {
            let disk = try makeSimulatedDisk()
            let preallocate = random.next(2) == 0
            let (log, _) = try openWAL(disk, segmentBytesMax: 1500, preallocate: preallocate)
            try log.append(entryRecords(1...40) + [.hardState(HardState(term: 1, vote: 1, commit: 40))])
            try log.sync()
            try log.close()
            let names = log.segmentFileNames
            for _ in 0..<(1 + random.next(3)) {
                let path = walDirectory + "/" + names[random.next(names.count)]
                let size = disk.contents(of: path)!.count
                disk.flipBit(path: path, byteOffset: random.next(size), bit: random.next(8))
            }
            do {
                let (_, recovery) = try openWAL(disk, segmentBytesMax: 1500, preallocate: preallocate)
                #expect(recovery.entries == entries(1...UInt64(recovery.entries.count)))
            } catch {
                #expect(error is StorageError)
            }
        }
    }

    @Test func randomTruncationOfTheLastSegmentKeepsAPrefix() throws {
        var random = WALModelTests.Generator(state: 42)
        for _ in 0..<60 {
            let disk = try makeSimulatedDisk()
            let (log, _) = try openWAL(disk, segmentBytesMax: 1500)
            try log.append(entryRecords(1...40))
            try log.sync()
            try log.close()
            let path = walDirectory + "/" + log.segmentFileNames.last!
            let bytes = disk.contents(of: path)!
            // Keep at least the header: a named segment always has one.
            let keep = 60 + random.next(bytes.count - 60)
            disk.overwrite(path: path, with: Array(bytes[..<keep]))
            let (_, recovery) = try openWAL(disk, segmentBytesMax: 1500)
            #expect(recovery.entries == entries(1...UInt64(recovery.entries.count)))
        }
    }

    @Test func extremeIndexesAreRejected() throws {
        let disk = try makeSimulatedDisk()
        let (log, _) = try openWAL(disk)
        #expect(throws: StorageError.self) { try log.append([.entry(makeEntry(UInt64.max))]) }
        #expect(throws: StorageError.self) {
            try log.append([.snapshotMarker(SnapshotMarker(index: UInt64.max, term: 1))])
        }
        #expect(log.state == .open)
    }
}
