import CairnAPI
import Foundation

/// An in-memory, revision-stamped copy of every key under one (upstream,
/// already namespaced) prefix, so that the gateway can answer reads of hot
/// prefixes without a round trip while still answering exactly what etcd
/// would have answered at the revision it stamps on the response.
///
/// How it is fed (and why nothing else may feed it): the lead loads it with
/// one Range of the whole prefix (`loadRequest()`), which yields the state at
/// the response's header revision R; it then subscribes to a watch of the
/// prefix starting at R + 1 and hands every watch response, in order, to
/// `apply(_:)`. Events replace or remove keys; a progress notification (an
/// empty, non-created, non-canceled response) proves that every event of the
/// prefix up to its header revision has been delivered. So at any moment the
/// cache holds the prefix exactly as it was at `knownRevision`. There are no
/// TTLs: staleness is measured in revisions and the read barrier decides when
/// the cache is fresh enough.
///
/// Worked example: load at R = 10 with {a@5}; events put b@12, delete a@14
/// arrive: the cache holds {b@12} and knows revision 14; a progress
/// notification at 20 advances it to 20 without changing keys. A response
/// with an event at revision 14 again (a duplicate) or with `compact_revision`
/// set breaks the cache until the lead reloads it.
///
/// Invariants:
/// 1. Answers are given only in `.live(P)`, and then the storage equals the
///    upstream prefix at revision P.
/// 2. Every key stored lies in [`prefix`, `prefixEnd`).
/// 3. P never decreases while live; an event at a revision ≤ P breaks the
///    cache (it is a duplicate or the feed reordered).
/// 4. The events of a fragmented watch response are applied together when
///    its last fragment arrives, never a partial revision.
/// 5. At most `limits.entriesMax` keys and `limits.bytesMax` bytes of keys and
///    values are held; beyond that the cache breaks with `.overCapacity`.
public struct PrefixCache: Sendable {
    /// The cache's lifecycle. `loading` until a load Range is accepted,
    /// `live(P)` while fed in order, `broken` after anything that makes its
    /// contents unprovable; `beginReload()` goes back to `loading`.
    public enum State: Equatable, Sendable {
        case loading
        case live(revision: Int64)
        case broken(BrokenReason)
    }

    /// Why a cache stopped answering.
    public enum BrokenReason: Equatable, Sendable {
        /// The watch was canceled because its start revision was compacted.
        case compacted(compactRevision: Int64)
        /// The watch was canceled for another reason (etcd's cancel_reason).
        case canceled(reason: String)
        /// An event older than what the cache already knows, or events out of
        /// revision order: a duplicate or a gap in the feed.
        case outOfOrder(eventRevision: Int64, knownRevision: Int64)
        /// The lead reported that the feed stopped or skipped (for example the
        /// subscriber was dropped).
        case feedInterrupted
        /// The prefix holds more than `Limits.entriesMax` keys or
        /// `Limits.bytesMax` bytes.
        case overCapacity
        /// A fragmented response had more than `Limits.fragmentEventsMax` events.
        case fragmentTooLarge
    }

    /// Why a load Range response was refused; the cache stays `loading`
    /// (except for `.overCapacity`, which breaks it).
    public enum LoadError: Error, Equatable, Sendable {
        case notLoading
        case incomplete
        case missingRevision
        case keyOutsidePrefix
        case overCapacity
    }

    /// What `apply(_:)` did, so the lead can wake reads waiting on the cache.
    public enum ApplyOutcome: Equatable, Sendable {
        /// `knownRevision` moved from the first to the second revision.
        case advanced(from: Int64, to: Int64)
        /// Nothing new is known (a created response, a fragment, an old progress).
        case unchanged
        /// The response broke the cache.
        case broke(BrokenReason)
        /// The cache is not live; the response was dropped.
        case ignored
    }

    /// Bounds on what one cache holds.
    public struct Limits: Sendable {
        public var entriesMax: Int
        public var bytesMax: Int
        public var fragmentEventsMax: Int

        public init(entriesMax: Int = 100_000, bytesMax: Int = 64 << 20, fragmentEventsMax: Int = 100_000) {
            self.entriesMax = entriesMax
            self.bytesMax = bytesMax
            self.fragmentEventsMax = fragmentEventsMax
        }
    }

    /// The upstream (namespaced) prefix this cache mirrors.
    public let prefix: Data
    /// The exclusive end of the prefix's range; nil means unbounded.
    public let prefixEnd: Data?
    public let limits: Limits
    public private(set) var state: State = .loading
    var storage = SortedKeyValues()
    private var fragmentEvents: [Mvccpb_Event] = []

    public init(prefix: Data, limits: Limits = Limits()) {
        self.prefix = prefix
        self.prefixEnd = CacheKeyBytes.prefixEnd(prefix)
        self.limits = limits
    }

    /// The revision P up to which the cache holds every event of its prefix;
    /// nil unless live.
    public var knownRevision: Int64? {
        if case .live(let revision) = state { return revision }
        return nil
    }

    public var entryCount: Int { storage.count }
    public var storedBytes: Int { storage.storedBytes }

