/// An in-memory file system that remembers what a crash would keep.
///
/// Why: the WAL's promise ("a write is acknowledged only once durable") is
/// only testable if a test can pull the plug. This file system keeps, per
/// file, the bytes that were fsynced apart from those that were merely
/// written, and per directory the entries that were fsynced apart from
/// those merely created, renamed or removed. `crash()` throws away all that
/// was not synced, as a power cut would.
///
/// It is deterministic: it reads no clock and draws no unseeded random
/// number. The torn tails of `crash(tornTails: .seeded)` come from a
/// SplitMix64 generator seeded by the caller, so a failing run replays.
///
/// Invariants:
/// 1. A file's `durable` bytes are what a crash right now would leave,
///    before torn-tail choices.
/// 2. `durableEntries` is exactly the directory state a crash would leave.
/// 3. Handles opened before a crash are invalid after it.
public final class SimulatedFileSystem: FileSystem {
    /// What happens to unsynced bytes appended to a file on `crash`.
    public enum TornTails: Sendable, Equatable {
        /// Lose every unsynced byte.
        case dropUnsynced
        /// Keep a seeded-random prefix (possibly empty or whole) of each
        /// file's unsynced appended bytes: a write torn by the crash.
        case seeded
        /// Keep the file's full new length, but only a seeded-random prefix
        /// of the unsynced bytes; the rest reads as zeros: the size reached
        /// the disk before the data (as ext4 can leave it).
        case seededZeroFilled
    }

    /// One call made through the seam, recorded so tests can check that
    /// directories are fsynced where the design says they must be.
    public enum Operation: Sendable, Equatable {
        case open(path: String, mode: OpenMode)
        case append(path: String, byteCount: Int)
        case write(path: String, offset: Int, byteCount: Int)
        case preallocate(path: String, size: Int)
        case truncate(path: String, size: Int)
        case sync(path: String)
        case syncData(path: String)
        case syncDirectory(path: String)
        case rename(source: String, destination: String)
        case remove(path: String)
        case createDirectory(path: String)
        case crash
    }

    private final class Inode {
        var content: [UInt8] = []
        var durable: [UInt8] = []
        /// The handle holding the exclusive lock, if any.
        var lockHolder: Int32?
    }

    private enum Node {
        case file(Inode)
        case directory
    }

    private struct Handle {
        var path: String
        let inode: Inode
    }

    private var entries: [String: Node] = [:]
    private var durableEntries: [String: Node] = [:]
    private var handles: [Int32: Handle] = [:]
    private var nextHandle: Int32 = 3
    private var random: SplitMix64
    /// Seeded random faults, for swarm testing: each `sync`/`syncData` fails
    /// and each `append` is torn with these chances, drawn from the seeded
    /// generator so a run replays from its seed.
    public struct FaultRates: Sendable, Equatable {
        public var syncFailuresPerMillion: Int
        public var tornAppendsPerMillion: Int

        public init(syncFailuresPerMillion: Int = 0, tornAppendsPerMillion: Int = 0) {
            self.syncFailuresPerMillion = syncFailuresPerMillion
            self.tornAppendsPerMillion = tornAppendsPerMillion
        }
    }

    /// Random faults on top of the scheduled ones; none by default.
    public var faultRates = FaultRates()
    private var syncFailures: [String?] = []
    private var tornAppends: [(path: String?, keptBytes: Int)] = []
    /// Every operation since creation or the last `clearOperations()`.
    public private(set) var operations: [Operation] = []
    /// Number of `sync` plus `syncData` calls that succeeded: a cheap count
    /// of fsyncs for group-commit tests.
    public private(set) var fileSyncCount = 0

    /// - Parameter seed: seeds the generator behind `.seeded` torn tails.
    public init(seed: UInt64 = 0) {
        random = SplitMix64(seed: seed)
    }

    // MARK: fault injection and inspection

    /// Power cut: keep only synced data and synced directory entries (plus
    /// torn prefixes of unsynced appends when `tornTails` is `.seeded`);
    /// every open handle becomes invalid.
    public func crash(tornTails: TornTails = .dropUnsynced) {
        operations.append(.crash)
        handles.removeAll()
        entries = durableEntries
        for path in entries.keys.sorted() {
            guard case .file(let inode) = entries[path] else { continue }
            inode.content = Self.survivor(of: inode, tornTails: tornTails, random: &random)
            inode.durable = inode.content
        }
    }

