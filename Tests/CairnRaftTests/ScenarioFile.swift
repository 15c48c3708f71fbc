import Foundation

/// A scenario file: blocks of `command` lines, a `----` line, and the expected trace.
/// Lines starting with `#` outside a block are comments. Blocks end at a blank line.
///
/// ```
/// # What this file tests.
/// add-nodes 3
/// ----
/// ok
/// ```
struct ScenarioFile {
    struct Block {
        var leadingComments: [String]
        var commands: [String]
        var expected: [String]
        var line: Int
    }

    var blocks: [Block] = []
    var trailingComments: [String] = []

    init(parsing text: String) {
        var comments: [String] = []
        var commands: [String] = []
        var expected: [String] = []
        var inExpected = false
        var startLine = 0
        func finish() {
            if !commands.isEmpty {
                blocks.append(
                    Block(leadingComments: comments, commands: commands, expected: expected, line: startLine))
                comments = []
            }
            commands = []
            expected = []
            inExpected = false
        }
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(line)
            if inExpected {
                if line.isEmpty { finish() } else { expected.append(line) }
            } else if line == "----" {
                inExpected = true
            } else if line.hasPrefix("#") || (line.isEmpty && commands.isEmpty) {
                comments.append(line)
            } else if !line.isEmpty {
                if commands.isEmpty { startLine = number + 1 }
                commands.append(line)
            }
        }
        finish()
        trailingComments = comments
        while trailingComments.last?.isEmpty == true { trailingComments.removeLast() }
    }

    /// The file text with `outputs` (one per block) as expectations: the rewrite mode.
    func rendered(outputs: [[String]]) -> String {
        var lines: [String] = []
        for (block, output) in zip(blocks, outputs) {
            lines.append(contentsOf: block.leadingComments.drop(while: \.isEmpty))
            lines.append(contentsOf: block.commands)
            lines.append("----")
            lines.append(contentsOf: output)
            lines.append("")
        }
        lines.append(contentsOf: trailingComments)
        var text = lines.joined(separator: "\n")
        if !text.hasSuffix("\n") { text += "\n" }
        return text
    }
}
