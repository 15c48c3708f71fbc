import CairnAPI
import CairnCore
import CairnPeer
import CairnRPC
import CairnReplica
import CairnStateMachine
import NIOCore
import NIOHPACK

/// The Cluster service and MoveLeader: membership as the applied member
/// list says, changes through the leader (a follower forwards them to the
/// leader's client URL, as etcd forwards them to its leader).
///
/// With auth enabled, every change (add, remove, update, promote) and
/// MoveLeader needs the root role, as etcd's `checkMembershipOperationPermission`
/// and etcd 3.6's MoveLeader check; MemberList needs nothing.
/// A follower checks before forwarding and forwards the caller's token, so
/// the leader checks the same user again; a caller known by its certificate
/// (`--client-cert-auth`) is forwarded as an on-behalf-of user, which the
/// leader accepts only if the follower's certificate is listed in its
/// `--gateway-identities` (else the leader refuses the change).
extension MemberServices {
    func registerCluster(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdCluster.memberList) { _, _ in
            self.member.read { _ in self.memberListResponse() }
        }
        router.unaryFuture(EtcdCluster.memberAdd) { wire, context in
            let id = Bootstrap.memberID(
                peerURLs: wire.peerUrls, token: self.member.configuration.cluster.token)
            return self.membershipChange(EtcdCluster.memberAdd, wire, context, target: id) {
                member, requestID in
                for url in wire.peerUrls where (try? PeerURL(parsing: url)) == nil {
                    throw CairnError.memberBadURLs
                }
                guard !wire.peerUrls.isEmpty else { throw CairnError.memberBadURLs }
                let record = MemberRecord(
                    id: id, name: "", peerURLs: wire.peerUrls, isLearner: wire.isLearner)
                try member.replica.addMember(record, requestID: requestID)
            } answer: { members, id in
                var response = Etcdserverpb_MemberAddResponse()
                response.header = self.header(revision: self.member.currentRevision)
                response.members = members.map(Self.wire)
                if let added = members.first(where: { $0.id == id }) { response.member = Self.wire(added) }
                return response
            }
        }
        router.unaryFuture(EtcdCluster.memberRemove) { wire, context in
            self.membershipChange(EtcdCluster.memberRemove, wire, context, target: MemberID(wire.id)) {
                member, requestID in
                try member.replica.removeMember(MemberID(wire.id), requestID: requestID)
            } answer: { members, _ in
                var response = Etcdserverpb_MemberRemoveResponse()
                response.header = self.header(revision: self.member.currentRevision)
                response.members = members.map(Self.wire)
                return response
            }
        }
        router.unaryFuture(EtcdCluster.memberPromote) { wire, context in
            self.membershipChange(EtcdCluster.memberPromote, wire, context, target: MemberID(wire.id)) {
                member, requestID in
                try member.replica.promoteMember(MemberID(wire.id), requestID: requestID)
            } answer: { members, _ in
                var response = Etcdserverpb_MemberPromoteResponse()
                response.header = self.header(revision: self.member.currentRevision)
                response.members = members.map(Self.wire)
                return response
            }
        }
        router.unaryFuture(EtcdCluster.memberUpdate) { wire, context in
            self.authorizeAdmin(context).flatMap { self.memberUpdate(wire) }
        }
        router.unaryFuture(EtcdMaintenance.moveLeader) { wire, context in
            self.authorizeAdmin(context).flatMap { self.moveLeader(wire) }
        }
    }

    /// The root role when auth is enabled (etcd's admin check), mapped as
    /// etcd's cluster service maps it ("etcdserver: permission denied").
    func authorizeAdmin(_ context: RPCContext) -> EventLoopFuture<Void> {
        self.authorize(context) { stateMachine, identity in try stateMachine.authorizeAdmin(identity) }
    }

    /// MemberUpdate: the member's new peer URLs, proposed through Raft.
    private func memberUpdate(_ wire: Etcdserverpb_MemberUpdateRequest)
        -> EventLoopFuture<Etcdserverpb_MemberUpdateResponse>
    {
        self.member.eventLoop.flatSubmit {
            guard var record = self.member.replica.members.first(where: { $0.id.rawValue == wire.id })
            else {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: CairnError.memberNotFound))
            }
            record.peerURLs = wire.peerUrls
            return self.member.request { requestID in
                try self.member.replica.updateMember(record, requestID: requestID)
            }.map { _ in
                var response = Etcdserverpb_MemberUpdateResponse()
                response.header = self.header(revision: self.member.currentRevision)
                response.members = self.member.replica.members.map(Self.wire)
                return response
            }.flatMapErrorThrowing { error in throw Self.status(for: error) }
        }
    }

    /// MoveLeader: only the leader transfers; answers once `targetID` leads.
    private func moveLeader(_ wire: Etcdserverpb_MoveLeaderRequest)
        -> EventLoopFuture<Etcdserverpb_MoveLeaderResponse>
    {
        self.member.eventLoop.flatSubmit {
            let replica = self.member.replica
            guard replica.role == .leader else {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: CairnError.notLeader))
            }
            guard replica.confState.voters.contains(wire.targetID),
                wire.targetID != self.member.memberID.rawValue
            else {
                return self.member.eventLoop.makeFailedFuture(
                    Self.status(for: CairnError.badLeaderTransferee))
            }
            do {
                try replica.transferLeadership(to: MemberID(wire.targetID))
            } catch {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: Member.cairnError(error)))
            }
            self.member.drive()
            return self.member.waitForLeader(MemberID(wire.targetID)).map {
                var response = Etcdserverpb_MoveLeaderResponse()
                response.header = self.header(revision: self.member.currentRevision)
                return response
            }.flatMapErrorThrowing { error in throw Self.status(for: error) }
        }
    }

    /// A leader-only membership change, for an admin caller: run here when
    /// this member leads, else forwarded to the leader with the caller's
    /// credentials (`forwardedCredentials`). Executor only inside `submit`.
    private func membershipChange<Request: Sendable, Response: Sendable>(
        _ method: MethodDescriptor<Request, Response>, _ wire: Request, _ context: RPCContext,
        target: MemberID,
        submit: @escaping @Sendable (Member, UInt64) throws -> Void,
        answer: @escaping @Sendable ([MemberRecord], MemberID) -> Response
    ) -> EventLoopFuture<Response> {
        let member = self.member
        let caller = (headers: context.headers, credential: self.auth.credential(context))
        return self.authorizeAdmin(context).flatMap {
            member.eventLoop.flatSubmit {
                if member.replica.role != .leader {
                    guard let leader = member.replica.leader, let client = member.leaderClient(leader) else {
                        return member.eventLoop.makeFailedFuture(Self.status(for: CairnError.noLeader))
                    }
                    let options = RPCCallOptions(
                        timeout: .seconds(10),
                        metadata: Self.forwardedCredentials(
                            caller.headers, caller.credential, authEnabled: member.stateMachine.auth.isEnabled
                        ))
                    return client.connection().unaryFuture(method, wire, options: options).hop(
                        to: member.eventLoop)
                }
                return member.request { requestID in try submit(member, requestID) }.flatMapThrowing {
                    outcome in
                    guard case .membership(let members) = outcome else {
                        throw RPCStatusError.unexpected("\(outcome)")
                    }
                    return answer(members, target)
                }.flatMapErrorThrowing { error in throw Self.status(for: error) }
            }
        }
    }

    /// Who the caller is, as metadata for the leader: its token headers,
    /// or (with auth enabled) the user its certificate or its gateway names,
    /// as an on-behalf-of user.
    private static func forwardedCredentials(
        _ headers: HPACKHeaders, _ credential: MemberAuth.Credential, authEnabled: Bool
    ) -> HPACKHeaders {
        var metadata = HPACKHeaders()
        for name in ["token", "authorization"] {
            for value in headers[name] { metadata.add(name: name, value: value) }
        }
        guard authEnabled else { return metadata }
        switch credential {
        case .certificate(let user), .onBehalfOf(let user):
            metadata.add(name: MemberAuthConfiguration.onBehalfOfHeader, value: user)
        case .none, .token, .refusedOnBehalfOf:
            break
        }
        return metadata
    }

    /// MemberList as etcd answers it: every member, learners flagged.
    func memberListResponse() -> Etcdserverpb_MemberListResponse {
        var response = Etcdserverpb_MemberListResponse()
        response.header = self.header(revision: self.member.stateMachine.status.revision)
        response.members = self.member.replica.members.map(Self.wire)
        return response
    }

    static func wire(_ record: MemberRecord) -> Etcdserverpb_Member {
        var member = Etcdserverpb_Member()
        member.id = record.id.rawValue
        member.name = record.name
        member.peerUrls = record.peerURLs
        member.clientUrls = record.clientURLs
        member.isLearner = record.isLearner
        return member
    }
}

extension Member {
    /// The applied revision (executor only).
    var currentRevision: Int64 { self.stateMachine.status.revision }

    /// Completes once `target` leads (MoveLeader's answer), or fails after
    /// an election timeout with etcd's "leader changed"-style error.
    func waitForLeader(_ target: MemberID) -> EventLoopFuture<Void> {
        let promise = self.eventLoop.makePromise(of: Void.self)
        let deadline =
            NIODeadline.now()
            + .milliseconds(Int64(2 * self.configuration.cluster.electionTimeoutMilliseconds))
        self.checkLeader(target, deadline: deadline, promise: promise)
        return promise.futureResult
    }

    private func checkLeader(_ target: MemberID, deadline: NIODeadline, promise: EventLoopPromise<Void>) {
        if self.replica.leader == target {
            promise.succeed(())
        } else if NIODeadline.now() > deadline {
            promise.fail(CairnError.timeoutDueToLeaderFail)
        } else {
            self.eventLoop.scheduleTask(in: .milliseconds(10)) {
                self.checkLeader(target, deadline: deadline, promise: promise)
            }
        }
    }
}
