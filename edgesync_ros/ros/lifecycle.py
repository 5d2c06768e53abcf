"""Managed (lifecycle) nodes: the four transitions as plain methods, their errors kept, and autostart to active.

A subclass implements :meth:`ManagedNode.configure_node` (load the model), :meth:`~ManagedNode.activate_node`
(subscribe, start timers and threads), :meth:`~ManagedNode.deactivate_node` (stop taking input) and
:meth:`~ManagedNode.cleanup_node` (free what configure loaded; it must accept a half-done configure). rclpy turns an
exception in a transition callback into a bare ERROR; here it is logged with its message, the transition fails
(the node stays where it was) and :meth:`~ManagedNode.autostart` re-raises it, so a node started to active in its
constructor still fails there with the reason, as an unmanaged node would. Destroying a node that is still active
or inactive runs its deactivate and cleanup first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from edgesync_ros.core.errors import EdgeSyncError

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    """A ``rclpy.lifecycle`` node whose transitions are :meth:`configure_node` ... :meth:`cleanup_node`."""

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.transition_error: BaseException | None = None

    # -- what a subclass implements ------------------------------------------------------------------------------
    def configure_node(self) -> None:
        """Load what the node needs to work (model, workers, publishers, services); raise on failure."""

    def activate_node(self) -> None:
        """Start taking input: subscriptions, timers."""

    def deactivate_node(self) -> None:
        """Stop taking input; what is in flight may finish."""

    def cleanup_node(self) -> None:
        """Free what :meth:`configure_node` loaded (also after it failed half-way)."""

    # -- plumbing --------------------------------------------------------------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        """The current state's label: unconfigured, inactive, active, finalized (or a transition's)."""
        return str(self._state_machine.current_state[1])

    def autostart(self) -> None:
        """Configure and activate now; raise what made either fail (EdgeSyncError subclasses as they are)."""
        for name, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
            if trigger() != SUCCESS:
                error = self.transition_error
                if isinstance(error, EdgeSyncError):
                    raise error
                raise EdgeSyncError(f"{self.get_name()}: {name} failed: {error!r}") from error

    def _run(self, name: str, step: Callable[[], None], undo: Callable[[], None] | None = None) -> Any:
        try:
            step()
        except Exception as exc:  # a transition must answer, whatever went wrong: log it, keep it, fail
            self.transition_error = exc
            self.get_logger().error(f"{name} failed: {type(exc).__name__}: {exc}")
            if undo is not None:
                try:
                    undo()
                except Exception as undo_exc:  # the first error is the one to report
                    self.get_logger().error(f"undoing the failed {name}: {type(undo_exc).__name__}: {undo_exc}")
            return FAILURE
        self.transition_error = None
        return SUCCESS

    def on_configure(self, state: LifecycleState) -> Any:
        """Lifecycle configure: :meth:`configure_node`; a failure is undone by :meth:`cleanup_node`."""
        return self._run("configure", self.configure_node, self.cleanup_node)

    def on_activate(self, state: LifecycleState) -> Any:
        """Lifecycle activate: :meth:`activate_node` (then rclpy activates lifecycle publishers)."""
        result = self._run("activate", self.activate_node, self.deactivate_node)
        return super().on_activate(state) if result == SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> Any:
        """Lifecycle deactivate: :meth:`deactivate_node`."""
        result = self._run("deactivate", self.deactivate_node)
        return super().on_deactivate(state) if result == SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> Any:
        """Lifecycle cleanup: :meth:`cleanup_node`."""
        return self._run("cleanup", self.cleanup_node)

    def on_shutdown(self, state: LifecycleState) -> Any:
        """Lifecycle shutdown from any primary state: deactivate and clean up as far as needed."""
        return self._run("shutdown", lambda: self._wind_down(state.label))

    def on_error(self, state: LifecycleState) -> Any:
        """After an error in a transition: free everything and go back to unconfigured."""
        return self._run("error recovery", lambda: self._wind_down("active"))

    def _wind_down(self, label: str) -> None:
        if label == "active":
            self.deactivate_node()
        if label in ("active", "inactive"):
            self.cleanup_node()

    def destroy_node(self) -> None:
        """Deactivate and clean up whatever is still running, then destroy the node."""
        if hasattr(self, "_state_machine"):
            self._wind_down(self.lifecycle_state)
        super().destroy_node()
