import CairnStorage
import Foundation
import Testing

/// The same storage code on the real disk, through `POSIXFileSystem`, in a
/// fresh temporary directory per test.
@Suite struct POSIXStorageTests {
    private func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("cairn-storage-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    @Test func fileSystemOperations() throws {
        try withTemporaryDirectory { root in
            let disk = POSIXFileSystem()
            let path = root + "/a"
            let file = try disk.open(path, mode: .createNew)
            try disk.append(file, Array("hello ".utf8))
            try disk.append(file, Array("world".utf8))
            try disk.sync(file)
            #expect(try disk.size(file) == 11)
            #expect(try disk.read(file, at: 6, count: 100) == Array("world".utf8))
            #expect(try disk.read(file, at: 50, count: 10) == [])
            try disk.truncate(file, to: 5)
            try disk.syncData(file)
            try disk.append(file, Array("!".utf8))
            #expect(try disk.read(file, at: 0, count: 100) == Array("hello!".utf8))
            try disk.close(file)
            #expect {
                _ = try disk.open(path, mode: .createNew)
            } throws: { error in
                (error as? FileSystemError)?.kind == .alreadyExists
            }
            #expect {
                _ = try disk.open(root + "/missing", mode: .existing)
            } throws: { error in
                (error as? FileSystemError)?.kind == .notFound
            }
            try disk.rename(path, to: root + "/b")
            try disk.syncDirectory(root)
            #expect(try disk.listDirectory(root) == ["b"])
            #expect(try disk.createDirectory(root + "/sub"))
            #expect(try !disk.createDirectory(root + "/sub"))
            #expect(try disk.listDirectory(root) == ["b", "sub"])
            try disk.remove(root + "/b")
            #expect(!disk.exists(root + "/b"))
            #expect(disk.exists(root + "/sub"))
        }
    }

    @Test func walRoundTripAndTornTailOnDisk() throws {
        try withTemporaryDirectory { root in
            let disk = POSIXFileSystem()
            let directory = root + "/wal"
            let options = WALOptions(segmentBytesMax: 16 * 1024, preallocateSegments: false)
            let (log, fresh) = try WriteAheadLog.open(
                directory: directory, fileSystem: disk, options: options)
            #expect(fresh.entries.isEmpty)
            for start in stride(from: UInt64(1), through: 1000, by: 10) {
                try log.append(entryRecords(start...(start + 9), term: 2))
                try log.sync()
            }
            try log.append([.hardState(HardState(term: 2, vote: 1, commit: 1000))])
            try log.sync()
            #expect(log.segmentFileNames.count > 3)
            try log.close()

            let (reopened, recovery) = try WriteAheadLog.open(
                directory: directory, fileSystem: disk, options: options)
            #expect(recovery.entries == entries(1...1000, term: 2))
            #expect(recovery.hardState == HardState(term: 2, vote: 1, commit: 1000))
            #expect(recovery.tailRepair == nil)
            try reopened.append(entryRecords(1001...1001, term: 2))
            try reopened.sync()
            try reopened.close()

            // Tear the last record by cutting the file on disk.
            let last = directory + "/" + reopened.segmentFileNames.last!
            let handle = try #require(FileHandle(forUpdatingAtPath: last))
            let size = try handle.seekToEnd()
            try handle.truncate(atOffset: size - 7)
            try handle.close()
            let (_, repaired) = try WriteAheadLog.open(
                directory: directory, fileSystem: disk, options: options)
            #expect(repaired.entries == entries(1...1000, term: 2))
            #expect(repaired.tailRepair?.segment == reopened.segmentFileNames.last!)
            #expect(repaired.tailRepair.map { $0.offset + $0.bytesDropped } == Int(size) - 7)
        }
    }

    @Test func directoryLockOnDisk() throws {
        try withTemporaryDirectory { root in
            let disk = POSIXFileSystem()
            let options = WALOptions(segmentBytesMax: 1 << 20)
            let (log, _) = try WriteAheadLog.open(
                directory: root + "/wal", fileSystem: disk, options: options)
            #expect {
                _ = try WriteAheadLog.open(directory: root + "/wal", fileSystem: disk, options: options)
            } throws: { error in
                if case .directoryLocked = error as? StorageError { return true }
                return false
            }
            try log.close()
            try WriteAheadLog.open(directory: root + "/wal", fileSystem: disk, options: options).log.close()
        }
    }

    @Test func preallocatedSegmentsOnDisk() throws {
        try withTemporaryDirectory { root in
            let disk = POSIXFileSystem()
            let directory = root + "/wal"
            let options = WALOptions(segmentBytesMax: 16 * 1024)
            let (log, _) = try WriteAheadLog.open(directory: directory, fileSystem: disk, options: options)
            for start in stride(from: UInt64(1), through: 400, by: 20) {
                try log.append(entryRecords(start...(start + 19)))
                try log.sync()
            }
            try log.close()
            let sizes = try log.segmentFileNames.map { name in
                try FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as! Int
            }
            // Sealed segments were cut to their records; the tail keeps its space.
            #expect(sizes.count > 3)
            #expect(sizes.dropLast().allSatisfy { $0 < 16 * 1024 })
            #expect(sizes.last == 16 * 1024)
            let (reopened, recovery) = try WriteAheadLog.open(
                directory: directory, fileSystem: disk, options: options)
            #expect(recovery.entries == entries(1...400))
            #expect(recovery.tailRepair == nil)
            try reopened.append(entryRecords(401...410))
            try reopened.sync()
            try reopened.close()
            let (_, final) = try WriteAheadLog.open(directory: directory, fileSystem: disk, options: options)
            #expect(final.entries == entries(1...410))
        }
    }

    @Test func corruptMiddleRecordOnDiskIsAnError() throws {
        try withTemporaryDirectory { root in
            let disk = POSIXFileSystem()
            let directory = root + "/wal"
            let options = WALOptions(preallocateSegments: false)
            let (log, _) = try WriteAheadLog.open(directory: directory, fileSystem: disk, options: options)
            try log.append(entryRecords(1...50))
            try log.sync()
            try log.close()
            let path = directory + "/" + log.segmentFileNames[0]
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0x10
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect {
                _ = try WriteAheadLog.open(directory: directory, fileSystem: disk, options: options)
            } throws: { error in
                if case .corruption = error as? StorageError { return true }
                return false
            }
        }
    }

    @Test func snapshotsOnDisk() throws {
        try withTemporaryDirectory { root in
            let disk = POSIXFileSystem()
            let store = try SnapshotStore(directory: root + "/snap", fileSystem: disk)
            let first = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
            try store.save(index: 5, term: 1, bytes: first)
            let newest = try store.save(index: 9, term: 2, bytes: Array(first.reversed()))
            try store.save(index: 12, term: 2, bytes: [])
            #expect(try store.snapshots().map(\.index) == [9, 12])
            #expect(try store.loadLatest()?.bytes == [])
            // Damage the newest: load falls back to index 9.
            let path = root + "/snap/" + (try store.snapshots().last!.file)
            try Data([0, 1, 2]).write(to: URL(fileURLWithPath: path))
            let loaded = try #require(try store.loadLatest())
            #expect(loaded.index == 9)
            #expect(loaded.bytes == Array(first.reversed()))
            #expect(loaded.skipped.count == 1)
            #expect(newest.hasPrefix("0000000000000009-"))
        }
    }

    /// Appends + fsync on this disk: 4 KiB batches (one record each), and
    /// group commit of 64 entries of 256 bytes per fsync. Run with
    /// `CAIRN_STORAGE_BENCH=1 swift test --filter appendSyncThroughput`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["CAIRN_STORAGE_BENCH"] == "1"))
    func appendSyncThroughput() throws {
        try withTemporaryDirectory { root in
            for preallocate in [false, true] {
                let mode = preallocate ? "preallocated" : "appending"
                let options = WALOptions(preallocateSegments: preallocate)
                try measureAppendSync(
                    root + "/wal4k-\(mode)", label: "4 KiB x 1, \(mode)", options: options, batches: 2000,
                    entryBytes: 4096 - 25)
                try measureAppendSync(
                    root + "/wal256-\(mode)", label: "256 B x 64, \(mode)", options: options, batches: 500,
                    entriesPerBatch: 64)
            }
        }
    }

    private func measureAppendSync(
        _ directory: String, label: String, options: WALOptions, batches: Int, entriesPerBatch: Int = 1,
        entryBytes: Int = 256
    ) throws {
        let disk = POSIXFileSystem()
        let (log, _) = try WriteAheadLog.open(directory: directory, fileSystem: disk, options: options)
        let payload = [UInt8](repeating: 0xAB, count: entryBytes)
        var index: UInt64 = 0
        let elapsed = try ContinuousClock().measure {
            for _ in 0..<batches {
                let records = (0..<entriesPerBatch).map { _ -> WALRecord in
                    index += 1
                    return .entry(LogEntry(index: index, term: 1, payload: payload))
                }
                try log.append(records)
                try log.sync()
            }
        }
        try log.close()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perBatch = seconds / Double(batches) * 1e3
        let fsyncsPerSecond = Double(batches) / seconds
        let entriesPerSecond = Double(batches * entriesPerBatch) / seconds
        print(
            "appendSyncThroughput[\(label)]: \(batches) batches in \(seconds) s:",
            "\(fsyncsPerSecond) fsyncs/s, \(entriesPerSecond) entries/s, \(perBatch) ms per batch")
        let (_, recovery) = try WriteAheadLog.open(directory: directory, fileSystem: disk, options: options)
        #expect(recovery.entries.count == batches * entriesPerBatch)
    }
}
