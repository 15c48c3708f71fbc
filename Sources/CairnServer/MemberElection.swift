import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import CairnStateMachine
import Foundation
import NIOCore

/// etcd's v3election service (`v3electionpb.Election`), as etcd's server
/// runs it over its own KV, leases and watches (clientv3
/// `concurrency.Election`). Each candidate's key is `<name>/<lease in hex>`;
/// the leader is the first-created key under `<name>/`.
///
/// - Campaign: put the key if it was never created (else reuse it, and
///   proclaim the new value if it differs), then wait until every earlier
///   key is deleted (`DeletionWaiter`). Answers the first txn's header and
///   the leader key (name, key, create revision, lease). A client that
///   cancels while waiting resigns (its key is deleted).
/// - Proclaim: put the new value if the key's create revision is still the
///   leader's, else "election: not leader".
/// - Leader: the first-created key, else "election: no leader".
/// - Observe: the leader now (or the first put once there is one), then
///   each new value of it; when it is deleted, the next leader.
/// - Resign: delete the key if its create revision is still the leader's.
///
/// etcd answers its election errors as plain errors: gRPC code `unknown`.
extension MemberServices {
    static let notLeader = RPCStatus(.unknown, "election: not leader")
    static let noLeader = RPCStatus(.unknown, "election: no leader")
    static let missingLeaderKey = RPCStatus(.unknown, "\"leader\" field must be provided")

