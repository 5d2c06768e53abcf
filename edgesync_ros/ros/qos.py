"""Named QoS profiles, one place for every topic's delivery contract.

- camera: sensor data (best effort, keep last 5, volatile) so stale frames are dropped, never queued.
- samples: reliable, keep last 10 — a SampleBatch is the teacher's only view of the robot; losing one loses a window.
- head updates: reliable + transient local, depth 1 — a robot that (re)starts late still receives the latest head.
- status: reliable, shallow; diagnostics follow ROS's /diagnostics convention (reliable, depth 10).
- overlay: reliable, keep last 1, volatile — rviz2's Image display subscribes reliable (a best-effort publisher
  would never match it); depth 1 so a slow viewer gets the newest picture, not a queue. Overridable per topic with
  rclpy's standard ``qos_overrides.<topic>.publisher.*`` parameters.
- vision info (``vision_info``, ``label_info``): reliable + transient local, depth 1 — the class list and head version
  reach a subscriber that starts after them, as vision_msgs intends.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

CAMERA_QOS: QoSProfile = qos_profile_sensor_data

RELIABLE_CAMERA_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE
)

SAMPLES_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

HEAD_UPDATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

PREDICTIONS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)

OVERLAY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

VISION_INFO_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

STATUS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)

DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

#: Names accepted by the ``camera_qos`` node parameter.
CAMERA_QOS_BY_NAME: dict[str, QoSProfile] = {"sensor_data": CAMERA_QOS, "reliable": RELIABLE_CAMERA_QOS}
