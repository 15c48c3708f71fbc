import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

/// The auth store's operations and etcd's rules for them (etcd 3.4
/// `auth/store.go`): errors, revisions, the root user and role.
@Suite struct AuthStoreTests {
    /// A store with root (holding root) and a role `reader`; not enabled.
    static func rootReady() throws -> AuthStore {
        var store = AuthStore()
        try store.apply(.userAdd(name: "root", passwordHash: [1, 2, 3], noPassword: false))
        try store.apply(.userGrantRole(user: "root", role: "root"))
        try store.apply(.roleAdd(name: "reader"))
        return store
    }

    /// The CairnError `body` throws, or nil when it succeeds.
    static func failure(_ body: () throws -> Void) -> CairnError? {
        do {
            try body()
            return nil
        } catch let error as CairnError {
            return error
        } catch {
            Issue.record("not a CairnError: \(error)")
            return nil
        }
    }

    @Test func enableNeedsRootUserWithRootRole() throws {
        var store = AuthStore()
        #expect(Self.failure { try store.apply(.enable) } == .rootUserNotExist)
        #expect(CairnError.rootUserNotExist.message == "etcdserver: root user does not exist")
        try store.apply(.userAdd(name: "root", passwordHash: [9], noPassword: false))
        #expect(Self.failure { try store.apply(.enable) } == .rootRoleNotExist)
        #expect(CairnError.rootRoleNotExist.message == "etcdserver: root user does not have root role")
        #expect(CairnError.rootRoleNotExist.code == .failedPrecondition)
        // The root role need not exist as a stored role to be granted.
        try store.apply(.userGrantRole(user: "root", role: "root"))
        let before = store.revision
        try store.apply(.enable)
        #expect(store.isEnabled)
        // Enabling keeps the revision; enabling again is a no-op.
        #expect(store.revision == before)
        try store.apply(.enable)
        #expect(store.revision == before)
    }

    @Test func disableBumpsRevisionOnlyWhenEnabled() throws {
        var store = try Self.rootReady()
        let start = store.revision
        try store.apply(.disable)
        #expect(store.revision == start)
        try store.apply(.enable)
        try store.apply(.disable)
        #expect(!store.isEnabled)
        #expect(store.revision == start + 1)
    }

