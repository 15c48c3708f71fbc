import Prometheus

/// One HTTP answer of the metrics listener, before it meets the socket.
public struct MetricsAnswer: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var bodyText: String { String(decoding: self.body, as: UTF8.self) }

    public static func == (lhs: MetricsAnswer, rhs: MetricsAnswer) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
            && lhs.headers.map { "\($0.0): \($0.1)" } == rhs.headers.map { "\($0.0): \($0.1)" }
    }
}

/// Decides the answer to one request of `--listen-metrics-urls`, with
/// etcd's paths, status codes and texts (server/etcdserver/api/etcdhttp):
/// `/metrics` (Prometheus text format), `/health` (JSON), `/livez` and
/// `/readyz` ("ok", or the failed checks with 503); anything else 404.
/// Kept apart from the NIO handler so it is tested without sockets.
public struct MetricsResponder: Sendable {
    /// etcd's (client_golang's) content type of the text exposition format.
    public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"
    static let textContentType = "text/plain; charset=utf-8"

    public let registry: PrometheusCollectorRegistry
    public let checks: HealthChecks
    /// Runs before each `/metrics` answer to refresh gauges that are
    /// sampled rather than kept up to date (sizes on disk).
    public let collect: @Sendable () -> Void

    public init(
        registry: PrometheusCollectorRegistry, checks: HealthChecks,
        collect: @escaping @Sendable () -> Void = {}
    ) {
        self.registry = registry
        self.checks = checks
        self.collect = collect
    }

    /// The answer to `method` on `uri` (path plus optional query).
    public func answer(method: String, uri: String) async -> MetricsAnswer {
        let (path, query) = Self.split(uri: uri)
        switch path {
        case "/metrics":
            self.collect()
            return MetricsAnswer(
                status: 200, headers: [("Content-Type", Self.metricsContentType)],
                body: self.registry.emitToBuffer())
        case "/health":
            guard method == "GET" else { return Self.methodNotAllowed }
            return await self.health(query)
        default:
            for (root, checks) in [("/livez", self.checks.livez), ("/readyz", self.checks.readyz)] {
                if path == root {
                    guard method == "GET" else { return Self.methodNotAllowed }
                    let excluded = Set(query.filter { $0.key == "exclude" }.map(\.value))
                    return await Self.run(checks.filter { !excluded.contains($0.name) }, query: query)
                }
                if path.hasPrefix(root + "/"),
                    let check = checks.first(where: { root + "/" + $0.name == path })
                {
                    guard method == "GET" else { return Self.methodNotAllowed }
                    return await Self.run([check], query: query)
                }
            }
            return MetricsAnswer(
                status: 404, headers: Self.errorHeaders, body: Array("404 page not found\n".utf8))
        }
    }

    /// `/health`: 200 with the JSON, or 503 with it (plus a newline, as
    /// Go's `http.Error` writes it).
    private func health(_ query: [(key: String, value: String)]) async -> MetricsAnswer {
        let request = HealthRequest(
            serializable: query.contains { $0.key == "serializable" && $0.value == "true" },
            excluded: Set(query.filter { $0.key == "exclude" && !$0.value.isEmpty }.map(\.value)))
        let status = await self.checks.health(request)
        let json = #"{"health":"\#(status.healthy)","reason":"\#(Self.jsonEscaped(status.reason))"}"#
        if status.healthy {
            return MetricsAnswer(
                status: 200, headers: [("Content-Type", Self.textContentType)], body: Array(json.utf8))
        }
        return MetricsAnswer(status: 503, headers: Self.errorHeaders, body: Array((json + "\n").utf8))
    }

    /// Runs checks in order: "ok" when all pass (each check's line first
    /// with `?verbose`), else 503 with every check's line.
    private static func run(_ checks: [NamedHealthCheck], query: [(key: String, value: String)]) async
        -> MetricsAnswer
    {
        var lines = ""
        var failed = false
        for check in checks {
            if let reason = await check.run() {
                failed = true
                lines += "[-]\(check.name) failed: \(reason)\n"
            } else {
                lines += "[+]\(check.name) ok\n"
            }
        }
        if failed {
            return MetricsAnswer(status: 503, headers: Self.errorHeaders, body: Array((lines + "\n").utf8))
        }
        let verbose = query.contains { $0.key == "verbose" }
        return MetricsAnswer(
            status: 200,
            headers: [("Content-Type", Self.textContentType), ("X-Content-Type-Options", "nosniff")],
            body: Array(((verbose ? lines : "") + "ok\n").utf8))
    }

    static let errorHeaders = [("Content-Type", textContentType), ("X-Content-Type-Options", "nosniff")]

    static let methodNotAllowed = MetricsAnswer(
        status: 405, headers: errorHeaders + [("Allow", "GET")], body: Array("Method Not Allowed\n".utf8))

    /// Splits a request target into its path and its decoded query pairs.
    static func split(uri: String) -> (path: String, query: [(key: String, value: String)]) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, []) }
        let query = uri[uri.index(after: mark)...].split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (
                key: Self.percentDecoded(parts[0]),
                value: parts.count > 1 ? Self.percentDecoded(parts[1]) : ""
            )
        }
        return (String(uri[..<mark]), query)
    }

    /// `+` and `%XX` decoded; a malformed escape stays as written.
    static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), utf8.count >= 2,
                let high = Self.hexValue(utf8[utf8.startIndex]),
                let low = Self.hexValue(utf8[utf8.index(after: utf8.startIndex)])
            {
                bytes.append(high << 4 | low)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// A JSON string body as Go's encoder writes it (HTML-safe escapes too).
    static func jsonEscaped(_ text: String) -> String {
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                escaped += Self.unicodeEscape(scalar.value)
            default:
                if scalar.value < 0x20 {
                    escaped += Self.unicodeEscape(scalar.value)
                } else {
                    escaped.unicodeScalars.append(scalar)
                }
            }
        }
        return escaped
    }

    private static func unicodeEscape(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
