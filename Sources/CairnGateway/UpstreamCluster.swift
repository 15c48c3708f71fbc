import CairnAPI
import CairnRPC
import NIOConcurrencyHelpers
import NIOCore

/// The cluster behind a gateway: one reconnecting connection per member,
/// learned from `--endpoints` and then from MemberList, and which of them
/// leads.
///
/// Not an `EtcdClient`: writes must reach the leader itself (a follower would
/// forward them, costing a hop), and every call carries its tenant's
/// metadata, while `EtcdClient` spreads calls round-robin under one token.
/// Works the same in front of plain etcd: MemberList and Status are standard
/// calls that need no permission.
///
/// Properties:
/// 1. `connections` has one connection per endpoint (`host:port`): every seed
///    endpoint, and every member's first client URL from the last MemberList.
///    A member that leaves MemberList loses its connection at the next
///    refresh; seeds never do.
/// 2. `leader` is nil (unknown) or a key of `connections`.
/// 3. At most one refresh runs at a time; callers that ask for one while one
///    runs share its result.
public final class UpstreamCluster: Sendable {
    /// What a call needs from the cluster.
    public enum Route: Sendable {
        /// Writes and linearizable reads: the leader answers them without a
        /// forwarding hop.
        case leader
        /// Serializable reads, watches, TimeToLive: any member.
        case any
    }

    struct State {
        var connections: [String: RPCConnection] = [:]
        /// Endpoints in a stable order, for round-robin.
        var order: [String] = []
        var leader: String?
        var next = 0
        var refreshing: EventLoopFuture<Void>?
        var stopped = false
        var lastHeader = Etcdserverpb_ResponseHeader()
    }

    /// How often the gateway re-reads membership and leadership while idle.
    public static let refreshInterval = TimeAmount.seconds(5)
    /// Bound on one refresh's calls, so a dead member cannot stall routing.
    static let refreshCallTimeout = TimeAmount.seconds(2)

    let seeds: [String]
    let configuration: RPCClientConfiguration
    let eventLoopGroup: any EventLoopGroup
    let state = NIOLockedValueBox(State())

    /// - Parameter endpoints: seed endpoints, `host:port` or URLs; TLS comes
    ///   from `configuration.tls`.
    public init(
        endpoints: [String], configuration: RPCClientConfiguration, group: any EventLoopGroup
    ) throws {
        guard !endpoints.isEmpty else { throw RPCStatus(.invalidArgument, "gateway: no endpoints given") }
        self.seeds = try endpoints.map(Self.endpoint)
        self.configuration = configuration
        self.eventLoopGroup = group
        self.state.withLockedValue { state in
            for seed in self.seeds where state.connections[seed] == nil {
                state.connections[seed] = self.makeConnection(seed)
                state.order.append(seed)
            }
        }
    }

    /// `host:port` of an endpoint given as `host:port` or a URL.
    static func endpoint(_ text: String) throws -> String {
        var rest = Substring(text)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
            (1...65_535).contains(port), colon > rest.startIndex
        else {
            throw RPCStatus(
                .invalidArgument, "gateway: endpoint \(text) is not host:port or a URL with a port")
        }
        return String(rest)
    }

