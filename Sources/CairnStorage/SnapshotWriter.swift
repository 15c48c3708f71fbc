import CairnCore

/// Writes one snapshot file in chunks: as the state machine serialises it,
/// or as chunks arrive from the leader.
///
/// Nothing is visible under the snapshot's name until `commit()`, which
/// appends the trailer, fsyncs, renames the temporary file into place and
/// fsyncs the directory. `abandon()` (or a failure) removes the temporary
/// file; one left by a crash is removed when a `SnapshotStore` is next
/// opened. Content beyond `snapshotBytesMax` fails the writer.
///
/// Invariant: only `.writing` accepts `write`, `commit` or `abandon`; every
/// other state is final.
public final class SnapshotWriter {
    /// The lifecycle.
    public enum State: Equatable, Sendable {
        case writing
        case committed(file: String)
        case abandoned
        case failed(cause: String)
    }

    public let index: UInt64
    public let term: UInt64
    public private(set) var state: State = .writing
    /// Content bytes written so far.
    public private(set) var contentBytes = 0
    private let store: SnapshotStore
    private let file: OpenFile
    private let header: [UInt8]
    private let temporaryPath: String
    private var contentCRC = CRC32C.initial

    init(store: SnapshotStore, index: UInt64, term: UInt64) throws(StorageError) {
        self.store = store
        self.index = index
        self.term = term
        self.header = SnapshotStore.header(index: index, term: term)
        let name = SnapshotStore.fileName(index: index, term: term)
        self.temporaryPath = joinPath(store.directory, name + ".tmp")
        let fileSystem = store.fileSystem
        let path = temporaryPath
        let header = header
        file = try WriteAheadLog.fs { () throws(FileSystemError) in
            try fileSystem.open(path, mode: .createOrTruncate)
        }
        do {
            try WriteAheadLog.fs { () throws(FileSystemError) in try fileSystem.append(file, header) }
        } catch {
            discard(cause: error.description)
            throw error
        }
    }

    /// Appends content. Not durable until `commit`.
    public func write(_ chunk: [UInt8]) throws(StorageError) {
        try requireWriting()
        guard contentBytes + chunk.count <= store.options.snapshotBytesMax else {
            let error = StorageError.snapshotTooLarge(
                bytes: contentBytes + chunk.count, limit: store.options.snapshotBytesMax)
            discard(cause: error.description)
            throw error
        }
        do {
            let fileSystem = store.fileSystem
            try WriteAheadLog.fs { () throws(FileSystemError) in try fileSystem.append(file, chunk) }
        } catch {
            discard(cause: error.description)
            throw error
        }
        contentCRC = CRC32C.update(contentCRC, chunk)
        contentBytes += chunk.count
    }

    /// CRC-32C of the content written so far.
    public var contentChecksum: UInt32 { CRC32C.finalize(contentCRC) }

    /// Makes the snapshot durable under its name, deletes snapshots beyond
    /// `snapshotsRetainedMax`, and returns the file name.
    ///
    /// - Parameter expectedChecksum: the sender's `contentChecksum` when the
    ///   content came over the network; a mismatch fails the writer and
    ///   removes the file.
    @discardableResult
    public func commit(expectedChecksum: UInt32? = nil) throws(StorageError) -> String {
        try requireWriting()
        if let expectedChecksum, expectedChecksum != contentChecksum {
            let error = StorageError.snapshotChecksumMismatch(
                expected: expectedChecksum, received: contentChecksum)
            discard(cause: error.description)
            throw error
        }
        let fileSystem = store.fileSystem
        let name = SnapshotStore.fileName(index: index, term: term)
        let trailer = SnapshotStore.trailer(
            header: header, contentBytes: contentBytes, contentCRC: CRC32C.finalize(contentCRC))
        do {
            try WriteAheadLog.fs { () throws(FileSystemError) in
                try fileSystem.append(file, trailer)
                try fileSystem.sync(file)
                try fileSystem.close(file)
            }
        } catch {
            discard(cause: error.description)
            throw error
        }
        let path = joinPath(store.directory, name)
        let (temporaryPath, directory) = (self.temporaryPath, store.directory)
        do {
            try WriteAheadLog.fs { () throws(FileSystemError) in
                try fileSystem.rename(temporaryPath, to: path)
                try fileSystem.syncDirectory(directory)
            }
        } catch {
            state = .failed(cause: error.description)
            throw error
        }
        state = .committed(file: name)
        try store.pruneOld()
        return name
    }

    /// Gives up: closes and removes the temporary file.
    public func abandon() {
        guard state == .writing else { return }
        discard(cause: nil)
    }

    private func requireWriting() throws(StorageError) {
        switch state {
        case .writing: return
        case .failed(let cause): throw .failed(cause: cause)
        case .committed, .abandoned: throw .closed
        }
    }

    /// Closes and removes the temporary file after a failure (or abandon).
    private func discard(cause: String?) {
        let fileSystem = store.fileSystem
        fileSystem.closeIgnoringErrors(file)
        _ = try? fileSystem.remove(temporaryPath)
        state = cause.map { .failed(cause: $0) } ?? .abandoned
    }
}
