"""Replay a rosbag2 (MCAP or sqlite3, any topics and types) onto ROS topics with its recorded timing.

``replay_node`` reads the bag with ``rosbags`` and publishes each message's **recorded CDR bytes** unchanged
(``publisher.publish(raw_bytes)``): no decoding, so any message type works whose Python module is importable
(``sensor_msgs``, ``edgesync_ros``, ...; the class is imported by the name the bag records, e.g.
``sensor_msgs/msg/CompressedImage`` -> ``sensor_msgs.msg.CompressedImage``). Topics whose type cannot be
imported are skipped with a warning.

Timing: message *i* is published when ``(t_i - t_0) / rate`` seconds have passed since playback started
(``rate`` 2 = twice as fast; ``rate`` 0 = as fast as possible, ``burst`` messages per timer tick). A periodic
timer (``timer_period_s``) drives everything, so the node never sleeps. ``/clock`` (``rosgraph_msgs/Clock``)
carries the playback time at ``clock_frequency`` Hz and before every batch, for nodes with ``use_sim_time``.
With ``loop`` the bag restarts after its last message and ``/clock`` jumps back to the bag's start, as
``ros2 bag play --loop`` does; header stamps inside messages are the recorded ones.

``wait_for_subscribers`` holds playback until every topic has that many subscribers (or ``wait_timeout_s``
passes), so a test or a pipeline that starts together with the replay does not miss the first messages. After the
last message the replay is done only once every reliable subscriber has acknowledged all of it (checked on the
timer without waiting, for at most ``drain_timeout_s``): a process that exits when done would otherwise take the
messages still in its writers' queues with it.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from edgesync_ros.core.config import ReplayConfig
from edgesync_ros.core.errors import ConfigError, EdgeSyncError
from edgesync_ros.data import bags
from edgesync_ros.ros.params import Param, ParamDoc, config_params, declare_all
from edgesync_ros.ros.spin import run_node

PARAMS: tuple[Param, ...] = config_params(ReplayConfig(), (
    ParamDoc("bag", "Path of the rosbag2 directory to replay (MCAP or sqlite3).", read_only=True),
    ParamDoc("rate", "Playback speed factor: 1 = recorded timing, 2 = twice as fast, 0 = as fast as possible.",
             0.0, 1000.0),
    ParamDoc("loop", "Restart from the first message after the last one (until shut down)."),
    ParamDoc("topics", "Topics to replay; empty (or ['']) = every topic of the bag.", read_only=True),
    ParamDoc("topic_prefix", "Prefix put before every replayed topic name, e.g. /replay (empty: recorded names).",
             read_only=True),
    ParamDoc("start_offset_s", "Skip this many seconds from the start of the bag.", 0.0, 1e7, read_only=True),
    ParamDoc("publish_clock", "Publish the playback time on /clock (rosgraph_msgs/Clock) for use_sim_time nodes.",
             read_only=True),
    ParamDoc("clock_frequency", "How often /clock is published while playing, in Hz (0: only before each batch of "
             "messages).", 0.0, 1000.0),
    ParamDoc("reliability", "QoS reliability of the replayed topics (reliable also serves best-effort "
             "subscribers).", read_only=True),
    ParamDoc("queue_depth", "QoS history depth of the replayed topics.", 1, 100000, read_only=True),
    ParamDoc("wait_for_subscribers", "Hold playback until every replayed topic has this many subscribers.", 0, 1000),
    ParamDoc("wait_timeout_s", "Start anyway after waiting this long for subscribers.", 0.0, 3600.0),
    ParamDoc("timer_period_s", "Period of the timer that publishes due messages (timing resolution).", 0.0005, 1.0,
             read_only=True),
    ParamDoc("burst", "At most this many messages per timer tick (bounds a tick when rate is 0 or playback lags).",
             1, 100000),
    ParamDoc("exit_when_done", "Let main() return when the bag has been played (ignored with loop).",
             read_only=True),
    ParamDoc("drain_timeout_s", "After the last message, wait at most this long for every reliable subscriber to "
             "acknowledge what was published before the replay counts as done (0: do not wait).", 0.0, 3600.0),
))  # fmt: skip


def message_class(msgtype: str) -> type:
    """Import a ROS message class by the name a bag records (``pkg/msg/Type`` or ``pkg/Type``)."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"not a ROS message type name: {msgtype!r}")
    try:
        module = importlib.import_module(f"{parts[0]}.{parts[1]}")
        return getattr(module, parts[2])
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"message type {msgtype!r} is not importable here: {exc}") from exc