    /// The Range the lead sends upstream to load the cache: the whole prefix,
    /// linearizable so that a fresh cache starts at a current revision.
    public func loadRequest() -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = prefix.isEmpty ? Data([0]) : prefix
        request.rangeEnd = prefixEnd ?? Data([0])
        return request
    }

    /// Accepts the load Range's response; returns its revision R. The lead
    /// then watches the prefix from R + 1 and feeds `apply(_:)`.
    public mutating func load(_ response: Etcdserverpb_RangeResponse) throws(LoadError) -> Int64 {
        guard state == .loading else { throw .notLoading }
        guard !response.more else { throw .incomplete }
        let revision = response.header.revision
        guard response.hasHeader, revision > 0 else { throw .missingRevision }
        guard response.kvs.allSatisfy({ contains($0.key) }) else { throw .keyOutsidePrefix }
        var loaded = SortedKeyValues()
        for keyValue in response.kvs {
            loaded.upsert(keyValue)
            if loaded.count > limits.entriesMax || loaded.storedBytes > limits.bytesMax {
                state = .broken(.overCapacity)
                throw .overCapacity
            }
        }
        storage = loaded
        fragmentEvents = []
        state = .live(revision: revision)
        return revision
    }

    /// Drops the contents and waits for a new load; allowed from any state.
    public mutating func beginReload() {
        storage.removeAll()
        fragmentEvents = []
        state = .loading
    }

    /// The lead's report that the feed can no longer be trusted (subscriber
    /// dropped, upstream watch lost without a gap-free resume).
    public mutating func markBroken(_ reason: BrokenReason = .feedInterrupted) {
        breakCache(reason)
    }

    /// Whether `key` lies in [`prefix`, `prefixEnd`).
    public func contains(_ key: Data) -> Bool {
        guard CacheKeyBytes.compare(key, prefix) >= 0 else { return false }
        guard let prefixEnd else { return true }
        return CacheKeyBytes.less(key, prefixEnd)
    }

    private mutating func breakCache(_ reason: BrokenReason) {
        storage.removeAll()
        fragmentEvents = []
        state = .broken(reason)
    }
}

extension PrefixCache {
    /// Applies one watch response of the cache's feed, in feed order.
    public mutating func apply(_ response: Etcdserverpb_WatchResponse) -> ApplyOutcome {
        guard case .live(let known) = state else { return .ignored }
        if response.compactRevision != 0 {
            breakCache(.compacted(compactRevision: response.compactRevision))
            return .broke(.compacted(compactRevision: response.compactRevision))
        }
        if response.canceled {
            breakCache(.canceled(reason: response.cancelReason))
            return .broke(.canceled(reason: response.cancelReason))
        }
        if response.fragment {
            fragmentEvents.append(contentsOf: response.events)
            guard fragmentEvents.count <= limits.fragmentEventsMax else {
                breakCache(.fragmentTooLarge)
                return .broke(.fragmentTooLarge)
            }
            return .unchanged
        }
        var events = response.events
        if !fragmentEvents.isEmpty {
            events = fragmentEvents + events
            fragmentEvents = []
        }
        if events.isEmpty {
            // etcd's IsProgressNotify: only a bare response proves progress; a
            // created response's header revision says nothing about delivery.
            guard !response.created else { return .unchanged }
            return noteProgress(response.header.revision)
        }
        return applyEvents(events, known: known)
    }

    /// A proof from outside the feed that every event of the prefix up to
    /// `revision` has been applied (the watch coalescer's answer to a progress
    /// request, which it gives only after every delivery that precedes it).
    /// Older revisions are ignored (a lagging member's progress says less
    /// than the cache knows); during a fragmented response nothing is proven.
    public mutating func noteProgress(_ revision: Int64) -> ApplyOutcome {
        guard case .live(let known) = state else { return .ignored }
        guard fragmentEvents.isEmpty, revision > known else { return .unchanged }
        state = .live(revision: revision)
        return .advanced(from: known, to: revision)
    }

    private mutating func applyEvents(_ events: [Mvccpb_Event], known: Int64) -> ApplyOutcome {
        var latest = known
        for event in events {
            let revision = event.kv.modRevision
            // Equal revisions are one txn's events; anything older is a duplicate
            // or a reordering, and a revision ≤ the known one was promised done.
            guard revision > known, revision >= latest else {
                breakCache(.outOfOrder(eventRevision: revision, knownRevision: latest))
                return .broke(.outOfOrder(eventRevision: revision, knownRevision: latest))
            }
            if case .UNRECOGNIZED = event.type {
                breakCache(.feedInterrupted)
                return .broke(.feedInterrupted)
            }
            latest = revision
        }
        for event in events where contains(event.kv.key) {
            if event.type == .delete {
                storage.remove(event.kv.key)
            } else {
                storage.upsert(event.kv)
            }
        }
        guard storage.count <= limits.entriesMax, storage.storedBytes <= limits.bytesMax else {
            breakCache(.overCapacity)
            return .broke(.overCapacity)
        }
        state = .live(revision: latest)
        return .advanced(from: known, to: latest)
    }
}
