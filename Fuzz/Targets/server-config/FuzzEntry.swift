import FuseboxFuzzing

/// libFuzzer's entry for the server-config target (docs/FUZZING.md); the work is
/// `FuzzTarget.serverConfig` in FuseboxFuzzing, shared with the replay tests.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.serverConfig.runTrappingOnFinding(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// libFuzzer calls this once before the first input.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: OpaquePointer?, _ argv: OpaquePointer?) -> CInt {
    FuzzTarget.serverConfig.prepare()
    return 0
}
