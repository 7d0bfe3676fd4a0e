import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Ends the test process when one test runs far past its expected time, after
/// printing what it was waiting for: every thread's backtrace (through gdb,
/// when it is installed and may attach) and whatever `context` describes.
///
/// A hang in a test that drives real processes (etcd members, fuseboxd
/// replicas) would otherwise run until CI's limit and leave nothing to read.
/// The timer runs on a Dispatch thread, so it fires even when every thread of
/// Swift's cooperative pool is blocked.
public final class TestWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var disarmed = false

    /// Arms the watchdog for `name`: after `limit` it reports and exits the process with status 1.
    public init(_ name: String, limit: Duration, context: @escaping @Sendable () -> String = { "" }) {
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            guard lock.withLock({ !disarmed }) else { return }
            Self.report("\(name) has run for \(limit), far past its expected time; it is treated as hung", context: context())
            exit(1)
        }
    }

    /// The test finished: the watchdog does nothing.
    public func disarm() {
        lock.withLock { disarmed = true }
    }

    /// Prints `message`, every thread's backtrace and `context` to standard error.
    static func report(_ message: String, context: String) {
        fflush(nil)  // every stream, the test's own prints so far among them
        FileHandle.standardError.write(Data("\n=== WATCHDOG: \(message)\n".utf8))
        let gdb = "/usr/bin/gdb"
        if FileManager.default.isExecutableFile(atPath: gdb) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: gdb)
            process.arguments = ["-batch", "-nx", "-p", "\(getpid())", "-ex", "thread apply all bt 30"]
            process.standardOutput = FileHandle.standardError
            process.standardError = FileHandle.standardError
            do {
                try process.run()
                process.waitUntilExit()
            } catch {
                FileHandle.standardError.write(Data("=== WATCHDOG: gdb did not run: \(error)\n".utf8))
            }
        } else {
            FileHandle.standardError.write(Data("=== WATCHDOG: no \(gdb), so no backtraces\n".utf8))
        }
        if !context.isEmpty { FileHandle.standardError.write(Data("=== WATCHDOG: context\n\(context)\n".utf8)) }
        FileHandle.standardError.write(Data("=== WATCHDOG: exiting\n".utf8))
    }
}
