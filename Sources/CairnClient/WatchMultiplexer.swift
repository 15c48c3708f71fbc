import CairnAPI
import CairnRPC
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK

/// Runs many watches over one bidirectional Watch stream of one connection.
///
/// etcd's Watch RPC is a single stream carrying any number of watches, told
/// apart by `watch_id`; opening a stream per watch would cost an HTTP/2
/// stream and a server goroutine each. The server assigns watch IDs, and
/// answers create requests in the order they were sent, so pending creates
/// are matched first-in first-out with `created` answers (as etcd's clientv3
/// does). All state lives on the connection's event loop, where the stream's
/// callbacks run; public entry points hop there, which also keeps requests in
/// the order they were made.
///
/// When the stream breaks because the connection was lost (UNAVAILABLE), the
/// watches are not failed: after `resumeDelay` a new stream re-creates each
/// from the revision after the last one it delivered, so consumers see no gap
/// and no duplicate (clientv3 does the same). Other closes end every watch.
///
/// Properties:
/// 1. `creating` holds the local IDs of watches whose create request was sent
///    on the current stream and not yet answered, in send order.
/// 2. A watch is in `localIDByWatchID` only once created on the current
///    stream and until cancelled or ended; every value of that map is a key
///    of `watches`.
/// 3. Each watch's sequence is finished exactly once, after which the watch
///    is no longer in `watches`.
/// 4. A watch buffers at most `bufferedResponsesMax` undelivered responses;
///    at the bound it ends with `WatchError.consumerTooSlow` and is cancelled.
/// 5. With no watches left the stream is closed; the next watch opens a new one.
/// 6. At most `resumeAttemptsMax` streams in a row are opened without any
///    answer from the server; then every watch fails with `streamClosed`.
final class WatchMultiplexer: Sendable {
    typealias Continuation = AsyncThrowingStream<Etcdserverpb_WatchResponse, any Error>.Continuation

    /// Pause before re-opening a stream that the connection lost: the
    /// connection itself reconnects with backoff, this only avoids a spin.
    static let resumeDelay = TimeAmount.milliseconds(100)
    static let resumeAttemptsMax = 20

    /// The shared stream's lifecycle.
    enum StreamState {
        case idle
        case open(generation: Int)
        /// The connection was lost; a new stream opens after `resumeDelay`.
        case waitingToResume
        /// The client shut down; no new watches.
        case closed
    }

    /// One watch, from its create request to its end.
    struct Watch {
        /// The create request; its start revision advances as events arrive,
        /// so that re-sending it after a reconnection resumes the watch.
        var request: Etcdserverpb_WatchCreateRequest
        var continuation: Continuation
        /// Completed when the server confirms (or refuses) the watch.
        var created: EventLoopPromise<Int64>?
        /// The server's ID on the current stream, once created there.
        var watchID: Int64?
        /// The consumer left before the server confirmed the watch.
        var abandoned = false
    }

    final class Core {
        var stream: StreamState = .idle
        var requests: RPCClientStream<Etcdserverpb_WatchRequest>?
        var generation = 0
        /// Streams opened since the server last answered (property 6).
        var resumeAttempts = 0
        var creating: [Int] = []
        var watches: [Int: Watch] = [:]
        var localIDByWatchID: [Int64: Int] = [:]
    }

    let connection: RPCConnection
    let metadata: HPACKHeaders
    let bufferedResponsesMax: Int
    private let core: NIOLoopBoundBox<Core>
    private let nextLocalID = NIOLockedValueBox(0)

    init(connection: RPCConnection, metadata: HPACKHeaders, bufferedResponsesMax: Int) {
        precondition(bufferedResponsesMax > 0, "a watch must be able to buffer at least one response")
        self.connection = connection
        self.metadata = metadata
        self.bufferedResponsesMax = bufferedResponsesMax
        self.core = NIOLoopBoundBox.makeBoxSendingValue(Core(), eventLoop: connection.eventLoop)
    }

    var eventLoop: any EventLoop { self.connection.eventLoop }

    /// Runs `body` on the event loop: inline when already there.
    private func onLoop(_ body: @escaping @Sendable (Core) -> Void) {
        if self.eventLoop.inEventLoop {
            body(self.core.value)
        } else {
            self.eventLoop.execute { body(self.core.value) }
        }
    }

    // MARK: Entry points (any thread)

