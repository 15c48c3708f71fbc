import CairnAPI
import Foundation

/// A value usable as an etcd key or value.
///
/// etcd keys and values are arbitrary bytes on the wire (`bytes` fields, which
/// SwiftProtobuf represents as `Data`). Callers hold them as `String`, `Data`
/// or `[UInt8]`; one protocol lets every method accept any of them without
/// overloads multiplying.
public protocol EtcdBytes: Sendable {
    /// The bytes as they travel on the wire.
    var etcdData: Data { get }
}

extension Data: EtcdBytes {
    public var etcdData: Data { self }
}

extension Array: EtcdBytes where Element == UInt8 {
    public var etcdData: Data { Data(self) }
}

extension String: EtcdBytes {
    public var etcdData: Data { Data(self.utf8) }
}

extension Substring: EtcdBytes {
    public var etcdData: Data { Data(self.utf8) }
}

/// Which keys a range-shaped request (get, delete, watch) covers, beside its key.
///
/// etcd encodes this as a `range_end` field with conventions that are easy to
/// get wrong by hand (`\0` for "from key", key+1 for "prefix"); naming the
/// intent keeps callers away from those conventions.
public enum KeyRangeEnd: Sendable, Equatable {
    /// Only the key itself.
    case single
    /// Every key starting with the key (etcdctl's `--prefix`).
    case prefix
    /// Every key greater than or equal to the key (etcdctl's `--from-key`).
    case fromKey
    /// Keys in `[key, end)`.
    case end(Data)

    /// The `range_end` field for `key`; empty for a single key.
    public func rangeEnd(for key: Data) -> Data {
        switch self {
        case .single: Data()
        case .prefix: Self.prefixEnd(of: key)
        case .fromKey: Data([0])
        case .end(let end): end
        }
    }

    /// The smallest key greater than every key starting with `prefix`: the
    /// prefix with trailing 0xff bytes dropped and its last byte incremented.
    /// A prefix that is empty or all 0xff has no such key, so the range runs to
    /// the end of the key space (`\0`, etcd's "all keys from here").
    public static func prefixEnd(of prefix: Data) -> Data {
        var bytes = [UInt8](prefix)
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])
    }
}

extension Mvccpb_KeyValue {
    /// The key decoded as UTF-8 (invalid bytes become U+FFFD), for display and tests.
    public var keyString: String { String(decoding: self.key, as: UTF8.self) }
    /// The value decoded as UTF-8 (invalid bytes become U+FFFD).
    public var valueString: String { String(decoding: self.value, as: UTF8.self) }
}
