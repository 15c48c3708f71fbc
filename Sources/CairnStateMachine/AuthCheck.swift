import CairnCore
import CairnMVCC

/// Permission checks, pure functions of the store. The shell calls them
/// before serving or proposing a request, with the identity it took from the
/// request's token or client certificate.
///
/// Errors, as etcd gives them: auth on and no identity → `userEmpty`; an
/// identity from before the last auth change → `authOldRevision`; an unknown
/// user or a missing permission → `permissionDenied`. Auth off permits
/// everything; the root role permits everything.
extension AuthStore {
    /// etcd's `isOpPermitted`: whether `identity` may access `range`.
    ///
    /// A single key is permitted when one permission of the user's roles
    /// contains it; a range is permitted when the union of those
    /// permissions covers it without a gap (etcd's interval-tree
    /// `Contains`). Permissions from several roles combine.
    public func check(_ identity: AuthIdentity?, range: KeyRange, access: AuthAccess) throws(CairnError) {
        guard isEnabled else { return }
        let user = try knownUser(identity)
        if user.hasRootRole { return }
        let intervals = permittedIntervals(of: user, access: access)
        if !Self.covers(intervals, range) { throw .permissionDenied }
    }

    /// etcd's `IsAdminPermitted`: auth administration, maintenance and the
    /// lists of users and roles need the root role. The identity's revision
    /// is not checked here, as in etcd.
    public func checkAdmin(_ identity: AuthIdentity?) throws(CairnError) {
        guard isEnabled else { return }
        guard let identity, !identity.user.isEmpty else { throw .userEmpty }
        guard let user = users[identity.user] else { throw .userNotFound }
        if !user.hasRootRole { throw .permissionDenied }
    }

    /// UserGet: an admin, or the user asking about itself.
    public func checkUserGet(_ identity: AuthIdentity?, name: String) throws(CairnError) {
        do {
            try checkAdmin(identity)
        } catch {
            if identity?.user != name { throw error }
        }
    }

    /// RoleGet: an admin, or a user holding the role.
    public func checkRoleGet(_ identity: AuthIdentity?, role: String) throws(CairnError) {
        do {
            try checkAdmin(identity)
        } catch {
            guard let identity, user(identity.user, holds: role) else { throw error }
        }
    }

    /// etcd's Txn check: read on every compare's range, then every
    /// operation of both branches; nested transactions are checked the same
    /// way (etcd 3.4 skipped them; later releases check them, and so do we).
    /// A put that returns the previous value needs read too, as a plain Put.
    public func check(_ identity: AuthIdentity?, txn: TxnRequest) throws(CairnError) {
        guard isEnabled else { return }
        for compare in txn.compare {
            try check(identity, range: KeyRange(key: compare.key, rangeEnd: compare.rangeEnd), access: .read)
        }
        for operation in txn.success + txn.failure {
            switch operation {
            case .range(let range): try check(identity, range: range.range, access: .read)
            case .put(let put): try check(identity, put: put)
            case .deleteRange(let delete): try check(identity, deleteRange: delete)
            case .txn(let inner): try check(identity, txn: inner)
            }
        }
    }

    /// Put: write on the key, and read when the previous value is returned.
    public func check(_ identity: AuthIdentity?, put: PutRequest) throws(CairnError) {
        try check(identity, range: .single(put.key), access: .write)
        if put.previousKeyValue { try check(identity, range: .single(put.key), access: .read) }
    }

    /// DeleteRange: write on the range, and read when previous values are
    /// returned.
    public func check(_ identity: AuthIdentity?, deleteRange: DeleteRangeRequest) throws(CairnError) {
        try check(identity, range: deleteRange.range, access: .write)
        if deleteRange.previousKeyValues { try check(identity, range: deleteRange.range, access: .read) }
    }

    /// The identity's user, checked against the store's revision.
    private func knownUser(_ identity: AuthIdentity?) throws(CairnError) -> AuthUser {
        // etcd: no token gives an empty identity at revision 0.
        guard let identity, identity.revision != 0 else { throw .userEmpty }
        if identity.revision < revision { throw .authOldRevision }
        guard let user = users[identity.user] else { throw .permissionDenied }
        return user
    }

