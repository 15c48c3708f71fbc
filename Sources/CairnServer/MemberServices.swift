import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import CairnStateMachine
import Foundation
import NIOCore

/// The etcd v3 services a member answers, as one router. Methods not listed
/// here are not registered, so the router answers them `unimplemented`.
///
/// Every handler hops to the member's executor (`Member.propose` for writes,
/// `Member.read` for reads) and maps failures through `MemberServices.status`.
public struct MemberServices: Sendable {
    let member: Member
    /// Users, roles, tokens and the authorization gate (`MemberAuth.swift`).
    let auth: MemberAuth
    /// Version reported by Maintenance Status: the etcd API version we speak.
    public static let reportedVersion = "3.4.0"

    public init(member: Member, auth: MemberAuth = MemberAuth()) {
        self.member = member
        self.auth = auth
        auth.follow(member)
    }

    /// The ONE mapping from anything a member fails with to a gRPC status:
    /// etcd's errors with their code and text, storage failures as
    /// `unavailable`, anything else as `unknown`.
    public static func status(for error: any Error) -> RPCStatus {
        switch error {
        case let error as CairnError:
            return RPCStatus(RPCStatus.Code(rawValue: error.code.rawValue) ?? .unknown, error.message)
        case let error as MemberError:
            return RPCStatus(.unavailable, "etcdserver: \(error)")
        case let error as RPCStatus:
            return error
        default:
            return RPCStatus(.unknown, String(describing: error))
        }
    }