    /// What of a file a crash keeps: its durable bytes, plus, for the seeded
    /// modes, a prefix of the unsynced change starting at the first byte
    /// that differs (a write torn by the crash), the rest of a longer file
    /// reading as zeros in `.seededZeroFilled`. A file shorter than its
    /// durable bytes (an unsynced truncate) keeps its durable bytes.
    private static func survivor(of inode: Inode, tornTails: TornTails, random: inout SplitMix64) -> [UInt8] {
        let (content, durable) = (inode.content, inode.durable)
        guard tornTails != .dropUnsynced, content.count >= durable.count else { return durable }
        let differing = (0..<durable.count).first { content[$0] != durable[$0] }
        guard let first = differing ?? (content.count > durable.count ? durable.count : nil) else {
            return durable
        }
        let changed = content.count - first
        let keep = Int(random.next() % UInt64(changed + 1))
        var kept = durable
        overlay(&kept, content[first..<(first + keep)], at: first)
        if tornTails == .seededZeroFilled, kept.count < content.count {
            kept.append(contentsOf: repeatElement(0, count: content.count - kept.count))
        }
        return kept
    }

    /// The next `sync`/`syncData` of `path` (or of any file when nil) fails
    /// with an I/O error and makes nothing durable.
    public func failNextSync(path: String? = nil) {
        syncFailures.append(path)
    }

    /// The next `append` to `path` (or to any file when nil) writes only its
    /// first `keptBytes` bytes and then fails with an I/O error.
    public func tearNextAppend(path: String? = nil, keptBytes: Int) {
        tornAppends.append((path, keptBytes))
    }

    /// Flips one bit of a file's stored bytes, synced and unsynced alike:
    /// media corruption rather than a lost write.
    public func flipBit(path: String, byteOffset: Int, bit: Int = 0) {
        guard case .file(let inode) = entries[path] else {
            preconditionFailure("flipBit: no file at \(path)")
        }
        precondition(byteOffset < inode.content.count, "flipBit: offset past end of \(path)")
        inode.content[byteOffset] ^= UInt8(1) << UInt8(bit & 7)
        if byteOffset < inode.durable.count {
            inode.durable[byteOffset] ^= UInt8(1) << UInt8(bit & 7)
        }
    }

    /// The visible contents of a file, or nil if there is none.
    public func contents(of path: String) -> [UInt8]? {
        guard case .file(let inode) = entries[path] else { return nil }
        return inode.content
    }

    /// The bytes of a file that a crash would keep (without torn tails).
    public func durableContents(of path: String) -> [UInt8]? {
        guard case .file(let inode) = durableEntries[path] else { return nil }
        return inode.durable
    }

    /// Replaces a file's contents, synced, as if written long ago: for tests
    /// that hand-craft damaged files.
    public func overwrite(path: String, with bytes: [UInt8]) {
        guard case .file(let inode) = entries[path] else {
            preconditionFailure("overwrite: no file at \(path)")
        }
        inode.content = bytes
        inode.durable = bytes
    }

    /// Forgets the recorded operations, so a test can look at one phase.
    public func clearOperations() {
        operations.removeAll()
    }

    // MARK: FileSystem

    public func open(_ path: String, mode: OpenMode) throws(FileSystemError) -> OpenFile {
        operations.append(.open(path: path, mode: mode))
        let inode: Inode
        switch (entries[path], mode) {
        case (.directory, _):
            throw failure(.invalidArgument, "open", path, "is a directory")
        case (.file, .createNew):
            throw failure(.alreadyExists, "open", path, "file exists")
        case (.file(let existing), .existing), (.file(let existing), .createOrOpen):
            inode = existing
        case (.file(let existing), .createOrTruncate):
            existing.content.removeAll()
            inode = existing
        case (nil, .existing):
            throw failure(.notFound, "open", path, "no such file")
        case (nil, .createNew), (nil, .createOrTruncate), (nil, .createOrOpen):
            try requireDirectory(parentDirectory(path), operation: "open", path: path)
            inode = Inode()
            entries[path] = .file(inode)
        }
        let number = nextHandle
        nextHandle += 1
        handles[number] = Handle(path: path, inode: inode)
        return OpenFile(rawValue: number)
    }

