import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

/// Permission checks with etcd's range semantics (auth/range_perm_cache.go),
/// the identity rules (no user, old revision, unknown user), Txn, leases,
/// and the auth store inside commands, snapshots and the hash.
@Suite struct AuthCheckTests {
    /// Enabled store: root, and `user` holding the given permissions through
    /// one role (or several, one per permission, when `split`).
    static func store(_ permissions: [AuthPermission], split: Bool = false) throws -> AuthStore {
        var store = try AuthStoreTests.rootReady()
        try store.apply(.userAdd(name: "user", passwordHash: [1], noPassword: false))
        for (offset, permission) in permissions.enumerated() {
            let role = split ? "role\(offset)" : "reader"
            if split { try store.apply(.roleAdd(name: role)) }
            try store.apply(.roleGrantPermission(role: role, permission: permission))
            try store.apply(.userGrantRole(user: "user", role: role))
        }
        try store.apply(.enable)
        return store
    }

    static func identity(_ store: AuthStore, _ user: String = "user") -> AuthIdentity {
        AuthIdentity(user: user, revision: store.revision)
    }

    static func permits(_ store: AuthStore, _ range: KeyRange, _ access: AuthAccess = .read) -> Bool {
        AuthStoreTests.failure { try store.check(identity(store), range: range, access: access) } == nil
    }

    @Test func singleKeyPermission() throws {
        let store = try Self.store([AuthPermission(type: .read, key: "foo")])
        #expect(Self.permits(store, .single("foo")))
        #expect(!Self.permits(store, .single("foo0")))
        #expect(!Self.permits(store, .single("fo")))
        // A range of more than the key is not covered.
        #expect(!Self.permits(store, .interval("foo", end: "fop")))
        // The range holding exactly the key is covered: [foo, foo\0).
        #expect(Self.permits(store, .interval("foo", end: Key(Array("foo".utf8) + [0]))))
        // Write is not read.
        #expect(!Self.permits(store, .single("foo"), .write))
    }

    @Test func prefixPermission() throws {
        let store = try Self.store([AuthPermission(type: .readWrite, key: "foo", rangeEnd: "fop")])
        #expect(Self.permits(store, .single("foo")))
        #expect(Self.permits(store, .single("foo/bar"), .write))
        #expect(!Self.permits(store, .single("fop")))
        #expect(Self.permits(store, .prefix("foo")))
        #expect(Self.permits(store, .prefix("foo/")))
        #expect(!Self.permits(store, .prefix("fo")))
        #expect(!Self.permits(store, .from("foo")))
        #expect(!Self.permits(store, .all))
    }

    @Test func fromKeyPermission() throws {
        let store = try Self.store([AuthPermission(type: .read, key: "m", rangeEnd: Key([0]))])
        #expect(Self.permits(store, .single("m")))
        #expect(Self.permits(store, .single("zzz")))
        #expect(!Self.permits(store, .single("a")))
        #expect(Self.permits(store, .from("n")))
        #expect(Self.permits(store, .interval("m", end: "q")))
        #expect(!Self.permits(store, .from("a")))
        // "\0" from-key is every key (etcdctl's empty --prefix).
        let everything = try Self.store([AuthPermission(type: .read, key: Key([0]), rangeEnd: Key([0]))])
        #expect(Self.permits(everything, .all))
        #expect(Self.permits(everything, .single(Key([0]))))
        #expect(Self.permits(everything, .prefix("x")))
    }

