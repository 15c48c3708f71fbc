import CairnCore
import CairnStateMachine
import CairnStorage

/// Progress of a long snapshot-file operation, for a terminal to show.
public enum SnapshotFileProgress: Sendable, Hashable {
    /// Reading (and hashing) the saved file.
    case reading(bytesDone: Int, bytesTotal: Int)
    /// Writing the restored member's snapshot file.
    case writing(bytesDone: Int, bytesTotal: Int)
}

/// Why a snapshot file cannot be read or restored, in words for the operator
/// (etcd's messages where etcd has one).
public struct SnapshotFileError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// What `snapshot status` shows, in `etcdctl snapshot status`'s four columns.
public struct SnapshotFileStatus: Sendable, Hashable {
    /// CRC-32C (Castagnoli, the polynomial etcd's status hash uses) of the
    /// replicated state inside the file: two files of the same state agree.
    public var hash: UInt32
    /// The store's current revision.
    public var revision: Int64
    /// Keys live at `revision` (etcd counts every entry of its database's
    /// buckets instead; Cairn has no buckets).
    public var totalKeys: Int
    /// The state's approximate size: the figure `etcdctl endpoint status`
    /// shows as DB SIZE and `--quota-backend-bytes` is checked against.
    public var totalSize: Int
    /// Leases the snapshot holds.
    public var leases: Int
}

/// A file written by `etcdctl snapshot save` from a Cairn member, read and
/// verified whole.
///
/// Layout (see `SnapshotSender`): the state machine's snapshot, zero
/// padding, its length as 8 bytes little-endian ending on a 512-byte
/// boundary, then the SHA-256 of everything before it. etcd detects the
/// digest by the size (`size % 512 == 32`) and checks it on restore unless
/// `--skip-hash-check`; the state inside carries its own CRC-32C, checked
/// always, so a damaged file is refused either way.
///
/// Invariants:
/// 1. `stateMachine` decoded from bytes whose CRC-32C matched.
/// 2. `digestVerified` is true only when the SHA-256 trailer was present
///    and matched.
public struct SavedSnapshot: Sendable {
    /// The digest's size: etcd's `sha256.Size`.
    static let digestBytes = 32
    /// etcd's alignment of the stream before the digest.
    static let blockBytes = 512
    /// Bytes read (and hashed) per step, so progress moves on large files.
    static let readChunkBytes = 4 << 20

    public let path: String
    public let fileBytes: Int
    public let digestVerified: Bool
    public let status: SnapshotFileStatus
    let stateMachine: StateMachine

    /// Reads and verifies `path`. Throws a `SnapshotFileError` saying what is
    /// wrong: missing or mismatched digest, a bad length field, or damaged
    /// state.
    public static func read(
        path: String, skipHashCheck: Bool = false, progress: (SnapshotFileProgress) -> Void = { _ in }
    ) throws(SnapshotFileError) -> SavedSnapshot {
        let (bytes, computed) = try Self.readFile(path, checkingDigest: !skipHashCheck, progress: progress)
        let hasDigest = Self.hasDigest(bytes.count)
        let bodyEnd = hasDigest ? bytes.count - digestBytes : bytes.count
        var verified = false
        if let computed {
            let stored = Array(bytes[bodyEnd...])
            guard computed == stored else {
                throw SnapshotFileError(
                    "expected sha256 \(hexadecimal(stored)), got \(hexadecimal(computed)): \(path) is damaged (changed or cut short since it was saved)"
                )
            }
            verified = true
        }
        let state = try Self.state(in: bytes[..<bodyEnd], path: path)
        var machine = StateMachine()
        do throws(DecodeError) {
            try machine.restore(state, now: MonotonicInstant(milliseconds: 0))
        } catch {
            throw SnapshotFileError("the state in \(path) is damaged: \(Self.describe(error))")
        }
        var checksum: UInt32 = 0
        for offset in 0..<4 { checksum |= UInt32(state[state.count - 4 + offset]) << (8 * offset) }
        let figures = machine.status
        return SavedSnapshot(
            path: path, fileBytes: bytes.count, digestVerified: verified,
            status: SnapshotFileStatus(
                hash: checksum, revision: figures.revision, totalKeys: figures.keyCount,
                totalSize: figures.approximateSizeBytes, leases: figures.leaseCount),
            stateMachine: machine)
    }

