import ArgumentParser
import Foundation
import FuseboxAPI
import FuseboxCore
import FuseboxWire

/// Renders rows as aligned columns, the header first.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in
            i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Prints `value` as JSON or YAML, or `tableText()` for table output.
func emit(_ format: OutputFormat, _ value: OutputValue, table tableText: () -> String) {
    switch format {
    case .json: out(value.json())
    case .yaml: out(value.yaml())
    case .table: out(tableText())
    }
}

/// UTC time with seconds, e.g. 2026-11-30T05:26:38Z; "-" for 0.
func formatTime(_ ms: Int64) -> String {
    guard ms > 0 else { return "-" }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}

/// Parses "500ms", "90s", "10m", "1h30m", "2d".
func parseDuration(_ text: String) -> Int64? {
    var total: Int64 = 0
    var number = ""
    var chars = Array(text.trimmingCharacters(in: .whitespaces))
    guard !chars.isEmpty else { return nil }
    var i = 0
    while i < chars.count {
        let c = chars[i]
        if c.isNumber {
            number.append(c)
            i += 1
            continue
        }
        guard let n = Int64(number) else { return nil }
        number = ""
        if c == "m", i + 1 < chars.count, chars[i + 1] == "s" {
            total += n
            i += 2
            continue
        }
        switch c {
        case "s": total += n * 1000
        case "m": total += n * 60_000
        case "h": total += n * 3_600_000
        case "d": total += n * 86_400_000
        default: return nil
        }
        i += 1
    }
    guard number.isEmpty else { return nil }
    chars = []
    return total
}

/// A duration in milliseconds as people write it: 1h30m, 45s, 250ms.
func formatDuration(_ ms: Int64) -> String {
    if ms < 1000 { return "\(ms)ms" }
    var s = ms / 1000
    var out = ""
    if s >= 3600 { out += "\(s / 3600)h"; s %= 3600 }
    if s >= 60 { out += "\(s / 60)m"; s %= 60 }
    if s > 0 || out.isEmpty { out += "\(s)s" }
    return out
}

func stateName(_ s: Fusebox_V1_BreakerState) -> String {
    BreakerMapping.state(s)?.displayName ?? "UNSPECIFIED"
}

func statusValue(_ s: Fusebox_V1_BreakerStatus) -> OutputValue {
    .map([
        ("registry", .string(s.breaker?.registry ?? "")), ("name", .string(s.breaker?.name ?? "")), ("policy", .string(s.policy)),
        ("state", .string(stateName(s.state))), ("evaluatedState", .string(stateName(s.evaluatedState))),
        ("generation", .int(Int64(clamping: s.generation))), ("since", .string(formatTime(s.sinceMs))),
        ("until", s.untilMs > 0 ? .string(formatTime(s.untilMs)) : .null), ("reason", .string(s.reason)),
    ])
}

func countsValue(_ c: Fusebox_V1_OutcomeCounts?) -> OutputValue {
    let c = BreakerMapping.counts(c)
    return .map([
        ("success", .int(Int64(clamping: c.success))), ("failure", .int(Int64(clamping: c.failure))),
        ("slowSuccess", .int(Int64(clamping: c.slowSuccess))), ("slowFailure", .int(Int64(clamping: c.slowFailure))),
        ("ignored", .int(Int64(clamping: c.ignored))),
    ])
}

/// Runs a command body, turning errors into messages and exit codes.
/// `scope` opens the command's connection to fuseboxd and closes it when the
/// body ends, however it ends.
func runCommand(_ body: (CommandScope) async throws -> Void) async throws {
    let scope = CommandScope()
    do {
        try await body(scope)
        await scope.close()
    } catch let error as CLIError {
        await scope.close()
        FileHandle.standardError.write(Data((error.description + "\n").utf8))
        throw ExitCode(error.code)
    } catch {
        await scope.close()
        throw error
    }
}

/// The connections one command opened.
final class CommandScope {
    private var connections: [Connection] = []

    /// A connection to fuseboxd with `settings`, closed when the command ends.
    func connect(_ settings: ResolvedSettings) throws -> Connection {
        let connection = try Connection(settings)
        connections.append(connection)
        return connection
    }

    func close() async {
        for c in connections { await c.close() }
        connections = []
    }
}

/// A file's text, or standard input's for "-".
func readText(_ path: String) throws -> String {
    if path == "-" { return String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("cannot read \(path): no such readable file", code: ExitCodes.invalidInput)
    }
    return String(decoding: data, as: UTF8.self)
}

/// Reads a policy file, or every problem in it.
func readPolicyFile(_ path: String) throws -> [Policy] {
    try readPolicyDocuments(path).map(\.policy)
}

/// Reads a policy file keeping where each field is written, or every problem in it.
func readPolicyDocuments(_ path: String) throws -> [PolicyDocument] {
    switch PolicyYAML.documents(try readText(path), file: path) {
    case .success(let documents): return documents
    case .failure(let found):
        let problems = found.problems
        throw CLIError(
            "\(path) is not a valid policy file (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n" + problems.map { "  \($0)" }.joined(separator: "\n"),
            code: ExitCodes.invalidInput)
    }
}

/// The changed lines of a diff with `context` unchanged lines around each
/// change; runs of unchanged lines in between become "...".
func diffHunks(_ lines: [String], context: Int = 2) -> [String] {
    let changed = lines.indices.filter { !lines[$0].hasPrefix("  ") }
    var keep = Set<Int>()
    for i in changed { for j in max(0, i - context)...min(lines.count - 1, i + context) { keep.insert(j) } }
    var out: [String] = []
    var last = -1
    for i in keep.sorted() {
        if last >= 0, i > last + 1 { out.append("...") }
        out.append(lines[i])
        last = i
    }
    return out
}

/// A line diff (longest common subsequence), unified-style without context
/// limits: each line starts with "  " (in both), "- " (old only) or "+ " (new only).
public func lineDiff(_ old: [String], _ new: [String]) -> [String] {
    let n = old.count, m = new.count
    var lcs = Array(repeating: Array(repeating: 0, count: m + 1), count: n + 1)
    for i in stride(from: n - 1, through: 0, by: -1) {
        for j in stride(from: m - 1, through: 0, by: -1) {
            lcs[i][j] = old[i] == new[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
        }
    }
    var out: [String] = []
    var i = 0, j = 0
    while i < n || j < m {
        if i < n, j < m, old[i] == new[j] {
            out.append("  \(old[i])")
            i += 1
            j += 1
        } else if i < n, j == m || lcs[i + 1][j] >= lcs[i][j + 1] {
            out.append("- \(old[i])")
            i += 1
        } else {
            out.append("+ \(new[j])")
            j += 1
        }
    }
    return out
}

/// Writes a line to stdout unbuffered, so `watch` output reaches pipes at once.
func out(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
