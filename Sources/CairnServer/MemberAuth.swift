import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import CairnStateMachine
import Foundation
import NIOCore

/// The Auth service (etcd's `etcdserverpb.Auth`) and the one authorization
/// gate every other service calls.
///
/// Changes to users, roles and permissions are `Command.Operation.auth`
/// writes, replicated and applied like any other; passwords are hashed by
/// this member (on a thread pool: the KDF is slow on purpose) before the
/// proposal, so the log and snapshots hold only hashes. Reads (UserGet,
/// RoleList...) and checks run on the member's executor against the
/// applied auth store.
extension MemberServices {
    /// etcd's authorization of one request: resolves the caller's identity
    /// (token, else certificate CN with `--client-cert-auth`) and runs
    /// `check` against the applied state on the member's executor. Every
    /// KV, Txn, Watch, Lease revoke, Lock, Election and Maintenance handler
    /// calls this, or, inside a read it already runs on the executor,
    /// `auth.identity(credential, stateMachine.auth)` with the credential
    /// taken from its context, before serving.
    ///
    /// etcd checks a write when applying it; this checks before proposing
    /// it, so a permission revoked between the check and the apply does not
    /// stop a write already checked (a window of one proposal).
    func authorize(
        _ context: RPCContext, auth: MemberAuth,
        _ check: @escaping @Sendable (StateMachine, AuthIdentity?) throws -> Void
    ) -> EventLoopFuture<Void> {
        let credential = auth.credential(context)
        let run: @Sendable (StateMachine) throws -> Void = { stateMachine in
            try check(stateMachine, try auth.identity(credential, stateMachine.auth))
        }
        let member = self.member
        return member.eventLoop.flatSubmit {
            // A restarted member serves before it has applied the entries it
            // knows are committed, auth changes among them: until it caught
            // up once, a check waits for a linearizable read of the state.
            guard
                auth.hasCaughtUp(
                    committed: member.replica.committedIndex, applied: member.stateMachine.appliedIndex)
            else {
                return member.linearizableRead(run)
            }
            return member.eventLoop.makeCompletedFuture { try run(member.stateMachine) }
        }.flatMapErrorThrowing { error in throw Self.status(for: error) }
    }

    /// `authorize` with this member's auth shell.
    func authorize(
        _ context: RPCContext, _ check: @escaping @Sendable (StateMachine, AuthIdentity?) throws -> Void
    ) -> EventLoopFuture<Void> {
        self.authorize(context, auth: self.auth, check)
    }

    /// A client's write: checked by kind (`StateMachine.authorize(_:operation:)`),
    /// then proposed; `convert` as in `write(_:_:)`.
    func write<Response: Sendable>(
        _ operation: Command.Operation, authorizing context: RPCContext,
        _ convert: @escaping @Sendable (ApplyResult.Response, Int64) throws -> Response
    ) -> EventLoopFuture<Response> {
        self.authorize(context) { stateMachine, identity in
            try stateMachine.authorize(identity, operation: operation)
        }.flatMap {
            // `authorize` completes on the executor: propose from there.
            self.write(operation, onExecutor: true, convert)
        }
    }

    /// Lock, Election and other calls that touch a key range on the
    /// caller's behalf: every access in `access` on `range`.
    func authorize(_ context: RPCContext, range: KeyRange, access: [AuthAccess]) -> EventLoopFuture<Void> {
        self.authorize(context) { stateMachine, identity in
            for kind in access { try stateMachine.auth.check(identity, range: range, access: kind) }
        }
    }

    /// Maintenance (Snapshot, Hash, HashKV, Defragment) needs the root
    /// role. etcd 3.4 returns these refusals unmapped: gRPC `unknown` with
    /// the auth store's own text ("auth: permission denied"), and etcdctl
    /// prints exactly that, so this does too.
    func authorizeMaintenance(_ credential: MemberAuth.Credential, _ stateMachine: StateMachine) throws {
        do {
            try stateMachine.authorizeAdmin(try self.auth.identity(credential, stateMachine.auth))
        } catch {
            throw RPCStatus(.unknown, Self.authStoreText(error))
        }
    }

    /// `authorizeMaintenance` as a step before a maintenance call.
    func authorizeMaintenance(_ context: RPCContext) -> EventLoopFuture<Void> {
        let credential = self.auth.credential(context)
        return self.member.read { stateMachine in try self.authorizeMaintenance(credential, stateMachine) }
    }

    /// etcd's auth-store error texts, before the gRPC mapping.
    static func authStoreText(_ error: CairnError) -> String {
        switch error {
        case .userEmpty: "auth: user name is empty"
        case .userNotFound: "auth: user not found"
        case .permissionDenied: "auth: permission denied"
        case .invalidAuthToken: "auth: invalid auth token"
        default: error.message
        }
    }

