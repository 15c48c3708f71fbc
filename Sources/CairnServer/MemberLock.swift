import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import CairnStateMachine
import Foundation
import NIOCore

/// etcd's v3lock service (`v3lockpb.Lock`), as etcd's server runs it over
/// its own KV, leases and watches (clientv3 `concurrency.Mutex`):
///
/// Lock(name, lease):
/// 1. The owner key is `<name>/<lease in hex>`. One txn: if the key was
///    never created, put it (empty value, under the lease) and read the
///    first-created key under `<name>/`; else read the key and that owner.
/// 2. The lock's revision is the put's revision, or the existing key's
///    create revision. If no key is older, the lock is held: answer the
///    txn's header and the key.
/// 3. Else wait until every key under the prefix created before it is
///    deleted (`DeletionWaiter`), then answer that final read's header.
/// 4. A client that cancels (or whose deadline passes) while waiting stops
///    waiting and its key is deleted (etcd's `Unlock` on a failed wait);
///    a waiter whose lease expires stops with "requested lease not found".
///
/// Unlock(key) deletes the key and answers the delete's header.
extension MemberServices {
    func registerLock(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdLock.lock) { wire, context in
            let cancellation = CallCancellation(executor: self.member.eventLoop)
            cancellation.arm(context)
            let prefix = Self.contendersPrefix(Array(wire.name))
            return self.authorize(context, range: .prefix(prefix), access: [.read, .write])
                .flatMap { self.lock(name: Array(wire.name), lease: wire.lease, cancellation: cancellation) }
                .always { _ in cancellation.finish() }
                .flatMapErrorThrowing { error in throw Self.clientStatus(for: error) }
        }
        router.unaryFuture(EtcdLock.unlock) { wire, context in
            let request = DeleteRangeRequest(key: Key(Array(wire.key)))
            do { try request.validate() } catch {
                return self.member.eventLoop.makeFailedFuture(Self.clientStatus(for: error))
            }
            return self.write(.deleteRange(request), authorizing: context) { response, revision in
                guard case .deleteRange = response else { throw Self.unexpected(response) }
                var answer = V3lockpb_UnlockResponse()
                answer.header = self.header(revision: revision)
                return answer
            }.flatMapErrorThrowing { error in throw Self.clientStatus(for: error) }
        }
    }

    /// Steps 1–4 of the type comment; completes on the member's executor.
    private func lock(name: [UInt8], lease requested: Int64, cancellation: CallCancellation)
        -> EventLoopFuture<V3lockpb_LockResponse>
    {
        let prefix = Self.contendersPrefix(name)
        return self.session(lease: requested).flatMap { lease in
            let key = Self.ownerKey(prefix: prefix, lease: lease)
            let owner = RequestOperation.range(Self.firstCreated(prefix))
            let txn = TxnRequest(
                compare: [Compare(key: key, target: .create(0), result: .equal)],
                success: [.put(PutRequest(key: key, value: [], lease: lease)), owner],
                failure: [.range(RangeRequest(key: key)), owner])
            return self.proposeTxn(txn).flatMap { response in
                self.acquire(
                    key: key, prefix: prefix, lease: lease, txn: response, cancellation: cancellation)
            }
        }.hop(to: self.member.eventLoop)
    }

    /// Steps 2–4: held at once, or after the earlier keys are deleted.
    private func acquire(
        key: Key, prefix: Key, lease: LeaseID, txn: TxnResponse, cancellation: CallCancellation
    ) -> EventLoopFuture<V3lockpb_LockResponse> {
        let loop = self.member.eventLoop
        let lockRevision: Int64
        let owner: KeyValue?
        do {
            lockRevision =
                txn.succeeded ? txn.revision : (try Self.rangeKeyValues(txn, 0).first?.createRevision ?? 0)
            owner = try Self.rangeKeyValues(txn, 1).first
        } catch {
            return loop.makeFailedFuture(error)
        }
        guard let owner, owner.createRevision != lockRevision else {
            return loop.makeSucceededFuture(self.lockResponse(key: key, revision: txn.revision))
        }
        return loop.flatSubmit {
            let waiter = DeletionWaiter(
                member: self.member, prefix: prefix, maxCreateRevision: lockRevision - 1, ownKey: key,
                lease: lease)
            let waited = waiter.start()
            cancellation.onCancel { waiter.cancel(RPCStatus(.cancelled, "context canceled")) }
            return waited.map { revision in
                self.lockResponse(key: key, revision: revision)
            }.flatMapError { error in
                // etcd unlocks (deletes the key) when the wait fails.
                self.member.propose(.deleteRange(DeleteRangeRequest(key: key))).whenFailure { failure in
                    self.member.logLine(
                        "unlocking after a failed lock wait failed: \(failure)", level: .warning)
                }
                return loop.makeFailedFuture(Self.status(for: error))
            }
        }
    }

    private func lockResponse(key: Key, revision: Int64) -> V3lockpb_LockResponse {
        var answer = V3lockpb_LockResponse()
        answer.header = self.header(revision: revision)
        answer.key = Data(key.bytes)
        return answer
    }
}
