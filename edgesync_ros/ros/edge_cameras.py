"""Several cameras of one robot in one process: an edge node per camera, one model and one inference thread for all.

``edge_cameras`` (this node, in the robot's namespace) reads ``cameras``, ``camera_topics`` and ``head_sharing``
(:class:`~edgesync_ros.core.config.CameraGroupConfig`) and creates one
:class:`~edgesync_ros.ros.edge_node.EdgeNode` per camera in ``<namespace>/<camera>``, all classifying on one
:class:`~edgesync_ros.ros.shared_inference.SharedInference`: each camera's frames join one batched backbone pass, and
each camera keeps its own window, filter, uploads, predictions, overlay, diagnostics and lifecycle, exactly as a
single-camera edge node (same parameters, read from the same ``/**/edge_node`` section of ``config/edge.yaml``).

The cloud sees, with ``head_sharing: per_camera``, each camera as a robot of its own (edge id
``<robot>_<camera>``, a head trained on that camera's samples); with ``shared``, the group as one robot (edge id
``<robot>``): every camera uploads under it, the first camera registers and takes the head updates, and the one head
(and the cloud's upload policy) applies to all cameras.

Run: ``ros2 run edgesync_ros edge_cameras --ros-args -r __ns:=/robot1 -p "cameras:=[front, rear]"`` or
``ros2 launch edgesync_ros edge_cameras.launch.py cameras:="[front, rear]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter

from edgesync_ros.core.config import CameraGroupConfig
from edgesync_ros.ros.edge_node import EdgeNode
from edgesync_ros.ros.params import Param, ParamDoc, config_params, declare_all
from edgesync_ros.ros.shared_inference import SharedInference
from edgesync_ros.ros.spin import run_node

PARAMS: tuple[Param, ...] = config_params(CameraGroupConfig(), (
    ParamDoc("cameras", "Camera names; each gets an edge_node in <namespace>/<camera> (topics, window, uploads, "
             "diagnostics of its own), all on one model.", read_only=True),
    ParamDoc("camera_topics", "Image topic per camera, in the order of `cameras` (empty entry, or the single "
             "default [\"\"], = <namespace>/<camera>/image); with image_transport compressed the node adds "
             "/compressed.", read_only=True),
    ParamDoc("head_sharing", "per_camera: a head per camera, the cloud trains each camera as a robot "
             "(<robot>_<camera>); shared: one head for all cameras, the cloud sees one robot (<robot>).",
             read_only=True),
))

#: Executor threads of the process. One is enough: nothing the cameras' callbacks run waits for the shared inference
#: thread (a head update is queued on it, not awaited); a second thread measured no better (bench/bench_multicam.py).
EXECUTOR_THREADS = 1

#: Remaps that rename or move a node: the process's own apply to this node, never to its cameras.
_NODE_REMAPS = ("__ns", "__node", "__name")


def camera_ros_args(argv: Sequence[str]) -> list[str]:
    """The process's ROS arguments as the camera nodes take them: all but the remaps of node name and namespace.

    ``ros2 launch`` puts a node in its namespace with ``-r __ns:=...``, which rcl applies to every node of the
    process; the cameras live one level below, so they take every other argument (parameter files, ``-p``, topic
    remaps, log level) but not those.
    """
    out: list[str] = []
    in_ros = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-r", "--remap") and i + 1 < len(argv):
            rule = argv[i + 1]
            if rule.partition(":=")[0].rpartition(":")[2] not in _NODE_REMAPS:
                out += [arg, rule]
            i += 1
        elif in_ros:
            out.append(arg)
        i += 1
    return ["--ros-args", *out] if out else []


class EdgeCamerasNode(Node):
    """Creates and owns one edge node per camera, all sharing one model (see the module docstring).

    ``camera_args``: the ROS arguments of the camera nodes (``None``: rclpy's global ones, as for any node);
    ``camera_overrides``: parameters set on every camera node over its parameter files.
    """

    def __init__(self, node_name: str = "edge_cameras", *, camera_args: Sequence[str] | None = None,
                 camera_overrides: Sequence[Parameter] = (), **kwargs: Any) -> None:
        """Declare the parameters and create the camera nodes (which configure and activate with ``autostart``)."""
        super().__init__(node_name, **kwargs)
        self.config = CameraGroupConfig.from_params(declare_all(self, PARAMS))
        self.inference = SharedInference(self.config.head_sharing)
        ns = self.get_namespace().rstrip("/")
        self.group_id = ns.strip("/").replace("/", "_") or self.get_name()
        self.cameras: list[EdgeNode] = []
        shared = self.config.head_sharing == "shared"
        try:
            for camera, topic in zip(self.config.cameras, self.config.topics(), strict=True):
                remaps = ["-r", f"image:={topic}", "-r", f"image/compressed:={topic}/compressed"] if topic else []
                args = list(camera_args) if camera_args is not None else []
                if remaps:
                    args += ([] if "--ros-args" in args else ["--ros-args"]) + remaps
                self.cameras.append(EdgeNode(
                    context=self.context, namespace=f"{ns}/{camera}", inference=self.inference, cli_args=args,
                    use_global_arguments=camera_args is None, parameter_overrides=[
                        *camera_overrides,
                        Parameter("edge_id", value=self.group_id if shared else f"{self.group_id}_{camera}")]))
        except BaseException:
            self._destroy_cameras()
            raise
        self.get_logger().info(
            f"{len(self.cameras)} camera(s) on one model, head_sharing {self.config.head_sharing}: "
            + ", ".join(c.get_fully_qualified_name() for c in self.cameras))

    def _destroy_cameras(self) -> None:
        for camera in reversed(self.cameras):
            camera.destroy_node()  # deactivates and cleans up: the last camera frees the model
        self.cameras = []

    def destroy_node(self) -> None:
        """Destroy the camera nodes (their workers first, the model with the last), then this node."""
        self._destroy_cameras()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the camera group (``ros2 run edgesync_ros edge_cameras``): this node and its cameras, one executor."""
    import sys

    argv = list(sys.argv if args is None else args)
    run_node(lambda: EdgeCamerasNode(camera_args=camera_ros_args(argv)), argv, num_threads=EXECUTOR_THREADS,
             companions=lambda group: group.cameras)