class ReplayNode(Node):
    """Publishes a bag's messages with their recorded timing (see the module docstring)."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        """Open the bag, create one publisher per topic and start the playback timer.

        ``monotonic`` is the wall clock playback is timed against (injectable for tests). Raises
        :class:`~edgesync_ros.core.errors.EdgeSyncError` for a missing/unreadable bag or no playable topic.
        """
        super().__init__(kwargs.pop("node_name", "replay"), **kwargs)
        self.values = declare_all(self, PARAMS)
        self._now = monotonic
        path = str(self.values["bag"])
        if not path:
            raise ConfigError("parameter 'bag' is empty: give the rosbag2 directory to replay")
        self._reader = bags.open_reader(path)
        wanted = [t for t in self.values["topics"] if t]
        available = {c.topic: c.msgtype for c in self._reader.connections}
        missing = [t for t in wanted if t not in available]
        if missing:
            self._reader.close()
            raise ConfigError(f"topics {missing} are not in {path} (it has {sorted(available)})")
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=int(self.values["queue_depth"]),
            reliability=ReliabilityPolicy.RELIABLE
            if self.values["reliability"] == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        prefix = str(self.values["topic_prefix"]).rstrip("/")
        self._pubs: dict[str, Publisher[Any]] = {}
        for topic in wanted or sorted(available):
            try:
                cls = message_class(available[topic])
            except ConfigError as exc:
                self.get_logger().warning(f"skipping {topic}: {exc}")
                continue
            self._pubs[topic] = self.create_publisher(cls, prefix + topic, qos)
        if not self._pubs:
            self._reader.close()
            raise ConfigError(f"no topic of {path} can be replayed here")
        self._clock_pub = (
            self.create_publisher(Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
            if self.values["publish_clock"]
            else None
        )
        self._start_ns = int(self._reader.start_time) + int(round(float(self.values["start_offset_s"]) * 1e9))
        self._it = self._open_iterator()
        self._pending: bags.RawMessage | None = next(self._it, None)
        self.counts: dict[str, int] = dict.fromkeys(self._pubs, 0)
        self.loops = 0
        self.done = self._pending is None
        self._playing = False
        self._created = self._now()
        self._t0 = 0.0
        self._last_clock = -1.0
        self._last_clock_ns = self._start_ns
        self._draining_since: float | None = None
        #: Topics some reliable subscriber had not acknowledged when the drain timed out (set when done).
        self.unacknowledged: tuple[str, ...] = ()
        self._played_s = 0.0
        self.add_on_set_parameters_callback(self._on_set)
        self._timer = self.create_timer(float(self.values["timer_period_s"]), self._tick)
        self.get_logger().info(
            f"replaying {len(self._pubs)} topic(s) of {path} at rate {self.values['rate']}"
            + (" (loop)" if self.values["loop"] else "")
        )

    # -- parameters ----------------------------------------------------------------------------------------
    def _on_set(self, changes: list[Parameter]) -> SetParametersResult:
        for change in changes:
            if change.name in self.values:
                if change.name == "rate" and self._playing:
                    # Re-anchor (at the old rate's position) so the new rate applies from here on.
                    now = self._now()
                    self._anchor_ns = self._playback_ns(now)
                    self._t0 = now
                self.values[change.name] = change.value
        return SetParametersResult(successful=True)

    # -- playback ------------------------------------------------------------------------------------------
    def _open_iterator(self) -> Iterator[bags.RawMessage]:
        self._anchor_ns = self._start_ns
        return (m for m in bags.iter_raw(self._reader, list(self._pubs)) if m.timestamp_ns >= self._start_ns)

    def _playback_ns(self, now: float) -> int:
        """Bag time that corresponds to wall time ``now`` (rate 0: the last published message's time)."""
        rate = float(self.values["rate"])
        if rate <= 0:
            return self._last_clock_ns
        return self._anchor_ns + round((now - self._t0) * rate * 1e9)

    def _publish_clock(self, stamp_ns: int) -> None:
        if self._clock_pub is None:
            return
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self._clock_pub.publish(msg)
        self._last_clock_ns = int(stamp_ns)

    def _ready(self, now: float) -> bool:
        need = int(self.values["wait_for_subscribers"])
        if need <= 0:
            return True
        if all(p.get_subscription_count() >= need for p in self._pubs.values()):
            return True
        if now - self._created >= float(self.values["wait_timeout_s"]):
            self.get_logger().warning(f"starting without {need} subscriber(s) on every topic after waiting")
            return True
        return False

    def _tick(self) -> None:
        if self.done:
            return
        now = self._now()
        if self._draining_since is not None:
            self._drain(now)
            return
        if not self._playing:
            if not self._ready(now):
                return
            self._playing = True
            self._t0 = now
            self._anchor_ns = self._start_ns
            self._publish_clock(self._start_ns)
            self._last_clock = now
        rate = float(self.values["rate"])
        limit = int(self.values["burst"])
        playback = self._playback_ns(now) if rate > 0 else None
        batch: list[bags.RawMessage] = []
        while self._pending is not None and len(batch) < limit:
            if playback is not None and self._pending.timestamp_ns > playback:
                break
            batch.append(self._pending)
            self._pending = next(self._it, None)
        if batch:
            # Sim time first, so a use_sim_time node never receives a message stamped after its clock.
            self._publish_clock(batch[-1].timestamp_ns if playback is None else max(playback, batch[-1].timestamp_ns))
            self._last_clock = now
            for m in batch:
                self._pubs[m.topic].publish(m.data)
                self.counts[m.topic] += 1
        freq = float(self.values["clock_frequency"])
        if playback is not None and freq > 0 and now - self._last_clock >= 1.0 / freq:
            self._publish_clock(playback)
            self._last_clock = now
        if self._pending is None:
            self._end_of_bag(now)

    def _end_of_bag(self, now: float) -> None:
        if self.values["loop"]:
            self.loops += 1
            self._it = self._open_iterator()
            self._pending = next(self._it, None)
            self._t0 = now
            return
        self._draining_since = now
        self._played_s = now - self._t0
        self._drain(now)

    def _drain(self, now: float) -> None:
        """Mark the replay done once every publisher's messages are acknowledged, or ``drain_timeout_s`` has passed."""
        pubs = [*self._pubs.values(), *([] if self._clock_pub is None else [self._clock_pub])]
        unacked = [p.topic_name for p in pubs if not p.wait_for_all_acked(Duration(seconds=0))]
        assert self._draining_since is not None
        waited = now - self._draining_since
        if unacked and waited < float(self.values["drain_timeout_s"]):
            return
        self.done = True
        self.unacknowledged = tuple(unacked)
        late = f"; not acknowledged by every subscriber after {waited:.1f} s: {', '.join(unacked)}" if unacked else ""
        self.get_logger().info(
            f"replay finished: {sum(self.counts.values())} messages in {self._played_s:.2f} s{late}")

    def destroy_node(self) -> None:
        """Close the bag, then destroy the node."""
        try:
            self._reader.close()
        except Exception:  # already closed (or never opened): nothing to release
            pass
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the installed ``replay_node`` executable; returns when the bag is played (or on Ctrl-C)."""
    try:
        run_node(ReplayNode, args, done=lambda node: bool(node.values["exit_when_done"]) and node.done)
    except EdgeSyncError as exc:
        print(f"replay_node: error: {exc}", file=sys.stderr)
        return 2
    return 0
