import CairnPeer
import Logging

/// Where a member's log records go: a level, the text and structured fields
/// (`term`, `leader` on role changes). The process adds its own fields
/// (`member-id`, `cluster-id`, `name`) and decides the format.
///
/// The text never carries keys, values, tokens or passwords: only IDs,
/// indexes, revisions, sizes, addresses and errors.
public typealias MemberLogSink = @Sendable (Logger.Level, String, Logger.Metadata) -> Void

extension Member {
    /// Logs one record (info unless told otherwise) with this member's IDs.
    func logLine(_ line: String, level: Logger.Level = .info, metadata: Logger.Metadata = [:]) {
        var fields = metadata
        fields["member-id"] = "\(self.memberID)"
        fields["cluster-id"] = "\(self.clusterID)"
        self.logSink(level, line, fields)
    }

    /// The transport's levels as swift-log's.
    static func level(of peerLevel: PeerLogLevel) -> Logger.Level {
        switch peerLevel {
        case .debug: .debug
        case .info: .info
        case .warning: .warning
        case .error: .error
        }
    }
}
