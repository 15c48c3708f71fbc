import CairnAPI
import CairnRPC
import NIOCore
import NIOHPACK

/// How a forwarded call may be retried after a failure.
public enum RetryPolicy: Sendable {
    /// Reads: retried on another member after any UNAVAILABLE answer.
    case idempotent
    /// Writes: retried only when the request provably never left the
    /// gateway (`RPCStatus.requestNotSent`), so it cannot apply twice.
    case ifNotSent
}

extension Gateway {
    /// Retries after the first attempt; each goes to a freshly chosen member.
    static let retriesMax = 2

    /// Metadata of an upstream call made for `tenant`: its name as the
    /// on-behalf-of user (members with auth check its permissions), and the
    /// client's require-leader flag passed through.
    static func upstreamMetadata(tenant: String, client: HPACKHeaders) -> HPACKHeaders {
        var metadata: HPACKHeaders = [Gateway.onBehalfOfHeader: tenant]
        for value in client[canonicalForm: "hasleader"] {
            metadata.add(name: "hasleader", value: String(value))
        }
        return metadata
    }

    /// What the client still waits for, as an upstream timeout.
    static func remaining(_ context: RPCContext) -> TimeAmount? {
        context.deadline.map { $0 - .now() }
    }

    /// Admits a call for the tenant of its connection, then forwards it:
    /// `inbound` rewrites the request into the namespace (it may throw an
    /// etcd error, which is the answer), the leader or any member answers,
    /// `outbound` rewrites the answer back. UNAVAILABLE answers re-resolve
    /// the leader and retry as `retry` allows.
    func forward<Request: Sendable, Response: Sendable>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request, context: RPCContext,
        route: UpstreamCluster.Route, retry: RetryPolicy,
        inbound: (TenantRuntime, Request) throws -> Request,
        outbound: @escaping @Sendable (TenantRuntime, Response) throws -> Response
    ) -> EventLoopFuture<Response> {
        let eventLoop = context.eventLoop
        do {
            let (tenant, rewritten, options) = try self.prepare(request, context: context, inbound: inbound)
            return self.call(method, rewritten, options: options, route: route, retry: retry, on: eventLoop)
                .flatMapThrowing { response in try outbound(tenant, response) }
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }

    /// The common first steps of every forwarded call: the tenant of the
    /// connection (charged one request), the request rewritten into its
    /// namespace, and the upstream call's options (the client's remaining
    /// time, the tenant as the on-behalf-of user).
    func prepare<Request>(
        _ request: Request, context: RPCContext, inbound: (TenantRuntime, Request) throws -> Request
    ) throws -> (TenantRuntime, Request, RPCCallOptions) {
        let tenant = try self.admit(context)
        let rewritten = try inbound(tenant, request)
        let options = RPCCallOptions(
            timeout: Self.remaining(context),
            metadata: Self.upstreamMetadata(tenant: tenant.name, client: context.headers))
        return (tenant, rewritten, options)
    }

    /// One upstream unary call with the retry rules of `retry`.
    func call<Request: Sendable, Response: Sendable>(
        _ method: MethodDescriptor<Request, Response>, _ request: Request, options: RPCCallOptions,
        route: UpstreamCluster.Route, retry: RetryPolicy, on eventLoop: any EventLoop, attempt: Int = 0
    ) -> EventLoopFuture<Response> {
        let connection = self.upstream.connection(for: route)
        return connection.unaryFuture(method, request, options: options).hop(to: eventLoop).flatMapError {
            error in
            let status = RPCStatus(error)
            guard attempt < Self.retriesMax, Self.mayRetry(status, retry) else {
                if Self.suggestsLeaderMoved(status) { self.upstream.leaderSuspected() }
                return eventLoop.makeFailedFuture(status)
            }
            self.upstream.leaderSuspected()
            return self.upstream.refresh().hop(to: eventLoop).flatMap {
                self.call(
                    method, request, options: options, route: route, retry: retry, on: eventLoop,
                    attempt: attempt + 1)
            }
        }
    }

    static func mayRetry(_ status: RPCStatus, _ retry: RetryPolicy) -> Bool {
        switch retry {
        case .idempotent: return status.code == .unavailable
        case .ifNotSent: return status.code == .unavailable && status.requestNotSent
        }
    }

    /// etcd's answers that mean the member lost or never had the leader.
    static func suggestsLeaderMoved(_ status: RPCStatus) -> Bool {
        status.code == .unavailable
            || status.message == "etcdserver: not leader"
            || status.message == "etcdserver: leader changed"
            || status.message == "etcdserver: no leader"
    }
}
