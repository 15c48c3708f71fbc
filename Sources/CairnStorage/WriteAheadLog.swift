/// Limits and layout of a `WriteAheadLog`.
public struct WALOptions: Sendable, Equatable {
    /// A segment is sealed and a new one started when the next record would
    /// push it past this size. A single record larger than what is left still
    /// goes into a fresh segment, so a segment exceeds this only by holding
    /// one record bigger than it.
    public var segmentBytesMax: Int
    /// Largest encoded record (frame included) that `append` accepts; larger
    /// ones are rejected with `StorageError.recordTooLarge`.
    public var recordBytesMax: Int
    /// Whether a new segment is preallocated to `segmentBytesMax`
    /// (posix_fallocate) before it gets its name. Writes into allocated space
    /// change no file size, so each `sync` has less metadata to persist
    /// (measured on this machine kind, noisy: 0.19-0.24 ms per 4 KiB write +
    /// fdatasync, against 0.23-0.33 ms for appends that grow the file; a
    /// zero-filled file would give ~0.15 ms but costs ~45 ms of writes per
    /// 64 MiB segment). Replay treats the zeros after the last record as the
    /// end of the log; sealing a segment truncates it to its records.
    public var preallocateSegments: Bool

    public init(
        segmentBytesMax: Int = 64 * 1024 * 1024, recordBytesMax: Int = 16 * 1024 * 1024,
        preallocateSegments: Bool = true
    ) {
        precondition(segmentBytesMax >= 128, "segmentBytesMax below the size of a segment header")
        precondition(recordBytesMax >= 128, "recordBytesMax below the size of a hard state record")
        precondition(recordBytesMax <= Int(UInt32.max), "recordBytesMax beyond the 32-bit length field")
        self.segmentBytesMax = segmentBytesMax
        self.recordBytesMax = recordBytesMax
        self.preallocateSegments = preallocateSegments
    }

    /// The size to preallocate new segments to, nil for none.
    var preallocatedBytes: Int? { preallocateSegments ? segmentBytesMax : nil }
}

/// A count of records appended through this WAL since it was opened: `append`
/// returns the position after its batch, `sync` the position now durable.
/// Every record at or before a durable position survives a crash.
public struct WALPosition: Comparable, Hashable, Sendable {
    public var records: UInt64

    public init(records: UInt64) {
        self.records = records
    }

    public static func < (lhs: WALPosition, rhs: WALPosition) -> Bool {
        lhs.records < rhs.records
    }
}

/// The write-ahead log: Raft entries, hard state and snapshot markers in
/// CRC-checked records in segment files.
///
/// Group commit is the shape of the API: `append` encodes a batch and writes
/// it to the current segment with one `write` (the data is now in the page
/// cache, not durable); `sync` issues one `fdatasync` that makes everything
/// appended so far durable. A member appends the records of many concurrent
/// requests, calls `sync` once, and only then acknowledges them: **a write is
/// acknowledged only after the `sync` whose returned position covers it.**
///
/// Files: `<directory>/<sequence>-<first index>.wal`, preallocated by
/// default (`WALOptions.preallocateSegments`). Each segment starts
/// with a header record, then a copy of the current hard state and snapshot
/// marker, so any suffix of segments replays to the same state and old
/// segments can be deleted (`releaseSegments`). A new segment is written as
/// `.wal.tmp`, fsynced, renamed and its directory fsynced before any record
/// goes into it, so a named segment always has a durable header. An open
/// WAL holds an exclusive `flock` on `<directory>/LOCK`, so a second process
/// on the same data directory is refused (`StorageError.directoryLocked`).
///
/// Open replays every segment in order and verifies each record's CRC. A
/// damaged record at the end of the last segment with nothing valid after it
/// is a torn, never-acknowledged write: it is cut and reported in
/// `WALRecovery.tailRepair`. Damage anywhere else is `StorageError.corruption`.
/// Limits of that rule: a bit flip in the very last record looks like a torn
/// write and is cut (as in etcd); a torn batch whose later pages reached the
/// disk before earlier ones looks like corruption and stops the open.
///
/// Invariants:
/// 1. `durable <= written`; both only grow.
/// 2. `segments` is non-empty in `.open` state, sorted by sequence without
///    gaps, and its last element is the segment `tail` appends to.
/// 3. After any failed write or fsync the state is `.failed` and stays so:
///    Linux may drop dirty pages after a failed fsync, so retrying it could
///    report success for lost data. Reopening repairs the tail.
public final class WriteAheadLog {
    /// The lifecycle. Only `.open` accepts work.
    public enum State: Equatable, Sendable {
        case open
        case failed(cause: String)
        case closed
    }

