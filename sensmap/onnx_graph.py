"""What an ONNX file offers, read without TensorFlow: its input and output (through ONNX Runtime), its
parameter count and last operation (from the file's protobuf, no ``onnx`` package needed).

:func:`open_onnx` opens an ONNX Runtime session (the CUDA provider when this ONNX Runtime has one, else the
CPU) and checks what sensmap can use: one float image input of rank 4 — ``(batch, 3, H, W)`` (NCHW,
PyTorch) or ``(batch, H, W, 3)`` (NHWC) — with a fixed or dynamic batch and size, and one output that is a
vector per image ``(batch, k)``. Anything else is refused with a :class:`~sensmap.errors.ModelError` that
says what was found and what to export instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError

PROVIDERS: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
#: Input size used when the graph's is dynamic and neither the sidecar nor ``input_size=`` gives one.
DEFAULT_DYNAMIC_SIZE = (224, 224)
INPUT_TYPES: dict[str, str] = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


@dataclass(frozen=True)
class OnnxSignature:
    """The input and output of an ONNX graph as sensmap uses them."""

    input_name: str
    input_dtype: str  # numpy dtype name of the input: float32, float16 or float64
    layout: str  # "NCHW" or "NHWC"
    batch: int | None  # fixed batch size, or None when dynamic
    input_size: tuple[int, int] | None  # (H, W) when fixed, None when dynamic
    output_name: str
    outputs: int | None  # length of the output vector when the graph fixes it
    parameters: int  # weights stored in the file (initializer elements)
    final_op: str  # the operation that makes the output ("Softmax", "Sigmoid", "Gemm"…), Identity skipped
    providers: tuple[str, ...]  # ONNX Runtime execution providers in use, first = preferred


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def open_onnx(path: str | os.PathLike) -> tuple[Any, OnnxSignature]:
    """``(onnxruntime.InferenceSession, OnnxSignature)`` of an ONNX file, or a :class:`ModelError`."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no such model file: {path}")
    available = set(onnxruntime.get_available_providers())
    providers = [name for name in PROVIDERS if name in available]
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: ONNX Runtime's warnings go to the process's stderr
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types; the message is what matters
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {path.name}: it is not a valid ONNX model ({message[:300]})") from None
    image = _only(session.get_inputs(), path, "inputs", "exactly one image input: export the model with a single input")
    shape = list(image.shape)
    if image.type not in INPUT_TYPES:
        raise ModelError(
            f"{path.name}: the input {image.name!r} is {image.type}, not an image; sensmap feeds float images "
            "(batch, 3, H, W) or (batch, H, W, 3)"
        )
    if len(shape) != 4:
        raise ModelError(
            f"{path.name}: the input {image.name!r} has shape {shape} (rank {len(shape)}); sensmap needs a batch of "
            "RGB images of rank 4, (batch, 3, H, W) or (batch, H, W, 3)"
        )
    if shape[1] == 3:
        layout, height, width = "NCHW", shape[2], shape[3]
    elif shape[3] == 3:
        layout, height, width = "NHWC", shape[1], shape[2]
    else:
        raise ModelError(
            f"{path.name}: the input {image.name!r} has shape {shape}: no axis of 3 colour channels; sensmap needs "
            "RGB images, (batch, 3, H, W) or (batch, H, W, 3)"
        )
    output = _only(
        session.get_outputs(), path, "outputs", "one output, a vector per image: export only the output to explain"
    )
    if len(output.shape) != 2 or output.type not in INPUT_TYPES:
        raise ModelError(
            f"{path.name}: the output {output.name!r} is {output.type} of shape {list(output.shape)}; sensmap needs "
            "one float vector per image, (batch, k): flatten or pool it in the exported graph"
        )
    parameters, final_op = graph_facts(path.read_bytes(), output.name)
    size = (_dim(height), _dim(width))
    signature = OnnxSignature(
        input_name=image.name,
        input_dtype=INPUT_TYPES[image.type],
        layout=layout,
        batch=_dim(shape[0]),
        input_size=size if None not in size else None,  # type: ignore[arg-type]
        output_name=output.name,
        outputs=_dim(output.shape[1]),
        parameters=parameters,
        final_op=final_op,
        providers=tuple(session.get_providers()),
    )
    return session, signature


def _only(items: list[Any], path: Path, what: str, needs: str) -> Any:
    """The one graph input or output, else a :class:`ModelError` listing them and saying what sensmap ``needs``."""
    if len(items) != 1:
        names = ", ".join(f"{item.name} {list(item.shape)}" for item in items)
        raise ModelError(f"{path.name} has {len(items)} {what} ({names}); sensmap needs {needs}")
    return items[0]


# --------------------------------------------------------------------------- protobuf wire format
# ModelProto.graph = 7; GraphProto.node = 1, .initializer = 5, .output = 12; NodeProto.input = 1, .output = 2,
# .op_type = 4; TensorProto.dims = 1 (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)``: an int for varints, ``(start, end)`` for everything else."""
    position = start
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            length, position = _varint(data, position)
            value, position = (position, position + length), position + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = (position, position + size), position + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _text(data: memoryview, span: tuple[int, int]) -> str:
    return bytes(data[span[0] : span[1]]).decode("utf-8")


def _dims(data: memoryview, span: tuple[int, int]) -> list[int]:
    dims: list[int] = []
    for number, wire, value in _fields(data, *span):
        if number != 1:
            continue
        if wire == 0:
            dims.append(value)
        else:  # packed
            position = value[0]
            while position < value[1]:
                dim, position = _varint(data, position)
                dims.append(dim)
    return dims


def graph_facts(model: bytes, output_name: str) -> tuple[int, str]:
    """``(parameters, final operation)`` of a serialised ONNX model: the number of initializer elements, and the
    type of the node that produces ``output_name`` (Identity nodes skipped; ``""`` when no node makes it)."""
    data = memoryview(model)
    try:
        graph = next(value for number, wire, value in _fields(data, 0, len(data)) if number == 7 and wire == 2)
        parameters, producers = 0, {}
        for number, wire, value in _fields(data, *graph):
            if wire != 2:
                continue
            if number == 5:
                parameters += math.prod(_dims(data, value))
            elif number == 1:
                op_type, inputs, outputs = "", [], []
                for field, field_wire, field_value in _fields(data, *value):
                    if field_wire != 2:
                        continue
                    if field == 4:
                        op_type = _text(data, field_value)
                    elif field in (1, 2):
                        (inputs if field == 1 else outputs).append(_text(data, field_value))
                for name in outputs:
                    producers[name] = (op_type, inputs)
    except (StopIteration, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the ONNX graph: {type(exc).__name__} {exc}") from None
    op_type, inputs = producers.get(output_name, ("", []))
    for _ in range(len(producers)):
        if op_type != "Identity" or not inputs:
            break
        op_type, inputs = producers.get(inputs[0], ("", []))
    return int(parameters), op_type