    /// The response header etcd puts on every answer.
    func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = self.member.clusterID.rawValue
        header.memberID = self.member.memberID.rawValue
        header.revision = revision
        header.raftTerm = self.member.raftTerm
        return header
    }

    /// The router with every service built so far.
    public func router() -> RPCServiceRouter {
        var router = RPCServiceRouter()
        self.registerKV(&router)
        router.streaming(EtcdWatch.watch) { stream in WatchSession(stream: stream, services: self) }
        self.registerLease(&router)
        self.registerAuth(&router, auth: self.auth)
        self.registerCluster(&router)
        self.registerMaintenance(&router)
        self.registerSnapshot(&router)
        self.registerAlarm(&router)
        self.registerLock(&router)
        self.registerElection(&router)
        self.registerDefragment(&router)
        return router
    }

    /// Runs a write and converts its result, mapping errors to statuses.
    /// `onExecutor`: the caller runs on the member's executor already.
    func write<Response: Sendable>(
        _ operation: Command.Operation, onExecutor: Bool = false,
        _ convert: @escaping @Sendable (ApplyResult.Response, Int64) throws -> Response
    ) -> EventLoopFuture<Response> {
        let proposed = onExecutor ? self.member.proposeOnExecutor(operation) : self.member.propose(operation)
        return proposed.flatMapThrowing { result in
            if case .failed(let error) = result.response { throw error }
            return try convert(result.response, result.revision)
        }.flatMapErrorThrowing { error in throw Self.status(for: error) }
    }

    private func registerKV(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdKV.range) { wire, context in
            let request: RangeRequest
            do {
                request = try WireConversion.range(wire)
            } catch {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: error))
            }
            // etcd's default is linearizable; `serializable` reads the local state.
            return self.read(context, serializable: wire.serializable) { stateMachine, identity in
                try stateMachine.authorize(identity, range: request)
                let response = try stateMachine.store.range(request)
                return WireConversion.range(response, header: self.header(revision: response.revision))
            }
        }
        router.unaryFuture(EtcdKV.put) { wire, context in
            let request = WireConversion.put(wire)
            do { try request.validate() } catch {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: error))
            }
            return self.write(.put(request), authorizing: context) { response, revision in
                guard case .put(let put) = response else { throw Self.unexpected(response) }
                return WireConversion.put(put, header: self.header(revision: revision))
            }
        }
        router.unaryFuture(EtcdKV.deleteRange) { wire, context in
            let request = WireConversion.deleteRange(wire)
            do { try request.validate() } catch {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: error))
            }
            return self.write(.deleteRange(request), authorizing: context) { response, revision in
                guard case .deleteRange(let delete) = response else { throw Self.unexpected(response) }
                return WireConversion.deleteRange(delete, header: self.header(revision: revision))
            }
        }
        router.unaryFuture(EtcdKV.txn) { wire, context in
            let request: TxnRequest
            do { request = try WireConversion.txn(wire) } catch {
                return self.member.eventLoop.makeFailedFuture(Self.status(for: error))
            }
            if request.isReadOnly {
                // As etcd: a txn of ranges is a read, after a ReadIndex unless
                // every range asks for a serializable answer.
                return self.read(context, serializable: Self.isSerializable(wire)) { stateMachine, identity in
                    try stateMachine.authorize(identity, txn: request)
                    let response = try stateMachine.store.readOnlyTxn(request)
                    return WireConversion.txn(response, header: self.header(revision: response.revision))
                }
            }
            return self.write(.txn(request), authorizing: context) { response, revision in
                guard case .txn(let txn) = response else { throw Self.unexpected(response) }
                return WireConversion.txn(txn, header: self.header(revision: revision))
            }
        }
        router.unaryFuture(EtcdKV.compact) { wire, _ in
            self.write(.compact(revision: wire.revision)) { response, revision in
                guard case .compact = response else { throw Self.unexpected(response) }
                var answer = Etcdserverpb_CompactionResponse()
                answer.header = self.header(revision: revision)
                return answer
            }
        }
    }

    /// A KV read as the caller's identity: on the local state when
    /// `serializable`, else after a ReadIndex; errors mapped to statuses.
    private func read<Response: Sendable>(
        _ context: RPCContext, serializable: Bool,
        _ body: @escaping @Sendable (StateMachine, AuthIdentity?) throws -> Response
    ) -> EventLoopFuture<Response> {
        let credential = self.auth.credential(context)
        let run: @Sendable (StateMachine) throws -> Response = { stateMachine in
            try body(stateMachine, try self.auth.identity(credential, stateMachine.auth))
        }
        let answer = serializable ? self.member.read(run) : self.member.linearizableRead(run)
        return answer.flatMapErrorThrowing { error in throw Self.status(for: error) }
    }

    /// etcd's `isTxnSerializable`: every operation of both branches is a
    /// serializable range (a nested txn is not).
    static func isSerializable(_ wire: Etcdserverpb_TxnRequest) -> Bool {
        (wire.success + wire.failure).allSatisfy { operation in
            if case .requestRange(let range) = operation.request { return range.serializable }
            return false
        }
    }

    static func unexpected(_ response: ApplyResult.Response) -> RPCStatus {
        RPCStatus(.internal, "unexpected apply result \(response)")
    }

    private func registerMaintenance(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdMaintenance.status) { _, _ in
            self.member.read { stateMachine in
                let status = stateMachine.status
                var response = Etcdserverpb_StatusResponse()
                response.header = self.header(revision: status.revision)
                response.version = Self.reportedVersion
                response.dbSize = Int64(status.approximateSizeBytes)
                response.dbSizeInUse = Int64(status.approximateSizeBytes)
                let replica = self.member.replica
                response.leader = replica.leader?.rawValue ?? 0
                response.raftIndex = replica.committedIndex
                response.raftAppliedIndex = replica.appliedIndex
                response.raftTerm = replica.term
                response.isLearner = replica.confState.learners.contains(self.member.memberID.rawValue)
                if replica.leader == nil { response.errors = [CairnError.noLeader.message] }
                return response
            }
        }
        router.unaryFuture(EtcdMaintenance.hashKV) { wire, context in
            let credential = self.auth.credential(context)
            return self.member.read { stateMachine in
                try self.authorizeMaintenance(credential, stateMachine)
                let hash = try stateMachine.hash(revision: wire.revision)
                var response = Etcdserverpb_HashKVResponse()
                response.header = self.header(revision: stateMachine.status.revision)
                response.hash = hash.hash
                response.compactRevision = hash.compactRevision
                return response
            }.flatMapErrorThrowing { error in throw Self.status(for: error) }
        }
    }
}
