import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#endif

/// Suspends until SIGINT or SIGTERM arrives, so a server process (member,
/// gateway, bench server) drains its calls (GOAWAY) and closes its files
/// instead of dying mid-write. Every Cairn executable shuts down through this.
public func waitForTerminationSignal() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumed = NIOLockedValueBox(false)
        let queue = DispatchQueue(label: "cairn.signals")
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                // Capturing the source keeps it alive for the process's life.
                _ = source
                let isFirst = resumed.withLockedValue { seen in
                    defer { seen = true }
                    return !seen
                }
                if isFirst { continuation.resume() }
            }
            source.resume()
        }
    }
}
