import CairnStorage
import Testing

/// The simulated disk must lose exactly what a real one may lose, or the
/// WAL's crash tests prove nothing.
@Suite struct SimulatedFileSystemTests {
    private func write(_ disk: SimulatedFileSystem, _ path: String, _ text: String, sync: Bool) throws {
        let file = try disk.open(path, mode: .createOrTruncate)
        try disk.append(file, Array(text.utf8))
        if sync { try disk.sync(file) }
        try disk.close(file)
    }

    @Test func newDirectoryNeedsItsParentFsyncedToSurvive() throws {
        let disk = SimulatedFileSystem()
        #expect(try disk.createDirectory("/x"))
        disk.crash()
        #expect(!disk.exists("/x"))
        #expect(try disk.createDirectory("/x"))
        try disk.syncDirectory("/")
        disk.crash()
        #expect(disk.exists("/x"))
    }

    @Test func newFileNeedsItsDirectoryFsyncedToSurvive() throws {
        let disk = try makeSimulatedDisk()
        try write(disk, "/data/a", "synced data", sync: true)
        disk.crash()
        #expect(!disk.exists("/data/a"))

        try write(disk, "/data/b", "synced data", sync: true)
        try disk.syncDirectory("/data")
        disk.crash()
        #expect(disk.contents(of: "/data/b") == Array("synced data".utf8))
    }

    @Test func unsyncedAppendsAreLostAndSyncedOnesKept() throws {
        let disk = try makeSimulatedDisk()
        let file = try disk.open("/data/a", mode: .createNew)
        try disk.syncDirectory("/data")
        try disk.append(file, [1, 2, 3])
        try disk.syncData(file)
        try disk.append(file, [4, 5])
        #expect(disk.contents(of: "/data/a") == [1, 2, 3, 4, 5])
        #expect(disk.durableContents(of: "/data/a") == [1, 2, 3])
        disk.crash()
        #expect(disk.contents(of: "/data/a") == [1, 2, 3])
        // Handles from before the crash are gone.
        #expect(throws: FileSystemError.self) { try disk.append(file, [9]) }
    }

    @Test func renameAndRemoveAreUndoneWithoutDirectoryFsync() throws {
        let disk = try makeSimulatedDisk()
        try write(disk, "/data/old", "x", sync: true)
        try disk.syncDirectory("/data")
        try disk.rename("/data/old", to: "/data/new")
        #expect(try disk.listDirectory("/data") == ["new"])
        disk.crash()
        #expect(try disk.listDirectory("/data") == ["old"])

        try disk.remove("/data/old")
        disk.crash()
        #expect(disk.exists("/data/old"))
        try disk.remove("/data/old")
        try disk.syncDirectory("/data")
        disk.crash()
        #expect(!disk.exists("/data/old"))
    }

    @Test func truncateIsUndoneWithoutFsync() throws {
        let disk = try makeSimulatedDisk()
        let file = try disk.open("/data/a", mode: .createNew)
        try disk.syncDirectory("/data")
        try disk.append(file, [1, 2, 3, 4])
        try disk.sync(file)
        try disk.truncate(file, to: 1)
        disk.crash()
        #expect(disk.contents(of: "/data/a") == [1, 2, 3, 4])
    }

    @Test func seededTornTailsAreReproducibleAndPrefixes() throws {
        func run(seed: UInt64) throws -> [UInt8] {
            let disk = try makeSimulatedDisk(seed: seed)
            let file = try disk.open("/data/a", mode: .createNew)
            try disk.syncDirectory("/data")
            try disk.append(file, [0, 0])
            try disk.sync(file)
            try disk.append(file, Array(1...200))
            disk.crash(tornTails: .seeded)
            return disk.contents(of: "/data/a")!
        }
        var lengths: Set<Int> = []
        for seed in UInt64(0)..<20 {
            let kept = try run(seed: seed)
            #expect(kept == (try run(seed: seed)))
            #expect(kept.count >= 2)
            #expect(kept == [0, 0] + Array(UInt8(1)...200).prefix(kept.count - 2))
            lengths.insert(kept.count)
        }
        #expect(lengths.count > 10)
    }

    @Test func injectedFaults() throws {
        let disk = try makeSimulatedDisk()
        let file = try disk.open("/data/a", mode: .createNew)
        disk.failNextSync(path: "/data/a")
        try disk.append(file, [1, 2, 3])
        #expect {
            try disk.sync(file)
        } throws: { error in
            (error as? FileSystemError)?.kind == .io
        }
        #expect(disk.durableContents(of: "/data/a") == nil)
        try disk.sync(file)
        disk.tearNextAppend(keptBytes: 2)
        #expect(throws: FileSystemError.self) { try disk.append(file, [4, 5, 6, 7]) }
        #expect(disk.contents(of: "/data/a") == [1, 2, 3, 4, 5])
        disk.flipBit(path: "/data/a", byteOffset: 0, bit: 7)
        #expect(disk.contents(of: "/data/a")?.first == 0x81)
    }

    @Test func createNewRefusesAnExistingFileAndMissingParents() throws {
        let disk = try makeSimulatedDisk()
        try write(disk, "/data/a", "x", sync: false)
        #expect {
            _ = try disk.open("/data/a", mode: .createNew)
        } throws: { error in
            (error as? FileSystemError)?.kind == .alreadyExists
        }
        #expect {
            _ = try disk.open("/nowhere/a", mode: .createNew)
        } throws: { error in
            (error as? FileSystemError)?.kind == .notFound
        }
    }

    @Test func seededFaultRatesAreReproducible() throws {
        func outcomes(seed: UInt64) throws -> [Bool] {
            let disk = try makeSimulatedDisk(seed: seed)
            disk.faultRates = .init(syncFailuresPerMillion: 500_000)
            let file = try disk.open("/data/a", mode: .createNew)
            return (0..<64).map { _ in (try? disk.sync(file)) != nil }
        }
        let first = try outcomes(seed: 3)
        #expect(first == (try outcomes(seed: 3)))
        #expect(first.contains(true) && first.contains(false))
        #expect(first != (try outcomes(seed: 4)))
    }

    @Test func faultRatesAtTheExtremes() throws {
        let disk = try makeSimulatedDisk()
        let file = try disk.open("/data/a", mode: .createNew)
        disk.faultRates = .init(syncFailuresPerMillion: 1_000_000, tornAppendsPerMillion: 1_000_000)
        #expect(throws: FileSystemError.self) { try disk.sync(file) }
        #expect(throws: FileSystemError.self) { try disk.append(file, [1, 2, 3]) }
        disk.faultRates = .init()
        try disk.append(file, [4])
        try disk.sync(file)
    }
}