    @Test func unionOfRolesCoversWithoutGaps() throws {
        let adjacent = [
            AuthPermission(type: .read, key: "a", rangeEnd: "c"),
            AuthPermission(type: .read, key: "c", rangeEnd: "e"),
        ]
        // Adjacent intervals from two roles join.
        let joined = try Self.store(adjacent, split: true)
        #expect(Self.permits(joined, .interval("a", end: "e")))
        #expect(Self.permits(joined, .interval("b", end: "d")))
        #expect(!Self.permits(joined, .interval("a", end: "f")))
        // A gap denies the range, not the keys beside it.
        let gapped = try Self.store([
            AuthPermission(type: .read, key: "a", rangeEnd: "c"),
            AuthPermission(type: .read, key: "d", rangeEnd: "f"),
        ])
        #expect(!Self.permits(gapped, .interval("a", end: "f")))
        #expect(Self.permits(gapped, .interval("d", end: "f")))
        #expect(Self.permits(gapped, .single("e")))
        #expect(!Self.permits(gapped, .single("c")))
        // A read grant does not join a write grant.
        let mixed = try Self.store([
            AuthPermission(type: .read, key: "a", rangeEnd: "c"),
            AuthPermission(type: .write, key: "c", rangeEnd: "e"),
        ])
        #expect(!Self.permits(mixed, .interval("a", end: "e")))
        #expect(Self.permits(mixed, .interval("c", end: "e"), .write))
    }

    @Test func emptyKeyPermissionMatchesNothing() throws {
        // etcd orders an empty bound after every key, so this grants nothing.
        let store = try Self.store([AuthPermission(type: .read, key: Key([]), rangeEnd: Key([0]))])
        #expect(!Self.permits(store, .single("a")))
        #expect(!Self.permits(store, .all))
    }

