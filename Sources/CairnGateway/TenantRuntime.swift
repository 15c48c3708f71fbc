import CairnRPC
import NIOConcurrencyHelpers
import NIOCore

/// A tenant as the running gateway holds it: its policy from the tenants
/// file plus what changes while serving (its rate bucket, counters).
///
/// Reloading the tenants file keeps a tenant's runtime when its name stays,
/// so a SIGHUP does not refill buckets or reset counters of running tenants.
public final class TenantRuntime: Sendable {
    public let name: String
    private let policyBox: NIOLockedValueBox<Tenant>
    private let bucket: NIOLockedValueBox<TokenBucket>
    /// Leases granted through this gateway and not known to be gone.
    private let leases = NIOLockedValueBox<Set<Int64>>([])
    public let counters: TenantCounters
    /// The tenant's view of the watch events last fanned out.
    let watchViews = WatchViewMemo()

    init(tenant: Tenant, counters: TenantCounters, nowNanoseconds: UInt64) {
        self.name = tenant.name
        self.counters = counters
        self.policyBox = NIOLockedValueBox(tenant)
        self.bucket = NIOLockedValueBox(Self.bucket(for: tenant, nowNanoseconds: nowNanoseconds))
    }

    private static func bucket(for tenant: Tenant, nowNanoseconds: UInt64) -> TokenBucket {
        TokenBucket(
            rate: Double(tenant.limits.requestsPerSecond),
            burst: Double(max(1, tenant.limits.requestsBurstMax)),
            nowNanoseconds: nowNanoseconds)
    }

    /// The tenant's current policy (namespace, permissions, limits).
    public var policy: Tenant { self.policyBox.withLockedValue { $0 } }

    /// Adopts a reloaded policy; a changed rate or burst starts a new bucket.
    func update(_ tenant: Tenant, nowNanoseconds: UInt64) {
        let old = self.policyBox.withLockedValue { old in
            defer { old = tenant }
            return old
        }
        if old.limits.requestsPerSecond != tenant.limits.requestsPerSecond
            || old.limits.requestsBurstMax != tenant.limits.requestsBurstMax
        {
            self.bucket.withLockedValue { $0 = Self.bucket(for: tenant, nowNanoseconds: nowNanoseconds) }
        }
    }

    var leaseCount: Int { self.leases.withLockedValue { $0.count } }

    func leaseGranted(_ id: Int64) {
        self.leases.withLockedValue { _ = $0.insert(id) }
    }

    func leaseRevoked(_ id: Int64) {
        self.leases.withLockedValue { _ = $0.remove(id) }
    }

    /// Replaces the count with the tenant's live leases as the cluster lists them.
    func recountLeases(_ ids: [Int64]) {
        self.leases.withLockedValue { $0 = Set(ids) }
    }

    /// Takes one request from the tenant's rate, or says which limit refused it.
    func admitRequest(nowNanoseconds: UInt64) throws(RPCStatus) {
        guard self.bucket.withLockedValue({ $0.take(nowNanoseconds: nowNanoseconds) }) else {
            self.counters.rateLimited.increment()
            let limits = self.policy.limits
            throw RPCStatus(
                .resourceExhausted,
                "gateway: tenant \(self.name) exceeded its limit of \(limits.requestsPerSecond) requests/s "
                    + "(burst \(limits.requestsBurstMax)); retry later")
        }
    }
}
