import CairnAPI
import CairnCore
import CairnRPC
import NIOCore

/// What Maintenance Defragment does on a member whose key space lives in
/// memory: etcd rewrites its bbolt file to give freed pages back to the
/// file system; Cairn's disk holds the WAL and snapshots, so the space to
/// give back is the WAL that a snapshot of the applied state makes
/// unnecessary. The member shell owns the WAL and the snapshot store, so
/// it implements this.
protocol StorageDefragmenting: AnyObject, Sendable {
    /// Saves a snapshot of the applied state now (not waiting for
    /// `snapshotEntriesInterval`), records it in the WAL, and releases the
    /// WAL segments it covers. Completes once all of it is durable; fails
    /// with the storage error otherwise.
    func snapshotAndReleaseSegments() -> EventLoopFuture<Void>
}

extension MemberServices {
    /// Defragment answers etcd's empty `DefragmentResponse` (with a header)
    /// once the snapshot is saved and the covered WAL segments are gone.
    func registerDefragment(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdMaintenance.defragment) { _, context in
            guard let storage = self.member as AnyObject as? any StorageDefragmenting else {
                return self.member.eventLoop.makeFailedFuture(
                    RPCStatus(.unimplemented, "defragment: this member cannot snapshot on demand"))
            }
            return self.authorizeMaintenance(context).flatMap {
                storage.snapshotAndReleaseSegments()
            }.flatMap {
                self.member.read { stateMachine in
                    var answer = Etcdserverpb_DefragmentResponse()
                    answer.header = self.header(revision: stateMachine.status.revision)
                    return answer
                }
            }.flatMapErrorThrowing { error in throw Self.status(for: error) }
        }
    }
}

extension Member: StorageDefragmenting {
    /// A snapshot at the applied index, its WAL marker, then the segments
    /// it covers released. With nothing applied since the last snapshot,
    /// only the release runs.
    func snapshotAndReleaseSegments() -> EventLoopFuture<Void> {
        self.eventLoop.flatSubmit {
            let promise = self.eventLoop.makePromise(of: Void.self)
            self.defragmentWaiters.append((self.replica.appliedIndex, promise))
            if self.replica.requestSnapshot() {
                self.drive()
            } else {
                self.flushSnapshotMarkersWhenIdle()
            }
            return promise.futureResult
        }
    }

    /// Flushes once the WAL has no other writer (retried every 10 ms).
    private func flushSnapshotMarkersWhenIdle() {
        if self.persistInFlight || self.markerFlushInFlight {
            self.eventLoop.scheduleTask(in: .milliseconds(10)) { self.flushSnapshotMarkersWhenIdle() }
        } else {
            self.flushSnapshotMarkers()
        }
    }
}
