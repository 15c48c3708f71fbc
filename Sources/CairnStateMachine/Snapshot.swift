import CairnCore
import CairnMVCC

/// Snapshots: the whole replicated state as bytes, so a lagging or new
/// member can start from it and a restarting member need not replay the
/// whole log.
///
/// Layout: magic "CRNS", format version, body, CRC-32C of everything before
/// it (4 bytes, little-endian). The body holds the applied index, the store
/// (revisions, every retained version, the event history) and each lease's
/// replicated fields. History events name retained versions by revision
/// instead of repeating them (see `HistoryVersions`). Attached keys are not written: each live key records
/// its lease, so restore rebuilds the attachments from the store, as etcd
/// does. Leader-local expiries are not written either: a restored primary
/// restarts every lease from its checkpointed remaining TTL.
extension StateMachine {
    static let snapshotMagic: [UInt8] = Array("CRNS".utf8)
    /// The snapshot format this build writes and reads.
    public static let snapshotFormatVersion: UInt8 = 1
    /// Bytes counted per retained version on top of its key and value, for
    /// the approximate size (index entry, revision, counters).
    static let versionOverheadBytes = 64

    /// The replicated state, checksummed.
    public func snapshot() -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes = Self.snapshotMagic
        writer.byte(Self.snapshotFormatVersion)
        writer.unsigned(appliedIndex)
        writer.store(store.exportState())
        let leases = lessor.replicatedLeases()
        writer.count(leases.count)
        for lease in leases {
            writer.signed(lease.id.rawValue)
            writer.signed(lease.ttlSeconds)
            writer.signed(lease.remainingTTLSeconds)
        }
        writer.memberList(members)
        writer.alarmList(alarms)
        writer.authStore(auth)
        let checksum = CRC32C.checksum(writer.bytes[...])
        for shift in stride(from: 0, to: 32, by: 8) {
            writer.byte(UInt8(truncatingIfNeeded: checksum >> shift))
        }
        return writer.bytes
    }

    /// Replaces the whole replicated state with a snapshot's. Corrupted or
    /// malformed input throws and leaves this state machine unchanged. The
    /// lessor keeps its role; a primary restarts lease clocks at `now`.
    public mutating func restore(_ bytes: [UInt8], now: MonotonicInstant) throws(DecodeError) {
        guard bytes.count >= Self.snapshotMagic.count + 5 else { throw .truncated }
        let bodyEnd = bytes.count - 4
        var stored: UInt32 = 0
        for offset in 0..<4 { stored |= UInt32(bytes[bodyEnd + offset]) << (8 * offset) }
        guard CRC32C.checksum(bytes[..<bodyEnd]) == stored else { throw .checksumMismatch }
        var reader = ByteReader(Array(bytes[..<bodyEnd]))
        for expected in Self.snapshotMagic where try reader.byte() != expected {
            throw .malformed("not a snapshot")
        }
        let version = try reader.byte()
        guard version == Self.snapshotFormatVersion else { throw .unsupportedVersion(version) }
        let index = try reader.unsigned()
        let exported = try reader.store()
        let leases = try reader.leases(config: config.lessor)
        // Snapshots of a single member written before membership records existed end here.
        let restoredMembers = reader.remaining > 0 ? try reader.memberList() : MemberList()
        // Snapshots written before alarms were replicated end here.
        let restoredAlarms = reader.remaining > 0 ? try reader.alarmList() : []
        // Snapshots written before auth was replicated end here.
        let restoredAuth =
            reader.remaining > 0 ? try reader.authStore(limits: auth.limits) : AuthStore(limits: auth.limits)
        try reader.expectEnd()
        let restoredStore: MVCCStore
        do {
            restoredStore = try MVCCStore(importing: exported, limits: config.storeLimits)
        } catch {
            throw .malformed("store: \(error.reason)")
        }
        store = restoredStore
        appliedIndex = index
        members = restoredMembers
        alarms.restore(restoredAlarms)
        auth = restoredAuth
        lessor.restore(leases: leases, liveKeys: Self.liveKeyLeases(exported), now: now)
        approximateSizeBytes = Self.approximateSize(of: exported)
    }

    /// Each live key with a lease, from the last version of its open generation.
    static func liveKeyLeases(_ state: MVCCStore.ExportedState) -> [(Key, LeaseID)] {
        state.keys.compactMap { exported in
            guard let last = exported.generations.last?.revisions.last?.keyValue, last.lease != .none else {
                return nil
            }
            return (exported.key, last.lease)
        }
    }

    /// Retained versions' keys, values and a fixed overhead each, in bytes.
    static func approximateSize(of state: MVCCStore.ExportedState) -> Int {
        var total = 0
        for exported in state.keys {
            for generation in exported.generations {
                for stored in generation.revisions {
                    total +=
                        versionOverheadBytes + exported.key.bytes.count + (stored.keyValue?.value.count ?? 0)
                }
            }
        }
        return total
    }
}