    /// Starts a watch; the future gives its watch ID once the server created it.
    func start(
        _ request: Etcdserverpb_WatchCreateRequest, continuation: Continuation, localID: Int
    ) -> EventLoopFuture<Int64> {
        let promise = self.eventLoop.makePromise(of: Int64.self)
        self.onLoop { core in
            if case .closed = core.stream {
                let error = WatchError.streamClosed(RPCStatus(.unavailable, "the client is shut down"))
                promise.fail(error)
                continuation.finish(throwing: error)
                return
            }
            core.watches[localID] = Watch(request: request, continuation: continuation, created: promise)
            switch core.stream {
            case .open: self.sendCreate(localID, core)
            case .idle: self.openStream(core)
            case .waitingToResume, .closed: break
            }
        }
        return promise.futureResult
    }

    /// A new watch's ID on this client side (the server's ID comes later).
    func makeLocalID() -> Int {
        self.nextLocalID.withLockedValue { value in
            value += 1
            return value
        }
    }

    /// The consumer stopped: cancel the watch on the server, quietly.
    func cancel(localID: Int) {
        // Always deferred: this runs from `onTermination`, which `finish` may
        // call synchronously while the core is being mutated.
        self.eventLoop.execute {
            let core = self.core.value
            guard var watch = core.watches[localID] else { return }
            if let watchID = watch.watchID {
                core.watches[localID] = nil
                core.localIDByWatchID[watchID] = nil
                self.sendCancel(watchID, core)
                watch.continuation.finish()
                self.closeIfUnused(core)
            } else {
                watch.abandoned = true
                watch.created?.fail(CancellationError())
                watch.created = nil
                core.watches[localID] = watch
            }
        }
    }

    /// Gives up on a watch the server has not confirmed yet: its creation
    /// fails with `error` (a create timeout). A confirmed watch is left alone.
    func abandonIfNotCreated(localID: Int, error: any Error) {
        self.onLoop { core in
            guard var watch = core.watches[localID], let created = watch.created else { return }
            watch.abandoned = true
            watch.created = nil
            core.watches[localID] = watch
            created.fail(error)
        }
    }

    /// Asks the server for a progress notification on every watch of the stream.
    func requestProgress() {
        self.onLoop { core in
            var message = Etcdserverpb_WatchRequest()
            message.progressRequest = Etcdserverpb_WatchProgressRequest()
            core.requests?.send(message)
        }
    }

    /// Ends every watch and refuses new ones (client shutdown).
    func close() {
        self.onLoop { core in
            let status = RPCStatus(.unavailable, "the client is shut down")
            core.stream = .closed
            core.requests?.cancel()
            core.requests = nil
            self.failAll(core, WatchError.streamClosed(status))
        }
    }

    /// How many watches this multiplexer runs and whether its stream is
    /// open; lets tests see that cancelled watches really went away.
    func usage() async -> (watches: Int, streamOpen: Bool) {
        let answer = self.eventLoop.submit {
            let core = self.core.value
            if case .open = core.stream { return (core.watches.count, true) }
            return (core.watches.count, false)
        }
        return (try? await answer.get()) ?? (0, false)
    }

    // MARK: Stream (event loop)

    /// Opens a stream and creates on it every watch not abandoned.
    private func openStream(_ core: Core) {
        core.generation += 1
        let generation = core.generation
        core.stream = .open(generation: generation)
        core.creating = []
        core.localIDByWatchID = [:]
        let requests = self.connection.openStream(
            EtcdWatch.watch,
            options: RPCCallOptions(timeout: nil, metadata: self.metadata, waitForReady: true),
            onResponse: { response in
                let core = self.core.value
                guard case .open(generation) = core.stream else { return }
                core.resumeAttempts = 0
                self.received(response, core)
            },
            onClose: { status in self.streamClosed(status, generation: generation) })
        // The call may have failed synchronously (connection shut down).
        guard case .open(generation) = core.stream else { return }
        core.requests = requests
        for localID in core.watches.keys.sorted() {
            guard var watch = core.watches[localID] else { continue }
            watch.watchID = nil
            core.watches[localID] = watch
            if watch.abandoned {
                core.watches[localID] = nil
                watch.continuation.finish()
            } else {
                self.sendCreate(localID, core)
            }
        }
        self.closeIfUnused(core)
    }

    private func streamClosed(_ status: RPCStatus, generation: Int) {
        let core = self.core.value
        guard case .open(generation) = core.stream else { return }
        core.requests = nil
        core.creating = []
        core.localIDByWatchID = [:]
        core.resumeAttempts += 1
        guard status.code == .unavailable, core.resumeAttempts <= Self.resumeAttemptsMax else {
            core.stream = .idle
            core.resumeAttempts = 0
            self.failAll(core, WatchError.streamClosed(status))
            return
        }
        core.stream = .waitingToResume
        self.eventLoop.scheduleTask(in: Self.resumeDelay) {
            let core = self.core.value
            guard case .waitingToResume = core.stream else { return }
            if core.watches.isEmpty {
                core.stream = .idle
            } else {
                self.openStream(core)
            }
        }
    }

