import CairnCore
import Testing

@testable import CairnStateMachine

/// Replicated logins (`AuthOperation.authenticate`): every member applies
/// the same login and so accepts the same token; the state machine only
/// decides whether the login stands and tells the shell through effects.
@Suite struct AuthLoginTests {
    /// root (root role), alice, and bob without a password; auth enabled.
    static func enabled() -> Driver {
        var driver = Driver()
        for operation: AuthOperation in [
            .userAdd(name: "root", passwordHash: [1], noPassword: false),
            .userGrantRole(user: "root", role: "root"),
            .userAdd(name: "alice", passwordHash: [2], noPassword: false),
            .userAdd(name: "bob", passwordHash: [], noPassword: true), .enable,
        ] {
            driver.apply(.auth(operation))
        }
        return driver
    }

    @Test func aLoginAppliedAtTheCheckedRevisionAssignsItsTokenAndChangesNothing() {
        var driver = Self.enabled()
        let before = driver.machine.auth
        let revision = before.revision
        let result = driver.apply(
            .auth(.authenticate(user: "alice", token: "t.1", checkedRevision: revision)))
        #expect(result.response == .auth(revision: revision))
        #expect(result.effects == [.tokenAssigned(token: "t.1", user: "alice")])
        #expect(driver.machine.auth == before)
    }

    @Test func aLoginThatNoLongerStandsFailsTheSameWayEverywhere() {
        var driver = Self.enabled()
        let revision = driver.machine.auth.revision
        let cases: [(AuthOperation, CairnError)] = [
            (.authenticate(user: "alice", token: "t", checkedRevision: revision - 1), .authOldRevision),
            (.authenticate(user: "nobody", token: "t", checkedRevision: revision), .authFailed),
            (.authenticate(user: "bob", token: "t", checkedRevision: revision), .authFailed),
            (.authenticate(user: "alice", token: "", checkedRevision: revision), .invalidAuthToken),
            (
                .authenticate(
                    user: "alice", token: String(repeating: "x", count: AuthStore.tokenBytesMax + 1),
                    checkedRevision: revision), .invalidAuthToken
            ),
        ]
        for (operation, error) in cases {
            let result = driver.apply(.auth(operation))
            #expect(result.response == .failed(error), "\(operation)")
            #expect(result.effects.isEmpty)
        }
        var disabled = Driver()
        #expect(
            disabled.apply(.auth(.authenticate(user: "alice", token: "t", checkedRevision: 0))).response
                == .failed(.authNotEnabled))
    }

    @Test func deletesPasswordChangesAndDisableRevokeTokens() {
        var driver = Self.enabled()
        #expect(
            driver.apply(.auth(.userChangePassword(name: "alice", passwordHash: [3]))).effects
                == [.tokensRevoked(user: "alice")])
        #expect(driver.apply(.auth(.userDelete(name: "alice"))).effects == [.tokensRevoked(user: "alice")])
        #expect(driver.apply(.auth(.roleAdd(name: "r"))).effects.isEmpty)
        #expect(driver.apply(.auth(.disable)).effects == [.tokensRevoked(user: nil)])
        // A failed delete revokes nothing.
        #expect(driver.apply(.auth(.userDelete(name: "alice"))).effects.isEmpty)
    }

    @Test func loginsRoundTripThroughTheLog() throws {
        let operation = AuthOperation.authenticate(user: "ü", token: "abc.7", checkedRevision: 42)
        let encoded = command(.auth(operation)).encoded()
        #expect(try Command(decoding: encoded) == command(.auth(operation)))
        // A login is an admin-only write if a client could ever send one.
        let driver = Self.enabled()
        let alice = AuthIdentity(user: "alice", revision: driver.machine.auth.revision)
        #expect(throws: CairnError.permissionDenied) {
            try driver.machine.authorize(alice, operation: .auth(operation))
        }
    }
}
