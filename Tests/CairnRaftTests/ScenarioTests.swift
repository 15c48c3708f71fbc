import Foundation
import Testing

/// Runs every `Scenarios/*.txt` file and compares each block's trace with the expected one.
/// `CAIRN_REWRITE=1 swift test` rewrites the expectations instead (review the diff!).
@Suite struct ScenarioTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Scenarios")

    static var files: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".txt") }.sorted()
    }

    @Test func scenarioDirectoryIsNotEmpty() {
        #expect(Self.files.count >= 10)
    }

    @Test(arguments: files)
    func scenario(_ name: String) throws {
        let url = Self.directory.appendingPathComponent(name)
        let text = try String(contentsOf: url, encoding: .utf8)
        let file = ScenarioFile(parsing: text)
        #expect(
            file.blocks.first?.leadingComments.first?.hasPrefix("#") == true,
            "\(name) must open with a comment")
        let environment = InteractionEnvironment()
        var outputs: [[String]] = []
        for block in file.blocks {
            var output: [String] = []
            for command in block.commands { output += environment.run(command) }
            outputs.append(output)
            if ProcessInfo.processInfo.environment["CAIRN_REWRITE"] == nil {
                #expect(
                    output == block.expected,
                    Comment(
                        rawValue: "\(name):\(block.line): \(block.commands.joined(separator: "; "))\n"
                            + "expected:\n\(block.expected.joined(separator: "\n"))\n"
                            + "actual:\n\(output.joined(separator: "\n"))"))
            }
        }
        if ProcessInfo.processInfo.environment["CAIRN_REWRITE"] != nil {
            try file.rendered(outputs: outputs).write(to: url, atomically: true, encoding: .utf8)
        }
    }
}
