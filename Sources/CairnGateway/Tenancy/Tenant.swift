import Foundation

/// One tenant of a gateway: who it is (certificate identities), where its
/// keys live (the namespace prefix), what it may do there and how much.
///
/// Tenants are made only by loading a `TenantsFile`, which validates them
/// together (names, identities and lease tags unique; no prefix inside
/// another), so a `Tenant` in hand is always a consistent policy.
public struct Tenant: Sendable, Equatable {
    /// Unique name; also the user the gateway acts on behalf of upstream.
    public let name: String
    /// Certificate identities that select this tenant: each is matched
    /// exactly against a SAN URI, a SAN DNS name or the subject's CN.
    public let identities: [String]
    /// The namespace prefix, as written in the file.
    public let prefix: String
    public let permissions: TenantPermissions
    public let limits: TenantLimits
    /// Hot prefixes to cache, in the tenant's view (inside its namespace).
    public let cachePrefixes: [String]
    /// The rewriting of every request and answer of this tenant.
    public let namespace: Namespace

    init(
        name: String, identities: [String], prefix: String, permissions: TenantPermissions,
        limits: TenantLimits, cachePrefixes: [String]
    ) {
        self.name = name
        self.identities = identities
        self.prefix = prefix
        self.permissions = permissions
        self.limits = limits
        self.cachePrefixes = cachePrefixes
        self.namespace = Namespace(
            prefix: Data(prefix.utf8), permissions: permissions,
            leaseTag: Namespace.leaseTag(forTenantNamed: name))
    }

    /// The upper 32 bits of this tenant's lease IDs (see `Namespace+Lease`).
    public var leaseTag: UInt32 { self.namespace.leaseTag }

    /// The cache prefixes as upstream keys (inside the namespace), which is
    /// what the cache watches and serves.
    public var upstreamCachePrefixes: [Data] {
        self.cachePrefixes.map { self.namespace.upstreamKey(Data($0.utf8)) }
    }
}

/// What a tenant may do inside its namespace.
public enum TenantPermissions: String, Sendable, Equatable, CaseIterable {
    /// Range, Watch, Leader, Observe, lease keep-alive, time-to-live and list.
    case read
    /// Everything a tenant may do: reads, plus puts, deletes, txns with
    /// writes, lease grant and revoke, Lock/Unlock, Campaign/Proclaim/Resign.
    case readwrite
}

/// A tenant's limits, each a maximum the gateway enforces per tenant.
///
/// Omitted limits take the defaults below: generous for one application
/// host, yet bounded, so a tenant file that names no limits still bounds
/// every tenant.
public struct TenantLimits: Sendable, Equatable {
    /// Sustained request rate (token bucket refill). Default 1000.
    public var requestsPerSecond: Int
    /// Requests admitted at once after a quiet spell (bucket size).
    /// Default: twice `requestsPerSecond`.
    public var requestsBurstMax: Int
    /// Open watches. Default 10,000.
    public var watchesMax: Int
    /// Leases granted and alive. Default 1,000.
    public var leasesMax: Int
    /// Bytes of keys and values in one answer. Default 4 MiB.
    public var responseBytesMax: Int

    public static let requestsPerSecondDefault = 1_000
    public static let watchesMaxDefault = 10_000
    public static let leasesMaxDefault = 1_000
    public static let responseBytesMaxDefault = 4 << 20

    /// The limits with every omitted value (nil) at its default.
    public init(
        requestsPerSecond: Int? = nil, requestsBurstMax: Int? = nil, watchesMax: Int? = nil,
        leasesMax: Int? = nil, responseBytesMax: Int? = nil
    ) {
        let rate = requestsPerSecond ?? Self.requestsPerSecondDefault
        self.requestsPerSecond = rate
        let (doubled, overflow) = rate.multipliedReportingOverflow(by: 2)
        self.requestsBurstMax = requestsBurstMax ?? (overflow ? Int.max : doubled)
        self.watchesMax = watchesMax ?? Self.watchesMaxDefault
        self.leasesMax = leasesMax ?? Self.leasesMaxDefault
        self.responseBytesMax = responseBytesMax ?? Self.responseBytesMaxDefault
    }
}
