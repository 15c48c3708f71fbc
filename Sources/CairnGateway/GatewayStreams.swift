import CairnAPI
import CairnRPC
import NIOConcurrencyHelpers
import NIOCore
import SwiftProtobuf

extension Gateway {
    /// Forwards a call that may wait for a long time (Lock, Campaign) over a
    /// cancellable upstream stream, so a client that gives up releases its
    /// upstream wait too (etcd then deletes the waiter's key).
    func forwardWaiting<Request: Sendable, Response: Sendable>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request, context: RPCContext,
        inbound: (TenantRuntime, Request) throws -> Request,
        outbound: @escaping @Sendable (TenantRuntime, Response) throws -> Response
    ) -> EventLoopFuture<Response> {
        let eventLoop = context.eventLoop
        do {
            let (tenant, rewritten, options) = try self.prepare(request, context: context, inbound: inbound)
            let promise = eventLoop.makePromise(of: Response.self)
            let answer = NIOLockedValueBox<Response?>(nil)
            let stream = self.upstream.connection(for: .leader).openStream(
                method, options: options,
                onResponse: { response in answer.withLockedValue { $0 = response } },
                onClose: { status in
                    guard status.code == .ok, let response = answer.withLockedValue({ $0 }) else {
                        if Self.suggestsLeaderMoved(status) { self.upstream.leaderSuspected() }
                        promise.fail(status.code == .ok ? RPCStatus(.internal, "gateway: no answer") : status)
                        return
                    }
                    promise.completeWith(Result { try outbound(tenant, response) })
                })
            stream.send(rewritten)
            stream.finish()
            context.onCancel { stream.cancel() }
            return promise.futureResult
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }
}

/// A client's LeaseKeepAlive stream: each request is checked against the
/// tenant's leases and handed to the coalescer; answers come back as the
/// leader gave them. A lease of another tenant is answered as etcd answers
/// a lease that does not exist (TTL 0), so nothing about it leaks.
final class KeepAliveSession: RPCStreamHandler {
    typealias Request = Etcdserverpb_LeaseKeepAliveRequest

    let stream: NIOLoopBound<RPCServerStream<Etcdserverpb_LeaseKeepAliveResponse>>
    let gateway: Gateway
    let tenant: TenantRuntime?

    init(stream: RPCServerStream<Etcdserverpb_LeaseKeepAliveResponse>, gateway: Gateway) {
        self.stream = NIOLoopBound(stream, eventLoop: stream.eventLoop)
        self.gateway = gateway
        do {
            self.tenant = try gateway.tenant(of: stream.context)
        } catch {
            self.tenant = nil
            let bound = self.stream
            stream.eventLoop.execute { bound.value.finish(RPCStatus(error)) }
        }
    }

    func received(_ request: Etcdserverpb_LeaseKeepAliveRequest) {
        guard let tenant else { return }
        do {
            try tenant.admitRequest(nowNanoseconds: Gateway.nowNanoseconds())
        } catch {
            self.stream.value.finish(error)
            return
        }
        if case .answer(var answer) = tenant.policy.namespace.inbound(request) {
            // Another tenant's lease: etcd's answer for one that does not exist.
            answer.header = self.gateway.upstream.lastHeader
            self.stream.value.send(answer)
            return
        }
        let stream = self.stream
        let eventLoop = stream.eventLoop
        self.gateway.keepAlives.keepAlive(tenant: tenant.name, lease: request.id) { response in
            eventLoop.execute { stream.value.send(response) }
        }.hop(to: eventLoop).whenSuccess { accepted in
            if !accepted {
                stream.value.finish(
                    RPCStatus(
                        .resourceExhausted,
                        "gateway: too many lease keep-alives waiting for tenant \(tenant.name); retry later"))
            }
        }
    }

    func receivedEnd() {
        self.stream.value.finish()
    }

    func cancelled() {}
}

/// A client's Election Observe stream, forwarded over one upstream stream
/// with the leader's key rewritten out of the namespace.
final class ObserveSession: RPCStreamHandler {
    typealias Request = V3electionpb_LeaderRequest

    let stream: NIOLoopBound<RPCServerStream<V3electionpb_LeaderResponse>>
    let gateway: Gateway
    var upstream: RPCClientStream<V3electionpb_LeaderRequest>?

    init(stream: RPCServerStream<V3electionpb_LeaderResponse>, gateway: Gateway) {
        self.stream = NIOLoopBound(stream, eventLoop: stream.eventLoop)
        self.gateway = gateway
    }

    func received(_ request: V3electionpb_LeaderRequest) {
        guard self.upstream == nil else { return }
        let context = self.stream.value.context
        let stream = self.stream
        let eventLoop = stream.eventLoop
        do {
            let (tenant, rewritten, options) = try self.gateway.prepare(request, context: context) {
                tenant, request in try tenant.policy.namespace.inbound(request)
            }
            let upstream = self.gateway.upstream.connection(for: .any).openStream(
                EtcdElection.observe, options: options,
                onResponse: { response in
                    let stripped = Result { try tenant.policy.namespace.outbound(response) }
                    eventLoop.execute {
                        switch stripped {
                        case .success(let response): stream.value.send(response)
                        case .failure(let error): stream.value.finish(RPCStatus(error))
                        }
                    }
                },
                onClose: { status in eventLoop.execute { stream.value.finish(status) } })
            upstream.send(rewritten)
            upstream.finish()
            self.upstream = upstream
        } catch {
            stream.value.finish(RPCStatus(error))
        }
    }

    func receivedEnd() {}

    func cancelled() {
        self.upstream?.cancel()
    }
}

/// A streaming call answered at once with an error: Snapshot, which
/// tenants may not make, or any stream of a client that is no tenant.
final class RefusedStream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: RPCStreamHandler {
    init(stream: RPCServerStream<Response>, status: RPCStatus) {
        let bound = NIOLoopBound(stream, eventLoop: stream.eventLoop)
        stream.eventLoop.execute { bound.value.finish(status) }
    }

    func received(_ request: Request) {}
    func receivedEnd() {}
    func cancelled() {}
}