extension ByteWriter {
    mutating func store(_ state: MVCCStore.ExportedState) {
        signed(state.currentRevision)
        signed(state.compactedRevision)
        signed(state.historyFirstRevision)
        count(state.keys.count)
        for exported in state.keys {
            key(exported.key)
            count(exported.generations.count)
            for generation in exported.generations {
                revision(generation.created)
                signed(generation.version)
                count(generation.revisions.count)
                for stored in generation.revisions {
                    revision(stored.revision)
                    bool(stored.keyValue != nil)
                    if let keyValue = stored.keyValue { self.keyValue(keyValue) }
                }
            }
        }
        let versions = HistoryVersions(state)
        count(state.history.count)
        for (offset, events) in state.history.enumerated() {
            let main = state.historyFirstRevision + Int64(offset)
            count(events.count)
            for (position, event) in events.enumerated() {
                historyEvent(event, main: main, position: position, versions)
            }
        }
    }
}

extension ByteReader {
    mutating func store() throws(DecodeError) -> MVCCStore.ExportedState {
        var state = MVCCStore.ExportedState(
            currentRevision: try signed(), compactedRevision: try signed(),
            historyFirstRevision: try signed(),
            keys: [], history: [])
        for _ in 0..<(try count()) {
            let key = try self.key()
            var generations: [MVCCStore.ExportedGeneration] = []
            for _ in 0..<(try count()) {
                var generation = MVCCStore.ExportedGeneration(
                    created: try revision(), version: try signed(), revisions: [])
                for _ in 0..<(try count()) {
                    let revision = try revision()
                    let keyValue = try bool() ? try self.keyValue() : nil
                    generation.revisions.append(
                        MVCCStore.ExportedRevision(revision: revision, keyValue: keyValue))
                }
                generations.append(generation)
            }
            state.keys.append(MVCCStore.ExportedKey(key: key, generations: generations))
        }
        let versions = HistoryVersions(state)
        for offset in 0..<(try count()) {
            let main = state.historyFirstRevision &+ Int64(offset)
            var events: [Event] = []
            for position in 0..<(try count()) {
                events.append(try historyEvent(main: main, position: position, versions))
            }
            state.history.append(events)
        }
        return state
    }

    mutating func leases(
        config: Lessor.Config
    ) throws(DecodeError) -> [(id: LeaseID, ttlSeconds: Int64, remainingTTLSeconds: Int64)] {
        var leases: [(id: LeaseID, ttlSeconds: Int64, remainingTTLSeconds: Int64)] = []
        var seen = Set<LeaseID>()
        for _ in 0..<(try count()) {
            let lease = (
                id: LeaseID(try signed()), ttlSeconds: try signed(), remainingTTLSeconds: try signed()
            )
            guard lease.id != .none, seen.insert(lease.id).inserted, lease.ttlSeconds > 0,
                lease.remainingTTLSeconds >= 0
            else { throw .malformed("lease \(lease.id)") }
            leases.append(lease)
        }
        guard leases.count <= config.leasesMax else { throw .malformed("more leases than leasesMax") }
        return leases
    }
}
