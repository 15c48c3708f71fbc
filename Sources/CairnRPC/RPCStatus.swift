/// The outcome of a gRPC call: a status code and a message, as carried in the
/// `grpc-status` and `grpc-message` trailers.
///
/// Clients of the etcd API branch on both the code and the exact message text,
/// so services throw `RPCStatus` values built from one error table (CairnCore)
/// and this type carries them to the wire unchanged.
public struct RPCStatus: Error, Sendable, Equatable, CustomStringConvertible {
    /// gRPC's status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
    public enum Code: Int, Sendable, Equatable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16
    }

    public var code: Code
    public var message: String
    /// Set by the client when the call failed before any byte of it reached
    /// the server (no connection, a refused stream), so retrying it cannot
    /// apply it twice; a gateway retries writes only then. Not part of
    /// equality: it says how a status arose, not what it is.
    public var requestNotSent = false

    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static func == (lhs: RPCStatus, rhs: RPCStatus) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public static let ok = RPCStatus(.ok)

    public var description: String {
        "rpc error: code = \(self.code) desc = \(self.message)"
    }

    /// Builds the status a peer sent: unknown numeric codes become `unknown`, as
    /// gRPC requires.
    init(wireCode: Int, encodedMessage: String?) {
        self.code = Code(rawValue: wireCode) ?? .unknown
        self.message = encodedMessage.map(PercentEncoding.decode) ?? ""
    }
}

/// The percent-encoding gRPC applies to `grpc-message`: bytes outside printable
/// ASCII, and `%` itself, travel as `%XX` so any UTF-8 text survives HPACK.
enum PercentEncoding {
    static func encode(_ text: String) -> String {
        var needsEncoding = false
        for byte in text.utf8 where !Self.isUnreserved(byte) {
            needsEncoding = true
            break
        }
        guard needsEncoding else { return text }
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count + 8)
        for byte in text.utf8 {
            if Self.isUnreserved(byte) {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                output.append(Self.hexDigit(byte >> 4))
                output.append(Self.hexDigit(byte & 0x0F))
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes `%XX` sequences; a malformed sequence is kept literally, since a
    /// peer's bad encoding must not lose the rest of its message.
    static func decode(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        let bytes = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = Self.hexValue(bytes[index + 1]), let low = Self.hexValue(bytes[index + 2])
            {
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%")
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
