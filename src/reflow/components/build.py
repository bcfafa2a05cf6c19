"""The staged build: assemble, infer and check, then build onto a back end.

1. **Assemble.** The agent is a tree of components (``Component.add``); every path is unique. Seeds are
   handed down.
2. **Infer and check.** Each API method of the root named in ``inputs`` is called once on a small example
   batch made from the input specs (from the env's spaces). The ``Trace`` sees every API call below: it
   binds the arguments (a missing one is a ``MissingInputError`` naming component and method), infers each
   input's spec from its tensor, lets the component ``check`` it, makes the component's variables on its
   first call (``create_variables``) and refuses a later call with other specs (two connected components
   that disagree on a shape). Any other failure inside a method is reported as a ``ComponentError`` naming
   the component, the method and the input specs. Stateful methods leave their state alone while building
   (``component.building()``).
3. **Back end.** ``eager`` runs the API methods as they are; ``compile`` puts ``torch.compile`` on every
   component's module (benchmarks/components_overhead.py measures when that pays).

The trace is also the agent's logical graph, a ``reflow.graph.Graph``: one ``input`` node per API input,
one node per *leaf* API call (a call that makes no further API calls), one ``output`` node per returned
tensor, and an edge wherever a tensor produced by one call is consumed by another. Code between API calls
inside a composite method (say, a loss combining two heads' outputs) becomes a ``component.glue`` node of
that method; glue nodes are cut wherever a leaf call intervenes, so every edge runs from an earlier call to
a later one and the graph is acyclic by construction.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from reflow.components.component import TRACER, Component
from reflow.components.spaces import Spec, example, of_tensor
from reflow.errors import ComponentError, ComponentSpaceError, MissingInputError
from reflow.graph import Graph, Node, Port

BACKENDS = ("eager", "compile")


@dataclass
class _Frame:
    """One API call in progress."""

    component: Component
    method: str
    name: str
    inputs: list[tuple[str, str]]  # producers of its tensor inputs
    children: int = 0
    glue: str | None = None
    fresh: list[tuple[str, str]] = field(
        default_factory=list
    )  # leaf outputs made inside it since its last glue


def _tensors(value: Any, prefix: str) -> list[tuple[str, torch.Tensor]]:
    """The tensors in ``value`` (a tensor, or tuples/lists/dicts of them), with port names."""
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, (tuple, list)):
        return [x for i, v in enumerate(value) for x in _tensors(v, f"{prefix}{i}")]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _tensors(v, str(k))]
    return []


class Trace:
    """Sees every API call of a build and records the graph (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.graph = Graph(name)
        self.producer: dict[int, tuple[str, str, torch.Tensor]] = {}  # id(tensor) -> (node, port, tensor)
        self.stack: list[_Frame] = []
        self.counts: dict[str, int] = {}

    def _unique(self, name: str) -> str:
        k = self.counts.get(name, 0)
        self.counts[name] = k + 1
        return name if k == 0 else f"{name}#{k + 1}"

    def add_input(self, name: str, value: Any) -> None:
        for port, t in _tensors(value, "out") or []:
            node = self._unique(name)
            spec = of_tensor(t)
            self.graph.add_node(
                Node(node, "input", (), (Port(port, spec.describe()),), 0.0, {"spec": spec.describe()})
            )
            self.producer[id(t)] = (node, port, t)

    def add_output(self, name: str, value: Any) -> None:
        for port, t in _tensors(value, "out"):
            src = self._source(t)
            if src is None:
                continue
            spec = of_tensor(t)
            node = self._unique(f"{name}:{port}")
            self.graph.add_node(
                Node(node, "output", (Port("in", spec.describe()),), (), 0.0, {"spec": spec.describe()})
            )
            self.graph.connect(src[0], src[1], node, "in", float(spec.nbytes))

    def _source(self, t: torch.Tensor) -> tuple[str, str] | None:
        known = self.producer.get(id(t))
        if known is not None and known[2] is t:
            return known[0], known[1]
        return self._glue() if self.stack else None

    def _glue(self) -> tuple[str, str]:
        """The glue node of the innermost call: made anew if leaf calls ran since the last one."""
        frame = self.stack[-1]
        if frame.glue is not None and not frame.fresh:
            return frame.glue, "out"
        node = self._unique(f"{frame.name}.glue")
        feeds = ([(frame.glue, "out")] if frame.glue else list(frame.inputs)) + frame.fresh
        feeds = list(dict.fromkeys(feeds))
        self.graph.add_node(
            Node(
                node,
                "component.glue",
                tuple(Port(f"in{i}") for i in range(len(feeds))),
                (Port("out"),),
                0.0,
                {"component": frame.component.path, "method": frame.method},
            )
        )
        for i, (src, port) in enumerate(feeds):
            self.graph.connect(src, port, node, f"in{i}")
        frame.glue, frame.fresh = node, []
        return node, "out"

    def call(
        self, component: Component, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        mname = method.__name__
        where = f"component {component.path!r} ({type(component).__name__}), API method {mname!r}"
        try:
            bound = inspect.signature(method).bind(component, *args, **kwargs)
        except TypeError as e:
            caller = f", called from {self.stack[-1].name!r}" if self.stack else ""
            raise MissingInputError(f"{where}: {e}{caller}; pass every input the method declares") from None
        bound.apply_defaults()
        named = [(n, v) for n, v in list(bound.arguments.items())[1:]]
        tensors = [(port, t) for n, v in named for port, t in _tensors(v, n)]
        specs = {port: of_tensor(t) for port, t in tensors}
        component.check(mname, specs)
        known = component.input_specs.get(mname)
        if known is None:
            component.input_specs[mname] = specs
        elif known != specs:
            diff = [
                f"{k}: built for {known.get(k)}, now {specs.get(k)}"
                for k in sorted(set(known) | set(specs))
                if known.get(k) != specs.get(k)
            ]
            caller = f" (called from {self.stack[-1].name!r})" if self.stack else ""
            raise ComponentSpaceError(
                f"{where}{caller}: inputs do not match the ones it was built for: "
                f"{'; '.join(diff)}; connect it to components of matching shapes"
            )
        if not component.variables_created:
            component.create_variables(mname, specs)
            component.variables_created = True
        sources = [(port, self._source(t)) for port, t in tensors]
        name = self._unique(f"{component.path}.{mname}")
        if self.stack:
            self.stack[-1].children += 1
        frame = _Frame(component, mname, name, [s for _, s in sources if s is not None])
        self.stack.append(frame)
        try:
            out = method(component, *args, **kwargs)
        except ComponentError:
            raise
        except Exception as e:
            shown = ", ".join(f"{k}: {v}" for k, v in specs.items())
            raise ComponentError(
                f"{where} failed at build time on inputs ({shown}): {type(e).__name__}: {e}"
            ) from e
        finally:
            self.stack.pop()
        outputs = _tensors(out, "out")
        component.output_specs[mname] = tuple(of_tensor(t) for _, t in outputs)
        if frame.children == 0:
            self._leaf(frame, component, mname, tensors, sources, outputs)
        else:
            for _, t in outputs:
                if self.producer.get(id(t), (None, None, None))[2] is not t:
                    self.stack.append(frame)
                    self.producer[id(t)] = (*self._glue(), t)
                    self.stack.pop()
        return out

    def _leaf(
        self,
        frame: _Frame,
        component: Component,
        mname: str,
        tensors: list[tuple[str, torch.Tensor]],
        sources: list[tuple[str, tuple[str, str] | None]],
        outputs: list[tuple[str, torch.Tensor]],
    ) -> None:
        ins = tuple(Port(p, of_tensor(t).describe()) for p, t in tensors)
        outs = tuple(Port(p, of_tensor(t).describe()) for p, t in outputs)
        self.graph.add_node(
            Node(
                frame.name,
                "component.api",
                ins,
                outs,
                1.0,
                {
                    "component": component.path,
                    "class": type(component).__name__,
                    "method": mname,
                    "inputs": {p: of_tensor(t).describe() for p, t in tensors},
                    "outputs": {p: of_tensor(t).describe() for p, t in outputs},
                },
            )
        )
        for (port, t), (_, src) in zip(tensors, sources, strict=True):
            if src is not None:
                self.graph.connect(src[0], src[1], frame.name, port, float(of_tensor(t).nbytes))
        for port, t in outputs:
            self.producer[id(t)] = (frame.name, port, t)
        for f in self.stack:
            f.fresh += [(frame.name, port) for port, _ in outputs]


@dataclass(frozen=True)
class Built:
    """What a build produced: the logical graph, the build time and the back end."""

    graph: Graph
    seconds: float
    backend: str


def build(
    root: Component, inputs: Mapping[str, Mapping[str, Spec | Any]], seed: int = 0, backend: str = "eager"
) -> Built:
    """Build ``root``: trace each API method named in ``inputs`` (method -> input name -> ``Spec``, or a
    plain value such as a generator, passed as is) and make every variable. Raises ``ComponentError`` (or a
    subclass) naming the component and method at fault."""
    if backend not in BACKENDS:
        raise ComponentError(f"unknown back end {backend!r}; choose one of {', '.join(BACKENDS)}")
    t0 = time.perf_counter()
    for c in root.walk():  # 1. assemble
        c.seed = seed
    methods = root.api_methods()
    for m in inputs:
        if m not in methods:
            raise ComponentError(
                f"component {root.path!r} has no API method {m!r}; its API methods are {methods}"
            )
    trace = Trace(root.name)
    token = TRACER.set(trace)
    try:  # 2. infer shapes, check inputs, make variables
        for m, given in inputs.items():
            args = {k: example(v) if isinstance(v, Spec) else v for k, v in given.items()}
            for k, v in args.items():
                trace.add_input(f"{m}:{k}", v)
            out = getattr(root, m)(**args)
            trace.add_output(m, out)
    finally:
        TRACER.reset(token)
    unused = [c.path for c in root.walk() if not c.variables_created and c is not root]
    if unused:
        raise ComponentError(
            f"components {unused} of {root.path!r} are never called by the API methods "
            f"{list(inputs)}; remove them or call them"
        )
    for p in root.parameters():
        p.grad = None
    if backend == "compile":  # 3. back end
        for c in root.walk():
            if c.module is not None:
                c.module.forward = torch.compile(c.module.forward)
    return Built(trace.graph, time.perf_counter() - t0, backend)
