from fusebox.v1 import breaker_pb2 as _breaker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForwardedReports(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[_breaker_pb2.OutcomeBatch]
    def __init__(self, batches: _Optional[_Iterable[_Union[_breaker_pb2.OutcomeBatch, _Mapping]]] = ...) -> None: ...

class ForwardedReportsResult(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ForwardedReport]
    def __init__(self, results: _Optional[_Iterable[_Union[ForwardedReport, _Mapping]]] = ...) -> None: ...

class ForwardedReport(_message.Message):
    __slots__ = ("code", "message", "response")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    response: _breaker_pb2.ReportOutcomesResponse
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., response: _Optional[_Union[_breaker_pb2.ReportOutcomesResponse, _Mapping]] = ...) -> None: ...
