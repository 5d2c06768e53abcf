"""Cloud + N namespaced robots, each fed by a camera stand-in (a packaged video with an upstream detector).

    ros2 launch edgesync_ros fleet_demo.launch.py robots:=2
    ros2 launch edgesync_ros fleet_demo.launch.py params_file:=/path/to/my_fleet.yaml log_level:=debug
    ros2 launch edgesync_ros fleet_demo.launch.py discovery_server:=127.0.0.1:11888

Robot i (robot1..robotN) plays `videos[i-1]`; by default each edge classifies the regions the shipped NanoDet finds
in JPEG frames (`input_mode:=region image_transport:=compressed`, the paper's setting); `input_mode:=frame` classifies
whole frames and `image_transport:=raw` sends sensor_msgs/Image, the camera stand-in following both. Robot 2 onwards
is darkened (`dark_brightness`) so its stream drifts and the scheduler has a robot to prefer. ``params_file`` (keys
``/**/edge_node``, ``/**/cloud_node``, ``/**/video_source``) is applied to every node after the shipped YAML, so it
overrides only the keys it names. The same nodes and YAML run without the launch system via `edgesync run` (``--set
edge_node.input_mode=region --set edge_node.image_transport=compressed`` for this file's default input).
"""

import os

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

VIDEOS = ["bikes", "vtest", "challenge03", "project_video02", "project_video03"]


def _dds_env(context):
    """FASTDDS_DEFAULT_PROFILES_FILE for a node's process: the ``dds_profile`` argument; nothing when it is empty."""
    profile = LaunchConfiguration("dds_profile").perform(context)
    return {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}


def _nodes(context, *args, **kwargs):
    config = os.path.join(get_package_share_directory("edgesync_ros"), "config")
    n = int(LaunchConfiguration("robots").perform(context))
    dark = float(LaunchConfiguration("dark_brightness").perform(context))
    user = [f for f in [LaunchConfiguration("params_file").perform(context)] if f]
    common = {"use_sim_time": LaunchConfiguration("use_sim_time"), "autostart": LaunchConfiguration("autostart")}
    ros_args = ["--log-level", LaunchConfiguration("log_level")]
    env = _dds_env(context)
    mode = LaunchConfiguration("input_mode").perform(context)
    transport = LaunchConfiguration("image_transport").perform(context)
    actions = [Node(package="edgesync_ros", executable="cloud_node", name="cloud_node",
                    parameters=[os.path.join(config, "cloud.yaml"), *user, common], ros_arguments=ros_args,
                    additional_env=env, output="screen")]
    for i in range(1, n + 1):
        ns = f"robot{i}"
        actions.append(Node(package="edgesync_ros", executable="edge_node", name="edge_node", namespace=ns,
                            parameters=[os.path.join(config, "edge.yaml"), *user,
                                        {"input_mode": mode, "image_transport": transport}, common],
                            ros_arguments=ros_args, additional_env=env, output="screen"))
        actions.append(Node(package="edgesync_ros", executable="video_source", name="video_source", namespace=ns,
                            parameters=[os.path.join(config, "video_source.yaml"), *user,
                                        {"video": VIDEOS[(i - 1) % len(VIDEOS)], "transport": transport,
                                         "regions": "teacher" if mode == "region" else "none",
                                         "brightness": 1.0 if i == 1 else dark,
                                         "use_sim_time": LaunchConfiguration("use_sim_time")}],
                            ros_arguments=ros_args, additional_env=env, output="screen"))
    return actions


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
            DeclareLaunchArgument("robots", default_value="2", description="number of robots"),
            DeclareLaunchArgument("input_mode", default_value="region", choices=["frame", "region"],
                                  description="edge input: whole frames, or the regions the camera stand-in's "
                                              "detector publishes"),
            DeclareLaunchArgument("image_transport", default_value="compressed", choices=["raw", "compressed"],
                                  description="camera stand-in to edge: sensor_msgs/Image or JPEG CompressedImage"),
            DeclareLaunchArgument("dark_brightness", default_value="0.35", description="brightness of robots 2..N"),
            DeclareLaunchArgument("params_file", default_value="",
                                  description="extra parameters for every node, over the shipped YAML"),
            DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                                  description="bring the managed node to active at start (false: leave it "
                                              "unconfigured for `ros2 lifecycle set` or a lifecycle manager)"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
            DeclareLaunchArgument("log_level", default_value="info", description="ROS log level of every node"),
            OpaqueFunction(function=_nodes),
        ]
    )