    public private(set) var state: State = .open
    public let directory: String
    public let options: WALOptions
    private let fileSystem: any FileSystem
    private var segments: [SegmentInfo]
    private var tail: OpenFile
    /// Bytes in the tail segment (written, synced or not).
    private var tailBytes: Int
    /// Bytes of the tail segment taken by its header and state copies.
    private var tailPreambleBytes: Int
    private var logState: LogState
    private var written = WALPosition(records: 0)
    private var durable = WALPosition(records: 0)
    /// The snapshot index covered by a durable marker: the bound for
    /// `releaseSegments`.
    private var durableSnapshotIndex: UInt64?
    /// The locked `LOCK` file, held until `close`.
    private var lockFile: OpenFile?

    private init(
        directory: String, options: WALOptions, fileSystem: any FileSystem,
        segments: [SegmentInfo], tail: OpenFile, tailBytes: Int, tailPreambleBytes: Int, logState: LogState
    ) {
        self.directory = directory
        self.options = options
        self.fileSystem = fileSystem
        self.segments = segments
        self.tail = tail
        self.tailBytes = tailBytes
        self.tailPreambleBytes = tailPreambleBytes
        self.logState = logState
        self.durableSnapshotIndex = logState.snapshot?.index
    }

    /// The position after the last appended record (durable or not).
    public var writtenPosition: WALPosition { written }
    /// The position up to which every record is durable.
    public var durablePosition: WALPosition { durable }
    /// Index of the last entry appended, nil when the log holds none.
    public var lastIndex: UInt64? { logState.lastIndex }
    /// The newest hard state appended.
    public var hardState: HardState? { logState.hardState }
    /// The newest snapshot marker appended.
    public var snapshot: SnapshotMarker? { logState.snapshot }
    /// File names of the segments currently on disk, oldest first.
    public var segmentFileNames: [String] { segments.map(\.name.fileName) }

    /// Opens the WAL in `directory` (creating it and a first segment when
    /// missing), replays it and repairs a torn tail. The returned recovery is
    /// durable: open fsyncs the last segment and the directory.
    ///
    /// - Parameter snapshotIndex: the index of the snapshot the caller
    ///   restored, whose following entries it needs; nil means the newest
    ///   snapshot marker in the WAL. Pass the loaded snapshot's index when
    ///   `SnapshotStore.loadLatest` fell back to an older file.
    public static func open(
        directory: String, fileSystem: any FileSystem, options: WALOptions = WALOptions(),
        snapshotIndex: UInt64? = nil
    ) throws(StorageError) -> (log: WriteAheadLog, recovery: WALRecovery) {
        try ensureDirectory(directory, fileSystem: fileSystem)
        let lock = try lockDirectory(directory, fileSystem: fileSystem)
        do {
            let opened = try openLocked(
                directory: directory, fileSystem: fileSystem, options: options, snapshotIndex: snapshotIndex)
            opened.log.lockFile = lock
            return opened
        } catch {
            fileSystem.closeIgnoringErrors(lock)
            throw error
        }
    }

    private static func openLocked(
        directory: String, fileSystem: any FileSystem, options: WALOptions, snapshotIndex: UInt64?
    ) throws(StorageError) -> (log: WriteAheadLog, recovery: WALRecovery) {
        let names = try segmentNames(in: directory, fileSystem: fileSystem)
        if names.isEmpty {
            let created = try createSegment(
                SegmentName(sequence: 0, firstIndex: 1), state: LogState(), directory: directory,
                fileSystem: fileSystem, preallocatedBytes: options.preallocatedBytes)
            let log = WriteAheadLog(
                directory: directory, options: options, fileSystem: fileSystem,
                segments: [SegmentInfo(name: created.name, maxEntryIndex: nil)], tail: created.file,
                tailBytes: created.bytes, tailPreambleBytes: created.bytes, logState: LogState())
            let recovery = WALRecovery(
                hardState: nil, snapshot: nil, entries: [], segmentCount: 1, tailRepair: nil)
            return (log, recovery)
        }
        return try replayExisting(
            names, directory: directory, fileSystem: fileSystem, options: options,
            snapshotIndex: snapshotIndex)
    }

    /// Replays existing segments and opens the last one for appending.
    private static func replayExisting(
        _ names: [SegmentName], directory: String, fileSystem: any FileSystem, options: WALOptions,
        snapshotIndex: UInt64?
    ) throws(StorageError) -> (log: WriteAheadLog, recovery: WALRecovery) {
        var replayer = SegmentReplayer(directory: directory)
        var infos: [SegmentInfo] = []
        for name in names.dropLast() {
            infos.append(try replaySealed(name, replayer: &replayer, fileSystem: fileSystem))
        }
        let tail = try replayTail(names.last!, replayer: &replayer, fileSystem: fileSystem, options: options)
        infos.append(tail.info)
        guard let entries = replayer.log.entries(after: snapshotIndex) else {
            fileSystem.closeIgnoringErrors(tail.file)
            throw .missingEntries(
                directory: directory, entriesAfter: snapshotIndex ?? 0,
                firstAvailable: replayer.log.firstIndex)
        }
        let log = WriteAheadLog(
            directory: directory, options: options, fileSystem: fileSystem, segments: infos, tail: tail.file,
            tailBytes: tail.bytes, tailPreambleBytes: 0, logState: replayer.log.state)
        let recovery = WALRecovery(
            hardState: replayer.log.state.hardState, snapshot: replayer.log.state.snapshot,
            entries: entries, segmentCount: names.count, tailRepair: tail.repair)
        return (log, recovery)
    }