    private func makeConnection(_ endpoint: String) -> RPCConnection {
        let colon = endpoint.lastIndex(of: ":")!
        var host = endpoint[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        let port = Int(endpoint[endpoint.index(after: colon)...])!
        return RPCConnection(
            host: String(host), port: port, eventLoop: self.eventLoopGroup.next(),
            configuration: self.configuration)
    }

    // MARK: Choosing a connection

    /// The connection for a call: the leader's when known and wanted, else
    /// the next ready one round-robin (or any, to fail fast or wait).
    public func connection(for route: Route) -> RPCConnection {
        self.state.withLockedValue { state in
            if case .leader = route, let leader = state.leader, let connection = state.connections[leader],
                connection.isReady
            {
                return connection
            }
            let count = state.order.count
            for offset in 0..<count {
                let endpoint = state.order[(state.next &+ offset) % count]
                if let connection = state.connections[endpoint], connection.isReady {
                    state.next = (state.next &+ offset &+ 1) % count
                    return connection
                }
            }
            state.next = (state.next &+ 1) % count
            return state.connections[state.order[state.next % count]]!
        }
    }

    /// Whether any member connection is up right now (health checks).
    public var hasReadyConnection: Bool {
        self.state.withLockedValue { state in state.connections.values.contains { $0.isReady } }
    }

    /// The endpoint believed to lead, if any.
    public var leaderEndpoint: String? { self.state.withLockedValue { $0.leader } }

    // MARK: Refresh

    /// Starts refreshing every `refreshInterval` until `shutdown`.
    public func start() {
        _ = self.refresh()
        self.scheduleRefresh()
    }

    private func scheduleRefresh() {
        self.eventLoopGroup.next().scheduleTask(in: Self.refreshInterval) {
            guard !self.state.withLockedValue({ $0.stopped }) else { return }
            _ = self.refresh()
            self.scheduleRefresh()
        }
    }

    /// Re-reads membership and leadership now (shared with a refresh in flight).
    @discardableResult
    public func refresh() -> EventLoopFuture<Void> {
        let eventLoop = self.eventLoopGroup.next()
        let promise = eventLoop.makePromise(of: Void.self)
        let running: EventLoopFuture<Void>? = self.state.withLockedValue { state in
            if let running = state.refreshing { return running }
            state.refreshing = promise.futureResult
            return nil
        }
        if let running { return running }
        self.discover(on: eventLoop).whenComplete { _ in
            self.state.withLockedValue { $0.refreshing = nil }
            promise.succeed(())
        }
        return promise.futureResult
    }

    /// MemberList from the first member that answers, then Status of every
    /// member to learn the leader (the answer of a majority wins; any one
    /// answer is used while no majority answered).
    private func discover(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let options = RPCCallOptions(timeout: Self.refreshCallTimeout)
        let candidates = self.state.withLockedValue { state in
            state.order.compactMap { state.connections[$0] }
        }
        return Self.firstAnswer(
            candidates, on: eventLoop,
            { $0.unaryFuture(EtcdCluster.memberList, Etcdserverpb_MemberListRequest(), options: options) }
        ).flatMap { list -> EventLoopFuture<Void> in
            guard let list else { return eventLoop.makeSucceededVoidFuture() }
            let endpointByMember = self.adopt(list.members)
            let statuses = endpointByMember.values.map { endpoint -> EventLoopFuture<UInt64?> in
                guard let connection = self.state.withLockedValue({ $0.connections[endpoint] }) else {
                    return eventLoop.makeSucceededFuture(nil)
                }
                return connection.unaryFuture(
                    EtcdMaintenance.status, Etcdserverpb_StatusRequest(), options: options
                ).map { status in
                    self.noteHeader(status.header)
                    return Optional(status.leader)
                }.recover { _ in nil }
            }
            return EventLoopFuture.whenAllSucceed(statuses, on: eventLoop).map { leaders in
                self.adoptLeader(leaders.compactMap { $0 }.filter { $0 != 0 }, endpointByMember)
            }
        }
    }

    /// Tries `call` on each connection in turn until one answers.
    private static func firstAnswer<Response: Sendable>(
        _ connections: [RPCConnection], on eventLoop: any EventLoop,
        _ call: @escaping @Sendable (RPCConnection) -> EventLoopFuture<Response>
    ) -> EventLoopFuture<Response?> {
        guard let first = connections.first else { return eventLoop.makeSucceededFuture(nil) }
        return call(first).map { Optional($0) }.flatMapError { _ in
            Self.firstAnswer(Array(connections.dropFirst()), on: eventLoop, call)
        }.hop(to: eventLoop)
    }

    /// Adds connections for members not yet known and drops those of members
    /// gone (property 1). Returns each started member's endpoint by ID.
    private func adopt(_ members: [Etcdserverpb_Member]) -> [UInt64: String] {
        let secure = self.configuration.tls != nil
        var endpointByMember: [UInt64: String] = [:]
        for member in members {
            let urls = member.clientUrls
            let preferred = urls.first { $0.hasPrefix(secure ? "https://" : "http://") } ?? urls.first
            if let url = preferred, let endpoint = try? Self.endpoint(url) {
                endpointByMember[member.id] = endpoint
            }
        }
        let retired: [RPCConnection] = self.state.withLockedValue { state in
            let wanted = Set(endpointByMember.values).union(self.seeds)
            var retired: [RPCConnection] = []
            for endpoint in state.order where !wanted.contains(endpoint) {
                if let connection = state.connections.removeValue(forKey: endpoint) {
                    retired.append(connection)
                }
            }
            state.order.removeAll { !wanted.contains($0) }
            for endpoint in endpointByMember.values.sorted() where state.connections[endpoint] == nil {
                state.connections[endpoint] = self.makeConnection(endpoint)
                state.order.append(endpoint)
            }
            if let leader = state.leader, state.connections[leader] == nil { state.leader = nil }
            return retired
        }
        for connection in retired { connection.shutdown() }
        return endpointByMember
    }

    private func adoptLeader(_ reported: [UInt64], _ endpointByMember: [UInt64: String]) {
        var votes: [UInt64: Int] = [:]
        for leader in reported { votes[leader, default: 0] += 1 }
        let best = votes.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key
        let endpoint = best.flatMap { endpointByMember[$0] }
        self.state.withLockedValue { $0.leader = endpoint }
    }

    /// The newest response header seen in a refresh: the header of answers
    /// the gateway gives itself (a lease of another tenant), which etcd
    /// fills from the member answering.
    public var lastHeader: Etcdserverpb_ResponseHeader { self.state.withLockedValue { $0.lastHeader } }

    private func noteHeader(_ header: Etcdserverpb_ResponseHeader) {
        self.state.withLockedValue { state in
            if header.revision >= state.lastHeader.revision { state.lastHeader = header }
        }
    }

    /// Forgets the leader after a call's failure says it moved, and refreshes.
    public func leaderSuspected() {
        self.state.withLockedValue { $0.leader = nil }
        self.refresh()
    }

    /// Closes every connection; calls fail with UNAVAILABLE.
    public func shutdown() {
        let connections = self.state.withLockedValue { state in
            state.stopped = true
            return Array(state.connections.values)
        }
        for connection in connections { connection.shutdown() }
    }
}
