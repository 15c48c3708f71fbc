import CairnCore

/// The binary forms of auth operations (inside `Command`) and of the auth
/// store (inside snapshots). Names are length-prefixed UTF-8; users and
/// roles are written in name-byte order so equal stores give equal bytes.
extension ByteWriter {
    mutating func string(_ value: String) { data(Array(value.utf8)) }

    mutating func authOperation(_ operation: AuthOperation) {
        switch operation {
        case .enable: byte(1)
        case .disable: byte(2)
        case .userAdd(let name, let passwordHash, let noPassword):
            byte(3)
            string(name)
            data(passwordHash)
            bool(noPassword)
        case .userDelete(let name):
            byte(4)
            string(name)
        case .userChangePassword(let name, let passwordHash):
            byte(5)
            string(name)
            data(passwordHash)
        case .userGrantRole(let user, let role):
            byte(6)
            string(user)
            string(role)
        case .userRevokeRole(let user, let role):
            byte(7)
            string(user)
            string(role)
        case .roleAdd(let name):
            byte(8)
            string(name)
        case .roleDelete(let name):
            byte(9)
            string(name)
        case .roleGrantPermission(let role, let permission):
            byte(10)
            string(role)
            authPermission(permission)
        case .roleRevokePermission(let role, let key, let rangeEnd):
            byte(11)
            string(role)
            self.key(key)
            self.key(rangeEnd)
        case .authenticate(let user, let token, let checkedRevision):
            byte(12)
            string(user)
            string(token)
            unsigned(checkedRevision)
        }
    }

    mutating func authPermission(_ permission: AuthPermission) {
        byte(UInt8(permission.type.rawValue))
        key(permission.key)
        key(permission.rangeEnd)
    }

    mutating func authStore(_ store: AuthStore) {
        bool(store.isEnabled)
        unsigned(store.revision)
        let userNames = store.userNames
        count(userNames.count)
        for name in userNames {
            let user = store.users[name]!
            string(user.name)
            data(user.passwordHash)
            bool(user.noPassword)
            count(user.roles.count)
            for role in user.roles { string(role) }
        }
        let roleNames = store.roleNames
        count(roleNames.count)
        for name in roleNames {
            let role = store.roles[name]!
            string(role.name)
            count(role.permissions.count)
            for permission in role.permissions { authPermission(permission) }
        }
    }
}

extension ByteReader {
    mutating func string() throws(DecodeError) -> String {
        let bytes = try data()
        guard let value = String(validating: bytes, as: UTF8.self) else { throw .malformed("name not UTF-8") }
        return value
    }

    mutating func authOperation() throws(DecodeError) -> AuthOperation {
        switch try byte() {
        case 1: return .enable
        case 2: return .disable
        case 3: return .userAdd(name: try string(), passwordHash: try data(), noPassword: try bool())
        case 4: return .userDelete(name: try string())
        case 5: return .userChangePassword(name: try string(), passwordHash: try data())
        case 6: return .userGrantRole(user: try string(), role: try string())
        case 7: return .userRevokeRole(user: try string(), role: try string())
        case 8: return .roleAdd(name: try string())
        case 9: return .roleDelete(name: try string())
        case 10: return .roleGrantPermission(role: try string(), permission: try authPermission())
        case 11: return .roleRevokePermission(role: try string(), key: try key(), rangeEnd: try key())
        case 12:
            return .authenticate(user: try string(), token: try string(), checkedRevision: try unsigned())
        case let other: throw .unknownTag(other)
        }
    }

    mutating func authPermission() throws(DecodeError) -> AuthPermission {
        let raw = try byte()
        guard let type = AuthPermissionType(rawValue: Int(raw)) else {
            throw .malformed("permission type \(raw)")
        }
        return AuthPermission(type: type, key: try key(), rangeEnd: try key())
    }

    /// Reads `ByteWriter.authStore`, refusing duplicates, counts beyond
    /// `limits` and an enabled store without root holding the root role
    /// (AuthStore properties 2 and 3).
    mutating func authStore(limits: AuthStore.Limits) throws(DecodeError) -> AuthStore {
        var store = AuthStore(limits: limits)
        store.isEnabled = try bool()
        store.revision = try unsigned()
        let userCount = try count()
        guard userCount <= limits.usersMax else { throw .malformed("more users than usersMax") }
        for _ in 0..<userCount {
            var user = AuthUser(name: try string(), passwordHash: try data(), noPassword: try bool())
            let roleCount = try count()
            guard roleCount <= limits.rolesPerUserMax else { throw .malformed("user roles beyond limit") }
            for _ in 0..<roleCount { user.roles.append(try string()) }
            guard !user.name.isEmpty, store.users[user.name] == nil, Set(user.roles).count == user.roles.count
            else { throw .malformed("user") }
            store.users[user.name] = user
        }
        let roleCount = try count()
        guard roleCount <= limits.rolesMax else { throw .malformed("more roles than rolesMax") }
        for _ in 0..<roleCount {
            var role = AuthRole(name: try string())
            let permissionCount = try count()
            guard permissionCount <= limits.permissionsPerRoleMax else {
                throw .malformed("role permissions")
            }
            for _ in 0..<permissionCount { role.permissions.append(try authPermission()) }
            guard !role.name.isEmpty, store.roles[role.name] == nil else { throw .malformed("role") }
            store.roles[role.name] = role
        }
        if store.isEnabled && store.users[AuthStore.rootUser]?.hasRootRole != true {
            throw .malformed("auth enabled without root")
        }
        return store
    }
}
