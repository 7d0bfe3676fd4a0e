/// Takes parameters off the front of a fuzz input; what is left is the payload.
/// Reading past the end gives zeros, so every input is usable.
struct FuzzInputReader {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint16() -> UInt16 {
        UInt16(byte()) << 8 | UInt16(byte())
    }

    /// Everything not read yet.
    var rest: ArraySlice<UInt8> { bytes[min(offset, bytes.count)...] }
}

/// Splits a payload into chunks whose lengths come from a small generator
/// seeded by the input, so chunk boundaries land anywhere, including inside
/// a length prefix or a frame header.
func fuzzChunks(_ payload: ArraySlice<UInt8>, seed: UInt8, maximumChunk: Int) -> [ArraySlice<UInt8>] {
    var state = UInt32(seed) &* 2_654_435_761 | 1
    var chunks: [ArraySlice<UInt8>] = []
    var start = payload.startIndex
    while start < payload.endIndex {
        // xorshift32: cheap and deterministic.
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        let length = seed == 0 ? payload.count : 1 + Int(state % UInt32(maximumChunk))
        let end = min(payload.endIndex, start + length)
        chunks.append(payload[start..<end])
        start = end
    }
    return chunks
}
