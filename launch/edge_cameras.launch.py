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
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

#: Shipped Fast DDS profile (config/): shared memory that holds raw camera frames.
DDS_PROFILE = "fastdds_large_frames.xml"
DDS_PROFILE_HELP = ("Fast DDS XML profile of the node processes (default: $FASTDDS_DEFAULT_PROFILES_FILE, else the "
                    "shipped one, whose shared memory holds raw frames; empty: the environment is left as it is); "
                    "docs/setup.md")


def _list(text):
    """A launch argument written as a YAML list (``[front, rear]``) or one bare name."""
    value = yaml.safe_load(text)
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _dds_env(context):
    """FASTDDS_DEFAULT_PROFILES_FILE for a node's process: the ``dds_profile`` argument; nothing when it is empty."""
    profile = LaunchConfiguration("dds_profile").perform(context)
    return {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}


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
                        {"use_sim_time": LaunchConfiguration("use_sim_time"),
                         "autostart": LaunchConfiguration("autostart")}],
            ros_arguments=["--log-level", LaunchConfiguration("log_level")],
            additional_env=_dds_env(context),
            output="screen",
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("edgesync_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "discovery_server", default_value=EnvironmentVariable("ROS_DISCOVERY_SERVER", default_value=""),
                description="Fast DDS discovery server(s) HOST:PORT[;HOST:PORT] (default: $ROS_DISCOVERY_SERVER; "
                            "empty = default discovery); docs/fleet.md",
            ),
            SetEnvironmentVariable("ROS_DISCOVERY_SERVER", LaunchConfiguration("discovery_server")),
            DeclareLaunchArgument("dds_profile", description=DDS_PROFILE_HELP, default_value=EnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", default_value=os.path.join(share, "config", DDS_PROFILE))),
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
            DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                                  description="bring every camera node to active at start (false: leave them "
                                              "unconfigured for `ros2 lifecycle set` or a lifecycle manager)"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of the nodes"),
            OpaqueFunction(function=_group),
        ]
    )
