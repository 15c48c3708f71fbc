import CairnAPI
import CairnRPC
import NIOCore

extension Gateway {
    /// Watch: each client stream is a `WatchSession` over the shared
    /// coalescer; creates are rewritten into the tenant's namespace and
    /// every response is stripped of it on the way out.
    func registerWatch(_ router: inout RPCServiceRouter) {
        router.streaming(EtcdWatch.watch) { stream -> any RPCStreamHandler<Etcdserverpb_WatchRequest> in
            let tenant: TenantRuntime
            do {
                tenant = try self.admit(stream.context)
            } catch {
                return RefusedStream(stream: stream, status: RPCStatus(error))
            }
            let namespace = tenant.policy.namespace
            return WatchSession(
                writer: stream, coalescer: self.watches, tenant: tenant.name,
                watchesMax: tenant.policy.limits.watchesMax,
                inbound: { request throws(RPCStatus) in try namespace.inbound(request) },
                outbound: { response in Self.strip(response, namespace) })
        }
    }

    /// A response in the tenant's view. A watch only ever carries keys of
    /// its (namespaced) range, so a failure here means a broken upstream:
    /// the events are dropped rather than shown with a foreign key.
    static func strip(_ response: Etcdserverpb_WatchResponse, _ namespace: Namespace)
        -> Etcdserverpb_WatchResponse
    {
        if let stripped = try? namespace.outbound(response) { return stripped }
        var empty = response
        empty.events = []
        return empty
    }
}
