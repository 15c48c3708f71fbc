/// The file-system seam: every byte the storage layer reads or writes goes
/// through this protocol.
///
/// Why a seam: durability bugs hide in the gap between "written" and
/// "fsynced". `POSIXFileSystem` is the real disk; `SimulatedFileSystem`
/// keeps synced and unsynced data apart so tests and the simulator can crash
/// a member and see exactly what a real machine could have kept, inject torn
/// writes and failed fsyncs, and flip bits.
///
/// Contract (both implementations):
/// 1. Written bytes (`append`, `write`) are visible to reads at once but
///    survive a crash only after `sync`/`syncData` of that file.
/// 2. A created, renamed or removed directory entry survives a crash only
///    after `syncDirectory` of the directory that holds it.
/// 3. After a `sync`/`syncData` that throws, the file's unsynced bytes are in
///    an unknown state: the caller must treat the file as broken (it may not
///    retry the fsync and assume success).
/// 4. Paths are plain `/`-separated strings; no operation follows `..`
///    specially.
public protocol FileSystem: AnyObject {
    /// Opens `path` for reading and appending.
    func open(_ path: String, mode: OpenMode) throws(FileSystemError) -> OpenFile
    /// Releases the handle; unsynced data stays unsynced.
    func close(_ file: OpenFile) throws(FileSystemError)
    /// Writes all of `bytes` at the end of the file.
    func append(_ file: OpenFile, _ bytes: [UInt8]) throws(FileSystemError)
    /// Writes all of `bytes` at `offset`, overwriting and, past the end,
    /// extending the file (pwrite).
    func write(_ file: OpenFile, at offset: Int, _ bytes: [UInt8]) throws(FileSystemError)
    /// Extends the file to at least `size` bytes that read as zeros, with
    /// the space allocated (posix_fallocate), so later writes inside it need
    /// no size change: an fdatasync after them has no metadata to persist.
    func preallocate(_ file: OpenFile, size: Int) throws(FileSystemError)
    /// Reads up to `count` bytes at `offset`; fewer only at the end of file.
    func read(_ file: OpenFile, at offset: Int, count: Int) throws(FileSystemError) -> [UInt8]
    /// The file's current size in bytes (synced or not).
    func size(_ file: OpenFile) throws(FileSystemError) -> Int
    /// Shortens the file to `size` bytes.
    func truncate(_ file: OpenFile, to size: Int) throws(FileSystemError)
    /// Makes the file's data and metadata durable (fsync).
    func sync(_ file: OpenFile) throws(FileSystemError)
    /// Makes the file's data durable, and the metadata needed to read it back
    /// such as its size (fdatasync). Enough after appends to an existing file.
    func syncData(_ file: OpenFile) throws(FileSystemError)
    /// Makes the directory's entries durable (fsync of the directory).
    func syncDirectory(_ path: String) throws(FileSystemError)
    /// Atomically replaces `destination` with `source`.
    func rename(_ source: String, to destination: String) throws(FileSystemError)
    /// Removes a file.
    func remove(_ path: String) throws(FileSystemError)
    /// Names (not paths) of the entries of a directory, sorted.
    func listDirectory(_ path: String) throws(FileSystemError) -> [String]
    /// Creates a directory if missing; returns whether it was created.
    func createDirectory(_ path: String) throws(FileSystemError) -> Bool
    /// Whether a file or directory exists at `path`.
    func exists(_ path: String) -> Bool
    /// Takes an exclusive advisory lock on an open file without waiting
    /// (flock LOCK_EX | LOCK_NB); it is released when the file is closed or
    /// the process dies. Fails with `.locked` when another holder has it.
    func lockExclusive(_ file: OpenFile) throws(FileSystemError)
}

/// How `FileSystem.open` treats an existing or missing file. Every mode opens
/// for reading and appending.
public enum OpenMode: Sendable, Equatable {
    /// The file must exist.
    case existing
    /// The file must not exist (O_CREAT | O_EXCL).
    case createNew
    /// Create the file, or empty it if it exists (O_CREAT | O_TRUNC).
    case createOrTruncate
    /// Create the file if missing, else open it as it is (O_CREAT).
    case createOrOpen
}

/// An open file of some `FileSystem`; only meaningful to the file system that
/// returned it.
public struct OpenFile: Hashable, Sendable {
    /// The descriptor (POSIX) or handle number (simulated).
    public let rawValue: Int32

    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }
}

/// A failed file-system operation: what was tried, on which path, and why.
public struct FileSystemError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The class of failure, which decides what the caller does.
    public enum Kind: Sendable, Equatable {
        case notFound
        case alreadyExists
        case noSpace
        case permissionDenied
        /// A bad handle or argument: a programming error in the caller.
        case invalidArgument
        /// The device reported an error (EIO), including failed fsyncs.
        case io
        /// Another process (or handle) holds the lock.
        case locked
        case other
    }

    public var kind: Kind
    /// The operation, e.g. `"fsync"`.
    public var operation: String
    public var path: String
    /// The errno value when the failure came from the kernel.
    public var errorNumber: Int32?
    /// Human-readable detail (strerror text, or the injected fault).
    public var detail: String

    public init(kind: Kind, operation: String, path: String, errorNumber: Int32? = nil, detail: String) {
        self.kind = kind
        self.operation = operation
        self.path = path
        self.errorNumber = errorNumber
        self.detail = detail
    }

    public var description: String {
        "\(operation) \(path): \(detail)"
    }
}

extension FileSystem {
    /// Closes a file where a close error carries no news: on an error path
    /// (it would only hide the first error) or after reading.
    func closeIgnoringErrors(_ file: OpenFile) {
        _ = try? close(file)
    }
}

/// Joins a directory and a file name.
func joinPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

/// The directory part of a path ("." for a bare name).
func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[path.startIndex..<slash])
}

/// The last component of a path.
func lastComponent(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return path }
    return String(path[path.index(after: slash)...])
}
