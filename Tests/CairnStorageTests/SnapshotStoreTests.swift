import CairnCore
import CairnStorage
import Testing

@Suite struct SnapshotStoreTests {
    private func content(_ seed: Int, bytes: Int = 3000) -> [UInt8] {
        (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ seed) }
    }

    @Test func emptyStoreLoadsNothing() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        #expect(try store.loadLatest() == nil)
        #expect(try store.oldestRetainedIndex() == nil)
    }

    @Test func saveAndLoadRoundTripSurvivesACrash() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        try store.save(index: 10, term: 2, bytes: content(1))
        try store.save(index: 20, term: 3, bytes: content(2))
        disk.crash()
        let loaded = try #require(try store.loadLatest())
        #expect(loaded.index == 20)
        #expect(loaded.term == 3)
        #expect(loaded.bytes == content(2))
        #expect(loaded.skipped.isEmpty)
    }

    @Test func saveIsTempFileFsyncRenameDirectoryFsync() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        disk.clearOperations()
        let name = try store.save(index: 7, term: 1, bytes: content(3))
        let path = snapshotDirectory + "/" + name
        let temporary = path + ".tmp"
        let operations = disk.operations
        guard let rename = operations.firstIndex(of: .rename(source: temporary, destination: path)) else {
            Issue.record("no rename in \(operations)")
            return
        }
        #expect(operations[..<rename].contains(.sync(path: temporary)))
        #expect(operations[rename + 1] == .syncDirectory(path: snapshotDirectory))
    }

    @Test func keepsOnlyTheNewestSnapshots() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        for index in UInt64(1)...5 {
            try store.save(index: index * 10, term: 1, bytes: content(Int(index)))
        }
        #expect(try store.snapshots().map(\.index) == [40, 50])
        #expect(try store.oldestRetainedIndex() == 40)
        let three = try SnapshotStore(
            directory: snapshotDirectory, fileSystem: disk, options: SnapshotOptions(snapshotsRetainedMax: 3))
        try three.save(index: 60, term: 1, bytes: content(6))
        try three.save(index: 70, term: 1, bytes: content(7))
        #expect(try three.snapshots().map(\.index) == [50, 60, 70])
    }

    @Test(arguments: [0, 8, 20, 31, 32, 100, 3031, 3032, 3040, 3047])
    func corruptedNewestFallsBackToThePreviousWithAReport(byteOffset: Int) throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        try store.save(index: 10, term: 1, bytes: content(1))
        let newest = try store.save(index: 20, term: 1, bytes: content(2))
        disk.flipBit(path: snapshotDirectory + "/" + newest, byteOffset: byteOffset, bit: 5)
        let loaded = try #require(try store.loadLatest())
        #expect(loaded.index == 10)
        #expect(loaded.bytes == content(1))
        #expect(loaded.skipped.count == 1)
        #expect(loaded.skipped.first?.file == newest)
    }

    @Test func truncatedNewestFallsBack() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        try store.save(index: 10, term: 1, bytes: content(1))
        let newest = try store.save(index: 20, term: 1, bytes: content(2))
        let path = snapshotDirectory + "/" + newest
        disk.overwrite(path: path, with: Array(disk.contents(of: path)!.dropLast(1)))
        let loaded = try #require(try store.loadLatest())
        #expect(loaded.index == 10)
        #expect(loaded.skipped.first?.reason.contains("torn") == true)
    }

    @Test func noVerifiableSnapshotIsAnError() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        let only = try store.save(index: 10, term: 1, bytes: content(1))
        disk.flipBit(path: snapshotDirectory + "/" + only, byteOffset: 500)
        #expect {
            _ = try store.loadLatest()
        } throws: { error in
            if case .noUsableSnapshot(_, let problems) = error as? StorageError { return problems.count == 1 }
            return false
        }
    }

    @Test func interruptedSaveLeavesThePreviousSnapshot() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        try store.save(index: 10, term: 1, bytes: content(1))
        disk.tearNextAppend(keptBytes: 1000)
        #expect(throws: StorageError.self) { try store.save(index: 20, term: 1, bytes: content(2)) }
        disk.crash(tornTails: .seeded)
        let reopened = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        #expect(try disk.listDirectory(snapshotDirectory).allSatisfy { $0.hasSuffix(".snap") })
        #expect(try reopened.loadLatest()?.index == 10)
    }

    @Test func oversizedSnapshotIsRejected() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(
            directory: snapshotDirectory, fileSystem: disk, options: SnapshotOptions(snapshotBytesMax: 100))
        #expect {
            try store.save(index: 1, term: 1, bytes: content(1, bytes: 101))
        } throws: { error in
            (error as? StorageError) == .snapshotTooLarge(bytes: 101, limit: 100)
        }
        try store.save(index: 1, term: 1, bytes: content(1, bytes: 100))
        #expect(try store.loadLatest()?.bytes.count == 100)
    }

    @Test func chunkedWriterProducesTheSameSnapshot() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        let writer = try store.beginSnapshot(index: 42, term: 7)
        let whole = content(9, bytes: 10_000)
        for start in stride(from: 0, to: whole.count, by: 777) {
            try writer.write(Array(whole[start..<min(whole.count, start + 777)]))
        }
        // Invisible until committed.
        #expect(try store.loadLatest() == nil)
        let name = try writer.commit()
        #expect(writer.state == .committed(file: name))
        #expect(throws: StorageError.self) { try writer.write([1]) }
        let loaded = try #require(try store.loadLatest())
        #expect(loaded.index == 42 && loaded.term == 7 && loaded.bytes == whole)
        // Same bytes on disk as a one-shot save of the same snapshot.
        let oneShot = try makeSimulatedDisk()
        let other = try SnapshotStore(directory: snapshotDirectory, fileSystem: oneShot)
        try other.save(index: 42, term: 7, bytes: whole)
        let path = snapshotDirectory + "/" + name
        #expect(disk.contents(of: path) == oneShot.contents(of: path))
    }

    @Test func abandonedOrOversizedWriterLeavesNoFile() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(
            directory: snapshotDirectory, fileSystem: disk, options: SnapshotOptions(snapshotBytesMax: 1000))
        let abandoned = try store.beginSnapshot(index: 1, term: 1)
        try abandoned.write(content(1, bytes: 10))
        abandoned.abandon()
        #expect(abandoned.state == .abandoned)
        let oversized = try store.beginSnapshot(index: 2, term: 1)
        try oversized.write(content(1, bytes: 600))
        #expect {
            try oversized.write(content(1, bytes: 401))
        } throws: { error in
            (error as? StorageError) == .snapshotTooLarge(bytes: 1001, limit: 1000)
        }
        #expect(throws: StorageError.self) { try oversized.commit() }
        #expect(try disk.listDirectory(snapshotDirectory).isEmpty)
    }

    @Test func failedFsyncOnCommitLeavesThePreviousSnapshot() throws {
        let disk = try makeSimulatedDisk()
        let store = try SnapshotStore(directory: snapshotDirectory, fileSystem: disk)
        try store.save(index: 10, term: 1, bytes: content(1))
        disk.failNextSync()
        #expect(throws: StorageError.self) { try store.save(index: 20, term: 1, bytes: content(2)) }
        disk.crash()
        #expect(try store.snapshots().map(\.index) == [10])
        #expect(try store.loadLatest()?.bytes == content(1))
    }

    /// A leader streams its snapshot in chunks to a follower's store.
    @Test func streamingBetweenStoresVerifiesTheChecksum() throws {
        let leaderDisk = try makeSimulatedDisk()
        let leader = try SnapshotStore(directory: snapshotDirectory, fileSystem: leaderDisk)
        let whole = content(4, bytes: 50_000)
        try leader.save(index: 9, term: 2, bytes: whole)
        let reader = try #require(try leader.openLatest())
        #expect(reader.index == 9 && reader.term == 2 && reader.contentBytes == whole.count)
        #expect(reader.contentChecksum == CRC32C.checksum(whole))

        let followerDisk = try makeSimulatedDisk()
        let follower = try SnapshotStore(directory: snapshotDirectory, fileSystem: followerDisk)
        let writer = try follower.beginSnapshot(index: reader.index, term: reader.term)
        var offset = 0
        while true {
            let chunk = try reader.read(at: offset, count: 4096)
            if chunk.isEmpty { break }
            try writer.write(chunk)
            offset += chunk.count
        }
        reader.close()
        #expect(throws: StorageError.self) { _ = try reader.read(at: 0, count: 1) }
        try writer.commit(expectedChecksum: reader.contentChecksum)
        #expect(try follower.loadLatest()?.bytes == whole)

        // A chunk damaged in flight is caught at commit and leaves nothing.
        let damaged = try follower.beginSnapshot(index: 20, term: 2)
        try damaged.write([1, 2, 3])
        #expect {
            try damaged.commit(expectedChecksum: CRC32C.checksum([1, 2, 4]))
        } throws: { error in
            if case .snapshotChecksumMismatch = error as? StorageError { return true }
            return false
        }
        #expect(try follower.snapshots().map(\.index) == [9])
    }
}
