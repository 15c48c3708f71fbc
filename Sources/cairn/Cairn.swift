import ArgumentParser

/// `cairn`: the Cairn server executable.
@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "A strongly consistent key-value store speaking etcd's v3 API.",
        subcommands: [MemberCommand.self, GatewayCommand.self]
    )
}
