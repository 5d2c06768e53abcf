"""Several cameras of one robot in one process, on one model: an edge node per camera in <namespace>/<camera>.

    ros2 launch edgesync_ros edge_cameras.launch.py namespace:=robot1 cameras:="[front, rear]"
    ros2 launch edgesync_ros edge_cameras.launch.py cameras:="[front, rear]" \\
        camera_topics:="[/front/image_raw, /rear/image_raw]"
    ros2 launch edgesync_ros edge_cameras.launch.py cameras:="[a, b, c, d]" head_sharing:=shared
    ros2 launch edgesync_ros edge_cameras.launch.py cameras:="[front, rear]" input_mode:=region autostart:=false

Each camera's node reads the ``/**/edge_node`` section of the params file (every camera alike); ``cameras``,
``camera_topics`` and ``head_sharing`` are the ``/**/edge_cameras`` section's, overridden by the arguments of the same
name when given. ``camera_topics`` (one per camera) name raw image topics; with ``image_transport:=compressed`` the
node subscribes each one's ``/compressed`` topic. With ``autostart:=false`` every camera node waits unconfigured for
``ros2 lifecycle set <namespace>/<camera>/edge_node configure`` (the first to configure loads the model).
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from edgesync_ros.ros import launch_common


def _list(text):
    """A launch argument written as a YAML list (``[front, rear]``) or one bare name."""
    value = yaml.safe_load(text)
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _group(context, *args, **kwargs):
    """The camera group, with the arguments given on the command line over the params file."""
    overrides = {name: value for name in ("input_mode", "image_transport", "head_sharing")
                 if (value := LaunchConfiguration(name).perform(context))}
    for name in ("cameras", "camera_topics"):
        text = LaunchConfiguration(name).perform(context)
        if text:
            overrides[name] = _list(text)
    return [
        Node(
            package="edgesync_ros",
            executable="edge_cameras",
            # No node name: a launch-given name (and the parameter file written for it) would reach every camera node
            # of the process as well; the group is `edge_cameras`, each camera `edge_node`.
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides,
                        launch_common.node_parameters()],
            ros_arguments=launch_common.ros_arguments(),
            additional_env=launch_common.dds_env(context),
            output="screen",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            *launch_common.process_arguments(share),
            DeclareLaunchArgument("namespace", default_value="robot1", description="robot namespace"),
            DeclareLaunchArgument(
                "params_file", default_value=os.path.join(share, "config", "edge.yaml"),
                description="parameters (YAML keyed /**/edge_node for every camera, /**/edge_cameras for the group)",
            ),
            DeclareLaunchArgument("cameras", default_value="",
                                  description="camera names as a YAML list, e.g. [front, rear]; empty = the params "
                                              "file's (shipped: [camera])"),
            DeclareLaunchArgument("camera_topics", default_value="",
                                  description="image topic per camera as a YAML list; empty = the params file's "
                                              "(shipped: <namespace>/<camera>/image)"),
            DeclareLaunchArgument("head_sharing", default_value="", choices=["", "per_camera", "shared"],
                                  description="per_camera (a head per camera) or shared (one head, one robot to the "
                                              "cloud); empty = the params file's (shipped: per_camera)"),
            DeclareLaunchArgument("input_mode", default_value="", choices=["", "frame", "region"],
                                  description="frame or region, for every camera; empty = the params file's value"),
            DeclareLaunchArgument("image_transport", default_value="", choices=["", "raw", "compressed"],
                                  description="raw or compressed, for every camera; empty = the params file's value"),
            OpaqueFunction(function=_group),
        ]
    )
