/// A verified snapshot file, open for chunked reads: how a leader streams a
/// snapshot to a lagging or new member without loading it into memory.
///
/// The file was verified when opened; send `contentChecksum` along so the
/// receiver can pass it to `SnapshotWriter.commit(expectedChecksum:)` and
/// catch damage anywhere between this disk and its own.
///
/// Invariant: reads are only served in state `.open`.
public final class SnapshotReader {
    /// The lifecycle.
    public enum State: Equatable, Sendable {
        case open
        case closed
    }

    public let index: UInt64
    public let term: UInt64
    /// Length of the content in bytes.
    public let contentBytes: Int
    /// CRC-32C of the whole content.
    public let contentChecksum: UInt32
    /// File name of the snapshot.
    public let file: String
    /// Newer snapshot files that failed verification and were skipped.
    public let skipped: [SnapshotProblem]
    public private(set) var state: State = .open
    private let handle: OpenFile
    private let fileSystem: any FileSystem

    init(
        index: UInt64, term: UInt64, verified: VerifiedSnapshot, skipped: [SnapshotProblem],
        fileSystem: any FileSystem
    ) {
        self.index = index
        self.term = term
        self.contentBytes = verified.trailer.contentBytes
        self.contentChecksum = verified.trailer.contentCRC
        self.file = verified.name
        self.skipped = skipped
        self.handle = verified.file
        self.fileSystem = fileSystem
    }

    /// Up to `count` content bytes from `offset`; fewer only at the end.
    public func read(at offset: Int, count: Int) throws(StorageError) -> [UInt8] {
        guard state == .open else { throw .closed }
        precondition(offset >= 0 && count >= 0, "negative snapshot read")
        let available = max(0, min(count, contentBytes - offset))
        guard available > 0 else { return [] }
        let fileSystem = self.fileSystem
        let handle = self.handle
        return try WriteAheadLog.fs { () throws(FileSystemError) in
            try fileSystem.read(handle, at: SnapshotStore.headerBytes + offset, count: available)
        }
    }

    /// Releases the file. Idempotent.
    public func close() {
        guard state == .open else { return }
        state = .closed
        fileSystem.closeIgnoringErrors(handle)
    }
}
