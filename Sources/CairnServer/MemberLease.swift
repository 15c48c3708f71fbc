import CairnAPI
import CairnCore
import CairnRPC
import CairnStateMachine
import Foundation
import NIOCore

extension Member {
    /// How often the executor looks for expired leases (etcd: 500 ms).
    static let leaseExpiryCheckInterval = TimeAmount.milliseconds(500)

    /// The single member is the lease primary: expired leases are revoked
    /// through the WAL like any write, and checkpoints are proposed when due.
    func startLeaseTimer() {
        self.eventLoop.execute {
            let task = self.eventLoop.scheduleRepeatedTask(
                initialDelay: Self.leaseExpiryCheckInterval, delay: Self.leaseExpiryCheckInterval
            ) { _ in
                self.proposeLeaseMaintenance()
            }
            self.appendTimers([task])
        }
    }

    private func proposeLeaseMaintenance() {
        let now = Self.now()
        for id in self.stateMachine.expiredLeases(now: now) {
            self.propose(.leaseRevoke(id)).whenFailure { error in
                self.logLine("revoking expired lease \(id) failed: \(error)")
            }
        }
        let checkpoints = self.stateMachine.leaseCheckpointsDue(now: now)
        if !checkpoints.isEmpty {
            self.propose(.leaseCheckpoint(checkpoints)).whenFailure { error in
                self.logLine("lease checkpoint failed: \(error)")
            }
        }
    }

    /// A keep-alive, served by the lessor on the executor: the renewed TTL,
    /// or 0 when the lease does not exist (etcd's answer, not an error).
    func keepAlive(_ id: LeaseID) -> EventLoopFuture<(ttlSeconds: Int64, revision: Int64)> {
        self.eventLoop.submit {
            let revision = self.stateMachine.status.revision
            do {
                let renewal = try self.stateMachine.renew(id, now: Self.now())
                if let checkpoint = renewal.checkpointToPropose {
                    self.propose(.leaseCheckpoint([checkpoint])).whenFailure { error in
                        self.logLine("lease checkpoint failed: \(error)")
                    }
                }
                return (renewal.ttlSeconds, revision)
            } catch CairnError.leaseNotFound {
                return (0, revision)
            }
        }
    }
}

/// One LeaseKeepAlive RPC: each request renews a lease; answers go out in
/// request order. Touched only on the connection's event loop.
final class KeepAliveSession: RPCStreamHandler, @unchecked Sendable {
    typealias Request = Etcdserverpb_LeaseKeepAliveRequest

    private let services: MemberServices
    private let stream: NIOLoopBound<RPCServerStream<Etcdserverpb_LeaseKeepAliveResponse>>
    private let connectionLoop: any EventLoop

    init(stream: RPCServerStream<Etcdserverpb_LeaseKeepAliveResponse>, services: MemberServices) {
        self.services = services
        self.connectionLoop = stream.eventLoop
        self.stream = NIOLoopBound(stream, eventLoop: stream.eventLoop)
    }

    func received(_ request: Request) {
        let id = request.id
        // Futures hop in submission order, so answers keep request order.
        self.services.member.keepAlive(LeaseID(id)).hop(to: self.connectionLoop).whenComplete {
            [self] result in
            let stream = self.stream.value
            switch result {
            case .success(let renewal):
                var response = Etcdserverpb_LeaseKeepAliveResponse()
                response.header = self.services.header(revision: renewal.revision)
                response.id = id
                response.ttl = renewal.ttlSeconds
                stream.send(response)
            case .failure(let error):
                stream.finish(MemberServices.status(for: error))
            }
        }
    }

    func receivedEnd() {
        // Answers still in flight are sent before the end (same loop order).
        self.services.member.eventLoop.submit {}.hop(to: self.connectionLoop).whenComplete { [self] _ in
            self.stream.value.finish(.ok)
        }
    }

    func cancelled() {}
}

extension MemberServices {
    func registerLease(_ router: inout RPCServiceRouter) {
        router.unaryFuture(EtcdLease.leaseGrant) { wire, _ in
            self.write(.leaseGrant(id: LeaseID(wire.id), ttlSeconds: wire.ttl)) { response, revision in
                guard case .leaseGrant(let id, let ttlSeconds) = response else {
                    throw Self.unexpected(response)
                }
                var answer = Etcdserverpb_LeaseGrantResponse()
                answer.header = self.header(revision: revision)
                answer.id = id.rawValue
                answer.ttl = ttlSeconds
                return answer
            }
        }
        router.unaryFuture(EtcdLease.leaseRevoke) { wire, _ in
            self.write(.leaseRevoke(LeaseID(wire.id))) { response, revision in
                guard case .leaseRevoke = response else { throw Self.unexpected(response) }
                var answer = Etcdserverpb_LeaseRevokeResponse()
                answer.header = self.header(revision: revision)
                return answer
            }
        }
        router.streaming(EtcdLease.leaseKeepAlive) { stream in
            KeepAliveSession(stream: stream, services: self)
        }
        router.unaryFuture(EtcdLease.leaseTimeToLive) { wire, _ in
            let now = Member.now()
            return self.member.read { stateMachine in
                var answer = Etcdserverpb_LeaseTimeToLiveResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.id = wire.id
                do {
                    let status = try stateMachine.lessor.timeToLive(
                        LeaseID(wire.id), keys: wire.keys, now: now)
                    answer.ttl = status.remainingTTLSeconds
                    answer.grantedTtl = status.grantedTTLSeconds
                    answer.keys = status.keys.map { Data($0.bytes) }
                } catch {
                    // etcd answers an unknown lease with TTL -1, not an error.
                    answer.ttl = -1
                }
                return answer
            }
        }
        router.unaryFuture(EtcdLease.leaseLeases) { _, _ in
            self.member.read { stateMachine in
                var answer = Etcdserverpb_LeaseLeasesResponse()
                answer.header = self.header(revision: stateMachine.status.revision)
                answer.leases = stateMachine.lessor.leaseIDs().map { id in
                    var status = Etcdserverpb_LeaseStatus()
                    status.id = id.rawValue
                    return status
                }
                return answer
            }
        }
    }
}
