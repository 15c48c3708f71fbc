import CairnAPI
import CairnRPC
import Foundation

/// Watch: the watched range in, the events out.
///
/// etcd's watch server reads an empty key as `"\0"` (the smallest key) and
/// does not refuse it, unlike KV; the same reading is applied here before
/// the key enters the namespace, so "watch everything" (`key` empty or
/// `"\0"`, `range_end` `"\0"`) becomes the whole namespace. Cancel and
/// progress requests carry no key and pass unchanged. Watching is a read,
/// open to read-only tenants.
extension Namespace {
    public func inbound(_ request: Etcdserverpb_WatchRequest) throws(RPCStatus) -> Etcdserverpb_WatchRequest {
        guard case .createRequest(let create) = request.requestUnion else { return request }
        var result = request
        result.createRequest = try self.inbound(create)
        return result
    }

    public func inbound(_ request: Etcdserverpb_WatchCreateRequest) throws(RPCStatus)
        -> Etcdserverpb_WatchCreateRequest
    {
        var result = request
        let key = request.key.isEmpty ? Self.fromKey : request.key
        (result.key, result.rangeEnd) = self.upstreamRange(key: key, rangeEnd: request.rangeEnd)
        return result
    }

    /// Events in the tenant's view. An event whose key or previous key lies
    /// outside the namespace is dropped whole.
    public func outbound(_ response: Etcdserverpb_WatchResponse) throws(RPCStatus)
        -> Etcdserverpb_WatchResponse
    {
        guard !response.events.isEmpty else { return response }
        var result = response
        result.events = response.events.compactMap(self.tenantEvent)
        return result
    }

    func tenantEvent(_ event: Mvccpb_Event) -> Mvccpb_Event? {
        var result = event
        guard let key = self.tenantKey(event.kv.key) else { return nil }
        result.kv.key = key
        if event.hasPrevKv {
            guard let previousKey = self.tenantKey(event.prevKv.key) else { return nil }
            result.prevKv.key = previousKey
        }
        return result
    }
}
