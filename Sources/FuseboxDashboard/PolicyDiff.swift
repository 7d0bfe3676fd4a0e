/// A line-by-line comparison of two texts (longest common subsequence).
enum PolicyDiff {
    struct Line: Encodable, Equatable {
        /// " " (in both), "-" (only in the old text) or "+" (only in the new one).
        var op: String
        var text: String
    }

    /// The lines of `old` and `new`, each marked. Policies are short (tens
    /// of lines): the quadratic table is small.
    static func lines(_ old: String, _ new: String) -> [Line] {
        let a = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let b = new.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let n = a.count, m = b.count
        guard n * m <= 1_000_000 else {
            return a.map { Line(op: "-", text: $0) } + b.map { Line(op: "+", text: $0) }
        }
        // lcs[i][j]: common lines of a[i...] and b[j...].
        var lcs = [[Int32]](repeating: [Int32](repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var result: [Line] = []
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, a[i] == b[j] {
                result.append(Line(op: " ", text: a[i]))
                i += 1
                j += 1
            } else if j < m, i == n || lcs[i][j + 1] >= lcs[i + 1][j] {
                result.append(Line(op: "+", text: b[j]))
                j += 1
            } else {
                result.append(Line(op: "-", text: a[i]))
                i += 1
            }
        }
        if result.last == Line(op: " ", text: "") { result.removeLast() }
        return result
    }
}
