import Glibc

/// The real file system through POSIX calls.
///
/// Why these choices: every descriptor is opened with `O_CLOEXEC` so a child
/// process never inherits WAL descriptors; files are opened `O_APPEND` so the
/// only write is an append (the WAL's and snapshot's only access pattern);
/// writes loop over `EINTR` and short writes because `write(2)` may return
/// early; `EINTR` is retried on fsync too, but any other fsync failure is
/// reported and never retried (contract 3 of `FileSystem`: after a failed
/// fsync the kernel may already have dropped the dirty pages).
public final class POSIXFileSystem: FileSystem, Sendable {
    public init() {}

    public func open(_ path: String, mode: OpenMode) throws(FileSystemError) -> OpenFile {
        // No O_APPEND: Linux ignores pwrite's offset on O_APPEND files, and
        // the WAL writes at offsets inside preallocated segments.
        var flags = O_RDWR | O_CLOEXEC
        switch mode {
        case .existing: break
        case .createNew: flags |= O_CREAT | O_EXCL
        case .createOrTruncate: flags |= O_CREAT | O_TRUNC
        case .createOrOpen: flags |= O_CREAT
        }
        let descriptor = try retryingInterrupts(operation: "open", path: path) {
            path.withCString { Glibc.open($0, flags, mode_t(0o644)) }
        }
        return OpenFile(rawValue: descriptor)
    }

    public func close(_ file: OpenFile) throws(FileSystemError) {
        // close(2) must not be retried on EINTR on Linux: the descriptor is
        // already released.
        if Glibc.close(file.rawValue) != 0 {
            throw posixError("close", path: "fd \(file.rawValue)")
        }
    }

    public func append(_ file: OpenFile, _ bytes: [UInt8]) throws(FileSystemError) {
        try write(file, at: try size(file), bytes)
    }

    public func write(_ file: OpenFile, at offset: Int, _ bytes: [UInt8]) throws(FileSystemError) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                pwrite(
                    file.rawValue, buffer.baseAddress! + written, buffer.count - written,
                    off_t(offset + written))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw posixError("pwrite", path: "fd \(file.rawValue)")
            }
            written += result
        }
    }

    public func preallocate(_ file: OpenFile, size: Int) throws(FileSystemError) {
        // posix_fallocate returns the error number instead of setting errno.
        let result = posix_fallocate(file.rawValue, 0, off_t(size))
        if result != 0 {
            errno = result
            throw posixError("posix_fallocate", path: "fd \(file.rawValue)")
        }
    }

    public func read(_ file: OpenFile, at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] {
        guard count > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let result = buffer.withUnsafeMutableBytes { raw in
                pread(file.rawValue, raw.baseAddress! + filled, count - filled, off_t(offset + filled))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw posixError("pread", path: "fd \(file.rawValue)")
            }
            if result == 0 { break }
            filled += result
        }
        buffer.removeLast(count - filled)
        return buffer
    }

    public func size(_ file: OpenFile) throws(FileSystemError) -> Int {
        var status = stat()
        if fstat(file.rawValue, &status) != 0 {
            throw posixError("fstat", path: "fd \(file.rawValue)")
        }
        return Int(status.st_size)
    }

    public func truncate(_ file: OpenFile, to size: Int) throws(FileSystemError) {
        _ = try retryingInterrupts(operation: "ftruncate", path: "fd \(file.rawValue)") {
            ftruncate(file.rawValue, off_t(size))
        }
    }

    public func sync(_ file: OpenFile) throws(FileSystemError) {
        _ = try retryingInterrupts(operation: "fsync", path: "fd \(file.rawValue)") {
            fsync(file.rawValue)
        }
    }

    public func syncData(_ file: OpenFile) throws(FileSystemError) {
        _ = try retryingInterrupts(operation: "fdatasync", path: "fd \(file.rawValue)") {
            fdatasync(file.rawValue)
        }
    }

    public func syncDirectory(_ path: String) throws(FileSystemError) {
        let descriptor = try retryingInterrupts(operation: "open directory", path: path) {
            path.withCString { Glibc.open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        }
        defer { _ = Glibc.close(descriptor) }
        _ = try retryingInterrupts(operation: "fsync directory", path: path) { fsync(descriptor) }
    }

    public func rename(_ source: String, to destination: String) throws(FileSystemError) {
        let result = source.withCString { from in destination.withCString { to in Glibc.rename(from, to) } }
        if result != 0 { throw posixError("rename to \(destination)", path: source) }
    }

    public func remove(_ path: String) throws(FileSystemError) {
        if path.withCString({ unlink($0) }) != 0 { throw posixError("unlink", path: path) }
    }

    public func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        guard let directory = path.withCString({ opendir($0) }) else {
            throw posixError("opendir", path: path)
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                String(cString: UnsafeRawPointer(tuple).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func createDirectory(_ path: String) throws(FileSystemError) -> Bool {
        if path.withCString({ mkdir($0, mode_t(0o755)) }) == 0 { return true }
        let error = posixError("mkdir", path: path)
        if error.kind == .alreadyExists, isDirectory(path) { return false }
        throw error
    }

    public func lockExclusive(_ file: OpenFile) throws(FileSystemError) {
        _ = try retryingInterrupts(operation: "flock", path: "fd \(file.rawValue)") {
            flock(file.rawValue, LOCK_EX | LOCK_NB)
        }
    }

    public func exists(_ path: String) -> Bool {
        var status = stat()
        return path.withCString { stat($0, &status) } == 0
    }

    private func isDirectory(_ path: String) -> Bool {
        var status = stat()
        guard path.withCString({ stat($0, &status) }) == 0 else { return false }
        return (status.st_mode & S_IFMT) == S_IFDIR
    }

    /// Runs a call that returns -1 and sets errno on failure, retrying EINTR.
    private func retryingInterrupts(
        operation: String, path: String, _ call: () -> Int32
    ) throws(FileSystemError) -> Int32 {
        while true {
            let result = call()
            if result >= 0 { return result }
            if errno != EINTR { throw posixError(operation, path: path) }
        }
    }

    /// Builds an error from the current errno.
    private func posixError(_ operation: String, path: String) -> FileSystemError {
        let number = errno
        let kind: FileSystemError.Kind
        switch number {
        case ENOENT: kind = .notFound
        case EEXIST: kind = .alreadyExists
        case ENOSPC, EDQUOT: kind = .noSpace
        case EACCES, EPERM: kind = .permissionDenied
        case EBADF, EINVAL, ENOTDIR, EISDIR: kind = .invalidArgument
        case EIO: kind = .io
        case EWOULDBLOCK: kind = .locked
        default: kind = .other
        }
        let text = strerror(number).map { String(cString: $0) } ?? "errno \(number)"
        return FileSystemError(
            kind: kind, operation: operation, path: path, errorNumber: number, detail: text)
    }
}
