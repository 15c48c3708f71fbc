import Foundation

/// The rules tenants must keep together for isolation to hold (see
/// `TenantsFile`); each error names the tenants and says what to fix.
enum TenantsFileValidation {
    /// Longest tenant name, in bytes.
    static let nameBytesMax = 128

    static func check(_ tenants: [Tenant]) throws(TenantsFileError) {
        try Self.checkNames(tenants)
        try Self.checkIdentities(tenants)
        try Self.checkPrefixes(tenants)
        try Self.checkCachePrefixes(tenants)
        try Self.checkLeaseTags(tenants)
    }

    /// Names travel upstream as the on-behalf-of user in gRPC metadata and
    /// label metrics, so they are short, plain and unique.
    static func checkNames(_ tenants: [Tenant]) throws(TenantsFileError) {
        var seen: Set<String> = []
        for tenant in tenants {
            let plain = tenant.name.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"),
                    UInt8(ascii: "-"):
                    true
                default: false
                }
            }
            guard plain, tenant.name.utf8.count <= Self.nameBytesMax else {
                throw TenantsFileError(
                    "tenant \"\(tenant.name)\": `name` may hold only letters, digits, `.`, `_` and `-`, "
                        + "at most \(Self.nameBytesMax) of them")
            }
            guard seen.insert(tenant.name).inserted else {
                throw TenantsFileError("two tenants are named \"\(tenant.name)\"; names must be unique")
            }
        }
    }

    /// An identity selects exactly one tenant: within a tenant a repeat is
    /// a typo, across tenants it would make the certificate ambiguous.
    static func checkIdentities(_ tenants: [Tenant]) throws(TenantsFileError) {
        var owners: [String: String] = [:]
        for tenant in tenants {
            var own: Set<String> = []
            for identity in tenant.identities {
                guard own.insert(identity).inserted else {
                    throw TenantsFileError(
                        "tenant \"\(tenant.name)\": identity \"\(identity)\" is listed twice; remove one")
                }
                if let owner = owners[identity] {
                    throw TenantsFileError(
                        "tenants \"\(owner)\" and \"\(tenant.name)\" both claim identity \"\(identity)\"; "
                            + "an identity must select exactly one tenant")
                }
                owners[identity] = tenant.name
            }
        }
    }

    /// No prefix may start with another tenant's (equal ones included):
    /// the shorter one's namespace would contain the longer one's keys.
    /// In byte order, a prefix that contains others is followed directly by
    /// one of them, so comparing neighbours finds every overlap.
    static func checkPrefixes(_ tenants: [Tenant]) throws(TenantsFileError) {
        let sorted = tenants.sorted { Array($0.prefix.utf8).lexicographicallyPrecedes(Array($1.prefix.utf8)) }
        for (shorter, longer) in zip(sorted, sorted.dropFirst())
        where longer.prefix.utf8.starts(with: shorter.prefix.utf8) {
            if longer.prefix == shorter.prefix {
                throw TenantsFileError(
                    "tenants \"\(shorter.name)\" and \"\(longer.name)\" have the same prefix "
                        + "\"\(shorter.prefix)\"; each tenant needs its own")
            }
            throw TenantsFileError(
                "tenant \"\(longer.name)\" has prefix \"\(longer.prefix)\", which lies inside tenant "
                    + "\"\(shorter.name)\"'s prefix \"\(shorter.prefix)\"; \"\(shorter.name)\" would see its keys. "
                    + "Give each tenant a prefix that does not start with another's (end prefixes with `/`)")
        }
    }

    static func checkCachePrefixes(_ tenants: [Tenant]) throws(TenantsFileError) {
        for tenant in tenants {
            var seen: Set<String> = []
            for prefix in tenant.cachePrefixes where !seen.insert(prefix).inserted {
                throw TenantsFileError(
                    "tenant \"\(tenant.name)\": cache prefix \"\(prefix)\" is listed twice; remove one")
            }
        }
    }

    /// Lease ownership is by tag, so two tenants with one tag could use each
    /// other's leases.
    static func checkLeaseTags(_ tenants: [Tenant]) throws(TenantsFileError) {
        var owners: [UInt32: String] = [:]
        for tenant in tenants {
            if let owner = owners[tenant.leaseTag] {
                throw TenantsFileError(
                    "tenants \"\(owner)\" and \"\(tenant.name)\" hash to the same lease tag "
                        + "\(tenant.leaseTag), so they could use each other's leases; rename one of them")
            }
            owners[tenant.leaseTag] = tenant.name
        }
    }
}
