"""Every error reflow raises, in one place.

Each class names a kind of mistake; each message names the node, port, reactor or file at fault and, where it
can, says how to fix it. Catch ``ReflowError`` to catch them all.
"""

from __future__ import annotations


class ReflowError(Exception):
    """Base class of every error raised by reflow."""


# --- graph IR ---
class GraphError(ReflowError):
    """A graph is malformed: unknown node or port, duplicate name."""


class DanglingPortError(GraphError):
    """An input port that must be connected has no incoming edge."""


class PortTypeError(GraphError):
    """An edge connects ports whose declared types disagree."""


class CycleError(GraphError):
    """The graph has a cycle where a DAG is required; ``cycle`` lists the nodes on it, in order."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message)
        self.cycle = cycle


# --- reactors ---
class ReactorError(ReflowError):
    """A reactor program is malformed (found while it is being built)."""


class PortConnectionError(ReactorError):
    """Two ports cannot be connected as asked (two outputs, an input driven twice, ...)."""


class CausalityError(ReactorError, CycleError):
    """The reactions form a causality cycle at one tag; the message names the reactions on it."""


class EffectError(ReactorError):
    """A reaction wrote to a port or scheduled an action it did not declare as an effect."""


class ReactionFailed(ReflowError):
    """A reaction raised; carries the reactor, the reaction and the tag at which it happened."""

    def __init__(self, message: str, reactor: str = "", reaction: str = "", tag: object = None) -> None:
        super().__init__(message)
        self.reactor = reactor
        self.reaction = reaction
        self.tag = tag


class UnsendableValue(ReactorError):
    """A value on a port or action cannot be sent between processes (it does not pickle); names the reaction
    and the port, in ``.reaction`` and ``.port``."""

    def __init__(self, message: str, reaction: str = "", port: str = "") -> None:
        super().__init__(message)
        self.reaction = reaction
        self.port = port

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reaction, self.port))


class LifecycleError(ReflowError):
    """An API call was made in a phase that does not allow it (e.g. connecting after the program started)."""


# --- transport ---
class TransportError(ReflowError):
    """Moving a message between processes failed."""


class SerializationError(TransportError):
    """A message cannot be encoded (unpicklable object); the message names its type."""


class MessageTooLarge(TransportError):
    """A message is larger than the sender's shared-memory store; the message names topic and sizes."""


class BackPressureError(TransportError):
    """A subscriber did not keep up: the store stayed full past the timeout; names topic and subscriber."""


class ChannelClosed(TransportError):
    """The other end of a channel or topic went away (closed or died)."""


class WorkerCrashed(ReflowError):
    """A worker process died; the message names the reactors or envs it held."""


# --- onnx ---
class OnnxImportError(ReflowError):
    """An ONNX model cannot be imported (bad file, unsupported op, unknown shape)."""


class UnsupportedOpError(OnnxImportError):
    """An ONNX operator reflow does not implement; the message names the op and the node."""


# --- rl ---
class EnvError(ReflowError):
    """An environment cannot be made or stepped (unknown id, step raised, space mismatch)."""


class EnvArgumentError(EnvError, ValueError):
    """A vector env got actions or reset options of a wrong shape or value (a ValueError, as in gymnasium)."""


class EnvArgumentTypeError(EnvError, TypeError):
    """A vector env got actions or reset options of the wrong type or dtype (a TypeError, as gymnasium's)."""


class EnvTimeout(EnvError):
    """An env's step or reset ran past the bank's ``step_timeout``; the message names the env and worker."""


class OversubscribedWarning(UserWarning):
    """An env bank found fewer free cores than the processes asked for and stepped in fewer."""


class CheckpointError(ReflowError):
    """An RL checkpoint is missing, corrupt, or does not match the env or network it is used with."""


class TrainConfigError(ReflowError):
    """A training run was asked for an unknown algorithm or an impossible setting."""


# --- serve ---
class ServeError(ReflowError):
    """A serving pipeline cannot be built, loaded or run."""


class FlowSchemaError(ServeError):
    """A flow is wrongly typed where it is built: an operator names a missing column, or a column of the wrong
    type; the message names the operator and the column."""


class TableError(ServeError):
    """A table or a row does not fit its schema (wrong arity, a value of the wrong type); names the column."""


class OperatorFailed(ServeError):
    """An operator raised while running a request; ``operator`` names it, the message carries its error."""

    def __init__(self, message: str, operator: str = "") -> None:
        super().__init__(message)
        self.operator = operator


class LookupKeyError(ServeError):
    """A lookup asked a store for a key it does not hold; the message names the store, key and operator."""


class DeadlineExceeded(ServeError):
    """A request did not finish before its deadline; the message says where it was."""


class Overloaded(ServeError):
    """The server's queues are full; the request was shed (HTTP 503)."""


class PipelineLoadError(ServeError):
    """A pipeline file cannot be loaded, or defines no ``flow``; the message names the file."""


# --- ray (multi-node) ---
class RayUnavailable(ReflowError):
    """Ray is not installed; the message names the extra to install."""


class ClusterError(ReflowError):
    """A Ray cluster cannot be reached or started, or lacks what a run needs (nodes, CPUs)."""


class NodeLost(WorkerCrashed):
    """A Ray node or actor died mid-run; the message names the node and the reactors or envs it held."""


# --- recurrent tensors ---
class RecurrentError(ReflowError):
    """A recurrent-tensor program is malformed; the message names the tensor and the index expression."""


class IndexOutOfDomain(RecurrentError):
    """A tensor is read at an index outside the domain of the tensor it reads (e.g. ``x[t+1]`` at t = T-1)."""


class NoBaseCase(RecurrentError):
    """A recursive definition has no base case (``x[t] = x[t-1] + 1`` without ``x[0] = ...``), or a tensor
    depends on itself at the same point."""


class ShapeMismatch(RecurrentError):
    """An operation or assignment got spatial shapes (or domains) that do not fit together."""


class MissingBound(RecurrentError):
    """A symbolic bound (``T``) used by a tensor's domain or index expression has no value at compile time."""


class NotDifferentiable(RecurrentError):
    """``backward()`` met an operation or index expression it cannot differentiate through."""


class ScheduleError(RecurrentError):
    """The dependences of a recurrent program admit no loop schedule (e.g. a cycle no dimension carries)."""


# --- components (RLgraph-style agents) and Wield ---
class ComponentError(ReflowError):
    """An agent's component graph cannot be built; the message names the component and the API method."""


class ComponentSpaceError(ComponentError):
    """An input has the wrong space for a component (wrong kind, or a shape that does not match what the
    component was built for)."""


class MissingInputError(ComponentError):
    """An API method was called without one of its inputs."""


class ReplayMemoryError(ComponentError):
    """A replay buffer does not fit in the memory available; the message gives sizes and what to change."""


class WieldError(ReflowError):
    """An evaluation suite or experiment store was asked for something impossible (no runs, unknown env)."""
