import CairnCore

/// Limits of a `SnapshotStore`.
public struct SnapshotOptions: Sendable, Equatable {
    /// How many snapshot files to keep; older ones are deleted after each
    /// save. At least 2, so a damaged newest file can fall back to the one
    /// before it.
    public var snapshotsRetainedMax: Int
    /// Largest snapshot `save` writes and `loadLatest` reads into memory.
    public var snapshotBytesMax: Int

    public init(snapshotsRetainedMax: Int = 2, snapshotBytesMax: Int = 8 * 1024 * 1024 * 1024) {
        precondition(snapshotsRetainedMax >= 1, "snapshotsRetainedMax must keep at least one snapshot")
        precondition(snapshotBytesMax > 0, "snapshotBytesMax must be positive")
        self.snapshotsRetainedMax = snapshotsRetainedMax
        self.snapshotBytesMax = snapshotBytesMax
    }
}

/// A snapshot read back and verified.
public struct LoadedSnapshot: Equatable, Sendable {
    public var index: UInt64
    public var term: UInt64
    public var bytes: [UInt8]
    /// Newer snapshot files that failed verification and were skipped: the
    /// shell logs them.
    public var skipped: [SnapshotProblem]
}

/// A snapshot file that could not be used, and why.
public struct SnapshotProblem: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var reason: String

    public var description: String { "\(file): \(reason)" }
}

/// Snapshot files of the state machine: `<index>-<term>.snap` (16 hex digits
/// each, so names sort by index) in one directory.
///
/// File format: a 32-byte header, the content, a 16-byte trailer.
///
///     header:  magic "CAIRNSNP" (8) · version UInt32 · flags UInt32 (0) ·
///              index UInt64 · term UInt64
///     trailer: content bytes UInt64 · content CRC-32C UInt32 ·
///              CRC-32C of header and the trailer's first 12 bytes UInt32
///
/// The length and checksums trail the content so a snapshot can be written
/// as it is produced or received in chunks (`SnapshotWriter`), without
/// holding it all in memory.
///
/// Why this shape: a snapshot replaces the log below its index, so it must be
/// complete and intact or not exist at all. A save writes a temporary file,
/// fsyncs it, renames it into place and fsyncs the directory, so a crash
/// leaves either the old set of snapshots or the new one. `loadLatest`
/// verifies the checksums and the size and falls back to the previous
/// snapshot when the newest is damaged. The WAL may release its segments only
/// up to `oldestRetainedIndex`, so that fallback still finds every entry
/// after it.
public struct SnapshotStore {
    static let magic: [UInt8] = Array("CAIRNSNP".utf8)
    static let version: UInt32 = 1
    static let headerBytes = 32
    static let trailerBytes = 16
    static let suffix = ".snap"
    static let temporarySuffix = ".snap.tmp"
    /// Chunk size for verifying a file without a second copy in memory.
    static let readChunkBytes = 1 << 20

    public let directory: String
    public let options: SnapshotOptions
    let fileSystem: any FileSystem

    /// Opens the store, creating the directory when missing and deleting
    /// temporary files left by an interrupted save.
    public init(directory: String, fileSystem: any FileSystem, options: SnapshotOptions = SnapshotOptions())
        throws(StorageError)
    {
        self.directory = directory
        self.fileSystem = fileSystem
        self.options = options
        try WriteAheadLog.ensureDirectory(directory, fileSystem: fileSystem)
        let leftovers = try listing().filter { $0.hasSuffix(Self.temporarySuffix) }
        if !leftovers.isEmpty {
            try WriteAheadLog.fs { () throws(FileSystemError) in
                for name in leftovers { try fileSystem.remove(joinPath(directory, name)) }
                try fileSystem.syncDirectory(directory)
            }
        }
    }

    /// (index, term, file name) of every snapshot file, oldest first.
    public func snapshots() throws(StorageError) -> [(index: UInt64, term: UInt64, file: String)] {
        try listing().compactMap { name in
            Self.parseName(name).map { (index: $0.index, term: $0.term, file: name) }
        }
    }

    /// The index of the oldest snapshot kept, nil when there is none: the
    /// highest index up to which the WAL may release segments.
    public func oldestRetainedIndex() throws(StorageError) -> UInt64? {
        try snapshots().first?.index
    }

    /// Starts writing a snapshot in chunks; nothing is visible until
    /// `SnapshotWriter.commit()`.
    public func beginSnapshot(index: UInt64, term: UInt64) throws(StorageError) -> SnapshotWriter {
        try SnapshotWriter(store: self, index: index, term: term)
    }

    /// Writes a whole snapshot durably (see `SnapshotWriter.commit`) and
    /// returns its file name. Only after this returns may the caller write a
    /// WAL snapshot marker for `index`.
    @discardableResult
    public func save(index: UInt64, term: UInt64, bytes: [UInt8]) throws(StorageError) -> String {
        guard bytes.count <= options.snapshotBytesMax else {
            throw .snapshotTooLarge(bytes: bytes.count, limit: options.snapshotBytesMax)
        }
        let writer = try beginSnapshot(index: index, term: term)
        try writer.write(bytes)
        return try writer.commit()
    }

