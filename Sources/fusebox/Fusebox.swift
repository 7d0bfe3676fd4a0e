import ArgumentParser
import FuseboxCLI

/// The `fusebox` executable: the commands live in FuseboxCLI (so tests can
/// reach them); this is the entry point. Global options given before the
/// subcommand (`fusebox --server a:7443 audit --since 1h`) are moved after
/// it, where every subcommand reads them.
@main
struct Fusebox {
    static func main() async {
        await FuseboxCommand.main(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst())))
    }
}
