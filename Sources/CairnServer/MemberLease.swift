import CairnAPI
import CairnCore
import CairnRPC
import CairnReplica
import CairnStateMachine
import Foundation
import NIOCore

extension Member {
    /// A keep-alive: on the leader, the lessor renews the lease (the renewed
    /// TTL, or 0 when the lease does not exist: etcd's answer, not an
    /// error); a follower forwards it to the leader's client URL, as etcd
    /// forwards keep-alives over its peer HTTP API.
    func keepAlive(_ id: LeaseID) -> EventLoopFuture<(ttlSeconds: Int64, revision: Int64)> {
        self.eventLoop.flatSubmit {
            let revision = self.stateMachine.status.revision
            do {
                let ttl = try self.replica.renewLease(id)
                self.drive()
                return self.eventLoop.makeSucceededFuture((ttl, revision))
            } catch ReplicaError.rejected(CairnError.leaseNotFound) {
                return self.eventLoop.makeSucceededFuture((0, revision))
            } catch ReplicaError.notLeader(let leader) {
                guard let leader, let client = self.leaderClient(leader) else {
                    return self.eventLoop.makeFailedFuture(CairnError.noLeader)
                }
                return Self.forwardKeepAlive(id, client: client).hop(to: self.eventLoop)
            } catch {
                return self.eventLoop.makeFailedFuture(Self.cairnError(error))
            }
        }
    }

    /// A client of `leader`'s first client URL, kept while it stays leader:
    /// over TLS (`clientForwardingTLS`) when the URL is `https://`; nil
    /// when it is and this member has no client TLS.
    func leaderClient(_ leader: MemberID) -> RPCClient? {
        if let cached = self.forwardingClient, cached.member == leader { return cached.client }
        guard let url = self.replica.members.first(where: { $0.id == leader })?.clientURLs.first else {
            return nil
        }
        var configuration = RPCClientConfiguration()
        if url.lowercased().hasPrefix("https://") {
            guard let tls = self.configuration.clientForwardingTLS else {
                self.logLine(
                    "cannot forward to the leader's \(url): no client TLS (--cert-file, --key-file)",
                    level: .warning)
                return nil
            }
            configuration.tls = tls
        }
        guard
            let client = try? RPCClient(endpoints: [url], configuration: configuration, group: self.loopGroup)
        else { return nil }
        let previous = self.forwardingClient
        self.forwardingClient = (leader, client)
        if let previous { Task { await previous.client.shutdown() } }
        return client
    }

    /// One keep-alive over its own short stream to the leader.
    static func forwardKeepAlive(
        _ id: LeaseID, client: RPCClient
    ) -> EventLoopFuture<(ttlSeconds: Int64, revision: Int64)> {
        let connection = client.connection()
        let promise = connection.eventLoop.makePromise(of: (ttlSeconds: Int64, revision: Int64).self)
        var options = RPCCallOptions()
        options.timeout = .seconds(5)
        let stream = connection.openStream(
            EtcdLease.leaseKeepAlive, options: options,
            onResponse: { response in promise.succeed((response.ttl, response.header.revision)) },
            onClose: { status in promise.fail(status.code == .ok ? CairnError.leaderChanged : status) })
        var request = Etcdserverpb_LeaseKeepAliveRequest()
        request.id = id.rawValue
        stream.send(request)
        stream.finish()
        return promise.futureResult
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
            // Like etcd, the proposer picks an ID the client left to the server,
            // so every member applies the same grant whatever it was seeded with.
            let id = wire.id != 0 ? wire.id : Int64.random(in: 1...Int64.max)
            return self.write(.leaseGrant(id: LeaseID(id), ttlSeconds: wire.ttl)) { response, revision in
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
        router.unaryFuture(EtcdLease.leaseRevoke) { wire, context in
            self.write(.leaseRevoke(LeaseID(wire.id)), authorizing: context) { response, revision in
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
            // Linearizable, as etcd answers it once the applied index caught up.
            return self.member.linearizableRead { stateMachine in
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
            self.member.linearizableRead { stateMachine in
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
