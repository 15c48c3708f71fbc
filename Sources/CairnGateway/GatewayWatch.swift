import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
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
            let views = tenant.watchViews
            return WatchSession(
                writer: stream, coalescer: self.watches, tenant: tenant.name,
                watchesMax: tenant.policy.limits.watchesMax,
                inbound: { request throws(RPCStatus) in try namespace.inbound(request) },
                outbound: { response in views.view(of: response, namespace) })
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

/// The tenant's view of the events last fanned out to its watchers.
///
/// One upstream response reaches every watcher of a broadcast with the same
/// events array (the coalescer hands each the same value); stripping the
/// prefix once for all of them, not once per watcher, saves a copy of every
/// event per watcher. An entry answers only for the very array it was made
/// from (same storage, which it keeps alive, so the storage cannot be reused
/// or changed) and the same namespace.
final class WatchViewMemo: Sendable {
    private struct Entry: Sendable {
        let prefix: Data
        let source: [Mvccpb_Event]
        let view: [Mvccpb_Event]
    }

    private let last = NIOLockedValueBox<Entry?>(nil)

    /// `Gateway.strip(response, namespace)`, from the memo when it holds
    /// these events.
    func view(of response: Etcdserverpb_WatchResponse, _ namespace: Namespace) -> Etcdserverpb_WatchResponse {
        let events = response.events
        guard !events.isEmpty else { return response }
        if let entry = self.last.withLockedValue({ $0 }), entry.prefix == namespace.prefix,
            Self.sameStorage(entry.source, events)
        {
            var result = response
            result.events = entry.view
            return result
        }
        let stripped = Gateway.strip(response, namespace)
        let entry = Entry(prefix: namespace.prefix, source: events, view: stripped.events)
        self.last.withLockedValue { $0 = entry }
        return stripped
    }

    private static func sameStorage(_ lhs: [Mvccpb_Event], _ rhs: [Mvccpb_Event]) -> Bool {
        lhs.count == rhs.count
            && lhs.withUnsafeBufferPointer { left in
                rhs.withUnsafeBufferPointer { right in left.baseAddress == right.baseAddress }
            }
    }
}
