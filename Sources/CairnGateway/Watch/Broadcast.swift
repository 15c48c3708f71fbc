import CairnAPI

/// One upstream watch and the subscriptions it feeds.
///
/// A *shared* broadcast serves every subscription of its `key` (tenant and
/// request shape) and keeps recent events for late joiners; a *catch-up*
/// broadcast serves one late joiner from its old start revision until it
/// reaches the shared broadcast's position, then hands the joiner over (or,
/// when no shared broadcast is left, becomes the shared one itself).
///
/// Lifecycle (`State`): `creating` (create sent, answer pending) → `live`
/// (upstream watch ID known) → `resuming` (the stream broke; re-created from
/// `position + 1` on the next stream) → `live` … → `closed`. A broadcast is
/// joinable only while it is the coalescer's shared broadcast for its key,
/// and it stops being that before it is closed: a closing upstream is never
/// joined.
///
/// Properties:
/// 1. Once `positionKnown`, every event of the key with a revision above
///    `position` reaches the members (in order, whole revisions), and every
///    event at or below it already has.
/// 2. `recent` holds every event of revisions in `(recent.floor, position]`
///    (shared broadcasts only; catch-ups keep none).
/// 3. A catch-up broadcast has exactly one member.
/// 4. `position` never decreases.
struct Broadcast {
    enum State: Equatable {
        case creating
        case live(watchID: Int64)
        case resuming
        case closed
    }

    let id: Int
    let key: BroadcastKey
    var isShared: Bool
    var state: State = .creating
    /// The first creation's start revision (0: from the upstream's now).
    let startRevision: Int64
    var position: Int64 = 0
    var positionKnown = false
    var recent: RecentWatchEvents
    var members: Set<Int> = []

    init(id: Int, key: BroadcastKey, isShared: Bool, startRevision: Int64, recentEventsMax: Int) {
        self.id = id
        self.key = key
        self.isShared = isShared
        self.startRevision = startRevision
        self.recent = RecentWatchEvents(eventsMax: isShared ? recentEventsMax : 0)
    }

    /// The start revision for (re-)creating the upstream watch: resume just
    /// after the position, or the original start before the first answer.
    var createStartRevision: Int64 {
        self.positionKnown ? self.position + 1 : self.startRevision
    }

    var watchID: Int64? {
        if case .live(let watchID) = self.state { return watchID }
        return nil
    }

    /// Sets the position when the upstream confirms the first creation.
    mutating func established(createdRevision: Int64) {
        guard !self.positionKnown else { return }
        self.position = self.startRevision == 0 ? createdRevision : self.startRevision - 1
        self.positionKnown = true
        self.recent.reset(floor: self.position)
    }

    /// Records events that arrived from upstream (property 4).
    mutating func received(_ response: Etcdserverpb_WatchResponse) {
        guard let last = response.events.last?.kv.modRevision else { return }
        if last > self.position { self.position = last }
        if self.isShared { self.recent.append(response.events, lastRevision: last) }
    }

    /// Records a progress answer: nothing at or below `revision` is pending.
    mutating func progressed(to revision: Int64) {
        guard self.positionKnown, revision > self.position else { return }
        self.position = revision
    }
}

/// The recent events of a shared broadcast, for late joiners: a bounded
/// window of whole upstream responses.
///
/// Properties:
/// 1. It holds every event with a revision above `floor` that its broadcast
///    received since the floor was set.
/// 2. It holds at most `eventsMax` events (plus the newest response when that
///    alone is larger); at the bound the oldest responses are dropped and
///    `floor` rises to their last revision.
struct RecentWatchEvents {
    let eventsMax: Int
    private(set) var floor: Int64 = 0
    private var batches: [(events: [Mvccpb_Event], lastRevision: Int64)] = []
    private var head = 0
    private var eventCount = 0

    init(eventsMax: Int) {
        self.eventsMax = eventsMax
    }

    mutating func reset(floor: Int64) {
        self.floor = floor
        self.batches = []
        self.head = 0
        self.eventCount = 0
    }

    /// Whether every event from `startRevision` on is here.
    func covers(from startRevision: Int64) -> Bool {
        startRevision > self.floor
    }

    mutating func append(_ events: [Mvccpb_Event], lastRevision: Int64) {
        guard self.eventsMax > 0 else {
            self.floor = max(self.floor, lastRevision)
            return
        }
        self.batches.append((events, lastRevision))
        self.eventCount += events.count
        while self.eventCount > self.eventsMax, self.batches.count - self.head > 1 {
            let oldest = self.batches[self.head]
            self.head += 1
            self.eventCount -= oldest.events.count
            self.floor = oldest.lastRevision
        }
        if self.head > 64, self.head * 2 > self.batches.count {
            self.batches.removeFirst(self.head)
            self.head = 0
        }
    }

    /// The held batches with events at or after `startRevision`, trimmed.
    func events(from startRevision: Int64) -> [[Mvccpb_Event]] {
        var result: [[Mvccpb_Event]] = []
        for index in self.head..<self.batches.count where self.batches[index].lastRevision >= startRevision {
            let kept = self.batches[index].events.filter { $0.kv.modRevision >= startRevision }
            if !kept.isEmpty { result.append(kept) }
        }
        return result
    }
}
