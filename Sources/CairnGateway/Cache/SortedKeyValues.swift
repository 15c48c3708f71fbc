import CairnAPI
import Foundation

/// The cache's key-ordered storage: a sorted array split into chunks so that
/// an insert or delete moves at most `chunkEntriesMax` entries plus one chunk
/// reference per chunk, while a range scan is a binary search followed by a
/// walk: O(log n + k).
///
/// Invariants:
/// 1. Every chunk is non-empty and holds at most `chunkEntriesMax` entries.
/// 2. Keys strictly increase within a chunk and from each chunk to the next.
/// 3. `count` is the total number of entries; `storedBytes` the sum of the
///    sizes of their keys and values.
struct SortedKeyValues {
    /// A chunk splits in halves once it grows past this many entries.
    static let chunkEntriesMax = 256

    /// A place in the storage: chunk index, then index inside the chunk.
    struct Position: Equatable {
        var chunk: Int
        var entry: Int
    }

    private(set) var chunks: [[Mvccpb_KeyValue]] = []
    private(set) var count = 0
    private(set) var storedBytes = 0

    /// The first position whose key is not less than `key` (the end position
    /// when every key is less).
    func lowerBound(_ key: Data) -> Position {
        var low = 0
        var high = chunks.count
        while low < high {
            let middle = (low + high) / 2
            if CacheKeyBytes.less(chunks[middle][chunks[middle].count - 1].key, key) {
                low = middle + 1
            } else {
                high = middle
            }
        }
        if low == chunks.count { return Position(chunk: chunks.count, entry: 0) }
        return Position(chunk: low, entry: Self.lowerBound(key, in: chunks[low]))
    }

    private static func lowerBound(_ key: Data, in chunk: [Mvccpb_KeyValue]) -> Int {
        var low = 0
        var high = chunk.count
        while low < high {
            let middle = (low + high) / 2
            if CacheKeyBytes.less(chunk[middle].key, key) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    func keyValue(for key: Data) -> Mvccpb_KeyValue? {
        let position = lowerBound(key)
        guard position.chunk < chunks.count else { return nil }
        let found = chunks[position.chunk][position.entry]
        return found.key == key ? found : nil
    }

    /// Inserts `keyValue` or replaces the entry with the same key.
    mutating func upsert(_ keyValue: Mvccpb_KeyValue) {
        storedBytes += keyValue.key.count + keyValue.value.count
        guard !chunks.isEmpty else {
            chunks = [[keyValue]]
            count = 1
            return
        }
        var position = lowerBound(keyValue.key)
        if position.chunk == chunks.count {
            position = Position(chunk: chunks.count - 1, entry: chunks[chunks.count - 1].count)
        } else if chunks[position.chunk][position.entry].key == keyValue.key {
            let replaced = chunks[position.chunk][position.entry]
            storedBytes -= replaced.key.count + replaced.value.count
            chunks[position.chunk][position.entry] = keyValue
            return
        }
        chunks[position.chunk].insert(keyValue, at: position.entry)
        count += 1
        if chunks[position.chunk].count > Self.chunkEntriesMax {
            let upper = Array(chunks[position.chunk][(Self.chunkEntriesMax / 2)...])
            chunks[position.chunk].removeSubrange((Self.chunkEntriesMax / 2)...)
            chunks.insert(upper, at: position.chunk + 1)
        }
    }

    /// Removes the entry with `key`; returns whether there was one.
    @discardableResult
    mutating func remove(_ key: Data) -> Bool {
        let position = lowerBound(key)
        guard position.chunk < chunks.count,
            chunks[position.chunk][position.entry].key == key
        else { return false }
        let removed = chunks[position.chunk].remove(at: position.entry)
        storedBytes -= removed.key.count + removed.value.count
        count -= 1
        if chunks[position.chunk].isEmpty { chunks.remove(at: position.chunk) }
        return true
    }

    mutating func removeAll() {
        chunks = []
        count = 0
        storedBytes = 0
    }

    /// The entry at `position` (which must be a valid, non-end position).
    subscript(position: Position) -> Mvccpb_KeyValue {
        chunks[position.chunk][position.entry]
    }

    /// The positions of the keys in [`lower`, `upper`) in ascending key
    /// order, so callers can rank entries without copying them.
    func positions(from lower: Data, to upper: Data?) -> [Position] {
        var position = lowerBound(lower)
        let end = upper.map { lowerBound($0) } ?? Position(chunk: chunks.count, entry: 0)
        var positions: [Position] = []
        while position.chunk < end.chunk || (position.chunk == end.chunk && position.entry < end.entry) {
            positions.append(position)
            position.entry += 1
            if position.entry == chunks[position.chunk].count {
                position = Position(chunk: position.chunk + 1, entry: 0)
            }
        }
        return positions
    }

    /// Calls `body` with every entry whose key is in [`lower`, `upper`)
    /// (`upper` nil: unbounded), in ascending key order, until it returns
    /// false.
    func forEach(from lower: Data, to upper: Data?, _ body: (Mvccpb_KeyValue) -> Bool) {
        var position = lowerBound(lower)
        while position.chunk < chunks.count {
            let chunk = chunks[position.chunk]
            while position.entry < chunk.count {
                let keyValue = chunk[position.entry]
                if let upper, !CacheKeyBytes.less(keyValue.key, upper) { return }
                if !body(keyValue) { return }
                position.entry += 1
            }
            position = Position(chunk: position.chunk + 1, entry: 0)
        }
    }

    /// The number of entries before `position` in key order: O(chunks).
    func offset(of position: Position) -> Int {
        var total = position.entry
        for chunk in chunks[..<position.chunk] { total += chunk.count }
        return total
    }

    /// The number of keys in [`lower`, `upper`) without visiting them.
    func count(from lower: Data, to upper: Data?) -> Int {
        let start = offset(of: lowerBound(lower))
        let end = upper.map { offset(of: lowerBound($0)) } ?? count
        return max(0, end - start)
    }

    /// Like `forEach`, in descending key order.
    func forEachDescending(from lower: Data, to upper: Data?, _ body: (Mvccpb_KeyValue) -> Bool) {
        var position = upper.map { lowerBound($0) } ?? Position(chunk: chunks.count, entry: 0)
        while true {
            if position.entry == 0 {
                guard position.chunk > 0 else { return }
                position = Position(chunk: position.chunk - 1, entry: chunks[position.chunk - 1].count)
            }
            position.entry -= 1
            let keyValue = chunks[position.chunk][position.entry]
            if CacheKeyBytes.less(keyValue.key, lower) { return }
            if !body(keyValue) { return }
        }
    }

    /// Checks invariants 1-3; for tests.
    func invariantsHold() -> Bool {
        var total = 0
        var bytes = 0
        var previous: Data?
        for chunk in chunks {
            if chunk.isEmpty || chunk.count > Self.chunkEntriesMax { return false }
            for keyValue in chunk {
                if let previous, !CacheKeyBytes.less(previous, keyValue.key) { return false }
                previous = keyValue.key
                total += 1
                bytes += keyValue.key.count + keyValue.value.count
            }
        }
        return total == count && bytes == storedBytes
    }
}
