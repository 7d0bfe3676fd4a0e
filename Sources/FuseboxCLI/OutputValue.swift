import Foundation

/// Command output as a tree with ordered keys, rendered as JSON or YAML the
/// same way every time (golden tests and scripts rely on the order).
public indirect enum OutputValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case list([OutputValue])
    case map([(String, OutputValue)])

    public static func == (lhs: OutputValue, rhs: OutputValue) -> Bool { lhs.json() == rhs.json() }

    // MARK: JSON

    /// Pretty JSON, two-space indent, keys in their given order.
    public func json(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent)
        let inner = String(repeating: "  ", count: indent + 1)
        switch self {
        case .string(let s): return Self.quoted(s)
        case .int(let i): return "\(i)"
        case .double(let d): return Self.number(d)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .list(let items):
            guard !items.isEmpty else { return "[]" }
            return "[\n" + items.map { inner + $0.json(indent: indent + 1) }.joined(separator: ",\n") + "\n\(pad)]"
        case .map(let pairs):
            guard !pairs.isEmpty else { return "{}" }
            return "{\n" + pairs.map { "\(inner)\(Self.quoted($0.0)): \($0.1.json(indent: indent + 1))" }.joined(separator: ",\n") + "\n\(pad)}"
        }
    }

    static func number(_ d: Double) -> String {
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    // MARK: YAML

    /// Block-style YAML; strings are quoted when YAML would read them as
    /// something else.
    public func yaml() -> String {
        var lines: [String] = []
        Self.yaml(self, indent: 0, into: &lines)
        return lines.joined(separator: "\n")
    }

    private static func yaml(_ value: OutputValue, indent: Int, into lines: inout [String]) {
        let pad = String(repeating: "  ", count: indent)
        switch value {
        case .map(let pairs):
            if pairs.isEmpty { lines.append(pad + "{}") }
            for (key, v) in pairs {
                if let scalar = v.yamlInline {
                    lines.append("\(pad)\(yamlKey(key)): \(scalar)")
                } else {
                    lines.append("\(pad)\(yamlKey(key)):")
                    yaml(v, indent: v.isList ? indent : indent + 1, into: &lines)
                }
            }
        case .list(let items):
            if items.isEmpty { lines.append(pad + "[]") }
            for item in items {
                if let scalar = item.yamlInline {
                    lines.append("\(pad)- \(scalar)")
                } else {
                    var nested: [String] = []
                    yaml(item, indent: 0, into: &nested)
                    for (i, line) in nested.enumerated() {
                        lines.append(pad + (i == 0 ? "- " : "  ") + line)
                    }
                }
            }
        default:
            lines.append(pad + (value.yamlInline ?? ""))
        }
    }

    private var isList: Bool {
        if case .list = self { return true }
        return false
    }

    private var yamlInline: String? {
        switch self {
        case .string(let s): return Self.yamlString(s)
        case .int(let i): return "\(i)"
        case .double(let d): return Self.number(d)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .list(let items): return items.isEmpty ? "[]" : nil
        case .map(let pairs): return pairs.isEmpty ? "{}" : nil
        }
    }

    private static func yamlKey(_ key: String) -> String {
        plainSafe(key) ? key : quoted(key)
    }

    static func yamlString(_ s: String) -> String {
        plainSafe(s) ? s : quoted(s)
    }

    private static func plainSafe(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]
        if reserved.contains(s.lowercased()) || Double(s) != nil || Int(s) != nil { return false }
        if "-?:,[]{}#&*!|>'\"%@` ".unicodeScalars.contains(first) { return false }
        if s.hasSuffix(" ") || s.contains(": ") || s.contains(" #") || s.hasSuffix(":") { return false }
        return s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0 != "\u{7f}" }
    }
}
