import CairnAPI
import CairnRPC
import Foundation

/// Lock and Election: names and keys in, keys out.
///
/// etcd's lock and election servers build every key from the name
/// (`<name>/<lease in hex>`) and range over `<name>/`, so a prefixed name
/// keeps all of a lock's or an election's keys in the namespace; an empty
/// name is allowed, as in etcd, and its keys sit under `<prefix>/`. The
/// keys a client sends back (Unlock, Proclaim, Resign) are the ones it was
/// given, prefixed again on the way in. These servers answer through etcd's
/// own client, so their errors carry code `unknown` with etcd's text
/// (`Refusal.coordination…`).
///
/// Lease 0 in Lock or Campaign is passed on: etcd's servers then grant a
/// lease of their own for the call (orphaned, it expires after its TTL).
/// That lease carries no tenant's tag, so a Proclaim or Resign naming it in
/// its leader key is refused like any lease not the tenant's; a shell that
/// wants lease-0 campaigns to be resumable grants a tagged lease first and
/// sends that instead. Leader and Observe are reads, open to read-only
/// tenants; everything else writes.
extension Namespace {
    public func inbound(_ request: V3lockpb_LockRequest) throws(RPCStatus) -> V3lockpb_LockRequest {
        try self.requireWrite(Refusal.coordinationPermissionDenied)
        try self.requireOwnLease(request.lease, refusal: Refusal.coordinationLeaseNotFound)
        var result = request
        result.name = self.upstreamKey(request.name)
        return result
    }

    public func outbound(_ response: V3lockpb_LockResponse) throws(RPCStatus) -> V3lockpb_LockResponse {
        var result = response
        result.key = try self.requiredTenantKey(response.key)
        return result
    }

    public func inbound(_ request: V3lockpb_UnlockRequest) throws(RPCStatus) -> V3lockpb_UnlockRequest {
        if request.key.isEmpty { throw Refusal.coordinationKeyNotProvided }
        try self.requireWrite(Refusal.coordinationPermissionDenied)
        var result = request
        result.key = self.upstreamKey(request.key)
        return result
    }

    public func inbound(_ request: V3electionpb_CampaignRequest) throws(RPCStatus)
        -> V3electionpb_CampaignRequest
    {
        try self.requireWrite(Refusal.coordinationPermissionDenied)
        try self.requireOwnLease(request.lease, refusal: Refusal.coordinationLeaseNotFound)
        var result = request
        result.name = self.upstreamKey(request.name)
        return result
    }

    public func outbound(_ response: V3electionpb_CampaignResponse) throws(RPCStatus)
        -> V3electionpb_CampaignResponse
    {
        guard response.hasLeader else { return response }
        var result = response
        result.leader = try self.tenantLeaderKey(response.leader)
        return result
    }

    public func inbound(_ request: V3electionpb_ProclaimRequest) throws(RPCStatus)
        -> V3electionpb_ProclaimRequest
    {
        guard request.hasLeader else { throw Refusal.missingLeaderKey }
        var result = request
        result.leader = try self.upstreamLeaderKey(request.leader)
        return result
    }

    /// Leader and Observe (same messages): the election's name.
    public func inbound(_ request: V3electionpb_LeaderRequest) throws(RPCStatus) -> V3electionpb_LeaderRequest
    {
        var result = request
        result.name = self.upstreamKey(request.name)
        return result
    }

    public func outbound(_ response: V3electionpb_LeaderResponse) throws(RPCStatus)
        -> V3electionpb_LeaderResponse
    {
        guard response.hasKv else { return response }
        var result = response
        result.kv.key = try self.requiredTenantKey(response.kv.key)
        return result
    }

    public func inbound(_ request: V3electionpb_ResignRequest) throws(RPCStatus) -> V3electionpb_ResignRequest
    {
        guard request.hasLeader else { throw Refusal.missingLeaderKey }
        var result = request
        result.leader = try self.upstreamLeaderKey(request.leader)
        return result
    }

    /// A leader key a client hands back (Proclaim, Resign). etcd's server
    /// turns it into a txn on `key`, so an empty key fails as that txn
    /// would; its lease is used for the call, so it must be the tenant's.
    func upstreamLeaderKey(_ leader: V3electionpb_LeaderKey) throws(RPCStatus) -> V3electionpb_LeaderKey {
        if leader.key.isEmpty { throw Refusal.coordinationKeyNotProvided }
        try self.requireWrite(Refusal.coordinationPermissionDenied)
        try self.requireOwnLease(leader.lease, refusal: Refusal.coordinationLeaseNotFound)
        var result = leader
        result.name = self.upstreamKey(leader.name)
        result.key = self.upstreamKey(leader.key)
        return result
    }

    func tenantLeaderKey(_ leader: V3electionpb_LeaderKey) throws(RPCStatus) -> V3electionpb_LeaderKey {
        var result = leader
        result.name = try self.requiredTenantKey(leader.name)
        result.key = try self.requiredTenantKey(leader.key)
        return result
    }
}

extension Namespace.Refusal {
    /// Proclaim or Resign without a leader key (etcd's election server's
    /// `ErrMissingLeaderKey`, code `unknown`).
    public static let missingLeaderKey = RPCStatus(.unknown, "\"leader\" field must be provided")
}
