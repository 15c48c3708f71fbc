import CairnClient
import Foundation

/// Byte-string order and prefix arithmetic as etcd defines them: keys are
/// compared as unsigned bytes (Go's `bytes.Compare`), a prefix's range ends at
/// the prefix with its last non-0xff byte incremented (clientv3's
/// `GetPrefixRangeEnd`), and a range end of `"\0"` means "no upper bound".
enum CacheKeyBytes {
    /// Three-way unsigned byte comparison: negative, zero or positive.
    static func compare(_ lhs: Data, _ rhs: Data) -> Int {
        lhs.withUnsafeBytes { lhsBytes in
            rhs.withUnsafeBytes { rhsBytes in
                let shared = min(lhsBytes.count, rhsBytes.count)
                if shared > 0 {
                    let order = memcmp(lhsBytes.baseAddress!, rhsBytes.baseAddress!, shared)
                    if order != 0 { return Int(order) }
                }
                return lhsBytes.count - rhsBytes.count
            }
        }
    }

    static func less(_ lhs: Data, _ rhs: Data) -> Bool { compare(lhs, rhs) < 0 }

    /// The exclusive end of the range of every key starting with `prefix`, or
    /// nil when no such end exists (empty prefix, or a prefix of only 0xff
    /// bytes): then the range is unbounded above.
    static func prefixEnd(_ prefix: Data) -> Data? {
        let end = KeyRangeEnd.prefixEnd(of: prefix)
        return end == Data([0]) ? nil : end
    }

    /// Whether a request's `range_end` is etcd's "every key from `key` on".
    static func isFromKeyMarker(_ rangeEnd: Data) -> Bool {
        rangeEnd.count == 1 && rangeEnd.first == 0
    }
}