    /// Registers every Auth RPC.
    func registerAuth(_ router: inout RPCServiceRouter, auth: MemberAuth) {
        self.registerAuthState(&router, auth: auth)
        self.registerUsers(&router, auth: auth)
        self.registerUserRoles(&router, auth: auth)
        self.registerRoles(&router, auth: auth)
    }

    /// An admin-only auth write: the root role (when auth is on), then the
    /// proposal; answers the wire response with the write's header.
    private func authWrite<Response: Sendable>(
        _ context: RPCContext, auth: MemberAuth, _ operation: AuthOperation,
        _ response: @escaping @Sendable (Etcdserverpb_ResponseHeader) -> Response
    ) -> EventLoopFuture<Response> {
        let eventLoop = context.eventLoop
        return self.authWrite(context, auth: auth, { eventLoop.makeSucceededFuture(operation) }, response)
    }

    /// An admin-only auth write whose operation is prepared (a password
    /// hashed) only once the caller proved the root role, so nobody else
    /// can make the member run the KDF.
    private func authWrite<Response: Sendable>(
        _ context: RPCContext, auth: MemberAuth,
        _ prepare: @escaping @Sendable () -> EventLoopFuture<AuthOperation>,
        _ response: @escaping @Sendable (Etcdserverpb_ResponseHeader) -> Response
    ) -> EventLoopFuture<Response> {
        self.authorize(context, auth: auth) { stateMachine, identity in
            try stateMachine.authorizeAdmin(identity)
        }.flatMap {
            prepare()
        }.flatMap { operation in
            self.write(.auth(operation)) { _, revision in response(self.header(revision: revision)) }
        }
    }

    /// Hashes `password` off the event loops (the KDF is slow by design).
    private func hashPassword(_ password: String, auth: MemberAuth, on eventLoop: any EventLoop)
        -> EventLoopFuture<[UInt8]>
    {
        let iterations = auth.configuration.passwordIterations
        return auth.runPasswordHash(on: eventLoop) { PasswordHasher.hash(password, iterations: iterations) }
    }

