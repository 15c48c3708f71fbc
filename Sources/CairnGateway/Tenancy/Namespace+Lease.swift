import CairnAPI
import CairnRPC
import Foundation

/// Lease: ownership by ID tag, so tenants never touch each other's leases.
///
/// etcd lease IDs are global and have no key to prefix, so a tenant could
/// otherwise revoke, keep alive, inspect or attach keys to another tenant's
/// lease by guessing its ID. Every tenant has a `leaseTag` (31 bits,
/// non-zero, a stable hash of its name; the tenants file refuses two tenants
/// with the same tag), and every lease granted through the gateway has the
/// ID `tag << 32 | random32`: positive, and the tenant's by construction.
/// No table of leases is kept, so the rule survives gateway restarts and
/// holds across gateways.
///
/// A request naming a lease that is not the tenant's gets exactly etcd's
/// answer for a lease that does not exist: `LeaseRevoke`, `Put` and txn puts
/// fail with "etcdserver: requested lease not found" (NotFound),
/// `LeaseKeepAlive` answers TTL 0 and `LeaseTimeToLive` TTL -1 (see
/// `Forwarding`), and Lock and Campaign fail as etcd's lock and election
/// servers do. A client-chosen ID in `LeaseGrant` must carry the tenant's tag,
/// else the grant is refused with etcd's permission error (the same answer
/// whether or not that lease exists).
///
/// Read-only tenants may keep alive, inspect and list their leases, but not
/// grant or revoke them: a revoke deletes the attached keys, and a lease
/// without keys is of no use to a tenant that cannot put.
extension Namespace {
    /// The lease tag of a tenant: FNV-1a (64 bits) of its name's UTF-8,
    /// folded to 31 bits; 0 becomes 1, as 0 marks "no lease".
    public static func leaseTag(forTenantNamed name: String) -> UInt32 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let folded = UInt32(truncatingIfNeeded: hash >> 32) ^ UInt32(truncatingIfNeeded: hash)
        let tag = folded & Self.leaseTagMax
        return tag == 0 ? 1 : tag
    }

    /// Whether `id` is one of this tenant's leases (carries its tag).
    public func ownsLease(_ id: Int64) -> Bool {
        id > 0 && UInt64(id) >> 32 == UInt64(self.leaseTag)
    }

    /// The tenant's lease ID with the given low 32 bits.
    public func leaseID(randomBits: UInt32) -> Int64 {
        Int64(self.leaseTag) << 32 | Int64(randomBits)
    }

    /// Lease 0 means "no lease" and is always allowed; any other lease must
    /// be the tenant's.
    func requireOwnLease(_ id: Int64, refusal: RPCStatus) throws(RPCStatus) {
        if id != 0 && !self.ownsLease(id) { throw refusal }
    }

    /// ID 0 gets a tagged random ID drawn from `generator`; a client-chosen
    /// ID must carry the tenant's tag. The caller may retry with a new ID
    /// when the cluster answers "lease already exists" for a drawn one.
    public func inbound(
        _ request: Etcdserverpb_LeaseGrantRequest, using generator: inout some RandomNumberGenerator
    ) throws(RPCStatus) -> Etcdserverpb_LeaseGrantRequest {
        try self.requireWrite()
        var result = request
        if request.id == 0 {
            result.id = self.leaseID(randomBits: generator.next())
        } else if !self.ownsLease(request.id) {
            throw Refusal.permissionDenied
        }
        return result
    }

    /// `inbound(_:using:)` with the system's random numbers.
    public func inbound(_ request: Etcdserverpb_LeaseGrantRequest) throws(RPCStatus)
        -> Etcdserverpb_LeaseGrantRequest
    {
        var generator = SystemRandomNumberGenerator()
        return try self.inbound(request, using: &generator)
    }

    /// A granted ID outside the tenant's tag would be a lease it could never
    /// use again; a correct cluster grants exactly the ID asked for.
    public func outbound(_ response: Etcdserverpb_LeaseGrantResponse) throws(RPCStatus)
        -> Etcdserverpb_LeaseGrantResponse
    {
        guard response.id == 0 || self.ownsLease(response.id) else { throw Refusal.foreignLeaseInAnswer }
        return response
    }

    public func inbound(_ request: Etcdserverpb_LeaseRevokeRequest) throws(RPCStatus)
        -> Etcdserverpb_LeaseRevokeRequest
    {
        try self.requireWrite()
        guard self.ownsLease(request.id) else { throw Refusal.leaseNotFound }
        return request
    }

    /// The tenant's own leases are renewed upstream; any other answers
    /// etcd's TTL 0 for a lease that does not exist.
    public func inbound(_ request: Etcdserverpb_LeaseKeepAliveRequest)
        -> Forwarding<Etcdserverpb_LeaseKeepAliveRequest, Etcdserverpb_LeaseKeepAliveResponse>
    {
        guard self.ownsLease(request.id) else {
            var answer = Etcdserverpb_LeaseKeepAliveResponse()
            answer.id = request.id
            answer.ttl = 0
            return .answer(answer)
        }
        return .forward(request)
    }

    /// The tenant's own leases are asked upstream; any other answers etcd's
    /// TTL -1 for a lease that does not exist.
    public func inbound(_ request: Etcdserverpb_LeaseTimeToLiveRequest)
        -> Forwarding<Etcdserverpb_LeaseTimeToLiveRequest, Etcdserverpb_LeaseTimeToLiveResponse>
    {
        guard self.ownsLease(request.id) else {
            var answer = Etcdserverpb_LeaseTimeToLiveResponse()
            answer.id = request.id
            answer.ttl = -1
            return .answer(answer)
        }
        return .forward(request)
    }

    /// Attached keys in the tenant's view; keys outside the namespace are
    /// dropped.
    public func outbound(_ response: Etcdserverpb_LeaseTimeToLiveResponse) throws(RPCStatus)
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        var result = response
        result.keys = response.keys.compactMap(self.tenantKey)
        return result
    }

    /// Only the tenant's own leases.
    public func outbound(_ response: Etcdserverpb_LeaseLeasesResponse) throws(RPCStatus)
        -> Etcdserverpb_LeaseLeasesResponse
    {
        var result = response
        result.leases = response.leases.filter { self.ownsLease($0.id) }
        return result
    }
}

extension Namespace.Refusal {
    /// The cluster granted a lease ID without the tenant's tag.
    public static let foreignLeaseInAnswer = RPCStatus(
        .internal, "gateway: the cluster granted a lease ID outside the tenant's lease tag")
}
