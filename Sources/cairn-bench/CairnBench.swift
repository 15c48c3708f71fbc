import ArgumentParser

/// `cairn-bench`: load generator and conformance servers for any etcd-API endpoint.
@main
struct CairnBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-bench",
        abstract: "Benchmarks and conformance servers for the etcd v3 API.",
        subcommands: [RPCServerCommand.self, MVCCCommand.self]
    )
}