    /// The user's permissions allowing `access`, as half-open intervals.
    private func permittedIntervals(of user: AuthUser, access: AuthAccess) -> [PermissionInterval] {
        var intervals: [PermissionInterval] = []
        for roleName in user.roles {
            guard let role = roles[roleName] else { continue }
            // etcd compares interval bounds treating an empty key as past
            // every key, so a permission on the empty key matches nothing
            // (etcdctl sends "\0" for an empty key).
            for permission in role.permissions where permission.type.allows(access) && !permission.key.isEmpty
            {
                intervals.append(PermissionInterval(permission))
            }
        }
        return intervals
    }

    /// Whether `intervals` permit `range`: a single key must lie in one of
    /// them; a range must be covered by the contiguous union of those that
    /// overlap it.
    static func covers(_ intervals: [PermissionInterval], _ range: KeyRange) -> Bool {
        let wanted: PermissionInterval
        switch range {
        case .single(let key):
            return intervals.contains { $0.contains(key.bytes) }
        case .from(let start):
            wanted = PermissionInterval(begin: start.bytes, end: nil)
        case .interval(let start, let end):
            wanted = PermissionInterval(begin: start.bytes, end: end.bytes)
        }
        let overlapping = intervals.filter { $0.overlaps(wanted) }.sorted {
            $0.begin.lexicographicallyPrecedes($1.begin)
        }
        guard let first = overlapping.first else { return false }
        var reach = first.end
        for next in overlapping.dropFirst() {
            // A gap between the union so far and the next interval.
            if PermissionInterval.endPrecedes(reach, next.begin) { return false }
            if PermissionInterval.endPrecedesEnd(reach, next.end) { reach = next.end }
        }
        return !wanted.begin.lexicographicallyPrecedes(first.begin)
            && PermissionInterval.endCovers(reach, wanted.end)
    }
}

/// A half-open key interval [begin, end), `end` nil meaning past every key
/// (etcd's affine byte intervals). A single-key permission `k` is
/// [k, k + "\0"), the smallest interval holding only `k`.
struct PermissionInterval: Hashable, Sendable {
    var begin: [UInt8]
    var end: [UInt8]?

    init(begin: [UInt8], end: [UInt8]?) {
        self.begin = begin
        self.end = end
    }

    init(_ permission: AuthPermission) {
        switch KeyRange(key: permission.key, rangeEnd: permission.rangeEnd) {
        case .single(let key): self.init(begin: key.bytes, end: key.bytes + [0])
        case .from(let key): self.init(begin: key.bytes, end: nil)
        case .interval(let key, let end): self.init(begin: key.bytes, end: end.bytes)
        }
    }

    func contains(_ key: [UInt8]) -> Bool {
        !key.lexicographicallyPrecedes(begin) && Self.keyBeforeEnd(key, end)
    }

    /// etcd's interval intersection: begin < other.end and other.begin < end.
    func overlaps(_ other: PermissionInterval) -> Bool {
        Self.keyBeforeEnd(begin, other.end) && Self.keyBeforeEnd(other.begin, end)
    }

    /// `key` < `end`, with nil past everything.
    static func keyBeforeEnd(_ key: [UInt8], _ end: [UInt8]?) -> Bool {
        guard let end else { return true }
        return key.lexicographicallyPrecedes(end)
    }

    /// `end` < `key`: an end strictly before a key (nil is never before).
    static func endPrecedes(_ end: [UInt8]?, _ key: [UInt8]) -> Bool {
        guard let end else { return false }
        return end.lexicographicallyPrecedes(key)
    }

    /// `end` < `other`, both ends (nil past everything).
    static func endPrecedesEnd(_ end: [UInt8]?, _ other: [UInt8]?) -> Bool {
        guard let end else { return false }
        guard let other else { return true }
        return end.lexicographicallyPrecedes(other)
    }

    /// `reach` ≥ `wanted`, both ends.
    static func endCovers(_ reach: [UInt8]?, _ wanted: [UInt8]?) -> Bool {
        !endPrecedesEnd(reach, wanted)
    }
}
