"""The layer graph of a Keras classifier, for the per-pixel methods: where its last spatial feature map is,
how to run it while keeping that feature map and the class log-probabilities (from the logits when there are
any), and its weighted layers.

Part of the engine (the :mod:`sensmap.methods` modules run TensorFlow, like :mod:`sensmap.engine`).
Functional and Sequential models are supported, with nested functional or Sequential sub-models
(e.g. a Keras Applications base inside an own model) walked into.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras

from ..errors import ModelError
from ..incremental import _call  # a layer's own call in inference mode (batch norm statistics, no dropout)
from ..models import Network, tf


def graph_of(model: Any) -> Any | None:
    """The functional graph of a Keras model (a Sequential's own functional graph), or None (subclassed)."""
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    return model if model is not None and hasattr(model, "_nodes_by_depth") else None


def _nodes(graph: Any) -> Iterator[Any]:
    """The graph's layer calls in execution order (inputs first)."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):  # noqa: SLF001 - Keras' own graph order
        for node in graph._nodes_by_depth[depth]:  # noqa: SLF001
            if node.operation is not None and not node.is_input:
                yield node


def _producer(tensor: Any) -> tuple[Any, Any] | None:
    """``(layer, node)`` that made a symbolic tensor, or None for a graph input."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    layer = history.operation
    node = layer._inbound_nodes[history.node_index]  # noqa: SLF001
    return None if node.is_input else (layer, node)


@dataclass(frozen=True)
class FeatureSite:
    """The last spatial feature map: a 4-D ``(batch, h, w, channels)`` tensor of the graph ``path[-1]`` (its
    size may be unknown until the network's input size is fed).

    ``path`` holds the (functional) graphs from the network's own model down to the nested sub-model that
    computes the tensor; ``layer`` is the name of the layer that outputs it.
    """

    path: tuple[Any, ...]
    tensor: Any
    layer: str


def _learns(layer: Any) -> bool:
    """True for layers with learnt kernels (convolutions, dense) or models containing one."""
    if graph_of(layer) is not None or isinstance(layer, keras.Model):
        return any(_learns(sub) for sub in layer.layers)
    return any(hasattr(layer, name) for name in ("kernel", "depthwise_kernel"))


_GLOBAL_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _walk_back(start: Any) -> Iterator[tuple[Any, Any, bool]]:
    """``(tensor, layer that made it, pooled)`` for ``start`` and every tensor upstream of it in its graph,
    breadth-first, each once; ``pooled``: the tensor is read by a global pooling layer on the way."""
    frontier, seen = [(start, False)], set()
    while frontier:
        following = []
        for tensor, pooled in frontier:
            made = None if id(tensor) in seen else _producer(tensor)
            seen.add(id(tensor))
            if made is None:
                continue
            layer, node = made
            yield tensor, layer, pooled
            following.extend((source, isinstance(layer, _GLOBAL_POOLING)) for source in node.input_tensors)
        frontier = following


def _search(graph: Any, path: tuple[Any, ...]) -> FeatureSite | None:
    """Breadth-first from the graph's output back to the nearest spatial feature map.

    A candidate is 4-D, made after a learnt layer (not a rescaled photo), and either larger than 1×1 or the
    input of a global pooling layer: 1×1 tensors after the pooling (the 1×1 convolution heads of MobileNet and
    MobileNetV3) are skipped.
    """
    for tensor, layer, pooled in _walk_back(graph.outputs[0]):
        spatial = len(tensor.shape) == 4 and (pooled or (tensor.shape[1] or 2) * (tensor.shape[2] or 2) > 1)
        if spatial and any(_learns(upstream) for _, upstream, _ in _walk_back(tensor)):
            return FeatureSite(path, tensor, layer.name)
        inner = graph_of(layer)
        if inner is not None and len(inner.outputs) == 1:  # a nested model whose output is not spatial
            found = _search(inner, (*path, inner))
            if found is not None:
                return found
    return None


def find_feature_site(network: Network) -> FeatureSite:
    """The last spatial feature map before the network's global pooling or flattening (see :class:`FeatureSite`).

    Walks back from the output; nested sub-models whose output is not spatial are walked into. A
    :class:`ModelError` says so when there is none (no 4-D activation after a learnt layer).
    """
    graph = graph_of(network.model)
    if graph is None:
        raise ModelError(
            f"{network.name}: Grad-CAM needs a functional or Sequential Keras model to find its feature maps; "
            "this is a subclassed model. Use occlusion or RISE, which only need its outputs."
        )
    site = _search(graph, (graph,))
    if site is None:
        raise ModelError(
            f"{network.name} has no spatial feature map: no layer after a convolution or dense layer outputs a "
            "4-D (batch, height, width, channels) activation before the classifier, so Grad-CAM has nothing to "
            "weight. Use occlusion or RISE instead."
        )
    return site


def _softmax_head(layer: Any) -> bool:
    activation = getattr(layer, "activation", None)
    named = getattr(activation, "__name__", "") == "softmax"
    return isinstance(layer, keras.layers.Softmax) or (
        named and isinstance(layer, (keras.layers.Dense, keras.layers.Activation))
    )


def _before_softmax(layer: Any, inputs: Any) -> Any:
    """What a softmax-headed output layer computes before its softmax (the class logits)."""
    if isinstance(layer, keras.layers.Dense):
        logits = keras.ops.matmul(inputs, layer.kernel)
        return logits + layer.bias if layer.use_bias else logits
    return inputs  # an Activation("softmax") or Softmax layer: its input are the logits


def run_graph(graph: Any, inputs: list[Any], site: FeatureSite, found: dict[str, Any], final: bool = True) -> list:
    """Run a functional graph layer by layer on ``inputs``, eagerly (under a ``tf.GradientTape`` if wanted).

    Stores the value of ``site.tensor`` in ``found["feature"]``. When ``final`` (the network's own output
    is made in this graph) and the output layer ends in a softmax, that layer returns its logits instead
    and ``found["logits"]`` is True. Nested sub-models run through this function too.
    """
    values = {id(tensor): value for tensor, value in zip(graph.inputs, inputs, strict=True)}
    output_id = id(graph.outputs[0])
    for node in _nodes(graph):
        layer = node.operation
        last = final and any(id(t) == output_id for t in node.outputs)
        args, kwargs = node.arguments.fill_in(values)
        inner = graph_of(layer)
        if inner is not None:
            outputs = run_graph(inner, list(keras.tree.flatten(args)), site, found, last)
        elif last and _softmax_head(layer):
            outputs, found["logits"] = [_before_softmax(layer, args[0])], True
        else:
            outputs = list(keras.tree.flatten(_call(layer, args, kwargs)))
        for tensor, value in zip(node.outputs, outputs, strict=True):
            values[id(tensor)] = value
            if tensor is site.tensor:
                found["feature"] = value
    return [values[id(tensor)] for tensor in graph.outputs]


def feature_and_log_probabilities(
    network: Network, pixels: tf.Tensor, site: FeatureSite
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(feature map (n, h, w, c), class log-probabilities (n, classes))`` of raw pixels ``(n, H, W, 3)``.

    The log-probabilities come from the logits (``log_softmax``, exact even for a class at probability 1.0 in
    float32) when the network has them: its output layer ends in a softmax (Keras Applications) or it outputs
    logits (``network.softmax_applied``); otherwise from its probabilities. Run it under a
    ``tf.GradientTape`` for gradients with respect to the feature map.
    """
    found: dict[str, Any] = {}
    outputs = tf.cast(run_graph(site.path[0], [network.preprocess(pixels)], site, found)[0], tf.float32)
    if found.get("logits") or network.softmax_applied:
        return found["feature"], tf.nn.log_softmax(outputs, axis=-1)
    return found["feature"], tf.math.log(tf.maximum(outputs, 1e-30))


def weighted_layers(model: Any) -> list[Any]:
    """Layers holding weights, in execution order (input side first), nested sub-models expanded."""
    graph = graph_of(model)
    if graph is None:
        return [layer for layer in model.layers if layer.weights] if hasattr(model, "layers") else []
    out: list[Any] = []
    for node in _nodes(graph):
        layer = node.operation
        if graph_of(layer) is not None:
            out.extend(sub for sub in weighted_layers(layer) if sub not in out)
        elif getattr(layer, "weights", None) and layer not in out:
            out.append(layer)
    return out
