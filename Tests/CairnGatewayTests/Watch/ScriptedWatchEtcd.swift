import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A small etcd-like Watch service on a real `RPCServer`, scripted by tests.
///
/// It keeps an in-memory history of puts and deletes with revisions,
/// assigns watch IDs per stream as etcd does, answers creates in order
/// (`created`, then history from the start revision, or a compaction cancel
/// below the compact revision), streams new events to matching watchers
/// (filters and prev_kv honoured), answers progress requests with the
/// current revision (in sync: everything is sent on one event loop), and can
/// drop every stream (UNAVAILABLE) to simulate a lost member.
final class ScriptedWatchEtcd: Sendable {
    struct Watcher {
        var key: Data
        var rangeEnd: Data
        var filters: Set<Int>
        var prevKV: Bool
        /// Events not yet sent to an unsynced watcher (slow history mode).
        var pending: [(event: Mvccpb_Event, previous: Mvccpb_KeyValue?)] = []
        var synced: Bool { self.pending.isEmpty }

        func matches(_ key: Data) -> Bool {
            if self.rangeEnd.isEmpty { return key == self.key }
            if self.rangeEnd == Data([0]) { return !key.lexicographicallyPrecedes(self.key) }
            return !key.lexicographicallyPrecedes(self.key) && key.lexicographicallyPrecedes(self.rangeEnd)
        }

        func passes(_ event: Mvccpb_Event) -> Bool {
            switch event.type {
            case .put: !self.filters.contains(0)
            case .delete: !self.filters.contains(1)
            case .UNRECOGNIZED: true
            }
        }
    }

    /// One Watch call from a client (the gateway).
    final class Stream {
        let stream: RPCServerStream<Etcdserverpb_WatchResponse>
        var watchers: [Int64: Watcher] = [:]
        var nextWatchID: Int64 = 0
        /// A progress request waits until every watcher is synced (etcd ≥ 3.4.25).
        var progressDeferred = false

        init(stream: RPCServerStream<Etcdserverpb_WatchResponse>) {
            self.stream = stream
        }
    }

    final class State {
        var revision: Int64 = 1
        var compactRevision: Int64 = 0
        /// Events in revision order, each with the pair before it.
        var history: [(event: Mvccpb_Event, previous: Mvccpb_KeyValue?)] = []
        var current: [Data: Mvccpb_KeyValue] = [:]
        var streams: [ObjectIdentifier: Stream] = [:]
        var createsReceived = 0
        var progressRequests = 0
        var onBehalfOf: [String] = []
        /// When set, a new watcher's history is sent one event per response
        /// at this pace, like etcd's unsynced watchers catching up, and new
        /// events queue behind it.
        var historyEventDelay: TimeAmount?
    }

    /// The handler of one Watch call.
    final class Handler: RPCStreamHandler {
        typealias Request = Etcdserverpb_WatchRequest
        let etcd: ScriptedWatchEtcd
        let stream: Stream

        init(etcd: ScriptedWatchEtcd, stream: Stream) {
            self.etcd = etcd
            self.stream = stream
        }

        func received(_ request: Etcdserverpb_WatchRequest) {
            self.etcd.received(request, on: self.stream)
        }

        func receivedEnd() {}

        func cancelled() {
            self.etcd.state.value.streams[ObjectIdentifier(self.stream)] = nil
        }
    }

    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let state: NIOLoopBoundBox<State>
    private let serverBox = NIOLockedValueBox<RPCServer?>(nil)

    private init(group: MultiThreadedEventLoopGroup) {
        self.group = group
        self.loop = group.next()
        self.state = NIOLoopBoundBox.makeBoxSendingValue(State(), eventLoop: self.loop)
    }

    static func start() async throws -> ScriptedWatchEtcd {
        let etcd = ScriptedWatchEtcd(group: MultiThreadedEventLoopGroup(numberOfThreads: 1))
        var router = RPCServiceRouter()
        router.streaming(EtcdWatch.watch) { stream in
            let watchStream = Stream(stream: stream)
            let state = etcd.state.value
            state.streams[ObjectIdentifier(watchStream)] = watchStream
            if let tenant = stream.context.headers.first(name: "cairn-on-behalf-of") {
                state.onBehalfOf.append(tenant)
            }
            return Handler(etcd: etcd, stream: watchStream)
        }
        let server = try await RPCServer.start(host: "127.0.0.1", port: 0, router: router, group: etcd.group)
        etcd.serverBox.withLockedValue { $0 = server }
        return etcd
    }

    var port: Int { self.serverBox.withLockedValue { $0?.localAddress.port ?? 0 } }

    /// Stops serving (only the first call does anything).
    func stop() async {
        let server = self.serverBox.withLockedValue { box in
            defer { box = nil }
            return box
        }
        guard let server else { return }
        await server.shutdown()
        try? await self.group.shutdownGracefully()
    }

