import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// `cairnctl`: tools for a Cairn operator, as etcd's `etcdutl` (and
/// `etcdctl snapshot ...`): inspect a saved snapshot, restore it into a new
/// data directory and membership; check a gateway's tenants file and look
/// into a running gateway.
@main
struct Cairnctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairnctl",
        abstract: "Tools for Cairn operators: snapshot status and restore, gateway tenants and status.",
        subcommands: [SnapshotCommand.self, GatewayCommand.self]
    )
}

/// `cairnctl snapshot`: the files `etcdctl snapshot save` writes from a member.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Inspect or restore a snapshot saved with `etcdctl snapshot save`.",
        subcommands: [SnapshotStatusCommand.self, SnapshotRestoreCommand.self]
    )
}

/// Failure output as etcdctl's: `Error: <message>` on stderr, exit status 1.
func fail(_ message: String) -> ExitCode {
    var standardError = StandardError()
    print("Error: \(message)", to: &standardError)
    return ExitCode(1)
}

/// `print(..., to:)` target for stderr.
struct StandardError: TextOutputStream {
    mutating func write(_ text: String) {
        writeStandardError(text)
    }
}

/// Writes `text` to file descriptor 2 whole (retrying short writes).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}