    public func close(_ file: OpenFile) throws(FileSystemError) {
        guard let handle = handles.removeValue(forKey: file.rawValue) else {
            throw failure(.invalidArgument, "close", "handle \(file.rawValue)", "bad handle")
        }
        if handle.inode.lockHolder == file.rawValue { handle.inode.lockHolder = nil }
    }

    public func lockExclusive(_ file: OpenFile) throws(FileSystemError) {
        let handle = try lookup(file, "flock")
        if let holder = handle.inode.lockHolder, holder != file.rawValue, handles[holder] != nil {
            throw failure(.locked, "flock", handle.path, "locked by handle \(holder)")
        }
        handle.inode.lockHolder = file.rawValue
    }

    public func append(_ file: OpenFile, _ bytes: [UInt8]) throws(FileSystemError) {
        let handle = try lookup(file, "write")
        operations.append(.append(path: handle.path, byteCount: bytes.count))
        var tornAt: Int?
        if let tear = tornAppends.firstIndex(where: { $0.path == nil || $0.path == handle.path }) {
            tornAt = min(tornAppends.remove(at: tear).keptBytes, bytes.count)
        } else if chance(faultRates.tornAppendsPerMillion) {
            tornAt = Int(random.next() % UInt64(bytes.count + 1))
        }
        if let kept = tornAt {
            handle.inode.content.append(contentsOf: bytes[..<kept])
            throw failure(.io, "write", handle.path, "injected torn write after \(kept) bytes")
        }
        handle.inode.content.append(contentsOf: bytes)
    }

    public func write(_ file: OpenFile, at offset: Int, _ bytes: [UInt8]) throws(FileSystemError) {
        let handle = try lookup(file, "pwrite")
        guard offset >= 0 else { throw failure(.invalidArgument, "pwrite", handle.path, "negative offset") }
        operations.append(.write(path: handle.path, offset: offset, byteCount: bytes.count))
        var kept = bytes.count
        var torn = false
        if let tear = tornAppends.firstIndex(where: { $0.path == nil || $0.path == handle.path }) {
            kept = min(tornAppends.remove(at: tear).keptBytes, bytes.count)
            torn = true
        } else if chance(faultRates.tornAppendsPerMillion) {
            kept = Int(random.next() % UInt64(bytes.count + 1))
            torn = true
        }
        Self.overlay(&handle.inode.content, bytes[..<kept], at: offset)
        if torn { throw failure(.io, "pwrite", handle.path, "injected torn write after \(kept) bytes") }
    }

    public func preallocate(_ file: OpenFile, size: Int) throws(FileSystemError) {
        let handle = try lookup(file, "posix_fallocate")
        operations.append(.preallocate(path: handle.path, size: size))
        let missing = size - handle.inode.content.count
        if missing > 0 { handle.inode.content.append(contentsOf: repeatElement(0, count: missing)) }
    }

    /// Writes `bytes` over `content` at `offset`, zero-filling any gap.
    private static func overlay(_ content: inout [UInt8], _ bytes: ArraySlice<UInt8>, at offset: Int) {
        if content.count < offset {
            content.append(contentsOf: repeatElement(0, count: offset - content.count))
        }
        let overlap = min(bytes.count, content.count - offset)
        content.replaceSubrange(offset..<(offset + overlap), with: bytes.prefix(overlap))
        content.append(contentsOf: bytes.dropFirst(overlap))
    }

    public func read(_ file: OpenFile, at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] {
        let handle = try lookup(file, "pread")
        let content = handle.inode.content
        guard offset >= 0, count >= 0 else {
            throw failure(.invalidArgument, "pread", handle.path, "negative offset or count")
        }
        guard offset < content.count else { return [] }
        return Array(content[offset..<min(content.count, offset + count)])
    }

    public func size(_ file: OpenFile) throws(FileSystemError) -> Int {
        try lookup(file, "fstat").inode.content.count
    }

    public func truncate(_ file: OpenFile, to size: Int) throws(FileSystemError) {
        let handle = try lookup(file, "ftruncate")
        operations.append(.truncate(path: handle.path, size: size))
        let content = handle.inode.content
        if size <= content.count {
            handle.inode.content.removeLast(content.count - size)
        } else {
            handle.inode.content.append(contentsOf: [UInt8](repeating: 0, count: size - content.count))
        }
    }