    /// The newest snapshot that verifies, with the newer ones that did not;
    /// nil when the directory holds no snapshot file. Throws
    /// `noUsableSnapshot` when files exist but none verifies.
    public func loadLatest() throws(StorageError) -> LoadedSnapshot? {
        guard let (candidate, verified, problems) = try newestVerified(keepingContent: true) else {
            return nil
        }
        fileSystem.closeIgnoringErrors(verified.file)
        return LoadedSnapshot(
            index: candidate.index, term: candidate.term, bytes: verified.content ?? [], skipped: problems)
    }

    /// Like `loadLatest`, but leaves the content on disk behind a reader
    /// that serves it in chunks (to stream to a peer).
    public func openLatest() throws(StorageError) -> SnapshotReader? {
        guard let (candidate, verified, problems) = try newestVerified(keepingContent: false) else {
            return nil
        }
        return SnapshotReader(
            index: candidate.index, term: candidate.term, verified: verified, skipped: problems,
            fileSystem: fileSystem)
    }

    /// Walks the snapshots newest first to the first that verifies.
    private func newestVerified(keepingContent: Bool) throws(StorageError)
        -> (
            candidate: (index: UInt64, term: UInt64, file: String), verified: VerifiedSnapshot,
            problems: [SnapshotProblem]
        )?
    {
        let candidates = try snapshots()
        guard !candidates.isEmpty else { return nil }
        var problems: [SnapshotProblem] = []
        for candidate in candidates.reversed() {
            let result = try verify(
                candidate.file, index: candidate.index, term: candidate.term, keepingContent: keepingContent)
            switch result {
            case .success(let verified): return (candidate, verified, problems)
            case .failure(let problem): problems.append(problem)
            }
        }
        throw .noUsableSnapshot(directory: directory, problems: problems.map(\.description))
    }

    // MARK: helpers

    private func listing() throws(StorageError) -> [String] {
        try WriteAheadLog.fs { () throws(FileSystemError) in try fileSystem.listDirectory(directory) }
    }

    /// Deletes the oldest snapshots beyond `snapshotsRetainedMax`.
    func pruneOld() throws(StorageError) {
        let all = try snapshots()
        let excess = all.count - options.snapshotsRetainedMax
        guard excess > 0 else { return }
        try WriteAheadLog.fs { () throws(FileSystemError) in
            for snapshot in all.prefix(excess) {
                try fileSystem.remove(joinPath(directory, snapshot.file))
            }
            try fileSystem.syncDirectory(directory)
        }
    }

    /// Opens and verifies one file, streaming its content through the CRC
    /// in chunks; keeps the content only when asked. I/O errors are thrown;
    /// damage is returned as a problem so the caller can fall back.
    func verify(_ name: String, index: UInt64, term: UInt64, keepingContent: Bool) throws(StorageError)
        -> Result<VerifiedSnapshot, SnapshotProblem>
    {
        let file = try WriteAheadLog.fs { () throws(FileSystemError) in
            try fileSystem.open(joinPath(directory, name), mode: .existing)
        }
        do {
            let result = try verifyOpen(file, name, index: index, term: term, keepingContent: keepingContent)
            if case .failure = result { fileSystem.closeIgnoringErrors(file) }
            return result
        } catch {
            fileSystem.closeIgnoringErrors(file)
            throw error
        }
    }

    private func verifyOpen(
        _ file: OpenFile, _ name: String, index: UInt64, term: UInt64, keepingContent: Bool
    ) throws(StorageError) -> Result<VerifiedSnapshot, SnapshotProblem> {
        let (size, header) = try WriteAheadLog.fs { () throws(FileSystemError) in
            (try fileSystem.size(file), try fileSystem.read(file, at: 0, count: Self.headerBytes))
        }
        guard size >= Self.headerBytes + Self.trailerBytes else {
            return .failure(SnapshotProblem(file: name, reason: "file of \(size) bytes is too short"))
        }
        let trailer = try WriteAheadLog.fs { () throws(FileSystemError) in
            try fileSystem.read(file, at: size - Self.trailerBytes, count: Self.trailerBytes)
        }
        let expected: SnapshotTrailer
        switch Self.verifyFrame(
            header: header, trailer: trailer, index: index, term: term, fileBytes: size,
            limit: options.snapshotBytesMax)
        {
        case .success(let parsed): expected = parsed
        case .failure(let failure): return .failure(SnapshotProblem(file: name, reason: failure.reason))
        }
        var content: [UInt8] = []
        if keepingContent { content.reserveCapacity(expected.contentBytes) }
        var crc = CRC32C.initial
        var offset = 0
        while offset < expected.contentBytes {
            let count = min(Self.readChunkBytes, expected.contentBytes - offset)
            let chunk = try WriteAheadLog.fs { () throws(FileSystemError) in
                try fileSystem.read(file, at: Self.headerBytes + offset, count: count)
            }
            guard chunk.count == count else { break }
            crc = CRC32C.update(crc, chunk)
            if keepingContent { content += chunk }
            offset += count
        }
        guard offset == expected.contentBytes, CRC32C.finalize(crc) == expected.contentCRC else {
            return .failure(SnapshotProblem(file: name, reason: "content checksum mismatch"))
        }
        return .success(
            VerifiedSnapshot(
                file: file, name: name, trailer: expected, content: keepingContent ? content : nil))
    }
}

/// A snapshot file that passed verification, still open.
struct VerifiedSnapshot {
    var file: OpenFile
    var name: String
    var trailer: SnapshotTrailer
    var content: [UInt8]?
}
