/// Why a storage operation failed. Each case says what the operator or the
/// caller should do; the shell logs `description`.
public enum StorageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file system refused an operation.
    case fileSystem(FileSystemError)
    /// A record larger than `recordBytesMax` was offered; nothing was written.
    case recordTooLarge(bytes: Int, limit: Int)
    /// An entry's index does not continue the log (a gap, index 0, or an
    /// index at or below the snapshot); nothing was written.
    case invalidEntryIndex(index: UInt64, detail: String)
    /// Releasing segments up to `index` would drop entries that no durable
    /// snapshot marker covers.
    case releaseNotCoveredBySnapshot(index: UInt64, snapshotIndex: UInt64?)
    /// A damaged record or segment that is not a torn tail: synced data is
    /// lost, and cutting it silently could lose acknowledged writes.
    case corruption(file: String, offset: Int, detail: String)
    /// A segment of the sequence is missing.
    case missingSegment(directory: String, detail: String)
    /// The WAL failed earlier (a failed write or fsync) and refuses work until
    /// it is closed and reopened, which repairs its tail.
    case failed(cause: String)
    /// The WAL was closed.
    case closed
    /// Another process (or another open WAL) holds the directory's lock.
    case directoryLocked(directory: String)
    /// The WAL no longer holds the entries that follow the snapshot the
    /// caller restored (`entriesAfter`): it fell back to a snapshot older
    /// than the segments that were released.
    case missingEntries(directory: String, entriesAfter: UInt64, firstAvailable: UInt64?)
    /// No snapshot file in the directory could be read and verified.
    case noUsableSnapshot(directory: String, problems: [String])
    /// A snapshot received in chunks does not match its sender's checksum;
    /// it was discarded and must be sent again.
    case snapshotChecksumMismatch(expected: UInt32, received: UInt32)
    /// A snapshot larger than `snapshotBytesMax`.
    case snapshotTooLarge(bytes: Int, limit: Int)

    public var description: String {
        switch self {
        case .fileSystem(let error):
            return "file system: \(error)"
        case .recordTooLarge(let bytes, let limit):
            return "WAL record of \(bytes) bytes exceeds recordBytesMax \(limit)"
        case .invalidEntryIndex(let index, let detail):
            return "WAL entry index \(index) rejected: \(detail)"
        case .releaseNotCoveredBySnapshot(let index, let snapshotIndex):
            let covered = snapshotIndex.map { "\($0)" } ?? "none"
            return "cannot release WAL segments up to \(index): durable snapshot index is \(covered)"
        case .corruption(let file, let offset, let detail):
            return """
                WAL corruption in \(file) at offset \(offset): \(detail). This is not a torn tail, \
                so synced records may be lost: restore this member from a snapshot or remove its \
                data directory and re-add it to the cluster
                """
        case .missingSegment(let directory, let detail):
            return "WAL segment missing in \(directory): \(detail); the log cannot be replayed"
        case .failed(let cause):
            return "WAL unusable after an earlier failure (\(cause)); close and reopen it"
        case .closed:
            return "WAL is closed"
        case .directoryLocked(let directory):
            return """
                WAL directory \(directory) is in use by another process; is another member running \
                with this data directory?
                """
        case .missingEntries(let directory, let after, let first):
            let available = first.map { "the oldest entry held is \($0)" } ?? "it holds no entry"
            return """
                WAL in \(directory) cannot continue the snapshot at index \(after): \(available). \
                Restore a newer snapshot, or remove this member's data directory and re-add it
                """
        case .noUsableSnapshot(let directory, let problems):
            return "no usable snapshot in \(directory): \(problems.joined(separator: "; "))"
        case .snapshotChecksumMismatch(let expected, let received):
            return "received snapshot has checksum \(received), its sender's is \(expected); it was discarded"
        case .snapshotTooLarge(let bytes, let limit):
            return "snapshot of \(bytes) bytes exceeds snapshotBytesMax \(limit)"
        }
    }
}