    @Test func identityRules() throws {
        var store = try Self.store([AuthPermission(type: .read, key: "k")])
        // No identity, or one at revision 0: etcd's "user name is empty".
        #expect(
            AuthStoreTests.failure { try store.check(nil, range: .single("k"), access: .read) } == .userEmpty)
        #expect(
            AuthStoreTests.failure {
                try store.check(AuthIdentity(user: "user", revision: 0), range: .single("k"), access: .read)
            } == .userEmpty)
        // Unknown user: permission denied.
        #expect(
            AuthStoreTests.failure {
                try store.check(Self.identity(store, "ghost"), range: .single("k"), access: .read)
            } == .permissionDenied)
        #expect(CairnError.permissionDenied.code == .permissionDenied)
        #expect(CairnError.permissionDenied.message == "etcdserver: permission denied")
        // A change to the store makes older identities stale.
        let old = Self.identity(store)
        try store.apply(.roleAdd(name: "another"))
        #expect(
            AuthStoreTests.failure { try store.check(old, range: .single("k"), access: .read) }
                == .authOldRevision)
        #expect(CairnError.authOldRevision.message == "etcdserver: revision of auth store is old")
        #expect(CairnError.authOldRevision.code == .invalidArgument)
        // Root bypasses every range check.
        #expect(
            AuthStoreTests.failure {
                try store.check(Self.identity(store, "root"), range: .all, access: .write)
            }
                == nil)
        // Auth off: everything passes, even without identity.
        try store.apply(.disable)
        #expect(AuthStoreTests.failure { try store.check(nil, range: .all, access: .write) } == nil)
    }

    @Test func adminChecks() throws {
        let store = try Self.store([AuthPermission(type: .read, key: "k")])
        #expect(AuthStoreTests.failure { try store.checkAdmin(nil) } == .userEmpty)
        #expect(AuthStoreTests.failure { try store.checkAdmin(Self.identity(store)) } == .permissionDenied)
        #expect(
            AuthStoreTests.failure { try store.checkAdmin(Self.identity(store, "ghost")) } == .userNotFound)
        #expect(AuthStoreTests.failure { try store.checkAdmin(Self.identity(store, "root")) } == nil)
        // A user may read itself and the roles it holds.
        #expect(AuthStoreTests.failure { try store.checkUserGet(Self.identity(store), name: "user") } == nil)
        #expect(
            AuthStoreTests.failure { try store.checkUserGet(Self.identity(store), name: "root") }
                == .permissionDenied)
        #expect(
            AuthStoreTests.failure { try store.checkRoleGet(Self.identity(store), role: "reader") } == nil)
        #expect(
            AuthStoreTests.failure { try store.checkRoleGet(Self.identity(store), role: "root") }
                == .permissionDenied)
    }

    @Test func putAndDeleteNeedReadForPreviousValues() throws {
        let store = try Self.store([AuthPermission(type: .write, key: "w", rangeEnd: "x")])
        let identity = Self.identity(store)
        #expect(
            AuthStoreTests.failure { try store.check(identity, put: PutRequest(key: "w1", value: [1])) }
                == nil)
        #expect(
            AuthStoreTests.failure {
                try store.check(identity, put: PutRequest(key: "w1", value: [1], previousKeyValue: true))
            } == .permissionDenied)
        #expect(
            AuthStoreTests.failure {
                try store.check(identity, deleteRange: DeleteRangeRequest(key: "w", rangeEnd: "x"))
            }
                == nil)
        #expect(
            AuthStoreTests.failure {
                try store.check(
                    identity,
                    deleteRange: DeleteRangeRequest(key: "w", rangeEnd: "x", previousKeyValues: true))
            } == .permissionDenied)
    }

    @Test func txnChecksComparesAndNestedOperations() throws {
        let store = try Self.store([
            AuthPermission(type: .read, key: "r", rangeEnd: "s"),
            AuthPermission(type: .write, key: "w", rangeEnd: "x"),
        ])
        let identity = Self.identity(store)
        func verdict(_ txn: TxnRequest) -> CairnError? {
            AuthStoreTests.failure { try store.check(identity, txn: txn) }
        }
        let readCompare = Compare(key: "r1", target: .version(0), result: .equal)
        let writeOnlyCompare = Compare(key: "w1", target: .version(0), result: .equal)
        #expect(
            verdict(TxnRequest(compare: [readCompare], success: [.put(PutRequest(key: "w1", value: []))]))
                == nil)
        // A compare needs read.
        #expect(verdict(TxnRequest(compare: [writeOnlyCompare])) == .permissionDenied)
        // The failure branch is checked even if it would not run.
        #expect(
            verdict(
                TxnRequest(
                    success: [.range(RangeRequest(key: "r1"))],
                    failure: [.put(PutRequest(key: "r1", value: []))]))
                == .permissionDenied)
        #expect(
            verdict(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: "r1"))])) == .permissionDenied)
        // Nested transactions are checked all the way down.
        let nested = TxnRequest(success: [
            .txn(TxnRequest(failure: [.txn(TxnRequest(compare: [writeOnlyCompare]))]))
        ])
        #expect(verdict(nested) == .permissionDenied)
        let nestedFine = TxnRequest(success: [
            .txn(TxnRequest(success: [.range(RangeRequest(key: "r", rangeEnd: "s"))]))
        ])
        #expect(verdict(nestedFine) == nil)
    }

    @Test func leaseRevokeNeedsWriteOnEveryAttachedKey() throws {
        var driver = Driver()
        let lease = LeaseID(7)
        driver.apply(.leaseGrant(id: lease, ttlSeconds: 60))
        driver.put("w1", lease: lease)
        driver.put("z1", lease: lease)
        for operation: AuthOperation in [
            .userAdd(name: "root", passwordHash: [1], noPassword: false),
            .userGrantRole(user: "root", role: "root"),
            .userAdd(name: "user", passwordHash: [1], noPassword: false),
            .roleAdd(name: "w"),
            .roleGrantPermission(
                role: "w", permission: AuthPermission(type: .write, key: "w", rangeEnd: "x")),
            .userGrantRole(user: "user", role: "w"),
            .enable,
        ] {
            #expect(driver.apply(.auth(operation)).response == .auth(revision: driver.machine.auth.revision))
        }
        let machine = driver.machine
        let identity = AuthIdentity(user: "user", revision: machine.auth.revision)
        #expect(
            AuthStoreTests.failure { try machine.authorize(identity, leaseRevoke: lease) }
                == .permissionDenied)
        // Attaching that lease to a writable key is refused too.
        #expect(
            AuthStoreTests.failure {
                try machine.authorize(identity, put: PutRequest(key: "w2", value: [], lease: lease))
            }
                == .permissionDenied)
        #expect(
            AuthStoreTests.failure {
                try machine.authorize(
                    identity, txn: TxnRequest(success: [.put(PutRequest(key: "w2", value: [], lease: lease))])
                )
            } == .permissionDenied)
        // An unknown lease passes the check (the apply says not found).
        #expect(AuthStoreTests.failure { try machine.authorize(identity, leaseRevoke: LeaseID(99)) } == nil)
        // Once the unwritable key is gone, revoking is allowed.
        driver.apply(.deleteRange(DeleteRangeRequest(key: "z1")))
        #expect(AuthStoreTests.failure { try driver.machine.authorize(identity, leaseRevoke: lease) } == nil)
        let root = AuthIdentity(user: "root", revision: machine.auth.revision)
        #expect(AuthStoreTests.failure { try machine.authorize(root, leaseRevoke: lease) } == nil)
    }

    @Test func operationsAreCheckedByKind() throws {
        var driver = Driver()
        for operation: AuthOperation in [
            .userAdd(name: "root", passwordHash: [1], noPassword: false),
            .userGrantRole(user: "root", role: "root"),
            .userAdd(name: "user", passwordHash: [1], noPassword: false),
            .roleAdd(name: "w"),
            .roleGrantPermission(
                role: "w", permission: AuthPermission(type: .write, key: "w", rangeEnd: "x")),
            .userGrantRole(user: "user", role: "w"),
            .enable,
        ] {
            driver.apply(.auth(operation))
        }
        let machine = driver.machine
        let user = AuthIdentity(user: "user", revision: machine.auth.revision)
        func verdict(_ operation: Command.Operation, _ identity: AuthIdentity?) -> CairnError? {
            AuthStoreTests.failure { try machine.authorize(identity, operation: operation) }
        }
        #expect(verdict(.put(PutRequest(key: "w1", value: [])), user) == nil)
        #expect(verdict(.put(PutRequest(key: "a", value: [])), user) == .permissionDenied)
        #expect(verdict(.deleteRange(DeleteRangeRequest(key: "w", rangeEnd: "x")), user) == nil)
        #expect(
            verdict(.txn(TxnRequest(success: [.range(RangeRequest(key: "w1"))])), user) == .permissionDenied)
        // etcd 3.4 checks neither compaction nor lease grants.
        #expect(verdict(.compact(revision: 1), user) == nil)
        #expect(verdict(.leaseGrant(id: LeaseID(1), ttlSeconds: 10), user) == nil)
        #expect(verdict(.auth(.roleAdd(name: "x")), user) == .permissionDenied)
        #expect(verdict(.noOp, nil) == .userEmpty)
        #expect(verdict(.auth(.roleAdd(name: "x")), AuthIdentity(user: "root", revision: 1)) == nil)
    }

    @Test func commandsRoundTripAndApplyFailuresAreDeterministic() throws {
        let operations: [AuthOperation] = [
            .enable, .disable, .userAdd(name: "ü", passwordHash: [0, 255], noPassword: true),
            .userDelete(name: "a"), .userChangePassword(name: "a", passwordHash: [3]),
            .userGrantRole(user: "a", role: "r"), .userRevokeRole(user: "a", role: "r"), .roleAdd(name: "r"),
            .roleDelete(name: "r"),
            .roleGrantPermission(
                role: "r", permission: AuthPermission(type: .readWrite, key: "k", rangeEnd: Key([0]))),
            .roleRevokePermission(role: "r", key: "k", rangeEnd: "l"),
        ]
        for operation in operations {
            let encoded = command(.auth(operation)).encoded()
            #expect(try Command(decoding: encoded) == command(.auth(operation)))
        }
        // A name that is not UTF-8 is refused by the decoder.
        var bad = command(.auth(.roleAdd(name: "r"))).encoded()
        bad[bad.count - 1] = 0xff
        #expect(throws: DecodeError.self) { try Command(decoding: bad) }
        var driver = Driver()
        #expect(driver.apply(.auth(.enable)).response == .failed(.rootUserNotExist))
        #expect(driver.machine.appliedIndex == 1)
    }

    @Test func snapshotCarriesAuthAndHashTracksIt() throws {
        var driver = Driver()
        driver.put("k")
        for operation: AuthOperation in [
            .userAdd(name: "root", passwordHash: [1, 2], noPassword: false),
            .userGrantRole(user: "root", role: "root"),
            .roleAdd(name: "r"),
            .roleGrantPermission(role: "r", permission: AuthPermission(type: .read, key: "a", rangeEnd: "b")),
            .userAdd(name: "cn", passwordHash: [], noPassword: true),
            .userGrantRole(user: "cn", role: "r"),
            .enable,
        ] {
            driver.apply(.auth(operation))
        }
        var restored = StateMachine()
        let emptyHash = restored.authHash
        try restored.restore(driver.machine.snapshot(), now: epoch)
        #expect(restored.auth == driver.machine.auth)
        #expect(restored.authHash == driver.machine.authHash)
        #expect(restored.authHash != emptyHash)
        #expect(restored.snapshot() == driver.machine.snapshot())
        // The hash moves with any change.
        let before = driver.machine.authHash
        driver.apply(.auth(.userChangePassword(name: "cn", passwordHash: [9])))
        #expect(driver.machine.authHash != before)
    }

    @Test func snapshotRefusesEnabledStoreWithoutRoot() throws {
        var writer = ByteWriter()
        var store = AuthStore()
        store.isEnabled = true
        writer.authStore(store)
        var reader = ByteReader(writer.bytes)
        #expect(throws: DecodeError.self) { try reader.authStore(limits: AuthStore.Limits()) }
    }

    /// Random operation sequences: failures change nothing; root keeps the
    /// root role while enabled; the revision never falls; encoding the
    /// store and decoding it gives it back.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func randomOperationsKeepTheInvariants(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let names = ["root", "a", "b"]
        let keys: [Key] = ["a", "b", "c", Key([0])]
        var store = AuthStore()
        for _ in 0..<600 {
            let name = names.randomElement(using: &random)!
            let other = names.randomElement(using: &random)!
            let key = keys.randomElement(using: &random)!
            let end = (keys + [Key([])]).randomElement(using: &random)!
            let type = AuthPermissionType.allCases.randomElement(using: &random)!
            let operation: AuthOperation =
                switch Int.random(in: 0..<11, using: &random) {
                case 0: .enable
                case 1: .disable
                case 2: .userAdd(name: name, passwordHash: [1], noPassword: Bool.random(using: &random))
                case 3: .userDelete(name: name)
                case 4: .userChangePassword(name: name, passwordHash: [2])
                case 5: .userGrantRole(user: name, role: other)
                case 6: .userRevokeRole(user: name, role: other)
                case 7: .roleAdd(name: name)
                case 8: .roleDelete(name: name)
                case 9:
                    .roleGrantPermission(
                        role: name, permission: AuthPermission(type: type, key: key, rangeEnd: end))
                default: .roleRevokePermission(role: name, key: key, rangeEnd: end)
                }
            let before = store
            do {
                try store.apply(operation)
                #expect(store.revision >= before.revision)
            } catch {
                #expect(store == before)
            }
            if store.isEnabled { #expect(try store.user("root").hasRootRole) }
            var writer = ByteWriter()
            writer.authStore(store)
            var reader = ByteReader(writer.bytes)
            #expect(try reader.authStore(limits: store.limits) == store)
        }
    }
}
