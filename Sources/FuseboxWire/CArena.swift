import CProtobufC

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory for one protobuf-c message being built for packing.
///
/// Every allocation is freed when the arena goes away, so a message built
/// from Swift values is released exactly once however deep it is. The first
/// string that cannot be represented (one holding a NUL byte) is remembered
/// and turned into an error by `pack`.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private var nulField: (message: StaticString, field: StaticString)?

    init() {}

    deinit {
        for block in blocks { free(block) }
    }

    private func raw(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = malloc(max(bytes, 1)) else {
            // Allocation failure of a few bytes leaves nothing sensible to do.
            preconditionFailure("CArena: malloc(\(bytes)) failed")
        }
        blocks.append(p)
        return p
    }

    /// Uninitialised room for one `T`; the caller initialises it with protobuf-c's `__init`.
    func allocate<T>(_: T.Type) -> UnsafeMutablePointer<T> {
        raw(MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: 1)
    }

    /// A NUL-terminated copy of `string`. A string with a NUL byte is recorded
    /// as an error for `pack` (`field` names it), and copied up to the NUL.
    func cString(_ string: String, in message: StaticString, field: StaticString) -> UnsafeMutablePointer<CChar> {
        var utf8 = Array(string.utf8)
        if let nul = utf8.firstIndex(of: 0) {
            if nulField == nil { nulField = (message, field) }
            utf8.removeSubrange(nul...)
        }
        let p = raw(utf8.count + 1).bindMemory(to: CChar.self, capacity: utf8.count + 1)
        utf8.withUnsafeBytes { src in
            UnsafeMutableRawPointer(p).copyMemory(from: src.baseAddress ?? UnsafeRawPointer(p), byteCount: src.count)
        }
        p[utf8.count] = 0
        return p
    }

    /// A copy of `bytes` as protobuf-c binary data.
    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        let p = raw(bytes.count).bindMemory(to: UInt8.self, capacity: max(bytes.count, 1))
        bytes.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { p.update(from: base, count: src.count) }
        }
        return ProtobufCBinaryData(len: bytes.count, data: p)
    }

    /// A C array of `transform` applied to each element; nil when empty.
    func array<Element, C>(_ elements: [Element], _ transform: (Element) -> C) -> UnsafeMutablePointer<C>? {
        guard !elements.isEmpty else { return nil }
        let p = raw(MemoryLayout<C>.stride * elements.count).bindMemory(to: C.self, capacity: elements.count)
        for (i, element) in elements.enumerated() {
            (p + i).initialize(to: transform(element))
        }
        return p
    }

    /// A C array of pointers (repeated messages and strings); nil when empty.
    func pointers<Element, C>(
        _ elements: some Collection<Element>,
        _ transform: (Element) -> UnsafeMutablePointer<C>
    ) -> UnsafeMutablePointer<UnsafeMutablePointer<C>?>? {
        guard !elements.isEmpty else { return nil }
        let p = raw(MemoryLayout<UnsafeMutablePointer<C>?>.stride * elements.count)
            .bindMemory(to: UnsafeMutablePointer<C>?.self, capacity: elements.count)
        for (i, element) in elements.enumerated() {
            (p + i).initialize(to: transform(element))
        }
        return p
    }

    /// Packs the message `c` (a protoc-c struct beginning with `ProtobufCMessage`).
    func pack<C>(_ c: UnsafeMutablePointer<C>) throws(WireError) -> [UInt8] {
        let base = UnsafeMutableRawPointer(c).assumingMemoryBound(to: ProtobufCMessage.self)
        if let (message, field) = nulField {
            throw WireError(
                code: .embeddedNUL,
                messageType: "\(message)",
                fieldPath: "\(field)",
                message: "the string holds a NUL byte, which protobuf-c cannot encode; remove it"
            )
        }
        let size = protobuf_c_message_get_packed_size(base)
        // An empty message packs to nothing. Not through the initializer:
        // with capacity 0 it sets the count of the shared empty-array storage,
        // a write ThreadSanitizer reports as a race when threads pack empty
        // messages at once.
        guard size > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = buffer.baseAddress.map { protobuf_c_message_pack(base, $0) } ?? 0
        }
    }
}
