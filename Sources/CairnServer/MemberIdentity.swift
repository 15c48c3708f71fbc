import CairnCore
import CairnStorage

/// The member's and its cluster's IDs, derived (as etcd derives them) when
/// the data directory is created and read back on every restart, so
/// clients and peers see the same IDs across restarts.
///
/// File: `<data-dir>/member/identity`, two lines `member <hex>` and
/// `cluster <hex>`, written to a temporary file, fsynced and renamed into
/// place, so it is either whole or absent.
struct MemberIdentity: Hashable, Sendable {
    var member: MemberID
    var cluster: ClusterID

    static let fileName = "identity"

    /// Reads the identity in `directory`; nil when there is none (a new
    /// data directory).
    static func load(directory: String, fileSystem: any FileSystem) throws -> MemberIdentity? {
        let path = directory + "/" + fileName
        guard fileSystem.exists(path) else { return nil }
        let file = try fileSystem.open(path, mode: .existing)
        defer { try? fileSystem.close(file) }
        let text = String(
            decoding: try fileSystem.read(file, at: 0, count: try fileSystem.size(file)), as: UTF8.self)
        guard let identity = parse(text) else {
            throw MemberError.corruptIdentity(path: path)
        }
        return identity
    }

    /// Writes `identity` durably: a temporary file, fsync, rename, directory fsync.
    static func create(_ identity: MemberIdentity, directory: String, fileSystem: any FileSystem) throws {
        let path = directory + "/" + fileName
        let temporary = path + ".tmp"
        let file = try fileSystem.open(temporary, mode: .createOrTruncate)
        try fileSystem.append(file, Array(identity.encoded.utf8))
        try fileSystem.sync(file)
        try fileSystem.close(file)
        try fileSystem.rename(temporary, to: path)
        try fileSystem.syncDirectory(directory)
    }

    var encoded: String {
        "member \(String(member.rawValue, radix: 16))\ncluster \(String(cluster.rawValue, radix: 16))\n"
    }

    static func parse(_ text: String) -> MemberIdentity? {
        var member: UInt64?
        var cluster: UInt64?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let value = UInt64(fields[1], radix: 16) else { return nil }
            switch fields[0] {
            case "member": member = value
            case "cluster": cluster = value
            default: return nil
            }
        }
        guard let member, let cluster else { return nil }
        return MemberIdentity(member: MemberID(member), cluster: ClusterID(cluster))
    }
}

/// Failures of the member shell itself (not etcd request errors).
public enum MemberError: Error, Sendable, CustomStringConvertible {
    /// The identity file exists but cannot be read as one.
    case corruptIdentity(path: String)
    /// The WAL or snapshot store failed; the member refuses further writes,
    /// since after a failed fsync nothing more can be promised durable.
    case storageFailed(String)
    /// The data directory's snapshot could not be restored.
    case snapshotUnusable(String)
    /// `requestBytesMax` above what one WAL record can hold.
    case requestBytesMaxTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .corruptIdentity(let path): "identity file \(path) is damaged"
        case .storageFailed(let cause): "storage failed: \(cause)"
        case .snapshotUnusable(let cause): "snapshot cannot be restored: \(cause)"
        case .requestBytesMaxTooLarge(let limit): "--max-request-bytes must be at most \(limit)"
        }
    }
}
