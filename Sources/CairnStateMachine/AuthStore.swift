import CairnCore

/// etcd's auth store as replicated state: whether auth is on, the auth
/// revision, users and roles. Every member applies the same `AuthOperation`s
/// in log order and so holds the same store; the shell reads it to check
/// requests (`AuthStore+Check.swift`).
///
/// etcd's rules, kept here:
/// - `enable` needs a user `root` holding the role `root` (the role need not
///   exist as a stored role: granting `root` is always allowed).
/// - While enabled, the user `root` cannot be deleted, the role `root`
///   cannot be deleted, and `root` cannot lose the `root` role
///   (`invalidAuthManagement`).
/// - Deleting a role revokes it from every user.
///
/// Properties:
/// 1. `revision` only grows; it grows by one on every operation that
///    changes users, roles, permissions or disables auth (etcd's
///    `commitRevision`), and on nothing else: enabling keeps it, as in etcd.
/// 2. While `isEnabled`, the user `root` exists and holds the role `root`.
/// 3. User and role counts, permissions per role and roles per user stay
///    within `limits`; beyond them an operation fails with `noSpace` and
///    changes nothing.
/// 4. A failed operation changes nothing (not even `revision`).
public struct AuthStore: Hashable, Sendable {
    /// The bounds of the store; etcd has none, so they are generous and an
    /// operation beyond them fails like a full backend does (`noSpace`).
    public struct Limits: Hashable, Sendable {
        public var usersMax: Int
        public var rolesMax: Int
        public var permissionsPerRoleMax: Int
        public var rolesPerUserMax: Int
        /// Longest user or role name, in UTF-8 bytes.
        public var nameBytesMax: Int
        /// Longest stored password hash, in bytes.
        public var passwordHashBytesMax: Int

        public init(
            usersMax: Int = 10_000, rolesMax: Int = 10_000, permissionsPerRoleMax: Int = 10_000,
            rolesPerUserMax: Int = 1_000, nameBytesMax: Int = 1_024, passwordHashBytesMax: Int = 1_024
        ) {
            self.usersMax = usersMax
            self.rolesMax = rolesMax
            self.permissionsPerRoleMax = permissionsPerRoleMax
            self.rolesPerUserMax = rolesPerUserMax
            self.nameBytesMax = nameBytesMax
            self.passwordHashBytesMax = passwordHashBytesMax
        }
    }

    /// The one user that must exist, with the root role, before enabling.
    public static let rootUser = "root"
    /// The role that permits everything, administration included.
    public static let rootRole = "root"

    public let limits: Limits
    public internal(set) var isEnabled = false
    public internal(set) var revision: UInt64 = 0
    var users: [String: AuthUser] = [:]
    var roles: [String: AuthRole] = [:]

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Applies one replicated operation; on error nothing changed
    /// (property 4). Returns the auth revision afterwards.
    @discardableResult
    public mutating func apply(_ operation: AuthOperation) throws(CairnError) -> UInt64 {
        switch operation {
        case .enable: try enable()
        case .disable: disable()
        case .userAdd(let name, let passwordHash, let noPassword):
            try addUser(name: name, passwordHash: passwordHash, noPassword: noPassword)
        case .userDelete(let name): try deleteUser(name)
        case .userChangePassword(let name, let passwordHash):
            try changePassword(name: name, passwordHash: passwordHash)
        case .userGrantRole(let user, let role): try grantRole(user: user, role: role)
        case .userRevokeRole(let user, let role): try revokeRole(user: user, role: role)
        case .roleAdd(let name): try addRole(name)
        case .roleDelete(let name): try deleteRole(name)
        case .roleGrantPermission(let role, let permission):
            try grantPermission(role: role, permission: permission)
        case .roleRevokePermission(let role, let key, let rangeEnd):
            try revokePermission(role: role, key: key, rangeEnd: rangeEnd)
        case .authenticate(let user, let token, let checkedRevision):
            try checkLogin(user: user, token: token, checkedRevision: checkedRevision)
        }
        return revision
    }

    /// Longest simple token accepted in an `authenticate` operation, in bytes.
    public static let tokenBytesMax = 256

    // MARK: logins

    /// etcd's apply of Authenticate: the login stands only if auth is
    /// still on, the user still exists with a password, and nothing changed
    /// since the proposer checked the password (else `authOldRevision`, and
    /// the proposer checks again, as etcd retries). Changes nothing.
    private func checkLogin(user name: String, token: String, checkedRevision: UInt64) throws(CairnError) {
        guard isEnabled else { throw .authNotEnabled }
        guard let user = users[name], !user.noPassword else { throw .authFailed }
        guard !token.isEmpty, token.utf8.count <= Self.tokenBytesMax else { throw .invalidAuthToken }
        guard checkedRevision == revision else { throw .authOldRevision }
    }

    // MARK: enable and disable

    /// etcd's AuthEnable: a no-op when already on; needs root with the root
    /// role; does not move the revision.
    private mutating func enable() throws(CairnError) {
        if isEnabled { return }
        guard let root = users[Self.rootUser] else { throw .rootUserNotExist }
        guard root.hasRootRole else { throw .rootRoleNotExist }
        isEnabled = true
    }

    /// etcd's AuthDisable: a no-op when already off; otherwise a new
    /// revision, so every token issued before is refused afterwards.
    private mutating func disable() {
        guard isEnabled else { return }
        isEnabled = false
        revision += 1
    }

