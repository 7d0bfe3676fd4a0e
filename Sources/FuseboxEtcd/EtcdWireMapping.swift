import FuseboxWire

// The one place where FuseboxEtcd's values and the etcd wire messages meet.

extension EtcdKeyValue {
    init(_ wire: Mvccpb_KeyValue) {
        self.init(
            key: wire.key, value: wire.value, createRevision: wire.createRevision, modRevision: wire.modRevision,
            version: wire.version, lease: wire.lease)
    }
}

extension EtcdRangeResult {
    init(_ wire: Etcdserverpb_RangeResponse) {
        self.init(revision: wire.header?.revision ?? 0, kvs: wire.kvs.map(EtcdKeyValue.init), more: wire.more, count: wire.count)
    }
}

extension EtcdPutResult {
    init(_ wire: Etcdserverpb_PutResponse) {
        self.init(revision: wire.header?.revision ?? 0, previous: wire.prevKv.map(EtcdKeyValue.init))
    }
}

extension EtcdDeleteResult {
    init(_ wire: Etcdserverpb_DeleteRangeResponse) {
        self.init(revision: wire.header?.revision ?? 0, deleted: wire.deleted, previous: wire.prevKvs.map(EtcdKeyValue.init))
    }
}

extension Etcdserverpb_RangeRequest {
    init(key: [UInt8], rangeEnd: [UInt8]?, limit: Int64, revision: Int64, serializable: Bool) {
        self.init()
        self.key = key
        self.rangeEnd = rangeEnd ?? []
        self.limit = limit
        self.revision = revision
        self.serializable = serializable
    }
}

extension Etcdserverpb_PutRequest {
    init(key: [UInt8], value: [UInt8], lease: Int64, previous: Bool) {
        self.init()
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKv = previous
    }
}

extension Etcdserverpb_DeleteRangeRequest {
    init(key: [UInt8], rangeEnd: [UInt8]?, previous: Bool) {
        self.init()
        self.key = key
        self.rangeEnd = rangeEnd ?? []
        self.prevKv = previous
    }
}

extension Etcdserverpb_Compare {
    init(_ compare: EtcdCompare) {
        self.init()
        key = compare.key
        rangeEnd = compare.rangeEnd ?? []
        switch compare.relation {
        case .equal: result = .equal
        case .notEqual: result = .notEqual
        case .greater: result = .greater
        case .less: result = .less
        }
        switch compare.target {
        case .version(let v):
            target = .version
            targetUnion = .version(v)
        case .createRevision(let v):
            target = .create
            targetUnion = .createRevision(v)
        case .modRevision(let v):
            target = .mod
            targetUnion = .modRevision(v)
        case .value(let v):
            target = .value
            targetUnion = .value(v)
        case .lease(let v):
            target = .lease
            targetUnion = .lease(v)
        }
    }
}

extension Etcdserverpb_RequestOp {
    init(_ operation: EtcdOperation) {
        self.init()
        switch operation {
        case .range(let key, let rangeEnd, let limit):
            request = .requestRange(Etcdserverpb_RangeRequest(key: key, rangeEnd: rangeEnd, limit: limit, revision: 0, serializable: false))
        case .put(let key, let value, let lease, let previous):
            request = .requestPut(Etcdserverpb_PutRequest(key: key, value: value, lease: lease, previous: previous))
        case .delete(let key, let rangeEnd, let previous):
            request = .requestDeleteRange(Etcdserverpb_DeleteRangeRequest(key: key, rangeEnd: rangeEnd, previous: previous))
        }
    }
}

extension EtcdTxnResult {
    init(_ wire: Etcdserverpb_TxnResponse) {
        var results: [EtcdOperationResult] = []
        for op in wire.responses {
            switch op.response {
            case .responseRange(let r): results.append(.range(EtcdRangeResult(r)))
            case .responsePut(let r): results.append(.put(EtcdPutResult(r)))
            case .responseDeleteRange(let r): results.append(.delete(EtcdDeleteResult(r)))
            case nil: break
            }
        }
        self.init(revision: wire.header?.revision ?? 0, succeeded: wire.succeeded, results: results)
    }
}
