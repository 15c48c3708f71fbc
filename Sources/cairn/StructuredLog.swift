import ArgumentParser
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// How log records are written: `text` keeps the historical
/// `cairn <component>: message` lines (humans and tests read them), `json`
/// writes one JSON object per line for log collectors.
enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text
    case json
}

/// etcd's `--log-level` names. `panic` and `fatal` both log only critical
/// records: Cairn never panics or exits because of a log record.
enum LogLevelName: String, ExpressibleByArgument, CaseIterable, Sendable {
    case debug
    case info
    case warn
    case error
    case panic
    case fatal

    var level: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warn: .warning
        case .error: .error
        case .panic, .fatal: .critical
        }
    }
}

/// `--log-level` and `--log-format`, shared by `cairn member` and `cairn gateway`.
struct LogOptions: ParsableArguments {
    @Option(help: "Lowest level logged (panic and fatal: critical records only).")
    var logLevel: LogLevelName = .info

    @Option(help: "text: 'cairn <component>: message' lines; json: one object per line.")
    var logFormat: LogFormat = .text

    /// Makes these the process's settings; call first in `run()`.
    func apply() {
        StructuredLog.configure(format: self.logFormat, level: self.logLevel.level)
    }
}

/// The process-wide log settings and the loggers built on them.
///
/// Invariants:
/// 1. Every record is one `write(2)` of one line (retried only for a partial
///    write), never buffered, so a `kill -9` loses nothing logged before it.
/// 2. Messages and metadata never carry keys, values, tokens or passwords:
///    callers log names, IDs, sizes and errors only.
enum StructuredLog {
    struct Settings: Sendable {
        var format = LogFormat.text
        var level = Logger.Level.info
        /// Fields on every record once known (`member-id`, `cluster-id`, `name`).
        var processMetadata: Logger.Metadata = [:]
    }

    static let settings = NIOLockedValueBox(Settings())

    static func configure(format: LogFormat, level: Logger.Level) {
        self.settings.withLockedValue {
            $0.format = format
            $0.level = level
        }
    }

    /// Adds fields to every later record of the process.
    static func addProcessMetadata(_ metadata: Logger.Metadata) {
        self.settings.withLockedValue { $0.processMetadata.merge(metadata) { _, new in new } }
    }

    /// A logger whose label is the component (`member`, `gateway`).
    static func logger(component: String) -> Logger {
        Logger(label: component) { label in StructuredLogHandler(component: label) }
    }
}

/// Writes each record as one line on standard error, in the process's format.
struct StructuredLogHandler: LogHandler {
    let component: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level

    init(component: String) {
        self.component = component
        self.logLevel = StructuredLog.settings.withLockedValue { $0.level }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let settings = StructuredLog.settings.withLockedValue { $0 }
        switch settings.format {
        case .text:
            Self.writeLine("cairn \(self.component): \(event.message)\n")
        case .json:
            var fields = settings.processMetadata
            fields.merge(self.metadata) { _, new in new }
            if let own = event.metadata { fields.merge(own) { _, new in new } }
            Self.writeLine(
                Self.json(
                    level: event.level, timestamp: Self.timestamp(), component: self.component,
                    message: "\(event.message)", metadata: fields) + "\n")
        }
    }

    /// One JSON object: `level`, `ts`, `component`, `msg`, then the metadata
    /// in key order (so lines are stable and easy to compare).
    static func json(
        level: Logger.Level, timestamp: String, component: String, message: String, metadata: Logger.Metadata
    ) -> String {
        var fields = [
            "\"level\":\(Self.quoted(Self.name(of: level)))", "\"ts\":\(Self.quoted(timestamp))",
            "\"component\":\(Self.quoted(component))", "\"msg\":\(Self.quoted(message))",
        ]
        let reserved: Set = ["level", "ts", "component", "msg"]
        for key in metadata.keys.sorted() where !reserved.contains(key) {
            fields.append("\(Self.quoted(key)):\(Self.json(metadata[key]!))")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// etcd's (zap's) level names.
    static func name(of level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warn"
        case .error: "error"
        case .critical: "fatal"
        }
    }

    private static func json(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let text): Self.quoted(text)
        case .stringConvertible(let convertible): Self.quoted(convertible.description)
        case .array(let values): "[" + values.map { Self.json($0) }.joined(separator: ",") + "]"
        case .dictionary(let values):
            "{"
                + values.keys.sorted().map { "\(Self.quoted($0)):\(Self.json(values[$0]!))" }.joined(
                    separator: ",")
                + "}"
        }
    }

    /// A JSON string literal: quotes, backslashes and control characters
    /// escaped, everything else (UTF-8 included) as is.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T02:13:00.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func padded(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(padded(Int(parts.tm_year) + 1900, 4))-\(padded(Int(parts.tm_mon) + 1, 2))-"
            + "\(padded(Int(parts.tm_mday), 2))T\(padded(Int(parts.tm_hour), 2)):"
            + "\(padded(Int(parts.tm_min), 2)):\(padded(Int(parts.tm_sec), 2))."
            + "\(padded(Int(now.tv_nsec) / 1_000_000, 3))Z"
    }

    /// One unbuffered `write(2)` of the whole line (invariant 1).
    static func writeLine(_ line: String) {
        let bytes = Array(line.utf8)
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
