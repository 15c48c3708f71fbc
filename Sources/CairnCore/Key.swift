/// A key of the key space: an arbitrary, non-empty byte string ordered
/// lexicographically by bytes, exactly as etcd orders keys.
public struct Key: Hashable, Comparable, Sendable, CustomStringConvertible,
    ExpressibleByStringLiteral
{
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public init(_ string: String) { self.bytes = Array(string.utf8) }

    public init(stringLiteral value: String) { self.init(value) }

    public var isEmpty: Bool { bytes.isEmpty }

    public static func < (lhs: Key, rhs: Key) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    public static func == (lhs: Key, rhs: Key) -> Bool { lhs.bytes == rhs.bytes }

    /// Hashes the bytes in one call rather than byte by byte: keys are hashed
    /// on every lookup of the key index.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        hasher.combine(bytes.count)
    }

    /// The key as text when it is UTF-8, else as escaped bytes; for tests and
    /// traces of the key's shape (never logged by shells, which log sizes).
    public var description: String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        return bytes.map { String($0, radix: 16) }.joined(separator: " ")
    }
}

/// The set of keys one request addresses, decoded from etcd's (key, range_end)
/// pair.
///
/// etcd's rules:
/// 1. `range_end` empty: the single key `key`.
/// 2. `range_end` = `"\0"`: every key greater than or equal to `key`; with
///    `key` = `"\0"` too this is every key.
/// 3. Otherwise the half-open interval [`key`, `range_end`); a prefix `p` is
///    the interval [`p`, prefixEnd(p)). An interval whose end is not after its
///    start contains no key.
public enum KeyRange: Hashable, Sendable, CustomStringConvertible {
    /// Exactly one key.
    case single(Key)
    /// Every key at or after the start.
    case from(Key)
    /// Every key in [start, end).
    case interval(Key, end: Key)

    /// Decodes etcd's (key, range_end) pair.
    public init(key: Key, rangeEnd: Key) {
        if rangeEnd.isEmpty {
            self = .single(key)
        } else if rangeEnd.bytes == [0] {
            self = .from(key)
        } else {
            self = .interval(key, end: rangeEnd)
        }
    }

    /// Every key with the given prefix, as etcdctl's `--prefix` asks.
    public static func prefix(_ prefix: Key) -> KeyRange {
        KeyRange(key: prefix, rangeEnd: prefixEnd(of: prefix))
    }

    /// Every key of the key space.
    public static let all = KeyRange.from(Key([0]))

    /// etcd's `GetPrefixRangeEnd`: the smallest key after every key with this
    /// prefix: drop trailing 0xff bytes, then increment the last byte. A
    /// prefix of only 0xff bytes (or empty) has no such key and yields `"\0"`,
    /// which means "to the end".
    public static func prefixEnd(of prefix: Key) -> Key {
        var end = prefix.bytes
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return Key(end)
            }
            end.removeLast()
        }
        return Key([0])
    }

    /// The first key the range can contain.
    public var start: Key {
        switch self {
        case .single(let key), .from(let key), .interval(let key, _): key
        }
    }

    /// The range as etcd's (key, range_end) pair.
    public var rangeEnd: Key {
        switch self {
        case .single: Key([])
        case .from: Key([0])
        case .interval(_, let end): end
        }
    }

    /// Whether `key` lies in the range.
    public func contains(_ key: Key) -> Bool {
        switch self {
        case .single(let only): key == only
        case .from(let start): !(key < start)
        case .interval(let start, let end): !(key < start) && key < end
        }
    }

    /// Whether `key` lies after every key of the range (ranges are scanned in
    /// key order, so a scan can stop here).
    public func isPast(_ key: Key) -> Bool {
        switch self {
        case .single(let only): only < key
        case .from: false
        case .interval(_, let end): !(key < end)
        }
    }

    public var description: String {
        switch self {
        case .single(let key): "[\(key)]"
        case .from(let key): "[\(key), end)"
        case .interval(let key, let end): "[\(key), \(end))"
        }
    }
}