    public func sync(_ file: OpenFile) throws(FileSystemError) {
        let handle = try lookup(file, "fsync")
        operations.append(.sync(path: handle.path))
        try makeDurable(handle, operation: "fsync")
    }

    public func syncData(_ file: OpenFile) throws(FileSystemError) {
        let handle = try lookup(file, "fdatasync")
        operations.append(.syncData(path: handle.path))
        try makeDurable(handle, operation: "fdatasync")
    }

    public func syncDirectory(_ path: String) throws(FileSystemError) {
        operations.append(.syncDirectory(path: path))
        try requireDirectory(path, operation: "fsync directory", path: path)
        let children = Set(entries.keys).union(durableEntries.keys).filter { parentDirectory($0) == path }
        for child in children {
            durableEntries[child] = entries[child]
        }
    }

    public func rename(_ source: String, to destination: String) throws(FileSystemError) {
        operations.append(.rename(source: source, destination: destination))
        guard let node = entries[source] else {
            throw failure(.notFound, "rename to \(destination)", source, "no such file")
        }
        try requireDirectory(parentDirectory(destination), operation: "rename", path: destination)
        if case .directory = entries[destination] {
            throw failure(.invalidArgument, "rename to \(destination)", source, "destination is a directory")
        }
        entries[source] = nil
        entries[destination] = node
        for (number, handle) in handles where handle.path == source {
            handles[number]?.path = destination
        }
    }

    public func remove(_ path: String) throws(FileSystemError) {
        operations.append(.remove(path: path))
        guard case .file = entries[path] else {
            throw failure(.notFound, "unlink", path, "no such file")
        }
        entries[path] = nil
    }

    public func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        try requireDirectory(path, operation: "opendir", path: path)
        return entries.keys.filter { parentDirectory($0) == path }.map(lastComponent).sorted()
    }

    public func createDirectory(_ path: String) throws(FileSystemError) -> Bool {
        operations.append(.createDirectory(path: path))
        switch entries[path] {
        case .directory: return false
        case .file: throw failure(.alreadyExists, "mkdir", path, "a file exists there")
        case nil:
            try requireDirectory(parentDirectory(path), operation: "mkdir", path: path)
            entries[path] = .directory
            return true
        }
    }

    public func exists(_ path: String) -> Bool {
        isRoot(path) || entries[path] != nil
    }

    // MARK: helpers

    private func makeDurable(_ handle: Handle, operation: String) throws(FileSystemError) {
        if let index = syncFailures.firstIndex(where: { $0 == nil || $0 == handle.path }) {
            syncFailures.remove(at: index)
            throw failure(.io, operation, handle.path, "injected fsync failure")
        }
        if chance(faultRates.syncFailuresPerMillion) {
            throw failure(.io, operation, handle.path, "injected random fsync failure")
        }
        handle.inode.durable = handle.inode.content
        fileSyncCount += 1
    }

    /// A seeded draw that is true `perMillion` times in a million; draws
    /// nothing when the rate is 0, so enabling no faults changes no run.
    private func chance(_ perMillion: Int) -> Bool {
        guard perMillion > 0 else { return false }
        return random.next() % 1_000_000 < UInt64(perMillion)
    }

    private func lookup(_ file: OpenFile, _ operation: String) throws(FileSystemError) -> Handle {
        guard let handle = handles[file.rawValue] else {
            throw failure(.invalidArgument, operation, "handle \(file.rawValue)", "bad or stale handle")
        }
        return handle
    }

    private func isRoot(_ path: String) -> Bool {
        path == "/" || path == "." || path.isEmpty
    }

    private func requireDirectory(_ path: String, operation: String, path reported: String)
        throws(FileSystemError)
    {
        if isRoot(path) { return }
        guard case .directory = entries[path] else {
            throw failure(.notFound, operation, reported, "no such directory \(path)")
        }
    }

    private func failure(
        _ kind: FileSystemError.Kind, _ operation: String, _ path: String, _ detail: String
    ) -> FileSystemError {
        FileSystemError(kind: kind, operation: operation, path: path, detail: detail)
    }
}

/// SplitMix64: a tiny, seedable, well-mixed generator; enough for choosing
/// torn-tail lengths reproducibly.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}
