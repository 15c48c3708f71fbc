import CairnMetrics
import CairnRaft
import CairnReplica
import CairnStorage
import NIOConcurrencyHelpers
import NIOCore
import Prometheus

#if canImport(Glibc)
    import Glibc
#endif

/// A member's Prometheus series, with etcd's names, types, help texts and
/// buckets (etcd's server/etcdserver/metrics.go, storage/wal/metrics.go,
/// mvcc/metrics.go, rafthttp/metrics.go), for the alerts operators
/// already have. Every series is resolved once here; the member updates
/// them with atomic stores and adds, never a lookup or an allocation on a
/// request's path.
public final class MemberMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let hasLeader: Gauge
    let isLeader: Gauge
    let leaderChanges: Counter
    /// A gauge in etcd too: set to the Raft commit index.
    let proposalsCommitted: Gauge
    /// A gauge in etcd too: set to the applied index.
    let proposalsApplied: Gauge
    let proposalsPending: Gauge
    let proposalsFailed: Counter
    let walFsyncSeconds: ValueHistogram
    let databaseBytes: Gauge

    /// etcd's WAL fsync buckets: 1 ms doubling up to 8.192 s.
    static let walFsyncBuckets = exponentialBuckets(start: 0.001, factor: 2, count: 14)
    /// etcd's peer round-trip buckets: 0.1 ms doubling up to 3.2768 s.
    static let peerRoundTripBuckets = exponentialBuckets(start: 0.0001, factor: 2, count: 16)
    static let peerRoundTripHelp =
        "Round-Trip-Time histogram between peers: from a Raft heartbeat sent by the leader to its answer "
        + "received (unlike etcd's transport probe, it includes the peer's executor and a sync it waits for)."

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.hasLeader = registry.makeGauge(
            descriptor: Self.etcd(
                "server", "has_leader", help: "Whether or not a leader exists. 1 is existence, 0 is not."))
        self.isLeader = registry.makeGauge(
            descriptor: Self.etcd(
                "server", "is_leader", help: "Whether or not this member is a leader. 1 if is, 0 otherwise."))
        self.leaderChanges = registry.makeCounter(
            descriptor: Self.etcd(
                "server", "leader_changes_seen", unit: "total", help: "The number of leader changes seen."))
        self.proposalsCommitted = registry.makeGauge(
            descriptor: Self.etcd(
                "server", "proposals_committed", unit: "total",
                help: "The total number of consensus proposals committed."))
        self.proposalsApplied = registry.makeGauge(
            descriptor: Self.etcd(
                "server", "proposals_applied", unit: "total",
                help: "The total number of consensus proposals applied."
            ))
        self.proposalsPending = registry.makeGauge(
            descriptor: Self.etcd(
                "server", "proposals_pending", help: "The current number of pending proposals to commit."))
        self.proposalsFailed = registry.makeCounter(
            descriptor: Self.etcd(
                "server", "proposals_failed", unit: "total",
                help: "The total number of failed proposals seen."))
        self.walFsyncSeconds = registry.makeValueHistogram(
            descriptor: Self.etcd(
                "disk", "wal_fsync_duration", unit: "seconds",
                help: "The latency distributions of fsync called by WAL."
            ), buckets: Self.walFsyncBuckets)
        self.databaseBytes = registry.makeGauge(
            descriptor: Self.etcd(
                "mvcc", "db_total_size_in", unit: "bytes",
                help:
                    "Total size of the underlying database physically allocated in bytes. Cairn has no bbolt "
                    + "file: the bytes of the member's WAL segments and snapshot files."))
    }

    /// etcd's metric naming: namespace `etcd`, a subsystem, a name, a unit.
    static func etcd(_ subsystem: String, _ name: String, unit: String = "", help: String)
        -> MetricNameDescriptor
    {
        MetricNameDescriptor(
            namespace: "etcd", subsystem: subsystem, metricName: name, unitName: unit, helpText: help)
    }

    /// The round-trip histogram towards `peer` (label `To`, hex as etcd).
    func peerRoundTrip(to peer: UInt64) -> ValueHistogram {
        self.registry.makeValueHistogram(
            descriptor: Self.etcd(
                "network", "peer_round_trip_time", unit: "seconds", help: Self.peerRoundTripHelp),
            labels: [("To", String(peer, radix: 16))], buckets: Self.peerRoundTripBuckets)
    }

    /// Samples the bytes of the files under `<dataDirectory>/member/{wal,snap}`
    /// (a few `stat` calls, on a scrape).
    public func refreshDatabaseSize(dataDirectory: String) {
        var total = 0
        for directory in ["wal", "snap"] {
            let path = dataDirectory + "/member/" + directory
            guard let names = try? POSIXFileSystem().listDirectory(path) else { continue }
            for name in names {
                var status = stat()
                if stat(path + "/" + name, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG {
                    total += Int(status.st_size)
                }
            }
        }
        self.databaseBytes.set(to: Double(total))
    }
}

/// Where the member updates its series (executor only, except the WAL
/// fsync timing, which the I/O job records).
extension Member {
    /// After each batch of effects: the commit, applied and pending
    /// figures (atomic stores), and leadership as etcd counts it: a
    /// change is a soft state naming a leader other than the previous soft
    /// state's (so losing the leader and getting it back counts again).
    func updateMetrics(softState: SoftState?) {
        let metrics = self.configuration.metrics
        metrics.proposalsCommitted.set(to: Double(self.replica.committedIndex))
        metrics.proposalsApplied.set(to: Double(self.replica.appliedIndex))
        metrics.proposalsPending.set(to: Double(self.pendingRequests.count + self.parkedRequests.count))
        guard let softState else { return }
        if softState.leader != noNode && softState.leader != self.lastSoftStateLeader {
            metrics.leaderChanges.increment()
        }
        self.lastSoftStateLeader = softState.leader
        metrics.hasLeader.set(to: softState.leader == noNode ? 0 : 1)
        metrics.isLeader.set(to: softState.role == .leader ? 1 : 0)
        self.peerRoundTrips.reset()
    }

    /// Whether a failed request counts in `etcd_server_proposals_failed_total`:
    /// proposals Raft dropped or could not carry, not commands the state
    /// machine or the membership rules refused once applied.
    static func isProposalFailure(_ error: ReplicaError) -> Bool {
        switch error {
        case .notLeader, .tooManyRequests, .raft, .stopped, .corruptSnapshot: true
        case .rejected, .memberNotFound, .memberExists, .memberRemoved, .peerURLExists, .memberNotLearner,
            .learnerNotReady:
            false
        }
    }

    /// Heartbeats leaving for peers start round-trip probes (leader only).
    func heartbeatsSent(_ messages: [Message]) {
        guard self.replica.role == .leader else { return }
        let now = NIODeadline.now()
        for message in messages where message.kind == .heartbeat {
            self.peerRoundTrips.sent(to: message.to, at: now)
        }
    }

    /// A heartbeat answer from `peer` may end a probe: record its round trip.
    func heartbeatAnswered(by peer: UInt64) {
        guard let roundTrip = self.peerRoundTrips.answered(by: peer, at: NIODeadline.now()) else { return }
        let histogram: ValueHistogram
        if let known = self.peerRoundTripHistograms[peer] {
            histogram = known
        } else {
            histogram = self.configuration.metrics.peerRoundTrip(to: peer)
            self.peerRoundTripHistograms[peer] = histogram
        }
        histogram.record(Self.seconds(roundTrip))
    }

    static func seconds(_ amount: TimeAmount) -> Double {
        Double(amount.nanoseconds) / 1_000_000_000
    }
}
