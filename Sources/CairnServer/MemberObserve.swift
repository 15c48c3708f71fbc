import CairnAPI
import CairnCore
import CairnMVCC
import CairnRPC
import NIOCore

/// Election Observe on the member's executor, as etcd's `observe` loop:
/// 1. Read the leader (first-created key under the prefix). If there is
///    one, send it; else watch the prefix from the read's revision and send
///    the first put (its header revision set to the put's mod revision).
/// 2. Watch the leader's key from the next revision: send each put; on its
///    delete, go back to 1.
///
/// Back-pressure: the responses of one watch batch go to the connection
/// together, and the next batch is taken only once the stream is writable
/// again (`Member.watchStreamReady`), as `WatchSession` does.
///
/// Properties:
/// 1. Touched only on the member's executor.
/// 2. Exactly one watch is current (`State`); responses of replaced
///    watches are ignored.
/// 3. After `finish` the watch stream is closed and nothing more is sent.
final class ElectionObserver: @unchecked Sendable {
    enum State {
        case opening
        /// No leader at the last read: the first put under the prefix is.
        case awaitingLeader(stream: WatchStreamID, watch: WatchID)
        /// Sending the leader's new values until its key is deleted.
        case following(stream: WatchStreamID, watch: WatchID)
        case finished
    }

    /// Sends responses on the connection, then runs the closure once the
    /// stream can take more.
    typealias Deliver = @Sendable ([V3electionpb_LeaderResponse], @escaping @Sendable () -> Void) -> Void

    private let services: MemberServices
    private let prefix: Key
    private let deliver: Deliver
    /// Ends the RPC with a status (on the connection).
    private let end: @Sendable (RPCStatus) -> Void
    private var state = State.opening
    private var lastWatch = WatchID(0)

    init(
        services: MemberServices, prefix: Key, deliver: @escaping Deliver,
        end: @escaping @Sendable (RPCStatus) -> Void
    ) {
        self.services = services
        self.prefix = prefix
        self.deliver = deliver
        self.end = end
    }

    private var member: Member { self.services.member }

    /// Starts observing (executor only).
    func start() {
        guard self.member.watchDeliveries.count < MemberServices.coordinationStreamsMax else {
            self.finish(MemberServices.status(for: CairnError.tooManyRequests))
            return
        }
        self.member.openWatchStream(
            send: { [self] batch in self.received(batch) },
            close: { [self] in self.finish(MemberServices.status(for: CairnError.stopped)) }
        ).whenSuccess { [self] streamID in
            guard case .opening = self.state else {
                self.member.closeWatchStream(streamID)
                return
            }
            var responses: [V3electionpb_LeaderResponse] = []
            self.readLeader(streamID, into: &responses)
            if !responses.isEmpty { self.deliver(responses, {}) }
        }
    }

    /// The client went away (executor only).
    func stop() {
        self.finish(nil)
    }

    /// Step 1: read the leader, or wait for the first put.
    private func readLeader(_ streamID: WatchStreamID, into responses: inout [V3electionpb_LeaderResponse]) {
        let read: RangeResponse
        do {
            read = try self.member.stateMachine.store.range(MemberServices.firstCreated(self.prefix))
        } catch {
            self.finish(MemberServices.status(for: error))
            return
        }
        guard let leader = read.keyValues.first else {
            let watch = self.nextWatch()
            self.member.watchCreate(
                WatchCreateRequest(
                    key: self.prefix, rangeEnd: KeyRange.prefixEnd(of: self.prefix),
                    startRevision: read.revision,
                    watchID: watch),
                stream: streamID)
            self.state = .awaitingLeader(stream: streamID, watch: watch)
            return
        }
        responses.append(self.services.leaderResponse(leader, revision: read.revision))
        self.follow(leader.key, from: read.revision + 1, streamID)
    }

    /// Step 2: watch the leader's key.
    private func follow(_ key: Key, from revision: Int64, _ streamID: WatchStreamID) {
        let watch = self.nextWatch()
        self.member.watchCreate(
            WatchCreateRequest(key: key, startRevision: revision, watchID: watch), stream: streamID)
        self.state = .following(stream: streamID, watch: watch)
    }

    private func nextWatch() -> WatchID {
        self.lastWatch = WatchID(self.lastWatch.rawValue + 1)
        return self.lastWatch
    }

