import FuseboxCLI

/// A line-by-line comparison of two texts: the CLI's `fusebox policies diff`
/// (`lineDiff`), marked for the page.
enum PolicyDiff {
    struct Line: Encodable, Equatable {
        /// " " (in both), "-" (only in the old text) or "+" (only in the new one).
        var op: String
        var text: String
    }

    /// The lines of `old` and `new`, each marked. Policies are short (tens
    /// of lines); past 1,000 × 1,000 lines the quadratic table is not built
    /// and the texts are shown as all removed, then all added.
    static func lines(_ old: String, _ new: String) -> [Line] {
        var a = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var b = new.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if a.last == "", b.last == "" {
            a.removeLast()
            b.removeLast()
        }
        guard a.count * b.count <= 1_000_000 else {
            return a.map { Line(op: "-", text: $0) } + b.map { Line(op: "+", text: $0) }
        }
        return lineDiff(a, b).map { marked in
            let op = marked.first.map(String.init) ?? " "
            return Line(op: op == " " ? " " : op, text: String(marked.dropFirst(2)))
        }
    }
}
