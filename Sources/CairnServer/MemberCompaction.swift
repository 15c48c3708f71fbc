import CairnMVCC
import CairnStateMachine
import NIOCore

/// etcd's `--auto-compaction-mode` with its `--auto-compaction-retention`.
public enum AutoCompaction: Hashable, Sendable {
    /// Keep history of the last `retentionMilliseconds`: every tenth of the
    /// retention (at most hourly), compact at the revision that was current
    /// one retention ago.
    case periodic(retentionMilliseconds: Int64)
    /// Keep the last `retainedRevisions` revisions: every five minutes (as
    /// etcd), compact at current revision minus that.
    case revision(retainedRevisions: Int64)

    /// Parses etcd's flag pair: periodic retention is hours as a bare
    /// number or a duration with unit (`ms`, `s`, `m`, `h`); revision
    /// retention is a revision count. Nil for "0" (disabled); throws text
    /// for anything else unreadable.
    public static func parse(mode: String, retention: String) throws(AutoCompactionFlagError)
        -> AutoCompaction?
    {
        switch mode {
        case "periodic":
            guard let milliseconds = Self.milliseconds(retention), milliseconds >= 0 else {
                throw AutoCompactionFlagError(message: "invalid --auto-compaction-retention \(retention)")
            }
            return milliseconds == 0 ? nil : .periodic(retentionMilliseconds: milliseconds)
        case "revision":
            guard let revisions = Int64(retention), revisions >= 0 else {
                throw AutoCompactionFlagError(message: "invalid --auto-compaction-retention \(retention)")
            }
            return revisions == 0 ? nil : .revision(retainedRevisions: revisions)
        default:
            throw AutoCompactionFlagError(message: "unknown --auto-compaction-mode \(mode)")
        }
    }

    private static func milliseconds(_ text: String) -> Int64? {
        if let hours = Double(text) { return Int64(hours * 3_600_000) }
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)) else { return nil }
            return Int64(value * scale)
        }
        return nil
    }
}

/// A bad `--auto-compaction-*` flag.
public struct AutoCompactionFlagError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// (time, revision) samples for periodic compaction, bounded.
struct RevisionSamples {
    /// Samples kept: one retention's worth at a tenth each, plus slack.
    static let samplesMax = 12
    private(set) var samples: [(milliseconds: Int64, revision: Int64)] = []

    mutating func record(milliseconds: Int64, revision: Int64) {
        samples.append((milliseconds, revision))
        if samples.count > Self.samplesMax { samples.removeFirst(samples.count - Self.samplesMax) }
    }

    /// The revision of the newest sample at least `age` old.
    func revision(olderThan age: Int64, now: Int64) -> Int64? {
        samples.last { now - $0.milliseconds >= age }?.revision
    }
}

extension Member {
    /// etcd's revision-mode check interval.
    static let revisionCompactionInterval = TimeAmount.minutes(5)
    /// Upper bound of the periodic sampling interval.
    static let periodicCompactionIntervalMax = TimeAmount.hours(1)

    func startAutoCompaction() {
        guard let mode = self.configuration.autoCompaction else { return }
        self.eventLoop.execute {
            let interval: TimeAmount
            switch mode {
            case .periodic(let retention):
                interval = min(.milliseconds(max(1, retention / 10)), Self.periodicCompactionIntervalMax)
            case .revision:
                interval = Self.revisionCompactionInterval
            }
            let task = self.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                let status = self.stateMachine.status
                let now = Self.now().milliseconds
                let target: Int64?
                switch mode {
                case .periodic(let retention):
                    self.revisionSamples.record(milliseconds: now, revision: status.revision)
                    target = self.revisionSamples.revision(olderThan: retention, now: now)
                case .revision(let retained):
                    target = status.revision - retained
                }
                guard let target, target > max(1, status.compactRevision) else { return }
                self.propose(.compact(revision: target)).whenComplete { result in
                    switch result {
                    case .success(let applied):
                        if case .failed(let error) = applied.response {
                            self.logLine(
                                "auto-compaction at revision \(target) failed: \(error)", level: .warning)
                        } else {
                            self.logLine("auto-compacted at revision \(target)")
                        }
                    case .failure(let error):
                        self.logLine(
                            "auto-compaction at revision \(target) failed: \(error)", level: .warning)
                    }
                }
            }
            self.appendTimers([task])
        }
    }
}
