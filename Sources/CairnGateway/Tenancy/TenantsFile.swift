import Foundation
import Yams

/// The gateway's tenants file (`--tenants FILE`), parsed and validated.
///
/// ```yaml
/// tenants:
///   - name: alice
///     identities: ["spiffe://cairn/tenant/alice", "alice"]  # SAN URI/DNS or CN
///     prefix: "tenants/alice/"
///     permissions: readwrite            # or: read
///     limits: {requests_per_second: 2000, burst: 4000, watches: 10000,
///              leases: 1000, response_bytes: 4194304}
///     cache: ["config/"]                # hot prefixes inside the namespace
/// ```
/// `name`, `identities`, `prefix` and `permissions` are required; `limits`
/// (each one) and `cache` are optional (`TenantLimits` has the defaults).
///
/// The file is the isolation policy, so a mistake must stop the load rather
/// than weaken it: unknown fields are refused (a misspelt `limts:` must not
/// silently drop a limit), and so are duplicate names and identities, a
/// prefix inside another tenant's (one would see the other's keys), empty
/// prefixes and cache prefixes, non-positive limits and two tenants whose
/// names hash to the same lease tag. Every error names the tenant, the field
/// and the line, and says what to fix. A reload that fails keeps the
/// previous policy in force (the caller's choice, not this type's).
public struct TenantsFile: Sendable, Equatable {
    public let tenants: [Tenant]

    /// Parses and validates the YAML text of a tenants file.
    public init(yaml: String) throws(TenantsFileError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw TenantsFileError("not valid YAML: \(error)")
        }
        guard let root else {
            throw TenantsFileError("the file is empty; it needs a top-level `tenants:` list")
        }
        let tenants = try TenantsFileParser.tenants(root)
        try TenantsFileValidation.check(tenants)
        self.tenants = tenants
    }

    /// Reads, parses and validates the tenants file at `path`.
    public static func load(path: String) throws(TenantsFileError) -> TenantsFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TenantsFileError("cannot read \(path): \(error.localizedDescription)")
        }
        do {
            return try TenantsFile(yaml: text)
        } catch {
            throw TenantsFileError("\(path): \(error.message)")
        }
    }
}

/// Why a tenants file was refused; `message` says where and what to fix.
public struct TenantsFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { "tenants file: \(self.message)" }
}

/// YAML nodes to tenants: shapes, types and unknown fields.
enum TenantsFileParser {
    static let tenantFields = ["name", "identities", "prefix", "permissions", "limits", "cache"]
    static let limitFields = ["requests_per_second", "burst", "watches", "leases", "response_bytes"]

    static func tenants(_ root: Node) throws(TenantsFileError) -> [Tenant] {
        let fields = try Self.fields(root, allowed: ["tenants"], at: "the top level")
        guard let list = fields["tenants"] else {
            throw TenantsFileError("the top level needs a `tenants:` list\(Self.line(root))")
        }
        guard case .sequence(let sequence) = list else {
            throw TenantsFileError("`tenants` must be a list of tenants\(Self.line(list))")
        }
        var tenants: [Tenant] = []
        for (index, node) in sequence.enumerated() {
            tenants.append(try Self.tenant(node, index: index))
        }
        return tenants
    }

    static func tenant(_ node: Node, index: Int) throws(TenantsFileError) -> Tenant {
        var place = "tenants[\(index)]\(Self.line(node))"
        let fields = try Self.fields(node, allowed: Self.tenantFields, at: place)
        guard let nameNode = fields["name"] else { throw TenantsFileError("\(place): `name` is required") }
        let name = try Self.nonEmptyString(nameNode, field: "name", at: place)
        place = "tenant \"\(name)\" (\(place))"
        guard let prefixNode = fields["prefix"] else {
            throw TenantsFileError("\(place): `prefix` is required (the namespace its keys live under)")
        }
        guard let identitiesNode = fields["identities"] else {
            throw TenantsFileError("\(place): `identities` is required (its certificates' SAN URI/DNS or CN)")
        }
        guard let permissionsNode = fields["permissions"] else {
            throw TenantsFileError("\(place): `permissions` is required: `read` or `readwrite`")
        }
        return Tenant(
            name: name,
            identities: try Self.stringList(
                identitiesNode, field: "identities", at: place, emptyAllowed: false),
            prefix: try Self.nonEmptyString(prefixNode, field: "prefix", at: place),
            permissions: try Self.permissions(permissionsNode, at: place),
            limits: try fields["limits"].map { (node) throws(TenantsFileError) in
                try Self.limits(node, at: place)
            }
                ?? TenantLimits(),
            cachePrefixes: try fields["cache"].map { (node) throws(TenantsFileError) in
                try Self.stringList(node, field: "cache", at: place, emptyAllowed: true)
            } ?? [])
    }

