import CairnCore
import DequeModule

/// Fans the store's events out to watchers, as etcd's watchable store does,
/// without ever letting one slow stream hold up another.
///
/// Driven by explicit calls; it returns values and never calls out:
/// - `watch` / `cancel` on client requests;
/// - `applied(events:revision:)` after every write that made a revision;
/// - `step(store:)` after those and periodically: catches up watchers from
///   the store's history in bounded batches and cancels compacted ones;
/// - `drain(stream:...)` when the stream's consumer can take more;
/// - `requestProgress(stream:)` and `progressTick()` for progress.
///
/// A watcher's lifecycle (`Watcher.State`):
///
///     watch ──start <= revision──▶ catchingUp ──history reaches revision──▶ synced
///       └──────start > revision──────────────────────────────────────────▶ synced
///     synced ──events do not fit the buffer──▶ blocked ──buffer has room──▶ catchingUp
///     catchingUp/blocked ──next revision compacted──▶ canceled (removed once drained)
///     synced ──restored(store:)──▶ catchingUp
///
/// Properties:
/// 1. Every watcher receives each matching event exactly once, in revision
///    order; `next` is the first revision it has not been given.
/// 2. A synced watcher's `next` is `revision + 1` (or its future start);
///    only synced watchers take live events; the others read history.
/// 3. A response never splits a revision's events (fragments aside).
/// 4. A watcher holds at most `eventsBufferedMax` undrained events, except
///    that an empty buffer takes one whole revision of any size; a watcher
///    that cannot take a revision becomes blocked and is later re-fed from
///    history: nothing is dropped, and no other watcher waits for it.
/// 5. Each stream's queue delivers responses in the order they were made.
public struct WatchHub: Sendable {
    /// Bounds on buffering and on the work of one `step`.
    public struct Limits: Hashable, Sendable {
        /// Undrained events one watcher may hold.
        public var eventsBufferedMax: Int
        /// Events read from history for one watcher in one step.
        public var catchUpEventsMax: Int
        /// Revisions scanned from history for one watcher in one step.
        public var catchUpRevisionsMax: Int
        /// Watchers caught up in one step (etcd's maxWatchersPerSync).
        public var catchUpWatchersMax: Int

        public init(
            eventsBufferedMax: Int = 1024, catchUpEventsMax: Int = 1000, catchUpRevisionsMax: Int = 10_000,
            catchUpWatchersMax: Int = 512
        ) {
            precondition(eventsBufferedMax > 0 && catchUpEventsMax > 0 && catchUpRevisionsMax > 0)
            precondition(catchUpWatchersMax > 0)
            self.eventsBufferedMax = eventsBufferedMax
            self.catchUpEventsMax = catchUpEventsMax
            self.catchUpRevisionsMax = catchUpRevisionsMax
            self.catchUpWatchersMax = catchUpWatchersMax
        }
    }

    struct WatcherKey: Hashable, Comparable, Sendable {
        var stream: WatchStreamID
        var id: WatchID

        static func < (lhs: WatcherKey, rhs: WatcherKey) -> Bool {
            lhs.stream != rhs.stream ? lhs.stream < rhs.stream : lhs.id < rhs.id
        }
    }

    struct Watcher: Sendable {
        typealias State = WatcherState

        let request: WatchCreateRequest
        let range: KeyRange
        var state: State
        /// The first revision not yet given to this watcher.
        var next: Int64
        var bufferedEvents = 0
        var bufferedResponses = 0
        /// Whether events went out since the last progress tick.
        var sentSinceTick = false

        /// The events of `events` this watcher wants, shaped as it asked.
        func select(_ events: [Event]) -> [Event] {
            var selected: [Event] = []
            for var event in events where range.contains(event.keyValue.key) {
                if event.kind == .put && request.noPut { continue }
                if event.kind == .delete && request.noDelete { continue }
                if !request.previousKeyValue { event.previous = nil }
                selected.append(event)
            }
            return selected
        }
    }

    struct Stream: Sendable {
        var queue: Deque<WatchResponse> = []
        var watchers: Set<WatchID> = []
        var nextAutomaticID: Int64 = 0
        var progressRequested = false
    }

