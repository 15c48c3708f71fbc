import CairnStorage

/// Deterministic test entries: payload sizes and bytes derived from the index.
func makeEntry(_ index: UInt64, term: UInt64 = 1, payloadBytes: Int? = nil) -> LogEntry {
    let size = payloadBytes ?? Int(index % 97) * 3
    let payload = (0..<size).map {
        UInt8(truncatingIfNeeded: Int(truncatingIfNeeded: index) &* 131 &+ $0 &* 7)
    }
    return LogEntry(index: index, term: term, payload: payload)
}

func entryRecords(_ indexes: ClosedRange<UInt64>, term: UInt64 = 1) -> [WALRecord] {
    indexes.map { .entry(makeEntry($0, term: term)) }
}

func entries(_ indexes: ClosedRange<UInt64>, term: UInt64 = 1) -> [LogEntry] {
    indexes.map { makeEntry($0, term: term) }
}

/// A fresh simulated disk with the WAL directory's parent in place.
func makeSimulatedDisk(seed: UInt64 = 0) throws -> SimulatedFileSystem {
    let fileSystem = SimulatedFileSystem(seed: seed)
    _ = try fileSystem.createDirectory("/data")
    try fileSystem.syncDirectory("/")
    return fileSystem
}

let walDirectory = "/data/wal"
let snapshotDirectory = "/data/snap"

func openWAL(
    _ fileSystem: any FileSystem, segmentBytesMax: Int = 64 * 1024 * 1024, recordBytesMax: Int = 1 << 20,
    preallocate: Bool = false
) throws -> (log: WriteAheadLog, recovery: WALRecovery) {
    try WriteAheadLog.open(
        directory: walDirectory, fileSystem: fileSystem,
        options: WALOptions(
            segmentBytesMax: segmentBytesMax, recordBytesMax: recordBytesMax, preallocateSegments: preallocate
        ))
}

/// The bytes a torn write leaves that hold data: up to the last non-zero
/// byte (zeros after the last record read as the end of the log).
func meaningfulBytes(_ bytes: ArraySlice<UInt8>) -> Int {
    guard let last = bytes.lastIndex(where: { $0 != 0 }) else { return 0 }
    return last + 1 - bytes.startIndex
}

/// The path of the newest segment of the WAL directory.
func lastSegmentPath(_ fileSystem: any FileSystem, directory: String = walDirectory) throws -> String {
    let names = try fileSystem.listDirectory(directory).filter { $0.hasSuffix(".wal") }
    return directory + "/" + names.last!
}
