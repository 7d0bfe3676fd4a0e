import FuseboxTesting
import FuseboxEtcd
import Foundation
import XCTest

/// Bytes of a string, for keys and values.
func b(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Things a test's consumer task collects, read by the test while it waits.
final class Collected<Element: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Element] = []

    func append(_ item: Element) {
        lock.lock()
        items.append(item)
        lock.unlock()
    }

    var all: [Element] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

