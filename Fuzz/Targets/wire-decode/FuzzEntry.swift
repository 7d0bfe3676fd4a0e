import FuseboxFuzzing

/// libFuzzer's entry for the wire-decode target (docs/FUZZING.md); the work is
/// `FuzzTarget.wireDecode` in FuseboxFuzzing, shared with the replay tests.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.wireDecode.runTrappingOnFinding(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// libFuzzer calls this once before the first input.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: OpaquePointer?, _ argv: OpaquePointer?) -> CInt {
    FuzzTarget.wireDecode.prepare()
    return 0
}