    /// Reads a whole segment file.
    private static func readSegment(_ file: OpenFile, fileSystem: any FileSystem) throws(StorageError)
        -> [UInt8]
    {
        try fs { () throws(FileSystemError) in
            try fileSystem.read(file, at: 0, count: try fileSystem.size(file))
        }
    }

    private static func replaySealed(
        _ name: SegmentName, replayer: inout SegmentReplayer, fileSystem: any FileSystem
    ) throws(StorageError) -> SegmentInfo {
        let path = joinPath(replayer.directory, name.fileName)
        let file = try fs { () throws(FileSystemError) in try fileSystem.open(path, mode: .existing) }
        defer { fileSystem.closeIgnoringErrors(file) }
        let bytes = try readSegment(file, fileSystem: fileSystem)
        return try replayer.replay(name, bytes: bytes, isLast: false).info
    }

    /// Replays the last segment, cuts a torn tail (restoring the
    /// preallocation after the cut), and makes what remains durable:
    /// replayed records are treated as persisted by Raft, so they must be
    /// even if the previous process died before its fsync.
    private static func replayTail(
        _ name: SegmentName, replayer: inout SegmentReplayer, fileSystem: any FileSystem, options: WALOptions
    ) throws(StorageError) -> (info: SegmentInfo, file: OpenFile, bytes: Int, repair: TailRepair?) {
        let directory = replayer.directory
        let path = joinPath(directory, name.fileName)
        let file = try fs { () throws(FileSystemError) in try fileSystem.open(path, mode: .existing) }
        do {
            let bytes = try readSegment(file, fileSystem: fileSystem)
            let outcome = try replayer.replay(name, bytes: bytes, isLast: true)
            var repair: TailRepair?
            if let cut = outcome.cut {
                try fs { () throws(FileSystemError) in
                    try fileSystem.truncate(file, to: outcome.end)
                    if let size = options.preallocatedBytes { try fileSystem.preallocate(file, size: size) }
                }
                repair = TailRepair(
                    segment: name.fileName, offset: outcome.end, bytesDropped: cut.bytesDropped,
                    reason: cut.reason)
            }
            try fs { () throws(FileSystemError) in
                try fileSystem.sync(file)
                try fileSystem.syncDirectory(directory)
            }
            return (outcome.info, file, outcome.end, repair)
        } catch {
            fileSystem.closeIgnoringErrors(file)
            throw error
        }
    }

    // MARK: appending

    /// Validates, encodes and writes a batch of records to the page cache.
    /// Nothing is durable until `sync` returns a position at or past the
    /// returned one. The whole batch is validated before any byte is written:
    /// a record over `recordBytesMax` or an entry index that does not
    /// continue the log rejects the batch and leaves the WAL usable.
    @discardableResult
    public func append(_ records: [WALRecord]) throws(StorageError) -> WALPosition {
        try requireOpen()
        var frames: [[UInt8]] = []
        frames.reserveCapacity(records.count)
        var checked = logState
        for record in records {
            let frame = RecordCodec.encode(record)
            guard frame.count <= options.recordBytesMax else {
                throw .recordTooLarge(bytes: frame.count, limit: options.recordBytesMax)
            }
            if case .entry(let entry) = record, let problem = checked.problem(appendingIndex: entry.index) {
                throw .invalidEntryIndex(index: entry.index, detail: problem)
            }
            if case .snapshotMarker(let marker) = record, marker.index == UInt64.max {
                throw .invalidEntryIndex(index: marker.index, detail: "snapshot index out of range")
            }
            checked.apply(record)
            frames.append(frame)
        }
        try failing { () throws(StorageError) in try write(records, frames: frames) }
        return written
    }

    /// Writes frames in as few `write` calls as possible, sealing the tail
    /// segment and starting a new one whenever the next frame would not fit.
    private func write(_ records: [WALRecord], frames: [[UInt8]]) throws(StorageError) {
        var buffer: [UInt8] = []
        for (record, frame) in zip(records, frames) {
            let tailHasRecords = tailBytes + buffer.count > tailPreambleBytes
            if tailHasRecords, tailBytes + buffer.count + frame.count > options.segmentBytesMax {
                try flush(&buffer)
                try rollOver()
            }
            buffer.append(contentsOf: frame)
            logState.apply(record)
            written.records += 1
            if case .entry(let entry) = record {
                segments[segments.count - 1].maxEntryIndex = max(
                    segments.last!.maxEntryIndex ?? 0, entry.index)
            }
        }
        try flush(&buffer)
    }