    private func sendCreate(_ localID: Int, _ core: Core) {
        guard let watch = core.watches[localID] else { return }
        core.creating.append(localID)
        var message = Etcdserverpb_WatchRequest()
        message.createRequest = watch.request
        core.requests?.send(message)
    }

    private func received(_ response: Etcdserverpb_WatchResponse, _ core: Core) {
        if response.created {
            self.createdAnswer(response, core)
        } else if response.canceled || response.compactRevision != 0 {
            guard let localID = core.localIDByWatchID.removeValue(forKey: response.watchID),
                let watch = core.watches.removeValue(forKey: localID)
            else { return }
            watch.continuation.finish(throwing: Self.cancelError(response))
            self.closeIfUnused(core)
        } else if response.watchID == -1 {
            // A progress answer not tied to one watch: every watch gets it.
            for localID in core.localIDByWatchID.values { self.deliver(response, to: localID, core) }
        } else if let localID = core.localIDByWatchID[response.watchID] {
            self.deliver(response, to: localID, core)
        }
    }

    private func createdAnswer(_ response: Etcdserverpb_WatchResponse, _ core: Core) {
        guard !core.creating.isEmpty else { return }
        let localID = core.creating.removeFirst()
        guard var watch = core.watches[localID] else { return }
        if response.canceled || response.compactRevision != 0 {
            core.watches[localID] = nil
            let error = Self.cancelError(response)
            watch.created?.fail(error)
            watch.continuation.finish(throwing: error)
            self.closeIfUnused(core)
            return
        }
        if watch.abandoned {
            core.watches[localID] = nil
            self.sendCancel(response.watchID, core)
            watch.continuation.finish()
            self.closeIfUnused(core)
            return
        }
        if watch.request.startRevision == 0 {
            // "From now" means from the revision after the one at creation;
            // pin it so a resumed watch neither skips nor repeats events.
            watch.request.startRevision = response.header.revision + 1
        }
        watch.watchID = response.watchID
        watch.created?.succeed(response.watchID)
        watch.created = nil
        core.watches[localID] = watch
        core.localIDByWatchID[response.watchID] = localID
    }

    private func deliver(_ response: Etcdserverpb_WatchResponse, to localID: Int, _ core: Core) {
        guard var watch = core.watches[localID], let watchID = watch.watchID else { return }
        if let last = response.events.last {
            watch.request.startRevision = last.kv.modRevision + 1
            core.watches[localID] = watch
        } else if response.watchID == watchID {
            // A per-watch progress notification: nothing up to its revision is pending.
            watch.request.startRevision = max(watch.request.startRevision, response.header.revision + 1)
            core.watches[localID] = watch
        }
        switch watch.continuation.yield(response) {
        case .enqueued:
            return
        case .dropped:
            core.watches[localID] = nil
            core.localIDByWatchID[watchID] = nil
            self.sendCancel(watchID, core)
            watch.continuation.finish(
                throwing: WatchError.consumerTooSlow(bufferedResponsesMax: self.bufferedResponsesMax))
            self.closeIfUnused(core)
        case .terminated:
            core.watches[localID] = nil
            core.localIDByWatchID[watchID] = nil
            self.sendCancel(watchID, core)
            self.closeIfUnused(core)
        @unknown default:
            return
        }
    }

    private static func cancelError(_ response: Etcdserverpb_WatchResponse) -> WatchError {
        if response.compactRevision != 0 { return .compacted(compactRevision: response.compactRevision) }
        return .canceledByServer(reason: response.cancelReason)
    }

    private func sendCancel(_ watchID: Int64, _ core: Core) {
        var message = Etcdserverpb_WatchRequest()
        message.cancelRequest.watchID = watchID
        core.requests?.send(message)
    }

    /// Closes the stream once no watch uses it (property 5).
    private func closeIfUnused(_ core: Core) {
        guard core.watches.isEmpty, case .open = core.stream else { return }
        core.stream = .idle
        core.creating = []
        core.requests?.cancel()
        core.requests = nil
    }

    private func failAll(_ core: Core, _ error: WatchError) {
        let watches = core.watches
        core.watches = [:]
        core.localIDByWatchID = [:]
        core.creating = []
        for watch in watches.values {
            watch.created?.fail(error)
            watch.continuation.finish(throwing: error)
        }
    }
}