    public let limits: Limits
    /// The newest revision whose events the hub has been given.
    public private(set) var revision: Int64
    var watchers: [WatcherKey: Watcher] = [:]
    var streams: [WatchStreamID: Stream] = [:]
    /// The watchers in state catchingUp or blocked: the work of `step`.
    var unsynced: Set<WatcherKey> = []

    /// A hub for a store currently at `revision`.
    public init(revision: Int64, limits: Limits = Limits()) {
        self.revision = revision
        self.limits = limits
    }

    // MARK: creating and canceling

    /// Creates a watcher and queues etcd's "created" response (or a
    /// created-and-canceled one with the reason). Call `step` to catch it up.
    @discardableResult
    public mutating func watch(
        _ request: WatchCreateRequest, stream streamID: WatchStreamID
    ) -> Result<WatchID, WatchCreateError> {
        var stream = streams[streamID] ?? Stream()
        defer { streams[streamID] = stream }
        let range = request.range
        if case .interval(let start, let end) = range, !(start < end) {
            stream.queue.append(createFailure(.emptyRange))
            return .failure(.emptyRange)
        }
        let id: WatchID
        if let chosen = request.watchID {
            guard !stream.watchers.contains(chosen) else {
                stream.queue.append(createFailure(.duplicateID))
                return .failure(.duplicateID)
            }
            id = chosen
        } else {
            while stream.watchers.contains(WatchID(stream.nextAutomaticID)) { stream.nextAutomaticID += 1 }
            id = WatchID(stream.nextAutomaticID)
            stream.nextAutomaticID += 1
        }
        // As in etcd, only 0 means "next"; a negative start replays history
        // (or is canceled as compacted, with etcd's compact revision -1).
        let start = request.startRevision == 0 ? revision + 1 : request.startRevision
        let state: Watcher.State = start > revision ? .synced : .catchingUp
        let key = WatcherKey(stream: streamID, id: id)
        watchers[key] = Watcher(
            request: request, range: range, state: state, next: start, bufferedResponses: 1)
        if state == .catchingUp { unsynced.insert(key) }
        stream.watchers.insert(id)
        stream.queue.append(WatchResponse(watchID: id, revision: revision, created: true))
        return .success(id)
    }

    private func createFailure(_ error: WatchCreateError) -> WatchResponse {
        WatchResponse(
            watchID: .streamWide, revision: revision, created: true, canceled: true,
            cancelReason: error.reason)
    }

    /// Cancels a watcher at its client's request: its undrained responses
    /// are dropped and a canceled response is queued. False if unknown.
    @discardableResult
    public mutating func cancel(_ id: WatchID, stream streamID: WatchStreamID) -> Bool {
        let key = WatcherKey(stream: streamID, id: id)
        guard watchers.removeValue(forKey: key) != nil, var stream = streams[streamID] else { return false }
        unsynced.remove(key)
        stream.watchers.remove(id)
        stream.queue.removeAll { $0.watchID == id }
        stream.queue.append(WatchResponse(watchID: id, revision: revision, canceled: true))
        streams[streamID] = stream
        return true
    }

