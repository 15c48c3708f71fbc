import CairnCore

/// The history of one key: the revisions at which it was put or deleted,
/// grouped into generations, so a read at any retained revision finds the
/// version that was live then.
///
/// A generation runs from the put that creates the key to the delete that
/// removes it (the tombstone, the generation's last revision). A new put after
/// a delete starts a new generation. A worked example for key "foo":
///
///     put foo @2, put foo @3, delete foo @4, put foo @5, put foo @6
///     generations: {created 2, version 3: [2, 3, 4(tombstone)]}
///                  {created 5, version 2: [5, 6]}
///
///     read @3 -> modified 3, created 2, version 2
///     read @4 -> not found (tombstoned at 4)
///     read @6 -> modified 6, created 5, version 2
///
///     compact @3 -> keep 3, the latest revision <= 3; drop 2:
///                  {created 2, version 3: [3, 4(t)]} {created 5, version 2: [5, 6]}
///     compact @4 -> the latest revision <= 4 is a tombstone, which nobody can
///                  read: the whole first generation goes:
///                  {created 5, version 2: [5, 6]}
///     delete foo @7, compact @7 -> nothing readable remains; the index is
///                  empty and the store forgets the key.
///
/// Properties:
/// 1. Revisions strictly increase across all generations.
/// 2. Every generation but the last ends with a tombstone; the last is open
///    (possibly empty, right after a tombstone).
/// 3. `version` of a generation counts every put and the tombstone made in it,
///    including those dropped by compaction, so versions stay right after
///    compaction.
/// 4. A key put once and never changed since (most keys of most key spaces)
///    is held as `.single`, without the two arrays of the general form.
struct KeyIndex: Sendable {
    struct Generation: Sendable {
        /// The revision of the put that created this generation.
        var created: Revision
        /// Puts (and the tombstone) made in this generation, compacted or not.
        var version: Int64
        /// The retained revisions, oldest first.
        var revisions: [Revision]
    }

    /// What a read at some revision finds.
    struct Found: Equatable, Sendable {
        var modified: Revision
        var created: Revision
        var version: Int64
    }

    /// One generation created at a revision with that one put (property 4),
    /// or any shape. Two arrays cost about 150 bytes a key, more than the
    /// key's own entry in the store's index.
    private enum Storage: Sendable {
        case single(Revision)
        case general([Generation])
    }

    private var storage = Storage.general([])

    init() {}

    /// Rebuilds an index from exported generations (see `MVCCStore.ExportedState`).
    init(generations: [Generation]) {
        if generations.count == 1, generations[0].revisions.count == 1, generations[0].version == 1,
            generations[0].created == generations[0].revisions[0]
        {
            storage = .single(generations[0].created)
        } else {
            storage = .general(generations)
        }
    }

    /// Every generation, oldest first.
    var generations: [Generation] {
        switch storage {
        case .single(let revision): return [Generation(created: revision, version: 1, revisions: [revision])]
        case .general(let generations): return generations
        }
    }

    /// Whether no readable or historical revision remains.
    var isEmpty: Bool {
        guard case .general(let generations) = storage else { return false }
        return generations.isEmpty || (generations.count == 1 && generations[0].revisions.isEmpty)
    }

    /// Whether the key is live at the newest revision.
    var isLive: Bool {
        guard case .general(let generations) = storage else { return true }
        return !(generations.last?.revisions.isEmpty ?? true)
    }

    /// Records a put at `revision`.
    mutating func put(_ revision: Revision) {
        if case .general(let generations) = storage, generations.isEmpty {
            storage = .single(revision)
            return
        }
        var generations = self.generations
        storage = .general([])  // `generations` is the only reference while it changes
        defer { storage = .general(generations) }
        Self.put(revision, into: &generations)
    }

    private static func put(_ revision: Revision, into generations: inout [Generation]) {
        if let last = generations.last?.revisions.last {
            precondition(last < revision, "put at \(revision) not after \(last)")
        }
        if generations.isEmpty {
            generations.append(Generation(created: revision, version: 0, revisions: []))
        }
        let last = generations.count - 1
        if generations[last].revisions.isEmpty { generations[last].created = revision }
        generations[last].revisions.append(revision)
        generations[last].version += 1
    }

    /// Records a delete at `revision`, closing the live generation.
    mutating func tombstone(_ revision: Revision) {
        precondition(isLive, "tombstone at \(revision) of a key that is not live")
        var generations = self.generations
        storage = .general([])
        Self.put(revision, into: &generations)
        generations.append(Generation(created: Revision(main: 0), version: 0, revisions: []))
        storage = .general(generations)
    }

    /// The version live at main revision `revision`, or nil if the key did not
    /// exist then (never created, deleted, or compacted away).
    func get(at revision: Int64) -> Found? {
        guard case .general(let generations) = storage else {
            guard case .single(let only) = storage, only.main <= revision else { return nil }
            return Found(modified: only, created: only, version: 1)
        }
        guard let index = Self.generationIndex(at: revision, in: generations) else { return nil }
        let generation = generations[index]
        var position = generation.revisions.count - 1
        while position >= 0 {
            if generation.revisions[position].main <= revision {
                let newer = Int64(generation.revisions.count - 1 - position)
                return Found(
                    modified: generation.revisions[position], created: generation.created,
                    version: generation.version - newer)
            }
            position -= 1
        }
        return nil
    }

    /// The generation holding the key's live version at `revision`, if any.
    private static func generationIndex(at revision: Int64, in generations: [Generation]) -> Int? {
        var index = generations.count - 1
        while index >= 0 {
            let generation = generations[index]
            if let last = generation.revisions.last, let first = generation.revisions.first {
                let closed = index != generations.count - 1
                if closed && revision >= last.main { return nil }
                if first.main <= revision { return index }
            }
            index -= 1
        }
        return nil
    }

    /// Drops every revision at or below `revision` except the newest one, which
    /// stays readable, unless that one is a tombstone. Returns the dropped
    /// revisions so the store can drop their values.
    mutating func compact(at revision: Int64) -> [Revision] {
        // One put: it stays readable whatever the revision.
        guard case .general(var generations) = storage else { return [] }
        storage = .general([])
        defer { storage = .general(generations) }
        var dropped: [Revision] = []
        var keepFrom = 0
        // Generations that ended (tombstone) before `revision` are unreadable.
        while keepFrom < generations.count - 1,
            let tombstone = generations[keepFrom].revisions.last, tombstone.main < revision
        {
            dropped.append(contentsOf: generations[keepFrom].revisions)
            keepFrom += 1
        }
        generations.removeFirst(keepFrom)
        guard !generations.isEmpty else { return dropped }
        var first = generations[0]
        if let newestAtOrBelow = first.revisions.lastIndex(where: { $0.main <= revision }) {
            dropped.append(contentsOf: first.revisions[..<newestAtOrBelow])
            first.revisions.removeFirst(newestAtOrBelow)
        }
        generations[0] = first
        let isClosed = generations.count > 1
        if isClosed, first.revisions.count == 1, first.revisions[0].main <= revision {
            // Only the tombstone remains: nothing is readable in this generation.
            dropped.append(first.revisions[0])
            generations.removeFirst()
        }
        return dropped
    }

    /// Every retained revision, oldest first (for hashing and tests).
    var allRevisions: [Revision] {
        switch storage {
        case .single(let revision): return [revision]
        case .general(let generations): return generations.flatMap(\.revisions)
        }
    }
}
