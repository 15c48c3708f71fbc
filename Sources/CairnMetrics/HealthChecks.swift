/// What a health request asked for, from its query string (etcd's
/// parameters): `?serializable=true` checks only this process, not the
/// cluster; `?exclude=NAME` (repeatable) skips an alarm on `/health` or a
/// named check on `/livez` and `/readyz`.
public struct HealthRequest: Sendable, Equatable {
    public var serializable: Bool
    public var excluded: Set<String>

    public init(serializable: Bool = false, excluded: Set<String> = []) {
        self.serializable = serializable
        self.excluded = excluded
    }
}

/// The answer of `/health`: etcd's JSON `{"health":"true","reason":""}`.
public struct HealthStatus: Sendable, Equatable {
    public var healthy: Bool
    /// Empty when healthy; etcd's texts otherwise ("RAFT NO LEADER",
    /// "ALARM NOSPACE", "RANGE ERROR:…").
    public var reason: String

    public static let ok = HealthStatus(healthy: true, reason: "")

    public init(healthy: Bool, reason: String) {
        self.healthy = healthy
        self.reason = reason
    }

    /// An unhealthy answer with `reason`.
    public static func failed(_ reason: String) -> HealthStatus {
        HealthStatus(healthy: false, reason: reason)
    }
}

/// One named check of `/livez` or `/readyz` (etcd 3.5's check registry):
/// it returns nil when it passes, else why it failed. Checks are closures
/// so a member and a gateway serve the same endpoints with their own checks.
public struct NamedHealthCheck: Sendable {
    public var name: String
    public var run: @Sendable () async -> String?

    public init(name: String, run: @escaping @Sendable () async -> String?) {
        self.name = name
        self.run = run
    }
}

/// What the health endpoints ask of the process they describe.
///
/// `/health` runs `health` with the request's parameters; `/livez` and
/// `/readyz` run their named checks in order, skipping excluded ones, and
/// `/livez/NAME`, `/readyz/NAME` run one check.
public struct HealthChecks: Sendable {
    public var health: @Sendable (HealthRequest) async -> HealthStatus
    public var livez: [NamedHealthCheck]
    public var readyz: [NamedHealthCheck]

    public init(
        health: @escaping @Sendable (HealthRequest) async -> HealthStatus,
        livez: [NamedHealthCheck], readyz: [NamedHealthCheck]
    ) {
        self.health = health
        self.livez = livez
        self.readyz = readyz
    }
}