    // MARK: users

    private mutating func addUser(name: String, passwordHash: [UInt8], noPassword: Bool) throws(CairnError) {
        if name.isEmpty { throw .userEmpty }
        if users[name] != nil { throw .userAlreadyExists }
        guard users.count < limits.usersMax, name.utf8.count <= limits.nameBytesMax,
            passwordHash.count <= limits.passwordHashBytesMax
        else { throw .noSpace }
        users[name] = AuthUser(
            name: name, passwordHash: noPassword ? [] : passwordHash, noPassword: noPassword)
        revision += 1
    }

    private mutating func deleteUser(_ name: String) throws(CairnError) {
        if isEnabled && name == Self.rootUser { throw .invalidAuthManagement }
        guard users.removeValue(forKey: name) != nil else { throw .userNotFound }
        revision += 1
    }

    /// etcd keeps a no-password user's option when its password changes, so
    /// the new hash is stored but still cannot be used to authenticate.
    private mutating func changePassword(name: String, passwordHash: [UInt8]) throws(CairnError) {
        guard users[name] != nil else { throw .userNotFound }
        guard passwordHash.count <= limits.passwordHashBytesMax else { throw .noSpace }
        users[name]!.passwordHash = passwordHash
        revision += 1
    }

    /// Granting a role the user holds already succeeds and changes nothing,
    /// not even the revision (etcd ignores it).
    private mutating func grantRole(user name: String, role: String) throws(CairnError) {
        guard var user = users[name] else { throw .userNotFound }
        if role != Self.rootRole && roles[role] == nil { throw .roleNotFound }
        if user.roles.contains(role) { return }
        guard user.roles.count < limits.rolesPerUserMax else { throw .noSpace }
        user.roles.append(role)
        user.roles.sort { $0.utf8Precedes($1) }
        users[name] = user
        revision += 1
    }

    private mutating func revokeRole(user name: String, role: String) throws(CairnError) {
        if isEnabled && name == Self.rootUser && role == Self.rootRole { throw .invalidAuthManagement }
        guard var user = users[name] else { throw .userNotFound }
        guard let position = user.roles.firstIndex(of: role) else { throw .roleNotGranted }
        user.roles.remove(at: position)
        users[name] = user
        revision += 1
    }

    // MARK: roles

    private mutating func addRole(_ name: String) throws(CairnError) {
        if name.isEmpty { throw .roleEmpty }
        if roles[name] != nil { throw .roleAlreadyExists }
        guard roles.count < limits.rolesMax, name.utf8.count <= limits.nameBytesMax else { throw .noSpace }
        roles[name] = AuthRole(name: name)
        revision += 1
    }

    /// Deleting a role also revokes it from every user holding it.
    private mutating func deleteRole(_ name: String) throws(CairnError) {
        if isEnabled && name == Self.rootRole { throw .invalidAuthManagement }
        guard roles.removeValue(forKey: name) != nil else { throw .roleNotFound }
        for (userName, user) in users where user.roles.contains(name) {
            users[userName]!.roles.removeAll { $0 == name }
        }
        revision += 1
    }

    /// A permission with the same key and range end as an existing one
    /// replaces its type; otherwise it is inserted in key order.
    private mutating func grantPermission(role name: String, permission: AuthPermission) throws(CairnError) {
        guard var role = roles[name] else { throw .roleNotFound }
        if let existing = role.permissions.firstIndex(where: {
            $0.key == permission.key && $0.rangeEnd == permission.rangeEnd
        }) {
            role.permissions[existing].type = permission.type
        } else {
            guard role.permissions.count < limits.permissionsPerRoleMax else { throw .noSpace }
            let position = role.permissions.firstIndex { permission.key < $0.key } ?? role.permissions.count
            role.permissions.insert(permission, at: position)
        }
        roles[name] = role
        revision += 1
    }

    /// Removes every permission with exactly this key and range end.
    private mutating func revokePermission(role name: String, key: Key, rangeEnd: Key) throws(CairnError) {
        guard var role = roles[name] else { throw .roleNotFound }
        let before = role.permissions.count
        role.permissions.removeAll { $0.key == key && $0.rangeEnd == rangeEnd }
        if role.permissions.count == before { throw .permissionNotGranted }
        roles[name] = role
        revision += 1
    }

    // MARK: queries (served from local state, not replicated)

    public var status: AuthStatus { AuthStatus(enabled: isEnabled, revision: revision) }

    /// A user, or `userNotFound`.
    public func user(_ name: String) throws(CairnError) -> AuthUser {
        guard let user = users[name] else { throw .userNotFound }
        return user
    }

    /// A role, or `roleNotFound`. The root role is found only when it was
    /// added as a role, as in etcd.
    public func role(_ name: String) throws(CairnError) -> AuthRole {
        guard let role = roles[name] else { throw .roleNotFound }
        return role
    }

    /// Every user name, in byte order (etcd's UserList).
    public var userNames: [String] { users.keys.sorted { $0.utf8Precedes($1) } }

    /// Every role name, in byte order (etcd's RoleList).
    public var roleNames: [String] { roles.keys.sorted { $0.utf8Precedes($1) } }

    /// Whether `user` exists and holds `role` (RoleGet by a non-admin).
    public func user(_ name: String, holds role: String) -> Bool {
        users[name]?.roles.contains(role) ?? false
    }
}
