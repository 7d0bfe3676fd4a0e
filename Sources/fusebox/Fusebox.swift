import ArgumentParser
import FuseboxCLI

/// The `fusebox` executable: the commands live in FuseboxCLI (so tests can
/// reach them); this is the entry point.
@main
struct Fusebox: AsyncParsableCommand {
    static let configuration = FuseboxCommand.configuration
}