    func registerElection(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdElection.campaign) { wire, context in
            let cancellation = CallCancellation(executor: self.member.eventLoop)
            cancellation.arm(context)
            let prefix = Self.contendersPrefix(Array(wire.name))
            return self.authorize(context, range: .prefix(prefix), access: [.read, .write])
                .flatMap { self.campaign(wire, cancellation: cancellation) }
                .always { _ in cancellation.finish() }
                .flatMapErrorThrowing { error in throw Self.clientStatus(for: error) }
        }
        router.unaryFuture(EtcdElection.proclaim) { wire, context in
            guard wire.hasLeader else { return self.member.eventLoop.makeFailedFuture(Self.missingLeaderKey) }
            let leaderKey = KeyRange.single(Key(Array(wire.leader.key)))
            return self.authorize(context, range: leaderKey, access: [.read, .write]).flatMap {
                self.session(lease: wire.leader.lease)
            }.flatMap { lease in
                self.proclaim(
                    key: Key(Array(wire.leader.key)), revision: wire.leader.rev, lease: lease,
                    value: Array(wire.value))
            }.map { revision in
                var answer = V3electionpb_ProclaimResponse()
                answer.header = self.header(revision: revision)
                return answer
            }.flatMapErrorThrowing { error in throw Self.clientStatus(for: error) }
        }
        router.unaryFuture(EtcdElection.leader) { wire, context in
            let prefix = Self.contendersPrefix(Array(wire.name))
            let credential = self.auth.credential(context)
            // etcd's server reads the leader with a (linearizable) Get.
            return self.member.linearizableRead { stateMachine in
                try stateMachine.authorize(
                    try self.auth.identity(credential, stateMachine.auth), range: Self.firstCreated(prefix))
                let response = try stateMachine.store.range(Self.firstCreated(prefix))
                guard let leader = response.keyValues.first else { throw Self.noLeader }
                return self.leaderResponse(leader, revision: response.revision)
            }.flatMapErrorThrowing { error in throw Self.clientStatus(for: error) }
        }
        router.unaryFuture(EtcdElection.resign) { wire, context in
            guard wire.hasLeader else { return self.member.eventLoop.makeFailedFuture(Self.missingLeaderKey) }
            let leaderKey = KeyRange.single(Key(Array(wire.leader.key)))
            return self.authorize(context, range: leaderKey, access: [.read, .write]).flatMap {
                self.session(lease: wire.leader.lease)
            }.flatMap { _ in
                self.resign(key: Key(Array(wire.leader.key)), revision: wire.leader.rev)
            }.map { revision in
                var answer = V3electionpb_ResignResponse()
                answer.header = self.header(revision: revision)
                return answer
            }.flatMapErrorThrowing { error in throw Self.clientStatus(for: error) }
        }
        router.streaming(EtcdElection.observe) { stream in ObserveSession(stream: stream, services: self) }
    }

    private func campaign(_ wire: V3electionpb_CampaignRequest, cancellation: CallCancellation)
        -> EventLoopFuture<V3electionpb_CampaignResponse>
    {
        let prefix = Self.contendersPrefix(Array(wire.name))
        let value = Array(wire.value)
        return self.session(lease: wire.lease).flatMap { lease in
            let key = Self.ownerKey(prefix: prefix, lease: lease)
            let txn = TxnRequest(
                compare: [Compare(key: key, target: .create(0), result: .equal)],
                success: [.put(PutRequest(key: key, value: value, lease: lease))],
                failure: [.range(RangeRequest(key: key))])
            return self.proposeTxn(txn).flatMap { response in
                self.claim(key: key, lease: lease, value: value, txn: response).flatMap { leaderRevision in
                    self.awaitLeadership(
                        key: key, prefix: prefix, lease: lease, leaderRevision: leaderRevision,
                        cancellation: cancellation
                    ).map {
                        var answer = V3electionpb_CampaignResponse()
                        answer.header = self.header(revision: response.revision)
                        answer.leader.name = wire.name
                        answer.leader.key = Data(key.bytes)
                        answer.leader.rev = leaderRevision
                        answer.leader.lease = lease.rawValue
                        return answer
                    }
                }
            }
        }.hop(to: self.member.eventLoop)
    }

    /// The candidate key's create revision; an existing key with another
    /// value is proclaimed the new one first, as etcd does.
    private func claim(key: Key, lease: LeaseID, value: [UInt8], txn: TxnResponse) -> EventLoopFuture<Int64> {
        let loop = self.member.eventLoop
        guard !txn.succeeded else { return loop.makeSucceededFuture(txn.revision) }
        let existing: KeyValue
        do {
            guard let found = try Self.rangeKeyValues(txn, 0).first else { throw Self.notLeader }
            existing = found
        } catch {
            return loop.makeFailedFuture(Self.status(for: error))
        }
        guard existing.value != value else { return loop.makeSucceededFuture(existing.createRevision) }
        return self.proclaim(key: key, revision: existing.createRevision, lease: lease, value: value).map {
            _ in
            existing.createRevision
        }
    }

    /// Waits until every earlier candidate is gone; a cancelled wait resigns.
    private func awaitLeadership(
        key: Key, prefix: Key, lease: LeaseID, leaderRevision: Int64, cancellation: CallCancellation
    ) -> EventLoopFuture<Void> {
        let loop = self.member.eventLoop
        return loop.flatSubmit {
            let waiter = DeletionWaiter(
                member: self.member, prefix: prefix, maxCreateRevision: leaderRevision - 1, ownKey: key,
                lease: lease)
            let waited = waiter.start()
            cancellation.onCancel { waiter.cancel(RPCStatus(.cancelled, "context canceled")) }
            return waited.map { _ in () }.flatMapError { error in
                if cancellation.isCancelled {
                    self.resign(key: key, revision: leaderRevision).whenFailure { failure in
                        self.member.logLine(
                            "resigning a cancelled campaign failed: \(failure)", level: .warning)
                    }
                }
                return loop.makeFailedFuture(Self.status(for: error))
            }
        }
    }

    /// Puts `value` if `key` still has create revision `revision`; answers
    /// the txn's revision.
    private func proclaim(key: Key, revision: Int64, lease: LeaseID, value: [UInt8]) -> EventLoopFuture<Int64>
    {
        let txn = TxnRequest(
            compare: [Compare(key: key, target: .create(revision), result: .equal)],
            success: [.put(PutRequest(key: key, value: value, lease: lease))])
        return self.proposeTxn(txn).flatMapThrowing { response in
            guard response.succeeded else { throw Self.notLeader }
            return response.revision
        }
    }

    /// Deletes `key` if it still has create revision `revision`; answers
    /// the txn's revision (etcd's Resign succeeds either way).
    private func resign(key: Key, revision: Int64) -> EventLoopFuture<Int64> {
        let txn = TxnRequest(
            compare: [Compare(key: key, target: .create(revision), result: .equal)],
            success: [.deleteRange(DeleteRangeRequest(key: key))])
        return self.proposeTxn(txn).map(\.revision)
    }

    func leaderResponse(_ leader: KeyValue, revision: Int64) -> V3electionpb_LeaderResponse {
        var answer = V3electionpb_LeaderResponse()
        answer.header = self.header(revision: revision)
        answer.kv = WireConversion.keyValue(leader)
        return answer
    }
}