    /// A batch of watch responses for this observer's stream (executor).
    private func received(_ batch: [WatchResponse]) {
        var responses: [V3electionpb_LeaderResponse] = []
        for response in batch {
            switch self.state {
            case .opening, .finished:
                return
            case .awaitingLeader(let streamID, let watch):
                guard response.watchID == watch else { continue }
                if self.endsObserving(response) { return }
                guard let put = response.events.first(where: { $0.kind == .put }) else { continue }
                self.member.watchCancel(watch, stream: streamID)
                let leader = put.keyValue
                responses.append(self.services.leaderResponse(leader, revision: leader.modRevision))
                self.follow(leader.key, from: leader.modRevision + 1, streamID)
            case .following(let streamID, let watch):
                guard response.watchID == watch else { continue }
                if self.endsObserving(response) { return }
                for event in response.events {
                    guard event.kind == .put else {
                        self.member.watchCancel(watch, stream: streamID)
                        self.readLeader(streamID, into: &responses)
                        break
                    }
                    responses.append(
                        self.services.leaderResponse(event.keyValue, revision: response.revision))
                }
            }
        }
        switch self.state {
        case .awaitingLeader(let streamID, _), .following(let streamID, _): self.hand(responses, streamID)
        case .opening, .finished: break
        }
    }

    /// Sends what a batch produced; the stream takes the next batch once
    /// the connection is writable again.
    private func hand(_ responses: [V3electionpb_LeaderResponse], _ streamID: WatchStreamID) {
        let member = self.member
        guard !responses.isEmpty else {
            member.watchStreamReady(streamID)
            return
        }
        self.deliver(responses) { member.watchStreamReady(streamID) }
    }

    /// etcd's observe ends (the stream with OK) when its watch is cancelled,
    /// which only compaction does to these watches.
    private func endsObserving(_ response: WatchResponse) -> Bool {
        guard response.canceled else { return false }
        self.finish(.ok)
        return true
    }

    private func finish(_ status: RPCStatus?) {
        switch self.state {
        case .finished: return
        case .awaitingLeader(let streamID, _), .following(let streamID, _):
            self.member.closeWatchStream(streamID)
        case .opening: break
        }
        self.state = .finished
        if let status { self.end(status) }
    }
}

/// One Observe RPC: its one request starts an `ElectionObserver`; the
/// observer's responses leave through the stream. Touched only on the
/// connection's event loop.
final class ObserveSession: RPCStreamHandler, @unchecked Sendable {
    typealias Request = V3electionpb_LeaderRequest

    private let services: MemberServices
    private let stream: NIOLoopBound<RPCServerStream<V3electionpb_LeaderResponse>>
    private let connectionLoop: any EventLoop
    /// Set while observing; cleared at the end so the observer is freed.
    private var observer: ElectionObserver?
    private var started = false

    init(stream: RPCServerStream<V3electionpb_LeaderResponse>, services: MemberServices) {
        self.services = services
        self.connectionLoop = stream.eventLoop
        self.stream = NIOLoopBound(stream, eventLoop: stream.eventLoop)
    }

    func received(_ request: Request) {
        // Observe takes one request; later ones are ignored.
        guard !self.started else { return }
        self.started = true
        let loop = self.connectionLoop
        let observer = ElectionObserver(
            services: self.services, prefix: MemberServices.contendersPrefix(Array(request.name)),
            deliver: { [self] responses, resume in loop.execute { self.send(responses, resume) } },
            end: { [self] status in
                loop.execute {
                    self.stream.value.finish(status)
                    self.observer = nil
                }
            })
        self.observer = observer
        let prefix = MemberServices.contendersPrefix(Array(request.name))
        let context = self.stream.value.context
        let check = self.services.authorize(context, range: .prefix(prefix), access: [.read])
        check.whenComplete { [self] result in
            switch result {
            case .success: observer.start()
            case .failure(let error):
                loop.execute { self.stream.value.finish(MemberServices.clientStatus(for: error)) }
            }
        }
    }

    private func send(_ responses: [V3electionpb_LeaderResponse], _ resume: @escaping @Sendable () -> Void) {
        let stream = self.stream.value
        guard !stream.isFinished else { return }
        for response in responses { _ = stream.send(response) }
        if stream.isWritable {
            resume()
        } else {
            stream.onWritable = { [self] in
                self.stream.value.onWritable = nil
                resume()
            }
        }
    }

    /// Observe's client sends one request and half-closes; the stream
    /// stays open until the client cancels.
    func receivedEnd() {}

    func cancelled() {
        guard let observer = self.observer else { return }
        self.observer = nil
        self.services.member.eventLoop.execute { observer.stop() }
    }
}
