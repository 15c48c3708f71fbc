import CairnCore

/// The store's keys in key order, for range scans, as a list of sorted
/// chunks so inserting a key moves at most one chunk's worth of entries
/// (a flat sorted array would move half the key space per insert).
///
/// Properties:
/// 1. Concatenating `chunks` gives every key exactly once, in key order.
/// 2. No chunk is empty, and none holds more than `chunkCountMax` keys.
struct SortedKeySet: Sendable {
    static let chunkCountMax = 512

    private var chunks: [[Key]] = []
    private(set) var count = 0

    /// Adds a key that is not yet in the set.
    mutating func insert(_ key: Key) {
        guard !chunks.isEmpty else {
            chunks = [[key]]
            count = 1
            return
        }
        let chunk = chunkIndex(for: key)
        let position = Self.lowerBound(key, in: chunks[chunk])
        precondition(
            position == chunks[chunk].count || chunks[chunk][position] != key, "\(key) already present")
        chunks[chunk].insert(key, at: position)
        count += 1
        if chunks[chunk].count > Self.chunkCountMax {
            let upper = Array(chunks[chunk][(Self.chunkCountMax / 2)...])
            chunks[chunk].removeLast(upper.count)
            chunks.insert(upper, at: chunk + 1)
        }
    }

    /// Removes every key for which `shouldRemove` holds.
    mutating func removeAll(where shouldRemove: (Key) -> Bool) {
        for chunk in chunks.indices { chunks[chunk].removeAll(where: shouldRemove) }
        chunks.removeAll { $0.isEmpty }
        count = chunks.reduce(0) { $0 + $1.count }
    }

    /// Visits the keys at or after `start` in order until `visit` returns false.
    func forEach(from start: Key, _ visit: (Key) -> Bool) {
        guard !chunks.isEmpty else { return }
        var chunk = chunkIndex(for: start)
        var position = Self.lowerBound(start, in: chunks[chunk])
        while chunk < chunks.count {
            let keys = chunks[chunk]
            while position < keys.count {
                if !visit(keys[position]) { return }
                position += 1
            }
            chunk += 1
            position = 0
        }
    }

    /// Every key, in order (for compaction and tests).
    var all: [Key] { chunks.flatMap { $0 } }

    /// The first chunk whose last key is not below `key`, else the last chunk.
    private func chunkIndex(for key: Key) -> Int {
        var low = 0
        var high = chunks.count - 1
        while low < high {
            let middle = (low + high) / 2
            if chunks[middle].last! < key { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private static func lowerBound(_ key: Key, in keys: [Key]) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if keys[middle] < key { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
