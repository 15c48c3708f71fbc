import CairnServer
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One progress line on stderr, redrawn in place, only on a terminal and
/// only for files large enough to take a while: scripts and logs see none.
final class ProgressLine {
    /// Below this many bytes an operation is quick: no progress is drawn.
    static let shownFromBytes = 8 << 20

    private let enabled: Bool
    private var lastPercent = -1
    private var drawn = false

    init() {
        self.enabled = isatty(STDERR_FILENO) == 1
    }

    /// Draws `progress` when its whole percentage changed.
    func update(_ progress: SnapshotFileProgress) {
        let (verb, done, total): (String, Int, Int)
        switch progress {
        case .reading(let bytesDone, let bytesTotal): (verb, done, total) = ("read", bytesDone, bytesTotal)
        case .writing(let bytesDone, let bytesTotal): (verb, done, total) = ("written", bytesDone, bytesTotal)
        }
        guard self.enabled, total >= Self.shownFromBytes else { return }
        let percent = total == 0 ? 100 : done * 100 / total
        guard percent != self.lastPercent else { return }
        self.lastPercent = percent
        self.drawn = true
        writeStandardError("\r\u{1B}[K\(humanBytes(done)) of \(humanBytes(total)) \(verb) (\(percent)%)")
        if percent == 100 { self.lastPercent = -1 }
    }

    /// Ends the line so later output starts on a fresh one.
    func finish() {
        guard self.drawn else { return }
        writeStandardError("\n")
        self.drawn = false
    }
}

/// Sizes as etcdctl prints them (go-humanize's `Bytes`: SI units, one
/// decimal below 10, e.g. "20 kB", "2.1 MB").
func humanBytes(_ count: Int) -> String {
    guard count >= 10 else { return "\(count) B" }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    var exponent = 0
    var scaled = Double(count)
    while scaled >= 1000, exponent < units.count - 1 {
        scaled /= 1000
        exponent += 1
    }
    let value = (scaled * 10 + 0.5).rounded(.down) / 10
    return String(format: value < 10 ? "%.1f" : "%.0f", value) + " " + units[exponent]
}