    /// The state machine's bytes inside the padded body, by its length field.
    private static func state(in body: ArraySlice<UInt8>, path: String) throws(SnapshotFileError) -> [UInt8] {
        guard body.count >= blockBytes, body.count % blockBytes == 0 else {
            throw SnapshotFileError(
                "\(path): \(body.count) bytes before the digest, not a whole number of 512-byte blocks: not a snapshot saved from a Cairn member"
            )
        }
        guard body.starts(with: Array("CRNS".utf8)) else {
            throw SnapshotFileError(
                "\(path) does not hold a Cairn state snapshot (an etcd bbolt snapshot needs etcd's own tools)"
            )
        }
        var length: UInt64 = 0
        for offset in 0..<8 { length |= UInt64(body[body.endIndex - 8 + offset]) << (8 * UInt64(offset)) }
        let room = body.count - 8
        guard length >= 8, length <= UInt64(room), UInt64(room) - length < UInt64(blockBytes) else {
            throw SnapshotFileError(
                "\(path): the length field says \(length) bytes of state, which does not fit the file's \(room) bytes before it: damaged, or not a snapshot saved from a Cairn member"
            )
        }
        let state = Array(body.prefix(Int(length)))
        guard body[(body.startIndex + Int(length))..<(body.endIndex - 8)].allSatisfy({ $0 == 0 }) else {
            throw SnapshotFileError("\(path): the padding after the state is not zero: the file is damaged")
        }
        return state
    }

    /// etcd's test for a digest trailer (`hasChecksum`): 32 bytes past a
    /// multiple of 512.
    static func hasDigest(_ fileBytes: Int) -> Bool {
        fileBytes % blockBytes == digestBytes && fileBytes > digestBytes
    }

    /// The file's bytes and, when `checkingDigest`, the SHA-256 of all but
    /// its last 32 bytes, hashed as it is read so progress tracks the work.
    /// Without a digest trailer to check, refuses before reading (etcd's
    /// message).
    private static func readFile(
        _ path: String, checkingDigest: Bool, progress: (SnapshotFileProgress) -> Void
    ) throws(SnapshotFileError) -> (bytes: [UInt8], digest: [UInt8]?) {
        let fileSystem = POSIXFileSystem()
        do {
            let file = try fileSystem.open(path, mode: .existing)
            defer { try? fileSystem.close(file) }
            let size = try fileSystem.size(file)
            if checkingDigest && !Self.hasDigest(size) {
                throw SnapshotFileError(
                    "snapshot missing hash but --skip-hash-check=false: \(path) is \(size) bytes, not 32 bytes past a multiple of 512 as `etcdctl snapshot save` writes it (cut short, or not a saved snapshot)"
                )
            }
            var hasher = checkingDigest ? SHA256() : nil
            var bytes: [UInt8] = []
            bytes.reserveCapacity(size)
            while bytes.count < size {
                let chunk = try fileSystem.read(
                    file, at: bytes.count, count: min(readChunkBytes, size - bytes.count))
                guard !chunk.isEmpty else { break }
                let hashedEnd = min(chunk.count, size - digestBytes - bytes.count)
                if hashedEnd > 0 { hasher?.update(chunk[..<hashedEnd]) }
                bytes += chunk
                progress(.reading(bytesDone: bytes.count, bytesTotal: size))
            }
            guard bytes.count == size else {
                throw SnapshotFileError("\(path) shrank while it was read (\(bytes.count) of \(size) bytes)")
            }
            return (bytes, hasher?.finalize())
        } catch let error as SnapshotFileError {
            throw error
        } catch {
            throw SnapshotFileError("cannot read \(path): \(error)")
        }
    }

    static func describe(_ error: DecodeError) -> String {
        switch error {
        case .checksumMismatch: "its CRC-32C does not match its content"
        case .truncated: "it ends inside a value (cut short)"
        case .unsupportedVersion(let version):
            "format version \(version) is not one this build reads (saved by a newer Cairn?)"
        case .unknownTag(let tag): "unknown tag \(tag)"
        case .malformed(let detail): "malformed: \(detail)"
        case .trailingBytes(let count): "\(count) unexpected bytes after it"
        }
    }
}

/// Lowercase hex of `bytes`, as `sha256sum` prints a digest.
func hexadecimal(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var text = ""
    text.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return text
}