    private func registerAuthState(_ router: inout RPCServiceRouter, auth: MemberAuth) {
        router.unaryFuture(EtcdAuth.authEnable) { _, context in
            self.authWrite(context, auth: auth, .enable) { header in
                var answer = Etcdserverpb_AuthEnableResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.authDisable) { _, context in
            self.authWrite(context, auth: auth, .disable) { header in
                var answer = Etcdserverpb_AuthDisableResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.authStatus) { _, _ in
            self.member.linearizableRead { stateMachine in
                var answer = Etcdserverpb_AuthStatusResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.enabled = stateMachine.auth.isEnabled
                answer.authRevision = stateMachine.auth.revision
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.authenticate) { wire, context in
            self.authenticate(name: wire.name, password: wire.password, auth: auth, on: context.eventLoop)
        }
    }

    /// etcd 3.4's answer to a password login of a no-password user: the
    /// auth store's error, unmapped (gRPC `unknown`), as etcdctl prints it.
    static let noPasswordUser = RPCStatus(
        .unknown, "auth: authentication failed, password was given for no password user")

    /// Password checks of one Authenticate at most: a retry follows only an
    /// auth change that landed between the check and the login's apply.
    static let authenticateAttemptsMax = 3

    /// etcd's Authenticate: auth must be on; an unknown user and a wrong
    /// password fail alike ("authentication failed"), and an unknown user
    /// costs a KDF run too, so timing does not reveal which names exist.
    /// A no-password user is refused before any KDF, as etcd does. The
    /// login then goes through Raft with the token this member chose
    /// (`AuthOperation.authenticate`), so every member accepts the token;
    /// if the auth store changed since the password was checked, the check
    /// runs again, as etcd's loop does.
    private func authenticate(
        name: String, password: String, auth: MemberAuth, on eventLoop: any EventLoop,
        attempt: Int = 1
    ) -> EventLoopFuture<Etcdserverpb_AuthenticateResponse> {
        self.checkPassword(name: name, password: password, auth: auth, on: eventLoop).flatMap {
            checkedRevision in
            let token = auth.tokens.newToken()
            let login = AuthOperation.authenticate(user: name, token: token, checkedRevision: checkedRevision)
            return self.member.propose(.auth(login)).flatMapThrowing { result in
                if case .failed(let error) = result.response { throw error }
                var answer = Etcdserverpb_AuthenticateResponse()
                answer.header = self.header(revision: result.revision)
                answer.token = token
                return answer
            }
        }.flatMapError { error in
            guard error as? CairnError == .authOldRevision, attempt < Self.authenticateAttemptsMax else {
                return eventLoop.makeFailedFuture(Self.status(for: error))
            }
            return self.authenticate(
                name: name, password: password, auth: auth, on: eventLoop, attempt: attempt + 1)
        }
    }

    /// Checks `password` against the applied store (after a linearizable
    /// read, as etcd); the auth revision it was checked at.
    private func checkPassword(name: String, password: String, auth: MemberAuth, on eventLoop: any EventLoop)
        -> EventLoopFuture<UInt64>
    {
        self.member.linearizableRead { stateMachine -> (hash: [UInt8]?, authRevision: UInt64) in
            guard stateMachine.auth.isEnabled else { throw CairnError.authNotEnabled }
            let user = try? stateMachine.auth.user(name)
            if user?.noPassword == true { throw Self.noPasswordUser }
            return (user?.passwordHash, stateMachine.auth.revision)
        }.flatMap { found in
            let iterations = auth.configuration.passwordIterations
            return auth.runPasswordHash(on: eventLoop) { () -> Bool in
                guard let hash = found.hash else {
                    _ = PasswordHasher.hash(password, iterations: iterations)
                    return false
                }
                return PasswordHasher.verify(password, against: hash)
            }.flatMapThrowing { matches in
                guard matches else { throw CairnError.authFailed }
                return found.authRevision
            }
        }
    }

    private func registerUsers(_ router: inout RPCServiceRouter, auth: MemberAuth) {
        router.unaryFuture(EtcdAuth.userAdd) { wire, context in
            let noPassword = wire.hasOptions && wire.options.noPassword
            let eventLoop = context.eventLoop
            let prepare: @Sendable () -> EventLoopFuture<AuthOperation> = {
                guard !noPassword else {
                    return eventLoop.makeSucceededFuture(
                        .userAdd(name: wire.name, passwordHash: [], noPassword: true))
                }
                return self.hashPassword(wire.password, auth: auth, on: eventLoop).map { hash in
                    .userAdd(name: wire.name, passwordHash: hash, noPassword: false)
                }
            }
            return self.authWrite(context, auth: auth, prepare) { header in
                var answer = Etcdserverpb_AuthUserAddResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.userDelete) { wire, context in
            self.authWrite(context, auth: auth, .userDelete(name: wire.name)) { header in
                var answer = Etcdserverpb_AuthUserDeleteResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.userChangePassword) { wire, context in
            let eventLoop = context.eventLoop
            let prepare: @Sendable () -> EventLoopFuture<AuthOperation> = {
                self.hashPassword(wire.password, auth: auth, on: eventLoop).map { hash in
                    .userChangePassword(name: wire.name, passwordHash: hash)
                }
            }
            return self.authWrite(context, auth: auth, prepare) { header in
                var answer = Etcdserverpb_AuthUserChangePasswordResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.userGet) { wire, context in
            self.authRead(context, auth: auth) { stateMachine, identity in
                try stateMachine.auth.checkUserGet(identity, name: wire.name)
                var answer = Etcdserverpb_AuthUserGetResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.roles = try stateMachine.auth.user(wire.name).roles
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.userList) { _, context in
            self.authRead(context, auth: auth) { stateMachine, identity in
                try stateMachine.authorizeAdmin(identity)
                var answer = Etcdserverpb_AuthUserListResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.users = stateMachine.auth.userNames
                return answer
            }
        }
    }

    private func registerUserRoles(_ router: inout RPCServiceRouter, auth: MemberAuth) {
        router.unaryFuture(EtcdAuth.userGrantRole) { wire, context in
            self.authWrite(context, auth: auth, .userGrantRole(user: wire.user, role: wire.role)) { header in
                var answer = Etcdserverpb_AuthUserGrantRoleResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.userRevokeRole) { wire, context in
            self.authWrite(context, auth: auth, .userRevokeRole(user: wire.name, role: wire.role)) { header in
                var answer = Etcdserverpb_AuthUserRevokeRoleResponse()
                answer.header = header
                return answer
            }
        }
    }

    private func registerRoles(_ router: inout RPCServiceRouter, auth: MemberAuth) {
        router.unaryFuture(EtcdAuth.roleAdd) { wire, context in
            self.authWrite(context, auth: auth, .roleAdd(name: wire.name)) { header in
                var answer = Etcdserverpb_AuthRoleAddResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.roleDelete) { wire, context in
            self.authWrite(context, auth: auth, .roleDelete(name: wire.role)) { header in
                var answer = Etcdserverpb_AuthRoleDeleteResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.roleGrantPermission) { wire, context in
            guard let permission = AuthWire.permission(wire.perm) else {
                return context.eventLoop.makeFailedFuture(Self.status(for: CairnError.invalidAuthManagement))
            }
            return self.authWrite(
                context, auth: auth, .roleGrantPermission(role: wire.name, permission: permission)
            ) {
                header in
                var answer = Etcdserverpb_AuthRoleGrantPermissionResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.roleRevokePermission) { wire, context in
            let operation = AuthOperation.roleRevokePermission(
                role: wire.role, key: Key(Array(wire.key)), rangeEnd: Key(Array(wire.rangeEnd)))
            return self.authWrite(context, auth: auth, operation) { header in
                var answer = Etcdserverpb_AuthRoleRevokePermissionResponse()
                answer.header = header
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.roleGet) { wire, context in
            self.authRead(context, auth: auth) { stateMachine, identity in
                try stateMachine.auth.checkRoleGet(identity, role: wire.role)
                var answer = Etcdserverpb_AuthRoleGetResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.perm = try stateMachine.auth.role(wire.role).permissions.map(AuthWire.permission)
                return answer
            }
        }
        router.unaryFuture(EtcdAuth.roleList) { _, context in
            self.authRead(context, auth: auth) { stateMachine, identity in
                try stateMachine.authorizeAdmin(identity)
                var answer = Etcdserverpb_AuthRoleListResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.roles = stateMachine.auth.roleNames
                return answer
            }
        }
    }

    /// A read of the auth store with the caller's identity; linearizable,
    /// as etcd 3.4 serves these through Raft.
    private func authRead<Response: Sendable>(
        _ context: RPCContext, auth: MemberAuth,
        _ body: @escaping @Sendable (StateMachine, AuthIdentity?) throws -> Response
    ) -> EventLoopFuture<Response> {
        let credential = auth.credential(context)
        return self.member.linearizableRead { stateMachine in
            try body(stateMachine, try auth.identity(credential, stateMachine.auth))
        }.flatMapErrorThrowing { error in throw Self.status(for: error) }
    }
}

/// Permissions between the wire and the auth store.
enum AuthWire {
    /// nil for a permission type etcd does not define (etcd 3.4 stores it
    /// and never matches it; refusing it keeps the store meaningful).
    static func permission(_ wire: Authpb_Permission) -> AuthPermission? {
        let type: AuthPermissionType
        switch wire.permType {
        case .read: type = .read
        case .write: type = .write
        case .readwrite: type = .readWrite
        case .UNRECOGNIZED: return nil
        }
        return AuthPermission(type: type, key: Key(Array(wire.key)), rangeEnd: Key(Array(wire.rangeEnd)))
    }

    static func permission(_ permission: AuthPermission) -> Authpb_Permission {
        var wire = Authpb_Permission()
        wire.permType =
            switch permission.type {
            case .read: .read
            case .write: .write
            case .readWrite: .readwrite
            }
        wire.key = Data(permission.key.bytes)
        wire.rangeEnd = Data(permission.rangeEnd.bytes)
        return wire
    }
}

extension MemberServices {
    /// Watch create: read on the watched range. The check runs on the
    /// executor in the same task that registers the watch (the body of
    /// `Member.watchCreate`), so the create keeps its place among the
    /// stream's requests. A refusal is etcd's: a created-and-canceled
    /// response with watch ID -1 and the gRPC error's text as the reason.
    func watchCreate(
        _ wire: Etcdserverpb_WatchCreateRequest, stream streamID: WatchStreamID, context: RPCContext,
        refuse: @escaping @Sendable (Etcdserverpb_WatchResponse) -> Void
    ) {
        let credential = self.auth.credential(context)
        let request = WatchConversion.create(wire)
        let member = self.member
        member.eventLoop.execute {
            do {
                let identity = try self.auth.identity(credential, member.stateMachine.auth)
                try member.stateMachine.authorize(
                    identity, watch: KeyRange(key: request.key, rangeEnd: request.rangeEnd))
            } catch {
                var refusal = Etcdserverpb_WatchResponse()
                refusal.header = self.header(revision: member.stateMachine.status.revision)
                refusal.watchID = -1
                refusal.created = true
                refusal.canceled = true
                refusal.cancelReason = Self.watchRefusalReason(error)
                refuse(refusal)
                return
            }
            member.watchHub.watch(request, stream: streamID)
            member.stepWatchers()
        }
    }

    /// etcd's cancel reason for a refused watch: the gRPC error's text.
    static func watchRefusalReason(_ error: any Error) -> String {
        switch error as? CairnError {
        case .invalidAuthToken?:
            "rpc error: code = Unauthenticated desc = \(CairnError.invalidAuthToken.message)"
        case .authOldRevision?:
            "rpc error: code = InvalidArgument desc = \(CairnError.authOldRevision.message)"
        case .userEmpty?: "rpc error: code = InvalidArgument desc = \(CairnError.userEmpty.message)"
        default: "rpc error: code = PermissionDenied desc = \(CairnError.permissionDenied.message)"
        }
    }
}
