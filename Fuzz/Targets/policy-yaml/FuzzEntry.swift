import FuseboxFuzzing

/// libFuzzer's entry for the policy-yaml target (docs/FUZZING.md); the work is
/// `FuzzTarget.policyYAML` in FuseboxFuzzing, shared with the replay tests.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.policyYAML.runTrappingOnFinding(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// libFuzzer calls this once before the first input.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: OpaquePointer?, _ argv: OpaquePointer?) -> CInt {
    FuzzTarget.policyYAML.prepare()
    return 0
}