    @Test func userAddRules() throws {
        var store = AuthStore()
        #expect(
            Self.failure { try store.apply(.userAdd(name: "", passwordHash: [], noPassword: false)) }
                == .userEmpty)
        #expect(CairnError.userEmpty.message == "etcdserver: user name is empty")
        #expect(CairnError.userEmpty.code == .invalidArgument)
        try store.apply(.userAdd(name: "alice", passwordHash: [7, 7], noPassword: false))
        #expect(store.revision == 1)
        #expect(
            Self.failure { try store.apply(.userAdd(name: "alice", passwordHash: [1], noPassword: false)) }
                == .userAlreadyExists)
        #expect(CairnError.userAlreadyExists.message == "etcdserver: user name already exists")
        #expect(CairnError.userAlreadyExists.code == .failedPrecondition)
        // A failed operation leaves the revision alone.
        #expect(store.revision == 1)
        #expect(try store.user("alice").passwordHash == [7, 7])
        // A no-password user stores no hash.
        try store.apply(.userAdd(name: "cn-user", passwordHash: [5], noPassword: true))
        #expect(try store.user("cn-user") == AuthUser(name: "cn-user", passwordHash: [], noPassword: true))
    }

    @Test func userDeleteAndRootProtection() throws {
        var store = try Self.rootReady()
        try store.apply(.enable)
        #expect(Self.failure { try store.apply(.userDelete(name: "root")) } == .invalidAuthManagement)
        #expect(CairnError.invalidAuthManagement.message == "etcdserver: invalid auth management")
        #expect(Self.failure { try store.apply(.userDelete(name: "nobody")) } == .userNotFound)
        #expect(CairnError.userNotFound.message == "etcdserver: user name not found")
        try store.apply(.disable)
        try store.apply(.userDelete(name: "root"))
        #expect(store.userNames.isEmpty)
    }

    @Test func changePasswordKeepsRolesAndOptions() throws {
        var store = try Self.rootReady()
        try store.apply(.userAdd(name: "bob", passwordHash: [], noPassword: true))
        try store.apply(.userGrantRole(user: "bob", role: "reader"))
        let revision = store.revision
        try store.apply(.userChangePassword(name: "bob", passwordHash: [4, 4]))
        #expect(store.revision == revision + 1)
        #expect(
            try store.user("bob")
                == AuthUser(name: "bob", passwordHash: [4, 4], roles: ["reader"], noPassword: true))
        #expect(
            Self.failure { try store.apply(.userChangePassword(name: "eve", passwordHash: [1])) }
                == .userNotFound)
    }

    @Test func grantRoleRules() throws {
        var store = try Self.rootReady()
        try store.apply(.userAdd(name: "u", passwordHash: [1], noPassword: false))
        #expect(Self.failure { try store.apply(.userGrantRole(user: "x", role: "reader")) } == .userNotFound)
        #expect(Self.failure { try store.apply(.userGrantRole(user: "u", role: "writer")) } == .roleNotFound)
        #expect(CairnError.roleNotFound.message == "etcdserver: role name not found")
        try store.apply(.roleAdd(name: "b"))
        try store.apply(.userGrantRole(user: "u", role: "reader"))
        try store.apply(.userGrantRole(user: "u", role: "b"))
        try store.apply(.userGrantRole(user: "u", role: "root"))
        // Roles come back sorted by bytes.
        #expect(try store.user("u").roles == ["b", "reader", "root"])
        // Granting again is ignored: no error, no new revision.
        let revision = store.revision
        try store.apply(.userGrantRole(user: "u", role: "b"))
        #expect(store.revision == revision)
    }

    @Test func revokeRoleRules() throws {
        var store = try Self.rootReady()
        try store.apply(.userAdd(name: "u", passwordHash: [1], noPassword: false))
        #expect(
            Self.failure { try store.apply(.userRevokeRole(user: "u", role: "reader")) } == .roleNotGranted)
        #expect(CairnError.roleNotGranted.message == "etcdserver: role is not granted to the user")
        #expect(Self.failure { try store.apply(.userRevokeRole(user: "z", role: "reader")) } == .userNotFound)
        try store.apply(.userGrantRole(user: "u", role: "reader"))
        try store.apply(.userRevokeRole(user: "u", role: "reader"))
        #expect(try store.user("u").roles.isEmpty)
        try store.apply(.enable)
        #expect(
            Self.failure { try store.apply(.userRevokeRole(user: "root", role: "root")) }
                == .invalidAuthManagement)
    }

    @Test func roleAddDeleteRules() throws {
        var store = try Self.rootReady()
        #expect(Self.failure { try store.apply(.roleAdd(name: "")) } == .roleEmpty)
        #expect(CairnError.roleEmpty.message == "etcdserver: role name is empty")
        #expect(Self.failure { try store.apply(.roleAdd(name: "reader")) } == .roleAlreadyExists)
        #expect(CairnError.roleAlreadyExists.message == "etcdserver: role name already exists")
        #expect(Self.failure { try store.apply(.roleDelete(name: "ghost")) } == .roleNotFound)
        try store.apply(.userAdd(name: "u", passwordHash: [1], noPassword: false))
        try store.apply(.userGrantRole(user: "u", role: "reader"))
        try store.apply(.roleDelete(name: "reader"))
        // Deleting a role revokes it from its users.
        #expect(try store.user("u").roles.isEmpty)
        #expect(store.roleNames.isEmpty)
        try store.apply(.roleAdd(name: "root"))
        try store.apply(.enable)
        #expect(Self.failure { try store.apply(.roleDelete(name: "root")) } == .invalidAuthManagement)
        try store.apply(.disable)
        try store.apply(.roleDelete(name: "root"))
        // While disabled, deleting the stored root role revokes it from
        // every user, root included, as any role.
        #expect(try store.user("root").roles.isEmpty)
    }

    @Test func permissionsGrantUpdateAndRevoke() throws {
        var store = try Self.rootReady()
        let prefix = AuthPermission(type: .read, key: "foo", rangeEnd: "fop")
        try store.apply(.roleGrantPermission(role: "reader", permission: prefix))
        try store.apply(
            .roleGrantPermission(role: "reader", permission: AuthPermission(type: .write, key: "a")))
        try store.apply(
            .roleGrantPermission(
                role: "reader", permission: AuthPermission(type: .read, key: "z", rangeEnd: Key([0]))))
        // Sorted by key.
        #expect(try store.role("reader").permissions.map(\.key) == ["a", "foo", "z"])
        // Same key and range end: the type is updated in place.
        try store.apply(
            .roleGrantPermission(
                role: "reader", permission: AuthPermission(type: .readWrite, key: "foo", rangeEnd: "fop")))
        #expect(
            try store.role("reader").permissions[1]
                == AuthPermission(type: .readWrite, key: "foo", rangeEnd: "fop"))
        #expect(try store.role("reader").permissions.count == 3)
        #expect(
            Self.failure { try store.apply(.roleGrantPermission(role: "nope", permission: prefix)) }
                == .roleNotFound)
        // Revoke matches key and range end exactly.
        #expect(
            Self.failure {
                try store.apply(.roleRevokePermission(role: "reader", key: "foo", rangeEnd: Key([])))
            }
                == .permissionNotGranted)
        #expect(
            CairnError.permissionNotGranted.message == "etcdserver: permission is not granted to the role")
        try store.apply(.roleRevokePermission(role: "reader", key: "foo", rangeEnd: "fop"))
        #expect(try store.role("reader").permissions.map(\.key) == ["a", "z"])
        #expect(
            Self.failure { try store.apply(.roleRevokePermission(role: "nope", key: "a", rangeEnd: Key([]))) }
                == .roleNotFound)
    }

    @Test func listsAreInByteOrder() throws {
        var store = AuthStore()
        for name in ["b", "a", "Z", "é", "aa"] {
            try store.apply(.userAdd(name: name, passwordHash: [1], noPassword: false))
            try store.apply(.roleAdd(name: name))
        }
        #expect(store.userNames == ["Z", "a", "aa", "b", "é"])
        #expect(store.roleNames == ["Z", "a", "aa", "b", "é"])
        #expect(store.status == AuthStatus(enabled: false, revision: 10))
    }

    @Test func limitsRefuseWithNoSpaceAndChangeNothing() throws {
        var store = AuthStore(
            limits: AuthStore.Limits(usersMax: 1, rolesMax: 1, permissionsPerRoleMax: 1, rolesPerUserMax: 1))
        try store.apply(.userAdd(name: "a", passwordHash: [], noPassword: false))
        #expect(
            Self.failure { try store.apply(.userAdd(name: "b", passwordHash: [], noPassword: false)) }
                == .noSpace)
        try store.apply(.roleAdd(name: "r"))
        #expect(Self.failure { try store.apply(.roleAdd(name: "s")) } == .noSpace)
        try store.apply(.roleGrantPermission(role: "r", permission: AuthPermission(type: .read, key: "k")))
        #expect(
            Self.failure {
                try store.apply(
                    .roleGrantPermission(role: "r", permission: AuthPermission(type: .read, key: "l")))
            } == .noSpace)
        try store.apply(.userGrantRole(user: "a", role: "r"))
        #expect(Self.failure { try store.apply(.userGrantRole(user: "a", role: "root")) } == .noSpace)
        #expect(store.revision == 4)
    }
}