    private func flush(_ buffer: inout [UInt8]) throws(StorageError) {
        guard !buffer.isEmpty else { return }
        try Self.fs { () throws(FileSystemError) in try fileSystem.write(tail, at: tailBytes, buffer) }
        tailBytes += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    /// Seals the tail: cuts its preallocated space and fsyncs it (everything
    /// written so far becomes durable, and a sealed segment ends at its last
    /// record), then switches to a new segment named after the next index.
    /// The old handle is closed only once the new segment exists, so `tail`
    /// is always an open handle, even after a failure here.
    private func rollOver() throws(StorageError) {
        let sealed = tail
        let sealedBytes = tailBytes
        try Self.fs { () throws(FileSystemError) in
            if try fileSystem.size(sealed) > sealedBytes { try fileSystem.truncate(sealed, to: sealedBytes) }
            try fileSystem.sync(sealed)
        }
        markDurable()
        let name = SegmentName(sequence: segments.last!.name.sequence + 1, firstIndex: logState.nextIndex)
        let created = try Self.createSegment(
            name, state: logState, directory: directory, fileSystem: fileSystem,
            preallocatedBytes: options.preallocatedBytes)
        segments.append(SegmentInfo(name: name, maxEntryIndex: nil))
        tail = created.file
        tailBytes = created.bytes
        tailPreambleBytes = created.bytes
        try Self.fs { () throws(FileSystemError) in try fileSystem.close(sealed) }
    }

    /// Makes every appended record durable with one fdatasync of the tail
    /// segment, and returns the durable position. Acknowledge a write only
    /// once this position covers it. Cheap when nothing is pending.
    @discardableResult
    public func sync() throws(StorageError) -> WALPosition {
        try requireOpen()
        guard durable < written else { return durable }
        try failing { () throws(StorageError) in
            try Self.fs { () throws(FileSystemError) in try fileSystem.syncData(tail) }
        }
        markDurable()
        return durable
    }

    private func markDurable() {
        durable = written
        durableSnapshotIndex = logState.snapshot?.index
    }

    // MARK: releasing and closing

    /// Deletes the oldest segments whose entries are all at or below `index`,
    /// keeping the tail. `index` must be covered by a durable snapshot marker
    /// (append `.snapshotMarker` and `sync` first), otherwise entries no
    /// snapshot holds would be lost. Returns the file names deleted.
    @discardableResult
    public func releaseSegments(upTo index: UInt64) throws(StorageError) -> [String] {
        try requireOpen()
        guard let covered = durableSnapshotIndex, index <= covered else {
            throw .releaseNotCoveredBySnapshot(index: index, snapshotIndex: durableSnapshotIndex)
        }
        var released: [String] = []
        while segments.count > 1, (segments[0].maxEntryIndex ?? 0) <= index {
            let name = segments[0].name.fileName
            try failing { () throws(StorageError) in
                try Self.fs { () throws(FileSystemError) in
                    try fileSystem.remove(joinPath(directory, name))
                }
            }
            segments.removeFirst()
            released.append(name)
        }
        if !released.isEmpty {
            try failing { () throws(StorageError) in
                try Self.fs { () throws(FileSystemError) in try fileSystem.syncDirectory(directory) }
            }
        }
        return released
    }

    /// Closes the tail segment. Does not sync: records appended after the
    /// last `sync` may be lost, exactly as in a crash.
    public func close() throws(StorageError) {
        guard state != .closed else { return }
        state = .closed
        if let lockFile { fileSystem.closeIgnoringErrors(lockFile) }
        lockFile = nil
        try Self.fs { () throws(FileSystemError) in try fileSystem.close(tail) }
    }

    // MARK: helpers

    private func requireOpen() throws(StorageError) {
        switch state {
        case .open: return
        case .failed(let cause): throw .failed(cause: cause)
        case .closed: throw .closed
        }
    }

    /// Runs I/O that, if it fails, leaves the files in an unknown state: the
    /// WAL moves to `.failed` (invariant 3).
    private func failing(_ body: () throws(StorageError) -> Void) throws(StorageError) {
        do {
            try body()
        } catch {
            state = .failed(cause: error.description)
            throw error
        }
    }

    static func fs<Result>(_ body: () throws(FileSystemError) -> Result) throws(StorageError) -> Result {
        do {
            return try body()
        } catch {
            throw .fileSystem(error)
        }
    }
}
