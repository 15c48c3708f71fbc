/// A point in the store's history: `main` counts committed writes (one per Put,
/// DeleteRange that deleted something, or Txn that changed something) and `sub`
/// orders the changes made inside that one write.
///
/// Properties:
/// 1. Revisions are totally ordered by `main`, then `sub`.
/// 2. Every change made by one write shares `main`; `sub` starts at 0 and
///    increases by one per change, so events of one revision are atomic.
/// 3. The store starts at main revision 1 with no keys, like etcd, so the
///    first change of an empty store has main revision 2.
public struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The write this change belongs to.
    public var main: Int64
    /// The position of this change inside its write.
    public var sub: Int64

    public init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    public static func < (lhs: Revision, rhs: Revision) -> Bool {
        lhs.main != rhs.main ? lhs.main < rhs.main : lhs.sub < rhs.sub
    }

    public var description: String { "\(main).\(sub)" }
}

/// A lease identifier as etcd encodes it; 0 means "no lease".
public struct LeaseID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64

    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    /// The absence of a lease (etcd's `NoLease`).
    public static let none = LeaseID(0)

    public static func < (lhs: LeaseID, rhs: LeaseID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue, radix: 16) }
}

/// A member of a cluster, as etcd's 64-bit member ID.
public struct MemberID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: MemberID, rhs: MemberID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue, radix: 16) }
}

/// A cluster, as etcd's 64-bit cluster ID.
public struct ClusterID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static func < (lhs: ClusterID, rhs: ClusterID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue, radix: 16) }
}

/// A watch, unique within one watch stream (etcd numbers watches per stream).
/// `-1` is etcd's `InvalidWatchID`, used for stream-wide progress responses.
public struct WatchID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64

    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    /// The ID etcd puts on a progress response that answers RequestProgress for
    /// the whole stream rather than for one watcher.
    public static let streamWide = WatchID(-1)

    public static func < (lhs: WatchID, rhs: WatchID) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { String(rawValue) }
}
