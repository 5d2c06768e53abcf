"""The fleet key: a shared secret that turns head-update digests into HMAC-SHA256 signatures.

Read from a file (parameter ``fleet_key_file``) so it never appears in a launch file, a parameter dump or a log.
Without a key the nodes run in digest-only mode (SHA-256: catches corruption, not forgery) and warn at start-up.
"""

from __future__ import annotations

from pathlib import Path

from rclpy.node import Node

from edgesync_ros.core.errors import ConfigError

MIN_KEY_BYTES = 16


def load_fleet_key(node: Node, path: str) -> bytes | None:
    """Read the key file named by ``path`` (empty: none, with a WARN); ConfigError when unreadable or too short."""
    if not path:
        node.get_logger().warning(
            "no fleet_key_file: head updates carry a plain SHA-256 digest (corruption is caught, forgery is not); "
            "set fleet_key_file on the cloud and every robot to sign them with HMAC-SHA256")
        return None
    try:
        key = Path(path).expanduser().read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read fleet_key_file {path}: {exc.strerror}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"fleet_key_file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    node.get_logger().info(f"fleet key loaded from {path}: head updates are HMAC-SHA256 signed")
    return key
