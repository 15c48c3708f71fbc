import ArgumentParser
import CairnGateway
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `cairnctl gateway`: what a gateway enforces and what it holds.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Check a tenants file, or show a running gateway's tenants, watches and caches.",
        subcommands: [GatewayTenantsCommand.self, GatewayStatusCommand.self]
    )
}

/// `cairnctl gateway tenants FILE`: validates a tenants file exactly as the
/// gateway loads it (so a change can be checked before SIGHUP) and lists
/// what each tenant gets.
struct GatewayTenantsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenants",
        abstract: "Validate a tenants file as `cairn gateway --tenants` reads it, and list its tenants."
    )

    @Argument(help: "The tenants file (YAML).")
    var file: String

    func run() throws {
        let tenants: TenantsFile
        do {
            tenants = try TenantsFile.load(path: self.file)
        } catch {
            throw fail("\(error)")
        }
        var rows = [
            [
                "NAME", "IDENTITIES", "PREFIX", "PERMISSIONS", "REQUESTS/S (BURST)", "WATCHES", "LEASES",
                "RESPONSE BYTES", "CACHE",
            ]
        ]
        for tenant in tenants.tenants {
            let limits = tenant.limits
            rows.append([
                tenant.name, tenant.identities.joined(separator: ","), tenant.prefix,
                tenant.permissions.rawValue,
                "\(limits.requestsPerSecond) (\(limits.requestsBurstMax))", "\(limits.watchesMax)",
                "\(limits.leasesMax)", "\(limits.responseBytesMax)",
                tenant.cachePrefixes.joined(separator: ","),
            ])
        }
        print(table(rows), terminator: "")
    }
}

/// `cairnctl gateway status --metrics-url URL`: a running gateway's
/// readiness, per-tenant watches (client and upstream: the coalescing
/// ratio), cache hits and misses, rate-limit refusals, and its caches.
struct GatewayStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract:
            "Show a running gateway's tenants, coalesced watches and read caches (from its metrics URL)."
    )

    @Option(help: "The gateway's --listen-metrics-urls address.")
    var metricsUrl = "http://127.0.0.1:23791"

    func run() async throws {
        let metrics: String
        let ready: String
        do {
            metrics = try await Self.get(self.metricsUrl + "/metrics")
            ready = try await Self.get(self.metricsUrl + "/readyz")
        } catch {
            throw fail(
                "cannot read \(self.metricsUrl): \(error); is the gateway running with --listen-metrics-urls?"
            )
        }
        let series = GatewaySeries(text: metrics)
        print("ready: \(ready.trimmingCharacters(in: .whitespacesAndNewlines))")
        var tenants = [
            ["TENANT", "CLIENT WATCHES", "UPSTREAM WATCHES", "CACHE HITS", "CACHE MISSES", "RATE LIMITED"]
        ]
        for tenant in series.tenants {
            tenants.append(
                [tenant]
                    + [
                        "client_watches", "upstream_watches", "cache_hits_total", "cache_misses_total",
                        "rate_limited_total",
                    ].map { series.value($0, tenant: tenant) })
        }
        print(table(tenants), terminator: "")
        var caches = [["TENANT", "CACHED PREFIX", "REVISION", "KEYS"]]
        for (tenant, prefix) in series.caches {
            let labels = "tenant=\"\(tenant)\",prefix=\"\(prefix)\""
            caches.append([
                tenant, prefix, series.value("cache_revision", labels: labels),
                series.value("cache_keys", labels: labels),
            ])
        }
        if caches.count > 1 { print(table(caches), terminator: "") }
    }

    static func get(_ address: String) async throws -> String {
        guard let url = URL(string: address) else { throw ValidationError("not a URL: \(address)") }
        let (data, _) = try await URLSession.shared.data(from: url)
        return String(decoding: data, as: UTF8.self)
    }
}

/// The `cairn_gateway_*` lines of a Prometheus text page.
struct GatewaySeries {
    /// `name{labels}` → value, for every `cairn_gateway_` series.
    var values: [String: String] = [:]
    var tenants: [String] = []
    var caches: [(tenant: String, prefix: String)] = []

    init(text: String) {
        var tenants = Set<String>()
        var caches = Set<[String]>()
        for line in text.split(separator: "\n") where line.hasPrefix("cairn_gateway_") {
            guard let space = line.lastIndex(of: " ") else { continue }
            let key = String(line[..<space])
            self.values[key] = String(line[line.index(after: space)...])
            let labels = Self.labels(key)
            if let tenant = labels["tenant"] {
                tenants.insert(tenant)
                if let prefix = labels["prefix"] { caches.insert([tenant, prefix]) }
            }
        }
        self.tenants = tenants.sorted()
        self.caches = caches.sorted { $0.lexicographicallyPrecedes($1) }.map { ($0[0], $0[1]) }
    }

    static func labels(_ key: String) -> [String: String] {
        guard let open = key.firstIndex(of: "{"), key.hasSuffix("}") else { return [:] }
        var labels: [String: String] = [:]
        for pair in key[key.index(after: open)..<key.index(before: key.endIndex)].split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            labels[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return labels
    }

    func value(_ name: String, tenant: String) -> String {
        self.value(name, labels: "tenant=\"\(tenant)\"")
    }

    func value(_ name: String, labels: String) -> String {
        let raw = self.values["cairn_gateway_\(name){\(labels)}"] ?? "0"
        return Double(raw).map { $0 == $0.rounded() ? String(Int64($0)) : raw } ?? raw
    }
}

/// Rows as an aligned text table, etcdctl's simple layout.
func table(_ rows: [[String]]) -> String {
    let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
        zip(row, widths).map { cell, width in cell.padding(toLength: width, withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n") + "\n"
}
