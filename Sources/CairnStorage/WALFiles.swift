/// File-level steps of the WAL: directory set-up, listing segments and
/// creating a segment durably.
extension WriteAheadLog {
    /// The lock file that keeps two processes from appending to one WAL.
    static let lockFileName = "LOCK"

    /// Opens the directory's lock file and locks it without waiting.
    static func lockDirectory(_ directory: String, fileSystem: any FileSystem) throws(StorageError)
        -> OpenFile
    {
        let file = try fs { () throws(FileSystemError) in
            try fileSystem.open(joinPath(directory, lockFileName), mode: .createOrOpen)
        }
        do {
            try fileSystem.lockExclusive(file)
        } catch {
            fileSystem.closeIgnoringErrors(file)
            if error.kind == .locked { throw .directoryLocked(directory: directory) }
            throw .fileSystem(error)
        }
        return file
    }

    /// Creates `directory` and any missing parents (like `mkdir -p`), making
    /// each new entry durable with an fsync of its parent.
    static func ensureDirectory(_ directory: String, fileSystem: any FileSystem) throws(StorageError) {
        let parent = parentDirectory(directory)
        if parent != directory, !fileSystem.exists(parent) {
            try ensureDirectory(parent, fileSystem: fileSystem)
        }
        try fs { () throws(FileSystemError) in
            if try fileSystem.createDirectory(directory) {
                try fileSystem.syncDirectory(parent)
            }
        }
    }

    /// The segments in `directory`, sorted, after deleting leftover
    /// `.wal.tmp` files of an interrupted segment creation. A gap in the
    /// sequence means a segment was lost: replaying around it would skip
    /// acknowledged entries.
    static func segmentNames(in directory: String, fileSystem: any FileSystem) throws(StorageError)
        -> [SegmentName]
    {
        let listing = try fs { () throws(FileSystemError) in try fileSystem.listDirectory(directory) }
        let leftovers = listing.filter { $0.hasSuffix(SegmentName.temporarySuffix) }
        if !leftovers.isEmpty {
            try fs { () throws(FileSystemError) in
                for name in leftovers { try fileSystem.remove(joinPath(directory, name)) }
                try fileSystem.syncDirectory(directory)
            }
        }
        let names = listing.compactMap(SegmentName.init(fileName:)).sorted()
        for (previous, next) in zip(names, names.dropFirst()) where next.sequence != previous.sequence + 1 {
            throw .missingSegment(
                directory: directory,
                detail: "\(previous.fileName) is followed by \(next.fileName)")
        }
        return names
    }

    /// Writes a new segment durably before it gets its name: header and
    /// the current hard state and snapshot marker into `<name>.tmp`, the
    /// preallocation if asked, fsync,
    /// rename, fsync of the directory. Returns the open file, positioned for
    /// appends, and the size of what was written.
    static func createSegment(
        _ name: SegmentName, state: LogState, directory: String, fileSystem: any FileSystem,
        preallocatedBytes: Int?
    ) throws(StorageError) -> (name: SegmentName, file: OpenFile, bytes: Int) {
        var preamble = RecordCodec.encode(SegmentHeader(sequence: name.sequence, firstIndex: name.firstIndex))
        if let hardState = state.hardState {
            preamble += RecordCodec.encode(.hardState(hardState))
        }
        if let snapshot = state.snapshot {
            preamble += RecordCodec.encode(.snapshotMarker(snapshot))
        }
        let path = joinPath(directory, name.fileName)
        let temporaryPath = path + ".tmp"
        let file = try fs { () throws(FileSystemError) in
            try fileSystem.open(temporaryPath, mode: .createOrTruncate)
        }
        do {
            try fs { () throws(FileSystemError) in
                try fileSystem.append(file, preamble)
                if let preallocatedBytes { try fileSystem.preallocate(file, size: preallocatedBytes) }
                try fileSystem.sync(file)
                try fileSystem.rename(temporaryPath, to: path)
                try fileSystem.syncDirectory(directory)
            }
        } catch {
            fileSystem.closeIgnoringErrors(file)
            throw error
        }
        return (name, file, preamble.count)
    }
}
