import CairnRPC

/// Finds the tenant of a connection from its proven certificate identity.
///
/// Built once per load of the tenants file; a lookup is a few dictionary
/// probes (one per name on the certificate). An identity string matches a
/// SAN URI, a SAN DNS name or the subject's CN exactly (byte for byte).
/// IP address SANs name hosts, not tenants, and never match.
///
/// Properties:
/// 1. A certificate whose names select no tenant has none (`nil`).
/// 2. A certificate whose names select two different tenants is refused
///    (`ambiguousIdentity`), whatever the order of its names: which tenant
///    it gets must never depend on how its SANs happen to be listed. The
///    tenants file already refuses an identity claimed by two tenants, so
///    this takes a certificate carrying two tenants' identities.
public struct TenantDirectory: Sendable {
    public let tenants: [Tenant]
    private let tenantIndexByIdentity: [String: Int]

    public init(tenants: [Tenant]) {
        self.tenants = tenants
        var index: [String: Int] = [:]
        for (position, tenant) in tenants.enumerated() {
            for identity in tenant.identities where index[identity] == nil {
                index[identity] = position
            }
        }
        self.tenantIndexByIdentity = index
    }

    public init(file: TenantsFile) {
        self.init(tenants: file.tenants)
    }

    /// The tenant of a peer, nil for none; throws when its names select
    /// more than one tenant.
    public func tenant(for peer: PeerIdentity) throws(RPCStatus) -> Tenant? {
        let matches = self.tenants(matching: peer)
        guard matches.count <= 1 else { throw Self.ambiguousIdentity }
        return matches.first
    }

    /// Every tenant the peer's names select, in file order (for diagnosis:
    /// the operator wants to know which tenants an ambiguous certificate hits).
    public func tenants(matching peer: PeerIdentity) -> [Tenant] {
        var positions: Set<Int> = []
        for name in Self.names(of: peer) {
            if let position = self.tenantIndexByIdentity[name] { positions.insert(position) }
        }
        return positions.sorted().map { self.tenants[$0] }
    }

    static func names(of peer: PeerIdentity) -> [String] {
        var names = peer.uris + peer.dnsNames
        if let commonName = peer.commonName { names.append(commonName) }
        return names
    }

    /// The answer to a certificate that selects several tenants. It names
    /// none of them: the client must not learn of other tenants.
    public static let ambiguousIdentity = RPCStatus(
        .permissionDenied, "gateway: the client certificate's identities select more than one tenant")
}