    static func limits(_ node: Node, at place: String) throws(TenantsFileError) -> TenantLimits {
        let fields = try Self.fields(node, allowed: Self.limitFields, at: "\(place) `limits`")
        func value(_ field: String) throws(TenantsFileError) -> Int? {
            guard let node = fields[field] else { return nil }
            return try Self.positiveInteger(node, field: "limits.\(field)", at: place)
        }
        return TenantLimits(
            requestsPerSecond: try value("requests_per_second"), requestsBurstMax: try value("burst"),
            watchesMax: try value("watches"), leasesMax: try value("leases"),
            responseBytesMax: try value("response_bytes"))
    }

    // MARK: typed values

    /// The fields of a mapping by name; any field not in `allowed` is an error.
    static func fields(_ node: Node, allowed: [String], at place: String) throws(TenantsFileError) -> [String:
        Node]
    {
        guard case .mapping(let mapping) = node else {
            throw TenantsFileError("\(place) must be a mapping of fields\(Self.line(node))")
        }
        var fields: [String: Node] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                throw TenantsFileError("\(place): field names must be plain words\(Self.line(key))")
            }
            guard allowed.contains(name) else {
                throw TenantsFileError(
                    "\(place): unknown field `\(name)`\(Self.line(key)); "
                        + "allowed: \(allowed.joined(separator: ", "))")
            }
            fields[name] = value
        }
        return fields
    }

    static func nonEmptyString(_ node: Node, field: String, at place: String) throws(TenantsFileError)
        -> String
    {
        guard let scalar = node.scalar, node.null == nil else {
            throw TenantsFileError("\(place): `\(field)` must be a non-empty string\(Self.line(node))")
        }
        guard !scalar.string.isEmpty else {
            throw TenantsFileError("\(place): `\(field)` must not be empty\(Self.line(node))")
        }
        return scalar.string
    }

    static func stringList(_ node: Node, field: String, at place: String, emptyAllowed: Bool)
        throws(TenantsFileError) -> [String]
    {
        guard case .sequence(let sequence) = node else {
            throw TenantsFileError("\(place): `\(field)` must be a list of strings\(Self.line(node))")
        }
        if sequence.isEmpty && !emptyAllowed {
            throw TenantsFileError("\(place): `\(field)` must name at least one\(Self.line(node))")
        }
        var result: [String] = []
        for (index, item) in sequence.enumerated() {
            result.append(try Self.nonEmptyString(item, field: "\(field)[\(index)]", at: place))
        }
        return result
    }

    static func permissions(_ node: Node, at place: String) throws(TenantsFileError) -> TenantPermissions {
        let text = try Self.nonEmptyString(node, field: "permissions", at: place)
        guard let permissions = TenantPermissions(rawValue: text) else {
            throw TenantsFileError(
                "\(place): `permissions` must be `read` or `readwrite`, not `\(text)`\(Self.line(node))")
        }
        return permissions
    }

    static func positiveInteger(_ node: Node, field: String, at place: String) throws(TenantsFileError) -> Int
    {
        guard let scalar = node.scalar,
            let value = Int(scalar.string.replacingOccurrences(of: "_", with: "")),
            value > 0
        else {
            let text = node.scalar?.string ?? "a \(Self.kind(node))"
            throw TenantsFileError(
                "\(place): `\(field)` must be a positive integer, not `\(text)`\(Self.line(node))")
        }
        return value
    }

    static func line(_ node: Node) -> String {
        node.mark.map { " at line \($0.line)" } ?? ""
    }

    static func kind(_ node: Node) -> String {
        switch node {
        case .scalar: "scalar"
        case .mapping: "mapping"
        case .sequence: "list"
        case .alias: "alias"
        }
    }
}
