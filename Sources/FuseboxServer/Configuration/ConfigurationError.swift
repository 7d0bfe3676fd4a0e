/// A configuration problem, naming the key and where it came from.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The key (`listen.port`), if the problem concerns one.
    public var key: String?
    /// The file or variable it came from.
    public var source: String
    /// The line in the file, if known.
    public var line: Int?
    /// What is wrong.
    public var message: String

    /// An error.
    public init(key: String?, source: String, line: Int?, _ message: String) {
        self.key = key
        self.source = source
        self.line = line
        self.message = message
    }

    /// `source:line: key message`.
    public var description: String {
        let place = line.map { "\(source):\($0)" } ?? source
        return "\(place): \(key.map { "\($0) " } ?? "")\(message)"
    }
}
