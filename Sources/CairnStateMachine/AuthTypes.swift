import CairnCore

/// What a permission allows, with etcd's numbering (`authpb.Permission.Type`).
public enum AuthPermissionType: Int, Hashable, Sendable, CaseIterable {
    case read = 0
    case write = 1
    case readWrite = 2

    /// Whether this permission allows `access`.
    public func allows(_ access: AuthAccess) -> Bool {
        switch (self, access) {
        case (.readWrite, _), (.read, .read), (.write, .write): true
        case (.read, .write), (.write, .read): false
        }
    }
}

/// The kind of access a request needs on a key range.
public enum AuthAccess: Hashable, Sendable {
    case read
    case write
}

/// A role's permission on a key range, as etcd stores it: the raw
/// (key, range_end) pair, so Get, Revoke and snapshots give back exactly what
/// was granted. `range_end` follows etcd's rules (`KeyRange`): empty = the
/// key alone, `"\0"` = every key from `key` on, otherwise [key, range_end).
public struct AuthPermission: Hashable, Sendable {
    public var type: AuthPermissionType
    public var key: Key
    public var rangeEnd: Key

    public init(type: AuthPermissionType, key: Key, rangeEnd: Key = Key([])) {
        self.type = type
        self.key = key
        self.rangeEnd = rangeEnd
    }
}

/// A user of the auth store.
///
/// Properties:
/// 1. `roles` is sorted by UTF-8 bytes and holds no duplicates (etcd keeps
///    them sorted and answers UserGet in that order).
public struct AuthUser: Hashable, Sendable {
    public var name: String
    /// The password's hash as the proposing member computed it (KDF, salt
    /// and cost included); opaque here, so every member stores the same
    /// bytes and no member re-hashes inside the apply loop. Empty for a
    /// `noPassword` user.
    public var passwordHash: [UInt8]
    public var roles: [String]
    /// etcd's `UserAddOptions.no_password`: the user cannot authenticate
    /// with a password (only with a client certificate's CN).
    public var noPassword: Bool

    public init(name: String, passwordHash: [UInt8], roles: [String] = [], noPassword: Bool = false) {
        self.name = name
        self.passwordHash = passwordHash
        self.roles = roles
        self.noPassword = noPassword
    }

    /// Whether the user holds the `root` role, which permits everything.
    public var hasRootRole: Bool { roles.contains(AuthStore.rootRole) }
}

/// A role: a named list of key-range permissions.
///
/// Properties:
/// 1. `permissions` is sorted by key bytes, and no two share both key and
///    range end (granting again updates the type, as in etcd).
public struct AuthRole: Hashable, Sendable {
    public var name: String
    public var permissions: [AuthPermission]

    public init(name: String, permissions: [AuthPermission] = []) {
        self.name = name
        self.permissions = permissions
    }
}

/// Who a request comes from, as the shell established it: the user named by
/// a valid token (with the auth revision the token was issued at) or by a
/// client certificate's CN (at the current revision).
public struct AuthIdentity: Hashable, Sendable {
    public var user: String
    /// The auth store's revision when the identity was established; a
    /// request made with an older one fails with `authOldRevision`, so a
    /// token outlives no change to users, roles or permissions.
    public var revision: UInt64

    public init(user: String, revision: UInt64) {
        self.user = user
        self.revision = revision
    }
}

/// A replicated change to the auth store (etcd's `AuthEnable`, `UserAdd`,
/// ... requests). Passwords never appear here: the proposing member hashes
/// them first, so the log and snapshots hold only hashes.
public enum AuthOperation: Hashable, Sendable {
    case enable
    case disable
    case userAdd(name: String, passwordHash: [UInt8], noPassword: Bool)
    case userDelete(name: String)
    case userChangePassword(name: String, passwordHash: [UInt8])
    case userGrantRole(user: String, role: String)
    case userRevokeRole(user: String, role: String)
    case roleAdd(name: String)
    case roleDelete(name: String)
    case roleGrantPermission(role: String, permission: AuthPermission)
    case roleRevokePermission(role: String, key: Key, rangeEnd: Key)
    /// A login (etcd's `InternalAuthenticateRequest`): the proposing member
    /// checked the password against the store at auth revision
    /// `checkedRevision` and chose `token`; every member that applies it
    /// maps the token to `user` (`ApplyResult.Effect.tokenAssigned`), so a
    /// token from one member works on all. The password is never logged.
    case authenticate(user: String, token: String, checkedRevision: UInt64)
}

/// The answer to AuthStatus.
public struct AuthStatus: Hashable, Sendable {
    public var enabled: Bool
    public var revision: UInt64

    public init(enabled: Bool, revision: UInt64) {
        self.enabled = enabled
        self.revision = revision
    }
}

extension String {
    /// etcd orders names by their bytes (Go's `sort.Strings`); Swift's `<`
    /// on strings uses Unicode ordering, which differs for some inputs.
    func utf8Precedes(_ other: String) -> Bool {
        self.utf8.lexicographicallyPrecedes(other.utf8)
    }
}