    /// Runs `body` on the server's loop and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable (State) -> T) async throws -> T {
        try await self.loop.submit { body(self.state.value) }.get()
    }

    // MARK: Scripted actions

    @discardableResult
    func put(_ key: String, _ value: String) async throws -> Int64 {
        try await self.run { state in self.write(Data(key.utf8), value: Data(value.utf8), state) }
    }

    @discardableResult
    func delete(_ key: String) async throws -> Int64 {
        try await self.run { state in self.write(Data(key.utf8), value: nil, state) }
    }

    func compact(_ revision: Int64) async throws {
        try await self.run { state in state.compactRevision = max(state.compactRevision, revision) }
    }

    /// Ends every Watch call with UNAVAILABLE, as a member going away would.
    func dropStreams() async throws {
        try await self.run { state in
            let streams = state.streams.values
            state.streams = [:]
            for stream in streams { stream.stream.finish(RPCStatus(.unavailable, "scripted: member lost")) }
        }
    }

    /// Watchers registered over all streams.
    func watcherCount() async throws -> Int {
        try await self.run { state in state.streams.values.reduce(0) { $0 + $1.watchers.count } }
    }

    func revision() async throws -> Int64 {
        try await self.run { state in state.revision }
    }

    // MARK: Internals (server loop)

    private func header(_ revision: Int64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = 7
        header.memberID = 1
        header.raftTerm = 2
        header.revision = revision
        return header
    }

    private func write(_ key: Data, value: Data?, _ state: State) -> Int64 {
        state.revision += 1
        let previous = state.current[key]
        var event = Mvccpb_Event()
        event.kv.key = key
        event.kv.modRevision = state.revision
        if let value {
            event.type = .put
            event.kv.value = value
            event.kv.createRevision = previous?.createRevision ?? state.revision
            event.kv.version = (previous?.version ?? 0) + 1
            state.current[key] = event.kv
        } else {
            event.type = .delete
            state.current[key] = nil
        }
        state.history.append((event, previous))
        for stream in state.streams.values {
            for (watchID, watcher) in stream.watchers.sorted(by: { $0.key < $1.key }) {
                guard watcher.matches(key), watcher.passes(event) else { continue }
                if watcher.synced {
                    self.send([(event, previous)], watchID: watchID, watcher: watcher, on: stream, state)
                } else {
                    stream.watchers[watchID]?.pending.append((event, previous))
                }
            }
        }
        return state.revision
    }

    private func send(
        _ events: [(event: Mvccpb_Event, previous: Mvccpb_KeyValue?)], watchID: Int64, watcher: Watcher,
        on stream: Stream, _ state: State
    ) {
        var response = Etcdserverpb_WatchResponse()
        response.header = self.header(state.revision)
        response.watchID = watchID
        response.events = events.map { entry in
            var event = entry.event
            if watcher.prevKV, let previous = entry.previous { event.prevKv = previous }
            return event
        }
        stream.stream.send(response)
    }

    fileprivate func received(_ request: Etcdserverpb_WatchRequest, on stream: Stream) {
        let state = self.state.value
        switch request.requestUnion {
        case .createRequest(let create):
            state.createsReceived += 1
            self.create(create, on: stream, state)
        case .cancelRequest(let cancel):
            guard stream.watchers.removeValue(forKey: cancel.watchID) != nil else { return }
            defer { self.answerProgressIfSynced(stream, state) }
            var response = Etcdserverpb_WatchResponse()
            response.header = self.header(state.revision)
            response.watchID = cancel.watchID
            response.canceled = true
            stream.stream.send(response)
        case .progressRequest:
            state.progressRequests += 1
            stream.progressDeferred = true
            self.answerProgressIfSynced(stream, state)
        case nil:
            break
        }
    }

    private func create(_ create: Etcdserverpb_WatchCreateRequest, on stream: Stream, _ state: State) {
        while stream.watchers[stream.nextWatchID] != nil { stream.nextWatchID += 1 }
        let watchID = stream.nextWatchID
        stream.nextWatchID += 1
        var created = Etcdserverpb_WatchResponse()
        created.header = self.header(state.revision)
        created.watchID = watchID
        created.created = true
        stream.stream.send(created)
        let start = create.startRevision == 0 ? state.revision + 1 : create.startRevision
        if start < state.compactRevision {
            var compacted = Etcdserverpb_WatchResponse()
            compacted.header = self.header(0)
            compacted.watchID = watchID
            compacted.canceled = true
            compacted.compactRevision = state.compactRevision
            stream.stream.send(compacted)
            return
        }
        let watcher = Watcher(
            key: create.key.isEmpty ? Data([0]) : create.key, rangeEnd: create.rangeEnd,
            filters: Set(create.filters.map(\.rawValue)), prevKV: create.prevKv)
        let missed = state.history.filter {
            $0.event.kv.modRevision >= start && watcher.matches($0.event.kv.key) && watcher.passes($0.event)
        }
        guard let delay = state.historyEventDelay, !missed.isEmpty else {
            stream.watchers[watchID] = watcher
            // Like etcd's unsynced watchers: the history comes in one response.
            if !missed.isEmpty { self.send(missed, watchID: watchID, watcher: watcher, on: stream, state) }
            return
        }
        var slow = watcher
        slow.pending = missed
        stream.watchers[watchID] = slow
        self.scheduleHistory(watchID, on: stream, delay: delay)
    }

    /// Sends an unsynced watcher's next pending event after `delay`.
    private func scheduleHistory(_ watchID: Int64, on stream: Stream, delay: TimeAmount) {
        let box = NIOLoopBound(stream, eventLoop: self.loop)
        self.loop.scheduleTask(in: delay) {
            let state = self.state.value
            let stream = box.value
            guard state.streams[ObjectIdentifier(stream)] != nil, var watcher = stream.watchers[watchID],
                !watcher.pending.isEmpty
            else { return }
            let next = watcher.pending.removeFirst()
            stream.watchers[watchID] = watcher
            self.send([next], watchID: watchID, watcher: watcher, on: stream, state)
            if watcher.pending.isEmpty {
                self.answerProgressIfSynced(stream, state)
            } else {
                self.scheduleHistory(watchID, on: stream, delay: delay)
            }
        }
    }

    private func answerProgressIfSynced(_ stream: Stream, _ state: State) {
        guard stream.progressDeferred, stream.watchers.values.allSatisfy(\.synced) else { return }
        stream.progressDeferred = false
        var response = Etcdserverpb_WatchResponse()
        response.header = self.header(state.revision)
        response.watchID = -1
        stream.stream.send(response)
    }
}