    /// Forgets a stream whose client went away, with all its watchers.
    public mutating func closeStream(_ streamID: WatchStreamID) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        for id in stream.watchers {
            watchers.removeValue(forKey: WatcherKey(stream: streamID, id: id))
            unsynced.remove(WatcherKey(stream: streamID, id: id))
        }
    }

    // MARK: feeding

    /// Delivers the events of one new revision to the synced watchers.
    /// A watcher whose buffer cannot take them becomes blocked and will read
    /// them from history instead.
    public mutating func applied(events: [Event], revision newRevision: Int64) {
        guard !events.isEmpty else { return }
        precondition(newRevision == revision + 1, "applied \(newRevision) after \(revision)")
        precondition(events.allSatisfy { $0.revision == newRevision }, "events of another revision")
        revision = newRevision
        // Walk by index and mutate in place: no copy of the watcher table.
        var index = watchers.startIndex
        while index != watchers.endIndex {
            defer { watchers.formIndex(after: &index) }
            let key = watchers.keys[index]
            guard watchers.values[index].state == .synced, watchers.values[index].next <= newRevision else {
                continue
            }
            let selected = watchers.values[index].select(events)
            if !selected.isEmpty {
                guard hasRoom(watchers.values[index], for: selected.count) else {
                    watchers.values[index].state = .blocked
                    unsynced.insert(key)
                    continue
                }
                let response = WatchResponse(watchID: key.id, revision: newRevision, events: selected)
                Self.enqueue(response, for: &watchers.values[index], on: &streams[key.stream]!)
            }
            watchers.values[index].next = newRevision + 1
        }
    }

    private func hasRoom(_ watcher: Watcher, for events: Int) -> Bool {
        watcher.bufferedEvents == 0 || watcher.bufferedEvents + events <= limits.eventsBufferedMax
    }

    private mutating func enqueue(_ response: WatchResponse, for watcher: inout Watcher, _ key: WatcherKey) {
        Self.enqueue(response, for: &watcher, on: &streams[key.stream]!)
    }

    private static func enqueue(
        _ response: WatchResponse, for watcher: inout Watcher, on stream: inout Stream
    ) {
        watcher.bufferedEvents += response.events.count
        watcher.bufferedResponses += 1
        if !response.events.isEmpty { watcher.sentSinceTick = true }
        stream.queue.append(response)
    }

    /// Catches up to `catchUpWatchersMax` watchers that are behind, one
    /// bounded history batch each; cancels those whose next revision was
    /// compacted; answers deferred progress requests once their streams are
    /// synced.
    public mutating func step(store: MVCCStore) {
        precondition(store.currentRevision >= revision, "store at \(store.currentRevision) behind hub")
        var served = 0
        for key in unsynced.sorted() where served < limits.catchUpWatchersMax {
            guard var watcher = watchers[key] else { preconditionFailure("unsynced \(key) is unknown") }
            let compacted = watcher.next < store.compactedRevision
            if !compacted && watcher.bufferedEvents >= limits.eventsBufferedMax {
                // Nothing to do until its consumer drains; it costs no slot.
                watchers[key]!.state = .blocked
                continue
            }
            served += 1
            if compacted {
                cancelCompacted(&watcher, key, compactRevision: store.compactedRevision)
            } else {
                catchUp(&watcher, key, store: store)
            }
            watchers[key] = watcher
            if watcher.state == .synced || watcher.state == .canceled { unsynced.remove(key) }
        }
        for (streamID, stream) in streams where stream.progressRequested {
            _ = requestProgress(stream: streamID)
        }
    }

    private mutating func cancelCompacted(_ watcher: inout Watcher, _ key: WatcherKey, compactRevision: Int64)
    {
        watcher.state = .canceled
        enqueue(
            WatchResponse(
                watchID: key.id, revision: revision, canceled: true, compactRevision: compactRevision),
            for: &watcher, key)
    }

    private mutating func catchUp(_ watcher: inout Watcher, _ key: WatcherKey, store: MVCCStore) {
        let room = limits.eventsBufferedMax - watcher.bufferedEvents
        let read = store.events(
            in: watcher.range, from: watcher.next, through: revision,
            eventsMax: max(1, min(room, limits.catchUpEventsMax)), revisionsMax: limits.catchUpRevisionsMax)
        let selected = watcher.select(read.events)
        if !selected.isEmpty {
            enqueue(WatchResponse(watchID: key.id, revision: revision, events: selected), for: &watcher, key)
        }
        watcher.next = read.next
        watcher.state = watcher.next > revision ? .synced : .catchingUp
    }

    /// After the store was replaced by a snapshot (a restart or a snapshot
    /// from the leader): every synced watcher goes back to catching up from
    /// where it was, as etcd's watchable store does on restore; `step` then
    /// feeds it from the new history or cancels it if that was compacted.
    public mutating func restored(store: MVCCStore) {
        precondition(
            store.currentRevision >= revision, "restored store at \(store.currentRevision) < \(revision)")
        revision = store.currentRevision
        for (key, watcher) in watchers where watcher.state == .synced && watcher.next <= revision {
            watchers[key]!.state = .catchingUp
            unsynced.insert(key)
        }
    }

    // MARK: draining

    /// Takes up to `responsesMax` responses of a stream, in order, splitting
    /// responses of watchers that asked for fragments at `fragmentBytesMax`.
    public mutating func drain(
        stream streamID: WatchStreamID, responsesMax: Int = .max, fragmentBytesMax: Int = .max
    ) -> [WatchResponse] {
        guard var stream = streams[streamID] else { return [] }
        var drained: [WatchResponse] = []
        while drained.count < responsesMax, let response = stream.queue.popFirst() {
            let key = WatcherKey(stream: streamID, id: response.watchID)
            var fragment = false
            if var watcher = watchers[key] {
                watcher.bufferedEvents -= response.events.count
                watcher.bufferedResponses -= 1
                fragment = watcher.request.fragment
                if watcher.state == .canceled && watcher.bufferedResponses == 0 {
                    watchers.removeValue(forKey: key)
                    stream.watchers.remove(key.id)
                } else {
                    watchers[key] = watcher
                }
            }
            drained += fragment ? response.fragmented(bytesMax: fragmentBytesMax) : [response]
        }
        streams[streamID] = stream
        return drained
    }

    /// How many responses wait in a stream's queue.
    public func pendingResponses(stream streamID: WatchStreamID) -> Int {
        streams[streamID]?.queue.count ?? 0
    }

    // MARK: progress

    /// The revision through which a watcher has been given every event
    /// (queued, maybe not yet drained); nil for an unknown watcher.
    public func progressRevision(of id: WatchID, stream streamID: WatchStreamID) -> Int64? {
        guard let watcher = watchers[WatcherKey(stream: streamID, id: id)] else { return nil }
        return watcher.state == .synced ? revision : watcher.next - 1
    }

    /// etcd's RequestProgress: when every watcher of the stream is synced, a
    /// stream-wide progress response (watch ID -1) at the current revision is
    /// queued behind their events; otherwise the request waits for `step`.
    /// Returns whether the response was queued.
    @discardableResult
    public mutating func requestProgress(stream streamID: WatchStreamID) -> Bool {
        guard var stream = streams[streamID] else { return false }
        defer { streams[streamID] = stream }
        let allSynced = stream.watchers.allSatisfy {
            watchers[WatcherKey(stream: streamID, id: $0)]?.state == .synced
        }
        guard allSynced else {
            stream.progressRequested = true
            return false
        }
        stream.progressRequested = false
        // etcd sends progress through a watcher of the stream: none, none sent.
        guard !stream.watchers.isEmpty else { return false }
        let progress = WatchResponse(watchID: .streamWide, revision: revision)
        if stream.queue.last != progress { stream.queue.append(progress) }
        return true
    }

    /// etcd's periodic progress notification: each synced watcher that asked
    /// for it and was sent no events since the last tick gets a progress
    /// response at the current revision (at most one queued at a time).
    public mutating func progressTick() {
        for (key, watcher) in watchers where watcher.request.progressNotify {
            var watcher = watcher
            if watcher.state == .synced && !watcher.sentSinceTick && watcher.bufferedResponses == 0 {
                enqueue(WatchResponse(watchID: key.id, revision: revision), for: &watcher, key)
            }
            watcher.sentSinceTick = false
            watchers[key] = watcher
        }
    }

    /// Where a watcher is in its lifecycle (see the type comment).
    public enum WatcherState: Hashable, Sendable {
        /// Given every event through the hub's revision; takes live events.
        case synced
        /// Behind; fed from the store's history by `step`.
        case catchingUp
        /// Its consumer has not drained; waits, then catches up from history.
        case blocked
        /// Canceled by compaction; removed once its last response is drained.
        case canceled
    }

    /// The state of a watcher, for tests and metrics; nil if unknown.
    public func state(of id: WatchID, stream streamID: WatchStreamID) -> WatcherState? {
        watchers[WatcherKey(stream: streamID, id: id)]?.state
    }

    /// How many watchers exist, for metrics.
    public var watcherCount: Int { watchers.count }
}
